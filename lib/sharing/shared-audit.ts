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
  const count = state.blocks.regionCount;
  const seen = new Uint8Array(count);
  const problems: string[] = [];
  let onStacks = 0;
  let cached = 0;
  let inUse = 0;
  const live = (index: number) => index >= 0 && index < count && state.blocks.live(state.blocks.blockOf(index)) !== null;
  const place = (index: number, where: string): boolean => {
    if (!live(index)) { problems.push(`${where}: index ${index} is not a region of a live block`); return false; }
    if (seen[index]! > 0) { problems.push(`region ${index} found twice (${where})`); return false; }
    seen[index] = 1;
    return true;
  };
  for (let k = 0; k < state.classCount; k++) {
    for (const index of state.stackSnapshot(k, count)) {
      if (!place(index, `stack ${k}`)) continue;
      onStacks++;
      if (state.regionState(index) !== FREE) problems.push(`region ${index} is on stack ${k} but marked in use`);
      if (state.blocks.stackOf(index) !== k) problems.push(`region ${index} is on stack ${k} but belongs to stack ${state.blocks.stackOf(index)}`);
    }
  }
  const slots = [...Array(state.slots.used).keys()];
  const deadSlots = slots.filter((slot) => !state.slots.alive(slot));
  for (const slot of slots.filter((s) => !deadSlots.includes(s))) {
    for (let k = 0; k < state.classCount; k++) {
      for (const index of state.cacheEntries(slot, k)) {
        if (!place(index, `cache of slot ${slot}`)) continue;
        cached++;
        if (state.regionState(index) !== slot + 1) problems.push(`region ${index} is in the cache of slot ${slot} but its state word says ${state.regionState(index)}`);
      }
    }
  }
  const adopt = (index: number, holder = FREE) => {
    const regionState = live(index) ? state.regionState(index) : -1;
    if (seen[index] === 0 && (regionState === FREE || regionState === holder)) {
      seen[index] = 1;
      cached++;
    }
  };
  for (const slot of deadSlots) {
    for (let k = 0; k < state.classCount; k++) for (const index of state.cacheEntries(slot, k)) adopt(index, slot + 1);
    adopt(state.popIntentOf(slot));
  }
  for (let k = 0; k < state.classCount; k++) {
    const holder = state.locks.holder(k);
    const block = state.locks.growthInProgress(k);
    if (holder === 0 || block < 0 || state.slots.alive(holder - 1) || state.blocks.stateOf(block) !== BlockState.LIVE) continue;
    const record = state.blocks.record(block);
    for (let i = record.first; i < record.first + record.count; i++) adopt(i);
  }
  let regions = 0;
  let lost = 0;
  for (let index = 0; index < count; index++) {
    if (!live(index)) continue;
    regions++;
    if (state.regionState(index) !== FREE) {
      if (seen[index]! === 0) inUse++;
    } else if (seen[index] === 0) {
      lost++;
      problems.push(`region ${index} is free but on no stack and in no cache`);
    }
  }
  return { regions, onStacks, cached, inUse, lost, problems };
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
