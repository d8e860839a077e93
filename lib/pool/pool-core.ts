// What a pool is made of, whether it is shared or not: its provider and traits, its size-class
// stacks and region table, its temporary and user regions, its blocks and its counters. MemoryPool
// keeps the local hot path; SharedPool (shared-pool.ts) works on the same parts once shared.
import { ptr } from "bun:ffi";
import { MemoryBlockAllocator, usesHugeTlb, type HugePages, type MemoryBlock } from "../memory/block.ts";
import { AllocToolsError, AllocToolsRangeError } from "../errors.ts";
import { ProvidedMemoryBlock } from "../memory/provided-block.ts";
import type { CheckedOptions } from "./pool-options.ts";
import type { RegionProvider, Registration } from "../memory/provider.ts";
import { keepAliveOf, MemoryRegionImpl, RegionFlag, setInUse, setOrigin, type RegionOwner } from "../memory/region.ts";
import { checkUserMemory, type UserMemoryInput } from "../memory/user-memory.ts";
import { RegistrationCache, type RegistrationCacheStats } from "../cache/registration-cache.ts";
import { MemoryPoolStack, regionStride, SIZE_CLASSES, type SizeClass, type StackStats } from "./stack.ts";
import { MemoryRegionTraits } from "../memory/traits.ts";

/**
 * A pool's statistics (`pool.stats()`), a snapshot made on each call. Counts are since the pool was
 * made; a shared pool's figures are for every Worker sharing it.
 */
export interface PoolStats {
  /** The provider's name, e.g. `"tcp"`, `"shm"`, `"host"`. */
  readonly provider: string;
  /** Regions handed out: pooled gets, temporary regions and user regions. */
  readonly gets: number;
  /** Regions given back (pooled, temporary and user). */
  readonly releases: number;
  /** Pooled gets served from a stack as it stood. */
  readonly hits: number;
  /** Pooled gets that found their stack empty (each one grew it). */
  readonly misses: number;
  /** Blocks added to stacks after the pool was made. */
  readonly growths: number;
  /** Provider registrations made: blocks, temporary regions and user regions. */
  readonly registrations: number;
  /** Provider registrations undone. */
  readonly deregistrations: number;
  /** Temporary regions made so far (gets above the largest class). */
  readonly temporaryRegions: number;
  /** Temporary regions not yet released. */
  readonly liveTemporaryRegions: number;
  /** User regions made so far (`registerUserRegion`). */
  readonly userRegions: number;
  /** User regions not yet released. */
  readonly liveUserRegions: number;
  /** Regions out of the pool now (pooled, temporary and user). */
  readonly regionsInUse: number;
  /**
   * Pooled regions taken out of service because a caller moved their memory out of their view
   * (`region.view.buffer.transfer()`); never handed out again. Counted in no other figure.
   */
  readonly retiredRegions: number;
  /** Bytes pinned and registered now: blocks, temporary and user regions, and the registration cache. */
  readonly pinnedBytes: number;
  /** The most `pinnedBytes` has been. */
  readonly peakPinnedBytes: number;
  /** The pool's bound on `pinnedBytes` (`Infinity` when none was given). */
  readonly maxPinnedBytes: number;
  /** Each size class's own figures. */
  readonly stacks: Readonly<Record<SizeClass, StackStats>>;
  /** The registration cache behind `userRegion` (this thread's); null until its first use. */
  readonly cache: RegistrationCacheStats | null;
}

/** One region close() found still out. */
export interface LeakedRegion {
  /** Its size in bytes (a pooled region's class size, not the bytes asked for). */
  readonly size: number;
  /** Its size class, or `"temporary"` / `"user"` for regions outside the stacks. */
  readonly kind: SizeClass | "temporary" | "user";
  /** Where it was got: a stack trace when the pool has `debug: true`, else undefined. */
  readonly origin?: string | undefined;
}

/** What close() found still out. */
export interface LeakReport {
  /** Regions still in use when the pool closed. */
  readonly count: number;
  /** Their sizes added up, in bytes. */
  readonly bytes: number;
  /** Each one, pooled regions first. */
  readonly regions: ReadonlyArray<LeakedRegion>;
}

