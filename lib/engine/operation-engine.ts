// The operation engine: what every endpoint does the same way, whatever moves its bytes. Each
// endpoint (Endpoint, UcxEndpoint, MpiEndpoint, through EndpointEngine) owns one, over a transport
// adapter (transport.ts says what an adapter supplies).
//
// - Operations live in preallocated slots (operation.ts) with generation-checked ids.
// - Three ways to wait, one contract (rma-endpoint.ts): a Promise, the calling thread, or an id
//   with poll() and completed(id). The sync and post forms allocate nothing on success.
// - Every RMA operation and send has a deadline, `timeoutMs` after its post (a sync form's after
//   its wait starts: one done inside its post reads no clock). Past it the caller gets
//   RmaTimeoutError, while the operation may still be in transport; its local region stays pinned
//   (`inFlight`) until the transport lets go of it, so its pool refuses to release, unmap or close
//   it (BUSY) meanwhile. A receive past its deadline is cancelled instead, as an abort signal
//   cancels it: it fails with the reason once the transport confirms, or completes if its message
//   had already matched (a message is never lost to a caller told "failed").
// - Where the transport finishes sync one-sided operations inside one call (`finishNow`: MPI's put
//   or get and its flush), they run outside the table (immediate-operation.ts).
// - A post the transport pushes back waits in a queue and is posted again, in order, on the next
//   progress turn; later operations queue behind it.
// - Progress: the event-loop engine of progress.ts turns every endpoint of the thread while
//   anything is pending anywhere (a peer may be another endpoint of this thread) or when asked with
//   startProgress(). Sync waits and the promise forms' inline spin turn them on the calling thread.
// - close(): operations never posted fail; posted ones are cancelled and drained (bounded by
//   `closeTimeoutMs`); then the transport closes, and what it held fails with ENDPOINT_CLOSED.
import { AllocToolsError, AllocToolsRangeError } from "../errors.ts";
import { beginOperation, type MemoryRegionImpl } from "../memory/region.ts";
import type { ParentProvider, ProviderChild } from "../memory/provider-child.ts";
import type { MemoryPool } from "../pool/pool.ts";
import type { RegistrationCache } from "../cache/registration-cache.ts";
import { afterLocalUse, LocalMemoryPins } from "./local-memory.ts";
import { ImmediateOperation } from "./immediate-operation.ts";
import { Message, Received } from "./message.ts";
import { AtomicScratch } from "./atomic-scratch.ts";
import { OperationCounters } from "./operation-counters.ts";
import { Operation, OperationTable, Outcome, Wait } from "./operation.ts";
import { checkProgressInterval, progressEngine, type Progressable } from "./progress.ts";
import { RmaTimeoutError, type OperationKind } from "./rma-errors.ts";
import type { LocalMemory, RmaEndpointStats } from "./rma-endpoint.ts";
import type { EngineSettings } from "./engine-options.ts";
import { Posted, type Transport } from "./transport.ts";

/** Timeouts have millisecond granularity: deadlines are scanned at most this often (ms). */
const EXPIRY_PERIOD_MS = 1;


/** Local memory as the forms take it: a region, a pointer, or (with a cache) a plain view. */
export type AnyLocalMemory = LocalMemory | ArrayBufferView;

/** The engine of one endpoint: see the file header. */
export class OperationEngine<Peer extends number | bigint> implements Progressable {
  readonly timeoutMs: number;
  readonly spinMicroseconds: number;
  readonly cache: RegistrationCache | null;
  readonly pool: MemoryPool | null;
  readonly maxPending: number;
  /** Progressable: whether the endpoint progresses in the background with nothing pending (options.progress "auto", until stopProgress()). */
  autoProgress: boolean;
  readonly transport: Transport<Peer>;
  private readonly table: OperationTable;
  /** Operations the transport pushed back, to post again in order. */
  private readonly retries: Operation[] = [];
  /** Resolves and pins the local memory of the operation being posted. */
  private readonly localMemory: LocalMemoryPins;
  /** Operand, compare and result words of remote atomics, a cell per slot. */
  private readonly scratch = new AtomicScratch();
  /** Sync one-sided operations of a transport with finishNow, run outside the table (immediate-operation.ts); null without. */
  readonly immediate: ImmediateOperation<Peer> | null;
  private readonly counts: OperationCounters;
  private readonly closeTimeoutMs: number;
  private readonly owner: { readonly name: string };
  private interval = -1;
  private closed_ = false;
  private nextExpiry = 0;
  /** A failure of the transport itself (its completion queue): every later operation gets it. */
  private broken: unknown = null;

