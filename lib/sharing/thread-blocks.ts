// This thread's objects over the blocks of a shared pool. Every thread sees the same memory, but
// the JavaScript objects over it are each thread's own: a buffer over each block (toArrayBuffer
// once per block), the Registration object a region carries (with its remote key unpacked again
// where the provider's key is a blob), the MemoryBlock of each block this thread mapped, and the
// region objects, made the first time this thread meets a region. The owner's close and a
// Worker's detach end this thread's views here.
import { toArrayBuffer, type Pointer } from "bun:ffi";
import { AllocToolsError, AllocToolsRangeError } from "../errors.ts";
import type { MemoryBlock } from "../memory/block.ts";
import type { RegionProvider, Registration } from "../memory/provider.ts";
import { countOperationsIn, type MemoryRegionImpl } from "../memory/region.ts";
import type { PoolCore } from "../pool/pool-core.ts";
import { BlockState } from "./block-table.ts";
import { keepMapped } from "./kept-memory.ts";
import type { SharedPoolState } from "./shared-pool-state.ts";

export class ThreadBlocks {
  private readonly core: PoolCore;
  private readonly state: SharedPoolState;
  /** The pool's region objects by index (the core's table), filled as this thread meets them. */
  private readonly regions: (MemoryRegionImpl | undefined)[];
  /** This thread's buffer over each shared block, by block index. */
  private readonly buffers: (ArrayBuffer | undefined)[] = [];
  /** This thread's Registration object per shared block. */
  private readonly registrations: (Registration | undefined)[] = [];
  /** The MemoryBlock of each block this thread mapped (adopted at share(), or grown here), by block index. */
  private readonly mappedHere: (MemoryBlock | undefined)[] = [];

  constructor(core: PoolCore, state: SharedPoolState) {
    this.core = core;
    this.state = state;
    this.regions = core.regions;
    // Room for every index the shared pool may hand out, so the table never turns sparse.
    while (this.regions.length < state.layout.capacity) this.regions.push(undefined);
  }

  /** Block `blockIndex` was mapped and registered by this thread (adopted at share(), or a growth here). */
  noteMapped(blockIndex: number, block: MemoryBlock, registration: Registration): void {
    this.mappedHere[blockIndex] = block;
    this.buffers[blockIndex] = block.view.buffer as ArrayBuffer;
    this.registrations[blockIndex] = registration;
  }

  /**
   * The blocks that exist now get their views and region objects here, before any get: made lazily
   * inside the first gets, they leave the JIT a slower hot path (2 ns per pair, measured). Blocks
   * added later (another Worker's growth) are materialized when first met.
   */
  materializePublished(): void {
    const blocks = this.state.blocks;
    for (let blockIndex = 0; blockIndex < blocks.count; blockIndex++) {
      const block = blocks.live(blockIndex);
      if (block === null) continue;
      for (let index = block.first; index < block.first + block.count; index++) this.regions[index] ??= this.materialize(index);
    }
  }

  /** This thread's object for a region first seen here: its block's view is made once per thread. */
  materialize(index: number): MemoryRegionImpl {
    const state = this.state;
    const blockIndex = state.blocks.blockOf(index);
    const block = state.blocks.live(blockIndex);
    if (block === null) {
      if (state.closed) throw new AllocToolsError("POOL_CLOSED", `pooled region ${index} has no live block (the pool was closed)`);
      throw new AllocToolsRangeError(`no pooled region ${index} (its block was never published)`);
    }
    // The table keeps 64-bit keys only; a provider whose remote key is a blob (UCX) packs it again here.
    const registration = (this.registrations[blockIndex] ??= this.core.traits.provider.restoreRegistration?.(block.registration) ?? block.registration);
    const buffer = (this.buffers[blockIndex] ??= toArrayBuffer(block.address as Pointer, 0, block.size));
    const stack = this.core.stacks[block.stackId]!;
    const offset = (index - block.first) * stack.stride;
    const region = this.core.pooledRegion(registration, block.address, new Uint8Array(buffer, offset, stack.chunkSize), stack, index, offset);
    countOperationsIn(region, state.slots.operations);
    this.regions[index] = region;
    return region;
  }

  /**
   * The owner's close of block `blockIndex`, taken from state `from` (BlockTable.keep): this
   * thread's views detached, its registration released, its range unpinned and kept mapped over
   * fresh pages (a provider's block stays allocated) until the last pool lets go. A block memory
   * was transferred out of (here) is noted: never unmapped.
   */
  retire(blockIndex: number, view: RegionProvider, from: number): void {
    const block = this.state.blocks.record(blockIndex);
    const mapped = this.mappedHere[blockIndex];
    let stray: boolean;
    if (mapped !== undefined) {
      // Registered through this thread's provider object, which keeps its own books of it.
      if (!block.provided) this.core.traits.deregister(this.registrations[blockIndex]!);
      stray = mapped.freeKeepingRange();
    } else {
      const buffer = this.buffers[blockIndex];
      stray = buffer !== undefined && buffer.detached;
      if (buffer !== undefined && !buffer.detached) buffer.transfer(0); // this thread's views read nothing from now on
      if (!block.provided) {
        // MAPPED: a growth nobody finished (its Worker still at it past the close's wait) has recorded no registration yet.
        try { if (from !== BlockState.MAPPED) view.deregister(block.registration); } finally { keepMapped(block.address, block.size, block.locked); }
      }
    }
    if (stray) this.state.blocks.noteStray(blockIndex);
  }

  /** A Worker detaches: its views of every block read nothing from now on; the memory stays (the owner's to free). */
  detachViews(): void {
    this.buffers.forEach((buffer, blockIndex) => {
      if (buffer === undefined) return;
      if (buffer.detached) this.state.blocks.noteStray(blockIndex); // moved away by a caller: that memory stays mapped
      else buffer.transfer(0);
    });
  }
}