export function leakReport(regions: LeakedRegion[]): LeakReport {
  return { count: regions.length, bytes: regions.reduce((total, region) => total + region.size, 0), regions };
}

/** What a FinalizationRegistry needs to free an unclosed pool: no reference to the pool itself. */
export class PoolResources {
  readonly blocks: MemoryBlock[] = [];
  readonly registrations: Registration[] = [];
  constructor(readonly traits: MemoryRegionTraits) {}

  /**
   * Deregisters, then frees every block; one block failing (or a caller's transfer() of its
   * memory) never stops the others. Throws the first block error after all are done.
   */
  release(): void {
    for (const registration of this.registrations) try { this.traits.deregister(registration); } catch { /* provider gone */ }
    let firstError: unknown;
    for (const block of this.blocks) try { freeBlock(block, this.traits.provider); } catch (error) { firstError ??= error; }
    this.registrations.length = 0;
    this.blocks.length = 0;
    if (firstError !== undefined) throw firstError;
  }

  pinnedBytes(): number {
    return this.blocks.reduce((total, block) => total + (block.freed ? 0 : block.size), 0);
  }
}

/** Counters kept off the hot path: registrations, temporary and user regions, pinned bytes. */
export class PoolCounters {
  pinned = 0;
  peakPinned = 0;
  registrations = 0;
  deregistrations = 0;
  temporaryRegions = 0;
  temporaryGets = 0;
  userRegions = 0;
  /** Releases of temporary and user regions. */
  unpooledReleases = 0;
  /** Pooled regions out of service because their memory was transferred away from their views. */
  retiredRegions = 0;
}

/** Hook a shared pool installs: pinned bytes counted for every Worker, unpooled counters published. */
export interface PinnedLimit {
  reservePinned(bytes: number, what: string): void;
  addPinned(delta: number): void;
  publishCounters(): void;
}

export class PoolCore {
  readonly provider: RegionProvider;
  readonly traits: MemoryRegionTraits;
  readonly allocator: MemoryBlockAllocator;
  readonly maxPinnedBytes: number;
  readonly debug: boolean;
  readonly hugePages: HugePages;
  /** One stack per size class, in SIZE_CLASSES order. */
  readonly stacks: readonly MemoryPoolStack[];
  /** Every pooled region by index; a shared pool fills it lazily (undefined: not seen here yet). */
  readonly regions: (MemoryRegionImpl | undefined)[] = [];
  readonly temporaries = new Set<MemoryRegionImpl>();
  readonly users = new Set<MemoryRegionImpl>();
  readonly resources: PoolResources;
  readonly counters = new PoolCounters();
  /** The pool that takes the regions back. */
  owner: RegionOwner | null = null;
  /** Set once the pool is shared: the limit is then one for every Worker. */
  shared: PinnedLimit | null = null;
  /** The registration cache behind `userRegion` (this thread's), made at its first use. */
  cache: RegistrationCache | null = null;

  constructor(provider: RegionProvider, options: CheckedOptions) {
    this.provider = provider;
    this.traits = new MemoryRegionTraits(provider, options.access);
    this.allocator = new MemoryBlockAllocator({ hugePages: options.hugePages });
    this.maxPinnedBytes = options.maxPinnedBytes;
    this.debug = options.debug;
    this.hugePages = options.hugePages;
    this.resources = new PoolResources(this.traits);
    this.stacks = options.stacks.map((stack, sizeClass) =>
      new MemoryPoolStack(SIZE_CLASSES[sizeClass]!, sizeClass, stack.chunkSize, stack.initialCount, stack.growCount, stack.maxRegions));
  }

  /** Bytes a block of `count` regions of `stack` takes (the estimate when huge pages may fall back). */
  blockBytes(stack: MemoryPoolStack, count: number): number {
    return blockBytes(this.allocator, this.hugePages, stack.stride, count);
  }

