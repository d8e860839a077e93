// The memory pool: four size-class stacks of pre-registered regions. A get pops a region that is
// already registered, so the hot path is a few field reads and no system call. Stacks grow a block
// at a time (one registration per block); requests above the huge class get temporary regions.
import { ptr } from "bun:ffi";
import { MemoryBlockAllocator, type HugePages, type MemoryBlock } from "./block.ts";
import { AllocToolsError } from "./errors.ts";
import { DEFAULT_ACCESS, type RegionProvider, type Registration } from "./provider.ts";
import { MemoryRegionImpl, RegionFlag, type MemoryRegion, type RegionOwner } from "./region.ts";
import { MemoryPoolStack, SIZE_CLASSES, type SizeClass, type StackStats } from "./stack.ts";
import { MemoryRegionTraits } from "./traits.ts";

export interface MemoryPoolStackOptions {
  /** Bytes per region in this class. */
  chunkSize?: number;
  /** Regions registered when the pool is made. */
  initialCount?: number;
  /** Regions added per growth (one block, one registration). Default: initialCount, at least 1. */
  growCount?: number;
}

export interface MemoryPoolOptions {
  small?: MemoryPoolStackOptions;
  medium?: MemoryPoolStackOptions;
  large?: MemoryPoolStackOptions;
  huge?: MemoryPoolStackOptions;
  /** Upper bound on pinned/registered bytes (blocks, temporary and user regions). Default: no bound. */
  maxPinnedBytes?: number;
  /** Access flags for every registration; default read, write, send, recv, remote read, remote write. */
  access?: number;
  /** Back blocks with huge pages; default false. */
  hugePages?: HugePages;
  /** Record where each region was got from, for leak reports. Default false. */
  debug?: boolean;
}

/**
 * Defaults: 3.75 MiB pinned in all, inside the 8 MiB RLIMIT_MEMLOCK that unprivileged users
 * commonly have, with room for growth and temporary regions.
 */
export const DEFAULT_STACKS: Readonly<Record<SizeClass, Required<MemoryPoolStackOptions>>> = {
  small: { chunkSize: 1024, initialCount: 256, growCount: 256 },
  medium: { chunkSize: 16 * 1024, initialCount: 32, growCount: 32 },
  large: { chunkSize: 64 * 1024, initialCount: 16, growCount: 16 },
  huge: { chunkSize: 1024 * 1024, initialCount: 2, growCount: 2 },
};

export interface PoolStats {
  readonly provider: string;
  readonly gets: number;
  readonly releases: number;
  readonly hits: number;
  readonly misses: number;
  readonly growths: number;
  readonly registrations: number;
  readonly deregistrations: number;
  /** Temporary regions made so far, and live now. */
  readonly temporaryRegions: number;
  readonly liveTemporaryRegions: number;
  /** User regions made so far, and live now. */
  readonly userRegions: number;
  readonly liveUserRegions: number;
  /** Regions out of the pool now (pooled, temporary and user). */
  readonly regionsInUse: number;
  readonly pinnedBytes: number;
  readonly peakPinnedBytes: number;
  readonly maxPinnedBytes: number;
  readonly stacks: Readonly<Record<SizeClass, StackStats>>;
}

/** What close() found still out. */
export interface LeakReport {
  /** Regions still in use when the pool closed. */
  readonly count: number;
  readonly bytes: number;
  readonly regions: ReadonlyArray<{ readonly size: number; readonly kind: SizeClass | "temporary" | "user"; readonly origin?: string }>;
}

/** What a FinalizationRegistry needs to free an unclosed pool: no reference to the pool itself. */
class PoolResources {
  readonly blocks: MemoryBlock[] = [];
  readonly registrations: Registration[] = [];
  constructor(readonly traits: MemoryRegionTraits) {}

  release(): void {
    for (const reg of this.registrations) try { this.traits.deregister(reg); } catch { /* provider gone */ }
    for (const block of this.blocks) block.free();
    this.registrations.length = 0;
    this.blocks.length = 0;
  }
}

const backstop = new FinalizationRegistry<{ resources: PoolResources; pinnedBytes: () => number }>((held) => {
  const bytes = held.pinnedBytes();
  held.resources.release();
  process.emitWarning(`alloctools: a MemoryPool was garbage-collected without close(); freed ${bytes} pinned bytes`, "AllocToolsLeak");
});

