// The memory pool: a stack of pre-registered regions per size class. A get pops a region that is
// already registered, so the hot path is a few field reads and no system call. Stacks grow a block
// at a time (one registration per block); requests above the largest class get temporary regions.
// This file is the local pool; share() hands the same parts to SharedPool (shared-pool.ts), and
// from then on the hot path's one branch sends gets and releases there (mimalloc's local/_mt split).
import { AllocToolsError, AllocToolsTypeError, AllocToolsRangeError } from "../errors.ts";
import { checkOptions, checkSize, type MemoryPoolOptions } from "./pool-options.ts";
import { PoolCore, type LeakReport, type PoolResources, type PoolStats } from "./pool-core.ts";
import type { RegionProvider } from "../memory/provider.ts";
import { bytes, inspectCustom, oneLine } from "../inspect.ts";
import { busyError } from "../engine/local-memory.ts";
import { WeakChild } from "../memory/provider-child.ts";
import { checkIn, checkOut, MemoryRegionImpl, retire, setInUse, setOrigin, type MemoryRegion, type RegionOwner } from "../memory/region.ts";
import { checkRegionMemory, type UserMemoryInput } from "../memory/user-memory.ts";
import { SharedPool } from "../sharing/shared-pool.ts";
import type { ShareOptions, SharedPoolHandle } from "../sharing/shared-handle.ts";
import type { SharedAudit } from "../sharing/shared-audit.ts";
import type { WorkerCache } from "../sharing/worker-cache.ts";
import type { MemoryPoolStack } from "./stack.ts";

export type { LeakReport, LeakedRegion, PoolStats } from "./pool-core.ts";
export type { ShareOptions, SharedPoolHandle } from "../sharing/shared-handle.ts";

// Holds the resources and the provider's weak link only: the core points back at the pool, which
// would then never be collected.
const backstop = new FinalizationRegistry<{ resources: PoolResources; link: WeakChild<MemoryPool> }>(({ resources, link }) => {
  const bytes = resources.pinnedBytes();
  link.unlink();
  resources.release();
  process.emitWarning(`alloctools: a MemoryPool was garbage-collected without close(); freed ${bytes} pinned bytes`, "AllocToolsLeak");
});

/** Set by MemoryPool.attach for the one constructor call it makes. */
let attaching: ((core: PoolCore) => SharedPool) | null = null;

/**
 * Registered memory on demand: per size class (small, medium, large, huge; see DEFAULT_STACKS) a
 * stack of regions that are already mapped, pinned and registered with one provider, so that a get
 * costs no registration. Gets above the largest class are temporary regions, registered for that
 * get and deregistered on release; `registerUserRegion` and `userRegion` register the caller's own
 * memory.
 *
 * Lifetime: made over an open provider, which closes the pool first when it closes itself. `close()`
 * (or `using`) deregisters and unmaps everything and reports the regions still out; it is
 * idempotent and refuses with BUSY while RMA operations use the pool's memory. A pool dropped
 * without close() is freed by a garbage-collection backstop, with a warning. `share()` hands the
 * pool to Workers (`MemoryPool.attach`).
 *
 * Hot path: `getRegion` of a size up to the largest class and `releaseRegion` of a pooled region
 * neither allocate nor make a system call (unless the stack must grow, or `debug` records a stack
 * trace per get); `userRegion` of a buffer already cached does neither. Temporary and user
 * regions, `stats`, `audit` and `close` register, deregister or allocate.
 */