  /** The initial blocks of every class; nothing stays pinned if one fails. */
  addInitialBlocks(): void {
    const initial = this.stacks.reduce((sum, stack) => sum + this.blockBytes(stack, stack.initialCount), 0);
    if (initial > this.maxPinnedBytes) {
      throw new AllocToolsRangeError(`the initial regions need ${initial} pinned bytes, more than maxPinnedBytes (${this.maxPinnedBytes})`);
    }
    try {
      for (const stack of this.stacks) if (stack.initialCount > 0) this.addBlock(stack, stack.initialCount);
    } catch (error) {
      this.resources.release();
      throw error;
    }
  }

  /** The stack is empty: add a block, serve the get from it. Undoes the get's counters on failure. */
  grow(stack: MemoryPoolStack): number {
    stack.misses++;
    try {
      this.addBlock(stack, stack.growCount);
    } catch (error) {
      stack.misses--;
      stack.gets--;
      throw error;
    }
    stack.growths++;
    stack.gets--; // the get was counted by the pop that found the stack empty
    return stack.pop();
  }

  /** Allocates, pins and registers one block of `count` regions for `stack` (unshared pools). */
  private addBlock(stack: MemoryPoolStack, count: number): void {
    const { block, registration } = this.newRegisteredBlock(this.blockBytes(stack, count), `growing the ${stack.name} stack`);
    this.resources.blocks.push(block);
    this.resources.registrations.push(registration);
    stack.blocks++;
    stack.pinnedBytes += block.size;
    const first = this.regions.length;
    for (let position = 0; position < count; position++) {
      // A buffer of its own per region: a transfer() of one region's view moves only that region.
      const view = block.regionView(position * stack.stride, stack.chunkSize);
      this.regions.push(this.pooledRegion(registration, block.address, view, stack, first + position, position * stack.stride));
    }
    stack.addRegions(first, count);
  }

  /** The region object for pooled region `index`, `offset` bytes into its block. */
  pooledRegion(registration: Registration, blockAddress: number, view: Uint8Array, stack: MemoryPoolStack, index: number, offset: number): MemoryRegionImpl {
    const address = blockAddress + offset;
    return new MemoryRegionImpl(registration, address, stack.chunkSize, RegionFlag.PARTIAL, this.traits.remoteAddress(registration, address),
      view, this.owner, index, stack.id, null);
  }

  /**
   * Reserves `bytes` against maxPinnedBytes, then maps, pins and registers a block: the one way
   * memory enters an unshared pool. On failure nothing stays reserved, mapped or registered.
   */
  newRegisteredBlock(bytes: number, what: string): { block: MemoryBlock; registration: Registration } {
    this.reservePinned(bytes, what);
    let block: MemoryBlock | undefined;
    try {
      // A provider may supply the block itself, allocated and registered (UCX on shared memory).
      const provided = this.traits.provider.closed ? undefined : this.traits.provider.allocateBlock?.(bytes);
      block = provided ? new ProvidedMemoryBlock(provided) : this.allocator.allocate(bytes);
      const registration = provided ? provided.registration : this.traits.register(block.address, block.size);
      this.addPinned(block.size - bytes); // huge pages round up, or "try" fell back to smaller pages
      this.counters.registrations++;
      return { block, registration };
    } catch (error) {
      block?.free();
      this.addPinned(-bytes);
      throw error;
    }
  }

  /** A temporary region of `bytes` bytes (above the largest class), registered now. */
  temporaryRegion(bytes: number, block: MemoryBlock, registration: Registration): MemoryRegionImpl {
    this.counters.temporaryRegions++;
    this.counters.temporaryGets++;
    const region = new MemoryRegionImpl(registration, block.address, bytes, RegionFlag.TEMP,
      this.traits.remoteAddress(registration, block.address), block.regionView(0, bytes), this.owner, -1, -1, block);
    setInUse(region, true);
    if (this.debug) setOrigin(region, new Error("temporary region got here").stack);
    this.temporaries.add(region);
    return region;
  }

  getTemporary(bytes: number): MemoryRegionImpl {
    const { block, registration } = this.newRegisteredBlock(this.allocator.roundUp(bytes), `temporary region of ${bytes} bytes`);
    const region = this.temporaryRegion(bytes, block, registration);
    this.shared?.publishCounters();
    return region;
  }

