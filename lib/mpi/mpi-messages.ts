// Tagged messages of an MpiEndpoint, for MpiTransport (the wire format is in mpi-transport.ts's
// header and docs/messaging.md).
//
// Every receive is a matched probe: MPI_Improbe finds a matching message and claims it (no other
// receive, of this endpoint or of another in the process, can take it), MPI_Get_count gives its
// length, and MPI_Imrecv receives exactly that many bytes. A receive is never posted to MPI with a
// count smaller than the message it may match, because Open MPI 4.1.4's ob1 pml over vader with
// CMA writes a whole rendezvous message (above the 4 KiB eager limit) through the receive buffer
// and past it, even though it reports MPI_ERR_TRUNCATE (measured here: an MPI_Recv or MPI_Mrecv of
// 10 bytes of a 4100-byte message wrote all 4100). Knowing the length first also makes truncation
// exact: a message longer than the receive is received whole into an overflow sink (address space
// reserved, never committed) and the receive fails with AllocToolsError TRUNCATED naming both
// lengths; the receive's own memory is left as it was.
//
// - Receives are probed in the order they were posted, one probe per receive per progress turn; a
//   receive is not probed in a turn after an earlier one whose source and tag overlap its own found
//   nothing, so a message both could take goes to the one posted first, as MPI's posted receives
//   would.
// - A receive that is still probing holds nothing in MPI: cancelling it (abort signal, deadline,
//   close) ends it on the next turn. Once its message is claimed it completes.
// - Sends are MPI_Isend, then one MPI_Test at once (an eager message is done there), then MPI_Test
//   on each turn.
import { read, type Pointer } from "bun:ffi";
import { MPI, MPI_STATUS, type MpiLibrary, type MpiMessageOps } from "../../ffi/mpi.ts";
import * as libc from "../../ffi/libc.ts";
import { AllocToolsError, AllocToolsRangeError } from "../errors.ts";
import type { Operation } from "../engine/operation.ts";
import { ANY_SOURCE } from "../engine/message.ts";
import { Posted, type CompletionSink } from "../engine/transport.ts";

/** A receive's state (op.flags). */
const PROBING = 1;
/** Cancelled while probing: reported on the next turn. */
const CANCELLED = 2;
/** MPI_Imrecv into the receive's memory. */
const RECEIVING = 3;
/** MPI_Imrecv into the overflow sink (a truncated message, or no pool memory): fails with op.failure. */
const DISCARDING = 4;

/** MPI counts are C ints. */
const MAX_COUNT = 0x7fff_ffff;
/** Bytes of the native block: MPI_Status, then the MPI_Message slot, the count and the flag. */
const MESSAGE_OFFSET = MPI_STATUS.size;
const COUNT_OFFSET = MESSAGE_OFFSET + MPI.HANDLE_SIZE;
const FLAG_OFFSET = COUNT_OFFSET + 4;
const BLOCK_BYTES = FLAG_OFFSET + 4;

/** Sends, matched-probe receives and their completions for one MpiTransport. */
export class MpiMessages {
  /** MPI_TAG_UB of MPI_COMM_WORLD: the largest tag. */
  readonly tagUpperBound: number;
  private readonly mpi: MpiLibrary;
  private readonly byte: number;
  private readonly world: number;
  private readonly isend: MpiMessageOps["isend"];
  private readonly improbe: MpiMessageOps["improbe"];
  private readonly imrecv: MpiMessageOps["imrecv"];
  private readonly getCount: MpiMessageOps["getCount"];
  private readonly test: MpiMessageOps["test"];
  /** The transport's MPI_Request slots, one per operation slot (`op.index`). */
  private readonly requests: number;
  private readonly block: number;
  private readonly status: number;
  private readonly message: number;
  private readonly count: number;
  private readonly flag: number;
  /** Receives still probing, in post order: the first `probingCount` entries. */
  private readonly probing: Operation[] = [];
  private probingCount = 0;
  /** Receives whose probe found nothing in the current turn: the first `missedCount` entries. */
  private readonly missed: Operation[] = [];
  private missedCount = 0;
  private engine: CompletionSink | null = null;

