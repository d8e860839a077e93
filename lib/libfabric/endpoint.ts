// Endpoint: a reliable-datagram (FI_EP_RDM) libfabric endpoint with its own completion queue and
// address vector, that reads and writes peers' registered memory (RMA) from pooled regions.
//
// - Three ways to wait (lib/engine/rma-endpoint.ts): a Promise (write/read), the calling thread
//   (writeSync/readSync), or an operation id (postWrite/postRead, poll, completed).
// - Operations live in preallocated slots (operation.ts); the slot's id travels as the libfabric
//   context (a small integer, not a pointer: the provider is not asked for FI_CONTEXT). The sync
//   and post forms allocate nothing per call on the success path.
// - Writes are delivery-complete: the endpoint is opened with FI_DELIVERY_COMPLETE in its default
//   transmit op flags (tx_attr->op_flags of a private copy of the fi_info), so a write completes
//   only once its data is in the target's memory. Without it tcp;ofi_rxm completes a write when
//   the bytes have left the socket, and a peer told "done" could read stale memory.
// - -FI_EAGAIN (a connection being made, a full queue) is not an error: the operation waits in a
//   queue and is posted again, in order, on the next progress turn.
// - Every operation has a deadline (options.timeoutMs): udp;ofi_rxd never completes a write with a
//   bad key, so a RmaTimeoutError is what the caller gets instead of a hang. A timed-out operation
//   may still be posted: its region stays pinned until it completes late or the endpoint closes.
// - The local region of an operation is pinned (`region.inFlight`) from post until the transport
//   no longer touches it; its pool refuses to release, unmap or close it (BUSY) meanwhile.
// - Progress: see progress.ts. progress()/poll() are one synchronous turn; startProgress() keeps a
//   target that only exposes memory progressing.
import { libfabric, nativeView, readPtr, readU64, readCString, type Libfabric, type RmaOps } from "../../ffi/libfabric.ts";
import { FabricError, AllocToolsTypeError, AllocToolsRangeError } from "../../ffi/errors.ts";
import { FI, L, layout } from "../../ffi/layout.ts";
import { AllocToolsError } from "../errors.ts";
import { inspectCustom, oneLine } from "../inspect.ts";
import type { LibfabricProvider } from "./libfabric-provider.ts";
import { LocalRange, resolveLocal } from "../engine/local-memory.ts";
import { Operation, OperationTable, Outcome, Wait } from "../engine/operation.ts";
import { checkProgressInterval, progressEngine, type Progressable } from "../engine/progress.ts";
import { RemoteRegion } from "../engine/remote-region.ts";
import { RmaError, RmaTimeoutError, type RmaKind } from "../engine/rma-errors.ts";
import type { LocalMemory, RmaEndpoint, RmaEndpointStats } from "../engine/rma-endpoint.ts";
import { RegistrationCache } from "../cache/registration-cache.ts";
import { beginOperation, endOperation, type MemoryRegionImpl } from "../memory/region.ts";

/** A peer's address in this endpoint's address vector (`fi_addr_t`), from `insert()`. */
export type PeerAddress = bigint;

/** Options of `new Endpoint(provider, options)`; unknown keys are refused. */
export interface EndpointOptions {
  /** Completion queue entries; default 256, at most the provider's tx_attr->size + rx_attr->size. */
  cqSize?: number;
  /** Address vector slots (peers); default 64, at most the provider's domain_attr->ep_cnt. */
  avCount?: number;
  /** Milliseconds an operation may take before it fails with RmaTimeoutError; default 10 000. */
  timeoutMs?: number;
  /**
   * Microseconds `write`/`read` poll inline, right after posting, before handing the wait to the
   * event loop; default 20, 0 to never spin. The event loop is never blocked longer than this.
   */
  spinMicroseconds?: number;
  /**
   * A registration cache over this endpoint's provider: every form of write/read then also takes a
   * plain ArrayBufferView as local memory, registered through the cache (zero-copy) and given back
   * to it when the transport is done with the operation.
   */
  cache?: RegistrationCache;
}

/** Counters since the endpoint opened. */
export type EndpointStats = RmaEndpointStats;

