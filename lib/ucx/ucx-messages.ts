// Tagged messages on a UCX worker (UCX's tag API), for UcxTransport.
//
// Wire format, what a C peer does to talk to a UcxEndpoint:
// - The 64-bit UCX tag (ucp_tag_t) of a message is (message tag << 32) | sender id: the message's
//   32-bit tag in the high half, the sender's id in the low half. The sender id is FNV-1a 32 over
//   the sender's worker address bytes (lib/ucx/sender-id.ts has the function in C).
// - A receive matches with the UCX tag (tag << 32) | source id and the mask
//   (~ignore << 32) | (0xffffffff for a named source, 0 for ANY_SOURCE): the tag bits of `ignore`
//   and, for ANY_SOURCE, the whole sender id do not have to match.
// - A received message's source is the peer inserted with the address whose id is in the tag's low
//   half (the first inserted, if one address was inserted twice). A sender never inserted is
//   reported as ANY_SOURCE (-1): not usable for a reply; insert the sender's address first. Two
//   different addresses with one id are refused at insert (AllocToolsError NOT_SUPPORTED).
// - The payload is the message's bytes; nothing is added. Sends are ucp_tag_send_nbx (not the
//   sync variant): complete once the buffer may be reused.
//
// Every send and receive passes the region's memory handle (UCP_OP_ATTR_FIELD_MEMH), so UCX's
// rendezvous (above UCX_RNDV_THRESH) moves a large message from and into pooled memory with
// nothing registered per message. UCX keeps messages between one pair of workers with one tag in
// order, eager and rendezvous alike.
//
// Receives are requests always (UCP_OP_ATTR_FLAG_NO_IMM_CMPL): UCX 1.13 does not fill
// `recv_info` when a receive completes at once, so the sender and length come from
// ucp_tag_recv_request_test. A message of unknown size (`receive`) is found with
// ucp_tag_probe_nb(remove = 1), which takes it off UCX's queue for this receive alone, then
// received with ucp_tag_msg_recv_nbx into a pooled region of its length. Pending `receive`s probe
// in the order they were made, so the earlier one gets the earlier message; a message that arrives
// while a `recv` is posted for it goes to that `recv` (UCX matches posted receives on arrival, a
// probe sees only messages nobody was waiting for).
//
// Truncation: a message longer than its receive completes with UCS_ERR_MESSAGE_TRUNCATED, and
// UCX reports the message's length in the receive info (eager and rendezvous); UCX writes nothing
// past the receive's length.
import type { Pointer } from "bun:ffi";
import { ptr } from "bun:ffi";
import { isStatusError, UCX, ucxLayout, type Ucx } from "../../ffi/ucx.ts";
import { AllocToolsError } from "../errors.ts";
import type { Operation } from "../engine/operation.ts";
import { Posted, type CompletionSink } from "../engine/transport.ts";
import { ANY_SOURCE } from "../engine/message.ts";
import { SenderIds, senderId } from "./sender-id.ts";

/** A `receive` operation's state (op.flags), bits apart from the RMA flags. */
const PROBING = 2;
const CLAIMING = 4;
const DISCARDING = 8;
const FINISHED = 16;

const TWO_TO_32 = 4294967296;
/** A tag word whose signed high half lies in [-2^21, 2^21) is exact as a double. */
const EXACT_HIGH = 0x20_0000;
const INFO = ucxLayout.ucp_tag_recv_info_t;
const PARAM = ucxLayout.ucp_request_param_t.fields;
/** The parameters' memory handle, as 32-bit words. */
const MEMH_WORD = PARAM.memh / 4;

/**
 * The 64-bit UCX tag word with `high` and `low` (unsigned 32-bit halves) as bun:ffi takes an i64:
 * a number where the signed value is exact in a double (every tag below 2^21 or from 2^32 - 2^21),
 * else a BigInt (one allocation).
 */
export function tagWord(high: number, low: number): number | bigint {
  const signedHigh = high >= 0x8000_0000 ? high - TWO_TO_32 : high;
  if (signedHigh >= -EXACT_HIGH && signedHigh < EXACT_HIGH) return signedHigh * TWO_TO_32 + low;
  return BigInt.asIntN(64, (BigInt(high) << 32n) | BigInt(low));
}

