// A pool shared across the Workers of a process: the owner's MemoryPool after share(), or a
// MemoryPool.attach() in a Worker, sends here what its hot path does not finish itself (a get its
// Worker cache could not serve, a release the cache refused, a region this thread has not met),
// and everything else a shared pool does differently. This file is the SharedPool itself: share
// and attach, the get's miss path, and the entry points that pool.ts calls. Its parts, one file
// each: shared-handle (share options, the handle and its checks), thread-blocks (this thread's
// objects over the shared blocks), shared-growth (growth under a lock from any Worker),
// unpooled-regions (temporary and user regions), shared-stats (counters and statistics),
// shared-close (the owner's close and a Worker's detach), foreign-provider (releasing what
// other threads registered), recorded-mapping (mapping with each step noted); the shared
// memory itself is SharedPoolState's (shared-pool-state.ts).
import { countOperationsIn, checkOut, setInUse, setOrigin, type MemoryRegion, type MemoryRegionImpl } from "../memory/region.ts";
import { AllocToolsError, AllocToolsRangeError } from "../errors.ts";
import { attachProvider } from "../memory/provider-attach.ts";
import type { RegionProvider } from "../memory/provider.ts";
import { ProvidedMemoryBlock } from "../memory/provided-block.ts";
import type { LeakReport, PinnedLimit, PoolCore, PoolStats } from "../pool/pool-core.ts";
import type { MemoryPoolOptions } from "../pool/pool-options.ts";
import { auditSharedPool, type SharedAudit } from "./shared-audit.ts";
import { ForeignProvider } from "./foreign-provider.ts";
import { beginOwnerClose, leaveShared, SharedClose } from "./shared-close.ts";
import { providerFingerprint, writeDescription, type SharedPoolOptions } from "./shared-description.ts";
import { SharedGrowth } from "./shared-growth.ts";
import {
  attachedPoolOptions, checkAttach, checkShareOptions, layoutFor, shareProvider, type ShareOptions, type SharedPoolHandle,
} from "./shared-handle.ts";
import { CLASS_COUNTERS, FREE } from "./shared-layout.ts";
import { poolClosedError, SharedPoolState } from "./shared-pool-state.ts";
import { publishCounters, sharedStats } from "./shared-stats.ts";
import { ThreadBlocks } from "./thread-blocks.ts";
import { UnpooledRegions } from "./unpooled-regions.ts";
import type { WorkerCache } from "./worker-cache.ts";

export type { ShareOptions, SharedPoolHandle } from "./shared-handle.ts";

/** What MemoryPool.attach gets from SharedPool.join: what to build the pool from, and how to join it. */
export interface Joining {
  readonly provider: RegionProvider;
  readonly options: MemoryPoolOptions;
  readonly attach: (core: PoolCore) => SharedPool;
  /** The pool could not be built: give the slot and the provider view back. */
  readonly abandon: () => void;
}

export class SharedPool implements PinnedLimit {
  readonly handle: SharedPoolHandle;
  /** The pool share() was called on (it closes the shared pool); false for attached pools. */
  readonly isOwner: boolean;
  private readonly state: SharedPoolState;
  private readonly core: PoolCore;
  /** This Worker's cache per size class (the hot path). */
  readonly cache: WorkerCache;
  private readonly regions: (MemoryRegionImpl | undefined)[];
  private readonly debug: boolean;
  /** This thread's objects over the shared blocks, and its region objects. */
  private readonly blocks: ThreadBlocks;
  private readonly growth: SharedGrowth;
  /** This pool's temporary and user regions. */
  private readonly unpooled: UnpooledRegions;
  private readonly closing: SharedClose;

  private constructor(core: PoolCore, state: SharedPoolState, handle: SharedPoolHandle, isOwner: boolean) {
    this.core = core;
    this.state = state;
    this.handle = handle;
    this.isOwner = isOwner;
    this.cache = state.cache;
    this.debug = core.debug;
    this.blocks = new ThreadBlocks(core, state);
    this.regions = core.regions;
    const foreign = new ForeignProvider(core.provider, handle.provider, isOwner);
    this.growth = new SharedGrowth(core, state, state.cache, this.blocks, foreign);
    this.unpooled = new UnpooledRegions(core, state);
    this.closing = new SharedClose(core, state, state.cache, this.blocks, this.growth, this.unpooled, foreign);
    core.shared = this;
  }

