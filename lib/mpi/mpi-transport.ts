// The MPI transport of MpiEndpoint (the adapter contract is lib/engine/transport.ts): RMA and
// remote atomics on an MpiProvider's dynamic window, tagged messages on MPI_COMM_WORLD, peers are
// ranks.
//
// - An endpoint's `name` is 8 bytes: "ATMP" and its rank (u32 little-endian); `insert(name)`
//   checks it and returns the rank. Any rank of the job may be passed as `peer` without insert().
// - A RemoteRegion's key names the window (MpiProvider): a key of another window is refused.
// - Sync forms: MPI_Put / MPI_Get, then MPI_Win_flush(rank), inside post(): back when the data is
//   in the target's memory (write) or in ours (read). A flush has no deadline in MPI: the sync
//   forms are bounded by the MPI library, not by `timeoutMs`.
// - Post and promise forms: MPI_Rput / MPI_Rget, then MPI_Test on each progress turn. A read is
//   done when its request is; a write's request completing only frees the origin buffer, so the
//   write is done after MPI_Win_flush(rank) returns (remote completion, as MPI requires).
// - MPI cannot cancel RMA: close flushes the window (MPI_Win_flush_all) and reads what completed.
// - Local memory is any region or pointer of this library (MPI reads and writes the origin buffer
//   itself: it need not be attached to the window).
//
// Remote atomics, on the aligned 64-bit word at the remote region's displacement, as MPI_UINT64_T:
// - fetchAddSync: MPI_Fetch_and_op(MPI_SUM), then MPI_Win_flush(rank), inside post(). fetchAdd and
//   postFetchAdd: MPI_Rget_accumulate(MPI_SUM), MPI_Test on each turn, then MPI_Win_flush(rank)
//   (a request completing says only that the result is in our memory; the flush is remote
//   completion). Open MPI 4.1.4's osc/rdma over vader performs the atomic inside the call (it
//   returned after 2.0 s against a target that did not call MPI for 2 s, its request complete), so
//   the request form waits as long there; it keeps the post form's contract where an MPI does not.
// - compareSwap, every form: MPI_Compare_and_swap, then MPI_Win_flush(rank), inside post() (MPI has
//   no request-based compare-and-swap). Bounded by MPI, not by `timeoutMs`. A compareSwap to the
//   calling rank is refused (NOT_SUPPORTED): Open MPI 4.1.4's osc/rdma dies with SIGSEGV in
//   mca_btl_vader_emu_acswap on an MPI_Compare_and_swap to its own rank.
// - The result lands in op.local + 16 (the engine's cell), written by MPI before the flush returns.
// - Atomicity is MPI's: against other MPI accumulate operations on the same window and datatype,
//   not against the target's own loads and stores. vader emulates the atomic in the target's
//   process, so the target must make MPI progress (startProgress(), or any wait in the library).
//
// Tagged messages (mpi-messages.ts; wire format, for a C, C++ or Fortran rank):
// - On MPI_COMM_WORLD, of MPI_BYTE: the message's tag is the MPI tag (an int in
//   [0, MPI_TAG_UB], read from MPI_COMM_WORLD's attribute; a larger tag is a RangeError naming
//   MPI_TAG_UB), the source is the sender's rank, nothing is added to the payload. A C rank sends
//   with MPI_Send(buffer, length, MPI_BYTE, rank, tag, MPI_COMM_WORLD) and receives with MPI_Recv
//   from the Bun rank (or MPI_ANY_SOURCE) with that tag.
// - MPI matches tags exactly or not at all: a receive's `ignore` is 0 or ANY_TAG (MPI_ANY_TAG);
//   another mask is AllocToolsError NOT_SUPPORTED. ANY_SOURCE is MPI_ANY_SOURCE.
// - Every endpoint of the process shares MPI_COMM_WORLD: messages go to a rank, not to an
//   endpoint; a receive of any endpoint of that rank may take a message that matches it.
// - Sends: MPI_Isend and MPI_Test, in every form (MPI_Send would block past `timeoutMs` on a
//   rendezvous, and on a send to this very rank). Large messages use the MPI library's own
//   rendezvous (ob1 over vader: CMA, above 4 KiB); nothing is registered per message.
// - Receives: MPI_Improbe, MPI_Get_count, MPI_Imrecv of the message's exact length (see
//   mpi-messages.ts for why a receive is never posted to MPI before its message is found).
import { read, type Pointer } from "bun:ffi";
import type { MpiAtomicOps, MpiLibrary, MpiRmaOps } from "../../ffi/mpi.ts";
import * as libc from "../../ffi/libc.ts";
import { AllocToolsError, AllocToolsRangeError } from "../errors.ts";
import { Wait, type Operation } from "../engine/operation.ts";
import { ANY_SOURCE, ANY_TAG } from "../engine/message.ts";
import type { RemoteRegion } from "../engine/remote-region.ts";
import type { OperationKind } from "../engine/rma-errors.ts";
import { COMPARE_OFFSET, RESULT_OFFSET } from "../engine/atomic-scratch.ts";
import { Posted, type CompletionSink, type Transport } from "../engine/transport.ts";
import type { MpiProvider } from "./mpi-provider.ts";
import { MpiMessages } from "./mpi-messages.ts";

