// MpiEndpoint: the RmaEndpoint of an MpiProvider's window (see rma-endpoint.ts for the contract).
//
// - Peers are ranks. An endpoint's `name` is 8 bytes: "ATMP" and its rank (u32 little-endian);
//   `insert(name)` checks it and returns the rank, so MpiJob.exchangeNames and code written for
//   libfabric endpoints work unchanged. Any rank of the job may be passed as `peer` without insert().
// - A RemoteRegion's key names the window (MpiProvider): a key of another window is refused.
// - Sync forms: MPI_Put / MPI_Get, then MPI_Win_flush(rank): back when the data is in the target's
//   memory (write) or in ours (read). A flush has no deadline in MPI: the sync forms are bounded
//   by the MPI library, not by `timeoutMs`.
// - Post and promise forms: MPI_Rput / MPI_Rget, then MPI_Test on each progress turn. A read is
//   done when its request is; a write's request completing only frees the origin buffer, so the
//   write is done after MPI_Win_flush(rank) returns (remote completion, as MPI requires).
// - An operation past `timeoutMs` fails with RmaTimeoutError; its request stays tested, and its
//   local region stays pinned (`inFlight`), until MPI no longer touches the memory.
// - Local memory is any region or pointer of this library (MPI reads and writes the origin buffer
//   itself: it need not be attached to the window).
import { read, type Pointer } from "bun:ffi";
import { MpiError, type MpiLibrary, type MpiRmaOps } from "../../ffi/mpi.ts";
import * as libc from "../../ffi/libc.ts";
import { AllocToolsError, AllocToolsTypeError, AllocToolsRangeError } from "../errors.ts";
import { LocalRange, resolveLocal } from "../engine/local-memory.ts";
import type { MpiProvider } from "./mpi-provider.ts";
import { checkProgressInterval, progressEngine, type Progressable } from "../engine/progress.ts";
import { beginOperation, endOperation, type MemoryRegionImpl } from "../memory/region.ts";
import { RemoteRegion } from "../engine/remote-region.ts";
import { peerNameBytes, peerNameString } from "../engine/peer-name.ts";
import { RmaTimeoutError, type RmaKind } from "../engine/rma-errors.ts";
import type { LocalMemory, RmaEndpoint, RmaEndpointStats } from "../engine/rma-endpoint.ts";

/** A peer of an MpiEndpoint: its rank in the job. */
export type MpiRank = number;

/** Options of an MpiEndpoint. */
export interface MpiEndpointOptions {
  /** Milliseconds a posted operation may take before it fails with RmaTimeoutError; default 10 000. */
  timeoutMs?: number;
  /** Operations in flight at once (request slots); default 256. */
  maxPending?: number;
}

/** Bytes of an MpiEndpoint's name: magic "ATMP", then the rank as u32 little-endian. */
const NAME_BYTES = 8;
const NAME_MAGIC = [0x41, 0x54, 0x4d, 0x50] as const;
/** MPI counts are C ints. */
const MAX_COUNT = 0x7fff_ffff;
const MAX_ID = 0x7fff_ffff;
const REQUEST_BYTES = 8;

const enum State { Free, Posted, Done, Failed }

/** One operation between post and retirement; recycled through the endpoint's free list. */
class Operation {
  id = 0;
  state = State.Free;
  kind: RmaKind = "write";
  rank = 0;
  length = 0;
  remoteAddress = 0n;
  key = 0n;
  deadline = 0;
  region: MemoryRegionImpl | null = null;
  error: unknown = null;
  /** Settled by the promise form; null for the post form. */
  resolve: (() => void) | null = null;
  reject: ((e: unknown) => void) | null = null;
  /** Past its deadline: already failed for the caller, still tested until MPI lets go. */
  abandoned = false;
  /** A post-form operation whose id completed() has not retired yet. */
  awaitingCaller = false;
  constructor(readonly slot: number) {}
}

/**
 * RMA over an MpiProvider's dynamic window; peers are ranks (see the file header for the
 * semantics of each form).
 *
 * Lifetime: `new MpiEndpoint(provider)`, then `close()` (or `using`), which drains what is in flight;
 * the provider closes its endpoints first when it closes.
 *
 * Hot path: the post forms (`postWrite`, `postRead`, `completed`, `poll`, `progress`) make no new
 * object per call on success (operation slots and MPI_Request memory are preallocated, up to
 * `maxPending`). The sync forms make none either but block in MPI_Win_flush; `write`/`read`
 * allocate their Promise.
 */
