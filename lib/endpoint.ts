// Endpoint: a reliable-datagram (FI_EP_RDM) libfabric endpoint with its own completion queue and
// address vector, that reads and writes peers' registered memory (RMA) from pooled regions.
//
// - Each read/write returns a Promise settled by its completion. The operation's id travels as the
//   libfabric context (a small integer, not a pointer: the provider is not asked for FI_CONTEXT).
// - Writes are delivery-complete: the endpoint is opened with FI_DELIVERY_COMPLETE in its default
//   transmit op flags (tx_attr->op_flags of a private copy of the fi_info), so a write completes
//   only once its data is in the target's memory. Without it tcp;ofi_rxm completes a write when
//   the bytes have left the socket, and a peer told "done" could read stale memory.
// - -FI_EAGAIN (a connection being made, a full queue) is not an error: the operation waits in a
//   queue and is posted again, in order, on the next progress turn.
// - Every operation has a deadline (options.timeoutMs): udp;ofi_rxd never completes a write with a
//   bad key, so a RmaTimeoutError is what the caller gets instead of a hang.
// - Bounds are checked before anything is posted, on both sides: the local region or pointer, and
//   the RemoteRegion. The chunks of a pool share one registration and key, so no provider can keep
//   a peer out of the neighbouring chunk: the RemoteRegion's length is what does.
// - Progress: see progress.ts. progress() is one synchronous turn; startProgress() keeps a target
//   that only exposes memory progressing.
import { libfabric, nativeView, readPtr, readU64, readCString, type Libfabric, type RmaOps } from "../ffi/libfabric.ts";
import { FabricError } from "../ffi/errors.ts";
import { FI, L, layout } from "../ffi/layout.ts";
import { AllocToolsError } from "./errors.ts";
import type { LibfabricProvider } from "./libfabric-provider.ts";
import { MemoryRegionPointer } from "./pointer.ts";
import { progressEngine, type Progressable } from "./progress.ts";
import { MemoryRegion, MemoryRegionImpl } from "./region.ts";
import { RemoteRegion } from "./remote-region.ts";
import { RmaError, RmaTimeoutError, type RmaKind } from "./rma-errors.ts";

/** A peer's address in this endpoint's address vector (`fi_addr_t`), from `insert()`. */
export type PeerAddress = bigint;

export interface EndpointOptions {
  /** Completion queue entries; default 256. */
  cqSize?: number;
  /** Address vector slots (peers); default 64. */
  avCount?: number;
  /** Milliseconds an operation may take before it fails with RmaTimeoutError; default 10 000. */
  timeoutMs?: number;
}

/** Counters since the endpoint opened. */
export interface EndpointStats {
  /** Operations accepted by the provider. */
  readonly posted: number;
  /** Posts answered with -FI_EAGAIN and queued for another try. */
  readonly retried: number;
  readonly completed: number;
  /** Error completions and refused posts. */
  readonly failed: number;
  readonly timedOut: number;
}

/** Where the data of an RMA operation comes from or goes to, locally. */
export type LocalMemory = MemoryRegion | MemoryRegionPointer;

const CQ_BATCH = 16;
const CQ_ENTRY = layout.fi_cq_data_entry.size;
const ERR_ENTRY = layout.fi_cq_err_entry.size;
/** Context ids wrap below 2^31 so that the low 32 bits of op_context are the whole id. */
const MAX_ID = 0x7fff_ffff;

/** One operation between post and completion. Only what a repost and an error message need. */
class Operation {
  resolve!: () => void;
  reject!: (e: unknown) => void;
  constructor(
    readonly id: number,
    readonly kind: RmaKind,
    readonly local: number,
    readonly length: number,
    readonly desc: bigint,
    readonly peer: bigint,
    readonly remoteAddress: bigint,
    readonly key: bigint,
    readonly deadline: number,
  ) {}
}

export class Endpoint implements Progressable, Disposable {
  readonly provider: LibfabricProvider;
  /** This endpoint's address: give these bytes to a peer for its `insert()`. */
  readonly name: Uint8Array;
  readonly timeoutMs: number;
  /** The largest single transfer the provider takes (ep_attr->max_msg_size). */
  readonly maxMessageSize: number;
  /** How a write's completion is made to mean "in the target's memory". */
  readonly writeCompletion = "FI_DELIVERY_COMPLETE" as const;

