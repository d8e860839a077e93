// The entries of a registration cache: found by their buffer object (a Map, the hit path's one
// lookup), listed in an array for sweeps (no Map iterator, O(1) removal by moving the last entry
// into the hole), and, once dropped while regions still held them, kept as orphans until their last
// release or the cache's close. An entry dropped with nothing out is reused by the next miss.
import type { AnyBuffer } from "../memory/buffer-intrinsics.ts";
import { CacheEntry } from "./cache-entry.ts";

const EMPTY_BUFFER: AnyBuffer = new ArrayBuffer(0);

export class EntryTable {
  /** The entries in the table, by buffer object (the cache's hit path reads it directly: one load less). */
  readonly byBuffer = new Map<AnyBuffer, CacheEntry>();
  /** The same entries as a list, each at its `index`. */
  readonly live: CacheEntry[] = [];
  /** Entries dropped while regions still held them (deregistered at their last release or at close). */
  readonly orphans = new Set<CacheEntry>();
  /** An entry dropped with no region out, reused by the next miss (one allocation less per miss). */
  private spare: CacheEntry | null = null;

  /** Entries in the table now. */
  get size(): number {
    return this.byBuffer.size;
  }

  /** The entry of `buffer`, if it is in the table. */
  get(buffer: AnyBuffer): CacheEntry | undefined {
    return this.byBuffer.get(buffer);
  }

  /** A fresh entry for `buffer` (the spare one when there is one), not in the table yet. */
  newEntry(buffer: AnyBuffer, address: number, lengthOf: (this: unknown) => number): CacheEntry {
    const entry = this.spare;
    if (entry === null) return new CacheEntry(buffer, address, lengthOf);
    this.spare = null;
    entry.buffer = buffer;
    entry.address = address;
    entry.lengthOf = lengthOf;
    return entry;
  }

  add(entry: CacheEntry): void {
    this.byBuffer.set(entry.buffer, entry);
    entry.index = this.live.length;
    this.live.push(entry);
  }

  /** Takes `entry` out of the table (the last entry of the list moves into its place). */
  remove(entry: CacheEntry): void {
    this.byBuffer.delete(entry.buffer);
    const last = this.live.pop()!;
    if (last !== entry) {
      this.live[entry.index] = last;
      last.index = entry.index;
    }
    entry.index = -1;
  }

  /**
   * Keeps a removed entry that nothing out refers to (but released regions, which only ever get
   * DOUBLE_RELEASE) for the next miss.
   */
  recycle(entry: CacheEntry): void {
    entry.reset();
    entry.buffer = EMPTY_BUFFER; // the spare must not keep the dropped buffer alive
    this.spare = entry;
  }

  /** Empties the table, orphans included; returns every entry it held. */
  clear(): CacheEntry[] {
    const all = [...this.live, ...this.orphans];
    this.byBuffer.clear();
    this.live.length = 0;
    this.orphans.clear();
    this.spare = null;
    return all;
  }
}
