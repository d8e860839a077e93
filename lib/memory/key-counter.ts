// The source of requested keys of a provider, in shared memory: a pool shared across Workers
// registers blocks from several threads, and libfabric refuses a key already used in the domain
// (-FI_ENOKEY). Registrations are rare, so a 64-bit CAS (~130 ns) costs nothing that matters.
import { AllocToolsError } from "../errors.ts";

const NEXT = 0;
const CLOSED = 1;

export class SharedKeyCounter {
  /** Post this to a Worker (inside a pool handle) to draw from the same counter. */
  readonly buffer: SharedArrayBuffer;
  private readonly cell: BigUint64Array;

  /** A new counter starting at `first`, or a view of an existing one. */
  constructor(from: bigint | SharedArrayBuffer) {
    if (typeof from === "bigint") {
      this.buffer = new SharedArrayBuffer(16);
      this.cell = new BigUint64Array(this.buffer);
      this.cell[NEXT] = from;
    } else {
      this.buffer = from;
      this.cell = new BigUint64Array(from);
    }
  }

  /** The next unused key below `limit`; KEYS_EXHAUSTED at the limit (never wraps to a used key). */
  take(limit: bigint, what: string): bigint {
    for (;;) {
      const key = Atomics.load(this.cell, NEXT);
      if (key >= limit) throw new AllocToolsError("KEYS_EXHAUSTED", what);
      if (Atomics.compareExchange(this.cell, NEXT, key, key + 1n) === key) return key;
    }
  }

  /**
   * The first of `count` consecutive unused keys below `limit` (fewer when the limit is near: the
   * count taken is `min(count, limit - first)`, at least 1); KEYS_EXHAUSTED at the limit. One CAS
   * for many registrations.
   */
  takeRange(count: bigint, limit: bigint, what: string): { first: bigint; end: bigint } {
    for (;;) {
      const key = Atomics.load(this.cell, NEXT);
      if (key >= limit) throw new AllocToolsError("KEYS_EXHAUSTED", what);
      const end = key + count > limit ? limit : key + count;
      if (Atomics.compareExchange(this.cell, NEXT, key, end) === key) return { first: key, end };
    }
  }

  /** The provider was closed: Workers must not register on it any more. */
  markClosed(): void {
    Atomics.store(this.cell, CLOSED, 1n);
  }

  get closed(): boolean {
    return Atomics.load(this.cell, CLOSED) !== 0n;
  }
}
