// How a shared pool closes. The owner's close closes it for every Worker: it first makes sure no
// RMA operation of any live Worker uses its regions (BUSY otherwise, nothing changed), then takes
// every growth lock, frees what every Worker left (temporary and user regions, growths a dead
// Worker abandoned), deregisters every block whoever mapped it, and keeps mapped over fresh pages
// the memory other threads may still hold views of (kept-memory.ts). An attached pool's close only
// detaches: its cache goes back to the shared stacks, its own temporary and user regions are
// freed, its views end; the memory stays the owner's. Whoever lets go last unmaps what was kept.
import * as libc from "../../ffi/libc.ts";
import { AllocToolsError } from "../errors.ts";
import type { RegionProvider } from "../memory/provider.ts";
import { pageSpan } from "../memory/page-pins.ts";
import { setInUse } from "../memory/region.ts";
import { leakReport, type LeakedRegion, type LeakReport, type PoolCore } from "../pool/pool-core.ts";
import { BlockState } from "./block-table.ts";
import type { ForeignProvider } from "./foreign-provider.ts";
import { LockResult } from "./growth-locks.ts";
import { keepMapped, unmapKeptBlocks } from "./kept-memory.ts";
import { FREE } from "./shared-layout.ts";
import type { SharedGrowth } from "./shared-growth.ts";
import type { SharedPoolState } from "./shared-pool-state.ts";
import { publishCounters } from "./shared-stats.ts";
import type { ThreadBlocks } from "./thread-blocks.ts";
import type { SharedUnpooledRegion } from "./unpooled-table.ts";
import type { UnpooledRegions } from "./unpooled-regions.ts";
import type { WorkerCache } from "./worker-cache.ts";

/** How long the owner's close waits for a growth lock, or for a Worker making a temporary or user region. */
const CLOSE_WAIT_MILLISECONDS = 60_000;

/**
 * An attached pool lets go of its slot and its reference; the last to let go after the owner's
 * close unmaps the blocks that close kept (a provider's through `provider`).
 */
export function leaveShared(state: SharedPoolState, provider: RegionProvider | null): void {
  if (state.leaveSlot()) unmapKeptBlocks(state, provider);
}

/**
 * The owner's close, before anything changes: AllocToolsError BUSY while RMA operations of this
 * thread or of any live Worker use the pool's regions (the pool stays open and serving); else the
 * pool is closed for every Worker from here on (their operations, gets, temporary and user
 * regions and attaches are refused with POOL_CLOSED).
 */
export function beginOwnerClose(state: SharedPoolState): void {
  const busy = state.beginClose();
  if (busy === null) return;
  throw new AllocToolsError("BUSY",
    `close: ${busy.regions} region(s) still have ${busy.operations} RMA operation(s) in flight, in ${busy.threads} thread(s) of this shared pool ` +
    `(this one and its Workers); the pool stays open and serving (wait for them, or close their endpoints, then close again)`);
}

/** The closing sequences of one pool of a shared pool (the owner's, or a Worker's attached pool). */
export class SharedClose {
  private readonly core: PoolCore;
  private readonly state: SharedPoolState;
  private readonly cache: WorkerCache;
  private readonly blocks: ThreadBlocks;
  private readonly growth: SharedGrowth;
  private readonly unpooled: UnpooledRegions;
  private readonly foreign: ForeignProvider;

  constructor(core: PoolCore, state: SharedPoolState, cache: WorkerCache, blocks: ThreadBlocks, growth: SharedGrowth,
              unpooled: UnpooledRegions, foreign: ForeignProvider) {
    this.core = core;
    this.state = state;
    this.cache = cache;
    this.blocks = blocks;
    this.growth = growth;
    this.unpooled = unpooled;
    this.foreign = foreign;
  }