export class MemoryPool implements RegionOwner, Disposable {
  readonly provider: RegionProvider;
  readonly traits: MemoryRegionTraits;
  readonly allocator: MemoryBlockAllocator;
  readonly small: MemoryPoolStack;
  readonly medium: MemoryPoolStack;
  readonly large: MemoryPoolStack;
  readonly huge: MemoryPoolStack;
  readonly maxPinnedBytes: number;
  readonly debug: boolean;
  private readonly hugePages: boolean;
  // Chunk sizes as fields: routing reads them without touching the stacks.
  private readonly smallSize: number;
  private readonly mediumSize: number;
  private readonly largeSize: number;
  private readonly hugeSize: number;
  private readonly stacks: readonly MemoryPoolStack[];
  /** Every pooled region by index. */
  private readonly regions: MemoryRegionImpl[] = [];
  private readonly temporaries = new Set<MemoryRegionImpl>();
  private readonly users = new Set<MemoryRegionImpl>();
  private readonly resources: PoolResources;
  private closed_ = false;
  // Books kept off the hot path (growth, temporary and user regions).
  private pinned = 0;
  private peakPinned = 0;
  private registrationCount = 0;
  private deregistrationCount = 0;
  private temporaryCount = 0;
  private temporaryGets = 0;
  private userCount = 0;
  private sideReleases = 0;

  constructor(provider: RegionProvider, options: MemoryPoolOptions = {}) {
    if (provider === null || typeof provider !== "object" || typeof provider.register !== "function") {
      throw new TypeError("MemoryPool needs a RegionProvider (HostProvider, LibfabricProvider, or openProvider())");
    }
    if (provider.closed) throw new AllocToolsError("PROVIDER_CLOSED", `provider ${provider.name} is closed`);
    const o = checkOptions(options);
    this.provider = provider;
    this.traits = new MemoryRegionTraits(provider, o.access);
    this.allocator = new MemoryBlockAllocator({ hugePages: o.hugePages });
    this.maxPinnedBytes = o.maxPinnedBytes;
    this.debug = o.debug;
    this.hugePages = o.hugePages !== false;
    this.resources = new PoolResources(this.traits);
    const make = (name: SizeClass, id: number) => {
      const s = o.stacks[name];
      return new MemoryPoolStack(name, id, s.chunkSize, s.initialCount, s.growCount);
    };
    this.small = make("small", 0);
    this.medium = make("medium", 1);
    this.large = make("large", 2);
    this.huge = make("huge", 3);
    this.stacks = [this.small, this.medium, this.large, this.huge];
    this.smallSize = this.small.chunkSize;
    this.mediumSize = this.medium.chunkSize;
    this.largeSize = this.large.chunkSize;
    this.hugeSize = this.huge.chunkSize;
    const initial = this.stacks.reduce((sum, s) => sum + this.blockBytes(s, s.initialCount), 0);
    if (initial > this.maxPinnedBytes) {
      throw new RangeError(`the initial regions need ${initial} pinned bytes, more than maxPinnedBytes (${this.maxPinnedBytes})`);
    }
    try {
      for (const s of this.stacks) if (s.initialCount > 0) this.addBlock(s, s.initialCount);
    } catch (e) {
      this.resources.release();
      throw e;
    }
    backstop.register(this, { resources: this.resources, pinnedBytes: pinnedBytesOf(this.resources) }, this);
  }

  get closed(): boolean {
    return this.closed_;
  }

  /**
   * A registered region of at least `bytes` bytes: from the smallest size class that fits, or a
   * temporary region above the huge class. The same object comes back after a release (LIFO).
   */
  getRegion(bytes: number): MemoryRegion {
    // Fast path: a positive int32, an open pool, a pooled size. Everything else takes getSlow.
    if ((bytes | 0) !== bytes || bytes <= 0 || this.closed_ || bytes > this.hugeSize) return this.getSlow(bytes);
    const stack = bytes <= this.smallSize ? this.small
      : bytes <= this.mediumSize ? this.medium
      : bytes <= this.largeSize ? this.large
      : this.huge;
    let index = stack.pop();
    if (index < 0) index = this.grow(stack);
    const region = this.regions[index]!;
    region.inUse = true;
    region.length = bytes;
    if (this.debug) region.origin = new Error("region got here").stack;
    return region;
  }