  /** Resolves the calls once, reads MPI_TAG_UB, and allocates the status block. */
  constructor(mpi: MpiLibrary, requests: number) {
    this.mpi = mpi;
    this.requests = requests;
    const ops = mpi.messageOps();
    this.byte = ops.byte;
    this.world = ops.world;
    this.isend = ops.isend;
    this.improbe = ops.improbe;
    this.imrecv = ops.imrecv;
    this.getCount = ops.getCount;
    this.test = ops.test;
    this.tagUpperBound = mpi.tagUpperBound();
    this.block = libc.calloc(BLOCK_BYTES);
    this.status = this.block;
    this.message = this.block + MESSAGE_OFFSET;
    this.count = this.block + COUNT_OFFSET;
    this.flag = this.block + FLAG_OFFSET;
  }

  bind(engine: CompletionSink): void {
    this.engine = engine;
  }

  /** Posts a send, or starts a receive's probing (probed at once when no earlier receive could take its message). */
  post(op: Operation): Posted {
    if (op.kind === "send") return this.send(op);
    op.flags = PROBING;
    if (!this.overlapsAny(op, this.probing, this.probingCount)) {
      const found = this.probe(op);
      if (found < 0) return Posted.FAILED;
      if (found > 0) return this.claim(op);
    }
    this.probing[this.probingCount++] = op;
    return Posted.POSTED;
  }

  /** MPI_Test of a send or of a claimed receive; reports it when done. Returns 1 for a success. */
  testOne(op: Operation): number {
    const receiving = op.kind !== "send";
    if (receiving && op.flags !== RECEIVING && op.flags !== DISCARDING) return 0; // still probing: see probeAll()
    const code = this.test(this.request(op), this.flag as Pointer, receiving ? (this.status as Pointer) : null);
    if (code !== MPI.SUCCESS) {
      this.engine!.complete(op, this.error(op, "MPI_Test", code));
      return 0;
    }
    if (read.i32(this.flag as Pointer, 0) === 0) return 0;
    const failure = receiving ? this.received(op) : null;
    this.engine!.complete(op, failure);
    return failure === null ? 1 : 0;
  }

  /**
   * One probe per probing receive, in post order (see the file header); claims what is found.
   * Cancelled receives end here. Returns the receives that completed successfully.
   */
  probeAll(): number {
    const engine = this.engine!;
    const probing = this.probing;
    let completed = 0;
    let kept = 0;
    this.missedCount = 0;
    for (let i = 0; i < this.probingCount; i++) {
      const op = probing[i]!;
      if (!op.inTransport) continue;
      if (op.flags === CANCELLED) {
        engine.complete(op, cancelledError());
        continue;
      }
      if (this.overlapsAny(op, this.missed, this.missedCount)) {
        probing[kept++] = op;
        continue;
      }
      const found = this.probe(op);
      if (found === 0) {
        this.missed[this.missedCount++] = op;
        probing[kept++] = op;
      } else if (found < 0) {
        engine.complete(op, op.error);
      } else {
        const posted = this.claim(op);
        if (posted === Posted.DONE) {
          if (op.failure === null) completed++;
          engine.complete(op, op.failure);
        } else if (posted === Posted.FAILED) {
          engine.complete(op, op.error);
        }
      }
    }
    this.probingCount = kept;
    return completed;
  }

  /** A receive still probing ends on the next turn; one whose message is claimed, and a send, complete as they will. */
  cancel(op: Operation): void {
    if (op.kind !== "send" && op.flags === PROBING) op.flags = CANCELLED;
  }

  /** Frees the status block (nothing native uses it any more). */
  close(): void {
    libc.free(this.block);
    this.probingCount = 0;
  }

  /** MPI_Isend, then one MPI_Test: DONE when MPI let go of the buffer already. */
  private send(op: Operation): Posted {
    if (op.length > MAX_COUNT) {
      op.error = new AllocToolsRangeError(`send of ${op.length} bytes is above MPI's int count limit (${MAX_COUNT})`);
      return Posted.FAILED;
    }
    const request = this.request(op);
    const code = this.isend(op.local as Pointer, op.length, this.byte as Pointer, op.peer as number, op.tag, this.world as Pointer, request);
    if (code !== MPI.SUCCESS) return this.refuse(op, "MPI_Isend", code);
    const tested = this.test(request, this.flag as Pointer, null);
    if (tested !== MPI.SUCCESS) return this.refuse(op, "MPI_Test", tested);
    return read.i32(this.flag as Pointer, 0) !== 0 ? Posted.DONE : Posted.POSTED;
  }

