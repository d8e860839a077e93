// The operation engine: what every endpoint does the same way, whatever moves its bytes. Endpoint
// (libfabric), UcxEndpoint and MpiEndpoint extend it and hand it a transport adapter
// (transport.ts says what an adapter supplies).
//
// - Operations live in preallocated slots (operation.ts) with generation-checked ids.
// - Three ways to wait, one contract (rma-endpoint.ts): a Promise, the calling thread, or an id
//   with poll() and completed(id). The sync and post forms allocate nothing on success.
// - Every operation has a deadline (`timeoutMs`): past it the caller gets RmaTimeoutError, while
//   the operation may still be in transport; its local region stays pinned (`inFlight`) until the
//   transport lets go of it, so its pool refuses to release, unmap or close it (BUSY) meanwhile.
// - A post the transport pushes back waits in a queue and is posted again, in order, on the next
//   progress turn; later operations queue behind it.
// - Progress: the event-loop engine of progress.ts turns every endpoint of the thread while
//   anything is pending anywhere (a peer may be another endpoint of this thread) or when asked with
//   startProgress(). Sync waits and the promise forms' inline spin turn them on the calling thread.
// - close(): operations never posted fail; posted ones are cancelled and drained (bounded by
//   `closeTimeoutMs`); then the transport closes, and what it held fails with ENDPOINT_CLOSED.
import { AllocToolsError, AllocToolsTypeError, AllocToolsRangeError } from "../errors.ts";
import { inspectCustom, oneLine } from "../inspect.ts";
import { beginOperation } from "../memory/region.ts";
import type { ParentProvider } from "../memory/provider-child.ts";
import type { RegistrationCache } from "../cache/registration-cache.ts";
import { LocalRange, resolveLocal } from "./local-memory.ts";
import { argument, Operation, OperationTable, Outcome, Wait } from "./operation.ts";
import { checkProgressInterval, progressEngine, type Progressable } from "./progress.ts";
import { RemoteRegion } from "./remote-region.ts";
import { RmaTimeoutError, type OperationKind, type RmaKind } from "./rma-errors.ts";
import type { LocalMemory, RmaEndpoint, RmaEndpointStats } from "./rma-endpoint.ts";
import type { EngineSettings } from "./engine-options.ts";
import { Posted, type Transport } from "./transport.ts";

/** Timeouts have millisecond granularity: deadlines are scanned at most this often (ms). */
const EXPIRY_PERIOD_MS = 1;

/** The engine's counters; one shape, fields set here. */
class Counters {
  posted = 0;
  retried = 0;
  completed = 0;
  failed = 0;
  timedOut = 0;
}

/**
 * The base of every endpoint: slots, the three forms, timeouts, pinning, statistics, progress
 * and close, over a transport adapter. `Peer` is what the transport's `insert()` returns.
 */
export abstract class EndpointEngine<Peer extends number | bigint> implements RmaEndpoint<Peer>, Progressable {
  /** This endpoint's address: give these bytes to a peer for its `insert()`. */
  readonly name: Uint8Array;
  /** Milliseconds an operation may take before it fails with RmaTimeoutError. */
  readonly timeoutMs: number;
  /** Microseconds the promise forms poll inline before waiting on the event loop. */
  readonly spinMicroseconds: number;
  /** Where plain views given as local memory are registered (options.cache); null: views are refused. */
  readonly cache: RegistrationCache | null;
  /** Operations in flight or not yet retired at once. */
  readonly maxPending: number;

  /** @internal The transport adapter. */
  protected readonly transport: Transport<Peer>;
  private readonly table: OperationTable;
  /** Operations the transport pushed back, to post again in order. */
  private readonly retries: Operation[] = [];
  /** The local memory of the operation being posted, refilled per call. */
  private readonly local = new LocalRange();
  private readonly counts = new Counters();
  private readonly closeTimeoutMs: number;
  private readonly parent: ParentProvider & { readonly name: string };
  private interval = -1;
  private closed_ = false;
  private nextExpiry = 0;
  /** A failure of the transport itself (its completion queue): every later operation gets it. */
  private broken: unknown = null;