/** A peer of an MpiEndpoint: its rank in the job. */
export type MpiRank = number;

/** Bytes of an MpiEndpoint's name: magic "ATMP", then the rank as u32 little-endian. */
const NAME_BYTES = 8;
const NAME_MAGIC = [0x41, 0x54, 0x4d, 0x50] as const;
/** MPI counts are C ints. */
const MAX_COUNT = 0x7fff_ffff;
const REQUEST_BYTES = 8;

/** The endpoint name of `rank`: "ATMP" + rank (u32 LE). */
export function mpiEndpointName(rank: number): Uint8Array {
  const name = new Uint8Array(NAME_BYTES);
  name.set(NAME_MAGIC, 0);
  new DataView(name.buffer).setUint32(4, rank, true);
  return name;
}

/** MpiEndpoint's adapter over the provider's window and MPI_COMM_WORLD. */
export class MpiTransport implements Transport<MpiRank> {
  readonly name: Uint8Array;
  readonly nameKind = "mpi" as const;
  readonly messaging = "";
  readonly atomics = "";
  readonly finishesAbandoned = true;
  private readonly provider: MpiProvider;
  private readonly mpi: MpiLibrary;
  private readonly window: number;
  private readonly rank: number;
  private readonly size: number;
  private readonly byte: number;
  private readonly put: MpiRmaOps["put"];
  private readonly get: MpiRmaOps["get"];
  private readonly rput: MpiRmaOps["rput"];
  private readonly rget: MpiRmaOps["rget"];
  private readonly flush: MpiRmaOps["flush"];
  private readonly test: MpiRmaOps["test"];
  private readonly uint64: number;
  private readonly sum: number;
  private readonly fetchAndOp: MpiAtomicOps["fetchAndOp"];
  private readonly compareAndSwap: MpiAtomicOps["compareAndSwap"];
  private readonly rgetAccumulate: MpiAtomicOps["rgetAccumulate"];
  private readonly messages: MpiMessages;
  /** Native MPI_Request slots, one per operation slot (`op.index`), and the MPI_Test flag. */
  private readonly requests: number;
  private readonly flag: number;
  private engine: CompletionSink | null = null;
  /** The last remote key found to be this window's (-1n: none yet). */
  private checkedKey = -1n;

  /** Resolves the window's calls once, allocates `maxPending` request slots, reads MPI_TAG_UB. */
  constructor(provider: MpiProvider, maxPending: number) {
    this.provider = provider;
    this.mpi = provider.mpi;
    this.window = provider.window;
    this.rank = provider.rank;
    this.size = provider.size;
    const ops = this.mpi.rmaOps(); // resolved once: each operation is a plain call
    this.byte = ops.byte;
    this.put = ops.put;
    this.get = ops.get;
    this.rput = ops.rput;
    this.rget = ops.rget;
    this.flush = ops.flush;
    this.test = ops.test;
    const atomics = this.mpi.atomicOps();
    this.uint64 = atomics.uint64;
    this.sum = atomics.sum;
    this.fetchAndOp = atomics.fetchAndOp;
    this.compareAndSwap = atomics.compareAndSwap;
    this.rgetAccumulate = atomics.rgetAccumulate;
    this.name = mpiEndpointName(provider.rank);
    this.requests = libc.calloc(maxPending * REQUEST_BYTES + 8);
    this.flag = this.requests + maxPending * REQUEST_BYTES;
    try {
      this.messages = new MpiMessages(this.mpi, this.requests);
    } catch (e) {
      libc.free(this.requests);
      throw e;
    }
  }

