// The libfabric transport of Endpoint (the adapter contract is lib/engine/transport.ts): one
// reliable-datagram (FI_EP_RDM) endpoint with its own completion queue and address vector.
//
// - Writes are delivery-complete: the endpoint is opened with FI_DELIVERY_COMPLETE in its default
//   transmit op flags (tx_attr->op_flags of a private copy of the fi_info), so a write completes
//   only once its data is in the target's memory. Without it tcp;ofi_rxm completes a write when
//   the bytes have left the socket, and a peer told "done" could read stale memory.
// - An operation's id travels as the libfabric context (a small integer, not a pointer: the
//   provider is not asked for FI_CONTEXT); a completion names it in op_context's low half.
// - -FI_EAGAIN (a connection being made, a full queue) is not an error: the engine posts again.
// - Endpoints of this process, in any thread, may be peers (process-endpoints.ts): operations
//   towards a closed one are refused, a close drains (bounded) while operations of the process are
//   aimed at it, and on shm, where each side writes through the other's own mapping, an endpoint
//   that something may still touch when it closes is kept open until that can no longer happen.
import { nativeView, readI32, readPtr, readU64, readCString, type Libfabric, type RmaOps } from "../../ffi/libfabric.ts";
import { FabricError, AllocToolsTypeError, AllocToolsRangeError } from "../../ffi/errors.ts";
import { checkPeerName } from "../../ffi/fabric-names.ts";
import { FI, L, layout } from "../../ffi/layout.ts";
import { AllocToolsError } from "../errors.ts";
import type { MemoryRegionImpl } from "../memory/region.ts";
import { argument, type Operation } from "../engine/operation.ts";
import { descriptorArgument } from "./libfabric-provider.ts";
import type { RemoteRegion } from "../engine/remote-region.ts";
import { RmaError, type OperationKind } from "../engine/rma-errors.ts";
import { Posted, type CompletionSink, type Transport } from "../engine/transport.ts";
import { ANY_SOURCE } from "../engine/message.ts";
import type { LibfabricProvider } from "./libfabric-provider.ts";
import { TaggedMessages } from "./libfabric-messages.ts";
import { RemoteAtomics } from "./libfabric-atomics.ts";
import { processEndpoints, type LocalPeer, type ProcessEndpoints } from "./process-endpoints.ts";
import { peerNameString } from "../engine/peer-name.ts";

/** A peer's address in this endpoint's address vector (`fi_addr_t`), from `insert()`. */
export type PeerAddress = bigint;

/** The libfabric call each kind of operation is posted with. */
const FUNCTION_NAMES: Readonly<Record<OperationKind, string>> = {
  write: "fi_write", read: "fi_read", send: "fi_tsendmsg", recv: "fi_trecvmsg", receive: "fi_trecvmsg",
  fetchAdd: "fi_fetch_atomic", compareSwap: "fi_compare_atomic",
};

const CQ_BATCH = 16;
const CQ_ENTRY = layout.fi_cq_tagged_entry.size;
/** 32-bit words of one completion entry, and where its fields are among them. */
const ENTRY_WORDS = CQ_ENTRY / 4;
const FLAGS_WORD = L.fi_cq_tagged_entry.flags / 4;
const LENGTH_WORD = L.fi_cq_tagged_entry.len / 4;
const TAG_WORD = L.fi_cq_tagged_entry.tag / 4;
/** What tagged messages need of a provider: tags, receives that name their source, and report it. */
const MESSAGING_CAPS = FI.TAGGED | FI.SOURCE_CAP | FI.DIRECTED_RECV;
const ERR_ENTRY = layout.fi_cq_err_entry.size;


/** What the transport is opened with. */
export interface LibfabricTransportSettings {
  readonly cqSize: number;
  readonly avCount: number;
}