export type { LocalMemory } from "../engine/rma-endpoint.ts";

const CQ_BATCH = 16;
const CQ_ENTRY = layout.fi_cq_data_entry.size;
const ERR_ENTRY = layout.fi_cq_err_entry.size;
/** Timeouts have millisecond granularity: deadlines are scanned at most this often (ms). */
const EXPIRY_PERIOD_MS = 1;
/** At close, operations in flight get at most this long to complete after fi_cancel (ms). */
const CLOSE_DRAIN_MS = 1000;
/**
 * The open endpoints of this process by name (hex). Two endpoints of one process may be peers; on
 * shm the initiator then uses the target's own mapping, which the target's close unmaps: the
 * target's close waits for them, and operations towards a closed one are refused.
 */
const openEndpoints = new Map<string, Endpoint>();
const OPTION_KEYS: ReadonlySet<string> = new Set(["cqSize", "avCount", "timeoutMs", "spinMicroseconds", "cache"]);

/**
 * An RMA endpoint on a LibfabricProvider's domain (see the file header for the semantics).
 *
 * Lifetime: open with `new Endpoint(provider)`, close with `close()` (or `using`); the provider
 * closes its endpoints first. Closing cancels and drains what is in flight, then closes endpoint,
 * completion queue and address vector.
 *
 * Hot-path-safe (no allocation on success): `writeSync`, `readSync`, `postWrite`, `postRead`,
 * `poll`, `completed`, `progress`. `write`/`read` allocate their Promise.
 */
export class Endpoint implements RmaEndpoint<PeerAddress>, Progressable {
  /** The provider whose domain the endpoint is opened on. */
  readonly provider: LibfabricProvider;
  /** This endpoint's address: give these bytes to a peer for its `insert()`. */
  readonly name: Uint8Array;
  /** Milliseconds an operation may take before it fails with RmaTimeoutError. */
  readonly timeoutMs: number;
  /** Microseconds write/read poll inline before waiting on the event loop. */
  readonly spinMicroseconds: number;
  /** Where plain views given as local memory are registered (EndpointOptions.cache); null: views are refused. */
  readonly cache: RegistrationCache | null;
  /** The largest single transfer the provider takes (ep_attr->max_msg_size). */
  readonly maxMessageSize: number;
  /** How a write's completion is made to mean "in the target's memory". */
  readonly writeCompletion = "FI_DELIVERY_COMPLETE" as const;

  private readonly fi: Libfabric;
  private readonly ep: number;
  private readonly cq: number;
  private readonly av: number;
  private readonly ops: RmaOps;
  private readonly table = new OperationTable();
  /** Operations that got -FI_EAGAIN, to post again in order. */
  private readonly queued: Operation[] = [];
  private readonly peers = new Set<bigint>();
  /** The peer of the last accepted operation (-1n: none yet). */
  private lastPeer = -1n;
  /** Peers that are endpoints of this process (see openEndpoints). */
  private readonly localPeers = new Map<bigint, Endpoint>();
  /** Endpoints of this process that inserted this one as a peer. */
  private readonly localInitiators = new Set<Endpoint>();
  private closed_ = false;
  private posted = 0;
  private retried = 0;
  private completedCount = 0;
  private failed = 0;
  private timedOut = 0;
  private interval = -1;
  private nextExpiry = 0;
  /** Completion entries, read as 32-bit words: op_context's low half is the id. */
  private readonly cqBuf = new Uint8Array(CQ_BATCH * CQ_ENTRY);
  private readonly cqWords = new Uint32Array(this.cqBuf.buffer);
  private readonly errBuf = new Uint8Array(ERR_ENTRY);
  private readonly errView = new DataView(this.errBuf.buffer);
  private readonly strBuf = new Uint8Array(256);
  /** The local memory of the operation being posted, refilled per call. */
  private readonly local = new LocalRange();
  /** An endpoint-wide failure (fi_cq_read itself failed): every later operation gets it. */
  private broken: unknown = null;

