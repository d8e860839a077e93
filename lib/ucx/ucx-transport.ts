// The UCX transport of UcxEndpoint (the adapter contract is lib/engine/transport.ts): one
// ucp_worker, its eps to peers, and the rkeys unpacked on them.
//
// - Completion is polled: ucp_worker_progress, then ucp_request_check_status on each request, then
//   ucp_request_free. UCX never calls into JS (no callback is passed; a native thread must not
//   run JS).
// - A put completes locally (the buffer may be reused), not remotely. A write is therefore a put
//   covered by a later ucp_ep_flush_nbx on the peer's ep, and completes with that flush: the data
//   is then in the target's memory, as RmaEndpoint.write promises. One flush covers every put
//   posted before it on that ep, so writes share flushes: a put waits "awaiting flush" until a
//   progress turn issues one flush per peer for all of them (a sync write issues its own at once);
//   puts posted after that wait for the next. A window of writes thus costs one flush, not one per
//   write. A read (get) completes when the data is here.
// - Over emulated RMA (every transport with memory UCX did not allocate, and tcp always) the target
//   must progress its worker; a target in this thread is progressed by every wait here and by the
//   progress engine, another process's by its startProgress().
// - Remote keys are unpacked once per peer and key blob and cached (an unpack of a shared-memory
//   rkey maps the segment: ~14 µs). A blob is framing-checked before it is ever unpacked.
// - Tagged messages (send, recv, receive) are ucx-messages.ts's, with their wire format; remote
//   atomics (fetchAdd, compareSwap) are ucx-atomics.ts's. Both complete through the same polling.
import { type Pointer, ptr } from "bun:ffi";
import { isStatusError, rkeyBlobProblem, UcxError, UCX, ucxLayout, type Ucx } from "../../ffi/ucx.ts";
import { AllocToolsError, AllocToolsTypeError, AllocToolsRangeError } from "../errors.ts";
import type { MemoryRegionImpl } from "../memory/region.ts";
import { Wait, type Operation } from "../engine/operation.ts";
import type { RemoteRegion } from "../engine/remote-region.ts";
import type { OperationKind } from "../engine/rma-errors.ts";
import { ANY_SOURCE } from "../engine/message.ts";
import { peerNameString } from "../engine/peer-name.ts";
import { Posted, type CompletionSink, type Transport } from "../engine/transport.ts";
import type { UcxProvider } from "./ucx-provider.ts";
import { UcxMessages } from "./ucx-messages.ts";
import { UcxAtomics } from "./ucx-atomics.ts";

/** A peer of a UcxEndpoint: the index `insert()` returned. */
export type UcxPeer = number;

/** Operation flag: a write whose put the flush covering it has yet to complete. */
const AWAITING_FLUSH = 1;
/** What issueFlush() returns for a flush still in flight (UCX statuses are 0 or negative). */
const FLUSH_IN_FLIGHT = 1;
/** Blob objects remembered per peer before the identity map starts over (contents stay cached). */
const MAX_BLOB_IDENTITIES = 1024;

/** One inserted peer: its ep and the rkeys unpacked on it. */
class Peer {
  /** The last key blob used and its rkey: the common case costs one comparison. */
  lastBlob: Uint8Array | null = null;
  lastRkey = 0;
  /** rkeys by blob object, then by blob content (a blob parsed again from the same bytes). */
  readonly byBlob = new Map<Uint8Array, number>();
  readonly byContent = new Map<string, number>();
  /** The epoch the next flush on this ep carries: writes posted now wait for it. */
  nextEpoch = 1;
  /** Puts posted since the last flush was issued (a timed-out one may still count: one spare flush). */
  unflushed = 0;
  /** Whether this peer is in the transport's list of peers with puts awaiting a flush. */
  listed = false;
  constructor(readonly ep: number, readonly index: number, readonly nameString: string) {}
}

/** The UCX function each kind of operation is posted with, for errors. */
const FUNCTION_NAMES: Readonly<Record<OperationKind, string>> = {
  write: "ucp_put_nbx", read: "ucp_get_nbx", send: "ucp_tag_send_nbx", recv: "ucp_tag_recv_nbx", receive: "ucp_tag_msg_recv_nbx",
  fetchAdd: "ucp_atomic_op_nbx", compareSwap: "ucp_atomic_op_nbx",
};