  /** Gives a region back: pooled regions go on top of their stack, temporary and user ones are deregistered. */
  releaseRegion(region: MemoryRegion): void {
    const r = region as MemoryRegionImpl;
    if (r.owner !== this || !r.inUse || r.index < 0 || this.closed_) return this.releaseSlow(r);
    r.inUse = false;
    this.stacks[r.stackId]!.push(r.index);
  }

  /**
   * Registers the caller's memory as a user region: zero-copy, kept referenced while registered,
   * deregistered (never freed) on release.
   */
  registerUserRegion(memory: ArrayBuffer | SharedArrayBuffer | ArrayBufferView): MemoryRegion {
    this.assertOpen();
    let view: Uint8Array;
    if (memory instanceof ArrayBuffer || memory instanceof SharedArrayBuffer) view = new Uint8Array(memory);
    else if (ArrayBuffer.isView(memory)) view = new Uint8Array(memory.buffer, memory.byteOffset, memory.byteLength);
    else throw new TypeError("registerUserRegion takes an ArrayBuffer, SharedArrayBuffer or typed array/DataView");
    if (view.byteLength === 0) throw new RangeError("cannot register an empty buffer");
    this.reservePinned(view.byteLength, "user region");
    const address = ptr(view);
    let reg: Registration;
    try {
      reg = this.traits.register(address, view.byteLength);
    } catch (e) {
      this.pinned -= view.byteLength;
      throw e;
    }
    this.registrationCount++;
    this.userCount++;
    const region = new MemoryRegionImpl(reg, address, view.byteLength, RegionFlag.USER,
      this.traits.remoteAddress(reg, address), view, this, -1, -1, memory);
    region.inUse = true;
    if (this.debug) region.origin = new Error("user region registered here").stack;
    this.users.add(region);
    return region;
  }

  /** Statistics, exact at the moment of the call. */
  stats(): PoolStats {
    const stacks = Object.fromEntries(this.stacks.map((s) => [s.name, s.stats()])) as Record<SizeClass, StackStats>;
    let gets = this.temporaryGets + this.userCount;
    let releases = this.sideReleases;
    let hits = 0;
    let misses = 0;
    let growths = 0;
    let inUse = this.temporaries.size + this.users.size;
    for (const s of Object.values(stacks)) {
      gets += s.gets; releases += s.releases; hits += s.hits; misses += s.misses; growths += s.growths; inUse += s.inUse;
    }
    return {
      provider: this.provider.name, gets, releases, hits, misses, growths,
      registrations: this.registrationCount, deregistrations: this.deregistrationCount,
      temporaryRegions: this.temporaryCount, liveTemporaryRegions: this.temporaries.size,
      userRegions: this.userCount, liveUserRegions: this.users.size,
      regionsInUse: inUse, pinnedBytes: this.pinned, peakPinnedBytes: this.peakPinned,
      maxPinnedBytes: this.maxPinnedBytes, stacks,
    };
  }

  /**
   * Deregisters and unmaps everything. Returns the regions that were still in use; their views are
   * detached (length 0) so that a late access reads nothing. Idempotent: a second call reports nothing.
   */
  close(): LeakReport {
    if (this.closed_) return { count: 0, bytes: 0, regions: [] };
    const leaks = this.leaks();
    this.closed_ = true;
    backstop.unregister(this);
    for (const r of this.regions) r.inUse = false;
    for (const r of this.temporaries) r.inUse = false;
    for (const r of this.users) r.inUse = false;
    for (const s of this.stacks) s.clear();
    this.deregistrationCount += this.resources.registrations.length + this.temporaries.size + this.users.size;
    let firstError: unknown;
    for (const r of [...this.temporaries, ...this.users]) {
      try { this.traits.deregister(r.registration); } catch (e) { firstError ??= e; }
      if (r.isTemp) (r.keepAlive as MemoryBlock).free();
    }
    this.temporaries.clear();
    this.users.clear();
    try { this.resources.release(); } catch (e) { firstError ??= e; }
    this.pinned = 0;
    if (firstError !== undefined) throw firstError;
    return leaks;
  }

  /** `using pool = new MemoryPool(...)`: closes, and warns about regions still in use. */
  [Symbol.dispose](): void {
    const leaks = this.close();
    if (leaks.count > 0) {
      process.emitWarning(`alloctools: MemoryPool closed with ${leaks.count} region(s) (${leaks.bytes} bytes) still in use`, "AllocToolsLeak");
    }
  }

  /** The size class for `bytes`, or null above the huge class. */
  stackFor(bytes: number): MemoryPoolStack | null {
    for (const s of this.stacks) if (bytes <= s.chunkSize) return s;
    return null;
  }

