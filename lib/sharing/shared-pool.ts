// A pool shared across the Workers of a process: the owner's MemoryPool after share(), or a
// MemoryPool.attach() in a Worker, sends its gets and releases here. Everything about sharing is
// in this file: share and attach, the per-Worker caches (through SharedPoolState), growth under a
// lock from any Worker, materializing regions a thread has not seen, shared statistics and leak
// reports, closing (owner) and detaching (attached pools), and freeing what dead Workers left.
import { ptr, toArrayBuffer, type Pointer } from "bun:ffi";
import * as libc from "../../ffi/libc.ts";
import { adviseTransparentHugePages, MemoryBlock, usesHugeTlb, type HugePages } from "../memory/block.ts";
import { AllocToolsError, AllocToolsTypeError, AllocToolsRangeError } from "../errors.ts";
import { pageSpan } from "../memory/page-pins.ts";
import { ProvidedMemoryBlock } from "../memory/provided-block.ts";
import { leakReport, PoolCore, unpooledBytes, temporaryBlock, type LeakedRegion, type LeakReport, type PinnedLimit, type PoolStats } from "../pool/pool-core.ts";
import type { MemoryPoolOptions, MemoryPoolStackOptions } from "../pool/pool-options.ts";
import { attachProvider } from "../memory/provider-attach.ts";
import type { ProviderHandle, RegionProvider, Registration } from "../memory/provider.ts";
import { checkOut, countOperationsIn, setInUse, setOrigin, type MemoryRegion, type MemoryRegionImpl } from "../memory/region.ts";
import { keepMapped, unmapKeptBlocks } from "./kept-memory.ts";
import { checkHandle, providerFingerprint, readDescription, writeDescription, type SharedPoolOptions } from "./shared-description.ts";
import { CLASS_COUNTERS, FREE, UNPOOLED_COUNTERS, type SharedLayoutSpec } from "./shared-layout.ts";
import { LockResult } from "./growth-locks.ts";
import { BlockState, type SharedBlock } from "./block-table.ts";
import { auditSharedPool, type SharedAudit } from "./shared-audit.ts";
import { SharedPoolState } from "./shared-pool-state.ts";
import { UNPOOLED_POOL_CLOSED, UnpooledKind, UnpooledRelease, type SharedUnpooledRegion } from "./unpooled-table.ts";
import type { WorkerCache } from "./worker-cache.ts";
import { SIZE_CLASSES, type SizeClass, type StackStats } from "../pool/stack.ts";

/** Options of the first `share()` (later calls return the same shared pool). */
export interface ShareOptions {
  /**
   * How many pools (owner included) may be attached at once. A pool that detaches holding nothing
   * (no region in use, no temporary or user region) frees its slot for the next attach; one that
   * leaves regions in use, or whose Worker was terminated, keeps it. Default 64.
   */
  maxWorkers?: number;
  /**
   * Free regions each Worker keeps per size class in front of the shared stack: gets and releases
   * of a hot region stay off the shared head. share() and attach put one region of each class
   * there (where the stack has one), so that a thread's first gets hit. 0 turns the cache off.
   * Default 16.
   */
  cacheSize?: number;
  /** Temporary and user regions one Worker may hold at once (recorded so the owner frees a dead Worker's). Default 64. */
  maxUnpooledRegions?: number;
}

