// The public face every endpoint shares: Endpoint (libfabric), UcxEndpoint and MpiEndpoint extend
// EndpointEngine and hand it a transport adapter. Each method here is the whole public contract
// of one form; the work is the operation engine's (operation-engine.ts).
//
// One-sided: write/read (promise), writeSync/readSync, postWrite/postRead + poll + completed.
// Remote atomics: fetchAdd/compareSwap, their Sync forms, postFetchAdd/postCompareSwap + fetched.
// Messages: send/sendSync/postSend; recv/recvSync/postRecv + received; receive() for a message of
// unknown size into the endpoint's pool; messages() for servers.
import { AllocToolsRangeError } from "../errors.ts";
import { inspectCustom, oneLine } from "../inspect.ts";
import type { ParentProvider } from "../memory/provider-child.ts";
import type { MemoryPool } from "../pool/pool.ts";
import type { RegistrationCache } from "../cache/registration-cache.ts";
import { ANY_SOURCE, type Message, type Received, type ReceiveOptions } from "./message.ts";
import { atomicValue } from "./atomic-scratch.ts";
import { Outcome, Wait } from "./operation.ts";
import { OperationEngine, type AnyLocalMemory } from "./operation-engine.ts";
import { beginAtomic, beginReceive, beginRecv, beginRma, beginSend, runAtomicNow, runRmaNow } from "./operation-starts.ts";
import type { RemoteRegion } from "./remote-region.ts";
import type { RmaEndpoint, RmaEndpointStats } from "./rma-endpoint.ts";
import type { EngineSettings } from "./engine-options.ts";
import { peerNameBytes, peerNameString } from "./peer-name.ts";
import type { Transport } from "./transport.ts";

/**
 * Any endpoint (Endpoint, UcxEndpoint or MpiEndpoint): what code written for every transport takes.
 * Its peers are what that endpoint's insert() returned (a bigint for libfabric, a number for UCX and
 * MPI). A union such as `Endpoint | UcxEndpoint` cannot be called (its peer parameters intersect to
 * `never`); this type can.
 */
export type AnyEndpoint = EndpointEngine<number | bigint>;

/**
 * The base of every endpoint: the one-sided and message operations in their three forms, over a
 * transport adapter. `Peer` is what the transport's `insert()` returns.
 */
export abstract class EndpointEngine<Peer extends number | bigint> implements RmaEndpoint<Peer> {
  /** This endpoint's address: give these bytes to a peer for its `insert()`. */
  readonly name: Uint8Array;
  /** Milliseconds an operation may take before it fails with RmaTimeoutError (receive() and messages() wait without one). */
  readonly timeoutMs: number;
  /** Microseconds the promise forms poll inline before waiting on the event loop. */
  readonly spinMicroseconds: number;
  /** Where plain views given as local memory are registered (options.cache); null: views are refused. */
  readonly cache: RegistrationCache | null;
  /** Where receive() takes the memory of a message of unknown size (options.pool); null: receive() is refused. */
  readonly pool: MemoryPool | null;
  /** Operations in flight or not yet retired at once. */
  readonly maxPending: number;
  /** @internal The operation engine. */
  protected readonly engine: OperationEngine<Peer>;
  /** @internal The transport adapter. */
  protected readonly transport: Transport<Peer>;
  readonly #parent: ParentProvider & { readonly name: string };

  /**
   * Takes over an opened transport: registers with the progress engine and with `provider`, which
   * closes the endpoint first when it closes. Never throws (settings are checked already:
   * checkEngineOptions).
   */
  protected constructor(transport: Transport<Peer>, settings: EngineSettings, provider: ParentProvider & { readonly name: string }) {
    this.engine = new OperationEngine(transport, settings, provider);
    this.transport = transport;
    this.name = transport.name;
    this.timeoutMs = settings.timeoutMs;
    this.spinMicroseconds = settings.spinMicroseconds;
    this.cache = settings.cache;
    this.pool = settings.pool;
    this.maxPending = settings.maxPending;
    this.#parent = provider;
    provider.adopt(this);
  }

  /** Whether close() was called. */
  get closed(): boolean {
    return this.engine.closed;
  }

  /**
   * Operations posted (or waiting to be) and not yet ended: those whose caller still waits, and,
   * where the transport ends timed-out operations on its own (UCX, MPI), those it still holds.
   */
  get pendingCount(): number {
    return this.engine.pendingCount;
  }

  /** Operations the transport still holds, timed-out ones included (their regions stay pinned). */
  get inTransportCount(): number {
    return this.engine.inTransportCount;
  }

