// One size class of a pool: a LIFO stack of free region indices plus its books.
// Indices (not objects) so that the same stack can live in shared memory for Workers.

/** The size classes, smallest first: adding one here (and its defaults in DEFAULT_STACKS) is the whole change. */
export const SIZE_CLASSES = ["small", "medium", "large", "huge"] as const;
/** A size class's name: `"small"`, `"medium"`, `"large"` or `"huge"` (the entries of SIZE_CLASSES). */
export type SizeClass = (typeof SIZE_CLASSES)[number];

/** One size class's statistics (`pool.stats().stacks[name]`); counts are since the pool was made. */
export interface StackStats {
  /** The size class these figures are for. */
  readonly name: SizeClass;
  /** Bytes per region in this class (the most a get of this class may use). */
  readonly chunkSize: number;
  /** Regions this stack has (free + in use). */
  readonly regions: number;
  /** Regions on the stack now. */
  readonly free: number;
  /** Regions handed out and not yet released (`regions - free`). */
  readonly inUse: number;
  /** Regions handed out from this class (hits and misses). */
  readonly gets: number;
  /** Regions given back to this class. */
  readonly releases: number;
  /** Gets served from the stack as it stood. */
  readonly hits: number;
  /** Gets that found the stack empty (each one grew it). */
  readonly misses: number;
  /** Blocks added after construction. */
  readonly growths: number;
  /** Blocks (= registrations) this stack holds. */
  readonly blocks: number;
  /** Bytes of this class's blocks, mapped, pinned and registered (regions are a cache line apart, so this can exceed regions × chunkSize). */
  readonly pinnedBytes: number;
  /** Shared pools: free regions held in Workers' caches (counted in `free`). */
  readonly cached?: number;
}

/**
 * One size class of a pool: a LIFO stack of free region indices (indices, not objects, so that the
 * same stack can live in shared memory for Workers) and its counters. A pool makes one per class
 * and owns it for its whole life; users read it through `pool.stats().stacks`, not directly.
 * Hot path: `pop` and `push` neither allocate nor make a system call; `addRegions` may grow the
 * index array, `stats` allocates its result.
 */
export class MemoryPoolStack {
  /** The size class this stack serves. */
  readonly name: SizeClass;
  /** The class's position in SIZE_CLASSES (0 = small), stored in each region as its `stackId`. */
  readonly id: number;
  /** Bytes per region. */
  readonly chunkSize: number;
  /** Distance between regions in a block: chunkSize rounded up to a cache line. */
  readonly stride: number;
  /** Regions registered when the pool is made. */
  readonly initialCount: number;
  /** Regions added per growth (one block, one registration). */
  readonly growCount: number;
  /** Capacity once the pool is shared (the shared tables are sized from it). */
  readonly maxRegions: number;
  // The stack: free[0 .. top) are free region indices, the top one is handed out next.
  private free: Int32Array;
  private top: number;
  // Books, plain counters on the hot path.
  /** Gets from this stack, each counted once whether served at once or after a growth. */
  gets: number;
  /** Pushes: regions given back. */
  releases: number;
  /** Gets that found the stack empty and grew it. */
  misses: number;
  /** Blocks added after construction. */
  growths: number;
  /** Blocks (each one registration) holding this class's regions. */
  blocks: number;
  /** Regions this stack has, free and in use. */
  regions: number;
  /** Bytes of this class's blocks (mapped, pinned, registered). */
  pinnedBytes: number;

  /**
   * An empty stack with zeroed counters; the pool adds the regions (`addRegions`). Sizes are in
   * bytes and counts in regions, already checked by the pool's options.
   */
  constructor(name: SizeClass, id: number, chunkSize: number, initialCount: number, growCount: number, maxRegions: number = Infinity) {
    this.name = name;
    this.id = id;
    this.chunkSize = chunkSize;
    this.stride = regionStride(chunkSize);
    this.initialCount = initialCount;
    this.growCount = growCount;
    this.maxRegions = maxRegions;
    this.free = new Int32Array(Math.max(16, initialCount));
    this.top = 0;
    this.gets = 0;
    this.releases = 0;
    this.misses = 0;
    this.growths = 0;
    this.blocks = 0;
    this.regions = 0;
    this.pinnedBytes = 0;
  }

  /** Pops a free region index, or -1 when the stack is empty. Counts the get. */
  pop(): number {
    this.gets++;
    if (this.top === 0) return -1;
    return this.free[--this.top]!;
  }

  /** Pushes a free region index. Counts the release. */
  push(index: number): void {
    this.releases++;
    this.free[this.top++] = index;
  }

  /** Adds `count` new free indices starting at `first` (after growth); the lowest pops first. */
  addRegions(first: number, count: number): void {
    this.regions += count;
    if (this.regions > this.free.length) {
      const bigger = new Int32Array(Math.max(this.regions, this.free.length * 2));
      bigger.set(this.free.subarray(0, this.top));
      this.free = bigger;
    }
    for (let offset = count - 1; offset >= 0; offset--) this.free[this.top++] = first + offset;
  }

  /** The free indices, bottom first (a view: copy before changing the stack). */
  entries(): Int32Array {
    return this.free.subarray(0, this.top);
  }

  /** Regions on the stack now. */
  get size(): number {
    return this.top;
  }

  /** Empties the stack (pool close). */
  clear(): void {
    this.top = 0;
  }

  /** A snapshot of this stack's counters (a new object each call). */
  stats(): StackStats {
    return {
      name: this.name, chunkSize: this.chunkSize, regions: this.regions, free: this.top,
      inUse: this.regions - this.top, gets: this.gets, releases: this.releases,
      hits: this.gets - this.misses, misses: this.misses, growths: this.growths, blocks: this.blocks,
      pinnedBytes: this.pinnedBytes,
    };
  }
}

/** Bytes between the starts of two regions of `chunkSize` in a block: the size rounded up to 64 (a cache line). */
export function regionStride(chunkSize: number): number {
  return Math.ceil(chunkSize / 64) * 64;
}