export class MpiEndpoint implements RmaEndpoint<MpiRank>, Progressable {
  /** The provider whose window this endpoint reads and writes. */
  readonly provider: MpiProvider;
  /** "ATMP" + this rank (u32 LE): give it to peers for their `insert()`. */
  readonly name: Uint8Array;
  /** This process's rank. */
  readonly rank: number;
  /** Ranks in the job. */
  readonly size: number;
  /** Milliseconds a posted operation may take. */
  readonly timeoutMs: number;
  /** Operations in flight at once. */
  readonly maxPending: number;

  private readonly mpi: MpiLibrary;
  private readonly window: number;
  private readonly byte: number;
  private readonly put: MpiRmaOps["put"];
  private readonly get: MpiRmaOps["get"];
  private readonly rput: MpiRmaOps["rput"];
  private readonly rget: MpiRmaOps["rget"];
  private readonly flush: MpiRmaOps["flush"];
  private readonly test: MpiRmaOps["test"];
  /** Native MPI_Request slots (one per operation slot) and the MPI_Test flag. */
  private readonly requests: number;
  private readonly flag: number;
  private readonly operations: Operation[] = [];
  private readonly free: Operation[] = [];
  /** Posted operations (requests live), in post order. */
  private readonly posted: Operation[] = [];
  /** Post-form operations by id, until completed() retires them. */
  private readonly byId = new Map<number, Operation>();
  private readonly local = new LocalRange();
  private readonly counts = { posted: 0, retried: 0, completed: 0, failed: 0, timedOut: 0 };
  private nextId = 1;
  /** The last remote key found to be this window's (-1n: none yet). */
  private checkedKey = -1n;
  private interval = -1;
  private closed_ = false;

  /**
   * An endpoint on `provider`'s window with `maxPending` (default 256) operation slots and their
   * native MPI_Request memory. Throws TypeError when `options` is not an object, RangeError for an
   * option that is not an integer in range, AllocToolsError PROVIDER_CLOSED when the provider is
   * closed.
   */
  constructor(provider: MpiProvider, options: MpiEndpointOptions = {}) {
    const o = checkOptions(options);
    provider.assertOpen();
    this.provider = provider;
    this.mpi = provider.mpi;
    this.rank = provider.rank;
    this.size = provider.size;
    this.timeoutMs = o.timeoutMs;
    this.maxPending = o.maxPending;
    this.window = provider.window;
    const ops = this.mpi.rmaOps(); // resolved once: each operation is a plain call
    this.byte = ops.byte;
    this.put = ops.put;
    this.get = ops.get;
    this.rput = ops.rput;
    this.rget = ops.rget;
    this.flush = ops.flush;
    this.test = ops.test;
    this.name = MpiEndpoint.nameOf(this.rank);
    this.requests = libc.calloc(o.maxPending * REQUEST_BYTES + 8);
    this.flag = this.requests + o.maxPending * REQUEST_BYTES;
    for (let slot = 0; slot < o.maxPending; slot++) this.operations.push(new Operation(slot));
    for (let slot = o.maxPending - 1; slot >= 0; slot--) this.free.push(this.operations[slot]!);
    provider.adopt(this);
    progressEngine.add(this);
  }

  /** The endpoint name of `rank`: "ATMP" + rank (u32 LE). */
  static nameOf(rank: number): Uint8Array {
    const name = new Uint8Array(NAME_BYTES);
    name.set(NAME_MAGIC, 0);
    new DataView(name.buffer).setUint32(4, rank, true);
    return name;
  }

  /** Whether close() was called. */
  get closed(): boolean {
    return this.closed_;
  }

  /** Operations posted and not yet completed (timed-out ones MPI still holds included). */
  get pendingCount(): number {
    return this.posted.length;
  }

  /** @internal Progressable: the startProgress() interval, -1 when not asked. */
  get progressInterval(): number {
    return this.interval;
  }

  /** `name` as a URL-safe string ("mpi." + base64url): a peer's `insert()` takes either. */
  get nameString(): string {
    return peerNameString("mpi", this.name);
  }

  /** The rank named by `peerName` (an MpiEndpoint's name); RangeError for another kind of name or a rank outside the job. */
  insert(peerName: Uint8Array | string): MpiRank {
    if (typeof peerName === "string") peerName = peerNameBytes("mpi", peerName);
    this.assertOpen();
    if (!(peerName instanceof Uint8Array) || peerName.length !== NAME_BYTES || NAME_MAGIC.some((b, i) => peerName[i] !== b)) {
      throw new AllocToolsRangeError(`insert takes an MpiEndpoint name (${NAME_BYTES} bytes starting "ATMP"), got ${describeName(peerName)}`);
    }
    const rank = new DataView(peerName.buffer, peerName.byteOffset, NAME_BYTES).getUint32(4, true);
    if (rank >= this.size) throw new AllocToolsRangeError(`the name is rank ${rank}'s, but this job has ranks 0..${this.size - 1}`);
    return rank;
  }