  /**
   * A message's peer is a rank of the job (a receive's may be ANY_SOURCE); its tag at most
   * MPI_TAG_UB; a receive's mask 0 (exact tag) or ANY_TAG (MPI_ANY_TAG), nothing between.
   */
  resolvePeer(kind: OperationKind, peer: MpiRank | typeof ANY_SOURCE, tag: number, ignore: number): void {
    if (peer !== ANY_SOURCE || kind === "send") this.checkRank(kind, peer);
    if (ignore === ANY_TAG) return;
    if (ignore !== 0) {
      throw new AllocToolsError("NOT_SUPPORTED", `${kind}: MPI matches a tag exactly or not at all (MPI_ANY_TAG), so options.ignore must be 0 or ANY_TAG, ` +
        `got 0x${ignore.toString(16)}`);
    }
    const upper = this.messages.tagUpperBound;
    if (tag > upper) throw new AllocToolsRangeError(`${kind}: tag ${tag} is above this MPI's MPI_TAG_UB (${upper}): MPI tags are ints in [0, MPI_TAG_UB]`);
  }

  bind(engine: CompletionSink): void {
    this.engine = engine;
    this.messages.bind(engine);
  }

  /** The rank named by `peerName` (an MpiEndpoint's name); RangeError for another kind of name or a rank outside the job. */
  insert(peerName: Uint8Array): MpiRank {
    if (!(peerName instanceof Uint8Array) || peerName.length !== NAME_BYTES || NAME_MAGIC.some((b, i) => peerName[i] !== b)) {
      throw new AllocToolsRangeError(`insert takes an MpiEndpoint name (${NAME_BYTES} bytes starting "ATMP"), got ${describeName(peerName)}`);
    }
    const rank = new DataView(peerName.buffer, peerName.byteOffset, NAME_BYTES).getUint32(4, true);
    if (rank >= this.size) throw new AllocToolsRangeError(`the name is rank ${rank}'s, but this job has ranks 0..${this.size - 1}`);
    return rank;
  }

  /** MPI reads and writes the origin buffer itself: any region of this library will do. */
  checkLocal(): void {}

  /**
   * The provider is open, the count fits an int, the rank is in the job, the key is this window's;
   * a compareSwap is not to this very rank.
   */
  resolveRemote(kind: OperationKind, peer: MpiRank, remote: RemoteRegion, length: number): number {
    this.provider.assertOpen();
    if (length > MAX_COUNT) throw new AllocToolsRangeError(`${kind} of ${length} bytes is above MPI's int count limit (${MAX_COUNT})`);
    this.checkRank(kind, peer);
    if (kind === "compareSwap" && peer === this.rank) {
      throw new AllocToolsError("NOT_SUPPORTED", `compareSwap on rank ${peer}'s own memory: Open MPI 4.1's osc/rdma crashes (SIGSEGV in ` +
        "mca_btl_vader_emu_acswap) on an MPI_Compare_and_swap to the calling rank; keep the word on another rank, or use fetchAdd");
    }
    // The last key that passed is remembered: comparing bigints allocates nothing, shifting does.
    if (remote.key !== this.checkedKey) {
      if (!this.provider.ownsKey(remote.key)) {
        throw new AllocToolsRangeError(`${kind}: key ${remote.key} belongs to MPI window ${remote.key >> 32n}, this endpoint's window is ${this.provider.windowNumber}`);
      }
      this.checkedKey = remote.key;
    }
    return 0;
  }