  /** The owner's unpooled: moves an unshared pool's stacks, states and counters into shared memory. */
  static share(core: PoolCore, options: ShareOptions): SharedPool {
    const limits = checkShareOptions(options);
    const providerHandle = shareProvider(core.provider);
    const layout = layoutFor(core, limits);
    const poolOptions: SharedPoolOptions = { maxPinnedBytes: core.maxPinnedBytes, access: core.traits.access, hugePages: core.hugePages, debug: core.debug };
    const state = SharedPoolState.create(layout);
    writeDescription(state.buffer, state.layout, { pid: process.pid, layout, options: poolOptions, providerFingerprint: providerFingerprint(providerHandle) });
    const handle: SharedPoolHandle = {
      kind: "alloctools.MemoryPool", pid: process.pid, buffer: state.buffer, layout, provider: providerHandle, options: poolOptions,
    };
    const shared = new SharedPool(core, state, handle, true);
    shared.adoptLocalPool();
    shared.cache.warm();
    return shared;
  }

  /**
   * A Worker's unpooled: checks the handle against what its shared memory says (every field),
   * takes a slot and attaches to the provider. The layout and the options come from the shared
   * memory, never from the handle.
   */
  static join(handle: SharedPoolHandle): Joining {
    const description = checkAttach(handle);
    const state = SharedPoolState.attach(handle.buffer, description.layout);
    let provider: RegionProvider;
    try {
      provider = attachProvider(handle.provider);
    } catch (error) {
      leaveShared(state, null);
      throw error;
    }
    if (!state.isOpenAfterJoining()) {
      leaveShared(state, provider);
      provider.close();
      throw new AllocToolsError("POOL_CLOSED", "the shared pool is closed");
    }
    return {
      provider, options: attachedPoolOptions(description),
      attach: (core) => {
        const shared = new SharedPool(core, state, handle, false);
        shared.blocks.materializePublished();
        shared.cache.warm();
        return shared;
      },
      abandon: () => {
        leaveShared(state, provider);
        provider.close();
      },
    };
  }

  /** Blocks, states, free stacks, counters and unpooled regions of the unshared pool, into shared memory. */
  private adoptLocalPool(): void {
    const { core, state } = this;
    this.adoptBlocks();
    for (const region of core.regions) if (region?.inUse) state.markInUse(region.index);
    for (const region of [...core.regions, ...core.temporaries, ...core.users]) if (region !== undefined) countOperationsIn(region, state.slots.operations);
    for (const stack of core.stacks) {
      state.pushFree(stack.id, Int32Array.from(stack.entries()).reverse()); // the top stays on top
      state.counters.setCacheCounters(stack.id, stack.gets, stack.releases);
      state.counters.addClassCounter(stack.id, CLASS_COUNTERS.misses, stack.misses);
      state.counters.addClassCounter(stack.id, CLASS_COUNTERS.growths, stack.growths);
    }
    state.pinned.reserve(core.counters.peakPinned, Infinity);
    state.pinned.reserve(core.counters.pinned - core.counters.peakPinned, Infinity);
    this.unpooled.adopt();
    publishCounters(core, state);
  }

  /** The unshared pool's blocks into the block table (each block's regions follow each other in the region table, in block order). */
  private adoptBlocks(): void {
    const { core, state } = this;
    let index = 0;
    core.resources.blocks.forEach((block, blockIndex) => {
      const registration = core.resources.registrations[blockIndex]!;
      const first = index;
      const stackId = core.regions[first]!.stackId;
      while (index < core.regions.length && core.regions[index]?.registration === registration) index++;
      const entry = state.blocks.adopt(stackId, first, index - first, block.address, block.size, block.locked, registration);
      if (block instanceof ProvidedMemoryBlock) state.blocks.noteProvided(entry);
      this.blocks.noteMapped(entry, block, registration);
    });
  }

  get closed(): boolean {
    return this.state.closed;
  }

