// The operations of one endpoint, in preallocated slots: posting, completing and asking about an
// operation allocates nothing. An operation's id is its slot index plus a generation, so an id
// that was retired and whose slot was reused is told apart from the new one.
//
// An operation has two sides that end separately:
// - transport: from post (or queueing on a retry) until the transport no longer touches its
//   memory (completion, error completion, close). Its local region is pinned (`inFlight`)
//   meanwhile, and the operation is on the table's `active` list.
// - caller: from post until the caller has its outcome (promise settled, writeSync returned,
//   completed(id) answered). A timeout ends this side early; the transport side may go on.
// The slot is free once both have ended.
import { endOperation, type MemoryRegionImpl } from "../memory/region.ts";
import type { RegistrationCache } from "../cache/registration-cache.ts";
import type { OperationKind, RmaOperation } from "./rma-errors.ts";
import { AllocToolsError, AllocToolsRangeError } from "../errors.ts";

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

/**
 * One slot. Every field is set in the constructor and reused (one shape for every transport and
 * kind). The transport reads what it posts from here and keeps its own per-operation state in
 * `request`, `epoch` and `flags`.
 */
export class Operation {
  id = 0;
  generation = 0;
  kind: OperationKind = "write";
  wait: Wait = Wait.Promise;
  outcome: Outcome = Outcome.Done;
  error: unknown = null;
  /** The transport may still touch the local memory. */
  inTransport = false;
  /** Waiting in the engine's retry queue (in transport, not yet accepted by it). */
  queued = false;
  /** The caller has the outcome; the id is no longer valid. */
  retired = true;
  /** Position in the table's active list while in transport, else -1. */
  activeAt = -1;
  deadline = 0;
  /** Address of the local bytes (0 when the operation has none). */
  local = 0;
  length = 0;
  /** The peer as the transport's calls take it (fi_addr_t, peer index, rank). */
  peer: number | bigint = 0;
  /**
   * The target's u64 arguments as passed to the transport: a number when the value is exact in a
   * double (a bun:ffi call with a BigInt argument costs ~100 ns more per argument), else the BigInt.
   */
  remoteAddress: number | bigint = 0;
  key: number | bigint = 0;
  /** What the transport resolved the remote key to (a UCX rkey), 0 where it needs nothing. */
  remoteHandle = 0;
  /** The transport's own state: a native request, a flush epoch, bits. */
  request = 0;
  epoch = 0;
  flags = 0;
  /** An error the transport found while it still holds the operation, reported when it lets go. */
  failure: unknown = null;
  /** A message's tag (send, or a receive's tag to match) and the tag bits a receive ignores. */
  tag = 0;
  ignore = 0;
  /** What a receive got, set by the transport before it reports the operation: source, tag, length. */
  resultSource: number | bigint = 0;
  resultTag = 0;
  resultLength = 0;
  /**
   * Why the engine asked the transport to cancel (close, an abort signal, a receive's deadline):
   * the caller gets this instead of the transport's own "cancelled" error.
   */
  cancelReason: unknown = null;
  /** A `receive`'s pooled region, which its Message keeps once the transport lets go. */
  messageRegion: MemoryRegionImpl | null = null;
  /** A receive's abort signal and the listener the engine added to it. */
  signal: AbortSignal | null = null;
  abortListener: (() => void) | null = null;
  /** The pinned local region, referenced so that it (and its pool) outlive the transfer. */
  region: MemoryRegionImpl | null = null;
  /** The registration cache the region was acquired from for this operation (a plain view), else null. */
  cache: RegistrationCache | null = null;
  resolve: ((value: unknown) => void) | null = null;
  reject: ((error: unknown) => void) | null = null;

  constructor(readonly index: number) {}