/** Endpoint's adapter over one libfabric RDM endpoint. */
export class LibfabricTransport implements Transport<PeerAddress> {
  readonly name: Uint8Array;
  readonly nameKind = "libfabric" as const;
  readonly atomics: string;
  readonly finishesAbandoned = false;
  readonly messaging: string;
  /** The largest single transfer the provider takes (ep_attr->max_msg_size). */
  readonly maxMessageSize: number;
  private readonly fi: Libfabric;
  private readonly provider: LibfabricProvider;
  private readonly ep: number;
  private readonly cq: number;
  private readonly av: number;
  private readonly ops: RmaOps;
  /** Tagged messages, where the provider has them (else null and `messaging` says why). */
  private readonly messages: TaggedMessages | null;
  /** fetchAdd and compareSwap, where the provider has them (else null and `atomics` says why). */
  private readonly remoteAtomics: RemoteAtomics | null;
  /** Whether completions carry their source (FI_SOURCE): read with fi_cq_readfrom. */
  private readonly withSource: boolean;
  private engine: CompletionSink | null = null;
  private readonly peers = new Set<bigint>();
  /** Each peer's name, as a string, for messages (timeouts). */
  private readonly peerNames = new Map<bigint, string>();
  /** The peer of the last accepted operation (-1n: none yet): a repeated peer skips the set lookup. */
  private lastPeer = -1n;
  /** Peers that are endpoints of this process (any thread), by address. */
  /** Peers that are endpoints of this process, by the address as operations carry it (`argument(address)`: a number when exact). */
  private readonly localPeers = new Map<number | bigint, LocalPeer>();
  /** The same-process peer of `lastPeer`, or undefined: the check of a peer's being open needs no lookup when the peer repeats. */
  private lastLocal: LocalPeer | undefined = undefined;
  /** The local peer each operation in transport is aimed at (by slot), where it is one. */
  private readonly aimedAt: (LocalPeer | null)[] = [];
  /** This thread's mapping of the process's endpoint table (process-endpoints.ts). */
  private readonly endpoints: ProcessEndpoints;
  /** This endpoint's entry in the process's table (-1: the table was full). */
  private readonly tableEntry: number;
  /** Whether a peer in this process touches this endpoint's own memory (shm): then close may keep it. */
  private readonly sharesMappings: boolean;
  /** Completion entries, read as 32-bit words: op_context's low half is the id. */
  private readonly cqBuf = new Uint8Array(CQ_BATCH * CQ_ENTRY);
  private readonly cqWords = new Uint32Array(this.cqBuf.buffer);
  /** The source fi_addr_t of each entry read (fi_cq_readfrom). */
  private readonly sources = new BigUint64Array(CQ_BATCH);
  private readonly errBuf = new Uint8Array(ERR_ENTRY);
  private readonly errView = new DataView(this.errBuf.buffer);
  private readonly strBuf = new Uint8Array(256);