  /**
   * Opens an RDM endpoint on `provider`'s domain with its own completion queue and address vector,
   * writes completing with FI_DELIVERY_COMPLETE. Throws AllocToolsError NOT_SUPPORTED when
   * `provider` is not a LibfabricProvider opened with endpointType "rdm", PROVIDER_CLOSED when it is
   * closed, TypeError for an unknown option or a cache over another provider, RangeError for an
   * option out of the provider's limits, FabricError when libfabric refuses; nothing stays open
   * after a throw.
   */
  constructor(provider: LibfabricProvider, options: EndpointOptions = {}) {
    if ((provider as { kind?: unknown } | null | undefined)?.kind !== "libfabric") {
      const given = (provider as { name?: unknown } | null | undefined)?.name ?? String(provider);
      throw new AllocToolsError("NOT_SUPPORTED", `Endpoint needs a LibfabricProvider (e.g. openProvider({ provider: "tcp" })), got ${String(given)}: only libfabric providers move data between processes`);
    }
    if (provider.closed) throw new AllocToolsError("PROVIDER_CLOSED", `provider ${provider.name} is closed`);
    if (provider.info.endpointType !== "rdm") {
      throw new AllocToolsError("NOT_SUPPORTED", `Endpoint needs a provider opened with endpointType "rdm", not ${String(provider.info.endpointType)}`);
    }
    const fi = (this.fi = libfabric());
    const { domain, info } = provider.handles;
    const o = checkOptions(options, providerLimits(info));
    const cache = options.cache ?? null;
    if (cache !== null && !(cache instanceof RegistrationCache && cache.provider === provider)) {
      throw new AllocToolsTypeError("options.cache must be a RegistrationCache over this endpoint's provider");
    }
    this.cache = cache;
    this.provider = provider;
    this.timeoutMs = o.timeoutMs;
    this.spinMicroseconds = o.spinMicroseconds;
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
      if (provider.name === "shm") fi.setName(ep, uniqueShmName());
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
    openEndpoints.set(Buffer.from(this.name).toString("hex"), this);
  }

  /** Whether close() was called. */
  get closed(): boolean {
    return this.closed_;
  }

  /** Operations posted (or waiting to be) whose caller still waits for them. */
  get pendingCount(): number {
    return this.table.waiting;
  }

  /** Operations the transport still holds, timed-out ones included (their regions stay pinned). */
  get inTransportCount(): number {
    return this.table.inTransport;
  }

  /** Counters since the endpoint opened. */
  stats(): EndpointStats {
    return { posted: this.posted, retried: this.retried, completed: this.completedCount, failed: this.failed, timedOut: this.timedOut };
  }

  /** One line for console.log: provider, pending operations, progress interval, closed. */
  [inspectCustom](): string {
    return oneLine("Endpoint", { provider: this.provider.name, pending: this.pendingCount, progressInterval: this.interval, closed: this.closed });
  }

  /** The interval asked for with startProgress(), -1 when not progressing in the background. */
  get progressInterval(): number {
    return this.interval;
  }

  /** Adds a peer's `name` to the address vector; use the result as `peer` in read/write. */
  insert(peerName: Uint8Array): PeerAddress {
    this.assertOpen();
    if (!(peerName instanceof Uint8Array) || peerName.length === 0) throw new AllocToolsTypeError("insert takes a peer's endpoint name (non-empty Uint8Array)");
    const addr = this.fi.avInsert(this.av, peerName);
    this.peers.add(addr);
    const local = openEndpoints.get(Buffer.from(peerName).toString("hex"));
    if (local !== undefined) {
      this.localPeers.set(addr, local);
      local.localInitiators.add(this);
    }
    return addr;
  }

  // ---- the promise form ---------------------------------------------------------------------------

  /**
   * Writes `length` bytes from `source` to the start of `target` on `peer`. Resolves once the data
   * is in the target's memory (FI_DELIVERY_COMPLETE). Use `target.subregion(offset, length)` to
   * write elsewhere in a remote region.
   *
   * Throws synchronously, having posted nothing, when the request is refused: RangeError (out of
   * the local or remote bounds, bad length, unknown peer), TypeError (not this library's region or
   * pointer), or AllocToolsError (closed endpoint, released or foreign region). The promise rejects
   * for what happens after posting: RmaError (error completion), RmaTimeoutError, FabricError,
   * AllocToolsError ENDPOINT_CLOSED.
   */
  write(source: LocalMemory | ArrayBufferView, length: number, peer: PeerAddress, target: RemoteRegion): Promise<void> {
    return this.promise(this.begin("write", source, length, peer, target, Wait.Promise));
  }

