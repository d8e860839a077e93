// The operations of one Endpoint, in preallocated slots: posting, completing and asking about an
// operation allocates nothing. An operation's id is its slot index plus a generation, so an id
// that was retired and whose slot was reused is told apart from the new one.
//
// An operation has two sides that end separately:
// - transport: from post (or queueing on EAGAIN) until the provider no longer touches its memory
//   (completion, error completion, close). Its local region is pinned (`inFlight`) meanwhile.
// - caller: from post until the caller has its outcome (promise settled, writeSync returned,
//   completed(id) answered). A timeout ends this side early; the transport side may go on.
// The slot is free once both have ended.
import { endOperation, type MemoryRegionImpl } from "../memory/region.ts";
import type { RegistrationCache } from "../cache/registration-cache.ts";
import type { RemoteRegion } from "./remote-region.ts";
import type { RmaKind, RmaOperation } from "./rma-errors.ts";
import { AllocToolsRangeError } from "../errors.ts";

/** How the caller waits. */
export const Wait = { Promise: 0, Sync: 1, Post: 2 } as const;
export type Wait = (typeof Wait)[keyof typeof Wait];

/** The caller's side. */
export const Outcome = { Pending: 0, Done: 1, Failed: 2 } as const;
export type Outcome = (typeof Outcome)[keyof typeof Outcome];

const EXACT_LIMIT = BigInt(Number.MAX_SAFE_INTEGER);

/** A u64 argument for bun:ffi: a number when exact, else the BigInt itself. */
export function argument(value: bigint): number | bigint {
  return value <= EXACT_LIMIT ? Number(value) : value;
}

/** Bits of an id that name the slot; the rest, below 2^31, are the slot's generation. */
const INDEX_BITS = 16;
const INDEX_MASK = (1 << INDEX_BITS) - 1;
const MAX_GENERATION = 0x7fff;
/** Slots at first; the table doubles when they are all taken (allocation only then). */
const INITIAL_SLOTS = 64;
/** Capacity: 2^16 operations in flight per endpoint, so that index and generation fit 31 bits. */
export const MAX_OPERATIONS = 1 << INDEX_BITS;

/** One slot. Fields are set in the constructor and reused (monomorphic). */
export class Operation {
  id = 0;
  generation = 0;
  kind: RmaKind = "write";
  wait: Wait = Wait.Promise;
  outcome: Outcome = Outcome.Done;
  error: unknown = null;
  /** The transport may still touch the local memory. */
  inTransport = false;
  /** Waiting in the endpoint's EAGAIN queue (in transport, not yet accepted by the provider). */
  queued = false;
  /** The caller has the outcome; the id is no longer valid. */
  retired = true;
  local = 0;
  length = 0;
  /**
   * The u64 arguments of fi_write/fi_read as passed: a number when the value is exact in a double
   * (a bun:ffi call with a BigInt argument costs ~100 ns more per argument), else the BigInt.
   */
  desc: number | bigint = 0;
  peer: number | bigint = 0;
  remoteAddress: number | bigint = 0;
  key: number | bigint = 0;
  deadline = 0;
  /** The pinned local region, referenced so that it (and its pool) outlive the transfer. */
  region: MemoryRegionImpl | null = null;
  /** The registration cache the region was acquired from for this operation (a plain view), else null. */
  cache: RegistrationCache | null = null;
  resolve: ((value: void) => void) | null = null;
  reject: ((error: unknown) => void) | null = null;

  constructor(readonly index: number) {}

  /** A snapshot for errors (the slot itself is reused). */
  describe(): RmaOperation {
    return { kind: this.kind, length: this.length, remoteAddress: BigInt(this.remoteAddress), key: BigInt(this.key) };
  }
}

/** The slots of one endpoint and the counts the progress engine reads. */
export class OperationTable {
  /** Every slot, by index. */
  readonly slots: Operation[] = [];
  private readonly free: number[] = [];
  /** Operations whose caller still waits. */
  waiting = 0;
  /** Operations the transport holds (pinned), timed-out ones included. */
  inTransport = 0;

  constructor() {
    this.grow(INITIAL_SLOTS);
  }

  /** A slot for a new operation, in transport and pinned by the caller (`region.inFlight++`). */
  take(kind: RmaKind, wait: Wait, region: MemoryRegionImpl, local: number, length: number, peer: bigint,
       target: RemoteRegion, deadline: number): Operation {
    if (this.free.length === 0) this.grow(this.slots.length * 2);
    const op = this.slots[this.free.pop()!]!;
    op.generation = op.generation === MAX_GENERATION ? 1 : op.generation + 1;
    op.id = (op.generation << INDEX_BITS) | op.index;
    op.kind = kind;
    op.wait = wait;
    op.outcome = Outcome.Pending;
    op.error = null;
    op.inTransport = true;
    op.queued = false;
    op.retired = false;
    op.local = local;
    op.length = length;
    op.desc = argument(region.localKey);
    op.peer = argument(peer);
    op.remoteAddress = argument(target.address);
    op.key = argument(target.key);
    op.deadline = deadline;
    op.region = region;
    this.waiting++;
    this.inTransport++;
    return op;
  }

  /** The operation of a caller's id, or null if unknown or retired. */
  byId(id: number): Operation | null {
    if (!Number.isInteger(id) || id <= 0) return null;
    const op = this.slots[id & INDEX_MASK];
    return op !== undefined && op.id === id && !op.retired ? op : null;
  }

  /** The operation a completion names, or null if the transport no longer holds it. */
  inTransportById(id: number): Operation | null {
    const op = this.slots[id & INDEX_MASK];
    return op !== undefined && op.id === id && op.inTransport ? op : null;
  }

  /** The transport is done with `op`: unpin its region. */
  leaveTransport(op: Operation): void {
    if (!op.inTransport) return;
    op.inTransport = false;
    endOperation(op.region!);
    op.region = null;
    this.inTransport--;
    this.release(op);
  }

  /** The caller's outcome is known; a promise caller gets it now (and the id retires). */
  settle(op: Operation, error: unknown): void {
    if (op.outcome !== Outcome.Pending) return;
    op.outcome = error === null ? Outcome.Done : Outcome.Failed;
    op.error = error;
    this.waiting--;
    const resolve = op.resolve;
    const reject = op.reject;
    if (resolve === null || reject === null) return; // sync, post, or a promise still spinning
    op.resolve = null;
    op.reject = null;
    this.retire(op);
    if (error === null) resolve();
    else reject(error);
  }

  /** The caller has the outcome: the id is no longer valid. */
  retire(op: Operation): void {
    if (op.retired) return;
    op.retired = true;
    this.release(op);
  }

  private release(op: Operation): void {
    if (op.inTransport || !op.retired) return;
    op.error = null;
    this.free.push(op.index);
  }

  private grow(capacity: number): void {
    if (capacity > MAX_OPERATIONS) {
      throw new AllocToolsRangeError(`more than ${MAX_OPERATIONS} RMA operations in flight on one endpoint; wait for some to complete`);
    }
    for (let i = this.slots.length; i < capacity; i++) {
      this.slots.push(new Operation(i));
      this.free.push(i);
    }
  }
}
