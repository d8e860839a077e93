// UcxEndpoint: RMA over a UCX worker (ucp_put_nbx / ucp_get_nbx), the RmaEndpoint contract with
// its promise, sync and post forms.
//
// - Completion is polled: ucp_worker_progress, then ucp_request_check_status on each request, then
//   ucp_request_free. UCX never calls into JS (no callback is passed; a native thread must not
//   run JS).
// - A put completes locally (the buffer may be reused), not remotely. A write is therefore a put
//   covered by a later ucp_ep_flush_nbx on the peer's ep, and completes with that flush: the data
//   is then in the target's memory, as RmaEndpoint.write promises. One flush covers every put
//   posted before it on that ep, so writes share flushes: a put waits "awaiting flush" until a
//   progress turn (poll, progress, completed, a sync wait, the progress engine) issues one flush
//   per peer for all of them; puts posted after that wait for the next. A window of writes thus
//   costs one flush, not one per write. A read (get) completes when the data is here.
// - Over emulated RMA (every transport with memory UCX did not allocate, and tcp always) the target
//   must progress its worker; a target in this process is progressed by every wait here and by
//   the progress engine, another process's by its startProgress().
// - Remote keys are unpacked once per peer and key blob and cached (an unpack of a shared-memory
//   rkey maps the segment: ~14 µs). A blob is framing-checked before it is ever unpacked.
import { type Pointer, ptr } from "bun:ffi";
import { isStatusError, rkeyBlobProblem, UcxError, UCX, ucxLayout, type Ucx } from "../../ffi/ucx.ts";
import { AllocToolsError, AllocToolsTypeError, AllocToolsRangeError } from "../errors.ts";
import { LocalRange, resolveLocal } from "../engine/local-memory.ts";
import { checkProgressInterval, progressEngine, type Progressable } from "../engine/progress.ts";
import { beginOperation, endOperation, type MemoryRegionImpl } from "../memory/region.ts";
import { RemoteRegion } from "../engine/remote-region.ts";
import type { LocalMemory, RmaEndpoint, RmaEndpointStats } from "../engine/rma-endpoint.ts";
import { RmaTimeoutError, type RmaKind, type RmaOperation } from "../engine/rma-errors.ts";
import type { UcxProvider } from "./ucx-provider.ts";

/** A peer of a UcxEndpoint: the index `insert()` returned. */
export type UcxPeer = number;

/** RmaEndpointStats, and what UCX adds. */
export interface UcxEndpointStats extends RmaEndpointStats {
  /** `ucp_ep_rkey_unpack` calls: one per peer and distinct key blob (the rest hit the cache). */
  readonly rkeysUnpacked: number;
  /** `ucp_ep_flush_nbx` calls: one per peer and progress turn that found writes awaiting a flush. */
  readonly flushes: number;
}

/** Options of `new UcxEndpoint(provider, options)`. */
export interface UcxEndpointOptions {
  /** Milliseconds an operation may take before it fails with RmaTimeoutError; default 10 000. */
  timeoutMs?: number;
  /** Operations in flight at once (post and promise forms); default 4096, at most 65 536. */
  maxPending?: number;
  /** Milliseconds close() waits for endpoints to close and cancelled requests to end; default 1000. */
  closeTimeoutMs?: number;
}

/** Slot states. */
const FREE = 0;
const PENDING = 1;
const DONE = 2;
const FAILED = 3;
/** Low 16 bits of an id: the slot; the rest: the slot's generation. */
const SLOT_BITS = 16;
const SLOT_MASK = (1 << SLOT_BITS) - 1;
const GENERATIONS = 1 << 14;
/** What issueFlush() returns for a flush still in flight (UCX statuses are 0 or negative). */
const FLUSH_IN_FLIGHT = 1;
/** Sync waits read the clock once per this many polls. */
const CLOCK_EVERY = 64;