/**
 * Tag words of one use (sends' tags, receives' tags, receives' masks): the last BigInt made is
 * kept, so a tag that is not exact as a double costs one BigInt when it changes, not per call.
 */
class TagWords {
  private high = -1;
  private low = -1;
  private word: number | bigint = 0;

  of(high: number, low: number): number | bigint {
    const signedHigh = high >= 0x8000_0000 ? high - TWO_TO_32 : high;
    if (signedHigh >= -EXACT_HIGH && signedHigh < EXACT_HIGH) return signedHigh * TWO_TO_32 + low;
    if (high !== this.high || low !== this.low) {
      this.high = high;
      this.low = low;
      this.word = tagWord(high, low);
    }
    return this.word;
  }
}

/** Tagged sends, receives and probes of one worker. */
export class UcxMessages {
  /** This worker's sender id (the low half of the tag of every message it sends). */
  readonly ownId: number;
  /** Which inserted peer each sender id stands for. */
  readonly senders = new SenderIds();
  private readonly ucx: Ucx;
  private readonly raw: Ucx["raw"];
  private readonly worker: number;
  /** Sender ids of the peers, by peer index. */
  private readonly peerIds: number[] = [];
  /** `receive` operations probing for their message, in the order they were made. */
  private readonly probing: Operation[] = [];
  private engine: CompletionSink | null = null;
  private readonly sendTags = new TagWords();
  private readonly receiveTags = new TagWords();
  private readonly receiveMasks = new TagWords();
  // Typed arrays over ArrayBuffers of their own: their memory never moves, so an address taken once
  // stays valid (a small typed array's storage can move when JSC materializes its buffer).
  /** ucp_request_param_t of sends: MEMH and MEMORY_TYPE (host); memh written per send. */
  private readonly sendParam = new Uint32Array(new ArrayBuffer(ucxLayout.ucp_request_param_t.size));
  private readonly sendParamAddress: number;
  /** ucp_request_param_t of receives: also NO_IMM_CMPL (see the file header). */
  private readonly recvParam = new Uint32Array(new ArrayBuffer(ucxLayout.ucp_request_param_t.size));
  private readonly recvParamAddress: number;
  /** ucp_request_param_t of a probed message's receive: MEMH and MEMORY_TYPE; completes at once where it can (the probe told sender and length). */
  private readonly claimParam = new Uint32Array(new ArrayBuffer(ucxLayout.ucp_request_param_t.size));
  private readonly claimParamAddress: number;
  /** ucp_request_param_t of a dropped message's receive: nothing set. */
  private readonly discardParam = new Uint32Array(new ArrayBuffer(ucxLayout.ucp_request_param_t.size));
  private readonly discardParamAddress: number;
  /** ucp_tag_recv_info_t, filled by ucp_tag_recv_request_test and ucp_tag_probe_nb. */
  private readonly info = new Uint32Array(new ArrayBuffer(INFO.size));
  private readonly infoAddress: number;

  constructor(ucx: Ucx, worker: number, ownAddress: Uint8Array) {
    this.ucx = ucx;
    this.raw = ucx.raw;
    this.worker = worker;
    this.ownId = senderId(ownAddress);
    const memoryParams = UCX.OP_ATTR_FIELD_MEMH | UCX.OP_ATTR_FIELD_MEMORY_TYPE;
    this.sendParam[PARAM.op_attr_mask / 4] = memoryParams;
    this.sendParam[PARAM.memory_type / 4] = UCX.MEMORY_TYPE_HOST;
    this.recvParam[PARAM.op_attr_mask / 4] = memoryParams | UCX.OP_ATTR_FLAG_NO_IMM_CMPL;
    this.recvParam[PARAM.memory_type / 4] = UCX.MEMORY_TYPE_HOST;
    this.claimParam[PARAM.op_attr_mask / 4] = memoryParams;
    this.claimParam[PARAM.memory_type / 4] = UCX.MEMORY_TYPE_HOST;
    this.sendParamAddress = ptr(this.sendParam);
    this.recvParamAddress = ptr(this.recvParam);
    this.claimParamAddress = ptr(this.claimParam);
    this.discardParamAddress = ptr(this.discardParam);
    this.infoAddress = ptr(this.info);
  }