  /**
   * A sync write, read, fetchAdd or compareSwap, run to its end: the call, then MPI_Win_flush(rank).
   * DONE, or FAILED with the failing call's error.
   */
  finishNow(op: Operation): Posted {
    const kind = op.kind;
    if (kind === "write" || kind === "read") return this.transferNow(op, kind === "write");
    return kind === "fetchAdd" ? this.fetchAddNow(op) : this.postCompareSwap(op);
  }

  /** RMA and atomics on the window (see the file header); messages through MpiMessages. */
  post(op: Operation): Posted {
    const kind = op.kind;
    if (kind === "write" || kind === "read") return this.postTransfer(op, kind === "write");
    if (kind === "fetchAdd") return this.postFetchAdd(op);
    if (kind === "compareSwap") return this.postCompareSwap(op);
    return this.messages.post(op);
  }

  /**
   * MPI_Test of every posted request (a write and a fetchAdd are done after MPI_Win_flush(rank)),
   * then one probe per waiting receive. With nothing posted, lets MPI progress.
   */
  poll(): number {
    const engine = this.engine!;
    const active = engine.active;
    if (active.length === 0) {
      this.mpi.nudge(this.flag); // a target whose transport needs MPI to progress (vader's emulated atomics)
      return 0;
    }
    let completed = 0;
    for (let i = active.length - 1; i >= 0; i--) {
      const op = active[i]!;
      const kind = op.kind;
      completed += kind === "write" || kind === "read" || kind === "fetchAdd" ? this.testOneSided(op) : this.messages.testOne(op);
    }
    return completed + this.messages.probeAll();
  }

  /** Close is about to drain: every operation in flight on the window completes with MPI_Win_flush_all. */
  quiesce(): void {
    this.mpi.flushAll(this.window, "closing the endpoint");
  }

  /** A receive still looking for its message ends; MPI cannot cancel RMA, atomics or sends: the drain waits for them. */
  cancel(op: Operation): void {
    if (op.kind === "recv" || op.kind === "receive") this.messages.cancel(op);
  }

  functionName(kind: OperationKind): string {
    switch (kind) {
      case "write": return "MPI_Put";
      case "read": return "MPI_Get";
      case "send": return "MPI_Isend";
      case "fetchAdd": return "MPI_Fetch_and_op";
      case "compareSwap": return "MPI_Compare_and_swap";
      default: return "MPI_Improbe";
    }
  }

  describePeer(peer: number | bigint): string {
    return `rank ${peer} of ${this.size}`;
  }

  holdsOthers(): boolean {
    return false;
  }

  /** Frees the request slots, unless MPI still holds a request (then they stay, and so do the pins). */
  close(): boolean {
    if (this.engine!.active.length > 0) return false;
    this.messages.close();
    libc.free(this.requests);
    return true;
  }

  /** Sync: MPI_Put/MPI_Get + MPI_Win_flush, done on return. Otherwise MPI_Rput/MPI_Rget. */
  private postTransfer(op: Operation, write: boolean): Posted {
    return op.wait === Wait.Sync ? this.transferNow(op, write) : this.postRequest(op, write);
  }

  /** MPI_Put/MPI_Get, then MPI_Win_flush(rank): DONE, or FAILED with the call's error. */
  private transferNow(op: Operation, write: boolean): Posted {
    const byte = this.byte as Pointer;
    const code = (write ? this.put : this.get)(op.local as Pointer, op.length, byte, op.peer as number, op.remoteAddress, op.length, byte, this.window as Pointer);
    return code === 0 ? this.flushed(op) : this.refuse(op, write ? "MPI_Put" : "MPI_Get", code);
  }

  /** MPI_Rput/MPI_Rget into the operation's request slot: POSTED, or FAILED. */
  private postRequest(op: Operation, write: boolean): Posted {
    const byte = this.byte as Pointer;
    const window = this.window as Pointer;
    const rank = op.peer as number;
    const request = this.request(op);
    const code = write
      ? this.rput(op.local as Pointer, op.length, byte, rank, op.remoteAddress, op.length, byte, window, request)
      : this.rget(op.local as Pointer, op.length, byte, rank, op.remoteAddress, op.length, byte, window, request);
    return code === 0 ? Posted.POSTED : this.refuse(op, write ? "MPI_Rput" : "MPI_Rget", code);
  }