  private readonly fi: Libfabric;
  private readonly ep: number;
  private readonly cq: number;
  private readonly av: number;
  private readonly ops: RmaOps;
  private readonly pending = new Map<number, Operation>();
  /** Operations that got -FI_EAGAIN, to post again in order. */
  private readonly queued: Operation[] = [];
  private readonly peers = new Set<bigint>();
  private nextId = 1;
  private closed_ = false;
  private readonly counts = { posted: 0, retried: 0, completed: 0, failed: 0, timedOut: 0 };
  private interval = -1;
  /** Completion entries, read as 32-bit words: op_context's low half is the id. */
  private readonly cqBuf = new Uint8Array(CQ_BATCH * CQ_ENTRY);
  private readonly cqWords = new Uint32Array(this.cqBuf.buffer);
  private readonly errBuf = new Uint8Array(ERR_ENTRY);
  private readonly errView = new DataView(this.errBuf.buffer);
  private readonly strBuf = new Uint8Array(256);
  /** An endpoint-wide failure (fi_cq_read itself failed): every later operation gets it. */
  private broken: unknown = null;

  constructor(provider: LibfabricProvider, options: EndpointOptions = {}) {
    const o = checkOptions(options);
    if (provider.closed) throw new AllocToolsError("PROVIDER_CLOSED", `provider ${provider.name} is closed`);
    if (provider.info.endpointType !== "rdm") {
      throw new AllocToolsError("NOT_SUPPORTED", `Endpoint needs a provider opened with endpointType "rdm", not ${String(provider.info.endpointType)}`);
    }
    this.provider = provider;
    this.timeoutMs = o.timeoutMs;
    const fi = (this.fi = libfabric());
    const { domain, info } = provider.handles;
    this.maxMessageSize = Number(readU64(readPtr(info, L.fi_info.ep_attr), L.fi_ep_attr.max_msg_size));
    let ep = 0;
    let cq = 0;
    let av = 0;
    // A private copy of the fi_info with FI_DELIVERY_COMPLETE as default transmit flag.
    const copy = fi.dupInfo(info);
    try {
      const tx = readPtr(copy, L.fi_info.tx_attr);
      const flags = readU64(tx, L.fi_tx_attr.op_flags);
      nativeView(tx, L.fi_tx_attr.op_flags + 8).setBigUint64(L.fi_tx_attr.op_flags, flags | FI.DELIVERY_COMPLETE, true);
      ep = fi.endpoint(domain, copy);
      cq = fi.cqOpen(domain, o.cqSize);
      av = fi.avOpen(domain, o.avCount);
      fi.bind(ep, cq, FI.TRANSMIT | FI.RECV, "fi_ep_bind");
      fi.bind(ep, av, 0, "fi_ep_bind");
      fi.enable(ep);
      provider.attachEndpoint(ep);
      this.name = fi.getName(ep);
      this.ops = fi.rmaOps(ep, cq); // resolved once: no CFunction is made per operation
    } catch (e) {
      // Children before parents; the endpoint is the child of both queue and vector.
      if (ep) try { provider.detachEndpoint(ep); fi.close(ep, "endpoint"); } catch { /* already failing */ }
      if (cq) try { fi.close(cq, "cq"); } catch { /* already failing */ }
      if (av) try { fi.close(av, "av"); } catch { /* already failing */ }
      throw e;
    } finally {
      fi.freeInfo(copy);
    }
    this.ep = ep;
    this.cq = cq;
    this.av = av;
    provider.adopt(this);
    progressEngine.add(this);
  }

  get closed(): boolean {
    return this.closed_;
  }

  /** Operations posted (or waiting to be) and not yet completed. */
  get pendingCount(): number {
    return this.pending.size + this.queued.length;
  }

  stats(): EndpointStats {
    return { ...this.counts };
  }

