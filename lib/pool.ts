// The memory pool: four size-class stacks of pre-registered regions. A get pops a region that is
// already registered, so the hot path is a few field reads and no system call. Stacks grow a block
// at a time (one registration per block); requests above the huge class get temporary regions.
// share() moves the stacks and books into shared memory for Workers (MemoryPool.attach); the
// unshared hot path pays one branch on `shared` for it.
import { toArrayBuffer, type Pointer } from "bun:ffi";
import * as libc from "../ffi/libc.ts";
import { MemoryBlockAllocator, type HugePages, type MemoryBlock } from "./block.ts";
import { AllocToolsError } from "./errors.ts";
import { busyError } from "./local-memory.ts";
import { checkRegionMemory, checkUserMemory, type UserMemoryInput } from "./user-memory.ts";
import type { RegionProvider, Registration } from "./provider.ts";
import {
  checkIn, checkOut, keepAliveOf, MemoryRegionImpl, RegionFlag, retire, setInUse, setOrigin, type MemoryRegion, type RegionOwner,
} from "./region.ts";
import { AttachedProvider, shareProvider, type SharedProviderHandle } from "./shared-provider.ts";
import {
  BOOK_GROWTHS, BOOK_MISSES, C_CLOSED, C_ENTRIES, C_GETS, C_RELEASES, IN_USE, SIDE, SharedPoolState, type SharedAudit, type SharedLayoutSpec,
} from "./shared-pool-state.ts";
import { WeakChild } from "./provider-child.ts";
import { MemoryPoolStack, SIZE_CLASSES, type SizeClass, type StackStats } from "./stack.ts";
import { checkOptions, checkSize, type MemoryPoolOptions, type MemoryPoolStackOptions } from "./pool-options.ts";
import { MemoryRegionTraits } from "./traits.ts";

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
  /**
   * Pooled regions taken out of service because a caller moved their memory out of their view
   * (`region.view.buffer.transfer()`); never handed out again. Counted in no other figure.
   */
  readonly retiredRegions: number;
  readonly pinnedBytes: number;
  readonly peakPinnedBytes: number;
  readonly maxPinnedBytes: number;
  readonly stacks: Readonly<Record<SizeClass, StackStats>>;
}

/** Options of the first `share()` (later calls return the same shared pool). */
export interface ShareOptions {
  /** How many pools (owner included) may attach over the pool's life. Default 64. */
  maxWorkers?: number;
  /**
   * Free regions each Worker keeps per size class in front of the shared stack: gets and releases
   * of a hot region stay off the shared head. 0 turns the cache off. Default 16.
   */
  cacheSize?: number;
}

/** What `MemoryPool.attach` needs in a Worker: SharedArrayBuffers, numbers and strings only. */
export interface SharedPoolHandle {
  readonly kind: "alloctools.MemoryPool";
  readonly buffer: SharedArrayBuffer;
  readonly layout: SharedLayoutSpec;
  readonly provider: SharedProviderHandle;
  readonly options: {
    readonly maxPinnedBytes: number;
    readonly access: number;
    readonly hugePages: HugePages;
    readonly debug: boolean;
  };
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

  /**
   * Deregisters, then frees every block; one block failing (or a caller's transfer() of its
   * memory) never stops the others. Throws the first block error after all are done.
   */
  release(): void {
    for (const reg of this.registrations) try { this.traits.deregister(reg); } catch { /* provider gone */ }
    let firstError: unknown;
    for (const block of this.blocks) try { block.free(); } catch (e) { firstError ??= e; }
    this.registrations.length = 0;
    this.blocks.length = 0;
    if (firstError !== undefined) throw firstError;
  }
}

const backstop = new FinalizationRegistry<{ resources: PoolResources; pinnedBytes: () => number; link: WeakChild<MemoryPool> }>((held) => {
  const bytes = held.pinnedBytes();
  held.link.unlink();
  held.resources.release();
  process.emitWarning(`alloctools: a MemoryPool was garbage-collected without close(); freed ${bytes} pinned bytes`, "AllocToolsLeak");
});

const EMPTY_I32 = new Int32Array(0);
const EMPTY_F64 = new Float64Array(0);