  bind(engine: CompletionSink): void {
    this.engine = engine;
  }

  /** Why a peer at `address` cannot be inserted (another inserted address has its sender id), or "". */
  conflict(address: Uint8Array): string {
    return this.senders.conflict(address);
  }

  /** Peer `index` was inserted with `address`. */
  addPeer(address: Uint8Array, index: number): void {
    this.senders.add(address, index);
    this.peerIds[index] = senderId(address);
  }

  /** ucp_tag_send_nbx of the operation's bytes to the ep, tagged (tag << 32) | own id. */
  send(op: Operation, ep: number): Posted {
    setMemoryHandle(this.sendParam, op.region!.registration.handle);
    const sent = this.raw.ucp_tag_send_nbx(ep as Pointer, op.local as Pointer, op.length, this.sendTags.of(op.tag, this.ownId),
      this.sendParamAddress as Pointer) as number;
    if (sent === 0) return Posted.DONE;
    if (isStatusError(sent)) {
      op.error = this.ucx.error("ucp_tag_send_nbx", sent, describe(op));
      return Posted.FAILED;
    }
    op.request = sent;
    return Posted.POSTED;
  }

  /** ucp_tag_recv_nbx into the operation's memory; always a request (NO_IMM_CMPL). */
  recv(op: Operation): Posted {
    setMemoryHandle(this.recvParam, op.region!.registration.handle);
    const named = op.peer !== ANY_SOURCE;
    const source = named ? this.peerIds[op.peer as number]! : 0;
    const posted = this.raw.ucp_tag_recv_nbx(this.worker as Pointer, op.local as Pointer, op.length,
      this.receiveTags.of((op.tag & ~op.ignore) >>> 0, source), this.receiveMasks.of(~op.ignore >>> 0, named ? 0xffff_ffff : 0), this.recvParamAddress as Pointer) as number;
    if (isStatusError(posted)) {
      op.error = this.ucx.error("ucp_tag_recv_nbx", posted, describe(op));
      return Posted.FAILED;
    }
    op.request = posted;
    return Posted.POSTED;
  }

  /**
   * A `recv`'s request (ucp_tag_recv_request_test): true once it ended, with the sender, tag and
   * length in `op.result*`, or the error in `op.failure` (a cancelled receive: UCS_ERR_CANCELED).
   */
  checkRecv(op: Operation): boolean {
    const request = op.request as Pointer;
    const status = this.raw.ucp_tag_recv_request_test(request, this.infoAddress as Pointer);
    if (status === UCX.INPROGRESS) return false;
    this.raw.ucp_request_free(request);
    op.request = 0;
    if (status === UCX.OK) this.readInfo(op);
    else if (status === UCX.ERR_MESSAGE_TRUNCATED) op.failure ??= truncated(op, this.infoLength());
    else op.failure ??= this.ucx.error("ucp_tag_recv_nbx", status, describe(op));
    return true;
  }

  /** A `receive`: joins the receives probing for their message, then they probe in order. */
  receive(op: Operation): Posted {
    op.flags = PROBING;
    this.probing.push(op);
    this.probe();
    return Posted.POSTED;
  }

  /** Whether a `receive` has ended (its message received or dropped, or its probing cancelled); the error in `op.failure`. */
  checkReceive(op: Operation): boolean {
    if ((op.flags & FINISHED) !== 0) return true;
    if (op.request === 0) return false; // probing
    const status = this.raw.ucp_request_check_status(op.request as Pointer);
    if (status === UCX.INPROGRESS) return false;
    this.raw.ucp_request_free(op.request as Pointer);
    op.request = 0;
    op.flags = FINISHED;
    if (status !== UCX.OK) op.failure ??= this.ucx.error("ucp_tag_msg_recv_nbx", status, describe(op));
    return true;
  }