  /**
   * Takes over an opened transport: registers with the progress engine and with `provider`, which
   * closes the endpoint first when it closes. Never throws (settings are checked already:
   * checkEngineOptions).
   */
  protected constructor(transport: Transport<Peer>, settings: EngineSettings, provider: ParentProvider & { readonly name: string }) {
    const cache = settings.cache;
    this.transport = transport;
    this.name = transport.name;
    this.timeoutMs = settings.timeoutMs;
    this.spinMicroseconds = settings.spinMicroseconds;
    this.cache = cache;
    this.maxPending = settings.maxPending;
    this.closeTimeoutMs = settings.closeTimeoutMs;
    this.table = new OperationTable(settings.maxPending);
    this.parent = provider;
    transport.bind(this);
    provider.adopt(this);
    progressEngine.add(this);
  }

  /** Whether close() was called. */
  get closed(): boolean {
    return this.closed_;
  }

  /**
   * Operations posted (or waiting to be) and not yet ended: those whose caller still waits, and,
   * where the transport ends timed-out operations on its own (UCX, MPI), those it still holds.
   */
  get pendingCount(): number {
    return this.transport.finishesAbandoned ? this.table.inTransport : this.table.waiting;
  }

  /** Operations the transport still holds, timed-out ones included (their regions stay pinned). */
  get inTransportCount(): number {
    return this.table.inTransport;
  }

  /** @internal CompletionSink: the operations the transport holds. */
  get active(): readonly Operation[] {
    return this.table.active;
  }

  /** @internal Progressable: the interval asked for with startProgress(), -1 when not asked. */
  get progressInterval(): number {
    return this.interval;
  }

  /** Counters since the endpoint opened. */
  stats(): RmaEndpointStats {
    const c = this.counts;
    return { posted: c.posted, retried: c.retried, completed: c.completed, failed: c.failed, timedOut: c.timedOut };
  }

  /** One line for console.log: provider, pending operations, progress interval, closed. */
  [inspectCustom](): string {
    return oneLine(this.constructor.name, { provider: this.parent.name, pending: this.pendingCount, progressInterval: this.interval, closed: this.closed_ });
  }

  /** Adds a peer by its endpoint name; use the result as `peer`. */
  insert(peerName: Uint8Array): Peer {
    this.assertOpen();
    return this.transport.insert(peerName);
  }

  // ---- the promise form ---------------------------------------------------------------------------

  /**
   * Writes `length` bytes from `local` to the start of `remote` on `peer`; resolves once the data
   * is in the target's memory. Use `remote.subregion(offset, length)` to write elsewhere in it.
   *
   * Throws synchronously, having posted nothing, when the request is refused: RangeError (out of
   * the local or remote bounds, bad length, unknown peer), TypeError (not this library's region or
   * pointer), or AllocToolsError (closed endpoint, released or foreign region). The promise rejects
   * for what happens after posting: the transport's error, RmaTimeoutError, AllocToolsError
   * ENDPOINT_CLOSED.
   */
  write(local: LocalMemory | ArrayBufferView, length: number, peer: Peer, remote: RemoteRegion): Promise<void> {
    return this.promise(this.beginRma("write", Wait.Promise, local, length, peer, remote));
  }

  /** Reads `length` bytes from the start of `remote` on `peer` into `local`; errors as for write(). */
  read(local: LocalMemory | ArrayBufferView, length: number, peer: Peer, remote: RemoteRegion): Promise<void> {
    return this.promise(this.beginRma("read", Wait.Promise, local, length, peer, remote));
  }

  // ---- the sync form ------------------------------------------------------------------------------

  /**
   * write(), waiting on the calling thread: posts, then turns this thread's endpoints (one of which
   * may be the target) until the operation completes. Throws where write() would reject. Allocates
   * nothing on the success path.
   */
  writeSync(local: LocalMemory | ArrayBufferView, length: number, peer: Peer, remote: RemoteRegion): void {
    this.waitSync(this.beginRma("write", Wait.Sync, local, length, peer, remote));
  }