  /** The caller's memory as a byte view, checked. */
  static userView(memory: UserMemoryInput): Uint8Array {
    return checkUserMemory("registerUserRegion", memory).view;
  }


  /** Registers the caller's memory (reserved against maxPinnedBytes; undone on failure). */
  registerUser(view: Uint8Array): Registration {
    this.reservePinned(view.byteLength, "user region");
    try {
      return this.traits.register(ptr(view), view.byteLength);
    } catch (error) {
      this.addPinned(-view.byteLength);
      throw error;
    }
  }

  userRegion(view: Uint8Array, registration: Registration, memory: object): MemoryRegionImpl {
    this.counters.registrations++;
    this.counters.userRegions++;
    const region = new MemoryRegionImpl(registration, registration.address, view.byteLength, RegionFlag.USER,
      this.traits.remoteAddress(registration, registration.address), view, this.owner, -1, -1, memory);
    setInUse(region, true);
    if (this.debug) setOrigin(region, new Error("user region registered here").stack);
    this.users.add(region);
    return region;
  }

  /** Books of a released temporary or user region; the caller deregisters (and unmaps) it. */
  forgetUnpooled(region: MemoryRegionImpl): void {
    setInUse(region, false);
    (region.isTemp ? this.temporaries : this.users).delete(region);
    this.counters.unpooledReleases++;
    this.counters.deregistrations++;
    this.addPinned(-unpooledBytes(region));
  }

  /** Deregisters (and for temporary regions unmaps) a unpooled region; `deregister` false: only unmaps. */
  static freeUnpooled(traits: MemoryRegionTraits, region: MemoryRegionImpl, deregister: boolean): void {
    try {
      if (deregister) traits.deregister(region.registration);
    } finally {
      if (region.isTemp) freeBlock(temporaryBlock(region), traits.provider);
    }
  }

  /** The registration cache behind `userRegion`; its registered bytes count in maxPinnedBytes. */
  userCache(): RegistrationCache {
    return (this.cache ??= new RegistrationCache(this.provider, {
      access: this.traits.access,
      budget: { reserve: (bytes, what) => this.reservePinned(bytes, what), release: (bytes) => this.addPinned(-bytes) },
    }));
  }

  /** Closes the registration cache (its regions out are in the leak report); its first error. */
  closeCache(): unknown {
    try { this.cache?.close(); } catch (error) { return error; }
    return undefined;
  }

  /** Evicts unused cached registrations worth `bytes`; whether any were freed. */
  private roomFromCache(bytes: number): boolean {
    return this.cache !== null && this.cache.evictBytes(bytes) > 0;
  }

  reservePinned(bytes: number, what: string): void {
    if (this.shared !== null) {
      try {
        return this.shared.reservePinned(bytes, what);
      } catch (error) {
        if (!this.roomFromCache(bytes)) throw error;
        return this.shared.reservePinned(bytes, what);
      }
    }
    const counters = this.counters;
    if (counters.pinned + bytes > this.maxPinnedBytes && !(this.roomFromCache(counters.pinned + bytes - this.maxPinnedBytes) && counters.pinned + bytes <= this.maxPinnedBytes)) {
      throw new AllocToolsError("PINNED_LIMIT",
        `${what} needs ${bytes} more pinned bytes; ${counters.pinned} of maxPinnedBytes ${this.maxPinnedBytes} are in use`);
    }
    counters.pinned += bytes;
    if (counters.pinned > counters.peakPinned) counters.peakPinned = counters.pinned;
  }

  addPinned(delta: number): void {
    if (this.shared !== null) return this.shared.addPinned(delta);
    const counters = this.counters;
    counters.pinned += delta;
    if (counters.pinned > counters.peakPinned) counters.peakPinned = counters.pinned;
  }

  /** Temporary and user regions still out. */
  unpooledLeaks(): LeakedRegion[] {
    const out: LeakedRegion[] = [];
    for (const region of this.temporaries) out.push({ size: region.size, kind: "temporary", origin: region.origin });
    for (const region of this.users) out.push({ size: region.size, kind: "user", origin: region.origin });
    for (const region of this.cache?.regionsInUse() ?? []) out.push({ size: region.size, kind: "user" });
    return out;
  }

