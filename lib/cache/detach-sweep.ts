// The scans that find entries whose buffer was detached (transfer(), a transfer list) or shrank
// below its registration while unused: nothing tells the cache when that happens, and such an
// entry's registration covers memory the buffer no longer owns. A lookup of the buffer finds it
// itself; the others are found here. flush(), a pool's eviction and a refusal (CACHE_FULL) check
// every entry; each eviction scan checks a share of them in turn, so that a miss at capacity
// stays O(1) however many entries there are.
import type { CacheEntry } from "./cache-entry.ts";

/** Entries an eviction scan checks for detached buffers (all of them up to this many). */
export const SWEEP_PER_SCAN = 32;

export class DetachSweep {
  /** The cache's live entries (entry-table.ts): an invalidation moves the last one into the hole. */
  private readonly live: CacheEntry[];
  /** The cache's invalidation: drops the entry (called during the scan, which the order below allows for). */
  private readonly invalidate: (entry: CacheEntry) => void;
  /** Where the next scan starts in `live`. */
  private next = 0;

  constructor(live: CacheEntry[], invalidate: (entry: CacheEntry) => void) {
    this.live = live;
    this.invalidate = invalidate;
  }

  /**
   * An eviction scan's check: every entry while there are at most SWEEP_PER_SCAN, else the next
   * SWEEP_PER_SCAN round robin (every entry within ceil(entries / SWEEP_PER_SCAN) + 1 scans).
   */
  some(): void {
    const live = this.live;
    if (live.length <= SWEEP_PER_SCAN) return this.all();
    // Downwards: a drop moves the last entry into the hole, and the last ones were checked first,
    // so no entry present when a round starts is skipped in that round.
    let at = this.next;
    for (let checked = 0; checked < SWEEP_PER_SCAN; checked++) {
      if (at < 0 || at >= live.length) at = live.length - 1;
      const entry = live[at]!;
      if (entry.lostMemory()) this.invalidate(entry);
      at--;
    }
    this.next = at;
  }

  /** Invalidates every entry whose buffer was detached or shrank. */
  all(): void {
    const live = this.live;
    for (let at = live.length - 1; at >= 0; at--) {
      const entry = live[at]!;
      if (entry.lostMemory()) this.invalidate(entry);
    }
  }
}