  // ---- sync ------------------------------------------------------------------------------------

  /** MPI_Put + MPI_Win_flush(peer): returns once the data is in the target's memory. */
  writeSync(local: LocalMemory, length: number, peer: MpiRank, remote: RemoteRegion): void {
    this.transferSync("write", local, length, peer, remote);
  }

  /** MPI_Get + MPI_Win_flush(peer): returns once the data is in local memory. */
  readSync(local: LocalMemory, length: number, peer: MpiRank, remote: RemoteRegion): void {
    this.transferSync("read", local, length, peer, remote);
  }

  /** MPI_Put or MPI_Get (same arguments), then MPI_Win_flush(peer); the region is pinned meanwhile. */
  private transferSync(kind: RmaKind, local: LocalMemory, length: number, peer: MpiRank, remote: RemoteRegion): void {
    this.check(kind, local, length, peer, remote);
    const range = this.local;
    const region = range.region!;
    const transfer = kind === "write" ? this.put : this.get;
    beginOperation(region);
    try {
      let code = transfer(range.address as Pointer, length, this.byte as Pointer, peer, remote.address, length, this.byte as Pointer, this.window as Pointer);
      const failed = code !== 0 ? (kind === "write" ? "MPI_Put" : "MPI_Get") : "MPI_Win_flush";
      if (code === 0) code = this.flush(peer, this.window as Pointer);
      if (code !== 0) {
        this.counts.failed++;
        throw this.operationError(failed, code, length, peer, remote.address, remote.key);
      }
      this.counts.posted++;
      this.counts.completed++;
    } finally {
      endOperation(region);
    }
  }

  // ---- post ------------------------------------------------------------------------------------

  /** MPI_Rput; returns the operation id for completed(). */
  postWrite(local: LocalMemory, length: number, peer: MpiRank, remote: RemoteRegion): number {
    const op = this.start("write", local, length, peer, remote);
    op.awaitingCaller = true;
    this.byId.set(op.id, op);
    return op.id;
  }

  /** MPI_Rget; returns the operation id for completed(). */
  postRead(local: LocalMemory, length: number, peer: MpiRank, remote: RemoteRegion): number {
    const op = this.start("read", local, length, peer, remote);
    op.awaitingCaller = true;
    this.byId.set(op.id, op);
    return op.id;
  }

  /**
   * Whether operation `id` has completed; throws its error if it failed. Either way the id is then
   * retired. Still answers after close() for the operations close() drained.
   */
  completed(id: number): boolean {
    const op = this.byId.get(id);
    if (op === undefined) throw new AllocToolsRangeError(`operation ${String(id)} is not an operation of this endpoint in flight (unknown or retired)`);
    if (op.state === State.Posted) return false;
    this.byId.delete(id);
    op.awaitingCaller = false;
    const error = op.error;
    this.recycle(op);
    if (error !== null) throw error;
    return true;
  }

  /** One progress turn that never blocks long (MPI_Test per request); returns completions. */
  poll(): number {
    if (this.closed_) return 0;
    return this.turn(performance.now());
  }

  /** One progress turn; throws ENDPOINT_CLOSED after close(). */
  progress(): number {
    this.assertOpen();
    return this.turn(performance.now());
  }

  // ---- promise ---------------------------------------------------------------------------------

  /** MPI_Rput, resolved after the request completes and MPI_Win_flush(peer) returns. */
  write(local: LocalMemory, length: number, peer: MpiRank, remote: RemoteRegion): Promise<void> {
    return this.promise("write", local, length, peer, remote);
  }

  /** MPI_Rget, resolved when the request completes. */
  read(local: LocalMemory, length: number, peer: MpiRank, remote: RemoteRegion): Promise<void> {
    return this.promise("read", local, length, peer, remote);
  }

  /** Keeps MPI progressing on the event loop with nothing pending (MPI_Iprobe), for a target that only exposes memory. */
  startProgress(intervalMs: number = 1): void {
    this.assertOpen();
    this.interval = checkProgressInterval(intervalMs);
    progressEngine.wake();
  }

  /** Stops what startProgress() started. */
  stopProgress(): void {
    this.interval = -1;
  }

  /** Counters since the endpoint opened. */
  stats(): RmaEndpointStats {
    return { ...this.counts };
  }

