// The statistics of a shared pool as a whole: each pool publishes its own counters of temporary
// and user regions into its slot (the pool's hot path counts gets and releases in its Worker
// cache's words already), and stats() sums every slot's, whichever thread asks.
import type { PoolCore, PoolStats } from "../pool/pool-core.ts";
import type { SizeClass, StackStats } from "../pool/stack.ts";
import { CLASS_COUNTERS, UNPOOLED_COUNTERS } from "./shared-layout.ts";
import type { SharedPoolState } from "./shared-pool-state.ts";

/** This pool's unpooled counters (temporary and user regions, registrations) into its shared slot. */
export function publishCounters(core: PoolCore, state: SharedPoolState): void {
  const counters = core.counters;
  const shared = state.counters;
  shared.setUnpooledCounter(UNPOOLED_COUNTERS.temporaryCount, counters.temporaryRegions);
  shared.setUnpooledCounter(UNPOOLED_COUNTERS.temporaryGets, counters.temporaryGets);
  shared.setUnpooledCounter(UNPOOLED_COUNTERS.userCount, counters.userRegions);
  shared.setUnpooledCounter(UNPOOLED_COUNTERS.unpooledReleases, counters.unpooledReleases);
  shared.setUnpooledCounter(UNPOOLED_COUNTERS.registrations, counters.registrations);
  shared.setUnpooledCounter(UNPOOLED_COUNTERS.deregistrations, counters.deregistrations);
  shared.setUnpooledCounter(UNPOOLED_COUNTERS.liveTemporaries, core.temporaries.size);
  shared.setUnpooledCounter(UNPOOLED_COUNTERS.liveUsers, core.users.size);
}

/** Statistics summed over every Worker's counters: exact while no Worker gets or releases. */
export function sharedStats(core: PoolCore, state: SharedPoolState): PoolStats {
  const unpooled = (counter: number) => state.counters.sumUnpooledCounter(counter);
  const temporaryGets = unpooled(UNPOOLED_COUNTERS.temporaryGets);
  const userCount = unpooled(UNPOOLED_COUNTERS.userCount);
  const stacks = {} as Record<SizeClass, StackStats>;
  let gets = temporaryGets + userCount;
  let releases = unpooled(UNPOOLED_COUNTERS.unpooledReleases);
  let misses = 0;
  let growths = 0;
  let inUse = unpooled(UNPOOLED_COUNTERS.liveTemporaries) + unpooled(UNPOOLED_COUNTERS.liveUsers);
  for (const stack of core.stacks) {
    const stats = stackStats(core, state, stack.id);
    stacks[stack.name] = stats;
    gets += stats.gets;
    releases += stats.releases;
    misses += stats.misses;
    growths += stats.growths;
    inUse += stats.inUse;
  }
  return {
    provider: core.provider.name, gets, releases, hits: gets - misses - temporaryGets - userCount, misses, growths,
    registrations: unpooled(UNPOOLED_COUNTERS.registrations), deregistrations: unpooled(UNPOOLED_COUNTERS.deregistrations),
    temporaryRegions: unpooled(UNPOOLED_COUNTERS.temporaryCount), liveTemporaryRegions: unpooled(UNPOOLED_COUNTERS.liveTemporaries),
    userRegions: userCount, liveUserRegions: unpooled(UNPOOLED_COUNTERS.liveUsers),
    regionsInUse: inUse, retiredRegions: 0, pinnedBytes: state.pinned.bytes, peakPinnedBytes: state.pinned.peakBytes,
    maxPinnedBytes: core.maxPinnedBytes, stacks, cache: core.cache?.stats() ?? null,
  };
}

/** One size class's figures, summed over every Worker. */
function stackStats(core: PoolCore, state: SharedPoolState, sizeClass: number): StackStats {
  const stack = core.stacks[sizeClass]!;
  const counters = state.counters.sumCacheCounters(sizeClass);
  const misses = state.counters.sumClassCounter(sizeClass, CLASS_COUNTERS.misses);
  const totals = state.counters.stackCounters(sizeClass);
  const out = counters.gets - counters.releases;
  return {
    name: stack.name, chunkSize: stack.chunkSize, regions: totals.regions, free: totals.regions - out, inUse: out,
    gets: counters.gets, releases: counters.releases, hits: counters.gets - misses, misses,
    growths: state.counters.sumClassCounter(sizeClass, CLASS_COUNTERS.growths), blocks: totals.blocks, pinnedBytes: totals.pinnedBytes,
    cached: state.counters.cached(sizeClass),
  };
}
