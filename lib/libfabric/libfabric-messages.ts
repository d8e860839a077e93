// Tagged messages on a libfabric endpoint (FI_TAGGED), for LibfabricTransport.
//
// Wire format, what a C peer does to talk to an Endpoint (docs/messaging.md "## libfabric" has it
// whole; test/messages/tagged-peer.c follows it): an FI_EP_RDM endpoint of the same provider with
// FI_TAGGED (FI_SOURCE to learn senders); the 64-bit libfabric tag is the message's 32-bit tag in
// its low half, zero in its high half (a message with high bits set never matches a receive here);
// a receive ignores only low bits (`ignore` is the receive's mask); the source is the sender's
// fi_addr_t in the receiver's address vector (FI_SOURCE), so a peer is known as the sender once
// inserted; nothing is added to the payload (no header, no CQ data). Sends are fi_tinject up to
// the provider's inject_size (the buffer is reusable at once) and fi_tsendmsg with
// FI_TRANSMIT_COMPLETE above it (the endpoint's default FI_DELIVERY_COMPLETE is for RMA writes).
// Large messages use the provider's own protocols (rxm: eager to 16 KiB, SAR to 128 KiB,
// rendezvous above), from the registration the region already has (its descriptor), so nothing is
// registered per message. Messages of one sender with one tag match in the order sent.
//
// A receive carries a second iovec after the caller's memory: an overflow sink, address space
// reserved and never committed (MAP_NORESERVE). A message longer than the receive lands its rest
// there, so its whole length is known (AllocToolsError TRUNCATED names both lengths) and nothing
// is written past the caller's memory. It also keeps providers out of their own truncation paths,
// which libfabric 1.17 gets wrong: shm loops forever in process_vm_readv (smr_cma_loop counts the
// message's size, not the receive's), udp;ofi_rxd completes silently with the receive's length,
// and rxm's eager path reports no length.
//
// A message of unknown size (`receive`) is found with FI_PEEK|FI_CLAIM, then received with
// FI_CLAIM into a pooled region of its length. Providers without a working FI_PEEK (shm 1.17
// consumes the message) receive into the pool's largest region.
//
// Provider defects worked around here (libfabric 1.17, read in its source and seen in tests):
// - ofi_rxd (udp;ofi_rxd) announces FI_SOURCE but never writes a completion's source, so
//   fi_cq_readfrom gives fi_addr 0 for every message: a receive from a named peer reports that
//   peer (the match guarantees it), one from ANY_SOURCE reports ANY_SOURCE (unknown).
// - shm before 1.19 matches a receive against messages that arrived before it with the waiting
//   message's mask instead of the receive's (smr_match_tagged on the unexpected queue), so a
//   receive with a tag mask misses or takes the wrong message: such receives are refused there.
import { ptr } from "bun:ffi";
import type { TaggedOps } from "../../ffi/libfabric.ts";
import { FI, L, layout } from "../../ffi/layout.ts";
import * as libc from "../../ffi/libc.ts";
import { AllocToolsError, FabricError } from "../errors.ts";
import type { Operation } from "../engine/operation.ts";
import { descriptorArgument } from "./libfabric-provider.ts";
import { ANY_SOURCE } from "../engine/message.ts";
import { Posted, type CompletionSink } from "../engine/transport.ts";

/** FI_ADDR_UNSPEC: a receive from any source. FI_ADDR_NOTAVAIL, its twin, is a source not in the address vector. */
const ADDRESS_UNSPECIFIED = 0xffff_ffff_ffff_ffffn;
/** fi_tsendmsg flags: a completion once the buffer may be reused (not FI_DELIVERY_COMPLETE). */
const SEND_FLAGS = Number(FI.COMPLETION | FI.TRANSMIT_COMPLETE);
const PEEK_FLAGS = FI.PEEK | FI.CLAIM;
const CLAIM_FLAGS = FI.CLAIM;
const DISCARD_FLAGS = FI.CLAIM | FI.DISCARD;
/** Providers whose FI_PEEK does not work (shm 1.17 truncates the message instead of peeking). */
const NO_PEEK = new Set(["shm"]);
/** Utility providers that announce FI_SOURCE but never report a completion's source (see the header). */
const NO_SOURCE = "ofi_rxd";
/** The first libfabric whose shm applies a receive's tag mask to messages already waiting: FI_VERSION(1, 19). */
const SHM_MASKS_FIXED = (1 << 16) | 19;

/** A `receive` operation's state (op.flags). */
const PEEKING = 1;
const PEEK_AGAIN = 2;
const CLAIMING = 4;
const DISCARDING = 8;