  /** The interval asked for with startProgress(), -1 when not progressing in the background. */
  get progressInterval(): number {
    return this.interval;
  }

  /** Adds a peer's `name` to the address vector; use the result as `peer` in read/write. */
  insert(peerName: Uint8Array): PeerAddress {
    this.assertOpen();
    if (!(peerName instanceof Uint8Array) || peerName.length === 0) throw new TypeError("insert takes a peer's endpoint name (non-empty Uint8Array)");
    const addr = this.fi.avInsert(this.av, peerName);
    this.peers.add(addr);
    return addr;
  }

  /**
   * Writes `length` bytes from `source` to the start of `target` on `peer`. Resolves once the data
   * is in the target's memory (FI_DELIVERY_COMPLETE). Use `target.subregion(offset, length)` to
   * write elsewhere in a remote region.
   *
   * Throws synchronously, having posted nothing, when the request is refused: RangeError (out of
   * the local or remote bounds, bad length, unknown peer), TypeError, or AllocToolsError (closed
   * endpoint, released or foreign region). The promise rejects for what happens after posting:
   * RmaError (error completion), RmaTimeoutError, FabricError, AllocToolsError ENDPOINT_CLOSED.
   */
  write(source: LocalMemory, length: number, peer: PeerAddress, target: RemoteRegion): Promise<void> {
    return this.start("write", source, length, peer, target);
  }

  /** Reads `length` bytes from the start of `target` on `peer` into `destination`; errors as for write(). */
  read(destination: LocalMemory, length: number, peer: PeerAddress, target: RemoteRegion): Promise<void> {
    return this.start("read", destination, length, peer, target);
  }

  /**
   * One synchronous progress turn on this endpoint: posts what waited on -FI_EAGAIN, reads
   * completions (settling their promises) and expires timed-out operations. Returns the number of
   * completions read. Throws a FabricError when the completion queue itself fails.
   */
  progress(): number {
    this.assertOpen();
    const n = this.turn(performance.now());
    if (this.broken !== null) throw this.broken;
    return n;
  }

  /**
   * Keeps this endpoint progressing in the background even with nothing pending: what a target
   * that only exposes memory needs on tcp, udp and shm. `intervalMs` 0 polls as fast as the event
   * loop turns (lowest latency, a busy core); the default 1 ms is light. The timer keeps the process
   * alive until stopProgress() or close().
   */
  startProgress(intervalMs: number = 1): void {
    this.assertOpen();
    if (!Number.isFinite(intervalMs) || intervalMs < 0) throw new RangeError(`intervalMs must be a non-negative number, got ${intervalMs}`);
    this.interval = intervalMs;
    progressEngine.wake();
  }

  stopProgress(): void {
    this.interval = -1;
  }