  /** Reads `length` bytes from the start of `target` on `peer` into `destination`; errors as for write(). */
  read(destination: LocalMemory | ArrayBufferView, length: number, peer: PeerAddress, target: RemoteRegion): Promise<void> {
    return this.promise(this.begin("read", destination, length, peer, target, Wait.Promise));
  }

  // ---- the sync form ------------------------------------------------------------------------------

  /**
   * write(), waiting on the calling thread: posts, then polls until the operation completes (this
   * endpoint and the other endpoints of this process, one of which may be the target). Throws
   * where write() would reject. Allocates nothing on the success path.
   */
  writeSync(source: LocalMemory | ArrayBufferView, length: number, peer: PeerAddress, target: RemoteRegion): void {
    this.waitSync(this.begin("write", source, length, peer, target, Wait.Sync));
  }

  /** read(), waiting on the calling thread; see writeSync. */
  readSync(destination: LocalMemory | ArrayBufferView, length: number, peer: PeerAddress, target: RemoteRegion): void {
    this.waitSync(this.begin("read", destination, length, peer, target, Wait.Sync));
  }

  // ---- the post form ------------------------------------------------------------------------------

  /**
   * Posts a write and returns its operation id; drive it with poll() and ask with completed(id).
   * Refusals throw as for write(). Allocates nothing on the success path.
   */
  postWrite(source: LocalMemory | ArrayBufferView, length: number, peer: PeerAddress, target: RemoteRegion): number {
    return this.begin("write", source, length, peer, target, Wait.Post).id;
  }

  /** Posts a read and returns its operation id; see postWrite. */
  postRead(destination: LocalMemory | ArrayBufferView, length: number, peer: PeerAddress, target: RemoteRegion): number {
    return this.begin("read", destination, length, peer, target, Wait.Post).id;
  }

  /**
   * One progress turn of this endpoint that never blocks and never throws: posts what waited on
   * -FI_EAGAIN, reads completions, expires timed-out operations. Returns the completions read.
   * (A peer in this process needs its own poll() or the event loop.)
   */
  poll(): number {
    if (this.closed_) return 0;
    return this.turn(performance.now());
  }

  /**
   * Whether operation `id` (from postWrite/postRead) has completed. Returns true once, or throws
   * the operation's error (RmaError, RmaTimeoutError, FabricError, AllocToolsError
   * ENDPOINT_CLOSED); either retires the id. RangeError for an unknown or retired id.
   */
  completed(id: number): boolean {
    const op = this.table.byId(id);
    if (op === null || op.wait !== Wait.Post) throw new AllocToolsRangeError(`operation id ${String(id)} is not a pending postWrite/postRead of this endpoint (unknown, or already retired by completed())`);
    if (op.outcome === Outcome.Pending) return false;
    const error = op.error;
    this.table.retire(op);
    if (error !== null) throw error;
    return true;
  }

  // ---- progress -----------------------------------------------------------------------------------

  /**
   * One synchronous progress turn on this endpoint: like poll(), and throws a FabricError when
   * the completion queue itself failed.
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
    this.interval = checkProgressInterval(intervalMs);
    progressEngine.wake();
  }

  /** Stops what startProgress() started. */
  stopProgress(): void {
    this.interval = -1;
  }

