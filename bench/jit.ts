// Checks that a hot path runs in JavaScriptCore's optimizing tiers and allocates nothing,
// with bun:jsc: the sampling profiler's tier per sample, numberOfDFGCompiles, and the heap's
// live cell counts before and after a known number of calls.
import { fullGC, heapStats, numberOfDFGCompiles, profile, reoptimizationRetryCount } from "bun:jsc";

export interface TierShare {
  /** Samples in JavaScript frames. */
  samples: number;
  /** Share of those in FTL and DFG (the optimizing tiers), and in Baseline/LLInt. */
  ftl: number;
  dfg: number;
  baseline: number;
  llint: number;
  /** Functions sampled as inlined into an optimized caller (so they need no code of their own). */
  inlined: string[];
}

/** Runs `op` in a loop for `ms` milliseconds under the sampling profiler; tiers of the top JS frame. */
export function tierShare(op: () => void, ms: number): TierShare {
  const loop = () => {
    const end = Bun.nanoseconds() + ms * 1e6;
    while (Bun.nanoseconds() < end) for (let i = 0; i < 1000; i++) op();
  };
  loop(); // warm: let the loop itself reach the optimizing tiers before it is sampled
  const traces = profile(loop, 100).stackTraces.traces;
  const count: Record<string, number> = {};
  const inlined = new Set<string>();
  let js = 0;
  for (const t of traces) {
    for (const f of t.frames) if (f.inliner && f.name) inlined.add(`${f.name} in ${f.inliner.name || "(anonymous)"} (${f.inliner.category})`);
    const top = t.frames.find((f) => f.sourceID !== 4294967295); // skip native frames (the clock)
    if (!top) continue;
    js++;
    count[top.category] = (count[top.category] ?? 0) + 1;
  }
  const share = (k: string) => (js === 0 ? 0 : (count[k] ?? 0) / js);
  return { samples: js, ftl: share("FTL"), dfg: share("DFG"), baseline: share("Baseline"), llint: share("LLInt"), inlined: [...inlined].sort() };
}

/** numberOfDFGCompiles and reoptimizationRetryCount of a function (1 and 0 is the healthy pair). */
export function compiles(f: (...args: never[]) => unknown): { dfgCompiles: number; reoptimizations: number } {
  const g = f as unknown as (...args: unknown[]) => unknown;
  return { dfgCompiles: numberOfDFGCompiles(g), reoptimizations: reoptimizationRetryCount(g) };
}

function liveCells(): Record<string, number> {
  return heapStats().objectTypeCounts;
}

function cellDelta(op: () => void, n: number): { total: number; types: Record<string, number> } {
  fullGC();
  const before = liveCells();
  for (let i = 0; i < n; i++) op();
  const after = liveCells();
  const types: Record<string, number> = {};
  let total = 0;
  for (const [k, v] of Object.entries(after)) {
    const d = v - (before[k] ?? 0);
    if (d > 0) { types[k] = d; total += d; }
  }
  return { total, types };
}

/**
 * Heap cells allocated per call of `op`, over `n` warm calls. Taking the snapshot allocates a few
 * hundred cells itself, so the same measurement of an empty function is subtracted. `n` stays
 * below what would trigger a collection (which would hide allocations).
 */
export function cellsPerOp(op: () => void, n = 20_000): { perOp: number; types: Record<string, number> } {
  for (let i = 0; i < 100_000; i++) op();
  const noop = () => {};
  for (let i = 0; i < 100_000; i++) noop();
  const base = cellDelta(noop, n);
  const m = cellDelta(op, n);
  const types: Record<string, number> = {};
  for (const [k, v] of Object.entries(m.types)) {
    const d = v - (base.types[k] ?? 0);
    if (d > n / 100) types[k] = d; // types with at least one cell per 100 calls
  }
  return { perOp: Math.max(0, m.total - base.total) / n, types };
}