/** One operation in flight: a slot reused for the endpoint's lifetime. */
class Operation implements RmaOperation {
  /** RmaOperation: what it was, for errors. */
  kind: RmaKind = "write";
  length = 0;
  remoteAddress = 0n;
  readonly key = 0n;
  /** The id handed out (slot + generation); 0 while free. */
  id = 0;
  generation = 0;
  state = FREE;
  /** The put/get request, 0 when it completed at once. */
  request = 0;
  /** The peer index the operation targets. */
  peer = -1;
  /** A write: whether the flush that covers its put has yet to complete. */
  awaitingFlush = false;
  /** A write: the epoch of the flush that covers it (its peer's nextEpoch when posted). */
  flushEpoch = 0;
  deadline = 0;
  region: MemoryRegionImpl | null = null;
  /** The post form's operations wait for completed(id); promise ones settle and retire at once. */
  viaPromise = false;
  resolve: (() => void) | null = null;
  reject: ((e: unknown) => void) | null = null;
  error: unknown = null;
  /** Position in the endpoint's active list while PENDING. */
  activeAt = -1;
  readonly slot: number;
  constructor(slot: number) {
    this.slot = slot;
  }
}

/** A request UCX still owns after its operation ended (timed out, endpoint closing): polled until it ends, then freed. */
interface Orphan {
  readonly request: number;
  readonly region: MemoryRegionImpl | null;
}

/** One inserted peer: its ep and the rkeys unpacked on it. */
class Peer {
  readonly ep: number;
  /** The last key blob used and its rkey: the common case costs one comparison. */
  lastBlob: Uint8Array | null = null;
  lastRkey = 0;
  /** rkeys by blob object, then by blob content (a blob parsed again from the same bytes). */
  readonly byBlob = new Map<Uint8Array, number>();
  readonly byContent = new Map<string, number>();
  closed = false;
  /** The epoch the next flush on this ep carries: writes posted now wait for it. */
  nextEpoch = 1;
  /** Puts posted since the last flush was issued (a timed-out one may still count: one spare flush). */
  unflushed = 0;
  /** Whether this peer is in the endpoint's list of peers with puts awaiting a flush. */
  listed = false;
  readonly index: number;
  constructor(ep: number, index: number) {
    this.ep = ep;
    this.index = index;
  }
}

/** Blob objects remembered per peer before the identity map starts over (contents stay cached). */
const MAX_BLOB_IDENTITIES = 1024;

/** Open UCX endpoints of this thread: a wait here progresses all of them (a target may be one). */
const openEndpoints = new Set<UcxEndpoint>();

/**
 * RMA over UCX: see the file header and RmaEndpoint for the contract.
 *
 * Lifetime: `new UcxEndpoint(provider)` creates a ucp_worker on the provider's context;
 * `close()` (or `using`) ends what is in flight, closes the peers' eps and destroys the worker,
 * idempotent; the provider closes its endpoints first when it closes.
 *
 * Hot path: once a peer has seen a remote key blob, the post forms (`postWrite`, `postRead`,
 * `completed`, `poll`, `progress`) reuse operation slots (each made at its first need, up to
 * `maxPending`) and parameter memory, and make no new object per call on success once the slots
 * exist; the first use of a key blob on a peer unpacks it
 * (`ucp_ep_rkey_unpack`, and allocations). The sync forms wait in the calling thread;
 * `write`/`read` allocate their Promise.
 */
export class UcxEndpoint implements RmaEndpoint<UcxPeer>, Progressable {
  /** The provider whose memory this endpoint reads and writes from. */
  readonly provider: UcxProvider;
  /** This worker's address (`ucp_worker_get_address`): give it to a peer for its insert(). */
  readonly name: Uint8Array;
  /** Milliseconds an operation may take before it fails with RmaTimeoutError. */
  readonly timeoutMs: number;
  /** Operations in flight at once. */
  readonly maxPending: number;
  /** How a write's completion is made to mean "in the target's memory". */
  readonly writeCompletion = "ucp_ep_flush_nbx" as const;

  private readonly ucx: Ucx;
  private readonly raw: Ucx["raw"];
  private readonly worker: number;
  private readonly closeTimeoutMs: number;
  private readonly peers: Peer[] = [];
  private readonly slots: Operation[] = [];
  private readonly freeSlots: number[] = [];
  /** Operations with transport work outstanding. */
  private readonly active: Operation[] = [];
  private readonly orphans: Orphan[] = [];
  /** Peers with puts posted since their last flush (their `listed` is set). */
  private readonly unflushedPeers: Peer[] = [];
  /** Flushes in flight, as three parallel lists: the request, its peer index, its epoch. */
  private readonly flushRequests: number[] = [];
  private readonly flushPeers: number[] = [];
  private readonly flushEpochs: number[] = [];
  private readonly counts = { posted: 0, retried: 0, completed: 0, failed: 0, timedOut: 0, rkeysUnpacked: 0, flushes: 0 };
  private readonly local = new LocalRange();
  /** ucp_request_param_t for put/get: op_attr_mask MEMH, memh written per operation. */
  private readonly rmaParam = new Uint32Array(ucxLayout.ucp_request_param_t.size / 4);
  private readonly rmaParamAddress: number;
  /** ucp_request_param_t for flush: nothing set. */
  private readonly flushParam = new Uint32Array(ucxLayout.ucp_request_param_t.size / 4);
  private readonly flushParamAddress: number;
  private interval = -1;
  private closed_ = false;