  /**
   * Closes the endpoint. Operations still queued fail with AllocToolsError ENDPOINT_CLOSED.
   * Operations posted are cancelled (fi_cancel) and drained: this endpoint and the others of the
   * process (which may be their peers, or have operations aimed at this one) are polled until
   * nothing is in flight, for at most the smaller of `timeoutMs` and 1 s. Then endpoint, completion
   * queue and address vector close (children before parents), and operations the transport never
   * returned fail with ENDPOINT_CLOSED and unpin their regions. Idempotent.
   */
  close(): void {
    if (this.closed_) return;
    this.closed_ = true;
    this.interval = -1;
    this.drainForClose();
    openEndpoints.delete(Buffer.from(this.name).toString("hex"));
    for (const target of this.localPeers.values()) target.localInitiators.delete(this);
    progressEngine.remove(this);
    this.provider.disown(this);
    const errors: unknown[] = [];
    const attempt = (f: () => void) => { try { f(); } catch (e) { errors.push(e); } };
    attempt(() => this.provider.detachEndpoint(this.ep));
    attempt(() => this.fi.close(this.ep, "endpoint"));
    attempt(() => this.fi.close(this.cq, "cq"));
    attempt(() => this.fi.close(this.av, "av"));
    // The endpoint is gone: nothing of the transport touches these operations' memory any more.
    for (const op of this.table.slots) if (op.inTransport) this.finish(op, closedError());
    if (errors.length > 0) throw errors.length === 1 ? errors[0] : new AggregateError(errors, "closing endpoint");
  }

  /** `using endpoint = new Endpoint(provider)`: the same as `close()`. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** @internal Progressable: one turn that never throws (failures settle the operations). */
  pump(now: number): number {
    if (this.closed_) return 0;
    return this.turn(now);
  }

  // ---- posting ------------------------------------------------------------------------------------

  /** Checks a request, takes a slot, pins the local region and posts (or queues on EAGAIN). */
  private begin(kind: RmaKind, local: LocalMemory | ArrayBufferView, length: number, peer: PeerAddress, target: RemoteRegion, wait: Wait): Operation {
    this.assertOpen();
    if (!Number.isSafeInteger(length) || length <= 0) throw new AllocToolsRangeError(`${kind} length must be a positive integer, got ${String(length)}`);
    if (length > this.maxMessageSize) throw new AllocToolsRangeError(`${kind} of ${length} bytes is above the provider's max_msg_size (${this.maxMessageSize})`);
    if (!(target instanceof RemoteRegion)) throw new AllocToolsTypeError(`${kind} target must be a RemoteRegion (region.remote(), RemoteRegion.fromBytes())`);
    if (length > target.length) {
      throw new AllocToolsRangeError(`${kind} of ${length} bytes does not fit the remote region's ${target.length} bytes (refused before posting)`);
    }
    if (peer !== this.lastPeer) {
      if (typeof peer !== "bigint" || !this.peers.has(peer)) throw new AllocToolsRangeError(`peer ${String(peer)} was not inserted on this endpoint`);
      this.lastPeer = peer; // a repeated peer skips the set lookup
    }
    if (this.localPeers.size > 0 && this.localPeers.get(peer)?.closed_ === true) {
      throw new AllocToolsError("ENDPOINT_CLOSED", `${kind}: the peer is an endpoint of this process, and it is closed`);
    }
    const cached = this.cache !== null && ArrayBuffer.isView(local);
    const range = cached ? this.resolveCached(kind, local, length) : this.resolveLocalMemory(kind, local as LocalMemory, length);
    const region = range.region!;
    let op: Operation;
    try {
      beginOperation(region); // may refuse (POOL_CLOSED: a shared pool its owner closed), so before anything is taken
      try {
        op = this.table.take(kind, wait, region, range.address, length, peer, target, performance.now() + this.timeoutMs);
      } catch (e) {
        endOperation(region);
        throw e;
      }
    } catch (e) {
      if (cached) this.cache!.release(region);
      throw e;
    }
    op.cache = cached ? this.cache : null;
    if (this.broken !== null) {
      this.finish(op, this.broken);
      return op;
    }
    // Keep the order of operations: behind anything already waiting on EAGAIN.
    const ret = this.queued.length > 0 ? -FI.EAGAIN : this.post(op);
    if (ret === -FI.EAGAIN) {
      op.queued = true;
      this.queued.push(op);
    } else if (ret !== 0) {
      this.finish(op, this.postError(op, ret));
    }
    return op;
  }