/** Open UCX transports of this thread: a turn asked for by the caller progresses all of them (a target may be one). */
const openTransports = new Set<UcxTransport>();

/** UcxEndpoint's adapter over one ucp_worker. */
export class UcxTransport implements Transport<UcxPeer> {
  readonly name: Uint8Array;
  readonly nameKind = "ucx" as const;
  readonly messaging = "";
  readonly atomics: string;
  readonly finishesAbandoned = true;
  /** `ucp_ep_rkey_unpack` calls. */
  rkeysUnpacked = 0;
  /** `ucp_ep_flush_nbx` calls. */
  flushes = 0;
  private readonly ucx: Ucx;
  private readonly raw: Ucx["raw"];
  private readonly provider: UcxProvider;
  private readonly worker: number;
  private readonly closeTimeoutMs: number;
  private engine: CompletionSink | null = null;
  private readonly peers: Peer[] = [];
  /** Peers with puts posted since their last flush (their `listed` is set). */
  private readonly unflushedPeers: Peer[] = [];
  /** Flushes in flight, as three parallel lists: the request, its peer index, its epoch. */
  private readonly flushRequests: number[] = [];
  private readonly flushPeers: number[] = [];
  private readonly flushEpochs: number[] = [];
  // Typed arrays over ArrayBuffers of their own: their memory never moves, so an address taken once
  // stays valid (a small typed array's storage can move when JSC materializes its buffer).
  /** ucp_request_param_t for put/get: op_attr_mask MEMH, memh written per operation. */
  private readonly rmaParam = new Uint32Array(new ArrayBuffer(ucxLayout.ucp_request_param_t.size));
  private readonly rmaParamAddress: number;
  /** ucp_request_param_t for flush: nothing set. */
  private readonly flushParam = new Uint32Array(new ArrayBuffer(ucxLayout.ucp_request_param_t.size));
  private readonly flushParamAddress: number;
  private readonly messages: UcxMessages;
  private readonly atomicOps: UcxAtomics;

  /** Creates a worker on the provider's context, which it keeps alive until close(). Throws UcxError when UCX refuses. */
  constructor(provider: UcxProvider, closeTimeoutMs: number) {
    this.provider = provider;
    this.ucx = provider.ucx;
    this.raw = provider.ucx.raw;
    this.closeTimeoutMs = closeTimeoutMs;
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
    this.messages = new UcxMessages(this.ucx, worker, this.name);
    this.atomicOps = new UcxAtomics(this.ucx, provider.name);
    this.atomics = provider.info.atomics ? "" :
      `provider ${provider.name} was opened with atomics: false (its UCX context has no UCP_FEATURE_AMO64); open one without that option for fetchAdd and compareSwap`;
    openTransports.add(this);
  }

  /** Flushes issued and not yet completed. */
  get flushesInFlight(): number {
    return this.flushRequests.length;
  }

  /** A message's peer must be inserted (a receive's may be ANY_SOURCE); every 32-bit tag and mask fits the wire format. */
  resolvePeer(kind: OperationKind, peer: UcxPeer | typeof ANY_SOURCE): void {
    if (peer === ANY_SOURCE && kind !== "send") return;
    if (this.peers[peer] === undefined || !Number.isInteger(peer)) {
      throw new AllocToolsRangeError(`${kind}: peer ${String(peer)} was not inserted on this endpoint${kind === "send" ? "" : " (nor is it ANY_SOURCE, -1)"}`);
    }
  }

  bind(engine: CompletionSink): void {
    this.engine = engine;
    this.messages.bind(engine);
  }

  /**
   * Adds a peer by its worker address (`ucp_ep_create`). AllocToolsError NOT_SUPPORTED, nothing
   * added, for an address whose sender id (ucx-messages.ts) another inserted address has.
   */
  insert(peerName: Uint8Array): UcxPeer {
    if (!(peerName instanceof Uint8Array) || peerName.length === 0) throw new AllocToolsTypeError("insert takes a peer's worker address (non-empty Uint8Array)");
    const conflict = this.messages.conflict(peerName);
    if (conflict !== "") throw new AllocToolsError("NOT_SUPPORTED", `insert: the peer's worker address cannot be inserted: ${conflict}`);
    const ep = this.ucx.epCreate(this.worker, peerName);
    const index = this.peers.length;
    this.peers.push(new Peer(ep, index, peerNameString("ucx", peerName)));
    this.messages.addPeer(peerName, index);
    return index;
  }