  /**
   * Probes for the message of each `receive` still looking for one, oldest first; a message found
   * is taken off UCX's queue (remove = 1) and received into a pooled region of its length.
   */
  probe(): void {
    const probing = this.probing;
    for (let i = 0; i < probing.length; i++) {
      const op = probing[i]!;
      const named = op.peer !== ANY_SOURCE;
      const message = this.raw.ucp_tag_probe_nb(this.worker as Pointer, this.receiveTags.of((op.tag & ~op.ignore) >>> 0, named ? this.peerIds[op.peer as number]! : 0),
        this.receiveMasks.of(~op.ignore >>> 0, named ? 0xffff_ffff : 0), 1, this.infoAddress as Pointer) as number;
      if (message === 0) continue;
      probing.splice(i--, 1);
      this.readInfo(op);
      this.claim(op, message);
    }
  }

  /**
   * Cancels a receive: a `recv`'s request (it completes with UCS_ERR_CANCELED unless its message
   * matched), a probing `receive` at once. A `receive` whose message was found completes.
   */
  cancel(op: Operation): void {
    if (op.kind === "recv") {
      if (op.request !== 0) this.raw.ucp_request_cancel(this.worker as Pointer, op.request as Pointer);
      return;
    }
    if ((op.flags & PROBING) === 0) return;
    const at = this.probing.indexOf(op);
    if (at >= 0) this.probing.splice(at, 1);
    op.flags = FINISHED;
    op.failure ??= this.ucx.error("ucp_tag_probe_nb", UCX.ERR_CANCELED, "the receive was cancelled before a message matched");
  }

  /** Forgets the probing receives (the worker is going away). */
  close(): void {
    this.probing.length = 0;
  }

  /**
   * Receives the probed `message` into a region of its length from the endpoint's pool; when the
   * pool refuses (`op.failure` says why), receives 0 bytes of it, which drops it.
   */
  private claim(op: Operation, message: number): void {
    const length = op.resultLength;
    const buffered = this.engine!.bufferFor(op, length);
    let received: number;
    if (buffered) {
      op.flags = CLAIMING;
      setMemoryHandle(this.claimParam, op.region!.registration.handle);
      received = this.raw.ucp_tag_msg_recv_nbx(this.worker as Pointer, op.local as Pointer, length, message as Pointer, this.claimParamAddress as Pointer) as number;
    } else {
      op.flags = DISCARDING;
      received = this.raw.ucp_tag_msg_recv_nbx(this.worker as Pointer, null, 0, message as Pointer, this.discardParamAddress as Pointer) as number;
    }
    if (received === 0 || isStatusError(received)) {
      op.flags = FINISHED;
      // A dropped message's receive of 0 bytes ends truncated: the pool's refusal is the error.
      if (received !== 0) op.failure ??= this.ucx.error("ucp_tag_msg_recv_nbx", received, describe(op));
      return;
    }
    op.request = received;
  }

  /** The sender, tag and length of the receive info block into the operation's results. */
  private readInfo(op: Operation): void {
    const info = this.info;
    op.resultSource = this.senders.peerOf(info[0]!);
    op.resultTag = info[1]!;
    op.resultLength = this.infoLength();
  }

  private infoLength(): number {
    return this.info[INFO.fields.length / 4]! + this.info[INFO.fields.length / 4 + 1]! * TWO_TO_32;
  }
}

/** Writes a memory handle (an address) into a request parameter block. */
function setMemoryHandle(param: Uint32Array, memh: number): void {
  param[MEMH_WORD] = memh >>> 0;
  param[MEMH_WORD + 1] = Math.floor(memh / TWO_TO_32);
}

/** The TRUNCATED error of a receive of `op.length` bytes, for a message of `length` (what UCX reported). */
function truncated(op: Operation, length: number): AllocToolsError {
  const whole = length > op.length
    ? `a message of ${length} bytes is longer than the receive's ${op.length} bytes`
    : `a message longer than the receive's ${op.length} bytes arrived (UCX did not report its length)`;
  return new AllocToolsError("TRUNCATED", `${op.kind}: ${whole}; nothing was written past the receive's memory`);
}

function describe(op: Operation): string {
  return op.kind === "send" ? `send of ${op.length} bytes, tag ${op.tag}, to peer ${String(op.peer)}` : `${op.kind} of ${op.length} bytes, tag ${op.tag}`;
}