  /**
   * Drains what is in flight (MPI_Win_flush_all, then the requests), settling each operation with
   * its outcome, then leaves the provider. Idempotent.
   */
  close(): void {
    if (this.closed_) return;
    this.interval = -1;
    let error: unknown = null;
    if (this.posted.length > 0) {
      try {
        this.mpi.flushAll(this.window, "closing the endpoint");
      } catch (e) {
        error = e;
      }
      // After the flush every request is complete; a few turns read them.
      for (let turn = 0; turn < 1000 && this.posted.length > 0; turn++) this.turn(performance.now());
    }
    this.closed_ = true;
    progressEngine.remove(this);
    this.provider.disown(this);
    // Requests MPI still holds (none after a successful flush) keep their slots and regions pinned.
    const closedError = new AllocToolsError("ENDPOINT_CLOSED", "the endpoint was closed before the operation completed");
    for (const op of this.posted) if (!op.abandoned) this.settle(op, closedError);
    // Post-form ids stay answerable: completed(id) gives a drained operation's outcome after close().
    if (this.posted.length === 0) libc.free(this.requests);
    if (error !== null) throw error;
  }

  /** close(). */
  [Symbol.dispose](): void {
    this.close();
  }

  /** @internal Progressable: one turn; failures settle their operations. */
  pump(now: number): number {
    if (this.closed_) return 0;
    if (this.posted.length === 0) {
      this.idleProgress();
      return 0;
    }
    return this.turn(now);
  }

  // ---- internals -------------------------------------------------------------------------------

  /** Checks a request before anything is posted and resolves its local memory into this.local. */
  private check(kind: RmaKind, local: LocalMemory, length: number, peer: MpiRank, remote: RemoteRegion): void {
    this.assertOpen();
    this.provider.assertOpen();
    resolveLocal(kind, local, length, this.local);
    if (length > MAX_COUNT) throw new AllocToolsRangeError(`${kind} of ${length} bytes is above MPI's int count limit (${MAX_COUNT})`);
    if (!(remote instanceof RemoteRegion)) throw new AllocToolsTypeError(`${kind} target must be a RemoteRegion (region.remote(), RemoteRegion.fromBytes())`);
    if (length > remote.length) throw new AllocToolsRangeError(`${kind} of ${length} bytes does not fit the remote region's ${remote.length} bytes (refused before posting)`);
    if (!Number.isInteger(peer) || peer < 0 || peer >= this.size) {
      throw new AllocToolsRangeError(`${kind}: rank ${String(peer)} is not in this job (ranks 0..${this.size - 1})`);
    }
    // The last key that passed is remembered: comparing bigints allocates nothing, shifting does.
    if (remote.key !== this.checkedKey) {
      if (!this.provider.ownsKey(remote.key)) {
        throw new AllocToolsRangeError(`${kind}: key ${remote.key} belongs to MPI window ${remote.key >> 32n}, this endpoint's window is ${this.provider.windowNumber}`);
      }
      this.checkedKey = remote.key;
    }
  }

  private start(kind: RmaKind, local: LocalMemory, length: number, peer: MpiRank, remote: RemoteRegion): Operation {
    this.check(kind, local, length, peer, remote);
    const op = this.free.pop();
    if (op === undefined) {
      throw new AllocToolsError("BUSY", `${kind}: ${this.maxPending} operations are in flight on this endpoint (maxPending); complete some first`);
    }
    const region = this.local.region!;
    const request = this.requests + op.slot * REQUEST_BYTES;
    const w = this.window as Pointer;
    const byte = this.byte as Pointer;
    const code = kind === "write"
      ? this.rput(this.local.address as Pointer, length, byte, peer, remote.address, length, byte, w, request as Pointer)
      : this.rget(this.local.address as Pointer, length, byte, peer, remote.address, length, byte, w, request as Pointer);
    if (code !== 0) {
      this.free.push(op);
      this.counts.failed++;
      throw this.operationError(kind === "write" ? "MPI_Rput" : "MPI_Rget", code, length, peer, remote.address, remote.key);
    }
    const id = this.nextId;
    this.nextId = id === MAX_ID ? 1 : id + 1;
    op.id = id;
    op.state = State.Posted;
    op.kind = kind;
    op.rank = peer;
    op.length = length;
    op.remoteAddress = remote.address;
    op.key = remote.key;
    op.deadline = performance.now() + this.timeoutMs;
    op.region = region;
    op.error = null;
    op.abandoned = false;
    op.awaitingCaller = false;
    beginOperation(region);
    this.posted.push(op);
    this.counts.posted++;
    progressEngine.wake();
    return op;
  }

