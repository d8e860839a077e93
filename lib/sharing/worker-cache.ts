// One Worker's caches of free regions, one per size class, in front of the classes' shared stacks
// (the hot path of a shared pool's gets and releases). Part of the shared state: the words are in
// the pool's SharedArrayBuffer (CACHE in shared-layout.ts); a region's state word says who holds
// it (see shared-pool-state.ts), and only the Worker whose slot it is writes its cache blocks.
import { CACHE, FREE, STATE_SHIFT, type SharedLayout } from "./shared-layout.ts";
import type { SharedStack } from "./shared-stack.ts";

// A cache block's words as module constants: the hot path reads them as literals.
const CLOSED = CACHE.closed;
const ENTRIES = CACHE.entries;
const RELEASES = CACHE.releasesInt32;
const GET_OFFSET = CACHE.getOffsetInt32;
const SHIFT = STATE_SHIFT;

/**
 * One Worker's caches, one per size class, in front of the classes' shared stacks: free regions
 * only this Worker takes, in its own cache blocks (count, closed flag, release counter, get
 * offset, entries: CACHE). A get or release of a hot region touches its cache block and the
 * region's state word, nothing another Worker writes. One object for every class: the hot path
 * reads one set of fields.
 */
export class WorkerCache {
  private readonly words: Int32Array;
  private readonly counters: Float64Array;
  /** Int32 word of class 0's cache block; class `sizeClass` is at base + sizeClass * stride. */
  private readonly base: number;
  private readonly stride: number;
  /** Where every slot's cache blocks are (other Workers' caches, read off the hot path). */
  private readonly layout: SharedLayout;
  private readonly size: number;
  private readonly stacks: readonly SharedStack[];
  private readonly stateAt: number;
  /** This Worker's in-use mark: its slot + 1. */
  private readonly mark: number;
  private readonly popIntent: number;

  constructor(words: Int32Array, counters: Float64Array, layout: SharedLayout, base: number, stride: number, size: number, stacks: readonly SharedStack[],
              stateAt: number, slot: number, popIntent: number) {
    this.words = words;
    this.counters = counters;
    this.base = base;
    this.stride = stride;
    this.layout = layout;
    this.size = size;
    this.stacks = stacks;
    this.stateAt = stateAt;
    this.mark = slot + 1;
    this.popIntent = popIntent;
  }

  /** The owner closed the pool (a plain read: the flag only goes 0 → 1). */
  isClosed(sizeClass: number): boolean {
    return this.words[this.base + sizeClass * this.stride + CLOSED] !== 0;
  }

  /**
   * A free region of class `sizeClass` from the cache; -1 if the cache is empty or the pool closed
   * (isClosed tells which). Its state word already names this Worker: lowering the count is what
   * puts it in use, and counts the get (CACHE). Small, so that the JIT inlines it, and the
   * caller's get into the caller's loop: a counter more here and it does neither (measured).
   */
  pop(sizeClass: number): number {
    const words = this.words;
    const at = this.base + sizeClass * this.stride;
    const count = words[at]! - 1;
    if (count < 0 || words[at + CLOSED] !== 0) return -1;
    words[at] = count;
    return words[at + ENTRIES + count]!;
  }

  /** The cache is empty: a region from the shared stack, marked in use (not counted); -1 if that is empty too. */
  popShared(sizeClass: number): number {
    const words = this.words;
    const index = this.stacks[sizeClass]!.popNoting(this.popIntent);
    if (index >= 0) words[this.stateAt + (index << SHIFT)] = this.mark;
    words[this.popIntent] = -1;
    return index;
  }

  /** Moves one region of class `sizeClass` from the shared stack into the cache (none if the stack is empty); counted as neither get nor release. */
  fill(sizeClass: number): void {
    const index = this.popShared(sizeClass);
    if (index < 0) return;
    const words = this.words;
    const at = this.base + sizeClass * this.stride;
    const count = words[at]!;
    words[at + ENTRIES + count] = index;
    words[at] = count + 1;
    this.offsetGets(sizeClass, 1);
  }

  /**
   * The warm start (share() and attach): one free region per class into the cache, where the
   * shared stack has one, so that the first get of each class hits. A first get that misses leaves
   * the miss path's call in the JIT's code for the caller's loop, and the loop then costs what it
   * costs after an unshared pool grew (a pair about twice an unshared pool's that never grew,
   * measured). A region in a cache is what one get and release of its class would leave there.
   */
  warm(): void {
    if (this.size === 0) return;
    for (let sizeClass = 0; sizeClass < this.stacks.length; sizeClass++) this.fill(sizeClass);
  }

  /** Counts a get served past the cache (the shared stack or a growth): the count stayed. */
  countGetPastCache(sizeClass: number): void {
    this.offsetGets(sizeClass, 1);
  }