/** Set by MemoryPool.attach for the one constructor call it makes. */
let attaching: { handle: SharedPoolHandle; state: SharedPoolState } | null = null;

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
  private readonly hugePagesOption: HugePages;
  // Chunk sizes as fields: routing reads them without touching the stacks.
  private readonly smallSize: number;
  private readonly mediumSize: number;
  private readonly largeSize: number;
  private readonly hugeSize: number;
  private readonly stacks: readonly MemoryPoolStack[];
  /** Every pooled region by index; a shared pool fills it lazily (undefined: not seen here yet). */
  private readonly regions: (MemoryRegionImpl | undefined)[] = [];
  private readonly temporaries = new Set<MemoryRegionImpl>();
  private readonly users = new Set<MemoryRegionImpl>();
  private readonly resources: PoolResources;
  private closed_ = false;
  /** Closed because its provider closed: refusals say PROVIDER_CLOSED. */
  private closedByProvider = false;
  /** The provider's weak handle on this pool (it closes the pool when it closes); null when attached. */
  private providerLink: WeakChild<MemoryPool> | null = null;
  // Books kept off the hot path (growth, temporary and user regions).
  private pinned = 0;
  private peakPinned = 0;
  private registrationCount = 0;
  private deregistrationCount = 0;
  private temporaryCount = 0;
  private temporaryGets = 0;
  private userCount = 0;
  private sideReleases = 0;
  /** Pooled regions out of service because their memory was transferred away from their views. */
  private retiredCount = 0;
  /** The shared part once share()d or attached; null for an unshared pool (the hot path's one branch). */
  private shared: SharedPoolState | null = null;
  /** This thread's buffer over each shared block (toArrayBuffer once per block), by block index. */
  private readonly blockBuffers: (ArrayBuffer | undefined)[] = [];
  /** This thread's Registration object per shared block. */
  private readonly blockRegistrations: (Registration | undefined)[] = [];
  /** Blocks this pool mapped itself while shared; an attached pool keeps them (the owner unmaps). */
  private readonly grownHere: MemoryBlock[] = [];
  private handle_: SharedPoolHandle | null = null;
  // The shared hot path's words, copied out of `shared` so a get or release reads no other object
  // (always typed arrays, so the JIT sees one type; empty while unshared).
  private sI32: Int32Array = EMPTY_I32;
  private sF64: Float64Array = EMPTY_F64;
  private sStateAt = 0;
  private sStateBits = 0;
  private sCacheAt = 0;
  private sCacheStride = 0;
  private sCacheSize = 0;
  private readonly attached: boolean;

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
    this.hugePagesOption = o.hugePages;
    this.resources = new PoolResources(this.traits);
    const make = (name: SizeClass, id: number) => {
      const s = o.stacks[name];
      return new MemoryPoolStack(name, id, s.chunkSize, s.initialCount, s.growCount, s.maxRegions);
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
    const joining = attaching;
    attaching = null;
    this.attached = joining !== null;
    if (joining !== null) {
      // An attached pool: the owner's blocks and stacks, nothing registered here yet.
      this.bindShared(joining.state);
      this.handle_ = joining.handle;
      this.fillRegionTable(joining.state);
      // The blocks that exist now get their views and region objects here, before any get: made
      // lazily inside the first gets, they leave the JIT a slower hot path (2 ns per pair, measured).
      // Blocks grown later are materialized when this thread first pops one of their regions.
      // Only published blocks: another Worker may be between reserving indices and publishing.
      for (let b = 0; b < joining.state.blockCount; b++) {
        const block = joining.state.block(b);
        if (block !== null) for (let i = block.first; i < block.first + block.count; i++) this.materialize(joining.state, i);
      }
      return;
    }
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
    const link = new WeakChild<MemoryPool>(provider, this, closePoolWithProvider);
    this.providerLink = link;
    backstop.register(this, { resources: this.resources, pinnedBytes: pinnedBytesOf(this.resources), link }, this);
  }

  get closed(): boolean {
    return this.closed_ || (this.shared !== null && this.shared.closed);
  }

  /**
   * A registered region of at least `bytes` bytes: from the smallest size class that fits, or a
   * temporary region above the huge class. The same object comes back after a release (LIFO),
   * unless its memory was moved out of its view (`view.buffer.transfer()`): such a region is
   * retired, and a get never hands out a view of length 0.
   */
  getRegion(bytes: number): MemoryRegion {
    // Fast path: a positive int32, an open pool, a pooled size. Everything else takes getSlow.
    if ((bytes | 0) !== bytes || bytes <= 0 || this.closed_ || bytes > this.hugeSize) return this.getSlow(bytes);
    const stack = bytes <= this.smallSize ? this.small
      : bytes <= this.mediumSize ? this.medium
      : bytes <= this.largeSize ? this.large
      : this.huge;
    if (this.shared !== null) return this.getShared(stack, bytes);
    let index = stack.pop();
    if (index < 0) index = this.grow(stack);
    const region = this.regions[index]!;
    if (region.view.byteLength === 0) return this.getPastRetired(stack, region, bytes);
    checkOut(region, bytes);
    if (this.debug) setOrigin(region, new Error("region got here").stack);
    return region;
  }

  /**
   * Gives a region back: pooled regions go on top of their stack, temporary and user ones are
   * deregistered (a temporary one unmapped). While an RMA operation still uses the region it
   * refuses with AllocToolsError BUSY and changes nothing: the region stays out, release it again
   * once the operation has completed, failed or been cancelled. Only regions this library made are
   * taken (by identity): anything else is FOREIGN_REGION or a TypeError.
   */
  releaseRegion(region: MemoryRegion): void {
    if (this.closed_ || !checkIn(region, this)) return this.releaseSlow(region);
    const r = region as MemoryRegionImpl;
    if (this.shared !== null) return this.releaseShared(r);
    this.stacks[r.stackId]!.push(r.index);
  }

  /**
   * Registers the caller's memory as a user region: zero-copy, kept referenced while registered,
   * deregistered (never freed) on release. The region's view is fixed at the bytes registered.
   * Refused (TypeError, nothing registered): a resizable ArrayBuffer or a view of one, since it could
   * shrink under the registration (a growable SharedArrayBuffer only grows: registered at its length
   * now). A buffer detached (transferred away) while registered is found at the region's next use
   * (RMA, `pointer().view()`, `remote()`, release), which fails with AllocToolsError DETACHED; the
   * release still deregisters it. See lib/user-memory.ts.
   */
  registerUserRegion(memory: UserMemoryInput): MemoryRegion {
    this.assertOpen();
    const user = checkUserMemory("registerUserRegion", memory);
    const { address, byteLength } = user;
    this.reservePinned(byteLength, "user region");
    let reg: Registration;
    try {
      reg = this.traits.register(address, byteLength);
    } catch (e) {
      this.addPinned(-byteLength);
      throw e;
    }
    this.registrationCount++;
    this.userCount++;
    const region = new MemoryRegionImpl(reg, address, byteLength, RegionFlag.USER,
      this.traits.remoteAddress(reg, address), user.view, this, -1, -1, memory);
    setInUse(region, true);
    if (this.debug) setOrigin(region, new Error("user region registered here").stack);
    this.users.add(region);
    this.publishSide();
    return region;
  }

  /** Statistics, exact at the moment of the call. */
  stats(): PoolStats {
    if (this.shared !== null) return this.sharedStats(this.shared);
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
      regionsInUse: inUse - this.retiredCount, retiredRegions: this.retiredCount, pinnedBytes: this.pinned, peakPinnedBytes: this.peakPinned,
      maxPinnedBytes: this.maxPinnedBytes, stacks,
    };
  }

  /**
   * Deregisters and unmaps everything. Returns the regions that were still in use; their views are
   * detached (length 0) so that a late access reads nothing. Idempotent: a second call reports nothing.
   * While RMA operations are in flight on any of its regions it refuses with AllocToolsError BUSY
   * (naming how many regions are busy) and the pool stays open: wait for them, or close their
   * endpoint, then close again.
   */
  close(): LeakReport {
    if (this.closed_) return { count: 0, bytes: 0, regions: [] };
    this.refuseWhileBusy();
    if (this.shared !== null) return this.attached ? this.detach(this.shared) : this.closeShared(this.shared);
    const leaks = this.leaks();
    this.closed_ = true;
    this.providerLink?.unlink();
    backstop.unregister(this);
    for (const r of this.regions) if (r !== undefined) setInUse(r, false);
    for (const r of this.temporaries) setInUse(r, false);
    for (const r of this.users) setInUse(r, false);
    for (const s of this.stacks) s.clear();
    this.deregistrationCount += this.resources.registrations.length + this.temporaries.size + this.users.size;
    let firstError: unknown;
    for (const r of [...this.temporaries, ...this.users]) {
      try { this.traits.deregister(r.registration); } catch (e) { firstError ??= e; }
      if (r.isTemp) try { temporaryBlock(r).free(); } catch (e) { firstError ??= e; }
    }
    this.temporaries.clear();
    this.users.clear();
    try { this.resources.release(); } catch (e) { firstError ??= e; }
    this.pinned = 0;
    if (firstError !== undefined) throw firstError;
    return leaks;
  }

  /**
   * The provider is closing: close the pool first (its registrations go before the provider's
   * domain), warn about regions still in use; from now on the pool refuses with PROVIDER_CLOSED.
   * @internal Called by the provider's close().
   */
  closeWithProvider(): void {
    this.closedByProvider = true;
    const leaks = this.close();
    if (leaks.count > 0) {
      process.emitWarning(`alloctools: provider ${this.provider.name} closed its MemoryPool with ${leaks.count} region(s) (${leaks.bytes} bytes) still in use`, "AllocToolsLeak");
    }
  }

  /** The error for use of a closed pool: PROVIDER_CLOSED when it closed with its provider. */
  private closedError(what: string = "the pool is closed"): AllocToolsError {
    return this.closedByProvider
      ? new AllocToolsError("PROVIDER_CLOSED", `${what}: its provider ${this.provider.name} was closed`)
      : new AllocToolsError("POOL_CLOSED", what);
  }

  /** Throws BUSY when RMA operations use any region of this pool: nothing may be unmapped under them. */
  private refuseWhileBusy(): void {
    let busy = 0;
    let operations = 0;
    const count = (r: MemoryRegionImpl | undefined) => {
      if (r !== undefined && r.inFlight !== 0) { busy++; operations += r.inFlight; }
    };
    for (const r of this.regions) count(r);
    for (const r of this.temporaries) count(r);
    for (const r of this.users) count(r);
    if (busy > 0) {
      throw new AllocToolsError("BUSY",
        `close: ${busy} region(s) still have ${operations} RMA operation(s) in flight; the pool stays open (wait for them, or close their endpoint, then close again)`);
    }
  }

  /** `using pool = new MemoryPool(...)`: closes, and warns about regions still in use. */
  [Symbol.dispose](): void {
    const leaks = this.close();
    if (leaks.count > 0) {
      process.emitWarning(`alloctools: MemoryPool closed with ${leaks.count} region(s) (${leaks.bytes} bytes) still in use`, "AllocToolsLeak");
    }
  }

  // ---- sharing across Workers ---------------------------------------------------------------------

  /**
   * Shares the pool with Workers: a structured-cloneable handle (SharedArrayBuffers and numbers)
   * for `MemoryPool.attach` in a Worker. From the first call on, the stacks, the region states and
   * the books live in shared memory; later calls return the same handle. Only the owner (the pool
   * share() was first called on) closes the shared pool; once shared, the garbage-collection
   * backstop no longer frees it, since Workers may be using the memory.
   */
  share(options: ShareOptions = {}): SharedPoolHandle {
    this.assertOpen();
    if (this.handle_ !== null) return this.handle_;
    if (options === null || typeof options !== "object") throw new TypeError("share options must be an object");
    const maxWorkers = options.maxWorkers ?? 64;
    const cacheSize = options.cacheSize ?? 16;
    if (!Number.isInteger(maxWorkers) || maxWorkers < 1 || maxWorkers > 4096) throw new RangeError(`maxWorkers must be an integer in [1, 4096], got ${maxWorkers}`);
    if (!Number.isInteger(cacheSize) || cacheSize < 0 || cacheSize > 1024) throw new RangeError(`cacheSize must be an integer in [0, 1024], got ${cacheSize}`);
    const provider = shareProvider(this.provider);
    const stacks = this.stacks.map((s) => {
      const capacity = Math.max(s.maxRegions, s.regions);
      return {
        chunkSize: s.chunkSize, initialCount: s.initialCount, growCount: s.growCount, capacity,
        maxBlocks: s.blocks + Math.ceil((capacity - s.regions) / s.growCount),
      };
    });
    const layout: SharedLayoutSpec = { stacks, maxWorkers, cacheSize };
    const sh = SharedPoolState.create(layout);
    // The blocks so far: each one's regions follow each other in the region table.
    let index = 0;
    for (let b = 0; b < this.resources.blocks.length; b++) {
      const block = this.resources.blocks[b]!;
      const reg = this.resources.registrations[b]!;
      const first = index;
      const stackId = this.regions[first]!.stackId;
      while (index < this.regions.length && this.regions[index]!.registration === reg) index++;
      const r = sh.reserve(stackId, index - first);
      sh.publishBlock(r.block, stackId, first, index - first, block.address, block.size, block.locked, reg);
      sh.addStackBooks(stackId, index - first, 1, block.size);
      this.blockBuffers[r.block] = block.view.buffer as ArrayBuffer;
      this.blockRegistrations[r.block] = reg;
    }
    for (const r of this.regions) if (r?.inUse) sh.i32[sh.stateWord(r.index)] = IN_USE;
    for (const s of this.stacks) {
      for (const i of s.entries()) sh.stacks[s.id]!.push(i); // bottom first: the top stays on top
      const at = sh.booksAt + 4 * s.id;
      const c = sh.cacheOf(sh.slot, s.id);
      sh.f64[(c + C_GETS) >> 1] = s.gets;
      sh.f64[(c + C_RELEASES) >> 1] = s.releases;
      sh.f64[at + BOOK_MISSES] = s.misses;
      sh.f64[at + BOOK_GROWTHS] = s.growths;
    }
    sh.reservePinned(this.peakPinned, Infinity);
    sh.reservePinned(this.pinned - this.peakPinned, Infinity);
    this.fillRegionTable(sh);
    backstop.unregister(this);
    this.bindShared(sh);
    this.publishSide();
    this.handle_ = {
      kind: "alloctools.MemoryPool", buffer: sh.buffer, layout, provider,
      options: { maxPinnedBytes: this.maxPinnedBytes, access: this.traits.access, hugePages: this.hugePagesOption, debug: this.debug },
    };
    return this.handle_;
  }

  /**
   * A pool over the shared pool behind `handle` (from `share()`), for use in a Worker: the same
   * registered memory, stacks and statistics. Its regions have the same address and keys as
   * everywhere, with this thread's own views. Temporary and user regions it makes are its own.
   * Its close() only detaches.
   */
  static attach(handle: SharedPoolHandle): MemoryPool {
    if (handle === null || typeof handle !== "object" || handle.kind !== "alloctools.MemoryPool") {
      throw new TypeError("MemoryPool.attach takes the handle pool.share() returned");
    }
    const state = SharedPoolState.attach(handle.buffer, handle.layout);
    const stacks = {} as Record<SizeClass, MemoryPoolStackOptions>;
    handle.layout.stacks.forEach((s, k) => {
      stacks[SIZE_CLASSES[k]!] = { chunkSize: s.chunkSize, initialCount: s.initialCount, growCount: s.growCount, maxRegions: s.capacity };
    });
    attaching = { handle, state };
    try {
      return new MemoryPool(new AttachedProvider(handle.provider), { ...stacks, ...handle.options });
    } catch (e) {
      state.leaveSlot();
      throw e;
    } finally {
      attaching = null;
    }
  }

  /** Whether this pool was made by `MemoryPool.attach`. */
  get isAttached(): boolean {
    return this.attached;
  }

  /**
   * This pool's object for pooled region `index` (`MemoryRegionImpl.index`): how a region got in
   * another Worker is released (or used) here. Shared pools only need it across Workers.
   */
  region(index: number): MemoryRegion {
    this.assertOpen();
    const sh = this.shared;
    const count = sh === null ? this.regions.length : sh.regionCount;
    if (!Number.isInteger(index) || index < 0 || index >= count) throw new RangeError(`no pooled region ${index} (there are ${count})`);
    if (sh === null) return this.regions[index]!;
    const r = this.regions[index] ?? this.materialize(sh, index);
    setInUse(r, sh.regionState(index) === IN_USE);
    return r;
  }

  /** A pooled region's index, what `region(index)` takes in another Worker; -1 for temporary and user regions. */
  indexOf(region: MemoryRegion): number {
    return genuineRegion("indexOf", region).index;
  }

  /**
   * Where every pooled region is: on a stack, in a Worker's cache, or in use, each exactly once.
   * Exact only while no Worker gets or releases. For tests and post-mortems.
   */
  audit(): SharedAudit {
    if (this.shared !== null) return this.shared.audit();
    const seen = new Set<number>();
    const problems: string[] = [];
    let onStacks = 0;
    for (const s of this.stacks) {
      for (const i of s.entries()) {
        if (seen.has(i)) problems.push(`region ${i} found twice`);
        seen.add(i);
        onStacks++;
      }
    }
    const inUse = this.regions.filter((r) => r?.inUse).length;
    const lost = this.regions.length - onStacks - inUse - this.retiredCount;
    if (lost !== 0) problems.push(`${lost} region(s) neither free nor in use`);
    return { regions: this.regions.length, onStacks, cached: 0, inUse, lost, problems };
  }

  /** Shared get: this Worker's cache, else the lock-free stack, else growth. Kept small to inline. */
  private getShared(stack: MemoryPoolStack, bytes: number): MemoryRegion {
    const a = this.sI32;
    const at = stack.cacheAt;
    if (a[at + C_CLOSED] !== 0) return this.refuseClosed();
    const n = a[at]!;
    let index: number;
    if (n > 0) {
      index = a[at + C_ENTRIES - 1 + n]!;
      a[at] = n - 1;
    } else {
      index = this.popShared(stack.id);
    }
    // Ours alone now (popped); a plain store: only a release's CAS reads it, after a handover.
    a[this.sStateAt + (index << this.sStateBits)] = IN_USE;
    const f = this.sF64;
    const g = (at + C_GETS) >> 1;
    f[g] = f[g]! + 1;
    const region = this.regions[index] ?? this.materialize(this.shared!, index);
    checkOut(region, bytes);
    if (this.debug) setOrigin(region, new Error("region got here").stack);
    return region;
  }

  /** Shared release: the state word's CAS catches a double release from any Worker. */
  private releaseShared(r: MemoryRegionImpl): void {
    const a = this.sI32;
    const id = r.stackId;
    const at = this.sCacheAt + id * this.sCacheStride;
    if (a[at + C_CLOSED] !== 0) return this.refuseClosed();
    const index = r.index;
    const word = this.sStateAt + (index << this.sStateBits);
    if (Atomics.compareExchange(a, word, IN_USE, 0) !== IN_USE) r.assertInUse("releaseRegion");
    const f = this.sF64;
    const g = (at + C_RELEASES) >> 1;
    f[g] = f[g]! + 1;
    const n = a[at]!;
    if (n < this.sCacheSize) {
      a[at + C_ENTRIES + n] = index;
      a[at] = n + 1;
      return;
    }
    this.spill(this.shared!, id, at, index);
  }

  /** The cache is empty: pop the shared stack, or grow it. */
  private popShared(stackId: number): number {
    const sh = this.shared!;
    const index = sh.stacks[stackId]!.pop();
    return index >= 0 ? index : this.growShared(sh, this.stacks[stackId]!);
  }

  private refuseClosed(): never {
    throw this.closedError();
  }

  /**
   * The cache is full: the older half goes to the shared stack in one CAS, `index` on top here.
   * No loop after the CAS (a terminated Worker stops at loop heads and calls), so a Worker
   * terminated here leaves its cache either before the CAS or after the count is lowered.
   */
  private spill(sh: SharedPoolState, id: number, at: number, index: number): void {
    const stack = sh.stacks[id]!;
    const a = sh.i32;
    const n = a[at]!;
    if (n === 0) return stack.push(index);
    const half = Math.max(1, n >> 1);
    const e = at + C_ENTRIES;
    for (let j = 0; j < half - 1; j++) stack.link(a[e + j]!, a[e + j + 1]!);
    stack.pushChain(a[e]!, a[e + half - 1]!);
    a.copyWithin(e, e + half, e + n);
    a[e + n - half] = index;
    a[at] = n - half + 1;
  }

  /** Gives this Worker's cached regions back to the shared stacks (detach). */
  private flushCaches(sh: SharedPoolState): void {
    const a = sh.i32;
    for (const s of this.stacks) {
      const at = sh.cacheAt + s.id * sh.cacheStride;
      const n = a[at]!;
      if (n === 0) continue;
      const stack = sh.stacks[s.id]!;
      const e = at + C_ENTRIES;
      for (let j = 0; j < n - 1; j++) stack.link(a[e + j]!, a[e + j + 1]!);
      stack.pushChain(a[e]!, a[e + n - 1]!);
      a[at] = 0;
    }
  }

  /** The stack ran dry: one Worker grows it under its lock; the others wait, then pop what it added. */
  private growShared(sh: SharedPoolState, stack: MemoryPoolStack): number {
    const id = stack.id;
    sh.lock(id);
    try {
      if (sh.closed) throw new AllocToolsError("POOL_CLOSED", "the pool is closed");
      const index = sh.stacks[id]!.pop();
      if (index >= 0) return index; // grown (or released into) while we waited for the lock
      const first = this.addSharedBlock(sh, stack);
      const f = sh.f64;
      const b = sh.booksAt + 4 * id;
      f[b + BOOK_MISSES] = f[b + BOOK_MISSES]! + 1;
      f[b + BOOK_GROWTHS] = f[b + BOOK_GROWTHS]! + 1;
      return first;
    } finally {
      sh.unlock(id);
    }
  }

  /**
   * Maps, pins and registers a block from this thread, records it in the shared block table and
   * pushes its regions but the first, which the caller gets. Under the stack's growth lock.
   */
  private addSharedBlock(sh: SharedPoolState, stack: MemoryPoolStack): number {
    const id = stack.id;
    const count = stack.growCount;
    const [regions, blocks] = sh.stackBooks(id);
    const room = sh.spec.stacks[id]!;
    if (regions + count > room.capacity || blocks >= room.maxBlocks) {
      throw new AllocToolsError("PINNED_LIMIT",
        `the ${stack.name} stack of a shared pool holds at most ${room.capacity} regions (maxRegions); it has ${regions}`);
    }
    const { block, reg } = this.newRegisteredBlock(this.blockBytes(stack, count), `growing the ${stack.name} stack`);
    const { first, block: b } = sh.reserve(id, count);
    if (this.attached) {
      this.grownHere.push(block); // the owner deregisters and unmaps it at close
    } else {
      this.resources.blocks.push(block);
      this.resources.registrations.push(reg);
    }
    this.blockBuffers[b] = block.view.buffer as ArrayBuffer;
    this.blockRegistrations[b] = reg;
    sh.publishBlock(b, id, first, count, block.address, block.size, block.locked, reg);
    sh.addStackBooks(id, count, 1, block.size);
    if (count > 1) {
      const s = sh.stacks[id]!;
      for (let i = first + 1; i < first + count - 1; i++) s.link(i, i + 1);
      s.pushChain(first + 1, first + count - 1);
    }
    this.publishSide();
    return first;
  }

  /** This thread's object for a region first seen here: its block's view is made once per thread. */
  private materialize(sh: SharedPoolState, index: number): MemoryRegionImpl {
    const b = sh.blockOf(index);
    const block = sh.block(b);
    if (block === null) throw new AllocToolsError("POOL_CLOSED", `pooled region ${index} has no live block (the pool was closed)`);
    const reg = (this.blockRegistrations[b] ??= block.registration);
    const buffer = (this.blockBuffers[b] ??= toArrayBuffer(block.address as Pointer, 0, block.size));
    const stack = this.stacks[block.stackId]!;
    const offset = (index - block.first) * stack.stride;
    const address = block.address + offset;
    const region = new MemoryRegionImpl(reg, address, stack.chunkSize, RegionFlag.PARTIAL, this.traits.remoteAddress(reg, address),
      new Uint8Array(buffer, offset, stack.chunkSize), this, index, stack.id, null);
    this.regions[index] = region;
    return region;
  }

  private bindShared(sh: SharedPoolState): void {
    this.shared = sh;
    this.sI32 = sh.i32;
    this.sF64 = sh.f64;
    this.sStateAt = sh.stateAt;
    this.sStateBits = sh.stateBits;
    this.sCacheAt = sh.cacheAt;
    this.sCacheStride = sh.cacheStride;
    this.sCacheSize = sh.cacheSize;
    for (const s of this.stacks) s.cacheAt = sh.cacheAt + s.id * sh.cacheStride;
  }

  /** Room for every index the shared pool may hand out, so the table never turns sparse. */
  private fillRegionTable(sh: SharedPoolState): void {
    const total = sh.spec.stacks.reduce((n, s) => n + s.capacity, 0);
    while (this.regions.length < total) this.regions.push(undefined);
  }

  /** This pool's side books (temporary and user regions, registrations) into its shared slot. */
  private publishSide(): void {
    const sh = this.shared;
    if (sh === null) return;
    const f = sh.f64;
    const b = sh.booksAt;
    f[b + SIDE.temporaryCount] = this.temporaryCount;
    f[b + SIDE.temporaryGets] = this.temporaryGets;
    f[b + SIDE.userCount] = this.userCount;
    f[b + SIDE.sideReleases] = this.sideReleases;
    f[b + SIDE.registrations] = this.registrationCount;
    f[b + SIDE.deregistrations] = this.deregistrationCount;
    f[b + SIDE.liveTemporaries] = this.temporaries.size;
    f[b + SIDE.liveUsers] = this.users.size;
  }

  /** Statistics summed over every Worker's books: exact while no Worker gets or releases. */
  private sharedStats(sh: SharedPoolState): PoolStats {
    const stacks = {} as Record<SizeClass, StackStats>;
    let gets = sh.sumBooks(SIDE.temporaryGets) + sh.sumBooks(SIDE.userCount);
    let releases = sh.sumBooks(SIDE.sideReleases);
    let misses = 0;
    let growths = 0;
    let inUse = sh.sumBooks(SIDE.liveTemporaries) + sh.sumBooks(SIDE.liveUsers);
    for (const s of this.stacks) {
      const k = 4 * s.id;
      const g = sh.sumCacheBooks(s.id, C_GETS);
      const r = sh.sumCacheBooks(s.id, C_RELEASES);
      const m = sh.sumBooks(k + BOOK_MISSES);
      const gr = sh.sumBooks(k + BOOK_GROWTHS);
      const [regions, blocks, pinnedBytes] = sh.stackBooks(s.id);
      stacks[s.name] = {
        name: s.name, chunkSize: s.chunkSize, regions, free: regions - (g - r), inUse: g - r, gets: g, releases: r,
        hits: g - m, misses: m, growths: gr, blocks, pinnedBytes, cached: sh.cached(s.id),
      };
      gets += g; releases += r; misses += m; growths += gr; inUse += g - r;
    }
    return {
      provider: this.provider.name, gets, releases, hits: gets - misses - sh.sumBooks(SIDE.temporaryGets) - sh.sumBooks(SIDE.userCount),
      misses, growths,
      registrations: sh.sumBooks(SIDE.registrations), deregistrations: sh.sumBooks(SIDE.deregistrations),
      temporaryRegions: sh.sumBooks(SIDE.temporaryCount), liveTemporaryRegions: sh.sumBooks(SIDE.liveTemporaries),
      userRegions: sh.sumBooks(SIDE.userCount), liveUserRegions: sh.sumBooks(SIDE.liveUsers),
      regionsInUse: inUse, retiredRegions: 0, pinnedBytes: sh.pinnedBytes, peakPinnedBytes: sh.peakPinnedBytes,
      maxPinnedBytes: this.maxPinnedBytes, stacks,
    };
  }

  /** Pooled regions in use in any Worker, then this pool's temporary and user regions. */
  private sharedLeaks(sh: SharedPoolState, onlyHere: boolean): LeakReport {
    const out: { size: number; kind: SizeClass | "temporary" | "user"; origin?: string }[] = [];
    const n = sh.regionCount;
    for (let i = 0; i < n; i++) {
      if (sh.regionState(i) !== IN_USE) continue;
      const mine = this.regions[i];
      if (onlyHere && !mine?.inUse) continue;
      const block = sh.block(sh.blockOf(i));
      const stack = this.stacks[block?.stackId ?? 0]!;
      out.push({ size: stack.chunkSize, kind: stack.name, origin: mine?.origin });
    }
    for (const r of this.temporaries) out.push({ size: r.size, kind: "temporary", origin: r.origin });
    for (const r of this.users) out.push({ size: r.size, kind: "user", origin: r.origin });
    return { count: out.length, bytes: out.reduce((k, r) => k + r.size, 0), regions: out };
  }

  /** Deregisters this pool's temporary and user regions (they never leave the thread that made them). */
  private dropSideRegions(): unknown {
    let firstError: unknown;
    for (const r of [...this.temporaries, ...this.users]) {
      setInUse(r, false);
      this.addPinned(-(r.isTemp ? temporaryBlock(r).size : r.size));
      try { this.traits.deregister(r.registration); } catch (e) { firstError ??= e; }
      if (r.isTemp) try { temporaryBlock(r).free(); } catch (e) { firstError ??= e; }
    }
    this.deregistrationCount += this.temporaries.size + this.users.size;
    this.temporaries.clear();
    this.users.clear();
    return firstError;
  }

  /**
   * The owner closes the shared pool: no more gets anywhere, every block (whoever mapped it)
   * deregistered and unmapped. Regions in use in any Worker are reported.
   */
  private closeShared(sh: SharedPoolState): LeakReport {
    sh.markClosed();
    // Wait out growths in flight (a block published after this would never be freed); a Worker
    // terminated inside a growth cannot release its lock, so give up on it after a second.
    const locked = [0, 1, 2, 3].map((id) => sh.lock(id, 1000));
    const leaks = this.sharedLeaks(sh, false);
    this.closed_ = true;
    for (const r of this.regions) if (r !== undefined) setInUse(r, false);
    for (const st of sh.stacks) st.clear();
    let firstError = this.dropSideRegions();
    const foreign = new AttachedProvider(this.handle_!.provider);
    let blocks = 0;
    for (let b = 0; b < sh.blockCount; b++) {
      const block = sh.block(b);
      if (block === null || !sh.retireBlock(b)) continue;
      blocks++;
      if (block.slot === sh.slot) continue; // mapped here: resources.release() below
      const buffer = this.blockBuffers[b];
      if (buffer !== undefined && !buffer.detached) buffer.transfer(0); // detach this thread's views first
      try { foreign.deregister(block.registration); } catch (e) { firstError ??= e; }
      try {
        if (block.locked) libc.munlock(block.address, block.size);
        libc.munmap(block.address, block.size);
      } catch (e) { firstError ??= e; }
    }
    this.deregistrationCount += blocks;
    try { this.resources.release(); } catch (e) { firstError ??= e; }
    sh.resetPinned();
    this.publishSide();
    locked.forEach((got, id) => { if (got) sh.unlock(id); });
    if (firstError !== undefined) throw firstError;
    return leaks;
  }

  /**
   * An attached pool's close: its cache goes back to the shared stacks, its temporary and user
   * regions are deregistered, its views detached; the memory stays (the owner's to free).
   * Reports what this pool got and did not give back.
   */
  private detach(sh: SharedPoolState): LeakReport {
    const leaks = this.sharedLeaks(sh, true);
    this.closed_ = true;
    if (!sh.closed) this.flushCaches(sh);
    for (const r of this.regions) if (r !== undefined) setInUse(r, false);
    const firstError = this.dropSideRegions();
    for (const buffer of this.blockBuffers) if (buffer !== undefined && !buffer.detached) buffer.transfer(0);
    this.publishSide();
    sh.leaveSlot();
    this.traits.provider.close();
    if (firstError !== undefined) throw firstError;
    return leaks;
  }

  // ---- slow paths ---------------------------------------------------------------------------------

  private getSlow(bytes: number): MemoryRegion {
    checkSize(bytes);
    this.assertOpen();
    // A valid size on an open pool misses the fast path only by being above the huge class
    // (chunk sizes are below 2^31, so every int32 test of the fast path holds below it).
    return this.getTemporary(bytes);
  }

  private releaseSlow(region: MemoryRegion): void {
    const r = genuineRegion("releaseRegion", region);
    const sh = this.shared;
    if (r.owner !== this) {
      // Another pool object over the same shared memory (attached twice in one thread): same region.
      const sibling = r.owner instanceof MemoryPool && sh !== null && r.index >= 0 && r.owner.shared !== null && r.owner.shared.sameAs(sh);
      if (!sibling) throw new AllocToolsError("FOREIGN_REGION", `region at 0x${r.address.toString(16)} belongs to another pool`);
      if (this.closed_) throw this.closedError("the region's pool is closed");
      setInUse(r, false);
      const mine = this.region(r.index) as MemoryRegionImpl;
      setInUse(mine, false);
      return this.releaseShared(mine);
    }
    if (this.closed_) throw this.closedError("the region's pool is closed");
    // An RMA operation may still write into it: refuse, and change nothing (the caller releases
    // once the operation has completed, failed or been cancelled).
    if (r.inFlight !== 0) throw busyError("releaseRegion", r);
    if (sh !== null && r.index >= 0) {
      // Got in another Worker (or this object is stale): the shared state word decides.
      setInUse(r, false);
      return this.releaseShared(r);
    }
    r.assertInUse("releaseRegion");
    // Temporary or user region: deregister now.
    setInUse(r, false);
    const set = r.isTemp ? this.temporaries : this.users;
    set.delete(r);
    this.sideReleases++;
    this.deregistrationCount++;
    this.addPinned(-(r.isTemp ? temporaryBlock(r).size : r.size));
    this.publishSide();
    try {
      this.traits.deregister(r.registration);
    } finally {
      if (r.isTemp) temporaryBlock(r).free();
    }
    // Deregistered now, but the caller must learn that its buffer left while registered.
    if (r.isUser) checkRegionMemory("releaseRegion", r);
  }

  /**
   * The popped region's memory was moved out of its view (`region.view.buffer.transfer()`): the
   * region leaves service for good (the pool never hands out a view of length 0, and its block is
   * never unmapped under the stray buffer, see MemoryBlock) and the get takes the next one.
   */
  private getPastRetired(stack: MemoryPoolStack, region: MemoryRegionImpl, bytes: number): MemoryRegion {
    retire(region);
    this.retiredCount++;
    stack.gets--; // the pop counted a get that did not happen
    return this.getRegion(bytes);
  }

  private getTemporary(bytes: number): MemoryRegion {
    const { block, reg } = this.newRegisteredBlock(this.allocator.roundUp(bytes), `temporary region of ${bytes} bytes`);
    this.temporaryCount++;
    this.temporaryGets++;
    const region = new MemoryRegionImpl(reg, block.address, bytes, RegionFlag.TEMP,
      this.traits.remoteAddress(reg, block.address), block.regionView(0, bytes), this, -1, -1, block);
    setInUse(region, true);
    if (this.debug) setOrigin(region, new Error("temporary region got here").stack);
    this.temporaries.add(region);
    this.publishSide();
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

  /**
   * Reserves `bytes` against maxPinnedBytes, then maps, pins and registers a block: the one way
   * memory enters the pool. On failure nothing stays reserved, mapped or registered.
   */
  private newRegisteredBlock(bytes: number, what: string): { block: MemoryBlock; reg: Registration } {
    this.reservePinned(bytes, what);
    let block: MemoryBlock | undefined;
    try {
      block = this.allocator.allocate(bytes);
      const reg = this.traits.register(block.address, block.size);
      this.addPinned(block.size - bytes); // huge pages round up, or "try" fell back to smaller pages
      this.registrationCount++;
      return { block, reg };
    } catch (e) {
      block?.free();
      this.addPinned(-bytes);
      throw e;
    }
  }

  /** Bytes a block of `count` regions of `stack` takes (the estimate when huge pages may fall back). */
  private blockBytes(stack: MemoryPoolStack, count: number): number {
    return this.allocator.roundUp(stack.stride * count, this.hugePages);
  }

  /** Allocates, pins and registers one block of `count` regions for `stack`. */
  private addBlock(stack: MemoryPoolStack, count: number): void {
    const { block, reg } = this.newRegisteredBlock(this.blockBytes(stack, count), `growing the ${stack.name} stack`);
    this.resources.blocks.push(block);
    this.resources.registrations.push(reg);
    stack.blocks++;
    stack.pinnedBytes += block.size;
    const first = this.regions.length;
    for (let i = 0; i < count; i++) {
      const address = block.address + i * stack.stride;
      const view = block.regionView(i * stack.stride, stack.chunkSize); // a buffer of its own: see getRetired
      this.regions.push(new MemoryRegionImpl(reg, address, stack.chunkSize, RegionFlag.PARTIAL,
        this.traits.remoteAddress(reg, address), view, this, first + i, stack.id, null));
    }
    stack.addRegions(first, count);
  }

  private reservePinned(bytes: number, what: string): void {
    if (this.shared !== null) {
      // One limit for every Worker: the count lives in shared memory.
      if (this.shared.reservePinned(bytes, this.maxPinnedBytes)) return;
      throw new AllocToolsError("PINNED_LIMIT",
        `${what} needs ${bytes} more pinned bytes; ${this.shared.pinnedBytes} of maxPinnedBytes ${this.maxPinnedBytes} are in use (all Workers)`);
    }
    if (this.pinned + bytes > this.maxPinnedBytes) {
      throw new AllocToolsError("PINNED_LIMIT",
        `${what} needs ${bytes} more pinned bytes; ${this.pinned} of maxPinnedBytes ${this.maxPinnedBytes} are in use`);
    }
    this.pinned += bytes;
    if (this.pinned > this.peakPinned) this.peakPinned = this.pinned;
  }

  /** Pinned-bytes books: shared once the pool is shared, else this object's. */
  private addPinned(delta: number): void {
    if (this.shared !== null) {
      this.shared.reservePinned(delta, Infinity);
      return;
    }
    this.pinned += delta;
    if (this.pinned > this.peakPinned) this.peakPinned = this.pinned;
  }

  private assertOpen(): void {
    if (this.closed_) throw this.closedError();
  }

  private leaks(): LeakReport {
    const out: { size: number; kind: SizeClass | "temporary" | "user"; origin?: string }[] = [];
    for (const r of this.regions) if (r?.inUse) out.push({ size: r.size, kind: SIZE_CLASSES[r.stackId]!, origin: r.origin });
    for (const r of this.temporaries) out.push({ size: r.size, kind: "temporary", origin: r.origin });
    for (const r of this.users) out.push({ size: r.size, kind: "user", origin: r.origin });
    return { count: out.length, bytes: out.reduce((n, r) => n + r.size, 0), regions: out };
  }
}

/**
 * `region` as this library's own region object, checked by identity: a Proxy or a look-alike
 * object is refused (FOREIGN_REGION), anything else is a TypeError.
 */
function genuineRegion(what: string, region: unknown): MemoryRegionImpl {
  if (MemoryRegionImpl.isGenuine(region)) return region;
  if (typeof region !== "object" || region === null) {
    throw new TypeError(`${what} takes a MemoryRegion got from a pool, got ${region === null ? "null" : typeof region}`);
  }
  throw new AllocToolsError("FOREIGN_REGION",
    `${what} takes a MemoryRegion this library made; got a look-alike object (a Proxy, a copy or a hand-made region)`);
}

/** The block a temporary region owns (what it keeps alive). */
function temporaryBlock(region: MemoryRegionImpl): MemoryBlock {
  return keepAliveOf(region) as MemoryBlock;
}

/** Module level, not a closure in the constructor: the provider's link must not hold the pool. */
function closePoolWithProvider(pool: MemoryPool): void {
  pool.closeWithProvider();
}

function pinnedBytesOf(resources: PoolResources): () => number {
  return () => resources.blocks.reduce((n, b) => n + (b.freed ? 0 : b.size), 0);
}