  /**
   * The local memory of one operation, checked: this library's region or pointer, in range, out
   * of its pool, and registered on this endpoint's domain. (The one place a registration cache can
   * resolve a plain buffer.)
   */
  private resolveLocalMemory(kind: RmaKind, local: LocalMemory, length: number): LocalRange {
    const range = this.local;
    resolveLocal(kind, local, length, range);
    this.assertSameDomain(kind, range.region!);
    return range;
  }

  /** A plain view through the cache: a cached region over it, acquired until the operation ends. */
  private resolveCached(kind: RmaKind, view: ArrayBufferView, length: number): LocalRange {
    const cache = this.cache!;
    const region = cache.resolveLocal(kind, view, length);
    try {
      cache.assertUsable(kind, region);
      return this.resolveLocalMemory(kind, region, length);
    } catch (e) {
      cache.release(region);
      throw e;
    }
  }

  /** FOREIGN_REGION unless the region is registered with this endpoint's provider. */
  private assertSameDomain(kind: RmaKind, region: MemoryRegionImpl): void {
    const pool = region.owner as { provider?: unknown } | null;
    // Same domain, not same object: a Worker's view of a shared provider registers there too.
    if (pool !== null && pool.provider !== undefined && pool.provider !== this.provider && !this.provider.sharesDomainWith(pool.provider)) {
      throw new AllocToolsError("FOREIGN_REGION", `${kind}: the local region is registered with another provider than this endpoint's`);
    }
  }

  /** Posts one operation (fi_write/fi_read); returns what the provider said (0, -FI_EAGAIN, ...). */
  private post(op: Operation): number {
    const fn = op.kind === "write" ? this.ops.write : this.ops.read;
    const ret = fn(this.ep, op.local, op.length, op.desc, op.peer, op.remoteAddress, op.key, op.id) as number;
    if (ret === 0) this.posted++;
    else if (ret === -FI.EAGAIN) this.retried++;
    else this.failed++;
    return ret;
  }

  private postError(op: Operation, ret: number): FabricError {
    return new FabricError(`fi_${op.kind}`, -ret, this.fi.strerror(-ret),
      `${op.length} bytes at remote 0x${op.remoteAddress.toString(16)} key ${String(op.key)}`);
  }

  // ---- waiting ------------------------------------------------------------------------------------

  /** Spins up to spinMicroseconds, then hands the wait to the event loop. */
  private promise(op: Operation): Promise<void> {
    if (op.outcome === Outcome.Pending && this.spinMicroseconds > 0) {
      const start = performance.now();
      const end = start + this.spinMicroseconds / 1000;
      let now = start;
      do {
        progressEngine.pumpAll(now);
        now = performance.now();
      } while (op.outcome === Outcome.Pending && now < end);
    }
    if (op.outcome !== Outcome.Pending) {
      const error = op.error;
      this.table.retire(op);
      return error === null ? Promise.resolve() : Promise.reject(error);
    }
    const promise = new Promise<void>((resolve, reject) => {
      op.resolve = resolve;
      op.reject = reject;
    });
    progressEngine.wake();
    return promise;
  }

  /** Polls until `op` has an outcome; retires it; throws its error. */
  private waitSync(op: Operation): void {
    while (op.outcome === Outcome.Pending) progressEngine.pumpAll(performance.now());
    const error = op.error;
    this.table.retire(op);
    if (error !== null) throw error;
  }

  // ---- progress -----------------------------------------------------------------------------------

  private turn(now: number): number {
    let completed = 0;
    try {
      completed = this.drain();
      // Post what waited on EAGAIN, in order, until the provider pushes back again.
      if (this.queued.length > 0) {
        this.repost();
        if (this.queued.length > 0) completed += this.drain();
      }
    } catch (e) {
      this.fail(e);
    }
    if (now >= this.nextExpiry) {
      this.nextExpiry = now + EXPIRY_PERIOD_MS;
      this.expire(now);
    }
    return completed;
  }