  /**
   * Opens endpoint, completion queue and address vector on `provider`'s domain, writes completing
   * with FI_DELIVERY_COMPLETE. Throws FabricError when libfabric refuses; nothing stays open then.
   */
  constructor(fi: Libfabric, provider: LibfabricProvider, settings: LibfabricTransportSettings) {
    this.fi = fi;
    this.provider = provider;
    const { domain, info } = provider.handles;
    this.maxMessageSize = Number(readU64(readPtr(info, L.fi_info.ep_attr), L.fi_ep_attr.max_msg_size));
    let ep = 0;
    let cq = 0;
    let av = 0;
    const copy = fi.dupInfo(info);
    try {
      const tx = readPtr(copy, L.fi_info.tx_attr);
      const flags = readU64(tx, L.fi_tx_attr.op_flags);
      nativeView(tx, L.fi_tx_attr.op_flags + 8).setBigUint64(L.fi_tx_attr.op_flags, flags | FI.DELIVERY_COMPLETE, true);
      ep = fi.endpoint(domain, copy);
      if (provider.name === "shm") fi.setName(ep, uniqueShmName());
      cq = fi.cqOpen(domain, settings.cqSize);
      av = fi.avOpen(domain, settings.avCount);
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
    const caps = readU64(info, L.fi_info.caps);
    this.withSource = (caps & FI.SOURCE_CAP) !== 0n;
    const tagged = (caps & MESSAGING_CAPS) === MESSAGING_CAPS ? fi.taggedOps(ep) : null;
    const injectSize = Number(readU64(readPtr(info, L.fi_info.tx_attr), L.fi_tx_attr.inject_size));
    this.messages = tagged === null ? null : new TaggedMessages(tagged, (errno) => fi.strerror(errno), ep, injectSize, provider.name, fi.version);
    this.messaging = this.messages !== null ? "" : `provider ${provider.name} was opened without tagged messages (FI_TAGGED, FI_SOURCE, FI_DIRECTED_RECV)`;
    const mrMode = readI32(readPtr(info, L.fi_info.domain_attr), L.fi_domain_attr.mr_mode);
    const atomics = RemoteAtomics.open((caps & FI.ATOMIC) !== 0n ? fi.atomicOps(ep) : null, ep, { providerName: provider.name, caps, mrMode }, (errno) => fi.strerror(errno));
    this.remoteAtomics = typeof atomics === "string" ? null : atomics;
    this.atomics = typeof atomics === "string" ? atomics : "";
    this.sharesMappings = provider.name === "shm";
    this.endpoints = processEndpoints();
    this.tableEntry = this.endpoints.claim(this.name, { endpoint: ep, completionQueue: cq, addressVector: av, domain }, this.sharesMappings);
  }

  bind(engine: CompletionSink): void {
    this.engine = engine;
    this.messages?.bind(engine);
  }

  /**
   * A message's peer: inserted here (a receive's may be ANY_SOURCE). A send to an endpoint of this
   * process that closed is refused: on shm it would write into the closed endpoint's unmapped region.
   * A receive's tag mask is refused where the provider mishandles masks (TaggedMessages.masks).
   */
  resolvePeer(kind: OperationKind, peer: PeerAddress | typeof ANY_SOURCE, _tag: number, ignore: number): void {
    if (ignore !== 0 && this.messages!.masks !== "") throw new AllocToolsError("NOT_SUPPORTED", `${kind} with tag mask 0x${ignore.toString(16)}: ${this.messages!.masks}`);
    if (peer === ANY_SOURCE && kind !== "send") return;
    if (typeof peer !== "bigint" || !this.peers.has(peer)) throw new AllocToolsRangeError(`${kind}: peer ${String(peer)} was not inserted on this endpoint`);
    if (kind === "send" && this.localPeers.size > 0) this.assertPeerOpen(kind, this.localPeers.get(argument(peer)));
  }

  /** Adds a peer's name to the address vector. */
  insert(peerName: Uint8Array): PeerAddress {
    if (!(peerName instanceof Uint8Array) || peerName.length === 0) throw new AllocToolsTypeError("insert takes a peer's endpoint name (non-empty Uint8Array)");
    checkPeerName(this.provider.handles.info, this.name, peerName); // libfabric reads a name by its format, not its length
    const address = this.fi.avInsert(this.av, peerName);
    this.peers.add(address);
    this.peerNames.set(address, peerNameString("libfabric", peerName));
    const local = this.endpoints.find(peerName);
    if (local !== null) this.localPeers.set(argument(address), local);
    this.lastPeer = -1n; // the next operation looks its peer up again
    return address;
  }

  /** FOREIGN_REGION unless the region is registered in this endpoint's domain. */
  checkLocal(kind: OperationKind, region: MemoryRegionImpl): void {
    const pool = region.owner as { provider?: unknown } | null;
    // Same domain, not same object: a Worker's view of a shared provider registers there too.
    if (pool !== null && pool.provider !== undefined && pool.provider !== this.provider && !this.provider.sharesDomainWith(pool.provider)) {
      throw new AllocToolsError("FOREIGN_REGION", `${kind}: the local region is registered with another provider than this endpoint's`);
    }
  }

  /** The size limit, the peer, and an endpoint of this process that closed. */
  resolveRemote(kind: OperationKind, peer: PeerAddress, _remote: RemoteRegion, length: number): number {
    if (length > this.maxMessageSize) throw new AllocToolsRangeError(`${kind} of ${length} bytes is above the provider's max_msg_size (${this.maxMessageSize})`);
    if (peer !== this.lastPeer) {
      if (typeof peer !== "bigint" || !this.peers.has(peer)) throw new AllocToolsRangeError(`peer ${String(peer)} was not inserted on this endpoint`);
      this.lastPeer = peer;
      this.lastLocal = this.localPeers.size > 0 ? this.localPeers.get(argument(peer)) : undefined;
    }
    if (this.lastLocal !== undefined) this.assertPeerOpen(kind, this.lastLocal);
    return 0;
  }

  /** ENDPOINT_CLOSED for a peer that is an endpoint of this process, closed. */
  private assertPeerOpen(kind: OperationKind, local: LocalPeer | undefined): void {
    if (local !== undefined && !this.endpoints.isOpen(local)) {
      throw new AllocToolsError("ENDPOINT_CLOSED", `${kind}: the peer is an endpoint of this process, and it is closed`);
    }
  }

  /** fi_write / fi_read with the operation's id as context; messages go to TaggedMessages, atomics to RemoteAtomics. */
  post(op: Operation): Posted {
    const local = this.localPeers.size > 0 ? this.localPeerOf(op) : undefined;
    // The first operation tried towards an endpoint of this process entangles the two (process-endpoints.ts).
    if (local !== undefined && !local.tried) this.endpoints.entangle(this.tableEntry, local);
    const posted = this.postNative(op);
    if (posted === Posted.POSTED && local !== undefined) this.aim(op, local);
    return posted;
  }

  /** The endpoint of this process `op` goes to, if it goes to one (a receive goes to none). */
  private localPeerOf(op: Operation): LocalPeer | undefined {
    return op.kind === "recv" || op.kind === "receive" ? undefined : this.localPeers.get(op.peer);
  }

  private postNative(op: Operation): Posted {
    const kind = op.kind;
    if (kind !== "write" && kind !== "read") return kind === "fetchAdd" || kind === "compareSwap" ? this.remoteAtomics!.post(op) : this.messages!.post(op);
    const fn = kind === "write" ? this.ops.write : this.ops.read;
    const ret = fn(this.ep, op.local, op.length, descriptorArgument(op.region!.registration), op.peer, op.remoteAddress, op.key, op.id) as number;
    if (ret === 0) return Posted.POSTED;
    if (ret === -FI.EAGAIN) return Posted.RETRY;
    op.error = new FabricError(`fi_${op.kind}`, -ret, this.fi.strerror(-ret),
      `${op.length} bytes at remote 0x${op.remoteAddress.toString(16)} key ${String(op.key)}`);
    return Posted.FAILED;
  }

  /** Reads the completion queue until it is empty; reports the operations it names. */
  poll(): number {
    const total = this.drain();
    if (this.messages !== null && this.messages.peeking) this.messages.repeek(cancelledError());
    return total;
  }

  private drain(): number {
    let total = 0;
    for (;;) {
      const n = (this.withSource ? this.ops.cqReadFrom(this.cq, this.cqBuf, CQ_BATCH, this.sources) : this.ops.cqRead(this.cq, this.cqBuf, CQ_BATCH)) as number;
      if (n > 0) {
        for (let i = 0; i < n; i++) this.entry(i);
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

  /** One completion entry: the operation its context names is done (a receive's result read first). */
  private entry(i: number): void {
    const words = this.cqWords;
    const base = i * ENTRY_WORDS;
    const high = words[base + 1]!;
    const op = high === 0 ? this.engine!.inTransport(words[base]!) : this.messages!.operation(high * 4294967296 + words[base]!);
    if (op === null) return;
    if (this.aimedAt[op.index] != null) this.letGo(op);
    if ((words[base + FLAGS_WORD]! & FI.RECV) !== 0) {
      const length = words[base + LENGTH_WORD]! + words[base + LENGTH_WORD + 1]! * 4294967296;
      if (!this.messages!.received(op, length, words[base + TAG_WORD]!, this.withSource ? this.sources[i]! : 0xffff_ffff_ffff_ffffn)) return;
      this.engine!.complete(op, op.failure);
      return;
    }
    this.engine!.complete(op, null);
  }

  /** fi_cancel: the operation then completes, with an error or not, through the queue. */
  cancel(op: Operation): void {
    if (!op.queued) this.ops.cancel(this.ep, this.messages === null ? op.id : this.messages.contextOf(op));
  }

  functionName(kind: OperationKind): string {
    return FUNCTION_NAMES[kind];
  }

  describePeer(peer: number | bigint): string {
    return this.peerNames.get(BigInt(peer)) ?? `fi_addr ${peer}`;
  }

  /** Whether operations of this process (any thread) aimed at this endpoint are still in transport. */
  holdsOthers(): boolean {
    return this.tableEntry >= 0 && this.endpoints.incoming(this.tableEntry) > 0;
  }

  /**
   * Closes endpoint, completion queue and address vector (children before parents). On shm, an
   * endpoint whose own operations are still in transport, or that operations of this process are
   * still aimed at, is kept open instead (see process-endpoints.ts): false then.
   */
  close(): boolean {
    const table = this.endpoints;
    if (this.sharesMappings && this.tableEntry >= 0 && this.mayBeTouched(table)) {
      table.keep(this.tableEntry);
      return false;
    }
    if (this.tableEntry >= 0) table.release(this.tableEntry);
    for (const op of this.engine!.active) if (this.aimedAt[op.index] != null) this.letGo(op);
    const errors: unknown[] = [];
    const attempt = (f: () => void) => { try { f(); } catch (e) { errors.push(e); } };
    attempt(() => this.provider.detachEndpoint(this.ep));
    attempt(() => this.fi.close(this.ep, "endpoint"));
    attempt(() => this.fi.close(this.cq, "cq"));
    attempt(() => this.fi.close(this.av, "av"));
    this.messages?.close();
    if (errors.length > 0) throw errors.length === 1 ? errors[0] : new AggregateError(errors, "closing endpoint");
    return true; // the endpoint is gone: nothing of the transport touches operations' memory any more
  }

  /**
   * Whether an endpoint of another thread may still touch this one's memory later: one is open, and
   * this endpoint had contact with the process's endpoints or still has operations in transport.
   */
  private mayBeTouched(table: ProcessEndpoints): boolean {
    const entry = this.tableEntry;
    const contact = this.engine!.active.length > 0 || table.incoming(entry) > 0 || table.entangled(entry);
    return contact && table.openInOtherThreads();
  }

  /** A posted operation is aimed at an endpoint of this process: counted there until it is let go of. */
  private aim(op: Operation, local: LocalPeer): void {
    this.endpoints.count(local, 1);
    this.aimedAt[op.index] = local;
  }

  private letGo(op: Operation): void {
    this.endpoints.count(this.aimedAt[op.index]!, -1);
    this.aimedAt[op.index] = null;
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
    const view = this.errView;
    const low = view.getUint32(L.fi_cq_err_entry.op_context, true);
    const high = view.getUint32(L.fi_cq_err_entry.op_context + 4, true);
    const op = high === 0 ? this.engine!.inTransport(low) : this.messages!.operation(high * 4294967296 + low);
    if (op === null) return true;
    if (this.aimedAt[op.index] != null) this.letGo(op);
    const err = Math.abs(view.getInt32(L.fi_cq_err_entry.err, true));
    if (op.kind === "recv" || op.kind === "receive") {
      const length = Number(view.getBigUint64(L.fi_cq_err_entry.len, true));
      const overflow = Number(view.getBigUint64(L.fi_cq_err_entry.olen, true));
      if (!this.messages!.failed(op, err, length, overflow)) return true;
      if (op.failure !== null) {
        this.engine!.complete(op, op.failure);
        return true;
      }
    }
    const providerErrno = view.getInt32(L.fi_cq_err_entry.prov_errno, true);
    const errData = Number(view.getBigUint64(L.fi_cq_err_entry.err_data, true));
    const text = readCString(Number(this.ops.cqStrError(this.cq, providerErrno, errData || null, this.strBuf, this.strBuf.length)) || 0) ?? "";
    this.engine!.complete(op, new RmaError(op.describe(), err, this.fi.strerror(err), providerErrno, text, FUNCTION_NAMES[op.kind]));
    return true;
  }
}

function cancelledError(): AllocToolsError {
  return new AllocToolsError("ENDPOINT_CLOSED", "the receive was cancelled before a message matched");
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