  /** What every new operation starts with: its kind and form, pending, no error, its local bytes. */
  begin(kind: OperationKind, wait: Wait, region: MemoryRegionImpl | null, local: number, length: number): void {
    this.kind = kind;
    this.wait = wait;
    this.outcome = Outcome.Pending;
    this.error = null;
    this.failure = null;
    this.region = region;
    this.local = local;
    this.length = length;
  }

  /** A snapshot for errors (the slot itself is reused). */
  describe(): RmaOperation {
    const kind = this.kind;
    if (kind === "send" || kind === "recv" || kind === "receive") return { kind, length: this.length, remoteAddress: 0n, key: 0n, tag: this.tag };
    return { kind, length: this.length, remoteAddress: BigInt(this.remoteAddress), key: BigInt(this.key) };
  }
}

/** The slots of one endpoint and the counts the progress engine reads. */
export class OperationTable {
  /** Every slot, by index. */
  readonly slots: Operation[] = [];
  /** Operations the transport holds, in no order (swap-removed). */
  readonly active: Operation[] = [];
  private readonly free: number[] = [];
  /** Operations whose caller still waits. */
  waiting = 0;

  /** @param maxPending Slots taken at once (in transport or not yet retired) before take() answers BUSY. */
  constructor(private readonly maxPending: number = MAX_OPERATIONS) {
    this.grow(Math.min(INITIAL_SLOTS, maxPending));
  }

  /** Operations the transport holds (pinned), timed-out ones included. */
  get inTransport(): number {
    return this.active.length;
  }

  /**
   * A slot for a new operation, pending for its caller and in transport. The caller pins `region`
   * (`beginOperation`) and the transport fills what it posts.
   */
  take(kind: OperationKind, wait: Wait, region: MemoryRegionImpl | null, local: number, length: number, deadline: number): Operation {
    if (this.free.length === 0) this.makeRoom(kind);
    const op = this.slots[this.free.pop()!]!;
    op.generation = op.generation === MAX_GENERATION ? 1 : op.generation + 1;
    op.id = (op.generation << INDEX_BITS) | op.index;
    op.begin(kind, wait, region, local, length);
    op.inTransport = true;
    op.queued = false;
    op.retired = false;
    op.deadline = deadline;
    op.request = 0;
    op.flags = 0;
    op.cancelReason = null;
    op.activeAt = this.active.length;
    this.active.push(op);
    this.waiting++;
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

  /** The transport is done with `op`: unpin its region, take it off the active list. */
  leaveTransport(op: Operation): void {
    if (!op.inTransport) return;
    op.inTransport = false;
    if (op.region !== null) endOperation(op.region);
    op.region = null;
    const active = this.active;
    const last = active.pop()!;
    if (last !== op) {
      active[op.activeAt] = last;
      last.activeAt = op.activeAt;
    }
    op.activeAt = -1;
    this.release(op);
  }

  /** The caller's outcome is known; a promise caller gets it now, with `value` (and the id retires). */
  settle(op: Operation, error: unknown, value?: unknown): void {
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
    if (error === null) resolve(value);
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
    op.cache = null;
    op.signal = null;
    op.abortListener = null;
    op.messageRegion = null;
    this.free.push(op.index);
  }

  /** Doubles the slots, up to maxPending (then BUSY) and MAX_OPERATIONS (then RangeError). */
  private makeRoom(kind: OperationKind): void {
    const taken = this.slots.length;
    if (taken >= this.maxPending) {
      throw new AllocToolsError("BUSY", `${kind}: ${this.maxPending} operations are in flight or not yet acknowledged with completed(id) on this endpoint (maxPending); complete some first`);
    }
    this.grow(Math.min(taken * 2, this.maxPending));
  }

  private grow(capacity: number): void {
    if (capacity > MAX_OPERATIONS) {
      throw new AllocToolsRangeError(`more than ${MAX_OPERATIONS} operations in flight on one endpoint; wait for some to complete`);
    }
    for (let i = this.slots.length; i < capacity; i++) {
      this.slots.push(new Operation(i));
      this.free.push(i);
    }
  }
}