  /** Statistics of an unshared pool. */
  localStats(): PoolStats {
    const stacks = {} as Record<SizeClass, StackStats>;
    const counters = this.counters;
    let gets = counters.temporaryGets + counters.userRegions;
    let releases = counters.unpooledReleases;
    let hits = 0;
    let misses = 0;
    let growths = 0;
    let inUse = this.temporaries.size + this.users.size;
    for (const stack of this.stacks) {
      const classStats = (stacks[stack.name] = stack.stats());
      gets += classStats.gets; releases += classStats.releases; hits += classStats.hits; misses += classStats.misses; growths += classStats.growths; inUse += classStats.inUse;
    }
    return {
      provider: this.provider.name, gets, releases, hits, misses, growths,
      registrations: counters.registrations, deregistrations: counters.deregistrations,
      temporaryRegions: counters.temporaryRegions, liveTemporaryRegions: this.temporaries.size,
      userRegions: counters.userRegions, liveUserRegions: this.users.size,
      regionsInUse: inUse - counters.retiredRegions, retiredRegions: counters.retiredRegions,
      pinnedBytes: counters.pinned, peakPinnedBytes: counters.peakPinned,
      maxPinnedBytes: this.maxPinnedBytes, stacks, cache: this.cache?.stats() ?? null,
    };
  }

  /** Closes an unshared pool: everything deregistered and unmapped. Returns what was still out. */
  closeLocal(): LeakReport {
    const out: LeakedRegion[] = [];
    for (const region of this.regions) if (region?.inUse) out.push({ size: region.size, kind: SIZE_CLASSES[region.stackId]!, origin: region.origin });
    out.push(...this.unpooledLeaks());
    for (const region of this.regions) if (region !== undefined) setInUse(region, false);
    for (const stack of this.stacks) stack.clear();
    let firstError = this.closeCache();
    this.counters.deregistrations += this.resources.registrations.length + this.temporaries.size + this.users.size;
    for (const region of [...this.temporaries, ...this.users]) {
      setInUse(region, false);
      try { PoolCore.freeUnpooled(this.traits, region, true); } catch (error) { firstError ??= error; }
    }
    this.temporaries.clear();
    this.users.clear();
    try { this.resources.release(); } catch (error) { firstError ??= error; }
    this.counters.pinned = 0;
    if (firstError !== undefined) throw firstError;
    return leakReport(out);
  }
}

/** Pinned bytes a temporary or user region holds. */
/**
 * Bytes a pool made with these options pins before its first get: each class's `initialCount`
 * regions, in blocks rounded as the pool rounds them (3.75 MiB for the defaults).
 */
export function initialPinnedBytes(options: CheckedOptions): number {
  const allocator = new MemoryBlockAllocator({ hugePages: options.hugePages });
  return options.stacks.reduce((sum, stack) => sum + blockBytes(allocator, options.hugePages, regionStride(stack.chunkSize), stack.initialCount), 0);
}

/** Bytes a block of `count` regions `stride` apart takes once rounded to (huge) pages. */
function blockBytes(allocator: MemoryBlockAllocator, hugePages: HugePages, stride: number, count: number): number {
  return allocator.roundUp(stride * count, usesHugeTlb(hugePages));
}

export function unpooledBytes(region: MemoryRegionImpl): number {
  return region.isTemp ? temporaryBlock(region).size : region.size;
}

/** The block a temporary region owns (what it keeps alive). */
export function temporaryBlock(region: MemoryRegionImpl): MemoryBlock {
  return keepAliveOf(region) as MemoryBlock;
}

/**
 * Frees a block: unmapped, or, where peers may still write to the pool's own memory after its
 * deregistration (the provider's `keepsFreedMemoryMapped`, UCX), its range kept mapped over fresh
 * zero pages. Memory the provider supplied goes back to it (UCX-allocated memory is one-sided on
 * shared memory: a stale peer writes into its own mapping of the segment).
 */
function freeBlock(block: MemoryBlock, provider: RegionProvider): void {
  if (provider.keepsFreedMemoryMapped === true && !(block instanceof ProvidedMemoryBlock)) block.freeKeepingRange();
  else block.free();
}
