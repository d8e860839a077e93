// The LRU list of a registration cache: its live entries with no region out, newest at the head,
// the next to evict at the tail. Intrusive (the links are fields of the entries), so that the hit
// path's unlink (at acquire) and link (at the last release) allocate nothing.
import type { CacheEntry } from "./cache-entry.ts";

export class LruList {
  newest: CacheEntry | null = null;
  oldest: CacheEntry | null = null;

  linkNewest(entry: CacheEntry): void {
    entry.newer = null;
    entry.older = this.newest;
    if (this.newest !== null) this.newest.newer = entry;
    else this.oldest = entry;
    this.newest = entry;
    entry.linked = true;
  }

  unlink(entry: CacheEntry): void {
    const newer = entry.newer;
    const older = entry.older;
    if (newer !== null) newer.older = older;
    else this.newest = older;
    if (older !== null) older.newer = newer;
    else this.oldest = newer;
    entry.newer = entry.older = null;
    entry.linked = false;
  }

  /** The least recently used entry other than `keep`; null when there is none. */
  oldestExcept(keep: CacheEntry | null): CacheEntry | null {
    const entry = this.oldest;
    return entry !== null && entry === keep ? entry.newer : entry;
  }

  clear(): void {
    this.newest = this.oldest = null;
  }
}