  /** FOREIGN_REGION unless the region is registered with this context (or a view of it). */
  checkLocal(kind: OperationKind, region: MemoryRegionImpl): void {
    const pool = region.owner as { provider?: unknown } | null;
    if (pool !== null && pool.provider !== undefined && pool.provider !== this.provider && !this.provider.sharesContextWith(pool.provider)) {
      throw new AllocToolsError("FOREIGN_REGION", `${kind}: the local region is registered with another provider than this endpoint's (nor a view of its UCX context)`);
    }
  }

  /** The peer's index and the region's key blob, unpacked on the peer's ep (once per blob). */
  resolveRemote(kind: OperationKind, peerIndex: UcxPeer, remote: RemoteRegion): number {
    const blob = remote.keyBlob;
    if (blob === null) throw new AllocToolsTypeError(`${kind}: the RemoteRegion has no key blob (version 1, a libfabric region's); a UCX peer's region.remote() carries one`);
    const peer = this.peers[peerIndex];
    if (peer === undefined || !Number.isInteger(peerIndex)) throw new AllocToolsRangeError(`peer ${String(peerIndex)} was not inserted on this endpoint`);
    return peer.lastBlob === blob ? peer.lastRkey : this.rkeyFor(peer, blob);
  }

  /** Posts by kind: RMA here, messages and atomics in their modules. */
  post(op: Operation): Posted {
    const kind = op.kind;
    if (kind === "write" || kind === "read") return this.postRma(op);
    if (kind === "send") return this.messages.send(op, this.peers[op.peer as number]!.ep);
    if (kind === "recv") return this.afterPost(op, this.messages.recv(op));
    if (kind === "receive") return this.afterPost(op, this.messages.receive(op));
    return this.atomicOps.post(op, this.peers[op.peer as number]!.ep);
  }

  /** A receive posted as a request may have ended already: report it at once then. */
  private afterPost(op: Operation, posted: Posted): Posted {
    if (posted !== Posted.POSTED || !this.check(op)) return posted;
    if (op.failure === null) return Posted.DONE;
    op.error = op.failure;
    return Posted.FAILED;
  }

  /** ucp_put_nbx / ucp_get_nbx; a write then awaits a flush (issued now for a sync write). */
  private postRma(op: Operation): Posted {
    const peer = this.peers[op.peer as number]!;
    const memh = op.region!.registration.handle;
    const param = this.rmaParam;
    param[16] = memh >>> 0; // memh at byte 64: low, then high 32 bits
    param[17] = Math.floor(memh / 4294967296);
    const write = op.kind === "write";
    const ep = peer.ep as Pointer;
    const sent = write
      ? this.raw.ucp_put_nbx(ep, op.local as Pointer, op.length, op.remoteAddress, op.remoteHandle as Pointer, this.rmaParamAddress as Pointer) as number
      : this.raw.ucp_get_nbx(ep, op.local as Pointer, op.length, op.remoteAddress, op.remoteHandle as Pointer, this.rmaParamAddress as Pointer) as number;
    if (isStatusError(sent)) {
      op.error = this.ucx.error(write ? "ucp_put_nbx" : "ucp_get_nbx", sent, describe(op));
      return Posted.FAILED;
    }
    op.request = sent;
    if (write) {
      op.flags = AWAITING_FLUSH;
      op.epoch = peer.nextEpoch;
      peer.unflushed++;
      if (op.wait === Wait.Sync) this.issueFlush(peer);
      else if (!peer.listed) {
        peer.listed = true;
        this.unflushedPeers.push(peer);
      }
    }
    if (!this.check(op)) return Posted.POSTED;
    if (op.failure === null) return Posted.DONE;
    op.error = op.failure;
    return Posted.FAILED;
  }

