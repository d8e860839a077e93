// The temporary and user regions of one pool of a shared pool (the owner's or a Worker's). Each is
// recorded in the shared table of unpooled regions (unpooled-table.ts) before anything is mapped
// or registered, and each step is noted there as it is done: if the Worker is terminated half-way,
// the owner's close finds exactly what it left, and frees it without repeating a step. This
// pool's releases go through the same table, so that a region the owner's close took first is not
// freed twice.
import { ptr } from "bun:ffi";
import * as libc from "../../ffi/libc.ts";
import { AllocToolsError } from "../errors.ts";
import type { MemoryBlock } from "../memory/block.ts";
import type { Registration } from "../memory/provider.ts";
import { countOperationsIn, type MemoryRegion, type MemoryRegionImpl } from "../memory/region.ts";
import { PoolCore, temporaryBlock, unpooledBytes } from "../pool/pool-core.ts";
import { mapRecorded } from "./recorded-mapping.ts";
import { poolClosedError, type SharedPoolState } from "./shared-pool-state.ts";
import { publishCounters } from "./shared-stats.ts";
import { UNPOOLED_POOL_CLOSED, UnpooledKind, UnpooledRelease } from "./unpooled-table.ts";

export class UnpooledRegions {
  private readonly core: PoolCore;
  private readonly state: SharedPoolState;
  /** The table entry of each temporary and user region of this pool. */
  private readonly entries = new Map<MemoryRegionImpl, number>();

  constructor(core: PoolCore, state: SharedPoolState) {
    this.core = core;
    this.state = state;
  }

  /** share(): the unshared pool's temporary and user regions, recorded as made and registered. */
  adopt(): void {
    const { core, state } = this;
    for (const region of [...core.temporaries, ...core.users]) {
      const blockSize = region.isTemp ? unpooledBytes(region) : 0;
      const entry = state.unpooled.begin(region.isTemp ? UnpooledKind.TEMPORARY : UnpooledKind.USER, region.size, blockSize);
      if (entry < 0) continue; // freed by this thread only; nothing a dead Worker could leave
      state.unpooled.noteMapped(entry, region.address, blockSize, region.isTemp);
      state.unpooled.noteRegistered(entry, region.registration);
      state.unpooled.publish(entry);
      this.entries.set(region, entry);
    }
  }

  /** A temporary region made in this Worker, recorded in the table of unpooled regions from before it is mapped. */
  getTemporary(bytes: number): MemoryRegion {
    const { core, state } = this;
    const size = core.allocator.roundUp(bytes);
    state.pinned.claim(size, core.maxPinnedBytes, `temporary region of ${bytes} bytes`);
    const entry = this.begin(UnpooledKind.TEMPORARY, bytes, size, size);
    let block: MemoryBlock | null = null;
    let registration: Registration;
    try {
      block = mapRecorded(core.allocator, core.hugePages, size, (address, mappedSize, locked) => state.unpooled.noteMapped(entry, address, mappedSize, locked));
      registration = core.traits.register(block.address, block.size);
    } catch (error) {
      state.unpooled.drop(entry); // first: never unmapped twice
      block?.free();
      state.pinned.add(-size);
      throw error;
    }
    state.unpooled.noteRegistered(entry, registration);
    core.counters.registrations++;
    return this.publish(core.temporaryRegion(bytes, block, registration), entry);
  }

  /** A user region over `view` (the caller's memory, `memory` its buffer), recorded before it is registered. */
  registerUserRegion(view: Uint8Array, memory: object): MemoryRegion {
    const { core, state } = this;
    state.pinned.claim(view.byteLength, core.maxPinnedBytes, "user region");
    const entry = this.begin(UnpooledKind.USER, view.byteLength, 0, view.byteLength);
    state.unpooled.noteMapped(entry, ptr(view), 0, false);
    let registration: Registration;
    try {
      registration = core.traits.register(ptr(view), view.byteLength);
    } catch (error) {
      state.unpooled.drop(entry);
      state.pinned.add(-view.byteLength);
      throw error;
    }
    state.unpooled.noteRegistered(entry, registration);
    return this.publish(core.userRegion(view, registration, memory), entry);
  }

