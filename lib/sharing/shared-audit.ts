// The audit of a shared pool: where every region is (on a stack, in a Worker's cache, in use),
// each exactly once, for tests and post-mortems. It reads the whole shared state; exact only while
// no Worker gets or releases.
import { BlockState } from "./block-table.ts";
import { FREE } from "./shared-layout.ts";
import type { SharedPoolState } from "./shared-pool-state.ts";

/**
 * Where every region is, for tests and post-mortems; exact only while no Worker uses the pool.
 * Every region of a live block must be exactly once: on a shared stack, in a Worker's cache, or in
 * use. A dead Worker's cache is read last, and what is already found elsewhere is skipped: it may
 * have died between a spill's CAS and lowering its count. Its pop-intent word and an unfinished
 * growth of its are places too.
 */
export function auditSharedPool(state: SharedPoolState): SharedAudit {
  const audit = new RegionAudit(state);
  const slots = [...Array(state.slots.used).keys()];
  const deadSlots = slots.filter((slot) => !state.slots.alive(slot));
  audit.placeStacks();
  for (const slot of slots) if (!deadSlots.includes(slot)) audit.placeCache(slot);
  for (const slot of deadSlots) audit.adoptDeadWorker(slot);
  audit.adoptAbandonedGrowths();
  return audit.result();
}

/** One audit's walk: each region found is marked seen, each inconsistency noted. */
class RegionAudit {
  private readonly state: SharedPoolState;
  /** Regions the pool has room for (those of live blocks are audited). */
  private readonly count: number;
  /** 1 for each region found somewhere. */
  private readonly seen: Uint8Array;
  private readonly problems: string[] = [];
  private onStacks = 0;
  private cached = 0;

  constructor(state: SharedPoolState) {
    this.state = state;
    this.count = state.blocks.regionCount;
    this.seen = new Uint8Array(this.count);
  }

  /** Every shared stack: free regions of its own class. */
  placeStacks(): void {
    const state = this.state;
    for (let sizeClass = 0; sizeClass < state.classCount; sizeClass++) {
      for (const index of state.stackSnapshot(sizeClass, this.count)) {
        if (!this.place(index, `stack ${sizeClass}`)) continue;
        this.onStacks++;
        if (state.regionState(index) !== FREE) this.problems.push(`region ${index} is on stack ${sizeClass} but marked in use`);
        if (state.blocks.stackOf(index) !== sizeClass) this.problems.push(`region ${index} is on stack ${sizeClass} but belongs to stack ${state.blocks.stackOf(index)}`);
      }
    }
  }

  /** A live Worker's caches: regions its state words say it holds. */
  placeCache(slot: number): void {
    const state = this.state;
    for (let sizeClass = 0; sizeClass < state.classCount; sizeClass++) {
      for (const index of state.cacheEntries(slot, sizeClass)) {
        if (!this.place(index, `cache of slot ${slot}`)) continue;
        this.cached++;
        if (state.regionState(index) !== slot + 1) this.problems.push(`region ${index} is in the cache of slot ${slot} but its state word says ${state.regionState(index)}`);
      }
    }
  }

  /** A dead Worker's caches and pop-intent word: what is not found elsewhere already. */
  adoptDeadWorker(slot: number): void {
    const state = this.state;
    for (let sizeClass = 0; sizeClass < state.classCount; sizeClass++) for (const index of state.cacheEntries(slot, sizeClass)) this.adopt(index, slot + 1);
    this.adopt(state.popIntentOf(slot));
  }

  /** The regions of a block a dead Worker published under its growth lock but did not push. */
  adoptAbandonedGrowths(): void {
    const state = this.state;
    for (let sizeClass = 0; sizeClass < state.classCount; sizeClass++) {
      const holder = state.locks.holder(sizeClass);
      const block = state.locks.growthInProgress(sizeClass);
      if (holder === 0 || block < 0 || state.slots.alive(holder - 1) || state.blocks.stateOf(block) !== BlockState.LIVE) continue;
      const record = state.blocks.record(block);
      for (let index = record.first; index < record.first + record.count; index++) this.adopt(index);
    }
  }

  /** The tally: regions not found anywhere are in use (their state word names a holder) or lost. */
  result(): SharedAudit {
    let regions = 0;
    let inUse = 0;
    let lost = 0;
    for (let index = 0; index < this.count; index++) {
      if (!this.live(index)) continue;
      regions++;
      if (this.state.regionState(index) !== FREE) {
        if (this.seen[index]! === 0) inUse++;
      } else if (this.seen[index] === 0) {
        lost++;
        this.problems.push(`region ${index} is free but on no stack and in no cache`);
      }
    }
    return { regions, onStacks: this.onStacks, cached: this.cached, inUse, lost, problems: this.problems };
  }

  private live(index: number): boolean {
    if (index < 0 || index >= this.count) return false;
    const block = this.state.blocks.live(this.state.blocks.blockOf(index));
    // An index a Worker terminated in reserve() took but never assigned still reads block 0: not a region.
    return block !== null && index >= block.first && index < block.first + block.count;
  }

  /** Region `index` found at `where`: false (a problem noted) when it is no live region or was found already. */
  private place(index: number, where: string): boolean {
    if (!this.live(index)) { this.problems.push(`${where}: index ${index} is not a region of a live block`); return false; }
    if (this.seen[index]! > 0) { this.problems.push(`region ${index} found twice (${where})`); return false; }
    this.seen[index] = 1;
    return true;
  }

  /** Region `index` counts as cached if nothing else holds it (free, or held by `holder`) and it was not found yet. */
  private adopt(index: number, holder = FREE): void {
    const regionState = this.live(index) ? this.state.regionState(index) : -1;
    if (this.seen[index] === 0 && (regionState === FREE || regionState === holder)) {
      this.seen[index] = 1;
      this.cached++;
    }
  }
}

/** Where the regions of a shared pool are (see auditSharedPool). */
export interface SharedAudit {
  /** Pooled regions the pool has, every class together. */
  readonly regions: number;
  /** Free regions on the stacks. */
  readonly onStacks: number;
  /** Free regions held in Workers' caches (always 0 for an unshared pool). */
  readonly cached: number;
  /** Regions handed out and not yet released. */
  readonly inUse: number;
  /** Free regions on no stack and in no cache. */
  readonly lost: number;
  /** One sentence per inconsistency found (a region seen twice, regions lost); empty when the books agree. */
  readonly problems: readonly string[];
}
