// A pool shared across Workers: aggregate get+release throughput for 1, 2 and 4 Workers, the
// single-Worker pair cost of the shared pool next to the unshared one (same loop, same sizes, each
// in its own Worker so neither JIT profile sees the other), and the RMA message rate of 1 and 2
// Workers each with its own Endpoint over the shared pool (64 B writes on shm). Targets (issue 11):
// shared ≤ 1.25× unshared in one Worker; 2 Workers ≥ 1.8× the pairs/s of 1; RMA 2 Workers ≥ 1.6× 1.
import { bench, group } from "mitata";
import { HostProvider, LibfabricProvider, MemoryPool, type SharedPoolHandle } from "../../lib/index.ts";
import type { BenchContext, Suite } from "../context.ts";
import type { PairsJob, PairsResult } from "../worker-pairs.ts";
import type { RmaJob, RmaResult } from "../worker-rma.ts";

const SUITE = "workers";
/** One request per size class of the default pool: 1 KiB, 16 KiB, 64 KiB, 1 MiB classes. */
const SIZES = [100, 5000, 30_000, 500_000] as const;

export const names = {
  pair: (kind: "shared" | "unshared") => `workers: 1 Worker get+release pair, ${kind} pool`,
  aggregate: (n: number) => `workers: aggregate get+release, ${n} Worker${n > 1 ? "s" : ""}, shared pool`,
  ceiling: "workers: aggregate get+release, 2 Workers, unshared pool each",
  rma: (n: number) => `workers: RMA 64 B writes, ${n} Worker${n > 1 ? "s" : ""}, own Endpoint each, shm`,
  mainShared: "shared pool get+release 1 KiB (one thread)",
  mainUnshared: "unshared pool get+release 1 KiB (one thread)",
};

/** Runs `workers` Workers together over `handle` (or their own unshared pools); ns per pair of each. */
async function runWorkers(handle: SharedPoolHandle | null, workers: number, pairs: number): Promise<PairsResult[]> {
  const barrier = new SharedArrayBuffer(4);
  const ws = Array.from({ length: workers }, () => new Worker(new URL("../worker-pairs.ts", import.meta.url)));
  try {
    return await Promise.all(ws.map((w) => new Promise<PairsResult>((resolve, reject) => {
      w.onmessage = (e: MessageEvent<PairsResult>) => resolve(e.data);
      w.onerror = (e) => reject(new Error(e.message));
      w.postMessage({ handle, pairs, sizes: SIZES, barrier, parties: workers } satisfies PairsJob);
    })));
  } finally {
    for (const w of ws) w.terminate();
  }
}

/** Aggregate pairs per microsecond of one run, and the slowest Worker's ns per pair. */
async function measure(handle: SharedPoolHandle | null, workers: number, pairs: number): Promise<{ nsPerPair: number; mpairs: number }> {
  const rs = await runWorkers(handle, workers, pairs);
  const wall = Math.max(...rs.map((r) => r.ns));
  return { nsPerPair: Math.max(...rs.map((r) => r.ns / r.pairs)), mpairs: (rs.reduce((n, r) => n + r.pairs, 0) / wall) * 1e3 };
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[(sorted.length - 1) >> 1]!;
};
const range = (values: number[]): string => `${Math.min(...values).toFixed(2)}–${Math.max(...values).toFixed(2)}`;

const verdict = (ok: boolean, target: string) => `${ok ? "meets" : "MISSES"} target ${target}`;

/**
 * Rounds of: 1 Worker unshared, 1 shared, 2 shared, 2 unshared, 4 shared, back to back. The
 * machine is shared and its speed drifts over seconds, so each ratio is taken within a round and
 * the median of the rounds is the figure (their range beside it); throughputs are the best round's.
 */