  /**
   * Creates a worker on the provider's context: in a Worker, over `UcxProvider.attach(handle)` (or
   * an attached pool's `provider`), the Worker's own ucp_worker. Throws AllocToolsError
   * PROVIDER_CLOSED (also when the owner of a view closed it), RangeError for bad options,
   * UcxError when UCX refuses.
   */
  constructor(provider: UcxProvider, options: UcxEndpointOptions = {}) {
    const o = checkOptions(options);
    if (provider === null || typeof provider !== "object" || provider.kind !== "ucx") throw new AllocToolsTypeError("UcxEndpoint takes a UcxProvider");
    if (provider.closed) throw new AllocToolsError("PROVIDER_CLOSED", `provider ${provider.name} is closed`);
    this.provider = provider;
    this.ucx = provider.ucx;
    this.raw = provider.ucx.raw;
    this.timeoutMs = o.timeoutMs;
    this.maxPending = o.maxPending;
    this.closeTimeoutMs = o.closeTimeoutMs;
    this.rmaParam[ucxLayout.ucp_request_param_t.fields.op_attr_mask / 4] = UCX.OP_ATTR_FIELD_MEMH;
    this.rmaParamAddress = ptr(this.rmaParam);
    this.flushParamAddress = ptr(this.flushParam);
    provider.retainContext(); // the context outlives this worker, whichever thread closes last
    let worker = 0;
    try {
      worker = this.ucx.workerCreate(provider.context);
      this.name = this.ucx.workerAddress(worker);
    } catch (e) {
      if (worker !== 0) this.ucx.workerDestroy(worker);
      provider.releaseContext();
      throw e;
    }
    this.worker = worker;
    provider.adopt(this);
    progressEngine.add(this);
    openEndpoints.add(this);
  }

  /** Whether close() was called. */
  get closed(): boolean {
    return this.closed_;
  }

  /** Operations posted and not yet completed (timed-out requests UCX still holds included). */
  get pendingCount(): number {
    return this.active.length + this.orphans.length;
  }

  /** Flushes issued and not yet completed (each covers the writes posted to its peer before it). */
  get flushesInFlight(): number {
    return this.flushRequests.length;
  }

  /** @internal Progressable: the interval asked for with startProgress(), -1 when not asked. */
  get progressInterval(): number {
    return this.interval;
  }

  /** Counters since the endpoint opened (UCX queues internally: `retried` stays 0). */
  stats(): UcxEndpointStats {
    return { ...this.counts };
  }

  /** Adds a peer by its worker address (`ucp_ep_create`); use the result as `peer`. */
  insert(peerName: Uint8Array): UcxPeer {
    this.assertOpen();
    if (!(peerName instanceof Uint8Array) || peerName.length === 0) throw new AllocToolsTypeError("insert takes a peer's worker address (non-empty Uint8Array)");
    const ep = this.ucx.epCreate(this.worker, peerName);
    this.peers.push(new Peer(ep, this.peers.length));
    return this.peers.length - 1;
  }

  /**
   * Writes `length` bytes from `local` to the start of `remote` on `peer`; resolves once the data
   * is in the target's memory (put, then a flush issued by the next progress turn, shared with
   * the other writes posted to that peer by then). Throws synchronously, having posted nothing, for
   * a refused request: RangeError, TypeError, AllocToolsError, UcxError (a key blob that fails its
   * check or unpack). Rejects with UcxError or RmaTimeoutError for what happens after posting.
   */
  write(local: LocalMemory, length: number, peer: UcxPeer, remote: RemoteRegion): Promise<void> {
    return this.start("write", local, length, peer, remote);
  }

  /** Reads `length` bytes from the start of `remote` on `peer` into `local`; errors as for write(). */
  read(local: LocalMemory, length: number, peer: UcxPeer, remote: RemoteRegion): Promise<void> {
    return this.start("read", local, length, peer, remote);
  }