  /** Takes over an opened transport and registers with the progress engine. */
  constructor(transport: Transport<Peer>, settings: EngineSettings, owner: { readonly name: string }) {
    this.transport = transport;
    this.timeoutMs = settings.timeoutMs;
    this.spinMicroseconds = settings.spinMicroseconds;
    this.cache = settings.cache;
    this.pool = settings.pool;
    this.maxPending = settings.maxPending;
    this.autoProgress = settings.progress === "auto";
    this.counts = new OperationCounters(settings.latency, settings.timeoutMs);
    this.localMemory = new LocalMemoryPins(settings.cache, transport);
    // Not with options.latency: latencies are timed through the table.
    this.immediate = transport.finishNow !== undefined && !settings.latency ? new ImmediateOperation(transport, this.localMemory, settings.cache, this.counts) : null;
    this.closeTimeoutMs = settings.closeTimeoutMs;
    this.table = new OperationTable(settings.maxPending);
    this.owner = owner;
    transport.bind(this);
    progressEngine.add(this);
  }

  get closed(): boolean {
    return this.closed_;
  }

  /** Callers still waiting, and, where the transport ends timed-out operations itself, what it still holds. */
  get pendingCount(): number {
    return this.transport.finishesAbandoned ? this.table.inTransport : this.table.waiting;
  }

  get inTransportCount(): number {
    return this.table.inTransport;
  }

  /** CompletionSink: the operations the transport holds. */
  get active(): readonly Operation[] {
    return this.table.active;
  }

  /** Progressable: the interval asked for with startProgress(), -1 when not asked. */
  get progressInterval(): number {
    return this.interval;
  }

  stats(): RmaEndpointStats {
    return this.counts.snapshot();
  }

  /**
   * CompletionSink, for a `receive` operation whose message the transport found: takes a region of
   * `length` bytes from the pool and pins it as the operation's memory. False when the pool
   * refused: `op.failure` says why, and the transport discards the message (a receive of 0 bytes).
   */
  bufferFor(op: Operation, length: number): boolean {
    const pool = this.pool!;
    let region: MemoryRegionImpl;
    try {
      region = pool.getRegion(length < 0 ? pool.largestPooledSize : Math.max(length, 1)) as MemoryRegionImpl;
    } catch (e) {
      op.failure = e;
      return false;
    }
    try {
      beginOperation(region);
    } catch (e) {
      pool.releaseRegion(region);
      op.failure = e;
      return false;
    }
    op.region = region;
    op.messageRegion = region;
    op.local = region.address;
    op.length = length < 0 ? region.size : length;
    return true;
  }

  /**
   * A slot for an operation with local memory (a region, a pointer, or with a cache a plain view):
   * resolved, pinned, then the slot taken. Throws having changed nothing (a cached region acquired
   * here goes back). For operation-starts.ts.
   */
  take(kind: OperationKind, wait: Wait, local: AnyLocalMemory, length: number, minimumLength: number): Operation {
    const range = this.localMemory.pin(kind, local, length, minimumLength);
    const region = range.region!;
    let op: Operation;
    try {
      op = this.table.take(kind, wait, region, range.address, length, this.deadlineFor(wait));
    } catch (e) {
      this.localMemory.unpin(region, range.cached);
      throw e;
    }
    op.cache = range.cached ? this.cache : null;
    return op;
  }

  /** A slot for an operation with no memory of the caller's (a receive() of unknown size). */
  takeWithoutMemory(kind: OperationKind, wait: Wait, deadline: number): Operation {
    return this.table.take(kind, wait, null, 0, 0, deadline);
  }

  /** A slot for a remote atomic, its cell holding the operand and the value to compare with. */
  takeAtomic(kind: OperationKind, wait: Wait, operand: number | bigint, compare: number | bigint): Operation {
    const op = this.table.take(kind, wait, null, 0, 8, this.deadlineFor(wait));
    op.local = this.scratch.address(op.index);
    this.scratch.fill(op.index, operand, compare);
    return op;
  }

