// One size class of a pool: a LIFO stack of free region indices plus its books.
// Indices (not objects) so that the same stack can live in shared memory for Workers.

/** The size classes, smallest first: adding one here (and its defaults in DEFAULT_STACKS) is the whole change. */
export const SIZE_CLASSES = ["small", "medium", "large", "huge"] as const;
export type SizeClass = (typeof SIZE_CLASSES)[number];

/** Per-stack statistics. */
export interface StackStats {
  readonly name: SizeClass;
  readonly chunkSize: number;
  /** Regions this stack has (free + in use). */
  readonly regions: number;
  /** Regions on the stack now. */
  readonly free: number;
  readonly inUse: number;
  readonly gets: number;
  readonly releases: number;
  /** Gets served from the stack as it stood. */
  readonly hits: number;
  /** Gets that found the stack empty (each one grew it). */
  readonly misses: number;
  /** Blocks added after construction. */
  readonly growths: number;
  /** Blocks (= registrations) this stack holds. */
  readonly blocks: number;
  readonly pinnedBytes: number;
  /** Shared pools: free regions held in Workers' caches (counted in `free`). */
  readonly cached?: number;
}

export class MemoryPoolStack {
  readonly name: SizeClass;
  readonly id: number;
  readonly chunkSize: number;
  /** Distance between regions in a block: chunkSize rounded up to a cache line. */
  readonly stride: number;
  readonly initialCount: number;
  readonly growCount: number;
  /** Capacity once the pool is shared (the shared tables are sized from it). */
  readonly maxRegions: number;
  // The stack: free[0 .. top) are free region indices, the top one is handed out next.
  private free: Int32Array;
  private top: number;
  // Books, plain counters on the hot path.
  gets: number;
  releases: number;
  misses: number;
  growths: number;
  blocks: number;
  regions: number;
  pinnedBytes: number;

  constructor(name: SizeClass, id: number, chunkSize: number, initialCount: number, growCount: number, maxRegions: number = Infinity) {
    this.name = name;
    this.id = id;
    this.chunkSize = chunkSize;
    this.stride = Math.ceil(chunkSize / 64) * 64;
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
    for (let i = count - 1; i >= 0; i--) this.free[this.top++] = first + i;
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

  stats(): StackStats {
    return {
      name: this.name, chunkSize: this.chunkSize, regions: this.regions, free: this.top,
      inUse: this.regions - this.top, gets: this.gets, releases: this.releases,
      hits: this.gets - this.misses, misses: this.misses, growths: this.growths, blocks: this.blocks,
      pinnedBytes: this.pinnedBytes,
    };
  }
}