  /** Sync: MPI_Fetch_and_op + MPI_Win_flush, done on return. Otherwise MPI_Rget_accumulate, tested on each turn. */
  private postFetchAdd(op: Operation): Posted {
    if (op.wait === Wait.Sync) return this.fetchAddNow(op);
    const uint64 = this.uint64 as Pointer;
    const code = this.rgetAccumulate(op.local as Pointer, 1, uint64, (op.local + RESULT_OFFSET) as Pointer, 1, uint64, op.peer as number, op.remoteAddress, 1,
      uint64, this.sum as Pointer, this.window as Pointer, this.request(op));
    return code === 0 ? Posted.POSTED : this.refuse(op, "MPI_Rget_accumulate", code);
  }

  /** MPI_Fetch_and_op, then MPI_Win_flush(rank): DONE, or FAILED. */
  private fetchAddNow(op: Operation): Posted {
    const code = this.fetchAndOp(op.local as Pointer, (op.local + RESULT_OFFSET) as Pointer, this.uint64 as Pointer, op.peer as number, op.remoteAddress,
      this.sum as Pointer, this.window as Pointer);
    return code === 0 ? this.flushed(op) : this.refuse(op, "MPI_Fetch_and_op", code);
  }

  /** MPI_Compare_and_swap + MPI_Win_flush in every form: MPI has no request-based compare-and-swap. */
  private postCompareSwap(op: Operation): Posted {
    const local = op.local;
    const code = this.compareAndSwap(local as Pointer, (local + COMPARE_OFFSET) as Pointer, (local + RESULT_OFFSET) as Pointer, this.uint64 as Pointer,
      op.peer as number, op.remoteAddress, this.window as Pointer);
    return code === 0 ? this.flushed(op) : this.refuse(op, "MPI_Compare_and_swap", code);
  }

  /** MPI_Win_flush(rank) after a sync operation: DONE, or FAILED with the flush's error. */
  private flushed(op: Operation): Posted {
    const code = this.flush(op.peer as number, this.window as Pointer);
    return code === 0 ? Posted.DONE : this.refuse(op, "MPI_Win_flush", code);
  }

  /** MPI_Test of a posted write, read or fetchAdd; reports it when done (after MPI_Win_flush for a write or fetchAdd). Returns 1 for a success. */
  private testOneSided(op: Operation): number {
    const engine = this.engine!;
    const code = this.test(this.request(op), this.flag as Pointer, null);
    if (code !== 0) {
      engine.complete(op, this.error(op, op.kind === "write" ? "MPI_Rput" : op.kind === "read" ? "MPI_Rget" : "MPI_Rget_accumulate", code));
      return 0;
    }
    if (read.i32(this.flag as Pointer, 0) === 0) return 0;
    let error: unknown = null;
    if (op.kind !== "read") {
      const flushed = this.flush(op.peer as number, this.window as Pointer);
      if (flushed !== 0) error = this.error(op, "MPI_Win_flush", flushed);
    }
    engine.complete(op, error);
    return error === null ? 1 : 0;
  }

  private checkRank(kind: OperationKind, peer: number): void {
    if (!Number.isInteger(peer) || peer < 0 || peer >= this.size) {
      throw new AllocToolsRangeError(`${kind}: rank ${String(peer)} is not in this job (ranks 0..${this.size - 1})`);
    }
  }

  private request(op: Operation): Pointer {
    return (this.requests + op.index * REQUEST_BYTES) as Pointer;
  }

  private refuse(op: Operation, fn: string, code: number): Posted {
    op.error = this.error(op, fn, code);
    return Posted.FAILED;
  }

  private error(op: Operation, fn: string, code: number): Error {
    return this.mpi.error(fn, code, `${op.length} bytes at rank ${String(op.peer)} address 0x${op.remoteAddress.toString(16)} key ${String(op.key)}`);
  }
}

function describeName(name: unknown): string {
  if (!(name instanceof Uint8Array)) return typeof name;
  return `${name.length} bytes`;
}