  /**
   * A new operation's deadline: its post time plus timeoutMs. A sync operation's is set by its wait
   * instead, on the first turn that finds it pending (`startWaiting`): most complete inside their
   * post, and a clock read costs ~0.1 µs there, after the transport's syscall. Infinity until then,
   * so that nothing can expire it early. With `options.latency` the post time is read at once.
   */
  private deadlineFor(wait: Wait): number {
    return wait === Wait.Sync && this.counts.latency === null ? Infinity : performance.now() + this.timeoutMs;
  }

  /** The clock for a sync wait's first turn; gives a sync operation still pending its deadline. */
  private startWaiting(op: Operation): number {
    const now = performance.now();
    if (op.deadline === Infinity) op.deadline = now + this.timeoutMs;
    return now;
  }

  /** Whether a sync one-sided operation runs at once: the transport finishes it in one call, and nothing pushed back is to go first. */
  get runsNow(): boolean {
    return this.immediate !== null && this.retries.length === 0;
  }

  /** A failure of the transport itself, which every later operation gets (null while it works). */
  get transportFailure(): unknown {
    return this.broken;
  }

  /** Posts `op` now, or queues it behind operations the transport pushed back (their order is kept). */
  start(op: Operation): void {
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
      this.complete(op, op.failure);
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

  /** Spins up to spinMicroseconds, then hands the wait to the event loop; resolves with the operation's value. */
  promise<T>(op: Operation): Promise<T> {
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
      const value = error === null ? this.valueOf(op) : undefined;
      this.table.retire(op);
      return (error === null ? Promise.resolve(value) : Promise.reject(error)) as Promise<T>;
    }
    const promise = new Promise<T>((resolve, reject) => {
      op.resolve = resolve as (value: unknown) => void;
      op.reject = reject;
    });
    progressEngine.wake();
    return promise;
  }

  /** Turns this thread's endpoints until `op` has an outcome; retires it; throws its error. */
  waitSync(op: Operation): void {
    if (op.outcome === Outcome.Pending) this.turnUntilSettled(op);
    const error = op.error;
    this.table.retire(op);
    if (error !== null) throw error;
  }

  /** recvSync(): waits, then the Received of the retired operation (one object). */
  waitReceived(op: Operation): Received<Peer> {
    if (op.outcome === Outcome.Pending) this.turnUntilSettled(op);
    const error = op.error;
    const received = error === null ? this.received(op) : null;
    this.table.retire(op);
    if (error !== null) throw error;
    return received!;
  }

  /** The value a completed atomic found at the target. */
  fetchedValue(op: Operation): bigint {
    return this.scratch.result(op.index);
  }

  /** fetchAddSync()/compareSwapSync(): waits, then the value found (read before the slot is retired). */
  waitFetched(op: Operation): bigint {
    if (op.outcome === Outcome.Pending) this.turnUntilSettled(op);
    const error = op.error;
    const value = error === null ? this.scratch.result(op.index) : 0n;
    this.table.retire(op);
    if (error !== null) throw error;
    return value;
  }

  /** A sync wait: turns this thread's endpoints until `op` has an outcome. */
  private turnUntilSettled(op: Operation): void {
    let now = this.startWaiting(op);
    for (;;) {
      progressEngine.pumpAll(now);
      // An abort signal cannot fire while this thread waits here, unless it was aborted already
      // (or from another thread): look at it.
      if (op.signal !== null && op.signal.aborted && op.cancelReason === null) this.cancel(op, op.signal.reason);
      if (op.outcome !== Outcome.Pending) return;
      now = performance.now();
    }
  }

  /** completed(id) and received(id): the post-form operation of `id`, or RangeError. */
  postedOperation(id: number, kind: string): Operation {
    const op = this.table.byId(id);
    if (op === null || op.wait !== Wait.Post) {
      throw new AllocToolsRangeError(`operation id ${String(id)} is not a pending ${kind} of this endpoint (unknown, or already retired)`);
    }
    if (op.outcome === Outcome.Pending && this.transport.refresh !== undefined && !this.closed_) this.transport.refresh(op);
    return op;
  }

  /** Retires a post-form operation that has an outcome; throws its error. */
  retirePosted(op: Operation): void {
    const error = op.error;
    this.table.retire(op);
    if (error !== null) throw error;
  }