/** Bytes of the native block: fi_msg_tagged, two iovecs (memory, overflow sink), their two descriptors. */
const MESSAGE_OFFSET = 0;
const IOVEC_OFFSET = layout.fi_msg_tagged.size;
const DESCRIPTOR_OFFSET = IOVEC_OFFSET + 32;
const BLOCK_BYTES = DESCRIPTOR_OFFSET + 16;
/** fi_trecvmsg flags of a receive with its overflow sink. */
const RECEIVE_FLAGS = Number(FI.COMPLETION);
/** Address space of the overflow sink: how much longer than its receive a message may be. */
const SINK_BYTES = 2 ** 34;

/** Tagged sends, receives and peeks of one endpoint. */
export class TaggedMessages {
  private readonly ops: TaggedOps;
  private readonly strerror: (errno: number) => string;
  private readonly ep: number;
  private readonly injectSize: number;
  private readonly peeks: boolean;
  /** Whether completions name their source (else a directed receive reports its peer, ANY_SOURCE the unknown). */
  private readonly reportsSources: boolean;
  /** Why receives with a tag mask are refused on this provider, "" where masks work. */
  readonly masks: string;
  // Typed arrays over ArrayBuffers of their own: their memory never moves, so an address taken once
  // stays valid (a small typed array's storage can move when JSC materializes its buffer).
  private readonly block = new Uint32Array(new ArrayBuffer(BLOCK_BYTES));
  private readonly blockAddress: number;
  /** `receive` operations by the native fi_context their peek and claim carry. */
  private readonly byContext = new Map<number, Operation>();
  private readonly contexts = new PeekContexts();
  /** `receive` operations whose peek found nothing yet: peeked again on the next turn. */
  private readonly peekAgain: Operation[] = [];
  private engine: CompletionSink | null = null;

  constructor(ops: TaggedOps, strerror: (errno: number) => string, ep: number, injectSize: number, providerName: string, libraryVersion: number) {
    this.ops = ops;
    this.strerror = strerror;
    this.ep = ep;
    this.injectSize = injectSize;
    this.peeks = !NO_PEEK.has(providerName);
    this.reportsSources = !providerName.split(";").includes(NO_SOURCE);
    this.masks = providerName === "shm" && libraryVersion < SHM_MASKS_FIXED
      ? "shm before libfabric 1.19 ignores a receive's tag mask for messages that arrived before the receive (it matches with the waiting message's mask): receive with an exact tag (ignore 0) here"
      : "";
    this.blockAddress = ptr(this.block);
    const words = this.block;
    writeU64(words, IOVEC_OFFSET + 16, overflowSink());
    writeU64(words, IOVEC_OFFSET + 24, SINK_BYTES);
    writeU64(words, DESCRIPTOR_OFFSET + 8, 0);
  }

  bind(engine: CompletionSink): void {
    this.engine = engine;
  }

  /** Posts a send, recv or receive. */
  post(op: Operation): Posted {
    if (op.kind === "send") return this.send(op);
    if (op.kind === "recv") return this.recv(op, op.local, op.length);
    return this.peeks ? this.peek(op) : this.receiveWhole(op);
  }

  /** The `receive` operation whose fi_context is at `context`, or null. */
  operation(context: number): Operation | null {
    return this.byContext.get(context) ?? null;
  }

  /**
   * A receive completion for `op` (length, tag, source as read from the queue). True when the
   * operation is done; false when it goes on (a peek that found its message: now claimed).
   */
  received(op: Operation, length: number, tag: number, source: bigint): boolean {
    if (length > op.length && (op.flags & PEEKING) === 0) {
      op.failure = new AllocToolsError("TRUNCATED", `${op.kind}: a message of ${length} bytes is longer than the receive's ${op.length} bytes (its first ${op.length} bytes arrived; nothing was written past them)`);
      libc.madvise(overflowSink(), Math.ceil((length - op.length) / libc.pageSize) * libc.pageSize, libc.MADV_DONTNEED);
      length = op.length;
    }
    op.resultLength = length;
    op.resultTag = tag;
    op.resultSource = this.reportsSources ? (source === ADDRESS_UNSPECIFIED ? ANY_SOURCE : source) : op.peer === ANY_SOURCE ? ANY_SOURCE : BigInt(op.peer);
    if (op.kind !== "receive" || (op.flags & PEEKING) === 0) return this.release(op);
    if (this.engine!.bufferFor(op, length)) {
      op.flags = CLAIMING;
      this.claim(op, CLAIM_FLAGS);
    } else {
      op.flags = DISCARDING;
      this.claim(op, DISCARD_FLAGS);
    }
    return false;
  }