  /** Bad input throws (nothing posted); MPI refusing the post rejects, as a failed operation would. */
  private promise(kind: RmaKind, local: LocalMemory, length: number, peer: MpiRank, remote: RemoteRegion): Promise<void> {
    let op: Operation;
    try {
      op = this.start(kind, local, length, peer, remote);
    } catch (e) {
      if (e instanceof MpiError) return Promise.reject(e);
      throw e;
    }
    return new Promise<void>((resolve, reject) => {
      op.resolve = resolve;
      op.reject = reject;
    });
  }

  /** Tests every posted request; settles the finished ones and expires the late ones. */
  private turn(now: number): number {
    let completed = 0;
    let kept = 0;
    const posted = this.posted;
    for (let i = 0; i < posted.length; i++) {
      const op = posted[i]!;
      const request = this.requests + op.slot * REQUEST_BYTES;
      const code = this.test(request as Pointer, this.flag as Pointer, null);
      if (code !== 0) {
        this.finish(op, this.operationError(op.kind === "write" ? "MPI_Rput" : "MPI_Rget", code, op.length, op.rank, op.remoteAddress, op.key));
        completed++;
        continue;
      }
      if (read.i32(this.flag as Pointer, 0) !== 0) {
        let error: unknown = null;
        if (op.kind === "write") {
          const flushed = this.flush(op.rank, this.window as Pointer);
          if (flushed !== 0) error = this.operationError("MPI_Win_flush", flushed, op.length, op.rank, op.remoteAddress, op.key);
        }
        this.finish(op, error);
        completed++;
        continue;
      }
      if (!op.abandoned && op.deadline <= now) this.expire(op);
      posted[kept++] = op;
    }
    posted.length = kept;
    return completed;
  }

  /** MPI let go of the operation's memory: unpin, count, settle (unless it already timed out). */
  private finish(op: Operation, error: unknown): void {
    endOperation(op.region!);
    op.region = null;
    if (op.abandoned) {
      this.recycle(op);
      return;
    }
    if (error === null) this.counts.completed++;
    else this.counts.failed++;
    this.settle(op, error);
  }

  private settle(op: Operation, error: unknown): void {
    op.state = error === null ? State.Done : State.Failed;
    op.error = error;
    const resolve = op.resolve;
    const reject = op.reject;
    if (resolve !== null && reject !== null) {
      op.resolve = null;
      op.reject = null;
      this.recycle(op);
      if (error === null) resolve();
      else reject(error);
    }
  }

  /** Past its deadline: fails for the caller now; the request stays tested until MPI lets go. */
  private expire(op: Operation): void {
    this.counts.timedOut++;
    const error = new RmaTimeoutError(op, this.timeoutMs, op.kind === "write" ? "MPI_Put" : "MPI_Get");
    const reject = op.reject;
    op.state = State.Failed;
    op.error = error;
    op.resolve = null;
    op.reject = null;
    op.abandoned = true;
    if (reject !== null) reject(error);
  }

  /** Back to the free list once MPI has let go of it (no region) and no caller waits on its id. */
  private recycle(op: Operation): void {
    if (op.state === State.Free || op.region !== null || op.awaitingCaller) return;
    op.state = State.Free;
    op.error = null;
    this.free.push(op);
  }

  /** With nothing pending: let MPI progress (a target whose transport needs it). */
  private idleProgress(): void {
    this.mpi.nudge(this.flag);
  }

  private operationError(fn: string, code: number, length: number, rank: number, remoteAddress: bigint, key: bigint): MpiError {
    return this.mpi.error(fn, code, `${length} bytes at rank ${rank} address 0x${remoteAddress.toString(16)} key ${key}`);
  }

  private assertOpen(): void {
    if (this.closed_) throw new AllocToolsError("ENDPOINT_CLOSED", "the MPI endpoint is closed");
  }
}

function describeName(name: unknown): string {
  if (!(name instanceof Uint8Array)) return typeof name;
  return `${name.length} bytes`;
}

function checkOptions(o: MpiEndpointOptions): Required<MpiEndpointOptions> {
  if (o === null || typeof o !== "object") throw new AllocToolsTypeError("MpiEndpoint options must be an object");
  const int = (name: keyof MpiEndpointOptions, v: unknown, d: number, min: number): number => {
    if (v === undefined) return d;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) throw new AllocToolsRangeError(`options.${name} must be an integer >= ${min}, got ${String(v)}`);
    return v;
  };
  return { timeoutMs: int("timeoutMs", o.timeoutMs, 10_000, 1), maxPending: int("maxPending", o.maxPending, 256, 1) };
}