  /** The interval asked for with startProgress(), -1 when not progressing in the background. */
  get progressInterval(): number {
    return this.engine.progressInterval;
  }

  /** Counters since the endpoint opened. */
  stats(): RmaEndpointStats {
    return this.engine.stats();
  }

  /** One line for console.log: provider, pending operations, progress interval, closed. */
  [inspectCustom](): string {
    return oneLine(this.constructor.name, { provider: this.#parent.name, pending: this.pendingCount, progressInterval: this.progressInterval, closed: this.closed });
  }

  /** `name` as a URL-safe string (a kind prefix, a dot, base64url): `insert()` takes either. */
  get nameString(): string {
    return peerNameString(this.transport.nameKind, this.name);
  }

  /** Adds a peer by its endpoint name (the bytes, or their `nameString`); use the result as `peer`. */
  insert(peerName: Uint8Array | string): Peer {
    this.engine.assertOpen();
    return this.transport.insert(typeof peerName === "string" ? peerNameBytes(this.transport.nameKind, peerName) : peerName);
  }

  // ---- one-sided ----------------------------------------------------------------------------------

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
  write(local: AnyLocalMemory, length: number, peer: Peer, remote: RemoteRegion): Promise<void> {
    return this.engine.promise(beginRma(this.engine, "write", Wait.Promise, local, length, peer, remote));
  }

  /** Reads `length` bytes from the start of `remote` on `peer` into `local`; errors as for write(). */
  read(local: AnyLocalMemory, length: number, peer: Peer, remote: RemoteRegion): Promise<void> {
    return this.engine.promise(beginRma(this.engine, "read", Wait.Promise, local, length, peer, remote));
  }

  /**
   * write(), waiting on the calling thread: posts, then turns this thread's endpoints (one of which
   * may be the target) until the operation completes. Throws where write() would reject. Allocates
   * nothing on the success path.
   */
  writeSync(local: AnyLocalMemory, length: number, peer: Peer, remote: RemoteRegion): void {
    const engine = this.engine;
    if (engine.runsNow) runRmaNow(engine, "write", local, length, peer, remote);
    else engine.waitSync(beginRma(engine, "write", Wait.Sync, local, length, peer, remote));
  }

  /** read(), waiting on the calling thread; see writeSync. */
  readSync(local: AnyLocalMemory, length: number, peer: Peer, remote: RemoteRegion): void {
    const engine = this.engine;
    if (engine.runsNow) runRmaNow(engine, "read", local, length, peer, remote);
    else engine.waitSync(beginRma(engine, "read", Wait.Sync, local, length, peer, remote));
  }

  /**
   * Posts a write and returns its operation id; drive it with poll() and ask with completed(id).
   * Refusals throw as for write(). Allocates nothing on the success path.
   */
  postWrite(local: AnyLocalMemory, length: number, peer: Peer, remote: RemoteRegion): number {
    return beginRma(this.engine, "write", Wait.Post, local, length, peer, remote).id;
  }

  /** Posts a read and returns its operation id; see postWrite. */
  postRead(local: AnyLocalMemory, length: number, peer: Peer, remote: RemoteRegion): number {
    return beginRma(this.engine, "read", Wait.Post, local, length, peer, remote).id;
  }

  // ---- remote atomics -----------------------------------------------------------------------------

  /**
   * Adds `value` to the aligned 64-bit word at the start of `remote` on `peer`, atomically, and
   * resolves with the word's value before the add (exact, unsigned). `value` is a bigint or a safe
   * integer; a negative one subtracts (the word wraps modulo 2^64). RangeError, before anything is
   * posted, for a misaligned or short remote region; AllocToolsError NOT_SUPPORTED where the
   * transport has no remote atomics.
   */
  fetchAdd(peer: Peer, remote: RemoteRegion, value: bigint | number): Promise<bigint> {
    return this.engine.promise<bigint>(beginAtomic(this.engine, "fetchAdd", Wait.Promise, peer, remote, atomicValue(value, "fetchAdd value"), 0n));
  }

  /** fetchAdd(), waiting on the calling thread; returns the value before the add. */
  fetchAddSync(peer: Peer, remote: RemoteRegion, value: bigint | number): bigint {
    const engine = this.engine;
    const operand = atomicValue(value, "fetchAdd value");
    if (engine.runsNow) return runAtomicNow(engine, "fetchAdd", peer, remote, operand, 0);
    return engine.waitFetched(beginAtomic(engine, "fetchAdd", Wait.Sync, peer, remote, operand, 0));
  }

  /** Posts a fetchAdd and returns its operation id for fetched(id). */
  postFetchAdd(peer: Peer, remote: RemoteRegion, value: bigint | number): number {
    return beginAtomic(this.engine, "fetchAdd", Wait.Post, peer, remote, atomicValue(value, "fetchAdd value"), 0n).id;
  }

  /**
   * Sets the aligned 64-bit word at the start of `remote` on `peer` to `desired` where it equals
   * `expected`, atomically, and resolves with the value found: the swap happened when it equals
   * `expected`. Refusals as for fetchAdd().
   */
  compareSwap(peer: Peer, remote: RemoteRegion, expected: bigint | number, desired: bigint | number): Promise<bigint> {
    return this.engine.promise<bigint>(beginAtomic(this.engine, "compareSwap", Wait.Promise, peer, remote, atomicValue(desired, "compareSwap desired"), atomicValue(expected, "compareSwap expected")));
  }

  /** compareSwap(), waiting on the calling thread; returns the value found. */
  compareSwapSync(peer: Peer, remote: RemoteRegion, expected: bigint | number, desired: bigint | number): bigint {
    const engine = this.engine;
    const swapIn = atomicValue(desired, "compareSwap desired");
    const compare = atomicValue(expected, "compareSwap expected");
    if (engine.runsNow) return runAtomicNow(engine, "compareSwap", peer, remote, swapIn, compare);
    return engine.waitFetched(beginAtomic(engine, "compareSwap", Wait.Sync, peer, remote, swapIn, compare));
  }

  /** Posts a compareSwap and returns its operation id for fetched(id). */
  postCompareSwap(peer: Peer, remote: RemoteRegion, expected: bigint | number, desired: bigint | number): number {
    return beginAtomic(this.engine, "compareSwap", Wait.Post, peer, remote, atomicValue(desired, "compareSwap desired"), atomicValue(expected, "compareSwap expected")).id;
  }

  /**
   * The outcome of posted atomic `id`: null while pending; the value found once (the id then
   * retires); throws its error (and retires). RangeError for an unknown, retired or non-atomic id.
   */
  fetched(id: number): bigint | null {
    const op = this.engine.postedOperation(id, "postFetchAdd/postCompareSwap");
    if (op.kind !== "fetchAdd" && op.kind !== "compareSwap") throw new AllocToolsRangeError(`operation id ${String(id)} is a ${op.kind}, not an atomic: ask completed(id)`);
    if (op.outcome === Outcome.Pending) return null;
    const value = op.error === null ? this.engine.fetchedValue(op) : 0n;
    this.engine.retirePosted(op);
    return value;
  }

  // ---- messages -----------------------------------------------------------------------------------

  /**
   * Sends `length` bytes (0 allowed) from `local` to `peer` with `tag` (an integer in [0, 2^32));
   * resolves once `local` may be reused. Messages to one peer with one tag arrive in the order they
   * were sent. Refusals throw as for write(); AllocToolsError NOT_SUPPORTED where the transport has
   * no tagged messages.
   */
  send(local: AnyLocalMemory, length: number, peer: Peer, tag: number): Promise<void> {
    return this.engine.promise(beginSend(this.engine, Wait.Promise, local, length, peer, tag));
  }

  /** send(), waiting on the calling thread; throws where send() would reject. Allocates nothing on success. */
  sendSync(local: AnyLocalMemory, length: number, peer: Peer, tag: number): void {
    this.engine.waitSync(beginSend(this.engine, Wait.Sync, local, length, peer, tag));
  }

  /** Posts a send and returns its operation id for completed(id). */
  postSend(local: AnyLocalMemory, length: number, peer: Peer, tag: number): number {
    return beginSend(this.engine, Wait.Post, local, length, peer, tag).id;
  }

  /**
   * Receives a message from `source` (a peer, or ANY_SOURCE) whose tag matches `tag` outside the
   * bits of `options.ignore`, into at most `length` bytes of `local`. Resolves with its source
   * (usable for a reply), tag and length. A longer message fails with AllocToolsError TRUNCATED
   * (nothing is written past `length`); past `timeoutMs` the receive is cancelled and fails with
   * RmaTimeoutError, unless its message had matched; `options.signal` aborts it the same way.
   */
  recv(local: AnyLocalMemory, length: number, source: Peer | typeof ANY_SOURCE, tag: number, options?: ReceiveOptions): Promise<Received<Peer>> {
    let op;
    try {
      op = beginRecv(this.engine, Wait.Promise, local, length, source, tag, options);
    } catch (e) {
      if (options?.signal?.aborted === true && e === options.signal.reason) return Promise.reject(e);
      throw e;
    }
    return this.engine.promise<Received<Peer>>(op);
  }

  /** recv(), waiting on the calling thread; returns the Received (its one allocation) or throws. */
  recvSync(local: AnyLocalMemory, length: number, source: Peer | typeof ANY_SOURCE, tag: number, options?: ReceiveOptions): Received<Peer> {
    return this.engine.waitReceived(beginRecv(this.engine, Wait.Sync, local, length, source, tag, options));
  }

  /** Posts a receive and returns its operation id for received(id). */
  postRecv(local: AnyLocalMemory, length: number, source: Peer | typeof ANY_SOURCE, tag: number, options?: ReceiveOptions): number {
    return beginRecv(this.engine, Wait.Post, local, length, source, tag, options).id;
  }

  /**
   * The outcome of posted receive `id`: null while pending; its Received once (the id then
   * retires); throws its error (and retires). RangeError for an unknown or retired id.
   */
  received(id: number): Received<Peer> | null {
    const op = this.engine.postedOperation(id, "postRecv");
    if (op.kind !== "recv") throw new AllocToolsRangeError(`operation id ${String(id)} is a ${op.kind}, not a postRecv: ask completed(id)`);
    if (op.outcome === Outcome.Pending) return null;
    const received = op.error === null ? this.engine.received(op) : null;
    this.engine.retirePosted(op);
    return received!;
  }

  /**
   * Receives a message of unknown size: the transport finds a matching message and its length
   * first, then it is received with no copy into a region of that size from the endpoint's pool
   * (`options.pool`). Release the Message to give the region back. Waits without a deadline:
   * ends with the signal (its reason) or close (ENDPOINT_CLOSED).
   */
  receive(source: Peer | typeof ANY_SOURCE, tag: number, options?: ReceiveOptions): Promise<Message<Peer>> {
    let op;
    try {
      op = beginReceive(this.engine, source, tag, options);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.engine.promise<Message<Peer>>(op);
  }

  /**
   * Messages from any source whose tag matches `tag` (outside `options.ignore`), one after the
   * other, each a Message to release; for servers. Ends when the endpoint closes or the signal
   * aborts.
   */
  async *messages(tag: number, options?: ReceiveOptions): AsyncGenerator<Message<Peer>, void, undefined> {
    const signal = options?.signal ?? null;
    while (!this.closed && !aborted(signal)) {
      let message: Message<Peer>;
      try {
        message = await this.receive(ANY_SOURCE, tag, options);
      } catch (e) {
        if (this.closed || (aborted(signal) && e === signal!.reason)) return;
        throw e;
      }
      yield message;
    }
  }

  // ---- progress -----------------------------------------------------------------------------------

  /**
   * One progress turn of this endpoint that never blocks and never throws: posts what was pushed
   * back, reads completions, expires timed-out operations. Returns the completions read. 0 once
   * closed.
   */
  poll(): number {
    return this.engine.poll();
  }

  /**
   * Whether operation `id` (from a post form) has completed. Returns true once, or throws the
   * operation's error; either retires the id. RangeError for an unknown or retired id. Still
   * answers after close() for the operations close() ended.
   */
  completed(id: number): boolean {
    const op = this.engine.postedOperation(id, "post-form operation");
    if (op.outcome === Outcome.Pending) return false;
    this.engine.retirePosted(op);
    return true;
  }

  /** One synchronous progress turn: like poll(), and throws when the endpoint is closed or its transport failed. */
  progress(): number {
    return this.engine.progress();
  }

  /**
   * Keeps this endpoint progressing on the event loop even with nothing pending, at a rate of your
   * choosing: what a target that only exposes memory wants for low latency where the transport
   * moves data only when polled (every endpoint already progresses every 1–8 ms by default:
   * options.progress "auto"). `intervalMs` 0 polls as fast as the event loop turns (lowest latency,
   * a busy core); the default 1 ms is light. The timer keeps the process alive until
   * stopProgress() or close().
   */
  startProgress(intervalMs: number = 1): void {
    this.engine.startProgress(intervalMs);
  }

  /**
   * Stops background progress: what startProgress() started, and the automatic progress an
   * endpoint opened with `progress: "auto"` (the default) has; pending operations and
   * poll()/progress() still turn it.
   */
  stopProgress(): void {
    this.engine.stopProgress();
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
    this.engine.close(this.#parent, this);
  }

  /** `using endpoint = new Endpoint(provider)`: the same as `close()`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** Whether `signal` is there and aborted (read afresh: an await may have passed). */
function aborted(signal: AbortSignal | null): boolean {
  return signal !== null && signal.aborted;
}