  /** Whether `other` is a view of the same shared pool. */
  sameAs(other: SharedPool): boolean {
    return this.state.sameAs(other.state);
  }

  // ---- the get's miss path and refused releases ------------------------------------------------------

  /**
   * The get the pool's hot path could not finish: `popped` is what this Worker's cache gave (-1:
   * empty or closed; then the shared stack, else a growth), or a region this thread has not met
   * yet (materialized here).
   */
  finishGet(sizeClass: number, bytes: number, popped: number): MemoryRegion {
    const index = popped < 0 ? this.getMiss(sizeClass) : popped;
    const region = this.regions[index] ?? this.blocks.materialize(index);
    checkOut(region, bytes);
    if (this.debug) setOrigin(region, new Error("region got here").stack);
    return region;
  }

  /** The cache was empty or the pool closed: the shared stack, else a growth. */
  private getMiss(sizeClass: number): number {
    if (this.cache.isClosed(sizeClass)) throw poolClosedError();
    let index = this.cache.popShared(sizeClass);
    if (index < 0) index = this.growth.grow(sizeClass);
    this.cache.countGetPastCache(sizeClass);
    return index;
  }

  /** Takes a pooled region back outside the pool's hot path (a sibling pool's region object, a stale one). */
  release(region: MemoryRegionImpl): void {
    if (!this.cache.push(region.stackId, region.index)) this.refuseRelease(region);
  }

  /** The cache refused a release: the pool is closed, or the region is free (released already, here or elsewhere). */
  refuseRelease(region: MemoryRegionImpl): never {
    if (this.state.closed) {
      setInUse(region, true); // the pool's hot path marked it free before asking the cache: nothing changes
      throw poolClosedError();
    }
    region.assertInUse("releaseRegion");
    throw new AllocToolsError("DOUBLE_RELEASE", "releaseRegion: the region is not in use");
  }

  // ---- temporary and user regions (unpooled-regions.ts) ------------------------------------------------

  getTemporary(bytes: number): MemoryRegion {
    return this.unpooled.getTemporary(bytes);
  }

  registerUserRegion(view: Uint8Array, memory: object): MemoryRegion {
    return this.unpooled.registerUserRegion(view, memory);
  }

  /** Releases a temporary or user region of this pool, unless the owner's close freed it already. */
  releaseUnpooled(region: MemoryRegionImpl): void {
    this.unpooled.release(region);
  }

  // ---- pinned bytes and counters (PinnedLimit) -------------------------------------------------------

  /** One maxPinnedBytes for every Worker: the count lives in shared memory. */
  reservePinned(bytes: number, what: string): void {
    this.state.pinned.claim(bytes, this.core.maxPinnedBytes, what);
  }

  addPinned(delta: number): void {
    this.state.pinned.add(delta);
  }

  /** This pool's unpooled counters (temporary and user regions, registrations) into its shared slot. */
  publishCounters(): void {
    publishCounters(this.core, this.state);
  }

  /** Statistics summed over every Worker's counters: exact while no Worker gets or releases. */
  stats(): PoolStats {
    return sharedStats(this.core, this.state);
  }

  // ---- regions by index, audit ------------------------------------------------------------------------

  region(index: number): MemoryRegion {
    const count = this.state.blocks.regionCount;
    if (!Number.isInteger(index) || index < 0 || index >= count) throw new AllocToolsRangeError(`no pooled region ${index} (there are ${count})`);
    const region = this.regions[index] ?? this.blocks.materialize(index);
    setInUse(region, this.state.holderOf(index) !== FREE);
    return region;
  }

  audit(): SharedAudit {
    return auditSharedPool(this.state);
  }

  // ---- closing (shared-close.ts) ----------------------------------------------------------------------

  /**
   * The owner's close, before anything changes: BUSY while RMA operations of any Worker use the
   * pool's regions, else the pool is closed for every Worker from here on. An attached pool has
   * nothing to check here.
   */
  beginClose(): void {
    if (this.isOwner) beginOwnerClose(this.state);
  }

  /** The owner closes the shared pool for every Worker; an attached pool detaches. */
  close(): LeakReport {
    return this.isOwner ? this.closing.closeOwner() : this.closing.detach();
  }
}