  /** write(), waiting on the calling thread; throws where the promise would reject. */
  writeSync(local: LocalMemory, length: number, peer: UcxPeer, remote: RemoteRegion): void {
    this.waitSync(this.post("write", local, length, peer, remote, false, true));
  }

  /** read(), waiting on the calling thread; throws where the promise would reject. */
  readSync(local: LocalMemory, length: number, peer: UcxPeer, remote: RemoteRegion): void {
    this.waitSync(this.post("read", local, length, peer, remote, false, false));
  }

  /**
   * Posts a write (the put) and returns its operation id (see completed()). It completes once a
   * flush issued after it completes: poll() issues one per peer for all writes posted so far.
   */
  postWrite(local: LocalMemory, length: number, peer: UcxPeer, remote: RemoteRegion): number {
    return this.post("write", local, length, peer, remote, false, false).id;
  }

  /** Posts a read and returns its operation id (see completed()). */
  postRead(local: LocalMemory, length: number, peer: UcxPeer, remote: RemoteRegion): number {
    return this.post("read", local, length, peer, remote, false, false).id;
  }

  /**
   * One progress turn that never blocks: issues one flush per peer with writes awaiting one,
   * progresses this worker (and the other UCX endpoints of this thread, which may be the
   * targets), checks requests and flushes, expires timed-out operations. Returns the number of
   * operations that completed.
   */
  poll(): number {
    this.assertOpen();
    return this.turn(performance.now(), true);
  }

  /**
   * Whether operation `id` has completed; throws its error if it failed. Either way the id is then
   * retired. A write still waiting for its flush to be issued has it issued here (covering its
   * peer's other writes too). Throws RangeError for an unknown or retired id.
   */
  completed(id: number): boolean {
    const op = this.slotOf(id);
    if (op === undefined || op.viaPromise) throw new AllocToolsRangeError(`operation id ${String(id)} is unknown or retired on this endpoint`);
    if (op.state === PENDING) {
      this.flushFor(op);
      this.check(op);
      if (op.state === PENDING) return false;
      this.removeActive(op);
    }
    if (op.state === DONE) {
      this.retire(op);
      return true;
    }
    const error = op.error;
    this.retire(op);
    throw error;
  }

  /** One progress turn; like poll(). */
  progress(): number {
    this.assertOpen();
    return this.turn(performance.now(), true);
  }

  /**
   * Keeps this worker progressing on the event loop with nothing pending: what a target that only
   * exposes memory needs over emulated RMA (tcp; own memory on shared memory). `intervalMs` 0
   * polls as fast as the event loop turns; the default 1 ms is light (an idle tcp progress costs
   * ~0.7 µs).
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
   * Ends operations in flight (they fail with AllocToolsError ENDPOINT_CLOSED, writes awaiting a
   * flush included; their requests and the flushes in flight are cancelled and waited for up to
   * closeTimeoutMs), destroys the cached rkeys, closes the peers'
   * eps (flushing) and destroys the worker. Local regions are unpinned once UCX no longer holds
   * their requests. Idempotent.
   */
  close(): void {
    if (this.closed_) return;
    this.closed_ = true;
    this.interval = -1;
    progressEngine.remove(this);
    openEndpoints.delete(this);
    this.provider.disown(this);
    const closedError = () => new AllocToolsError("ENDPOINT_CLOSED", "the endpoint was closed before the operation completed");
    for (const op of [...this.active]) {
      this.orphan(op);
      this.fail(op, closedError());
    }
    for (const request of this.flushRequests) this.orphans.push({ request, region: null });
    this.flushRequests.length = 0;
    this.flushPeers.length = 0;
    this.flushEpochs.length = 0;
    this.unflushedPeers.length = 0;
    for (const o of this.orphans) this.raw.ucp_request_cancel(this.worker as Pointer, o.request as Pointer);
    const deadline = performance.now() + this.closeTimeoutMs;
    while (this.orphans.length > 0 && performance.now() < deadline) {
      this.raw.ucp_worker_progress(this.worker as Pointer);
      progressOthers(this);
      this.checkOrphans();
    }
    const closing: number[] = [];
    for (const peer of this.peers) {
      for (const rkey of peer.byContent.values()) this.raw.ucp_rkey_destroy(rkey as Pointer);
      peer.byContent.clear();
      peer.byBlob.clear();
      peer.lastBlob = null;
      peer.closed = true;
      const request = this.ucx.epClose(peer.ep, false);
      if (request > 0) closing.push(request);
    }
    while (closing.length > 0 && performance.now() < deadline) {
      this.raw.ucp_worker_progress(this.worker as Pointer);
      progressOthers(this);
      for (let i = closing.length - 1; i >= 0; i--) {
        if (this.raw.ucp_request_check_status(closing[i] as Pointer) !== UCX.INPROGRESS) {
          this.raw.ucp_request_free(closing[i] as Pointer);
          closing.splice(i, 1);
        }
      }
    }
    // Requests that did not end in time are handed back (ucp_request_free of a request in progress
    // releases it on completion) and go with the worker: from here on UCX touches no local region.
    for (const request of closing) this.raw.ucp_request_free(request as Pointer);
    for (const o of this.orphans) {
      this.raw.ucp_request_free(o.request as Pointer);
      if (o.region !== null) endOperation(o.region);
    }
    this.orphans.length = 0;
    this.ucx.workerDestroy(this.worker);
    this.provider.releaseContext();
  }

