// The MPI transport of MpiEndpoint (the adapter contract is lib/engine/transport.ts): RMA on an
// MpiProvider's dynamic window, peers are ranks.
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
import { read, type Pointer } from "bun:ffi";
import type { MpiLibrary, MpiRmaOps } from "../../ffi/mpi.ts";
import * as libc from "../../ffi/libc.ts";
import { AllocToolsRangeError } from "../errors.ts";
import { Wait, type Operation } from "../engine/operation.ts";
import type { RemoteRegion } from "../engine/remote-region.ts";
import type { OperationKind } from "../engine/rma-errors.ts";
import { Posted, type CompletionSink, type Transport } from "../engine/transport.ts";
import type { MpiProvider } from "./mpi-provider.ts";

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

/** MpiEndpoint's adapter over the provider's window. */
export class MpiTransport implements Transport<MpiRank> {
  readonly name: Uint8Array;
  readonly nameKind = "mpi" as const;
  readonly messaging = "tagged messages are not implemented on this transport yet";
  readonly atomics: string = "remote atomics are not implemented on this transport yet";
  readonly finishesAbandoned = true;
  private readonly provider: MpiProvider;
  private readonly mpi: MpiLibrary;
  private readonly window: number;
  private readonly size: number;
  private readonly byte: number;
  private readonly put: MpiRmaOps["put"];
  private readonly get: MpiRmaOps["get"];
  private readonly rput: MpiRmaOps["rput"];
  private readonly rget: MpiRmaOps["rget"];
  private readonly flush: MpiRmaOps["flush"];
  private readonly test: MpiRmaOps["test"];
  /** Native MPI_Request slots, one per operation slot (`op.index`), and the MPI_Test flag. */
  private readonly requests: number;
  private readonly flag: number;
  private engine: CompletionSink | null = null;
  /** The last remote key found to be this window's (-1n: none yet). */
  private checkedKey = -1n;

  /** Resolves the window's calls once and allocates `maxPending` request slots. */
  constructor(provider: MpiProvider, maxPending: number) {
    this.provider = provider;
    this.mpi = provider.mpi;
    this.window = provider.window;
    this.size = provider.size;
    const ops = this.mpi.rmaOps(); // resolved once: each operation is a plain call
    this.byte = ops.byte;
    this.put = ops.put;
    this.get = ops.get;
    this.rput = ops.rput;
    this.rget = ops.rget;
    this.flush = ops.flush;
    this.test = ops.test;
    this.name = mpiEndpointName(provider.rank);
    this.requests = libc.calloc(maxPending * REQUEST_BYTES + 8);
    this.flag = this.requests + maxPending * REQUEST_BYTES;
  }

  resolvePeer(): void {}

  bind(engine: CompletionSink): void {
    this.engine = engine;
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

  /** The provider is open, the count fits an int, the rank is in the job, the key is this window's. */
  resolveRemote(kind: OperationKind, peer: MpiRank, remote: RemoteRegion, length: number): number {
    this.provider.assertOpen();
    if (length > MAX_COUNT) throw new AllocToolsRangeError(`${kind} of ${length} bytes is above MPI's int count limit (${MAX_COUNT})`);
    if (!Number.isInteger(peer) || peer < 0 || peer >= this.size) {
      throw new AllocToolsRangeError(`${kind}: rank ${String(peer)} is not in this job (ranks 0..${this.size - 1})`);
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

  /** Sync: MPI_Put/MPI_Get + MPI_Win_flush, done on return. Otherwise MPI_Rput/MPI_Rget. */
  post(op: Operation): Posted {
    const write = op.kind === "write";
    const window = this.window as Pointer;
    const byte = this.byte as Pointer;
    const rank = op.peer as number;
    if (op.wait === Wait.Sync) {
      const transfer = write ? this.put : this.get;
      const code = transfer(op.local as Pointer, op.length, byte, rank, op.remoteAddress, op.length, byte, window);
      if (code !== 0) return this.refuse(op, write ? "MPI_Put" : "MPI_Get", code);
      const flushed = this.flush(rank, window);
      return flushed === 0 ? Posted.DONE : this.refuse(op, "MPI_Win_flush", flushed);
    }
    const request = (this.requests + op.index * REQUEST_BYTES) as Pointer;
    const code = write
      ? this.rput(op.local as Pointer, op.length, byte, rank, op.remoteAddress, op.length, byte, window, request)
      : this.rget(op.local as Pointer, op.length, byte, rank, op.remoteAddress, op.length, byte, window, request);
    return code === 0 ? Posted.POSTED : this.refuse(op, write ? "MPI_Rput" : "MPI_Rget", code);
  }

  /** MPI_Test of every posted request; a write is done after MPI_Win_flush(rank). With nothing posted, lets MPI progress. */
  poll(): number {
    const engine = this.engine!;
    const active = engine.active;
    if (active.length === 0) {
      this.mpi.nudge(this.flag); // a target whose transport needs MPI to progress
      return 0;
    }
    let completed = 0;
    for (let i = active.length - 1; i >= 0; i--) {
      const op = active[i]!;
      const request = (this.requests + op.index * REQUEST_BYTES) as Pointer;
      const code = this.test(request, this.flag as Pointer, null);
      if (code !== 0) {
        engine.complete(op, this.error(op, op.kind === "write" ? "MPI_Rput" : "MPI_Rget", code));
        continue;
      }
      if (read.i32(this.flag as Pointer, 0) === 0) continue;
      let error: unknown = null;
      if (op.kind === "write") {
        const flushed = this.flush(op.peer as number, this.window as Pointer);
        if (flushed !== 0) error = this.error(op, "MPI_Win_flush", flushed);
      }
      if (error === null) completed++;
      engine.complete(op, error);
    }
    return completed;
  }

  /** Close is about to drain: every operation in flight completes with MPI_Win_flush_all. */
  quiesce(): void {
    this.mpi.flushAll(this.window, "closing the endpoint");
  }

  /** MPI cannot cancel RMA operations: the drain waits for them (quiesce flushed them). */
  cancel(): void {}

  functionName(kind: OperationKind): string {
    return kind === "write" ? "MPI_Put" : "MPI_Get";
  }

  holdsOthers(): boolean {
    return false;
  }

  /** Frees the request slots, unless MPI still holds a request (then they stay, and so do the pins). */
  close(): boolean {
    if (this.engine!.active.length > 0) return false;
    libc.free(this.requests);
    return true;
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
