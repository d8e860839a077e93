// Growth of a shared pool: a class that ran dry gets a block from whichever Worker found it empty.
// That Worker takes the class's growth lock (growth-locks.ts), maps, pins and registers the block
// from its own thread, recording each step in the block table as it is done, then publishes it
// for every Worker. A Worker terminated half-way is undone by whoever takes its lock next (or by
// the owner's close): the records say exactly what it held.
import * as libc from "../../ffi/libc.ts";
import { MemoryBlock } from "../memory/block.ts";
import { ProvidedMemoryBlock } from "../memory/provided-block.ts";
import type { Registration } from "../memory/provider.ts";
import type { PoolCore } from "../pool/pool-core.ts";
import { BlockState, type SharedBlock } from "./block-table.ts";
import type { ForeignProvider } from "./foreign-provider.ts";
import { LockResult } from "./growth-locks.ts";
import { mapRecorded } from "./recorded-mapping.ts";
import { CLASS_COUNTERS } from "./shared-layout.ts";
import { poolClosedError, type SharedPoolState } from "./shared-pool-state.ts";
import { publishCounters } from "./shared-stats.ts";
import type { ThreadBlocks } from "./thread-blocks.ts";
import type { WorkerCache } from "./worker-cache.ts";

export class SharedGrowth {
  private readonly core: PoolCore;
  private readonly state: SharedPoolState;
  private readonly cache: WorkerCache;
  private readonly blocks: ThreadBlocks;
  private readonly foreign: ForeignProvider;

  constructor(core: PoolCore, state: SharedPoolState, cache: WorkerCache, blocks: ThreadBlocks, foreign: ForeignProvider) {
    this.core = core;
    this.state = state;
    this.cache = cache;
    this.blocks = blocks;
    this.foreign = foreign;
  }

  /**
   * Class `sizeClass` ran dry: one Worker grows it under its lock; the others wait, then pop what
   * it added. Returns the region index this get takes (marked in use for this Worker).
   */
  grow(sizeClass: number): number {
    const state = this.state;
    if (state.locks.lock(sizeClass) === LockResult.TAKEN_FROM_DEAD) this.undoAbandoned(state.blocks.takeOverGrowth(sizeClass));
    try {
      if (state.closed) throw poolClosedError();
      const index = this.cache.popShared(sizeClass);
      if (index >= 0) return index; // grown (or released into) while we waited for the lock
      return this.addBlock(sizeClass);
    } finally {
      state.locks.unlock(sizeClass);
    }
  }

  /**
   * Undoes a growth a dead Worker left before publishing it (its registration, mapping and pinned
   * bytes), the block still named in its lock line (takeOverGrowth). Each step is noted in the
   * block table before it is done: if this thread is terminated half-way, the next taker of the
   * lock does the rest, and a step cut short leaks rather than frees twice.
   */
  undoAbandoned(block: SharedBlock | null): void {
    if (block === null) return;
    const blocks = this.state.blocks;
    const view = this.foreign.get();
    if (block.pinnedBytes > 0) {
      blocks.notePinned(block.index, 0);
      this.state.pinned.add(-block.pinnedBytes);
    }
    // A provider's block is freed by the provider, once whoever asks (false: the pool's own memory, or freed already).
    let provided = block.provided;
    try { if (block.address !== 0 && view.freeProvidedBlock?.(block.address) === true) provided = true; } catch { /* the context may be gone */ }
    if (provided) {
      blocks.retireAbandoned(block.index);
    } else {
      if (block.state === BlockState.REGISTERED) {
        blocks.forgetRegistration(block.index);
        try { view.deregister(block.registration); } catch { /* the domain may be gone */ }
      }
      if (block.address !== 0 && block.size > 0 && block.locked) try { libc.munlock(block.address, block.size); } catch { /* not pinned */ }
      blocks.retireAbandoned(block.index);
      if (block.address !== 0 && block.size > 0) try { libc.munmap(block.address, block.size); } catch { /* already gone */ }
    }
    blocks.endTakeOver(block.stackId);
  }

  /**
   * Adds a block to class `sizeClass` from this thread and publishes it; returns its first region.
   * The capacity is checked first: a growth that cannot fit maps nothing.
   */
  private addBlock(sizeClass: number): number {
    const { core, state } = this;
    const stack = core.stacks[sizeClass]!;
    const { block } = state.blocks.reserve(sizeClass, stack.growCount);
    this.build(block, sizeClass);
    core.counters.registrations++;
    const first = state.blocks.publish(block);
    state.counters.addClassCounter(sizeClass, CLASS_COUNTERS.misses, 1);
    state.counters.addClassCounter(sizeClass, CLASS_COUNTERS.growths, 1);
    publishCounters(core, state);
    return first;
  }

  /**
   * Pins, maps and registers reserved block `block` of class `sizeClass`, each step recorded in the block
   * table (a Worker terminated half-way is undone by whoever takes its lock over). Undone on
   * failure. The owner's close deregisters it and keeps its range mapped, whichever thread mapped it.
   */
  private build(block: number, sizeClass: number): void {
    const { core, state } = this;
    const stack = core.stacks[sizeClass]!;
    let mapped: MemoryBlock | null = null;
    let registration: Registration | null = null;
    let pinned = 0;
    try {
      const bytes = core.blockBytes(stack, stack.growCount);
      state.pinned.claim(bytes, core.maxPinnedBytes, `growing the ${stack.name} stack`);
      pinned = bytes;
      state.blocks.notePinned(block, bytes);
      mapped = this.map(block, bytes);
      state.pinned.add(mapped.size - bytes);
      pinned = mapped.size;
      state.blocks.notePinned(block, pinned);
      registration = mapped instanceof ProvidedMemoryBlock ? mapped.registration : core.traits.register(mapped.address, mapped.size);
      state.blocks.noteRegistered(block, registration);
    } catch (error) {
      // Retired first: a Worker terminated below leaks the block rather than have it freed twice.
      state.blocks.abandonGrowth(block, sizeClass);
      if (registration !== null) try { core.traits.deregister(registration); } catch { /* reported by the first error */ }
      mapped?.free();
      if (pinned > 0) state.pinned.add(-pinned);
      throw error;
    }
    this.blocks.noteMapped(block, mapped, registration);
  }

  /**
   * The memory of block `block`. A provider may supply the block itself, allocated and registered
   * (UCX on shared memory); it frees such a block by address, from any thread
   * (freeProvidedBlock), never by munmap.
   */
  private map(block: number, bytes: number): MemoryBlock {
    const { core, state } = this;
    const provided = core.traits.provider.allocateBlock?.(bytes);
    if (provided === undefined) {
      return mapRecorded(core.allocator, core.hugePages, bytes, (address, size, locked) => state.blocks.noteMapped(block, address, size, locked));
    }
    state.blocks.noteMapped(block, provided.address, provided.length, provided.locked);
    state.blocks.noteProvided(block);
    return new ProvidedMemoryBlock(provided);
  }
}