/** What `MemoryPool.attach` needs in a Worker: SharedArrayBuffers, numbers and strings only. */
export interface SharedPoolHandle {
  /** Marks the object as a pool handle (attach checks it). */
  readonly kind: "alloctools.MemoryPool";
  /** The process it belongs to: its memory and native handles mean nothing in another one. */
  readonly pid: number;
  /** The shared stacks, region states, Worker caches and books. */
  readonly buffer: SharedArrayBuffer;
  /** Where each part lives in `buffer`. */
  readonly layout: SharedLayoutSpec;
  /** The owner's `provider.share()`. */
  readonly provider: ProviderHandle;
  /** The owner pool's options that every attached pool uses too. */
  readonly options: {
    /** The bound on pinned bytes, counted for every Worker together. */
    readonly maxPinnedBytes: number;
    /** Access flags of every registration (Access bits). */
    readonly access: number;
    /** Whether blocks are backed by huge pages. */
    readonly hugePages: HugePages;
    /** Whether gets record a stack trace for leak reports. */
    readonly debug: boolean;
  };
  // The buffer itself records `layout`, `options`, `pid` and a fingerprint of `provider`: attach
  // takes them from there and refuses a handle whose fields differ (shared-description.ts).
}

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
  /** This thread's buffer over each shared block (toArrayBuffer once per block), by block index. */
  private readonly blockBuffers: (ArrayBuffer | undefined)[] = [];
  /** This thread's Registration object per shared block. */
  private readonly blockRegistrations: (Registration | undefined)[] = [];
  /** The MemoryBlock of each block this thread mapped (adopted at share(), or grown here), by block index. */
  private readonly mappedHere: (MemoryBlock | undefined)[] = [];
  /** The table of unpooled regions entry of each temporary and user region of this pool. */
  private readonly unpooledEntries = new Map<MemoryRegionImpl, number>();
  /** A view of the owner's provider in this thread: it releases registrations other Workers made. */
  private foreignView: RegionProvider | null = null;

  private constructor(core: PoolCore, state: SharedPoolState, handle: SharedPoolHandle, isOwner: boolean) {
    this.core = core;
    this.state = state;
    this.handle = handle;
    this.isOwner = isOwner;
    this.cache = state.cache;
    this.regions = core.regions;
    this.debug = core.debug;
    // Room for every index the shared pool may hand out, so the table never turns sparse.
    while (this.regions.length < state.layout.capacity) this.regions.push(undefined);
    core.shared = this;
  }

  /** The owner's unpooled: moves an unshared pool's stacks, states and counters into shared memory. */
  static share(core: PoolCore, options: ShareOptions): SharedPool {
    if (options === null || typeof options !== "object") throw new AllocToolsTypeError("share options must be an object");
    const maxWorkers = options.maxWorkers ?? 64;
    const cacheSize = options.cacheSize ?? 16;
    const maxUnpooledRegions = options.maxUnpooledRegions ?? 64;
    if (!Number.isInteger(maxWorkers) || maxWorkers < 1 || maxWorkers > 4096) throw new AllocToolsRangeError(`maxWorkers must be an integer in [1, 4096], got ${maxWorkers}`);
    if (!Number.isInteger(cacheSize) || cacheSize < 0 || cacheSize > 1024) throw new AllocToolsRangeError(`cacheSize must be an integer in [0, 1024], got ${cacheSize}`);
    if (!Number.isInteger(maxUnpooledRegions) || maxUnpooledRegions < 0 || maxUnpooledRegions > 4096) throw new AllocToolsRangeError(`maxUnpooledRegions must be an integer in [0, 4096], got ${maxUnpooledRegions}`);
    const provider = core.provider;
    if (typeof provider.share !== "function") {
      throw new AllocToolsError("NOT_SUPPORTED",
        `provider ${provider.name} cannot be shared with Workers: it has no share() (HostProvider, LibfabricProvider and UcxProvider have)`);
    }
    const providerHandle = provider.share();
    const stacks = core.stacks.map((s) => {
      const capacity = Math.max(s.maxRegions, s.regions);
      return {
        chunkSize: s.chunkSize, initialCount: s.initialCount, growCount: s.growCount, capacity,
        maxBlocks: s.blocks + Math.ceil((capacity - s.regions) / s.growCount),
      };
    });
    const layout: SharedLayoutSpec = { stacks, maxWorkers, cacheSize, maxUnpooledRegions };
    const poolOptions: SharedPoolOptions = { maxPinnedBytes: core.maxPinnedBytes, access: core.traits.access, hugePages: core.hugePages, debug: core.debug };
    const state = SharedPoolState.create(layout);
    writeDescription(state.buffer, state.layout, { pid: process.pid, layout, options: poolOptions, providerFingerprint: providerFingerprint(providerHandle) });
    const handle: SharedPoolHandle = {
      kind: "alloctools.MemoryPool", pid: process.pid, buffer: state.buffer, layout, provider: providerHandle, options: poolOptions,
    };
    const shared = new SharedPool(core, state, handle, true);
    shared.adoptLocalPool();
    shared.warmCache();
    return shared;
  }

  /** Blocks, states, free stacks, counters and unpooled regions of the unshared pool, into shared memory. */
  private adoptLocalPool(): void {
    const { core, state } = this;
    // Each block's regions follow each other in the region table, in block order.
    let index = 0;
    for (let b = 0; b < core.resources.blocks.length; b++) {
      const block = core.resources.blocks[b]!;
      const registration = core.resources.registrations[b]!;
      const first = index;
      const stackId = core.regions[first]!.stackId;
      while (index < core.regions.length && core.regions[index]?.registration === registration) index++;
      const entry = state.blocks.adopt(stackId, first, index - first, block.address, block.size, block.locked, registration);
      if (block instanceof ProvidedMemoryBlock) state.blocks.noteProvided(entry);
      this.blockBuffers[entry] = block.view.buffer as ArrayBuffer;
      this.blockRegistrations[entry] = registration;
      this.mappedHere[entry] = block;
    }
    for (const r of core.regions) if (r?.inUse) state.markInUse(r.index);
    for (const r of [...core.regions, ...core.temporaries, ...core.users]) if (r !== undefined) countOperationsIn(r, state.slots.operations);
    for (const stack of core.stacks) {
      state.pushFree(stack.id, Int32Array.from(stack.entries()).reverse()); // the top stays on top
      state.counters.setCacheCounters(stack.id, stack.gets, stack.releases);
      state.counters.addClassCounter(stack.id, CLASS_COUNTERS.misses, stack.misses);
      state.counters.addClassCounter(stack.id, CLASS_COUNTERS.growths, stack.growths);
    }
    state.pinned.reserve(core.counters.peakPinned, Infinity);
    state.pinned.reserve(core.counters.pinned - core.counters.peakPinned, Infinity);
    for (const r of [...core.temporaries, ...core.users]) {
      const entry = state.unpooled.begin(r.isTemp ? UnpooledKind.TEMPORARY : UnpooledKind.USER, r.size, r.isTemp ? unpooledBytes(r) : 0);
      if (entry < 0) continue; // freed by this thread only; nothing a dead Worker could leave
      state.unpooled.noteMapped(entry, r.address, r.isTemp ? unpooledBytes(r) : 0, r.isTemp);
      state.unpooled.noteRegistered(entry, r.registration);
      state.unpooled.publish(entry);
      this.unpooledEntries.set(r, entry);
    }
    this.publishCounters();
  }

  /**
   * A Worker's unpooled: checks the handle against what its shared memory says (every field),
   * takes a slot and attaches to the provider. The layout and the options come from the shared
   * memory, never from the handle.
   */
  static join(handle: SharedPoolHandle): Joining {
    if (handle === null || typeof handle !== "object" || handle.kind !== "alloctools.MemoryPool") {
      throw new AllocToolsTypeError("MemoryPool.attach takes the handle pool.share() returned");
    }
    if (handle.pid !== process.pid) {
      throw new AllocToolsError("NOT_SUPPORTED",
        `the pool handle comes from process ${handle.pid}; a shared pool is shared between the Workers of one process (this is ${process.pid})`);
    }
    const description = readDescription(handle.buffer);
    if (description.layout.stacks.length !== SIZE_CLASSES.length) {
      throw new AllocToolsTypeError(`MemoryPool.attach: the shared pool has ${description.layout.stacks.length} size classes, this library ${SIZE_CLASSES.length}`);
    }
    checkHandle(handle, description);
    const state = SharedPoolState.attach(handle.buffer, description.layout);
    let provider: RegionProvider;
    try {
      provider = attachProvider(handle.provider);
    } catch (e) {
      SharedPool.leave(state, null);
      throw e;
    }
    if (!state.isOpenAfterJoining()) {
      SharedPool.leave(state, provider);
      provider.close();
      throw new AllocToolsError("POOL_CLOSED", "the shared pool is closed");
    }
    const options: MemoryPoolOptions = { ...description.options };
    description.layout.stacks.forEach((s, k) => {
      const stack: MemoryPoolStackOptions = { chunkSize: s.chunkSize, initialCount: s.initialCount, growCount: s.growCount, maxRegions: s.capacity };
      (options as Record<SizeClass, MemoryPoolStackOptions>)[SIZE_CLASSES[k]!] = stack;
    });
    return {
      provider, options,
      attach: (core) => {
        const shared = new SharedPool(core, state, handle, false);
        shared.materializePublished();
        shared.warmCache();
        return shared;
      },
      abandon: () => {
        SharedPool.leave(state, provider);
        provider.close();
      },
    };
  }

  /**
   * An attached pool lets go of its slot and its reference; the last to let go after the owner's
   * close unmaps the blocks that close kept (a provider's through `provider`).
   */
  private static leave(state: SharedPoolState, provider: RegionProvider | null): void {
    if (state.leaveSlot()) unmapKeptBlocks(state, provider);
  }

  /**
   * The blocks that exist now get their views and region objects here, before any get: made lazily
   * inside the first gets, they leave the JIT a slower hot path (2 ns per pair, measured). Blocks
   * grown later are materialized when this thread first meets one of their regions.
   */
  private materializePublished(): void {
    for (let b = 0; b < this.state.blocks.count; b++) {
      const block = this.state.blocks.live(b);
      if (block !== null) for (let i = block.first; i < block.first + block.count; i++) this.regions[i] ??= this.materialize(i);
    }
  }

  /**
   * One free region per class into this thread's cache, where the shared stack has one: the first
   * get of each class then hits. A first get that misses leaves the miss path's call in the JIT's
   * code for the caller's loop, and the loop then costs what it costs after an unshared pool grew
   * (a pair about twice an unshared pool's that never grew, measured). A region in a cache is what
   * one get and release of its class would leave there.
   */
  private warmCache(): void {
    if (this.state.spec.cacheSize === 0) return;
    for (let k = 0; k < this.state.classCount; k++) this.cache.fill(k);
  }

  get closed(): boolean {
    return this.state.closed;
  }

  /** Whether `other` is a view of the same shared pool. */
  sameAs(other: SharedPool): boolean {
    return this.state.sameAs(other.state);
  }

  // ---- the hot path ---------------------------------------------------------------------------------

  /**
   * The get the pool's hot path could not finish: `popped` is what this Worker's cache gave (-1:
   * empty or closed; then the shared stack, else a growth), or a region this thread has not met
   * yet (materialized here).
   */
  finishGet(k: number, bytes: number, popped: number): MemoryRegion {
    const index = popped < 0 ? this.getMiss(k) : popped;
    const region = this.regions[index] ?? this.materialize(index);
    checkOut(region, bytes);
    if (this.debug) noteOrigin(region);
    return region;
  }

  /** The cache was empty or the pool closed: the shared stack, else a growth. */
  private getMiss(k: number): number {
    if (this.cache.isClosed(k)) refuseClosed();
    let index = this.cache.popShared(k);
    if (index < 0) index = this.grow(k);
    this.cache.countGetPastCache(k);
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
      refuseClosed();
    }
    region.assertInUse("releaseRegion");
    throw new AllocToolsError("DOUBLE_RELEASE", "releaseRegion: the region is not in use");
  }

  // ---- growth -----------------------------------------------------------------------------------------

  /** Class `k` ran dry: one Worker grows it under its lock; the others wait, then pop what it added. */
  private grow(k: number): number {
    const state = this.state;
    if (state.locks.lock(k) === LockResult.TAKEN_FROM_DEAD) this.undoAbandoned(state.blocks.takeOverGrowth(k));
    try {
      if (state.closed) refuseClosed();
      const index = this.cache.popShared(k);
      if (index >= 0) return index; // grown (or released into) while we waited for the lock
      return this.addBlock(k);
    } finally {
      state.locks.unlock(k);
    }
  }

  /**
   * Maps, pins and registers a block from this thread, recording each step in the block table (a
   * Worker terminated half-way is undone by whoever takes its lock over), then publishes it. The
   * capacity is checked first: a growth that cannot fit maps nothing. Undone on failure.
   */
  private addBlock(k: number): number {
    const { core, state } = this;
    const stack = core.stacks[k]!;
    const { block } = state.blocks.reserve(k, stack.growCount);
    let mapped: MemoryBlock | null = null;
    let registration: Registration | null = null;
    let pinned = 0;
    try {
      const bytes = core.blockBytes(stack, stack.growCount);
      this.reservePinned(bytes, `growing the ${stack.name} stack`);
      pinned = bytes;
      state.blocks.notePinned(block, bytes);
      // A provider may supply the block itself, allocated and registered (UCX on shared memory);
      // it frees such a block by address, from any thread (freeProvidedBlock), never by munmap.
      const provided = core.traits.provider.allocateBlock?.(bytes);
      if (provided !== undefined) state.blocks.noteMapped(block, provided.address, provided.length, provided.locked);
      if (provided !== undefined) state.blocks.noteProvided(block);
      mapped = provided !== undefined
        ? new ProvidedMemoryBlock(provided)
        : this.mapRecorded(bytes, (address, size, locked) => state.blocks.noteMapped(block, address, size, locked));
      this.addPinned(mapped.size - bytes);
      pinned = mapped.size;
      state.blocks.notePinned(block, pinned);
      registration = provided !== undefined ? provided.registration : core.traits.register(mapped.address, mapped.size);
      state.blocks.noteRegistered(block, registration);
    } catch (e) {
      // Retired first: a Worker terminated below leaks the block rather than have it freed twice.
      state.blocks.abandonGrowth(block, k);
      if (registration !== null) try { core.traits.deregister(registration); } catch { /* reported by the first error */ }
      mapped?.free();
      if (pinned > 0) this.addPinned(-pinned);
      throw e;
    }
    core.counters.registrations++;
    // The owner's close deregisters it and keeps its range mapped, whichever thread mapped it.
    this.mappedHere[block] = mapped;
    this.blockBuffers[block] = mapped.view.buffer as ArrayBuffer;
    this.blockRegistrations[block] = registration;
    const first = state.blocks.publish(block);
    state.counters.addClassCounter(k, CLASS_COUNTERS.misses, 1);
    state.counters.addClassCounter(k, CLASS_COUNTERS.growths, 1);
    this.publishCounters();
    return first;
  }

  /**
   * mmap, mlock and MADV_DONTFORK with each step noted as it returns, so that a Worker terminated
   * between them leaves a mapping the owner can find. (MAP_HUGETLB pages go through the allocator.)
   */
  private mapRecorded(bytes: number, note: (address: number, size: number, locked: boolean) => void): MemoryBlock {
    const allocator = this.core.allocator;
    if (usesHugeTlb(this.core.hugePages)) {
      const block = allocator.allocate(bytes);
      note(block.address, block.size, block.locked);
      return block;
    }
    const size = allocator.roundUp(bytes);
    const address = libc.mmap(size);
    note(address, size, false);
    adviseTransparentHugePages(address, size, this.core.hugePages);
    let locked = false;
    try {
      libc.mlock(address, size);
      locked = true;
      note(address, size, true);
      libc.madvise(address, size, libc.MADV_DONTFORK);
    } catch (e) {
      note(0, 0, false); // first: never unmapped twice
      if (locked) libc.munlock(address, size);
      libc.munmap(address, size);
      throw e;
    }
    return new MemoryBlock(address, size, false, true);
  }

  /** Undoes a growth a dead Worker left before publishing it (its registration, mapping and pinned bytes). */
  private undoAbandoned(block: SharedBlock | null): void {
    if (block === null) return;
    const view = this.foreignProvider();
    let provided = false;
    try { provided = block.address !== 0 && view.freeProvidedBlock?.(block.address) === true; } catch { /* the context may be gone */ }
    if (!provided && block.state === BlockState.REGISTERED) try { view.deregister(block.registration); } catch { /* the domain may be gone */ }
    if (!provided && block.address !== 0 && block.size > 0) {
      try {
        if (block.locked) libc.munlock(block.address, block.size);
        libc.munmap(block.address, block.size);
      } catch { /* already gone */ }
    }
    if (block.pinnedBytes > 0) this.addPinned(-block.pinnedBytes);
  }

  /** This thread's object for a region first seen here: its block's view is made once per thread. */
  private materialize(index: number): MemoryRegionImpl {
    const state = this.state;
    const b = state.blocks.blockOf(index);
    const block = state.blocks.live(b);
    if (block === null) {
      if (state.closed) throw new AllocToolsError("POOL_CLOSED", `pooled region ${index} has no live block (the pool was closed)`);
      throw new AllocToolsRangeError(`no pooled region ${index} (its block was never published)`);
    }
    // The table keeps 64-bit keys only; a provider whose remote key is a blob (UCX) packs it again here.
    const registration = (this.blockRegistrations[b] ??= this.core.traits.provider.restoreRegistration?.(block.registration) ?? block.registration);
    const buffer = (this.blockBuffers[b] ??= toArrayBuffer(block.address as Pointer, 0, block.size));
    const stack = this.core.stacks[block.stackId]!;
    const offset = (index - block.first) * stack.stride;
    const region = this.core.pooledRegion(registration, block.address, new Uint8Array(buffer, offset, stack.chunkSize), stack, index, offset);
    countOperationsIn(region, state.slots.operations);
    this.regions[index] = region;
    return region;
  }

  // ---- temporary and user regions ---------------------------------------------------------------------

  /** A temporary region made in this Worker, recorded in the table of unpooled regions from before it is mapped. */
  getTemporary(bytes: number): MemoryRegion {
    const { core, state } = this;
    const size = core.allocator.roundUp(bytes);
    this.reservePinned(size, `temporary region of ${bytes} bytes`);
    const entry = state.unpooled.begin(UnpooledKind.TEMPORARY, bytes, size);
    if (entry < 0) {
      this.addPinned(-size);
      throw entry === UNPOOLED_POOL_CLOSED ? closedError() : this.unpooledTableFull();
    }
    let block: MemoryBlock | null = null;
    let registration: Registration;
    try {
      block = this.mapRecorded(size, (address, mappedSize, locked) => state.unpooled.noteMapped(entry, address, mappedSize, locked));
      registration = core.traits.register(block.address, block.size);
    } catch (e) {
      state.unpooled.drop(entry); // first: never unmapped twice
      block?.free();
      this.addPinned(-size);
      throw e;
    }
    state.unpooled.noteRegistered(entry, registration);
    core.counters.registrations++;
    const region = core.temporaryRegion(bytes, block, registration);
    countOperationsIn(region, state.slots.operations);
    this.unpooledEntries.set(region, entry);
    state.unpooled.publish(entry);
    this.publishCounters();
    return region;
  }

  registerUserRegion(view: Uint8Array, memory: object): MemoryRegion {
    const { core, state } = this;
    this.reservePinned(view.byteLength, "user region");
    const entry = state.unpooled.begin(UnpooledKind.USER, view.byteLength, 0);
    if (entry < 0) {
      this.addPinned(-view.byteLength);
      throw entry === UNPOOLED_POOL_CLOSED ? closedError() : this.unpooledTableFull();
    }
    state.unpooled.noteMapped(entry, ptr(view), 0, false);
    let registration: Registration;
    try {
      registration = core.traits.register(ptr(view), view.byteLength);
    } catch (e) {
      state.unpooled.drop(entry);
      this.addPinned(-view.byteLength);
      throw e;
    }
    state.unpooled.noteRegistered(entry, registration);
    const region = core.userRegion(view, registration, memory);
    countOperationsIn(region, state.slots.operations);
    this.unpooledEntries.set(region, entry);
    state.unpooled.publish(entry);
    this.publishCounters();
    return region;
  }

  /** Releases a temporary or user region of this pool, unless the owner's close freed it already. */
  releaseUnpooled(region: MemoryRegionImpl): void {
    this.core.forgetUnpooled(region);
    this.publishCounters();
    this.freeUnpooled(region);
  }

  /**
   * Deregisters and (temporary regions) unmaps a unpooled region this thread made, each step noted in
   * its unpooled entry. When the owner's close took the entry first, it only detaches the region's
   * views, and unmaps the pages that close kept mapped for them.
   */
  private freeUnpooled(region: MemoryRegionImpl): void {
    const entry = this.unpooledEntries.get(region);
    this.unpooledEntries.delete(region);
    if (entry === undefined) return PoolCore.freeUnpooled(this.core.traits, region, true);
    const state = this.state;
    const found = state.unpooled.beginFreeing(entry);
    if (found !== UnpooledRelease.LIVE) {
      const transferred = region.isTemp && temporaryBlock(region).detachViews();
      if (found === UnpooledRelease.KEPT) {
        try {
          // Deregistered and unpinned by the owner's close; fresh pages since. A stray buffer keeps them mapped.
          if (region.isTemp && !transferred) libc.munmap(temporaryBlock(region).address, temporaryBlock(region).size);
        } finally {
          state.unpooled.endFreeing(entry);
        }
      }
      return;
    }
    // Each step noted as it is done (before, for the munmap): the owner finishes what a Worker
    // terminated in between left, and never repeats what could hit memory that is no longer ours.
    try {
      this.core.traits.deregister(region.registration);
      state.unpooled.noteDeregistered(entry);
    } finally {
      if (region.isTemp) {
        const block = temporaryBlock(region);
        const transferred = block.detachViews(); // its views read nothing from now on
        if (block.locked) libc.munlock(block.address, block.size);
        state.unpooled.noteUnlocked(entry);
        state.unpooled.noteUnmapping(entry);
        // Memory a caller transferred out of a view keeps fresh pages under the stray buffer (see MemoryBlock).
        if (transferred) libc.mmapFixed(block.address, block.size);
        else libc.munmap(block.address, block.size);
      }
      state.unpooled.endFreeing(entry);
    }
  }

  private unpooledTableFull(): AllocToolsError {
    return new AllocToolsError("PINNED_LIMIT",
      `this Worker holds ${this.state.spec.maxUnpooledRegions} temporary and user regions already, the most a shared pool records per Worker (share({ maxUnpooledRegions }))`);
  }

  // ---- counters --------------------------------------------------------------------------------------------

  /** One maxPinnedBytes for every Worker: the count lives in shared memory. */
  reservePinned(bytes: number, what: string): void {
    if (this.state.pinned.reserve(bytes, this.core.maxPinnedBytes)) return;
    throw new AllocToolsError("PINNED_LIMIT",
      `${what} needs ${bytes} more pinned bytes; ${this.state.pinned.bytes} of maxPinnedBytes ${this.core.maxPinnedBytes} are in use (all Workers)`);
  }

  addPinned(delta: number): void {
    this.state.pinned.reserve(delta, Infinity);
  }

  /** This pool's unpooled counters (temporary and user regions, registrations) into its shared slot. */
  publishCounters(): void {
    const { core, state } = this;
    const counters = core.counters;
    state.counters.setUnpooledCounter(UNPOOLED_COUNTERS.temporaryCount, counters.temporaryRegions);
    state.counters.setUnpooledCounter(UNPOOLED_COUNTERS.temporaryGets, counters.temporaryGets);
    state.counters.setUnpooledCounter(UNPOOLED_COUNTERS.userCount, counters.userRegions);
    state.counters.setUnpooledCounter(UNPOOLED_COUNTERS.unpooledReleases, counters.unpooledReleases);
    state.counters.setUnpooledCounter(UNPOOLED_COUNTERS.registrations, counters.registrations);
    state.counters.setUnpooledCounter(UNPOOLED_COUNTERS.deregistrations, counters.deregistrations);
    state.counters.setUnpooledCounter(UNPOOLED_COUNTERS.liveTemporaries, core.temporaries.size);
    state.counters.setUnpooledCounter(UNPOOLED_COUNTERS.liveUsers, core.users.size);
  }

  /** Statistics summed over every Worker's counters: exact while no Worker gets or releases. */
  stats(): PoolStats {
    const { core, state } = this;
    const stacks = {} as Record<SizeClass, StackStats>;
    const unpooled = (counter: number) => state.counters.sumUnpooledCounter(counter);
    let gets = unpooled(UNPOOLED_COUNTERS.temporaryGets) + unpooled(UNPOOLED_COUNTERS.userCount);
    let releases = unpooled(UNPOOLED_COUNTERS.unpooledReleases);
    let misses = 0;
    let growths = 0;
    let inUse = unpooled(UNPOOLED_COUNTERS.liveTemporaries) + unpooled(UNPOOLED_COUNTERS.liveUsers);
    for (const stack of core.stacks) {
      const k = stack.id;
      const counters = state.counters.sumCacheCounters(k);
      const classMisses = state.counters.sumClassCounter(k, CLASS_COUNTERS.misses);
      const totals = state.counters.stackCounters(k);
      const out = counters.gets - counters.releases;
      stacks[stack.name] = {
        name: stack.name, chunkSize: stack.chunkSize, regions: totals.regions, free: totals.regions - out, inUse: out,
        gets: counters.gets, releases: counters.releases, hits: counters.gets - classMisses, misses: classMisses,
        growths: state.counters.sumClassCounter(k, CLASS_COUNTERS.growths), blocks: totals.blocks, pinnedBytes: totals.pinnedBytes, cached: state.counters.cached(k),
      };
      gets += counters.gets;
      releases += counters.releases;
      misses += classMisses;
      growths += stacks[stack.name].growths;
      inUse += out;
    }
    return {
      provider: core.provider.name, gets, releases,
      hits: gets - misses - unpooled(UNPOOLED_COUNTERS.temporaryGets) - unpooled(UNPOOLED_COUNTERS.userCount), misses, growths,
      registrations: unpooled(UNPOOLED_COUNTERS.registrations), deregistrations: unpooled(UNPOOLED_COUNTERS.deregistrations),
      temporaryRegions: unpooled(UNPOOLED_COUNTERS.temporaryCount), liveTemporaryRegions: unpooled(UNPOOLED_COUNTERS.liveTemporaries),
      userRegions: unpooled(UNPOOLED_COUNTERS.userCount), liveUserRegions: unpooled(UNPOOLED_COUNTERS.liveUsers),
      regionsInUse: inUse, retiredRegions: 0, pinnedBytes: state.pinned.bytes, peakPinnedBytes: state.pinned.peakBytes,
      maxPinnedBytes: core.maxPinnedBytes, stacks, cache: core.cache?.stats() ?? null,
    };
  }

  // ---- regions by index, audit ------------------------------------------------------------------------

  region(index: number): MemoryRegion {
    const count = this.state.blocks.regionCount;
    if (!Number.isInteger(index) || index < 0 || index >= count) throw new AllocToolsRangeError(`no pooled region ${index} (there are ${count})`);
    const region = this.regions[index] ?? this.materialize(index);
    setInUse(region, this.state.holderOf(index) !== FREE);
    return region;
  }

  audit(): SharedAudit {
    return auditSharedPool(this.state);
  }

  /**
   * Pooled regions in use, from the shared state words: every one (owner), or those this Worker
   * got and still holds (`onlyMine`); then this pool's temporary and user regions.
   */
  private leaks(onlyMine: boolean): LeakedRegion[] {
    const { core, state } = this;
    const out: LeakedRegion[] = [];
    const mark = state.slot + 1;
    for (let index = 0; index < state.blocks.regionCount; index++) {
      const holder = state.holderOf(index);
      if (holder === FREE || (onlyMine && holder !== mark)) continue;
      const block = state.blocks.live(state.blocks.blockOf(index));
      if (block === null) continue;
      const stack = core.stacks[block.stackId]!;
      out.push({ size: stack.chunkSize, kind: stack.name, origin: this.regions[index]?.origin });
    }
    out.push(...core.unpooledLeaks());
    return out;
  }

  // ---- closing ------------------------------------------------------------------------------------------

  /**
   * The owner's close, before anything changes: AllocToolsError BUSY while RMA operations of this
   * thread or of any live Worker use the pool's regions (the pool stays open and serving); else the
   * pool is closed for every Worker from here on (their operations, gets, temporary and user
   * regions and attaches are refused with POOL_CLOSED). An attached pool has nothing to check here.
   */
  beginClose(): void {
    if (!this.isOwner) return;
    const busy = this.state.beginClose();
    if (busy === null) return;
    throw new AllocToolsError("BUSY",
      `close: ${busy.regions} region(s) still have ${busy.operations} RMA operation(s) in flight, in ${busy.threads} thread(s) of this shared pool ` +
      `(this one and its Workers); the pool stays open and serving (wait for them, or close their endpoints, then close again)`);
  }

  close(): LeakReport {
    return this.isOwner ? this.closeShared() : this.detach();
  }

  /**
   * The owner closes the shared pool (beginClose marked it closed): growths in flight finish (or,
   * for a dead Worker's, are undone), temporary and user regions live Workers are making are waited
   * for; every temporary and user region any Worker left is reported and deregistered, every block,
   * whoever mapped it, deregistered. Memory another thread may still hold views of is kept mapped
   * over fresh pages (kept-memory.ts); the last pool to let go unmaps it.
   */
  private closeShared(): LeakReport {
    const { core, state } = this;
    for (let k = 0; k < state.classCount; k++) {
      const result = state.locks.lock(k, 60_000);
      if (result === LockResult.TAKEN_FROM_DEAD) this.undoAbandoned(state.blocks.takeOverGrowth(k));
    }
    state.unpooled.waitForBuilds(state.slot, Date.now() + 60_000);
    const leaks = this.leaks(false);
    const foreignUnpooled = state.unpooled.live(state.slot);
    for (const unpooled of foreignUnpooled) leaks.push({ size: unpooled.size, kind: unpooled.kind });
    for (const r of core.regions) if (r !== undefined) setInUse(r, false);
    state.clearStacks();
    let firstError = this.dropOwnUnpooled();
    const view = this.foreignProvider();
    for (const unpooled of foreignUnpooled) {
      if (!state.unpooled.claim(unpooled.index, unpooled.state)) continue;
      // Its Worker may still hold views of it (or a transport complete a dead Worker's operation into it).
      const keep = unpooled.kind === "temporary" && state.slots.mayTouch(unpooled.slot);
      try { this.freeForeignUnpooled(view, unpooled, keep); } catch (e) { firstError ??= e; }
      state.unpooled.endClaimed(unpooled.index, keep);
      core.counters.deregistrations++;
    }
    let blocks = 0;
    for (let b = 0; b < state.blocks.count; b++) {
      if (!state.blocks.keep(b)) continue;
      blocks++;
      try { this.retireBlock(b, view); } catch (e) { firstError ??= e; }
    }
    core.resources.blocks.length = 0; // retired above, each by its block index
    core.resources.registrations.length = 0;
    core.counters.deregistrations += blocks;
    state.pinned.reset();
    this.publishCounters();
    for (let k = 0; k < state.classCount; k++) state.locks.unlock(k);
    state.slots.releaseDead();
    if (state.slots.dropReference()) try { unmapKeptBlocks(state, view); } catch (e) { firstError ??= e; }
    if (view !== core.provider) view.close();
    if (firstError !== undefined) throw firstError;
    return leakReport(leaks);
  }

  /**
   * The owner's close of block `b`: this thread's views detached, its registration released, its
   * range unpinned and kept mapped over fresh pages (a provider's block stays allocated) until the
   * last pool lets go. A block memory was transferred out of (here) is noted: never unmapped.
   */
  private retireBlock(b: number, view: RegionProvider): void {
    const block = this.state.blocks.record(b);
    const mapped = this.mappedHere[b];
    let stray: boolean;
    if (mapped !== undefined) {
      // Registered through this thread's provider object, which keeps its own books of it.
      if (!block.provided) this.core.traits.deregister(this.blockRegistrations[b]!);
      stray = mapped.freeKeepingRange();
    } else {
      const buffer = this.blockBuffers[b];
      stray = buffer !== undefined && buffer.detached;
      if (buffer !== undefined && !buffer.detached) buffer.transfer(0); // this thread's views read nothing from now on
      if (!block.provided) {
        try { view.deregister(block.registration); } finally { keepMapped(block.address, block.size, block.locked); }
      }
    }
    if (stray) this.state.blocks.noteStray(b);
  }

  /**
   * What a Worker left of a temporary or user region: its registration, its pinned pages, its
   * mapping; `keep`: the mapping stays, over fresh pages, for its Worker to unmap.
   */
  private freeForeignUnpooled(view: RegionProvider, unpooled: SharedUnpooledRegion, keep: boolean): void {
    const { kind, address, blockSize, registration } = unpooled;
    // A registration a dead Worker was releasing may be closed already: on libfabric closing it
    // twice would touch freed memory, so it is left (the domain then refuses to close: EBUSY).
    if (registration !== null && !(unpooled.releasing && view.kind !== "host")) {
      try { view.deregister(registration); } catch { /* its pages may be gone with the Worker's heap */ }
    } else if (registration === null && kind === "user" && address !== 0 && view.kind === "host") {
      const [start, length] = pageSpan(address, unpooled.size); // registered (pinned) when it died, not noted yet
      try { libc.munlock(start, length); } catch { /* not pinned */ }
    }
    // Unmapping drops the pins too. Not when its Worker may have unmapped it already.
    if (kind !== "temporary" || address === 0 || blockSize === 0 || unpooled.unmapping) return;
    if (keep) keepMapped(address, blockSize, unpooled.locked);
    else libc.munmap(address, blockSize);
  }

  /** Deregisters this pool's temporary and user regions (each once: the table of unpooled regions decides). */
  private dropOwnUnpooled(): unknown {
    const core = this.core;
    let firstError = core.closeCache();
    for (const r of [...core.temporaries, ...core.users]) {
      core.forgetUnpooled(r);
      core.counters.unpooledReleases--; // closed, not released
      try { this.freeUnpooled(r); } catch (e) { firstError ??= e; }
    }
    return firstError;
  }

  /**
   * An attached pool's close: its cache goes back to the shared stacks, its temporary and user
   * regions are deregistered, its views detached; the memory stays (the owner's to free). Reports
   * the regions the shared state words say this Worker got and still holds.
   */
  private detach(): LeakReport {
    const { core, state } = this;
    const leaks = this.leaks(true);
    if (!state.closed) for (let k = 0; k < state.classCount; k++) this.cache.flush(k);
    for (const r of core.regions) if (r !== undefined) setInUse(r, false);
    let firstError = this.dropOwnUnpooled();
    this.blockBuffers.forEach((buffer, b) => {
      if (buffer === undefined) return;
      if (buffer.detached) state.blocks.noteStray(b); // moved away by a caller: that memory stays mapped
      else buffer.transfer(0);
    });
    this.publishCounters();
    try { SharedPool.leave(state, core.provider); } catch (e) { firstError ??= e; }
    core.provider.close();
    if (firstError !== undefined) throw firstError;
    return leakReport(leaks);
  }

  /** A view of the owner's provider in this thread (the owner's own provider for attached pools). */
  private foreignProvider(): RegionProvider {
    if (!this.isOwner) return this.core.provider;
    return (this.foreignView ??= attachProvider(this.handle.provider));
  }
}

function noteOrigin(region: MemoryRegionImpl): void {
  setOrigin(region, new Error("region got here").stack);
}

function refuseClosed(): never {
  throw closedError();
}

function closedError(): AllocToolsError {
  return new AllocToolsError("POOL_CLOSED", "the pool is closed");
}