  // ---- slow paths ---------------------------------------------------------------------------------

  private getSlow(bytes: number): MemoryRegion {
    checkSize(bytes);
    this.assertOpen();
    if (bytes > this.hugeSize) return this.getTemporary(bytes);
    // A valid pooled size beyond int32 cannot happen (huge chunks are int32), so route again.
    const stack = this.stackFor(bytes)!;
    let index = stack.pop();
    if (index < 0) index = this.grow(stack);
    const region = this.regions[index]!;
    region.inUse = true;
    region.length = bytes;
    if (this.debug) region.origin = new Error("region got here").stack;
    return region;
  }

  private releaseSlow(r: MemoryRegionImpl): void {
    if (!(r instanceof MemoryRegionImpl)) throw new TypeError("releaseRegion takes a MemoryRegion got from a pool");
    if (r.owner !== this) throw new AllocToolsError("FOREIGN_REGION", `region at 0x${r.address.toString(16)} belongs to another pool`);
    if (this.closed_) throw new AllocToolsError("POOL_CLOSED", "the region's pool is closed");
    r.assertInUse("releaseRegion");
    // Temporary or user region: deregister now.
    r.inUse = false;
    const set = r.isTemp ? this.temporaries : this.users;
    set.delete(r);
    this.sideReleases++;
    this.deregistrationCount++;
    this.pinned -= r.isTemp ? (r.keepAlive as MemoryBlock).size : r.size;
    try {
      this.traits.deregister(r.registration);
    } finally {
      if (r.isTemp) (r.keepAlive as MemoryBlock).free();
    }
  }

  private getTemporary(bytes: number): MemoryRegion {
    const size = this.allocator.roundUp(bytes);
    this.reservePinned(size, `temporary region of ${bytes} bytes`);
    let block: MemoryBlock | undefined;
    let reg: Registration;
    try {
      block = this.allocator.allocate(size);
      reg = this.traits.register(block.address, block.size);
    } catch (e) {
      block?.free();
      this.pinned -= size;
      throw e;
    }
    this.pinned += block.size - size; // rounded to huge pages
    if (this.pinned > this.peakPinned) this.peakPinned = this.pinned;
    this.registrationCount++;
    this.temporaryCount++;
    this.temporaryGets++;
    const region = new MemoryRegionImpl(reg, block.address, bytes, RegionFlag.TEMP,
      this.traits.remoteAddress(reg, block.address), block.view.subarray(0, bytes), this, -1, -1, block);
    region.inUse = true;
    if (this.debug) region.origin = new Error("temporary region got here").stack;
    this.temporaries.add(region);
    return region;
  }

  /** The stack is empty: add a block, serve the get from it. Undoes the get's books on failure. */
  private grow(stack: MemoryPoolStack): number {
    stack.misses++;
    try {
      this.addBlock(stack, stack.growCount);
    } catch (e) {
      stack.misses--;
      stack.gets--;
      throw e;
    }
    stack.growths++;
    stack.gets--; // the get was counted by the pop that found the stack empty
    return stack.pop();
  }

  /** Bytes a block of `count` regions of `stack` takes (the estimate when huge pages may fall back). */
  private blockBytes(stack: MemoryPoolStack, count: number): number {
    return this.allocator.roundUp(stack.stride * count, this.hugePages);
  }

  /** Allocates, pins and registers one block of `count` regions for `stack`. */
  private addBlock(stack: MemoryPoolStack, count: number): void {
    const bytes = this.blockBytes(stack, count);
    this.reservePinned(bytes, `growing the ${stack.name} stack`);
    let block: MemoryBlock | undefined;
    let reg: Registration;
    try {
      block = this.allocator.allocate(bytes);
      reg = this.traits.register(block.address, block.size);
    } catch (e) {
      block?.free();
      this.pinned -= bytes;
      throw e;
    }
    this.pinned += block.size - bytes; // huge pages "try" may have fallen back to smaller pages
    this.resources.blocks.push(block);
    this.resources.registrations.push(reg);
    this.registrationCount++;
    stack.blocks++;
    stack.pinnedBytes += block.size;
    const first = this.regions.length;
    const buffer = block.view.buffer;
    for (let i = 0; i < count; i++) {
      const address = block.address + i * stack.stride;
      const view = new Uint8Array(buffer, i * stack.stride, stack.chunkSize);
      this.regions.push(new MemoryRegionImpl(reg, address, stack.chunkSize, RegionFlag.PARTIAL,
        this.traits.remoteAddress(reg, address), view, this, first + i, stack.id, null));
    }
    stack.addRegions(first, count);
  }

