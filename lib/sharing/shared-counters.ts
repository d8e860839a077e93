// The statistics of a shared pool in its shared memory: per size class the regions, blocks and
// pinned bytes (written under the class's growth lock), and per Worker its own counters (each
// written only by its Worker, summed by whoever asks: stats() is exact from any thread while no
// Worker gets or releases), the caches' counters among them (CACHE in shared-layout.ts).
import { CACHE, UNPOOLED_COUNTER_WORDS, type SharedLayout } from "./shared-layout.ts";
import type { SlotTable } from "./slot-table.ts";

export class SharedCounters {
  private readonly words: Int32Array;
  private readonly floats: Float64Array;
  private readonly layout: SharedLayout;
  private readonly slots: SlotTable;
  /** Float64 word of this Worker's counters. */
  private readonly countersAt: number;
  /** The slot's unpooled counters as this Worker found them: earlier occupants' counts, kept in the totals. */
  private readonly unpooledBase: Float64Array;

  constructor(words: Int32Array, floats: Float64Array, layout: SharedLayout, slots: SlotTable) {
    this.words = words;
    this.floats = floats;
    this.layout = layout;
    this.slots = slots;
    this.countersAt = layout.countersWord(slots.slot);
    this.unpooledBase = floats.slice(this.countersAt + layout.unpooledCounter(0), this.countersAt + layout.unpooledCounter(UNPOOLED_COUNTER_WORDS));
  }

  /** Regions, blocks and pinned bytes of class `sizeClass`. */
  stackCounters(sizeClass: number): { regions: number; blocks: number; pinnedBytes: number } {
    const at = this.layout.stackCountersLine(sizeClass) / 8;
    return { regions: this.floats[at]!, blocks: this.floats[at + 1]!, pinnedBytes: this.floats[at + 2]! };
  }

  addStackCounters(sizeClass: number, regions: number, blocks: number, pinnedBytes: number): void {
    const at = this.layout.stackCountersLine(sizeClass) / 8;
    this.floats[at] = this.floats[at]! + regions;
    this.floats[at + 1] = this.floats[at + 1]! + blocks;
    this.floats[at + 2] = this.floats[at + 2]! + pinnedBytes;
  }

  // ---- per-Worker counters (float64, each written only by its Worker) ---------------------------------

  /** Adds `delta` to this Worker's class counter (CLASS_COUNTERS) of class `sizeClass`. */
  addClassCounter(sizeClass: number, counter: number, delta: number): void {
    const word = this.countersAt + this.layout.classCounter(sizeClass, counter);
    this.floats[word] = this.floats[word]! + delta;
  }

  /** Sets this Worker's unpooled counter (UNPOOLED_COUNTERS). */
  setUnpooledCounter(counter: number, value: number): void {
    this.floats[this.countersAt + this.layout.unpooledCounter(counter)] = this.unpooledBase[counter]! + value;
  }

  /** Sum of a unpooled counter over every slot. */
  sumUnpooledCounter(counter: number): number {
    return this.sumCounters(this.layout.unpooledCounter(counter));
  }

  /** Sum of a class counter over every slot. */
  sumClassCounter(sizeClass: number, counter: number): number {
    return this.sumCounters(this.layout.classCounter(sizeClass, counter));
  }

  private sumCounters(word: number): number {
    let sum = 0;
    for (let slot = 0; slot < this.slots.used; slot++) sum += this.floats[this.layout.countersWord(slot) + word]!;
    return sum;
  }

  /** Gets and releases of class `sizeClass` over every slot (the caches' counters). */
  sumCacheCounters(sizeClass: number): { gets: number; releases: number } {
    let gets = 0;
    let releases = 0;
    for (let slot = 0; slot < this.slots.used; slot++) {
      const at = this.layout.cacheWord(slot, sizeClass);
      const slotReleases = this.floats[(at + CACHE.releasesInt32) >> 1]!;
      releases += slotReleases;
      gets += slotReleases - this.words[at + CACHE.count]! + this.floats[(at + CACHE.getOffsetInt32) >> 1]!;
    }
    return { gets, releases };
  }

  /** Sets this Worker's counters of class `sizeClass` (share() carries the unshared pool's over). */
  setCacheCounters(sizeClass: number, gets: number, releases: number): void {
    const at = this.layout.cacheWord(this.slots.slot, sizeClass);
    this.floats[(at + CACHE.releasesInt32) >> 1] = releases;
    this.floats[(at + CACHE.getOffsetInt32) >> 1] = gets - releases + this.words[at + CACHE.count]!;
  }

  /** Regions of class `sizeClass` sitting in Worker caches (free, not on the shared stack). */
  cached(sizeClass: number): number {
    let sum = 0;
    for (let slot = 0; slot < this.slots.used; slot++) sum += this.words[this.layout.cacheWord(slot, sizeClass)]!;
    return sum;
  }
}