  /**
   * One turn: issues one flush per peer with writes awaiting one, progresses this worker (and,
   * when asked, the other UCX workers of this thread, which may be the targets), checks flushes
   * and requests. Returns the operations that completed.
   */
  poll(_now: number, progressPeers: boolean): number {
    if (this.unflushedPeers.length > 0) this.issueFlushes();
    this.raw.ucp_worker_progress(this.worker as Pointer);
    if (progressPeers && openTransports.size > 1) progressOthers(this);
    if (this.flushRequests.length > 0) this.checkFlushes();
    this.messages.probe();
    const engine = this.engine!;
    const active = engine.active;
    let completed = 0;
    for (let i = active.length - 1; i >= 0; i--) {
      const op = active[i]!;
      if (!this.check(op)) continue;
      if (op.failure === null) completed++;
      engine.complete(op, op.failure);
    }
    return completed;
  }

  /** completed(id) on a pending write issues the flush it awaits, then checks it; other kinds are checked. */
  refresh(op: Operation): void {
    if (op.kind === "write") this.flushFor(op);
    this.raw.ucp_worker_progress(this.worker as Pointer);
    if (this.flushRequests.length > 0) this.checkFlushes();
    if (this.check(op)) this.engine!.complete(op, op.failure);
  }

  /**
   * A timed-out operation: a write no longer waits for its flush (it covers other writes too).
   * Sends and atomics cannot be cancelled in UCX: they end when UCX ends them (the engine keeps
   * their memory pinned meanwhile).
   */
  abandon(op: Operation): void {
    if (op.kind === "write" || op.kind === "read") {
      if (op.request !== 0) this.raw.ucp_request_cancel(this.worker as Pointer, op.request as Pointer);
      op.flags &= ~AWAITING_FLUSH;
    }
  }

  /**
   * Receives (an abort signal, a deadline, close): cancelled (ucx-messages.ts); each fails with
   * the engine's reason unless its message had matched. RMA (close): the operation fails with
   * ENDPOINT_CLOSED once UCX lets go of it, whatever its request says: a write's flush is not
   * waited for (it may never come). Sends and atomics (close) cannot be cancelled: they end as UCX
   * ends them, or the close's drain gives up on them.
   */
  cancel(op: Operation): void {
    const kind = op.kind;
    if (kind === "recv" || kind === "receive") {
      this.messages.cancel(op);
    } else if (kind === "write" || kind === "read") {
      if (op.request !== 0) this.raw.ucp_request_cancel(this.worker as Pointer, op.request as Pointer);
      op.flags &= ~AWAITING_FLUSH;
      if (op.failure === null) op.failure = new AllocToolsError("ENDPOINT_CLOSED", "the endpoint was closed before the operation completed");
    }
  }

  functionName(kind: OperationKind): string {
    return FUNCTION_NAMES[kind];
  }

  describePeer(peer: number | bigint): string {
    return this.peers[Number(peer)]?.nameString ?? `peer ${peer}`;
  }

  holdsOthers(): boolean {
    return false;
  }

  /**
   * Cancels and hands back the flushes and requests still in flight (ucp_request_free of one in
   * progress releases it on completion), destroys the rkeys, closes the peers' eps (flushing, for
   * at most closeTimeoutMs), destroys the worker, and lets the context go.
   */
  close(): boolean {
    openTransports.delete(this);
    this.messages.close();
    const raw = this.raw;
    const worker = this.worker as Pointer;
    for (const request of this.flushRequests) raw.ucp_request_cancel(worker, request as Pointer);
    for (const request of this.flushRequests) raw.ucp_request_free(request as Pointer);
    this.flushRequests.length = 0;
    this.flushPeers.length = 0;
    this.flushEpochs.length = 0;
    this.unflushedPeers.length = 0;
    for (const op of this.engine!.active) {
      if (op.request === 0) continue;
      raw.ucp_request_free(op.request as Pointer);
      op.request = 0;
    }
    const closing: number[] = [];
    for (const peer of this.peers) {
      for (const rkey of peer.byContent.values()) raw.ucp_rkey_destroy(rkey as Pointer);
      peer.byContent.clear();
      peer.byBlob.clear();
      peer.lastBlob = null;
      const request = this.ucx.epClose(peer.ep, false);
      if (request > 0) closing.push(request);
    }
    const deadline = performance.now() + this.closeTimeoutMs;
    while (closing.length > 0 && performance.now() < deadline) {
      raw.ucp_worker_progress(worker);
      progressOthers(this);
      for (let i = closing.length - 1; i >= 0; i--) {
        if (raw.ucp_request_check_status(closing[i] as Pointer) === UCX.INPROGRESS) continue;
        raw.ucp_request_free(closing[i] as Pointer);
        closing.splice(i, 1);
      }
    }
    for (const request of closing) raw.ucp_request_free(request as Pointer);
    this.ucx.workerDestroy(this.worker);
    this.provider.releaseContext();
    return true; // the worker is gone: UCX touches no operation's memory any more
  }