  /**
   * The owner closes the shared pool (beginOwnerClose marked it closed): growths in flight finish
   * (or, for a dead Worker's, are undone), temporary and user regions live Workers are making are
   * waited for; every temporary and user region any Worker left is reported and deregistered,
   * every block, whoever mapped it, deregistered. Memory another thread may still hold views of
   * is kept mapped over fresh pages (kept-memory.ts); the last pool to let go unmaps it.
   */
  closeOwner(): LeakReport {
    const { core, state } = this;
    this.lockEveryClass();
    state.unpooled.waitForBuilds(state.slot, Date.now() + CLOSE_WAIT_MILLISECONDS);
    const leaks = this.leaks(false);
    const foreignUnpooled = state.unpooled.live(state.slot);
    for (const unpooled of foreignUnpooled) leaks.push({ size: unpooled.size, kind: unpooled.kind });
    for (const region of core.regions) if (region !== undefined) setInUse(region, false);
    state.clearStacks();
    let firstError = this.unpooled.dropAll();
    const view = this.foreign.get();
    const unpooledError = this.freeEveryForeignUnpooled(view, foreignUnpooled);
    firstError ??= unpooledError;
    const blocksError = this.retireEveryBlock(view);
    firstError ??= blocksError;
    state.pinned.reset();
    publishCounters(core, state);
    for (let sizeClass = 0; sizeClass < state.classCount; sizeClass++) state.locks.unlock(sizeClass);
    state.slots.releaseDead();
    if (state.slots.dropReference()) try { unmapKeptBlocks(state, view); } catch (error) { firstError ??= error; }
    this.foreign.close();
    if (firstError !== undefined) throw firstError;
    return leakReport(leaks);
  }

  /**
   * An attached pool's close: its cache goes back to the shared stacks, its temporary and user
   * regions are deregistered, its views detached; the memory stays (the owner's to free). Reports
   * the regions the shared state words say this Worker got and still holds.
   */
  detach(): LeakReport {
    const { core, state } = this;
    const leaks = this.leaks(true);
    if (!state.closed) for (let sizeClass = 0; sizeClass < state.classCount; sizeClass++) this.cache.flush(sizeClass);
    for (const region of core.regions) if (region !== undefined) setInUse(region, false);
    let firstError = this.unpooled.dropAll();
    this.blocks.detachViews();
    publishCounters(core, state);
    try { leaveShared(state, core.provider); } catch (error) { firstError ??= error; }
    core.provider.close();
    if (firstError !== undefined) throw firstError;
    return leakReport(leaks);
  }

  /** Every growth lock, so that no growth is in flight; a dead Worker's growth is undone. */
  private lockEveryClass(): void {
    const state = this.state;
    for (let sizeClass = 0; sizeClass < state.classCount; sizeClass++) {
      const result = state.locks.lock(sizeClass, CLOSE_WAIT_MILLISECONDS);
      if (result === LockResult.TAKEN_FROM_DEAD) this.growth.undoAbandoned(state.blocks.takeOverGrowth(sizeClass));
    }
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
      out.push({ size: stack.chunkSize, kind: stack.name, origin: core.regions[index]?.origin });
    }
    out.push(...core.unpooledLeaks());
    return out;
  }

  /** The temporary and user regions other Workers left, each claimed from its Worker first; returns the first error. */
  private freeEveryForeignUnpooled(view: RegionProvider, foreignUnpooled: SharedUnpooledRegion[]): unknown {
    const state = this.state;
    let firstError: unknown;
    for (const unpooled of foreignUnpooled) {
      if (!state.unpooled.claim(unpooled.index, unpooled.state)) continue;
      // Its Worker may still hold views of it (or a transport complete a dead Worker's operation into it).
      const keep = unpooled.kind === "temporary" && state.slots.mayTouch(unpooled.slot);
      try { freeForeignUnpooled(view, unpooled, keep); } catch (error) { firstError ??= error; }
      state.unpooled.endClaimed(unpooled.index, keep);
      this.core.counters.deregistrations++;
    }
    return firstError;
  }

  /** Every block retired (thread-blocks.ts), whoever mapped it; returns the first error. */
  private retireEveryBlock(view: RegionProvider): unknown {
    const { core, state } = this;
    let firstError: unknown;
    let retired = 0;
    for (let blockIndex = 0; blockIndex < state.blocks.count; blockIndex++) {
      const from = state.blocks.keep(blockIndex);
      if (from < 0) continue;
      if (from !== BlockState.MAPPED) retired++;
      try { this.blocks.retire(blockIndex, view, from); } catch (error) { firstError ??= error; }
    }
    core.resources.blocks.length = 0; // retired above, each by its block index
    core.resources.registrations.length = 0;
    core.counters.deregistrations += retired;
    return firstError;
  }
}

/**
 * What a Worker left of a temporary or user region: its registration, its pinned pages, its
 * mapping; `keep`: the mapping stays, over fresh pages, for its Worker to unmap.
 */
function freeForeignUnpooled(view: RegionProvider, unpooled: SharedUnpooledRegion, keep: boolean): void {
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