  /** MPI_Improbe for `op`'s source and tag: 1 found (claimed, status filled), 0 nothing yet, -1 failed (op.error). */
  private probe(op: Operation): number {
    const tag = op.ignore !== 0 ? MPI.ANY_TAG : op.tag;
    const code = this.improbe(op.peer as number, tag, this.world as Pointer, this.flag as Pointer, this.message as Pointer, this.status as Pointer);
    if (code !== MPI.SUCCESS) {
      op.error = this.error(op, "MPI_Improbe", code);
      return -1;
    }
    return read.i32(this.flag as Pointer, 0);
  }

  /**
   * The probed message's source, tag and length into `op`, then MPI_Imrecv of all of it: into the
   * receive's memory when it fits, into the overflow sink when not (TRUNCATED, or the pool refused a
   * `receive` its region). DONE when it is received already.
   */
  private claim(op: Operation): Posted {
    const code = this.getCount(this.status as Pointer, this.byte as Pointer, this.count as Pointer);
    if (code !== MPI.SUCCESS) return this.refuse(op, "MPI_Get_count", code);
    const length = read.i32(this.count as Pointer, 0);
    op.resultSource = read.i32(this.status as Pointer, MPI_STATUS.MPI_SOURCE);
    op.resultTag = read.i32(this.status as Pointer, MPI_STATUS.MPI_TAG);
    op.resultLength = length;
    let fits: boolean;
    if (op.kind === "receive") {
      fits = this.engine!.bufferFor(op, length);
    } else {
      fits = length <= op.length;
      if (!fits) op.failure = new AllocToolsError("TRUNCATED", `recv: a message of ${length} bytes from rank ${op.resultSource} (tag ${op.resultTag}) is longer than the receive's ${op.length} bytes; it was discarded and nothing was written to the receive's memory`);
    }
    op.flags = fits ? RECEIVING : DISCARDING;
    const request = this.request(op);
    const received = this.imrecv((fits ? op.local : overflowSink()) as Pointer, length, this.byte as Pointer, this.message as Pointer, request);
    if (received !== MPI.SUCCESS) return this.refuse(op, "MPI_Imrecv", received);
    const tested = this.test(request, this.flag as Pointer, this.status as Pointer);
    if (tested !== MPI.SUCCESS) return this.refuse(op, "MPI_Test", tested);
    if (read.i32(this.flag as Pointer, 0) === 0) return Posted.POSTED;
    this.received(op);
    return Posted.DONE;
  }

  /** A claimed receive's MPI_Imrecv completed: its failure (null on success). */
  private received(op: Operation): unknown {
    if (op.flags === DISCARDING) {
      const length = op.resultLength;
      if (length > 0) libc.madvise(overflowSink(), Math.ceil(length / libc.pageSize) * libc.pageSize, libc.MADV_DONTNEED);
      return op.failure;
    }
    return null;
  }

  /** Whether a message `op` may take could also be taken by one of the first `count` receives of `others`. */
  private overlapsAny(op: Operation, others: Operation[], count: number): boolean {
    for (let i = 0; i < count; i++) {
      const other = others[i]!;
      if (other.flags === CANCELLED) continue; // ends on the next turn, takes nothing
      const sources = op.peer === ANY_SOURCE || other.peer === ANY_SOURCE || op.peer === other.peer;
      if (sources && (op.ignore !== 0 || other.ignore !== 0 || op.tag === other.tag)) return true;
    }
    return false;
  }

  private request(op: Operation): Pointer {
    return (this.requests + op.index * MPI.HANDLE_SIZE) as Pointer;
  }

  private refuse(op: Operation, fn: string, code: number): Posted {
    op.error = this.error(op, fn, code);
    return Posted.FAILED;
  }

  private error(op: Operation, fn: string, code: number): Error {
    const who = op.kind === "send" ? `to rank ${String(op.peer)}` : `from ${op.peer === ANY_SOURCE ? "any rank" : `rank ${String(op.peer)}`}`;
    return this.mpi.error(fn, code, `${op.kind} of ${op.length} bytes ${who}, tag ${op.ignore !== 0 ? "any" : op.tag}`);
  }
}

function cancelledError(): AllocToolsError {
  return new AllocToolsError("ENDPOINT_CLOSED", "the receive was cancelled before a message matched");
}

/** Address space of the overflow sink: an int count's worth, the longest MPI message. */
const SINK_BYTES = 2 ** 31;
let sink = 0;

/**
 * Where messages that are not kept land (see the file header): reserved once per thread, never
 * committed; the pages a message touched are given back after it (MADV_DONTNEED).
 */
function overflowSink(): number {
  if (sink === 0) sink = libc.mmap(SINK_BYTES, libc.MAP_NORESERVE);
  return sink;
}