  private repost(): void {
    const queued = this.queued;
    while (queued.length > 0) {
      const op = queued[0]!;
      const ret = this.post(op);
      if (ret === -FI.EAGAIN) return;
      queued.shift();
      op.queued = false;
      if (ret !== 0) this.finish(op, this.postError(op, ret));
    }
  }

  /** Reads the completion queue until it is empty; settles the operations it names. */
  private drain(): number {
    let total = 0;
    for (;;) {
      const n = this.ops.cqRead(this.cq, this.cqBuf, CQ_BATCH) as number;
      if (n > 0) {
        for (let i = 0; i < n; i++) {
          const op = this.table.inTransportById(this.cqWords[(i * CQ_ENTRY) >> 2]!);
          if (op !== null) {
            this.completedCount++;
            this.finish(op, null);
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
    const ret = this.ops.cqReadErr(this.cq, this.errBuf, 0) as number;
    if (ret < 0) {
      if (ret === -FI.EAGAIN) return false;
      throw new FabricError("fi_cq_readerr", -ret, this.fi.strerror(-ret));
    }
    if (ret === 0) return false;
    const dv = this.errView;
    const op = this.table.inTransportById(dv.getUint32(L.fi_cq_err_entry.op_context, true));
    if (op === null) return true;
    const err = Math.abs(dv.getInt32(L.fi_cq_err_entry.err, true));
    const provErrno = dv.getInt32(L.fi_cq_err_entry.prov_errno, true);
    const errData = Number(dv.getBigUint64(L.fi_cq_err_entry.err_data, true));
    this.failed++;
    const text = readCString(Number(this.ops.cqStrError(this.cq, provErrno, errData || null, this.strBuf, this.strBuf.length)) || 0) ?? "";
    this.finish(op, new RmaError(op.describe(), err, this.fi.strerror(err), provErrno, text));
    return true;
  }

  /**
   * The transport is done with `op` (completion, error completion, refused post, close): unpin
   * its region, and settle it unless it already timed out.
   */
  private finish(op: Operation, error: unknown): void {
    if (op.queued) {
      op.queued = false;
      const i = this.queued.indexOf(op);
      if (i >= 0) this.queued.splice(i, 1);
    }
    const cache = op.cache;
    const region = op.region;
    op.cache = null;
    this.table.leaveTransport(op);
    // A cached region goes back once the transport is done with it (a closed cache took it back).
    if (cache !== null && region !== null && !cache.closed && region.inUse) cache.release(region);
    if (op.outcome === Outcome.Pending) this.table.settle(op, error);
  }

  /** Operations past their deadline fail with RmaTimeoutError; posted ones stay pinned. */
  private expire(now: number): void {
    if (this.table.waiting === 0) return;
    const slots = this.table.slots;
    for (let i = 0; i < slots.length; i++) {
      const op = slots[i]!;
      if (op.outcome !== Outcome.Pending || op.deadline > now) continue;
      this.timedOut++;
      const error = new RmaTimeoutError(op.describe(), this.timeoutMs);
      // Never posted: the transport does not have it.
      if (op.queued) this.finish(op, error);
      else this.table.settle(op, error);
    }
  }

  /**
   * Queued operations fail; posted ones are cancelled and drained, and so are the operations of
   * endpoints of this process that may be aimed at this one (bounded), see close().
   */
  private drainForClose(): void {
    for (const op of this.queued.slice()) this.finish(op, closedError());
    if (!this.busyForClose()) return;
    for (const op of this.table.slots) if (op.inTransport) this.ops.cancel(this.ep, op.id);
    const deadline = performance.now() + Math.min(this.timeoutMs, CLOSE_DRAIN_MS);
    // closed_ is set, so pump() skips this endpoint: drain it here, and the others of the process.
    for (let now = performance.now(); this.busyForClose() && now < deadline; now = performance.now()) {
      try {
        this.drain();
      } catch {
        break; // the queue itself failed: nothing more will come out of it
      }
      progressEngine.pumpAll(now);
    }
  }

  /** Operations of this endpoint in transport, or pending ones of endpoints of this process that have it as a peer. */
  private busyForClose(): boolean {
    if (this.table.inTransport > 0) return true;
    for (const initiator of this.localInitiators) if (!initiator.closed_ && initiator.pendingCount > 0) return true;
    return false;
  }

  /** The completion queue failed: every operation fails with it, and so will later ones. */
  private fail(e: unknown): void {
    this.broken = e;
    for (const op of this.queued.slice()) this.finish(op, e);
    for (const op of this.table.slots) this.table.settle(op, e);
  }

  private assertOpen(): void {
    if (this.closed_) throw new AllocToolsError("ENDPOINT_CLOSED", "the endpoint is closed");
  }
}

/** Random per module instance (each Worker loads its own), so that names differ across Workers of one process. */
const shmNameTag = Array.from(crypto.getRandomValues(new Uint8Array(6)), (b) => b.toString(16).padStart(2, "0")).join("");
let shmEndpoints = 0;

/**
 * A name for a shm endpoint that no other endpoint has, even a dead process's. libfabric's own is
 * pid:uid:index, and the shm file of a process killed with SIGKILL stays in /dev/shm under it: a
 * later process given the same pid then fails fi_enable with EBUSY. NUL-terminated, as shm copies it.
 */
function uniqueShmName(): Uint8Array {
  return new TextEncoder().encode(`${process.pid}:${shmNameTag}:${shmEndpoints++}\0`);
}

function closedError(): AllocToolsError {
  return new AllocToolsError("ENDPOINT_CLOSED", "the endpoint was closed before the operation completed");
}

/** What the provider's fi_info allows; Endpoint options are checked against it. */
interface ProviderLimits {
  /** tx_attr->size + rx_attr->size: the most completions the queue can ever need to hold. */
  readonly queueEntries: number;
  readonly txSize: number;
  readonly rxSize: number;
  /** domain_attr->ep_cnt: addressable endpoints. */
  readonly endpoints: number;
}

function providerLimits(info: number): ProviderLimits {
  const tx = readPtr(info, L.fi_info.tx_attr);
  const rx = readPtr(info, L.fi_info.rx_attr);
  const domain = readPtr(info, L.fi_info.domain_attr);
  const bounded = (v: bigint) => (v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v));
  const txSize = bounded(readU64(tx, L.fi_tx_attr.size));
  const rxSize = bounded(readU64(rx, L.fi_rx_attr.size));
  return { queueEntries: txSize + rxSize, txSize, rxSize, endpoints: bounded(readU64(domain, L.fi_domain_attr.ep_cnt)) };
}

function checkOptions(o: EndpointOptions, limits: ProviderLimits): Required<Omit<EndpointOptions, "cache">> {
  if (o === null || typeof o !== "object") throw new AllocToolsTypeError("Endpoint options must be an object");
  for (const key of Object.keys(o)) {
    if (!OPTION_KEYS.has(key)) throw new AllocToolsTypeError(`unknown Endpoint option ${JSON.stringify(key)}; known: ${[...OPTION_KEYS].join(", ")}`);
  }
  const int = (name: keyof EndpointOptions, v: unknown, d: number, min: number, max: number, limit: string): number => {
    if (v === undefined) return d;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) throw new AllocToolsRangeError(`options.${name} must be an integer >= ${min}, got ${String(v)}`);
    if (v > max) throw new AllocToolsRangeError(`options.${name} ${v} is above ${limit}`);
    return v;
  };
  const cqLimit = `the provider's queues: tx_attr->size ${limits.txSize} + rx_attr->size ${limits.rxSize} = ${limits.queueEntries}`;
  const cqSize = int("cqSize", o.cqSize, Math.min(256, limits.queueEntries), 1, limits.queueEntries, cqLimit);
  return {
    cqSize,
    avCount: int("avCount", o.avCount, Math.min(64, limits.endpoints), 1, limits.endpoints, `the provider's domain_attr->ep_cnt ${limits.endpoints}`),
    timeoutMs: int("timeoutMs", o.timeoutMs, 10_000, 1, 2 ** 31 - 1, "2^31 - 1 ms (a timer's range)"),
    spinMicroseconds: int("spinMicroseconds", o.spinMicroseconds, 20, 0, 1_000_000, "1 000 000 (one second)"),
  };
}