  /**
   * An error completion for `op` with libfabric's `err`: true when the operation is done (`op.failure`
   * set), false when it goes on (a peek that found nothing: peeked again next turn).
   */
  failed(op: Operation, err: number, length: number, overflow: number): boolean {
    if (op.kind === "receive" && (op.flags & PEEKING) !== 0 && err === FI.ENOMSG && op.cancelReason === null) {
      op.flags = PEEK_AGAIN;
      this.peekAgain.push(op);
      return false;
    }
    if (err === FI.ETRUNC) {
      op.failure = new AllocToolsError("TRUNCATED", `${op.kind}: a message of ${length + overflow} bytes is longer than the receive's ${op.length} bytes (the first ${length} arrived, nothing past them was written)`);
    }
    return this.release(op);
  }

  /** Peeks again for the receives whose last peek found nothing, or ends those that were cancelled. */
  repeek(cancelled: unknown): void {
    const waiting = this.peekAgain.splice(0);
    for (const op of waiting) {
      if (!op.inTransport) continue;
      if (op.cancelReason !== null) {
        this.release(op);
        this.engine!.complete(op, cancelled);
      } else if (this.peek(op) === Posted.FAILED) {
        this.release(op);
        this.engine!.complete(op, op.error);
      }
    }
  }

  /** Whether any receive waits to be peeked again (the transport turns it then). */
  get peeking(): boolean {
    return this.peekAgain.length > 0;
  }

  /** fi_cancel's context for `op`: its id, or its fi_context for a peek and claim. */
  contextOf(op: Operation): number {
    return op.kind === "receive" && this.peeks ? op.request : op.id;
  }

  /** Frees the fi_contexts (the endpoint is closed: nothing native uses them). */
  close(): void {
    this.byContext.clear();
    this.contexts.close();
  }

  private send(op: Operation): Posted {
    if (op.length <= this.injectSize) {
      const ret = this.ops.tinject(this.ep, op.local, op.length, op.peer, op.tag) as number;
      return ret === 0 ? Posted.DONE : this.outcome(op, ret, "fi_tinject");
    }
    this.describe(op, op.local, op.length, op.peer, op.id);
    return this.outcome(op, this.ops.tsendmsg(this.ep, this.blockAddress, SEND_FLAGS) as number, "fi_tsendmsg");
  }

  /** fi_trecvmsg of `length` bytes at `address`, then the overflow sink. */
  private recv(op: Operation, address: number, length: number): Posted {
    this.describe(op, address, length, sourceOf(op), op.id, 2);
    return this.outcome(op, this.ops.trecvmsg(this.ep, this.blockAddress, RECEIVE_FLAGS) as number, "fi_trecvmsg");
  }

  /** A receive of unknown size where peeks do not work: the pool's largest region. */
  private receiveWhole(op: Operation): Posted {
    if (op.region === null && !this.engine!.bufferFor(op, -1)) {
      op.error = op.failure;
      return Posted.FAILED;
    }
    return this.recv(op, op.local, op.length);
  }

  /** fi_trecvmsg(FI_PEEK | FI_CLAIM) with the operation's own fi_context. */
  private peek(op: Operation): Posted {
    if (op.request === 0) {
      op.request = this.contexts.take();
      this.byContext.set(op.request, op);
    }
    op.flags = PEEKING;
    this.describe(op, 0, 0, sourceOf(op), op.request);
    return this.outcome(op, this.ops.trecvmsg(this.ep, this.blockAddress, PEEK_FLAGS) as number, "fi_trecvmsg");
  }

  /**
   * The receive of a peeked message, with the peek's fi_context (FI_CLAIM), or its drop
   * (FI_DISCARD). A claim always carries its iovec, empty for a message of 0 bytes: sockets
   * copies a claimed message through msg_iov without looking at iov_count, and crashed on NULL.
   */
  private claim(op: Operation, flags: bigint): void {
    this.describe(op, op.local, flags === CLAIM_FLAGS ? op.length : 0, sourceOf(op), op.request, flags === CLAIM_FLAGS ? 1 : 0);
    const ret = this.ops.trecvmsg(this.ep, this.blockAddress, flags) as number;
    if (ret !== 0) {
      op.failure ??= new FabricError("fi_trecvmsg", -ret, this.strerror(-ret), "claiming a peeked message (FI_CLAIM)");
      this.release(op);
      this.engine!.complete(op, op.failure);
    }
  }