  /** The Received of a completed receive. */
  received(op: Operation): Received<Peer> {
    return new Received(op.resultSource as Peer, op.resultTag, op.resultLength);
  }

  /** What a promise of `op` resolves with: a receive's Received or Message, an atomic's value, else nothing. */
  private valueOf(op: Operation): unknown {
    if (op.kind === "recv") return this.received(op);
    if (op.kind === "fetchAdd" || op.kind === "compareSwap") return this.scratch.result(op.index);
    if (op.kind === "receive") return new Message(op.resultSource as Peer, op.resultTag, op.resultLength, op.messageRegion!, this.pool!);
    return undefined;
  }

  // ---- cancelling ---------------------------------------------------------------------------------

  /** Listens for the abort of a receive's signal (the listener goes once the receive ends). */
  watch(op: Operation, signal: AbortSignal): void {
    const id = op.id;
    const listener = (): void => {
      const current = this.table.byId(id);
      if (current !== null && current.outcome === Outcome.Pending && current.cancelReason === null) this.cancel(current, signal.reason);
    };
    op.signal = signal;
    op.abortListener = listener;
    signal.addEventListener("abort", listener, { once: true });
  }

  /**
   * Asks the transport to cancel `op`, which then fails with `reason` once the transport lets go
   * of it, or completes if it had already matched or finished.
   */
  private cancel(op: Operation, reason: unknown): void {
    op.cancelReason = reason;
    if (op.queued) this.finish(op, reason);
    else this.transport.cancel(op);
    progressEngine.wake();
  }

  // ---- progress -----------------------------------------------------------------------------------

  poll(): number {
    if (this.closed_) return 0;
    return this.turn(performance.now(), true);
  }

  progress(): number {
    this.assertOpen();
    const n = this.turn(performance.now(), true);
    if (this.broken !== null) throw this.broken;
    return n;
  }

  startProgress(intervalMs: number): void {
    this.assertOpen();
    this.interval = checkProgressInterval(intervalMs);
    progressEngine.wake();
  }

  /** Stops background progress: what startProgress() started, and the automatic kind. */
  stopProgress(): void {
    this.interval = -1;
    this.autoProgress = false;
  }

  /** Progressable: one turn that never throws (failures settle the operations). */
  pump(now: number): number {
    if (this.closed_) return 0;
    return this.turn(now, false);
  }

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

  /** CompletionSink: the operation a completion's id names, if still in transport. */
  inTransport(id: number): Operation | null {
    return this.table.inTransportById(id);
  }

  /** CompletionSink: the transport let go of `op`; count it and finish it. */
  complete(op: Operation, error: unknown): void {
    if (!op.inTransport) return;
    if (error === null) this.counts.complete(op);
    else this.counts.failed++;
    this.finish(op, error);
  }


  /**
   * The transport is done with `op` (completion, error, refused post, close): unpin its region,
   * give a cached region back, and settle the caller unless it already has its outcome.
   */
  private finish(op: Operation, error: unknown): void {
    if (op.queued) this.unqueue(op);
    const cache = op.cache;
    const region = op.region;
    op.cache = null;
    this.table.leaveTransport(op);
    if (region !== null) error = afterLocalUse(op, cache, region, error);
    if (op.messageRegion !== null) this.endReceive(op, error);
    if (op.outcome === Outcome.Pending) this.settle(op, error);
  }

  private unqueue(op: Operation): void {
    op.queued = false;
    const i = this.retries.indexOf(op);
    if (i >= 0) this.retries.splice(i, 1);
  }

  /** A receive() that failed gives its pooled region back (one that succeeded hands it to its Message). */
  private endReceive(op: Operation, error: unknown): void {
    const failed = op.outcome === Outcome.Pending ? error !== null : op.outcome === Outcome.Failed;
    if (failed) this.releaseMessageRegion(op);
  }

  private releaseMessageRegion(op: Operation): void {
    const region = op.messageRegion!;
    op.messageRegion = null;
    if (region.inUse) this.pool!.releaseRegion(region);
  }

  /** The caller's outcome: a cancelled operation's is the reason it was cancelled for. */
  private settle(op: Operation, error: unknown): void {
    const signal = op.signal;
    if (signal !== null) signal.removeEventListener("abort", op.abortListener!);
    const outcome = error !== null && op.cancelReason !== null ? op.cancelReason : error;
    this.table.settle(op, outcome, outcome === null && op.resolve !== null ? this.valueOf(op) : undefined);
  }

