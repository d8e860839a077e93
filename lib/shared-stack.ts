// A lock-free (Treiber) stack of region indices in shared memory, usable from every Worker.
// The head is one int32: the top index + 1 in the low `indexBits` bits (0 = empty) and an ABA tag
// in the rest. Links live in a `next` array beside it (also index + 1, 0 = end). Only int32
// Atomics: 64-bit ones cost ~13x more here.

/**
 * Most regions a shared pool holds (all classes together): the index takes at most 16 bits, so the
 * ABA tag keeps at least 16. A pop stalled (descheduled) while others pop can only be fooled if the
 * tag has wrapped exactly (2^16 pops) and the same region is on top again.
 */
export const MAX_SHARED_REGIONS = (1 << 16) - 1;

export class SharedStack {
  /** The shared words: head at `head`, links at `next + index`. */
  private readonly a: Int32Array;
  private readonly head: number;
  private readonly next: number;
  private readonly mask: number;
  private readonly bits: number;

  constructor(words: Int32Array, head: number, next: number, indexBits: number) {
    if (!Number.isInteger(indexBits) || indexBits < 1 || indexBits > 16) throw new RangeError(`indexBits must be in [1, 16], got ${indexBits}`);
    this.a = words;
    this.head = head;
    this.next = next;
    this.bits = indexBits;
    this.mask = (1 << indexBits) - 1;
  }

  /**
   * Pops the top index, or -1 when empty. The tag grows on every pop: a stalled pop whose top was
   * popped and pushed back meanwhile sees a different head and retries instead of linking a stale
   * `next` (ABA). Pushes need no tag bump: a head can only come back to the same index by a pop.
   */
  pop(): number {
    const a = this.a;
    const h = this.head;
    const mask = this.mask;
    for (;;) {
      const old = Atomics.load(a, h);
      const top = (old & mask) - 1;
      if (top < 0) return -1;
      // May be stale if another Worker took `top` meanwhile; the CAS then fails on the tag.
      const below = a[this.next + top]! & mask;
      const tag = ((old >>> this.bits) + 1) << this.bits;
      if (Atomics.compareExchange(a, h, old, tag | below) === old) return top;
    }
  }

  /** Pushes one index (it must not be on any stack). */
  push(index: number): void {
    this.pushChain(index, index);
  }

  /**
   * Pushes a chain already linked first → … → last through `link()` in one CAS: a per-Worker
   * cache flushes a batch for the price of one push.
   */
  pushChain(first: number, last: number): void {
    const a = this.a;
    const h = this.head;
    const mask = this.mask;
    for (;;) {
      const old = Atomics.load(a, h);
      a[this.next + last] = old & mask;
      if (Atomics.compareExchange(a, h, old, (old & ~mask) | (first + 1)) === old) return;
    }
  }

  /** Links `index` → `then` before a pushChain (plain write: the CAS publishes it). */
  link(index: number, then: number): void {
    this.a[this.next + index] = then + 1;
  }

  /** Empties the stack (pool close); the tag moves on so a stalled pop cannot succeed. */
  clear(): void {
    const a = this.a;
    for (;;) {
      const old = Atomics.load(a, this.head);
      const tag = ((old >>> this.bits) + 1) << this.bits;
      if (Atomics.compareExchange(a, this.head, old, tag) === old) return;
    }
  }

  /**
   * The indices on the stack, top first. Exact only while no Worker pushes or pops; stops after
   * `limit` entries so that a corrupted (cyclic) chain shows up as an over-long list, not a hang.
   */
  snapshot(limit: number): number[] {
    const out: number[] = [];
    let i = (Atomics.load(this.a, this.head) & this.mask) - 1;
    while (i >= 0 && out.length <= limit) {
      out.push(i);
      i = (Atomics.load(this.a, this.next + i) & this.mask) - 1;
    }
    return out;
  }
}

/** Bits needed to hold an index below `capacity`, plus one for "none". */
export function indexBitsFor(capacity: number): number {
  return Math.max(1, Math.ceil(Math.log2(capacity + 1)));
}