  /**
   * The fi_msg_tagged of one operation: `iovecs` 0 is `length` bytes at `address`, or no iovec when
   * `length` is 0; 1 is that iovec even when empty (sockets dereferences the iovec of a claim);
   * 2 adds the overflow sink after it.
   */
  private describe(op: Operation, address: number, length: number, peer: number | bigint, context: number, iovecs: 0 | 1 | 2 = 0): void {
    const words = this.block;
    const base = this.blockAddress;
    writeU64(words, IOVEC_OFFSET, address);
    writeU64(words, IOVEC_OFFSET + 8, length);
    writeU64(words, DESCRIPTOR_OFFSET, this.descriptor(op));
    const count = iovecs === 0 && length === 0 ? 0 : iovecs === 2 ? 2 : 1;
    writeU64(words, MESSAGE_OFFSET + L.fi_msg_tagged.msg_iov, count === 0 ? 0 : base + IOVEC_OFFSET);
    writeU64(words, MESSAGE_OFFSET + L.fi_msg_tagged.desc, count === 0 ? 0 : base + DESCRIPTOR_OFFSET);
    writeU64(words, MESSAGE_OFFSET + L.fi_msg_tagged.iov_count, count);
    writeU64(words, MESSAGE_OFFSET + L.fi_msg_tagged.addr, peer);
    writeU64(words, MESSAGE_OFFSET + L.fi_msg_tagged.tag, op.tag);
    writeU64(words, MESSAGE_OFFSET + L.fi_msg_tagged.ignore, op.ignore);
    writeU64(words, MESSAGE_OFFSET + L.fi_msg_tagged.context, context);
  }

  private descriptor(op: Operation): number | bigint {
    return op.region === null ? 0 : descriptorArgument(op.region.registration);
  }

  /** What a post returned, as the engine wants it. */
  private outcome(op: Operation, ret: number, fn: string): Posted {
    if (ret === 0) return Posted.POSTED;
    if (ret === -FI.EAGAIN) return Posted.RETRY;
    op.error = new FabricError(fn, -ret, this.strerror(-ret), `${op.kind} of ${op.length} bytes, tag ${op.tag}`);
    return Posted.FAILED;
  }

  /** The receive no longer needs its fi_context. Returns true (the operation is done). */
  private release(op: Operation): boolean {
    if (op.kind === "receive" && op.request !== 0) {
      this.byContext.delete(op.request);
      this.contexts.give(op.request);
      op.request = 0;
    }
    return true;
  }
}

/**
 * Native fi_contexts for peeks and claims, from pages of their own. A completion names its
 * operation by its context: an operation id (below 2^31) for every other operation, a pointer here
 * for these, told apart by the pointer's high half, never 0 for an mmap'd page on x86-64 Linux
 * (mapped top-down, from near 2^47).
 */
class PeekContexts {
  private readonly pages: number[] = [];
  private readonly free: number[] = [];

  take(): number {
    if (this.free.length === 0) this.grow();
    return this.free.pop()!;
  }

  give(context: number): void {
    libc.memset(context, 0, CONTEXT_BYTES);
    this.free.push(context);
  }

  close(): void {
    for (const page of this.pages) libc.munmap(page, libc.pageSize);
    this.pages.length = 0;
    this.free.length = 0;
  }

  private grow(): void {
    const page = libc.mmap(libc.pageSize);
    if (page < 2 ** 32) {
      libc.munmap(page, libc.pageSize);
      throw new AllocToolsError("NOT_SUPPORTED", `receive(): mmap placed a page at 0x${page.toString(16)}, below 4 GiB, where its fi_contexts could not be told from operation ids`);
    }
    this.pages.push(page);
    for (let at = page + libc.pageSize - CONTEXT_BYTES; at >= page; at -= CONTEXT_BYTES) this.free.push(at);
  }
}

const CONTEXT_BYTES = layout.fi_context.size;

let sink = 0;

/**
 * The overflow sink of this thread's receives (see the file header): reserved once, never
 * committed; pages a truncated message touched are given back after it (MADV_DONTNEED).
 */
function overflowSink(): number {
  if (sink === 0) sink = libc.mmap(SINK_BYTES, libc.MAP_NORESERVE);
  return sink;
}

/** A receive's source as libfabric takes it: the peer's fi_addr_t, or FI_ADDR_UNSPEC for any. */
function sourceOf(op: Operation): number | bigint {
  return op.peer === ANY_SOURCE ? ADDRESS_UNSPECIFIED : op.peer;
}

/** Writes a u64 (a number below 2^53, or a bigint) into 32-bit words at byte `offset`. */
function writeU64(words: Uint32Array, offset: number, value: number | bigint): void {
  const index = offset >> 2;
  if (typeof value === "bigint") {
    words[index] = Number(value & 0xffff_ffffn);
    words[index + 1] = Number(value >> 32n);
  } else {
    words[index] = value >>> 0;
    words[index + 1] = Math.floor(value / 4294967296);
  }
}