  /**
   * Operations past their deadline fail with RmaTimeoutError: RMA operations and sends at once
   * (posted ones stay pinned until the transport lets go), receives once their cancel is confirmed.
   */
  private expire(now: number): void {
    if (this.table.waiting === 0) return;
    const active = this.table.active;
    for (let i = active.length - 1; i >= 0; i--) {
      const op = active[i]!;
      if (op.outcome !== Outcome.Pending || op.deadline > now || op.cancelReason !== null) continue;
      this.counts.timedOut++;
      const error = new RmaTimeoutError(op.describe(), this.timeoutMs, this.transport.functionName(op.kind), this.timeoutHint(op));
      if (op.queued) {
        this.finish(op, error); // never posted: the transport does not have it
      } else if (op.kind === "recv") {
        this.cancel(op, error);
      } else {
        this.settle(op, error);
        this.transport.abandon?.(op);
      }
    }
  }

  /** What a timeout's message tells to check: that the peer progresses, which peer, which transport. */
  private timeoutHint(op: Operation): string {
    const peer = op.peer === -1 ? "any source" : this.transport.describePeer?.(op.peer) ?? String(op.peer);
    return `check that the peer's endpoint is open and progressing (endpoints progress by default; a peer opened with progress "manual" needs poll() or startProgress(), and one parked in a synchronous wait or Atomics.wait does not progress); peer ${peer}, transport ${this.owner.name}`;
  }

  /** The transport failed: every operation fails with it, and so will later ones. */
  private fail(e: unknown): void {
    this.broken = e;
    for (const op of this.retries.slice()) this.finish(op, e);
    for (const op of this.table.active) if (op.outcome === Outcome.Pending) this.settle(op, e);
  }

  // ---- close --------------------------------------------------------------------------------------

  /**
   * Never-posted operations fail; posted ones are cancelled and drained (bounded); then the
   * transport closes and what it still held fails with ENDPOINT_CLOSED (and stays pinned for good
   * if the transport could not let go). Idempotent; throws what failed, after everything.
   */
  close(parent: ParentProvider, endpoint: ProviderChild): void {
    if (this.closed_) return;
    this.closed_ = true;
    this.interval = -1;
    const errors: unknown[] = [];
    const closed = closedError();
    for (const op of this.retries.slice()) this.finish(op, closed);
    this.drainForClose(errors, closed);
    progressEngine.remove(this);
    parent.disown(endpoint);
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
      if (released) this.finish(op, closed);
      else if (op.outcome === Outcome.Pending) this.settle(op, closed);
    }
    // A transport that could not let go may still write into these operations' memory: keep it for good.
    if (!released) heldForever.add(this.scratch);
    if (errors.length > 0) throw errors.length === 1 ? errors[0] : new AggregateError(errors, `closing ${this.owner.name}'s endpoint`);
  }

  /**
   * Cancels what is posted and turns until the transport holds nothing (and no endpoint of this
   * process may still use this one's memory), for at most closeTimeoutMs.
   */
  private drainForClose(errors: unknown[], closed: AllocToolsError): void {
    const transport = this.transport;
    if (this.table.inTransport === 0 && !transport.holdsOthers()) return;
    try {
      transport.quiesce?.();
    } catch (e) {
      errors.push(e);
    }
    for (const op of this.table.active) {
      if (op.cancelReason === null) op.cancelReason = closed;
      transport.cancel(op);
    }
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

  assertOpen(): void {
    if (this.closed_) throw new AllocToolsError("ENDPOINT_CLOSED", "the endpoint is closed");
  }

  assertMessaging(kind: OperationKind): void {
    this.assertOpen();
    const reason = this.transport.messaging;
    if (reason !== "") throw new AllocToolsError("NOT_SUPPORTED", `${kind}: ${reason}`);
  }
}

/** Atomic cells of endpoints whose transport could not let go at close: never collected. */
const heldForever = new Set<AtomicScratch>();


function closedError(): AllocToolsError {
  return new AllocToolsError("ENDPOINT_CLOSED", "the endpoint was closed before the operation completed");
}