  /** Same as close(). */
  [Symbol.dispose](): void {
    this.close();
  }

  /** @internal One ucp_worker_progress of this worker (another endpoint's wait may need this one as its target). */
  progressWorker(): void {
    if (!this.closed_) this.raw.ucp_worker_progress(this.worker as Pointer);
  }

  /** @internal Progressable: one turn that never throws (failures settle the operations). */
  pump(now: number): number {
    if (this.closed_) return 0;
    return this.turn(now, false);
  }

  // ---- posting --------------------------------------------------------------------------------

  private start(kind: RmaKind, local: LocalMemory, length: number, peer: UcxPeer, remote: RemoteRegion): Promise<void> {
    const op = this.post(kind, local, length, peer, remote, true, false);
    const promise = new Promise<void>((resolve, reject) => {
      op.resolve = resolve;
      op.reject = reject;
    });
    if (op.state === PENDING) progressEngine.wake();
    else this.settle(op);
    return promise;
  }

  /**
   * Checks, then posts put or get; a put then awaits a flush, issued here when `flushNow` (a sync
   * write: its flush covers the peer's other unflushed puts too). Refusals throw before anything
   * is posted; a failure of the post itself leaves the operation FAILED. Returns the operation.
   */
  private post(kind: RmaKind, local: LocalMemory, length: number, peerIndex: UcxPeer, remote: RemoteRegion, viaPromise: boolean, flushNow: boolean): Operation {
    this.assertOpen();
    const range = this.local;
    resolveLocal(kind, local, length, range);
    const region = range.region!;
    const pool = region.owner as { provider?: unknown } | null;
    if (pool !== null && pool.provider !== undefined && pool.provider !== this.provider && !this.provider.sharesContextWith(pool.provider)) {
      throw new AllocToolsError("FOREIGN_REGION", `${kind}: the local region is registered with another provider than this endpoint's (nor a view of its UCX context)`);
    }
    if (!(remote instanceof RemoteRegion)) throw new AllocToolsTypeError(`${kind} target must be a RemoteRegion (region.remote(), RemoteRegion.fromBytes())`);
    const blob = remote.keyBlob;
    if (blob === null) throw new AllocToolsTypeError(`${kind}: the RemoteRegion has no key blob (version 1, a libfabric region's); a UCX peer's region.remote() carries one`);
    if (length > remote.length) throw new AllocToolsRangeError(`${kind} of ${length} bytes does not fit the remote region's ${remote.length} bytes (refused before posting)`);
    const peer = this.peers[peerIndex];
    if (peer === undefined || !Number.isInteger(peerIndex)) throw new AllocToolsRangeError(`peer ${String(peerIndex)} was not inserted on this endpoint`);
    const rkey = peer.lastBlob === blob ? peer.lastRkey : this.rkeyFor(peer, blob);
    beginOperation(region); // may refuse (POOL_CLOSED: a shared pool its owner closed), so before anything is taken
    let slot: number;
    try {
      slot = this.freeSlots.pop() ?? this.newSlot();
    } catch (e) {
      endOperation(region);
      throw e;
    }
    const op = this.slots[slot]!;
    op.generation = op.generation + 1 === GENERATIONS ? 1 : op.generation + 1;
    op.id = op.generation * (1 << SLOT_BITS) + slot;
    op.kind = kind;
    op.length = length;
    op.remoteAddress = remote.address;
    op.viaPromise = viaPromise;
    op.region = region;
    op.error = null;
    op.request = 0;
    op.peer = peerIndex;
    op.awaitingFlush = false;
    op.deadline = performance.now() + this.timeoutMs;
    const memh = region.registration.handle;
    const param = this.rmaParam;
    param[16] = memh >>> 0; // memh at byte 64: low, then high 32 bits
    param[17] = Math.floor(memh / 4294967296);
    const ep = peer.ep as Pointer;
    const sent = kind === "write"
      ? this.raw.ucp_put_nbx(ep, range.address as Pointer, length, remote.address, rkey as Pointer, this.rmaParamAddress as Pointer) as number
      : this.raw.ucp_get_nbx(ep, range.address as Pointer, length, remote.address, rkey as Pointer, this.rmaParamAddress as Pointer) as number;
    if (isStatusError(sent)) {
      op.state = FAILED;
      op.error = this.ucx.error(kind === "write" ? "ucp_put_nbx" : "ucp_get_nbx", sent, describe(op));
      endOperation(region);
      this.counts.failed++;
      return op;
    }
    this.counts.posted++;
    op.request = sent;
    op.state = PENDING;
    if (kind === "write") {
      op.awaitingFlush = true;
      op.flushEpoch = peer.nextEpoch;
      peer.unflushed++;
      if (flushNow) {
        // Not yet active: a flush that ends at once is applied here (cover() sees only active ones).
        const status = this.issueFlush(peer);
        if (status !== FLUSH_IN_FLIGHT) {
          op.awaitingFlush = false;
          if (status !== UCX.OK) op.error = this.ucx.error("ucp_ep_flush_nbx", status, describe(op));
        }
      } else if (!peer.listed) {
        peer.listed = true;
        this.unflushedPeers.push(peer);
      }
    }
    this.check(op);
    if (op.state === PENDING) {
      op.activeAt = this.active.length;
      this.active.push(op);
    }
    return op;
  }