async function measureWorkers(ctx: BenchContext, provider: HostProvider): Promise<void> {
  const pairs = ctx.quick ? 400_000 : 4_000_000;
  const rounds = ctx.quick ? 1 : 5;
  const pool = new MemoryPool(provider);
  const handle = pool.share();
  try {
    const best = { unshared: Infinity, shared: Infinity, one: 0, two: 0, four: 0, ceiling: 0 };
    const pairRatios: number[] = [];
    const scalings: number[] = [];
    const machine: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const unshared = await measure(null, 1, pairs);
      const shared = await measure(handle, 1, pairs);
      const two = await measure(handle, 2, pairs);
      const ceiling = await measure(null, 2, pairs);
      const four = await measure(handle, 4, pairs);
      pairRatios.push(shared.nsPerPair / unshared.nsPerPair);
      scalings.push(two.mpairs / shared.mpairs);
      machine.push(ceiling.mpairs / unshared.mpairs);
      best.unshared = Math.min(best.unshared, unshared.nsPerPair);
      best.shared = Math.min(best.shared, shared.nsPerPair);
      best.one = Math.max(best.one, shared.mpairs);
      best.two = Math.max(best.two, two.mpairs);
      best.four = Math.max(best.four, four.mpairs);
      best.ceiling = Math.max(best.ceiling, ceiling.mpairs);
    }
    const note = `best of ${rounds} rounds × ${pairs} pairs, all four classes in turn`;
    ctx.record({ suite: SUITE, name: names.pair("unshared"), value: best.unshared, unit: "ns", note });
    ctx.record({ suite: SUITE, name: names.pair("shared"), value: best.shared, unit: "ns", note: `${note}; per-Worker cache 16` });
    const ratio = median(pairRatios);
    ctx.record({ suite: SUITE, name: "target: shared / unshared pair cost, 1 Worker", value: ratio, unit: "×", note: `median of ${rounds} rounds (${range(pairRatios)}); ${verdict(ratio <= 1.25, "≤ 1.25×")}` });
    for (const [n, m] of [[1, best.one], [2, best.two], [4, best.four]] as const) {
      ctx.record({ suite: SUITE, name: names.aggregate(n), value: m, unit: "M pairs/s", note: `${n} × ${pairs} pairs at once, best of ${rounds}; ${navigator.hardwareConcurrency} cores` });
    }
    const ownScaling = median(machine);
    ctx.record({
      suite: SUITE, name: names.ceiling, value: best.ceiling, unit: "M pairs/s",
      note: `what 2 Workers reach with nothing shared: the machine's own scaling, median ${ownScaling.toFixed(2)}× of 1 (${range(machine)})`,
    });
    const scaling = median(scalings);
    ctx.record({ suite: SUITE, name: "target: 2 Workers / 1 Worker throughput, shared pool", value: scaling, unit: "×", note: `median of ${rounds} rounds (${range(scalings)}); ${verdict(scaling >= 1.8, "≥ 1.8×")}` });
    // The target assumes the machine scales about 1.9× by itself; on a shared VM it often does not.
    const relative = scalings.map((s, i) => s / machine[i]!);
    ctx.record({
      suite: SUITE, name: "workers: shared pool's 2-Worker scaling / the machine's own", value: median(relative), unit: "×",
      note: `per round, shared 2/1 over unshared 2/1, median (${range(relative)}): 1.0 means sharing costs no scaling`,
    });
    const s = pool.stats();
    ctx.record({ suite: SUITE, name: "workers: counters after the runs", value: s.gets - s.releases, unit: "regions out", note: `gets ${s.gets}, releases ${s.releases}; audit problems: ${pool.audit().problems.length}` });
  } finally {
    pool.close();
  }
}

/** Runs `workers` Workers doing RMA over `handle` at once; writes per second in all. */
async function runRma(handle: SharedPoolHandle, workers: number, writes: number): Promise<number> {
  const barrier = new SharedArrayBuffer(4);
  const ws = Array.from({ length: workers }, () => new Worker(new URL("../worker-rma.ts", import.meta.url)));
  try {
    const rs = await Promise.all(ws.map((w) => new Promise<RmaResult>((resolve, reject) => {
      w.onmessage = (e: MessageEvent<RmaResult>) => resolve(e.data);
      w.onerror = (e) => reject(new Error(e.message));
      w.postMessage({ handle, writes, bytes: 64, window: 16, barrier, parties: workers } satisfies RmaJob);
    })));
    const wall = Math.max(...rs.map((r) => r.ns));
    return (rs.reduce((n, r) => n + r.writes, 0) / wall) * 1e9;
  } finally {
    for (const w of ws) w.terminate();
  }
}

async function measureRma(ctx: BenchContext): Promise<void> {
  if (!ctx.fabric) {
    ctx.record({ suite: SUITE, name: names.rma(1), value: Number.NaN, unit: "writes/s", note: "not supported here: libfabric not available" });
    return;
  }
  const writes = ctx.quick ? 2_000 : 20_000;
  const rounds = ctx.quick ? 1 : 5;
  const provider = LibfabricProvider.open({ provider: "shm" });
  const pool = new MemoryPool(provider);
  const handle = pool.share();
  try {
    const rate = new Map<number, number>();
    const scalings: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const one = await runRma(handle, 1, writes);
      const two = await runRma(handle, 2, writes);
      scalings.push(two / one);
      rate.set(1, Math.max(rate.get(1) ?? 0, one));
      rate.set(2, Math.max(rate.get(2) ?? 0, two));
    }
    for (const [n, value] of rate) {
      ctx.record({ suite: SUITE, name: names.rma(n), value, unit: "writes/s", note: `best of ${rounds} × ${writes} writes per Worker, 16 in flight, to its own address` });
    }
    const scaling = median(scalings);
    ctx.record({
      suite: SUITE, name: "target: 2 Workers / 1 Worker RMA message rate (64 B, shm)", value: scaling, unit: "×",
      note: `median of ${rounds} rounds (${range(scalings)}); ${verdict(scaling >= 1.6, "≥ 1.6×")}`,
    });
  } finally {
    pool.close();
    provider.close();
  }
}

const suite: Suite = {
  name: SUITE,
  async setup(ctx) {
    const provider = new HostProvider();
    ctx.provider({ suite: SUITE, label: "host", description: "built-in host provider; Workers attach with MemoryPool.attach(pool.share())" });
    await measureWorkers(ctx, provider);
    await measureRma(ctx);
    // The same pair in this thread, through mitata: both pools made inside the generator.
    group("shared vs unshared pool, one thread", () => {
      bench(names.mainUnshared, function* () {
        const pool = new MemoryPool(provider);
        yield () => pool.releaseRegion(pool.getRegion(1000));
        pool.close();
      });
      bench(names.mainShared, function* () {
        const pool = new MemoryPool(provider);
        pool.share();
        yield () => pool.releaseRegion(pool.getRegion(1000));
        pool.close();
      });
    });
    ctx.compare({ table: "shared / unshared pool, one thread (p50 ratio)", row: "1 KiB get+release", column: "host", baseline: names.mainShared, candidate: names.mainUnshared });
    return () => provider.close();
  },
};
export default suite;