  /** read(), waiting on the calling thread; see writeSync. */
  readSync(local: LocalMemory | ArrayBufferView, length: number, peer: Peer, remote: RemoteRegion): void {
    this.waitSync(this.beginRma("read", Wait.Sync, local, length, peer, remote));
  }

  // ---- the post form ------------------------------------------------------------------------------

  /**
   * Posts a write and returns its operation id; drive it with poll() and ask with completed(id).
   * Refusals throw as for write(). Allocates nothing on the success path.
   */
  postWrite(local: LocalMemory | ArrayBufferView, length: number, peer: Peer, remote: RemoteRegion): number {
    return this.beginRma("write", Wait.Post, local, length, peer, remote).id;
  }

  /** Posts a read and returns its operation id; see postWrite. */
  postRead(local: LocalMemory | ArrayBufferView, length: number, peer: Peer, remote: RemoteRegion): number {
    return this.beginRma("read", Wait.Post, local, length, peer, remote).id;
  }

  /**
   * One progress turn of this endpoint that never blocks and never throws: posts what was pushed
   * back, reads completions, expires timed-out operations. Returns the completions read. 0 once
   * closed.
   */
  poll(): number {
    if (this.closed_) return 0;
    return this.turn(performance.now(), true);
  }

  /**
   * Whether operation `id` (from a post form) has completed. Returns true once, or throws the
   * operation's error; either retires the id. RangeError for an unknown or retired id. Still
   * answers after close() for the operations close() ended.
   */
  completed(id: number): boolean {
    const op = this.table.byId(id);
    if (op === null || op.wait !== Wait.Post) {
      throw new AllocToolsRangeError(`operation id ${String(id)} is not a pending post-form operation of this endpoint (unknown, or already retired by completed())`);
    }
    if (op.outcome === Outcome.Pending) {
      if (this.transport.refresh === undefined || this.closed_) return false;
      this.transport.refresh(op);
      if (op.outcome === Outcome.Pending) return false;
    }
    const error = op.error;
    this.table.retire(op);
    if (error !== null) throw error;
    return true;
  }

  // ---- progress -----------------------------------------------------------------------------------

  /** One synchronous progress turn: like poll(), and throws when the endpoint is closed or its transport failed. */
  progress(): number {
    this.assertOpen();
    const n = this.turn(performance.now(), true);
    if (this.broken !== null) throw this.broken;
    return n;
  }

  /**
   * Keeps this endpoint progressing on the event loop even with nothing pending: what a target
   * that only exposes memory needs where the transport moves data only when polled. `intervalMs`
   * 0 polls as fast as the event loop turns (lowest latency, a busy core); the default 1 ms is
   * light. The timer keeps the process alive until stopProgress() or close().
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

  /** @internal Progressable: one turn that never throws (failures settle the operations). */
  pump(now: number): number {
    if (this.closed_) return 0;
    return this.turn(now, false);
  }

  // ---- close --------------------------------------------------------------------------------------

  /**
   * Closes the endpoint. Operations never posted fail with AllocToolsError ENDPOINT_CLOSED.
   * Operations posted are cancelled and drained (this endpoint and the others of the thread are
   * turned) until nothing is in flight, for at most `closeTimeoutMs`; then the transport closes,
   * and operations it never returned fail with ENDPOINT_CLOSED and unpin their regions.
   * Idempotent.
   */
  close(): void {
    if (this.closed_) return;
    this.closed_ = true;
    this.interval = -1;
    const errors: unknown[] = [];
    for (const op of this.retries.slice()) this.finish(op, closedError());
    this.drainForClose(errors);
    progressEngine.remove(this);
    this.parent.disown(this);
    let released = false;
    try {
      released = this.transport.close();
    } catch (e) {
      errors.push(e);
    }
    const active = this.table.active;
    for (let i = active.length - 1; i >= 0; i--) {
      const op = active[i]!;
      // A transport that could not let go keeps its operations pinned for good: never unpin memory native code may still use.
      if (released) this.finish(op, closedError());
      else this.table.settle(op, closedError());
    }
    if (errors.length > 0) throw errors.length === 1 ? errors[0] : new AggregateError(errors, `closing ${this.constructor.name}`);
  }