  /**
   * Closes the endpoint, then its completion queue and address vector (children before parents).
   * Pending operations fail with AllocToolsError ENDPOINT_CLOSED. Idempotent.
   */
  close(): void {
    if (this.closed_) return;
    this.closed_ = true;
    this.interval = -1;
    progressEngine.remove(this);
    this.provider.disown(this);
    const closedError = () => new AllocToolsError("ENDPOINT_CLOSED", "the endpoint was closed before the operation completed");
    for (const op of this.pending.values()) op.reject(closedError());
    for (const op of this.queued) op.reject(closedError());
    this.pending.clear();
    this.queued.length = 0;
    const errors: unknown[] = [];
    const attempt = (f: () => void) => { try { f(); } catch (e) { errors.push(e); } };
    attempt(() => this.provider.detachEndpoint(this.ep));
    attempt(() => this.fi.close(this.ep, "endpoint"));
    attempt(() => this.fi.close(this.cq, "cq"));
    attempt(() => this.fi.close(this.av, "av"));
    if (errors.length > 0) throw errors.length === 1 ? errors[0] : new AggregateError(errors, "closing endpoint");
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** @internal Progressable: one turn that never throws (failures settle the operations). */
  pump(now: number): number {
    if (this.closed_) return 0;
    return this.turn(now);
  }

  // ---- posting --------------------------------------------------------------------------------

  private start(kind: RmaKind, local: LocalMemory, length: number, peer: PeerAddress, target: RemoteRegion): Promise<void> {
    this.assertOpen();
    if (!Number.isSafeInteger(length) || length <= 0) throw new RangeError(`${kind} length must be a positive integer, got ${length}`);
    if (length > this.maxMessageSize) throw new RangeError(`${kind} of ${length} bytes is above the provider's max_msg_size (${this.maxMessageSize})`);
    const [address, desc] = this.localRange(kind, local, length);
    if (!(target instanceof RemoteRegion)) throw new TypeError(`${kind} target must be a RemoteRegion (region.remote(), RemoteRegion.fromBytes())`);
    if (length > target.length) {
      throw new RangeError(`${kind} of ${length} bytes does not fit the remote region's ${target.length} bytes (refused before posting)`);
    }
    if (typeof peer !== "bigint" || !this.peers.has(peer)) throw new RangeError(`peer ${String(peer)} was not inserted on this endpoint`);
    if (this.broken !== null) return Promise.reject(this.broken);
    const id = this.nextId;
    this.nextId = id === MAX_ID ? 1 : id + 1;
    const op = new Operation(id, kind, address, length, desc, peer, target.address, target.key, performance.now() + this.timeoutMs);
    const promise = new Promise<void>((resolve, reject) => {
      op.resolve = resolve;
      op.reject = reject;
    });
    // Keep the order of operations: behind anything already waiting on EAGAIN.
    if (this.queued.length > 0 || !this.post(op)) this.queued.push(op);
    progressEngine.wake();
    return promise;
  }

  /** [address, descriptor] of `length` bytes of local memory; throws before anything is posted. */
  private localRange(kind: RmaKind, local: LocalMemory, length: number): [number, bigint] {
    let region: MemoryRegion;
    let offset: number;
    if (local instanceof MemoryRegionPointer) {
      if (local.region === null) throw new TypeError(`${kind}: null MemoryRegionPointer`);
      region = local.region;
      offset = local.offset;
    } else if (local instanceof MemoryRegion) {
      region = local;
      offset = 0;
    } else {
      throw new TypeError(`${kind} takes a MemoryRegion or MemoryRegionPointer as local memory`);
    }
    if (length > region.size - offset) {
      throw new RangeError(`${kind} of ${length} bytes at offset ${offset} does not fit the local region's ${region.size} bytes`);
    }
    if (region instanceof MemoryRegionImpl) {
      if (region.owner !== null) region.assertInUse(kind);
      const pool = region.owner as { provider?: unknown } | null;
      // Same domain, not same object: a Worker's view of a shared provider registers there too.
      if (pool !== null && pool.provider !== undefined && pool.provider !== this.provider && !this.provider.sharesDomainWith(pool.provider)) {
        throw new AllocToolsError("FOREIGN_REGION", `${kind}: the local region is registered with another provider than this endpoint's`);
      }
    }
    return [region.address + offset, region.localKey];
  }

  /** Posts one operation; false on -FI_EAGAIN (try again later). Other failures settle it. */
  private post(op: Operation): boolean {
    const fn = op.kind === "write" ? this.ops.write : this.ops.read;
    const ret = Number(fn(this.ep, op.local, op.length, op.desc, op.peer, op.remoteAddress, op.key, op.id));
    if (ret === 0) {
      this.counts.posted++;
      this.pending.set(op.id, op);
      return true;
    }
    if (ret === -FI.EAGAIN) {
      this.counts.retried++;
      return false;
    }
    this.counts.failed++;
    op.reject(new FabricError(`fi_${op.kind}`, -ret, this.fi.strerror(-ret),
      `${op.length} bytes at remote 0x${op.remoteAddress.toString(16)} key ${op.key}`));
    return true;
  }

  // ---- progress --------------------------------------------------------------------------------

  private turn(now: number): number {
    let completed = 0;
    try {
      completed = this.drain();
      // Post what waited on EAGAIN, in order, until the provider pushes back again.
      while (this.queued.length > 0 && this.post(this.queued[0]!)) this.queued.shift();
      if (this.queued.length > 0) completed += this.drain();
    } catch (e) {
      this.fail(e);
    }
    this.expire(now);
    return completed;
  }

  /** Reads the completion queue until it is empty; settles the operations it names. */
  private drain(): number {
    let total = 0;
    for (;;) {
      const n = Number(this.ops.cqRead(this.cq, this.cqBuf, CQ_BATCH));
      if (n > 0) {
        for (let i = 0; i < n; i++) {
          const op = this.takeOp(this.cqWords[(i * CQ_ENTRY) / 4]!);
          if (op !== undefined) {
            this.counts.completed++;
            op.resolve();
          }
        }
        total += n;
        if (n < CQ_BATCH) return total;
        continue;
      }
      if (n === -FI.EAGAIN || n === 0) return total;
      if (n === -FI.EAVAIL) {
        if (!this.readError()) return total; // announced but not there yet: next turn
        total++;
        continue;
      }
      throw new FabricError("fi_cq_read", -n, this.fi.strerror(-n));
    }
  }

  /** -FI_EAVAIL: one error entry; its operation fails with the provider's own words. False if none was read. */
  private readError(): boolean {
    this.errBuf.fill(0); // err_data_size 0: the provider lends its own err_data buffer
    const ret = Number(this.ops.cqReadErr(this.cq, this.errBuf, 0));
    if (ret < 0) {
      if (ret === -FI.EAGAIN) return false;
      throw new FabricError("fi_cq_readerr", -ret, this.fi.strerror(-ret));
    }
    if (ret === 0) return false;
    const dv = this.errView;
    const op = this.takeOp(dv.getUint32(L.fi_cq_err_entry.op_context, true));
    if (op === undefined) return true; // an operation that already timed out
    const err = Math.abs(dv.getInt32(L.fi_cq_err_entry.err, true));
    const provErrno = dv.getInt32(L.fi_cq_err_entry.prov_errno, true);
    const errData = Number(dv.getBigUint64(L.fi_cq_err_entry.err_data, true));
    this.counts.failed++;
    const text = readCString(Number(this.ops.cqStrError(this.cq, provErrno, errData || null, this.strBuf, this.strBuf.length)) || 0) ?? "";
    op.reject(new RmaError(op, err, this.fi.strerror(err), provErrno, text));
    return true;
  }

  private takeOp(id: number): Operation | undefined {
    const op = this.pending.get(id);
    if (op !== undefined) this.pending.delete(id);
    return op;
  }

  /** Operations past their deadline fail with RmaTimeoutError (posted or still queued). */
  private expire(now: number): void {
    for (const op of this.pending.values()) {
      if (op.deadline <= now) {
        this.pending.delete(op.id);
        this.counts.timedOut++;
        op.reject(new RmaTimeoutError(op, this.timeoutMs));
      }
    }
    while (this.queued.length > 0 && this.queued[0]!.deadline <= now) {
      const op = this.queued.shift()!;
      this.counts.timedOut++;
      op.reject(new RmaTimeoutError(op, this.timeoutMs));
    }
  }

  /** The completion queue failed: every operation fails with it, and so will later ones. */
  private fail(e: unknown): void {
    this.broken = e;
    for (const op of this.pending.values()) op.reject(e);
    for (const op of this.queued) op.reject(e);
    this.pending.clear();
    this.queued.length = 0;
  }

  private assertOpen(): void {
    if (this.closed_) throw new AllocToolsError("ENDPOINT_CLOSED", "the endpoint is closed");
  }
}

function checkOptions(o: EndpointOptions): Required<EndpointOptions> {
  if (o === null || typeof o !== "object") throw new TypeError("Endpoint options must be an object");
  const int = (name: keyof EndpointOptions, v: unknown, d: number, min: number): number => {
    if (v === undefined) return d;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) throw new RangeError(`options.${name} must be an integer >= ${min}, got ${String(v)}`);
    return v;
  };
  return {
    cqSize: int("cqSize", o.cqSize, 256, 1),
    avCount: int("avCount", o.avCount, 64, 1),
    timeoutMs: int("timeoutMs", o.timeoutMs, 10_000, 1),
  };
}