  /** The rkey of `blob` on `peer`: cached by blob object, then by content; unpacked once. */
  private rkeyFor(peer: Peer, blob: Uint8Array): number {
    let rkey = peer.byBlob.get(blob);
    if (rkey === undefined) {
      const content = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength).toString("latin1");
      rkey = peer.byContent.get(content);
      if (rkey === undefined) {
        const problem = rkeyBlobProblem(blob);
        if (problem !== "") throw new UcxError("ucp_ep_rkey_unpack", UCX.ERR_INVALID_PARAM, "Invalid parameter", `refused before unpacking: ${problem}`);
        rkey = this.ucx.rkeyUnpack(peer.ep, blob);
        this.counts.rkeysUnpacked++;
        peer.byContent.set(content, rkey);
      }
      if (peer.byBlob.size >= MAX_BLOB_IDENTITIES) peer.byBlob.clear();
      peer.byBlob.set(blob, rkey);
    }
    peer.lastBlob = blob;
    peer.lastRkey = rkey;
    return rkey;
  }

  // ---- completion -----------------------------------------------------------------------------

  /**
   * Polls the operation's request; moves it to DONE or FAILED once the request has ended and, for
   * a write, the flush covering it has completed (a failed put needs no flush).
   */
  private check(op: Operation): void {
    const raw = this.raw;
    if (op.request !== 0) {
      const status = raw.ucp_request_check_status(op.request as Pointer);
      if (status === UCX.INPROGRESS) return;
      raw.ucp_request_free(op.request as Pointer);
      op.request = 0;
      if (status !== UCX.OK && op.error === null) op.error = this.ucx.error(op.kind === "write" ? "ucp_put_nbx" : "ucp_get_nbx", status, describe(op));
    }
    if (op.awaitingFlush) {
      if (op.error === null) return;
      op.awaitingFlush = false;
    }
    endOperation(op.region!);
    if (op.error === null) {
      op.state = DONE;
      this.counts.completed++;
    } else {
      op.state = FAILED;
      this.counts.failed++;
    }
  }

  /** Issues one flush for each peer with puts posted since its last flush. */
  private issueFlushes(): void {
    const peers = this.unflushedPeers;
    for (let i = 0; i < peers.length; i++) {
      const peer = peers[i]!;
      peer.listed = false;
      if (peer.unflushed > 0) this.issueFlush(peer);
    }
    peers.length = 0;
  }

  /** Issues the flush a write awaits if it has not been issued yet. */
  private flushFor(op: Operation): void {
    if (!op.awaitingFlush) return;
    const peer = this.peers[op.peer]!;
    if (op.flushEpoch === peer.nextEpoch) this.issueFlush(peer);
  }

  /**
   * `ucp_ep_flush_nbx` on the peer's ep: covers every put posted to it so far (epoch
   * `peer.nextEpoch`); later puts wait for the next epoch. A flush that ends at once settles its
   * active writes now and returns its status (UCS_OK or an error); one in flight is checked by
   * checkFlushes() and FLUSH_IN_FLIGHT is returned.
   */
  private issueFlush(peer: Peer): number {
    const epoch = peer.nextEpoch;
    peer.nextEpoch = epoch + 1;
    peer.unflushed = 0;
    this.counts.flushes++;
    const flushed = this.raw.ucp_ep_flush_nbx(peer.ep as Pointer, this.flushParamAddress as Pointer) as number;
    if (flushed === 0 || isStatusError(flushed)) {
      if (this.active.length > 0) this.cover(peer.index, epoch, flushed);
      return flushed;
    }
    this.flushRequests.push(flushed);
    this.flushPeers.push(peer.index);
    this.flushEpochs.push(epoch);
    return FLUSH_IN_FLIGHT;
  }

  /** Checks the flushes in flight; each one that ended settles the writes it covers. */
  private checkFlushes(): void {
    const requests = this.flushRequests;
    for (let i = requests.length - 1; i >= 0; i--) {
      const request = requests[i]!;
      const status = this.raw.ucp_request_check_status(request as Pointer);
      if (status === UCX.INPROGRESS) continue;
      this.raw.ucp_request_free(request as Pointer);
      const peerIndex = this.flushPeers[i]!;
      const epoch = this.flushEpochs[i]!;
      const last = requests.length - 1;
      requests[i] = requests[last]!;
      this.flushPeers[i] = this.flushPeers[last]!;
      this.flushEpochs[i] = this.flushEpochs[last]!;
      requests.pop();
      this.flushPeers.pop();
      this.flushEpochs.pop();
      this.cover(peerIndex, epoch, status);
    }
  }

  /**
   * The flush of `epoch` on peer `peerIndex` ended with `status` (UCS_OK 0 or an error): the
   * writes it covers no longer await it; on an error each fails with it (UcxError).
   */
  private cover(peerIndex: number, epoch: number, status: number): void {
    const active = this.active;
    for (let i = 0; i < active.length; i++) {
      const op = active[i]!;
      if (!op.awaitingFlush || op.peer !== peerIndex || op.flushEpoch !== epoch) continue;
      op.awaitingFlush = false;
      if (status !== UCX.OK && op.error === null) op.error = this.ucx.error("ucp_ep_flush_nbx", status, describe(op));
    }
  }

  /** Waits on the calling thread for a sync operation, then retires it; throws its error. */
  private waitSync(op: Operation): void {
    let polls = 0;
    while (op.state === PENDING) {
      this.flushFor(op);
      this.raw.ucp_worker_progress(this.worker as Pointer);
      if (openEndpoints.size > 1) progressOthers(this);
      if (this.flushRequests.length > 0) this.checkFlushes();
      this.check(op);
      if (op.state !== PENDING) break;
      if (++polls % CLOCK_EVERY === 0 && performance.now() >= op.deadline) this.expire(op);
    }
    if (op.activeAt >= 0) this.removeActive(op);
    if (op.state === DONE) {
      this.retire(op);
      return;
    }
    const error = op.error;
    this.retire(op);
    throw error;
  }

  /** Progresses, checks every active operation, expires the late ones. Returns completions. */
  private turn(now: number, others: boolean): number {
    if (this.unflushedPeers.length > 0) this.issueFlushes();
    this.raw.ucp_worker_progress(this.worker as Pointer);
    if (others && openEndpoints.size > 1) progressOthers(this);
    if (this.flushRequests.length > 0) this.checkFlushes();
    let completed = 0;
    const active = this.active;
    for (let i = active.length - 1; i >= 0; i--) {
      const op = active[i]!;
      this.check(op);
      if (op.state === PENDING && op.deadline <= now) this.expire(op);
      if (op.state === PENDING) continue;
      this.removeActive(op);
      if (op.state === DONE) completed++;
      if (op.viaPromise) this.settle(op);
    }
    if (this.orphans.length > 0) this.checkOrphans();
    return completed;
  }

  /**
   * Past its deadline: RmaTimeoutError; UCX keeps the request, which is cancelled and polled as an
   * orphan. A flush it awaits stays: it covers other writes too.
   */
  private expire(op: Operation): void {
    if (op.request !== 0) this.raw.ucp_request_cancel(this.worker as Pointer, op.request as Pointer);
    this.orphan(op);
    this.counts.timedOut++;
    op.state = FAILED;
    op.error = new RmaTimeoutError(op, this.timeoutMs, op.kind === "write" ? "ucp_put_nbx" : "ucp_get_nbx");
  }

  /**
   * Hands the operation's outstanding put/get (and its region pin: that request is what touches
   * the region) to the orphan list; with none outstanding the region is unpinned now.
   */
  private orphan(op: Operation): void {
    const region = op.region;
    if (op.request !== 0) this.orphans.push({ request: op.request, region });
    else if (region !== null) endOperation(region);
    op.request = 0;
    op.awaitingFlush = false;
  }

  private checkOrphans(): void {
    const orphans = this.orphans;
    for (let i = orphans.length - 1; i >= 0; i--) {
      const o = orphans[i]!;
      if (this.raw.ucp_request_check_status(o.request as Pointer) === UCX.INPROGRESS) continue;
      this.raw.ucp_request_free(o.request as Pointer);
      if (o.region !== null) endOperation(o.region);
      orphans.splice(i, 1);
    }
  }

  /** An active operation fails with `error` (endpoint closing). */
  private fail(op: Operation, error: unknown): void {
    if (op.activeAt >= 0) this.removeActive(op);
    op.state = FAILED;
    op.error = error;
    this.counts.failed++;
    if (op.viaPromise) this.settle(op);
  }

  /** Resolves or rejects a promise-form operation and frees its slot. */
  private settle(op: Operation): void {
    const resolve = op.resolve;
    const reject = op.reject;
    const error = op.error;
    const done = op.state === DONE;
    if (resolve === null || reject === null) return; // still being posted: start() settles it
    this.retire(op);
    if (done) resolve();
    else reject(error);
  }

  private removeActive(op: Operation): void {
    const active = this.active;
    const last = active.pop()!;
    if (last !== op) {
      active[op.activeAt] = last;
      last.activeAt = op.activeAt;
    }
    op.activeAt = -1;
  }

  private retire(op: Operation): void {
    op.state = FREE;
    op.id = 0;
    op.region = null;
    op.error = null;
    op.resolve = null;
    op.reject = null;
    this.freeSlots.push(op.slot);
  }

  private slotOf(id: number): Operation | undefined {
    if (!Number.isSafeInteger(id) || id <= 0) return undefined;
    const op = this.slots[id & SLOT_MASK];
    return op !== undefined && op.id === id && op.state !== FREE ? op : undefined;
  }

  private newSlot(): number {
    const slot = this.slots.length;
    if (slot >= this.maxPending) {
      throw new AllocToolsError("BUSY", `${this.maxPending} operations are in flight or not yet acknowledged with completed(id) on this endpoint (maxPending)`);
    }
    this.slots.push(new Operation(slot));
    return slot;
  }

  private assertOpen(): void {
    if (this.closed_) throw new AllocToolsError("ENDPOINT_CLOSED", "the endpoint is closed");
  }
}

/** Progresses the other UCX endpoints of this thread once (a target here needs it on emulated paths). */
function progressOthers(self: UcxEndpoint): void {
  for (const ep of openEndpoints) if (ep !== self) ep.progressWorker();
}

function describe(op: Operation): string {
  return `${op.kind} of ${op.length} bytes at remote 0x${op.remoteAddress.toString(16)}`;
}

function checkOptions(o: UcxEndpointOptions): Required<UcxEndpointOptions> {
  if (o === null || typeof o !== "object") throw new AllocToolsTypeError("UcxEndpoint options must be an object");
  const int = (name: keyof UcxEndpointOptions, v: unknown, d: number, min: number, max: number): number => {
    if (v === undefined) return d;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min || v > max) {
      throw new AllocToolsRangeError(`options.${name} must be an integer in [${min}, ${max}], got ${String(v)}`);
    }
    return v;
  };
  return {
    timeoutMs: int("timeoutMs", o.timeoutMs, 10_000, 1, 2 ** 31),
    maxPending: int("maxPending", o.maxPending, 4096, 1, 1 << SLOT_BITS),
    closeTimeoutMs: int("closeTimeoutMs", o.closeTimeoutMs, 1000, 0, 60_000),
  };
}