  /** Releases a temporary or user region of this pool, unless the owner's close freed it already. */
  release(region: MemoryRegionImpl): void {
    this.core.forgetUnpooled(region);
    publishCounters(this.core, this.state);
    this.free(region);
  }

  /** Deregisters this pool's temporary and user regions (each once: the table decides), its cache first; returns the first error. */
  dropAll(): unknown {
    const core = this.core;
    let firstError = core.closeCache();
    for (const region of [...core.temporaries, ...core.users]) {
      core.forgetUnpooled(region);
      core.counters.unpooledReleases--; // closed, not released
      try { this.free(region); } catch (error) { firstError ??= error; }
    }
    return firstError;
  }

  /** A table entry for a region being made, its `pinned` bytes already claimed (given back when there is no entry). */
  private begin(kind: number, size: number, blockSize: number, pinned: number): number {
    const entry = this.state.unpooled.begin(kind, size, blockSize);
    if (entry >= 0) return entry;
    this.state.pinned.add(-pinned);
    throw entry === UNPOOLED_POOL_CLOSED ? poolClosedError() : this.tableFull();
  }

  /** The region is made: counted in its Worker's slot, recorded, and published in the table. */
  private publish(region: MemoryRegionImpl, entry: number): MemoryRegionImpl {
    countOperationsIn(region, this.state.slots.operations);
    this.entries.set(region, entry);
    this.state.unpooled.publish(entry);
    publishCounters(this.core, this.state);
    return region;
  }

  /**
   * Deregisters and (temporary regions) unmaps a unpooled region this thread made, each step noted in
   * its unpooled entry. When the owner's close took the entry first, it only detaches the region's
   * views, and unmaps the pages that close kept mapped for them.
   */
  private free(region: MemoryRegionImpl): void {
    const entry = this.entries.get(region);
    this.entries.delete(region);
    if (entry === undefined) return PoolCore.freeUnpooled(this.core.traits, region, true);
    const found = this.state.unpooled.beginFreeing(entry);
    if (found === UnpooledRelease.LIVE) this.freeLive(region, entry);
    else this.freeAfterClose(region, entry, found);
  }

  /**
   * Each step noted as it is done (before, for the munmap): the owner finishes what a Worker
   * terminated in between left, and never repeats what could hit memory that is no longer ours.
   */
  private freeLive(region: MemoryRegionImpl, entry: number): void {
    const unpooled = this.state.unpooled;
    try {
      this.core.traits.deregister(region.registration);
      unpooled.noteDeregistered(entry);
    } finally {
      if (region.isTemp) {
        const block = temporaryBlock(region);
        const transferred = block.detachViews(); // its views read nothing from now on
        if (block.locked) libc.munlock(block.address, block.size);
        unpooled.noteUnlocked(entry);
        unpooled.noteUnmapping(entry);
        // Memory a caller transferred out of a view keeps fresh pages under the stray buffer (see MemoryBlock).
        if (transferred) libc.mmapFixed(block.address, block.size);
        else libc.munmap(block.address, block.size);
      }
      unpooled.endFreeing(entry);
    }
  }

  /** The owner's close took the entry first: only this thread's views go, and (KEPT) the pages it kept mapped. */
  private freeAfterClose(region: MemoryRegionImpl, entry: number, found: number): void {
    const transferred = region.isTemp && temporaryBlock(region).detachViews();
    if (found !== UnpooledRelease.KEPT) return;
    try {
      // Deregistered and unpinned by the owner's close; fresh pages since. A stray buffer keeps them mapped.
      if (region.isTemp && !transferred) libc.munmap(temporaryBlock(region).address, temporaryBlock(region).size);
    } finally {
      this.state.unpooled.endFreeing(entry);
    }
  }

  private tableFull(): AllocToolsError {
    return new AllocToolsError("PINNED_LIMIT",
      `this Worker holds ${this.state.spec.maxUnpooledRegions} temporary and user regions already, the most a shared pool records per Worker (share({ maxUnpooledRegions }))`);
  }
}