export class MemoryPool implements RegionOwner, Disposable {
  /** The provider every region of this pool is registered with. */
  readonly provider: RegionProvider;
  /** The bound on pinned and registered bytes (`Infinity` when none was given). */
  readonly maxPinnedBytes: number;
  /** Whether each get records a stack trace (`origin`) for leak reports. */
  readonly debug: boolean;
  readonly #core: PoolCore;
  // The hot path's parts, as fields of their own: a get reads no other object.
  readonly #stacks: readonly MemoryPoolStack[];
  readonly #regions: (MemoryRegionImpl | undefined)[];
  /** Chunk size per class, smallest first: a get takes the first class that fits. */
  readonly #chunkSizes: Int32Array;
  readonly #largestChunk: number;
  #closedHere = false;
  /** Closed because its provider closed: refusals say PROVIDER_CLOSED. */
  #closedByProvider = false;
  /** The provider's weak handle on this pool (it closes the pool when it closes); null when attached. */
  #providerLink: WeakChild<MemoryPool> | null = null;
  /** The shared part once share()d or attached; null for an unshared pool (the hot path's one branch). */
  #shared: SharedPool | null = null;
  /** The shared part's cache for this thread, read by the hot path itself (null when unshared). */
  #cache: WorkerCache | null = null;

  /**
   * Maps, pins and registers each class's `initialCount` regions now. Throws TypeError when
   * `provider` is not a RegionProvider, AllocToolsError PROVIDER_CLOSED when it is closed, a
   * TypeError or RangeError for a bad option (unknown keys included) or when the initial regions
   * exceed `maxPinnedBytes`, and the provider's or the system's error when registering or pinning
   * fails; nothing stays pinned after a throw.
   */
  constructor(provider: RegionProvider, options: MemoryPoolOptions = {}) {
    if (provider === null || typeof provider !== "object" || typeof provider.register !== "function") {
      throw new AllocToolsTypeError("MemoryPool needs a RegionProvider (HostProvider, LibfabricProvider, or openProvider())");
    }
    if (provider.closed) throw new AllocToolsError("PROVIDER_CLOSED", `provider ${provider.name} is closed`);
    const core = new PoolCore(provider, checkOptions(options));
    core.owner = this;
    this.#core = core;
    this.provider = provider;
    this.maxPinnedBytes = core.maxPinnedBytes;
    this.debug = core.debug;
    this.#stacks = core.stacks;
    this.#regions = core.regions;
    this.#chunkSizes = Int32Array.from(core.stacks, (stack) => stack.chunkSize);
    this.#largestChunk = this.#chunkSizes[this.#chunkSizes.length - 1]!;
    const join = attaching;
    attaching = null;
    if (join !== null) {
      // An attached pool: the owner's blocks and stacks, nothing registered here yet.
      this.#shared = join(core);
      this.#cache = this.#shared.cache;
      return;
    }
    core.addInitialBlocks();
    const link = new WeakChild<MemoryPool>(provider, this, closePoolWithProvider);
    this.#providerLink = link;
    backstop.register(this, { resources: core.resources, link }, this);
  }

  /** The provider's registration traits (keys and remote addresses of a registration). */
  get traits(): PoolCore["traits"] {
    return this.#core.traits;
  }

  /** The block allocator the pool maps its memory with. */
  get allocator(): PoolCore["allocator"] {
    return this.#core.allocator;
  }

  /** The size of the largest size class: the largest region `getRegion` serves from a stack (above it, temporary regions). */
  get largestPooledSize(): number {
    return this.#largestChunk;
  }

  /** Whether the pool is closed (by `close()`, its provider's close, or the owner of a shared pool). */
  get closed(): boolean {
    return this.#closedHere || (this.#shared !== null && this.#shared.closed);
  }