  /** Adds `gets` that did not lower the count; a count raised by no release is a positive offset too, a count lowered by no get a negative one. */
  private offsetGets(sizeClass: number, gets: number): void {
    this.counters[(this.base + sizeClass * this.stride + GET_OFFSET) >> 1]! += gets;
  }

  /**
   * Takes back a region of class `sizeClass` in use: false if it is not in use (a double release) or the
   * pool is closed (the caller tells which). A region this Worker holds goes into its cache with no
   * state word written: the entry, then the count. One another Worker holds is taken over first
   * (takeOver); a full cache spills first (pushSlow).
   */
  push(sizeClass: number, index: number): boolean {
    const words = this.words;
    const at = this.base + sizeClass * this.stride;
    const count = words[at]!;
    if (count === this.size || words[at + CLOSED] !== 0 || words[this.stateAt + (index << SHIFT)] !== this.mark) return this.pushSlow(sizeClass, index);
    words[at + ENTRIES + count] = index;
    words[at] = count + 1;
    this.counters[(at + RELEASES) >> 1]! += 1;
    return true;
  }

  /** The cache is full or the pool closed, or another Worker holds the region (or nobody does). */
  private pushSlow(sizeClass: number, index: number): boolean {
    if (this.isClosed(sizeClass)) return false;
    const word = this.stateAt + (index << SHIFT);
    if (this.words[word] !== this.mark && !this.takeOver(sizeClass, index, word)) return false;
    if (this.size === 0) return this.pushShared(sizeClass, index, word);
    if (this.words[this.base + sizeClass * this.stride]! === this.size) this.spill(sizeClass);
    return this.push(sizeClass, index);
  }

  /**
   * A region another Worker got, released here: its state word moves from that Worker's mark to
   * ours with a CAS. False when it is free: on a stack (FREE) or in its holder's cache. A double
   * release that races with its region's holder (releasing it too, or getting it from its cache
   * at the same instant) is not settled, as with any allocator's double free; one after the other,
   * the second release is refused.
   */
  private takeOver(sizeClass: number, index: number, word: number): boolean {
    const words = this.words;
    for (let seen = words[word]!; ;) {
      if (seen === FREE || this.inCacheOf(seen - 1, sizeClass, index)) return false;
      const now = Atomics.compareExchange(words, word, seen, this.mark);
      if (now === seen) return true;
      seen = now;
    }
  }

  /** Whether region `index` of class `sizeClass` is free in the cache of `slot`. */
  inCacheOf(slot: number, sizeClass: number, index: number): boolean {
    const words = this.words;
    const at = this.layout.cacheWord(slot, sizeClass);
    const count = words[at]!;
    for (let entry = 0; entry < count; entry++) if (words[at + ENTRIES + entry] === index) return true;
    return false;
  }

  /** No cache: the region goes straight onto the shared stack (noted in the pop-intent word meanwhile). */
  private pushShared(sizeClass: number, index: number, word: number): boolean {
    const words = this.words;
    words[this.popIntent] = index;
    if (Atomics.compareExchange(words, word, this.mark, FREE) !== this.mark) {
      words[this.popIntent] = -1;
      return false;
    }
    this.stacks[sizeClass]!.push(index);
    words[this.popIntent] = -1;
    this.counters[(this.base + sizeClass * this.stride + RELEASES) >> 1]! += 1;
    this.offsetGets(sizeClass, -1);
    return true;
  }

  /**
   * Gives the newer half of class `sizeClass`'s full cache to the shared stack: their state words become
   * FREE, one CAS pushes them all, then the count is lowered. A Worker terminated in between leaves
   * entries that may also be on the stack: audit() reads a dead Worker's cache after the stacks and
   * skips what it already found.
   */
  spill(sizeClass: number): void {
    const at = this.base + sizeClass * this.stride;
    const count = this.words[at]!;
    const half = Math.max(1, count >> 1);
    this.moveToStack(sizeClass, at + ENTRIES + count - half, half);
    this.words[at] = count - half;
    this.offsetGets(sizeClass, -half);
  }

  /** Gives every cached region of class `sizeClass` back to the shared stack (detach). */
  flush(sizeClass: number): void {
    const at = this.base + sizeClass * this.stride;
    const count = this.words[at]!;
    this.moveToStack(sizeClass, at + ENTRIES, count);
    this.words[at] = 0;
    this.offsetGets(sizeClass, -count);
  }

  /** FREE before the push: once on the stack another Worker may pop a region and mark it its own. */
  private moveToStack(sizeClass: number, first: number, count: number): void {
    const words = this.words;
    for (let at = first; at < first + count; at++) words[this.stateAt + (words[at]! << SHIFT)] = FREE;
    this.stacks[sizeClass]!.pushAll(words, first, count);
  }
}
