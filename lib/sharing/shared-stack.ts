// A lock-free (Treiber) stack of region indices in shared memory, usable from every Worker.
// The head is one int32: the top index + 1 in the low `indexBits` bits (0 = empty) and an ABA tag
// in the rest. Links live in a `next` array beside it (also index + 1, 0 = end). Only int32
// Atomics: 64-bit ones cost ~13x more here.
import { AllocToolsRangeError } from "../errors.ts";

/**
 * Most regions a shared pool holds (all classes together): the index takes at most 16 bits, so the
 * ABA tag keeps at least 16. A pop stalled (descheduled) while others pop can only be fooled if the
 * tag has wrapped exactly (2^16 pops) and the same region is on top again.
 */
export const MAX_SHARED_REGIONS = (1 << 16) - 1;

export class SharedStack {
  /** The shared words: head at `head`, links at `next + index`. */
  private readonly words: Int32Array;
  private readonly head: number;
  private readonly next: number;
  private readonly mask: number;
  private readonly bits: number;

  constructor(words: Int32Array, head: number, next: number, indexBits: number) {
    if (!Number.isInteger(indexBits) || indexBits < 1 || indexBits > 16) throw new AllocToolsRangeError(`indexBits must be in [1, 16], got ${indexBits}`);
    this.words = words;
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
    return this.popNoting(-1);
  }

  /**
   * pop(), writing each candidate index into word `intent` of the shared words before its CAS
   * (-1: nowhere). A Worker terminated between a successful CAS and marking the region in use
   * leaves the index there, so an audit finds the region instead of losing it.
   */
  popNoting(intent: number): number {
    const words = this.words;
    const head = this.head;
    const mask = this.mask;
    for (;;) {
      const old = Atomics.load(words, head);
      const top = (old & mask) - 1;
      if (top < 0) return -1;
      if (intent >= 0) words[intent] = top;
      // May be stale if another Worker took `top` meanwhile; the CAS then fails on the tag.
      const below = words[this.next + top]! & mask;
      const tag = ((old >>> this.bits) + 1) << this.bits;
      if (Atomics.compareExchange(words, head, old, tag | below) === old) return top;
    }
  }

  /** Pushes one index (it must not be on any stack). */
  push(index: number): void {
    const words = this.words;
    const head = this.head;
    const mask = this.mask;
    for (;;) {
      const old = Atomics.load(words, head);
      words[this.next + index] = old & mask;
      if (Atomics.compareExchange(words, head, old, (old & ~mask) | (index + 1)) === old) return;
    }
  }

  /**
   * Pushes `source[start .. start + count)` in one CAS, `source[start]` ending on top: the links
   * are written first (plain stores, ours alone), the CAS publishes them. A Worker's cache spills
   * or flushes a batch, and a growth adds a block, for the price of one push. `unpushed`, when
   * given, is written back into the last link after a failed CAS: a Worker terminated at the retry
   * leaves that mark, not a link that says the batch was pushed.
   */
  pushAll(source: ArrayLike<number>, start: number, count: number, unpushed?: number): void {
    if (count <= 0) return;
    const words = this.words;
    const next = this.next;
    const last = source[start + count - 1]!;
    for (let at = start; at < start + count - 1; at++) words[next + source[at]!] = source[at + 1]! + 1;
    const head = this.head;
    const mask = this.mask;
    const first = source[start]! + 1;
    for (;;) {
      const old = Atomics.load(words, head);
      words[next + last] = old & mask;
      if (Atomics.compareExchange(words, head, old, (old & ~mask) | first) === old) return;
      if (unpushed !== undefined) words[next + last] = unpushed;
    }
  }

  /** Empties the stack (pool close); the tag moves on so a stalled pop cannot succeed. */
  clear(): void {
    const words = this.words;
    for (;;) {
      const old = Atomics.load(words, this.head);
      const tag = ((old >>> this.bits) + 1) << this.bits;
      if (Atomics.compareExchange(words, this.head, old, tag) === old) return;
    }
  }

  /**
   * The indices on the stack, top first. Exact only while no Worker pushes or pops; stops after
   * `limit` entries so that a corrupted (cyclic) chain shows up as an over-long list, not a hang.
   */
  snapshot(limit: number): number[] {
    const out: number[] = [];
    let index = (Atomics.load(this.words, this.head) & this.mask) - 1;
    while (index >= 0 && out.length <= limit) {
      out.push(index);
      index = (Atomics.load(this.words, this.next + index) & this.mask) - 1;
    }
    return out;
  }
}

/** Bits needed to hold an index below `capacity`, plus one for "none". */
export function indexBitsFor(capacity: number): number {
  return Math.max(1, Math.ceil(Math.log2(capacity + 1)));
}