  /**
   * A registered region of at least `bytes` bytes: from the smallest size class that fits (its
   * `size` is the class's chunk size, `messageLength` is `bytes`), or a temporary region above the
   * largest class. The same object comes back after a release (LIFO). Throws TypeError or
   * RangeError for anything but a positive safe integer, AllocToolsError POOL_CLOSED (or
   * PROVIDER_CLOSED) on a closed pool, PINNED_LIMIT when growing or a temporary region would pass
   * `maxPinnedBytes`, and the provider's or the system's error when registration fails.
   */
  getRegion(bytes: number): MemoryRegion {
    // Fast path: a positive int32, an open pool, a pooled size. Everything else takes getSlow.
    if (typeof bytes !== "number" || (bytes | 0) !== bytes || bytes <= 0 || this.#closedHere || bytes > this.#largestChunk) return this.getSlow(bytes);
    const sizes = this.#chunkSizes;
    let sizeClass = 0;
    while (bytes > sizes[sizeClass]!) sizeClass++;
    const cache = this.#cache;
    if (cache !== null) {
      const index = cache.pop(sizeClass);
      const region = index >= 0 ? this.#regions[index] : undefined;
      if (region === undefined) return this.#shared!.finishGet(sizeClass, bytes, index);
      checkOut(region, bytes);
      if (this.debug) setOrigin(region, new Error("region got here").stack);
      return region;
    }
    const stack = this.#stacks[sizeClass]!;
    let index = stack.pop();
    if (index < 0) index = this.#core.grow(stack);
    const region = this.#regions[index]!;
    if (region.view.byteLength === 0) return this.getPastRetired(stack, region, bytes);
    checkOut(region, bytes);
    if (this.debug) setOrigin(region, new Error("region got here").stack);
    return region;
  }

  /**
   * Gives a region back: pooled regions go on top of their stack, temporary and user ones are
   * deregistered (temporary ones unmapped), cached ones go back to their cache. Throws, changing
   * nothing, AllocToolsError BUSY while RMA operations use the region, DOUBLE_RELEASE when it is
   * not out, FOREIGN_REGION for another pool's region or a look-alike object, POOL_CLOSED on a
   * closed pool, TypeError for a value that is not an object.
   */
  releaseRegion(region: MemoryRegion): void {
    if (this.#closedHere || !checkIn(region, this)) return this.releaseSlow(region);
    const pooled = region as MemoryRegionImpl;
    const cache = this.#cache;
    if (cache !== null) {
      if (!cache.push(pooled.stackId, pooled.index)) this.#shared!.refuseRelease(pooled);
      return;
    }
    this.#stacks[pooled.stackId]!.push(pooled.index);
  }

  /**
   * Registers the caller's memory as a user region over exactly its bytes (an ArrayBuffer, a
   * SharedArrayBuffer, or a view's bytes): zero-copy, the buffer kept referenced while registered,
   * deregistered (never freed) by `releaseRegion`. Each call makes a new registration (a provider
   * call, pinning included); `userRegion` caches them instead. Its bytes count against
   * `maxPinnedBytes`. Throws, with nothing registered: TypeError for other values and for a
   * resizable ArrayBuffer (it could shrink under the registration), AllocToolsError DETACHED for a
   * detached buffer, RangeError for zero bytes, AllocToolsError PINNED_LIMIT when `maxPinnedBytes`
   * has no room (after evicting unused cached registrations), the provider's error when
   * registration fails. The buffer must not be transferred while registered: the region's next use
   * then fails with DETACHED.
   */
  registerUserRegion(memory: UserMemoryInput): MemoryRegion {
    this.assertOpen();
    const view = PoolCore.userView(memory);
    if (this.#shared !== null) return this.#shared.registerUserRegion(view, memory);
    const region = this.#core.userRegion(view, this.#core.registerUser(view), memory);
    return region;
  }

  /**
   * A cached user region over exactly the bytes of `memory` (`isUser`, `isCached`): the first use
   * of a buffer registers it, later ones reuse the registration (see RegistrationCache). Release
   * it with `releaseRegion`. Its registered bytes count in `maxPinnedBytes`; unused cached entries
   * are evicted when the pool needs room. Each thread (Worker) has its own cache.
   * `registerUserRegion` stays uncached. Refuses what registerUserRegion refuses, with the same
   * errors: a resizable ArrayBuffer (or a view of one) gets the TypeError, nothing registered.
   */
  userRegion(memory: ArrayBuffer | SharedArrayBuffer | ArrayBufferView): MemoryRegion {
    const cache = this.#core.cache;
    if (cache === null || this.#closedHere) return this.userRegionSlow(memory);
    return cache.acquire(memory);
  }

  /** The first userRegion makes the cache; a closed pool refuses. */
  private userRegionSlow(memory: ArrayBuffer | SharedArrayBuffer | ArrayBufferView): MemoryRegion {
    this.assertOpen();
    return this.#core.userCache().acquire(memory);
  }

  /** One line for console.log: provider, regions in use, bytes pinned, size classes. */
  [inspectCustom](): string {
    if (this.closed) return oneLine("MemoryPool", { closed: true });
    const stats = this.stats();
    return oneLine("MemoryPool", {
      provider: stats.provider, regionsInUse: stats.regionsInUse, pinned: bytes(stats.pinnedBytes),
      classes: Object.values(stats.stacks).map((stack) => bytes(stack.chunkSize)).join("/"), shared: this.#shared !== null,
    });
  }

  /** Statistics, exact at the moment of the call (shared pools: while no Worker gets or releases). */
  stats(): PoolStats {
    return this.#shared !== null ? this.#shared.stats() : this.#core.localStats();
  }

  /**
   * Deregisters and unmaps everything. Returns the regions that were still in use; their views are
   * detached (length 0) so that a late access reads nothing. Idempotent: a second call reports nothing.
   * Throws AllocToolsError BUSY, changing nothing, while RMA operations use any of its regions, in
   * this thread or (the owner of a shared pool) in any live Worker. A shared pool's owner cannot
   * detach its Workers' views: the memory under them stays mapped over fresh zero pages until the
   * last attached pool detaches, and their later use is POOL_CLOSED. An attached pool only detaches
   * (see SharedPool.close).
   */
  close(): LeakReport {
    if (this.#closedHere) return { count: 0, bytes: 0, regions: [] };
    this.refuseWhileBusy();
    this.#shared?.beginClose(); // the owner: BUSY while a Worker's operations are in flight
    this.#closedHere = true;
    if (this.#shared !== null) return this.#shared.close();
    this.#providerLink?.unlink();
    backstop.unregister(this);
    return this.#core.closeLocal();
  }

  /**
   * The provider is closing: close the pool first (its registrations go before the provider's
   * domain), warn about regions still in use; from now on the pool refuses with PROVIDER_CLOSED.
   * @internal Called by the provider's close().
   */
  closeWithProvider(): void {
    this.#closedByProvider = true;
    const leaks = this.close();
    if (leaks.count > 0) {
      process.emitWarning(`alloctools: provider ${this.provider.name} closed its MemoryPool with ${leaks.count} region(s) (${leaks.bytes} bytes) still in use`, "AllocToolsLeak");
    }
  }

  /** Throws BUSY when RMA operations use any region of this pool: nothing may be unmapped under them. */
  private refuseWhileBusy(): void {
    let busy = 0;
    let operations = 0;
    const count = (region: MemoryRegionImpl | undefined) => {
      if (region !== undefined && region.inFlight !== 0) { busy++; operations += region.inFlight; }
    };
    for (const region of this.#regions) count(region);
    for (const region of this.#core.temporaries) count(region);
    for (const region of this.#core.users) count(region);
    for (const region of this.#core.cache?.regionsInUse() ?? []) count(region); // userRegion()'s: its cache closes with the pool
    if (busy > 0) {
      throw new AllocToolsError("BUSY",
        `close: ${busy} region(s) still have ${operations} RMA operation(s) in flight; the pool stays open (wait for them, or close their endpoint, then close again)`);
    }
  }

  /**
   * The popped region's memory was moved out of its view (`region.view.buffer.transfer()`): the
   * region leaves service for good (the pool never hands out a view of length 0, and its block is
   * never unmapped under the stray buffer, see MemoryBlock) and the get takes the next one.
   */
  private getPastRetired(stack: MemoryPoolStack, region: MemoryRegionImpl, bytes: number): MemoryRegion {
    retire(region);
    this.#core.counters.retiredRegions++;
    stack.gets--; // the pop counted a get that did not happen
    return this.getRegion(bytes);
  }

  /** The error for use of a closed pool: PROVIDER_CLOSED when it closed with its provider. */
  private closedError(what: string = "the pool is closed"): AllocToolsError {
    return this.#closedByProvider
      ? new AllocToolsError("PROVIDER_CLOSED", `${what}: its provider ${this.provider.name} was closed`)
      : new AllocToolsError("POOL_CLOSED", what);
  }

  /** `using pool = new MemoryPool(...)`: closes, and warns about regions still in use. */
  [Symbol.dispose](): void {
    const leaks = this.close();
    if (leaks.count > 0) {
      process.emitWarning(`alloctools: MemoryPool closed with ${leaks.count} region(s) (${leaks.bytes} bytes) still in use`, "AllocToolsLeak");
    }
  }

  // ---- sharing across Workers (the work is SharedPool's) ------------------------------------------

  /**
   * Shares the pool with Workers: a structured-cloneable handle (SharedArrayBuffers, numbers and
   * strings) for `MemoryPool.attach` in a Worker. From the first call on, the stacks, the region
   * states and the counters live in shared memory; later calls return the same handle. Only the owner
   * (the pool share() was first called on) closes the shared pool; once shared, the
   * garbage-collection backstop no longer frees it, since Workers may be using the memory.
   * The provider must share itself (`provider.share()`): NOT_SUPPORTED otherwise.
   */
  share(options: ShareOptions = {}): SharedPoolHandle {
    this.assertOpen();
    if (this.#shared !== null) return this.#shared.handle;
    const shared = SharedPool.share(this.#core, options);
    backstop.unregister(this);
    this.#providerLink?.unlink();
    this.#providerLink = null;
    this.#shared = shared;
    this.#cache = shared.cache;
    return shared.handle;
  }

  /**
   * A pool over the shared pool behind `handle` (from `share()`), for use in a Worker of the same
   * process: the same registered memory, stacks and statistics, and a provider over the same domain
   * (`pool.provider`; an Endpoint over it does RMA from this Worker). Its regions have the same
   * address and keys as everywhere, with this thread's own views. Temporary and user regions it
   * makes are its own. Its close() only detaches.
   */
  static attach(handle: SharedPoolHandle): MemoryPool {
    const join = SharedPool.join(handle);
    attaching = join.attach;
    try {
      return new MemoryPool(join.provider, join.options);
    } catch (error) {
      join.abandon();
      throw error;
    } finally {
      attaching = null;
    }
  }

  /** Whether this pool was made by `MemoryPool.attach`. */
  get isAttached(): boolean {
    return this.#shared !== null && !this.#shared.isOwner;
  }

  /**
   * This pool's object for pooled region `index` (`indexOf`): how a region got in another Worker
   * is released (or used) here.
   */
  region(index: number): MemoryRegion {
    this.assertOpen();
    if (this.#shared !== null) return this.#shared.region(index);
    const count = this.#regions.length;
    if (!Number.isInteger(index) || index < 0 || index >= count) throw new AllocToolsRangeError(`no pooled region ${index} (there are ${count})`);
    return this.#regions[index]!;
  }

  /** A pooled region's index, what `region(index)` takes in another Worker; -1 for temporary and user regions. */
  indexOf(region: MemoryRegion): number {
    return genuineRegion("indexOf", region).index;
  }

  /**
   * Checks the pool's books: every pooled region must be on a stack, in a Worker's cache, in use or
   * retired, exactly once. Returns the counts and a list of problems (empty when consistent); never
   * throws for an inconsistency. Walks every region, so it allocates: for tests and post-mortems.
   * Exact only while no Worker gets or releases.
   */
  audit(): SharedAudit {
    if (this.#shared !== null) return this.#shared.audit();
    const seen = new Set<number>();
    const problems: string[] = [];
    let onStacks = 0;
    for (const stack of this.#stacks) {
      for (const index of stack.entries()) {
        if (seen.has(index)) problems.push(`region ${index} found twice`);
        seen.add(index);
        onStacks++;
      }
    }
    const inUse = this.#regions.filter((region) => region?.inUse).length;
    const lost = this.#regions.length - onStacks - inUse - this.#core.counters.retiredRegions;
    if (lost !== 0) problems.push(`${lost} region(s) neither free nor in use`);
    return { regions: this.#regions.length, onStacks, cached: 0, inUse, lost, problems };
  }

  // ---- slow paths ---------------------------------------------------------------------------------

  private getSlow(bytes: number): MemoryRegion {
    checkSize(bytes);
    this.assertOpen();
    // A valid size on an open pool misses the fast path only by being above the largest class
    // (chunk sizes are below 2^31, so every int32 test of the fast path holds below it).
    if (this.#shared !== null) return this.#shared.getTemporary(bytes);
    return this.#core.getTemporary(bytes);
  }

  private releaseSlow(region: MemoryRegion): void {
    const genuine = genuineRegion("releaseRegion", region);
    const cache = this.#core.cache;
    if (cache !== null && genuine.owner === cache) return cache.release(genuine);
    const shared = this.#shared;
    if (genuine.owner !== this) return this.releaseSibling(genuine);
    if (this.closed) throw this.closedError("the region's pool is closed");
    // An RMA operation may still write into it: refuse, and change nothing (the caller releases
    // once the operation has completed, failed or been cancelled).
    if (genuine.inFlight !== 0) throw busyError("releaseRegion", genuine);
    if (shared !== null && genuine.index >= 0) {
      // Got in another Worker (or this object is stale): the shared state word decides.
      setInUse(genuine, false);
      return shared.release(genuine);
    }
    genuine.assertInUse("releaseRegion");
    // Temporary or user region: deregister now.
    if (shared !== null) return shared.releaseUnpooled(genuine);
    this.#core.forgetUnpooled(genuine);
    PoolCore.freeUnpooled(this.#core.traits, genuine, true);
    // Deregistered now, but the caller must learn that its buffer left while registered.
    if (genuine.isUser) checkRegionMemory("releaseRegion", genuine);
  }

  /**
   * A region of another pool object: released here only when that pool is a view of the same
   * shared memory (attached twice in one thread), as this pool's object for the same region.
   */
  private releaseSibling(region: MemoryRegionImpl): void {
    const shared = this.#shared;
    const sibling = shared !== null && region.index >= 0 && region.owner instanceof MemoryPool && region.owner.#shared !== null && region.owner.#shared.sameAs(shared);
    if (!sibling) throw new AllocToolsError("FOREIGN_REGION", `region at 0x${region.address.toString(16)} belongs to another pool`);
    if (this.closed) throw this.closedError("the region's pool is closed");
    setInUse(region, false);
    const mine = this.region(region.index) as MemoryRegionImpl;
    setInUse(mine, false);
    return shared.release(mine);
  }

  /** Closed here, or (a shared pool) by its owner: refused with POOL_CLOSED (PROVIDER_CLOSED). */
  private assertOpen(): void {
    if (this.closed) throw this.closedError();
  }
}

/**
 * `region` as this library's own region object, checked by identity: a Proxy or a look-alike
 * object is refused (FOREIGN_REGION), anything else is a TypeError.
 */
function genuineRegion(what: string, region: unknown): MemoryRegionImpl {
  if (MemoryRegionImpl.isGenuine(region)) return region;
  if (typeof region !== "object" || region === null) {
    throw new AllocToolsTypeError(`${what} takes a MemoryRegion got from a pool, got ${region === null ? "null" : typeof region}`);
  }
  throw new AllocToolsError("FOREIGN_REGION",
    `${what} takes a MemoryRegion this library made; got a look-alike object (a Proxy, a copy or a hand-made region)`);
}

/** Module level, not a closure in the constructor: the provider's link must not hold the pool. */
function closePoolWithProvider(pool: MemoryPool): void {
  pool.closeWithProvider();
}