  /** One ucp_worker_progress of this worker (another endpoint's wait may need this one as its target). */
  progressWorker(): void {
    this.raw.ucp_worker_progress(this.worker as Pointer);
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
        this.rkeysUnpacked++;
        peer.byContent.set(content, rkey);
      }
      if (peer.byBlob.size >= MAX_BLOB_IDENTITIES) peer.byBlob.clear();
      peer.byBlob.set(blob, rkey);
    }
    peer.lastBlob = blob;
    peer.lastRkey = rkey;
    return rkey;
  }

  /**
   * Polls the operation's request; true once the transport is done with it: the request ended
   * and, for a write, the flush covering it completed (a failed put needs no flush). The error,
   * if any, is left in `op.failure`.
   */
  private check(op: Operation): boolean {
    const kind = op.kind;
    if (kind === "recv") return op.request === 0 || this.messages.checkRecv(op);
    if (kind === "receive") return this.messages.checkReceive(op);
    if (op.request !== 0) {
      const status = this.raw.ucp_request_check_status(op.request as Pointer);
      if (status === UCX.INPROGRESS) return false;
      this.raw.ucp_request_free(op.request as Pointer);
      op.request = 0;
      if (status !== UCX.OK && op.failure === null) {
        op.failure = kind === "fetchAdd" || kind === "compareSwap" ? this.atomicOps.error(op, status) : this.ucx.error(FUNCTION_NAMES[kind], status, describe(op));
      }
    }
    if ((op.flags & AWAITING_FLUSH) !== 0) {
      if (op.failure === null) return false;
      op.flags &= ~AWAITING_FLUSH;
    }
    return true;
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
    if ((op.flags & AWAITING_FLUSH) === 0) return;
    const peer = this.peers[op.peer as number]!;
    if (op.epoch === peer.nextEpoch) this.issueFlush(peer);
  }

  /**
   * `ucp_ep_flush_nbx` on the peer's ep: covers every put posted to it so far (epoch
   * `peer.nextEpoch`); later puts wait for the next epoch. A flush that ends at once covers its
   * writes now; one in flight is checked by checkFlushes().
   */
  private issueFlush(peer: Peer): number {
    const epoch = peer.nextEpoch;
    peer.nextEpoch = epoch + 1;
    peer.unflushed = 0;
    this.flushes++;
    const flushed = this.raw.ucp_ep_flush_nbx(peer.ep as Pointer, this.flushParamAddress as Pointer) as number;
    if (flushed === 0 || isStatusError(flushed)) {
      this.cover(peer.index, epoch, flushed);
      return flushed;
    }
    this.flushRequests.push(flushed);
    this.flushPeers.push(peer.index);
    this.flushEpochs.push(epoch);
    return FLUSH_IN_FLIGHT;
  }

  /** Checks the flushes in flight; each one that ended covers its writes. */
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
    const active = this.engine!.active;
    for (let i = 0; i < active.length; i++) {
      const op = active[i]!;
      if ((op.flags & AWAITING_FLUSH) === 0 || op.peer !== peerIndex || op.epoch !== epoch) continue;
      op.flags &= ~AWAITING_FLUSH;
      if (status !== UCX.OK && op.failure === null) op.failure = this.ucx.error("ucp_ep_flush_nbx", status, describe(op));
    }
  }
}

/** Progresses the other UCX workers of this thread once (a target here needs it on emulated paths). */
function progressOthers(self: UcxTransport): void {
  for (const transport of openTransports) if (transport !== self) transport.progressWorker();
}

function describe(op: Operation): string {
  if (op.kind === "send") return `send of ${op.length} bytes, tag ${op.tag}, to peer ${String(op.peer)}`;
  return `${op.kind} of ${op.length} bytes at remote 0x${op.remoteAddress.toString(16)}`;
}