  private reservePinned(bytes: number, what: string): void {
    if (this.pinned + bytes > this.maxPinnedBytes) {
      throw new AllocToolsError("PINNED_LIMIT",
        `${what} needs ${bytes} more pinned bytes; ${this.pinned} of maxPinnedBytes ${this.maxPinnedBytes} are in use`);
    }
    this.pinned += bytes;
    if (this.pinned > this.peakPinned) this.peakPinned = this.pinned;
  }

  private assertOpen(): void {
    if (this.closed_) throw new AllocToolsError("POOL_CLOSED", "the pool is closed");
  }

  private leaks(): LeakReport {
    const out: { size: number; kind: SizeClass | "temporary" | "user"; origin?: string }[] = [];
    for (const r of this.regions) if (r.inUse) out.push({ size: r.size, kind: SIZE_CLASSES[r.stackId]!, origin: r.origin });
    for (const r of this.temporaries) out.push({ size: r.size, kind: "temporary", origin: r.origin });
    for (const r of this.users) out.push({ size: r.size, kind: "user", origin: r.origin });
    return { count: out.length, bytes: out.reduce((n, r) => n + r.size, 0), regions: out };
  }
}

function pinnedBytesOf(resources: PoolResources): () => number {
  return () => resources.blocks.reduce((n, b) => n + (b.freed ? 0 : b.size), 0);
}

/** Throws TypeError/RangeError for anything but a positive safe integer. */
export function checkSize(bytes: unknown): asserts bytes is number {
  if (typeof bytes !== "number") throw new TypeError(`size must be a number, got ${typeof bytes}`);
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new RangeError(`size must be a positive integer, got ${bytes}`);
}

interface CheckedOptions {
  stacks: Record<SizeClass, Required<MemoryPoolStackOptions>>;
  maxPinnedBytes: number;
  access: number;
  hugePages: HugePages;
  debug: boolean;
}

function checkOptions(o: MemoryPoolOptions): CheckedOptions {
  if (o === null || typeof o !== "object") throw new TypeError("MemoryPool options must be an object");
  const stacks = {} as Record<SizeClass, Required<MemoryPoolStackOptions>>;
  let previous = 0;
  for (const name of SIZE_CLASSES) {
    const given = o[name] ?? {};
    if (typeof given !== "object" || given === null) throw new TypeError(`options.${name} must be an object`);
    const d = DEFAULT_STACKS[name];
    const chunkSize = given.chunkSize ?? d.chunkSize;
    const initialCount = given.initialCount ?? d.initialCount;
    const growCount = given.growCount ?? Math.max(1, given.initialCount ?? d.growCount);
    for (const [key, v, min] of [["chunkSize", chunkSize, 1], ["initialCount", initialCount, 0], ["growCount", growCount, 1]] as const) {
      if (typeof v !== "number") throw new TypeError(`options.${name}.${key} must be a number, got ${typeof v}`);
      if (!Number.isInteger(v) || v < min || v > 0x7fff_ffff) throw new RangeError(`options.${name}.${key} must be an integer in [${min}, 2^31), got ${v}`);
    }
    if (chunkSize <= previous) {
      throw new RangeError(`options.${name}.chunkSize (${chunkSize}) must be larger than the class below it (${previous})`);
    }
    previous = chunkSize;
    stacks[name] = { chunkSize, initialCount, growCount };
  }
  const maxPinnedBytes = o.maxPinnedBytes ?? Infinity;
  if (typeof maxPinnedBytes !== "number" || Number.isNaN(maxPinnedBytes) || maxPinnedBytes <= 0) {
    throw new RangeError(`options.maxPinnedBytes must be a positive number, got ${String(maxPinnedBytes)}`);
  }
  const access = o.access ?? DEFAULT_ACCESS;
  const hugePages = o.hugePages ?? false;
  if (hugePages !== true && hugePages !== false && hugePages !== "try") throw new TypeError(`options.hugePages must be true, false or "try"`);
  if (o.debug !== undefined && typeof o.debug !== "boolean") throw new TypeError("options.debug must be a boolean");
  return { stacks, maxPinnedBytes, access, hugePages, debug: o.debug ?? false };
}