  /** `using endpoint = new Endpoint(provider)`: the same as `close()`. */
  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * Cancels what is posted and turns until the transport holds nothing (and no endpoint of this
   * process may still use this one's memory), for at most closeTimeoutMs.
   */
  private drainForClose(errors: unknown[]): void {
    const transport = this.transport;
    if (this.table.inTransport === 0 && !transport.holdsOthers()) return;
    try {
      transport.quiesce?.();
    } catch (e) {
      errors.push(e);
    }
    for (const op of this.table.active) transport.cancel(op);
    const deadline = performance.now() + this.closeTimeoutMs;
    // closed_ is set, so pump() skips this endpoint: poll it here, and turn the others of the thread.
    for (let now = performance.now(); (this.table.inTransport > 0 || transport.holdsOthers()) && now < deadline; now = performance.now()) {
      try {
        transport.poll(now, true);
      } catch {
        break; // the transport itself failed: nothing more will come out of it
      }
      progressEngine.pumpAll(now);
    }
  }

  // ---- posting ------------------------------------------------------------------------------------

  /** Checks an RMA request, takes a slot, pins the local memory, and posts (or queues). */
  private beginRma(kind: RmaKind, wait: Wait, local: LocalMemory | ArrayBufferView, length: number, peer: Peer, remote: RemoteRegion): Operation {
    this.assertOpen();
    if (!Number.isSafeInteger(length) || length <= 0) throw new AllocToolsRangeError(`${kind} length must be a positive integer, got ${String(length)}`);
    if (!(remote instanceof RemoteRegion)) throw new AllocToolsTypeError(`${kind} target must be a RemoteRegion (region.remote(), RemoteRegion.fromBytes())`);
    if (length > remote.length) {
      throw new AllocToolsRangeError(`${kind} of ${length} bytes does not fit the remote region's ${remote.length} bytes (refused before posting)`);
    }
    const handle = this.transport.resolveRemote(kind, peer, remote, length);
    const op = this.take(kind, wait, local, length);
    op.peer = typeof peer === "bigint" ? argument(peer) : peer;
    op.remoteAddress = argument(remote.address);
    op.key = argument(remote.key);
    op.remoteHandle = handle;
    this.start(op);
    return op;
  }

  /**
   * Resolves the local memory (a region, a pointer, or with a cache a plain view), takes a slot and
   * pins the region. Throws having changed nothing (a cached region acquired here goes back).
   */
  private take(kind: OperationKind, wait: Wait, local: LocalMemory | ArrayBufferView, length: number): Operation {
    const cached = this.cache !== null && ArrayBuffer.isView(local);
    const range = cached ? this.resolveCached(kind, local, length) : this.resolveLocalMemory(kind, local as LocalMemory, length);
    const region = range.region!;
    let op: Operation;
    try {
      op = this.table.take(kind, wait, region, range.address, length, performance.now() + this.timeoutMs);
    } catch (e) {
      if (cached) this.cache!.release(region);
      throw e;
    }
    op.cache = cached ? this.cache : null;
    beginOperation(region);
    return op;
  }

  /** The local memory of one operation, checked: this library's, in range, out of its pool, usable by the transport. */
  private resolveLocalMemory(kind: OperationKind, local: LocalMemory, length: number): LocalRange {
    const range = this.local;
    resolveLocal(kind, local, length, range);
    this.transport.checkLocal(kind, range.region!);
    return range;
  }

  /** A plain view through the cache: a cached region over it, acquired until the operation ends. */
  private resolveCached(kind: OperationKind, view: ArrayBufferView, length: number): LocalRange {
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

  /** Posts `op` now, or queues it behind operations the transport pushed back (their order is kept). */
  private start(op: Operation): void {
    if (this.broken !== null) {
      this.finish(op, this.broken);
      return;
    }
    if (this.retries.length > 0) this.queue(op);
    else this.post(op);
  }

  /** One post; returns false when the transport pushed it back. */
  private post(op: Operation): boolean {
    const posted = this.transport.post(op);
    if (posted === Posted.POSTED) {
      this.counts.posted++;
    } else if (posted === Posted.DONE) {
      this.counts.posted++;
      this.complete(op, null);
    } else if (posted === Posted.RETRY) {
      this.counts.retried++;
      if (!op.queued) this.queue(op);
      return false;
    } else {
      this.counts.failed++;
      this.finish(op, op.error);
    }
    return true;
  }

  private queue(op: Operation): void {
    op.queued = true;
    this.retries.push(op);
  }

  /** Posts what was pushed back, in order, until the transport pushes back again. */
  private repost(): void {
    const retries = this.retries;
    while (retries.length > 0) {
      const op = retries[0]!;
      if (!this.post(op)) return;
      // A finished operation already left the queue (finish() removes it).
      if (retries[0] === op) retries.shift();
      op.queued = false;
    }
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

  /** Turns this thread's endpoints until `op` has an outcome; retires it; throws its error. */
  private waitSync(op: Operation): void {
    while (op.outcome === Outcome.Pending) progressEngine.pumpAll(performance.now());
    const error = op.error;
    this.table.retire(op);
    if (error !== null) throw error;
  }

  // ---- progress -----------------------------------------------------------------------------------

  /** One turn: completions, then what waits to be posted again, then deadlines. */
  private turn(now: number, progressPeers: boolean): number {
    let completed = 0;
    try {
      completed = this.transport.poll(now, progressPeers);
      if (this.retries.length > 0) {
        this.repost();
        if (this.retries.length > 0) completed += this.transport.poll(now, false);
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

  /** @internal CompletionSink: the operation a completion's id names, if still in transport. */
  inTransport(id: number): Operation | null {
    return this.table.inTransportById(id);
  }

  /** @internal CompletionSink: the transport let go of `op`; count it and finish it. */
  complete(op: Operation, error: unknown): void {
    if (!op.inTransport) return;
    if (error === null) this.counts.completed++;
    else this.counts.failed++;
    this.finish(op, error);
  }

  /**
   * The transport is done with `op` (completion, error, refused post, close): unpin its region,
   * give a cached region back, and settle the caller unless it already timed out.
   */
  private finish(op: Operation, error: unknown): void {
    if (op.queued) {
      op.queued = false;
      const i = this.retries.indexOf(op);
      if (i >= 0) this.retries.splice(i, 1);
    }
    const cache = op.cache;
    const region = op.region;
    op.cache = null;
    this.table.leaveTransport(op);
    // A cached region goes back once the transport is done with it (a closed cache took it back).
    if (cache !== null && region !== null && !cache.closed && region.inUse) cache.release(region);
    if (op.outcome === Outcome.Pending) this.table.settle(op, error);
  }

  /** Operations past their deadline fail with RmaTimeoutError; posted ones stay pinned until the transport lets go. */
  private expire(now: number): void {
    if (this.table.waiting === 0) return;
    const active = this.table.active;
    for (let i = active.length - 1; i >= 0; i--) {
      const op = active[i]!;
      if (op.outcome !== Outcome.Pending || op.deadline > now) continue;
      this.counts.timedOut++;
      const error = new RmaTimeoutError(op.describe(), this.timeoutMs, this.transport.functionName(op.kind));
      if (op.queued) {
        this.finish(op, error); // never posted: the transport does not have it
      } else {
        this.table.settle(op, error);
        this.transport.abandon?.(op);
      }
    }
  }

  /** The transport failed: every operation fails with it, and so will later ones. */
  private fail(e: unknown): void {
    this.broken = e;
    for (const op of this.retries.slice()) this.finish(op, e);
    for (const op of this.table.active) this.table.settle(op, e);
  }

  /** @internal AllocToolsError ENDPOINT_CLOSED once close() was called. */
  protected assertOpen(): void {
    if (this.closed_) throw new AllocToolsError("ENDPOINT_CLOSED", "the endpoint is closed");
  }
}

function closedError(): AllocToolsError {
  return new AllocToolsError("ENDPOINT_CLOSED", "the endpoint was closed before the operation completed");
}
