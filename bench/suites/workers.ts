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

/** Best of `reps` runs (the machine is shared: the least disturbed run is the closest to the truth). */
async function best(reps: number, f: () => Promise<PairsResult[]>): Promise<{ nsPerPair: number; mpairs: number }> {
  let top = { nsPerPair: Infinity, mpairs: 0 };
  for (let i = 0; i < reps; i++) {
    const rs = await f();
    const wall = Math.max(...rs.map((r) => r.ns));
    const total = rs.reduce((n, r) => n + r.pairs, 0);
    const mpairs = (total / wall) * 1e3;
    if (mpairs > top.mpairs) top = { nsPerPair: Math.max(...rs.map((r) => r.ns / r.pairs)), mpairs };
  }
  return top;
}

const verdict = (ok: boolean, target: string) => `${ok ? "meets" : "MISSES"} target ${target}`;

async function measureWorkers(ctx: BenchContext, provider: HostProvider): Promise<void> {
  const pairs = ctx.quick ? 400_000 : 4_000_000;
  const reps = ctx.quick ? 1 : 3;
  const pool = new MemoryPool(provider);
  const handle = pool.share();
  try {
    const unshared = await best(reps, () => runWorkers(null, 1, pairs));
    const shared = await best(reps, () => runWorkers(handle, 1, pairs));
    ctx.record({ suite: SUITE, name: names.pair("unshared"), value: unshared.nsPerPair, unit: "ns", note: `best of ${reps} × ${pairs} pairs, all four classes in turn` });
    ctx.record({ suite: SUITE, name: names.pair("shared"), value: shared.nsPerPair, unit: "ns", note: `best of ${reps} × ${pairs} pairs, per-Worker cache 16` });
    const ratio = shared.nsPerPair / unshared.nsPerPair;
    ctx.record({ suite: SUITE, name: "target: shared / unshared pair cost, 1 Worker", value: ratio, unit: "×", note: verdict(ratio <= 1.25, "≤ 1.25×") });
    const aggregate = new Map<number, number>([[1, shared.mpairs]]);
    for (const n of [2, 4]) aggregate.set(n, (await best(reps, () => runWorkers(handle, n, pairs))).mpairs);
    for (const [n, m] of aggregate) {
      ctx.record({ suite: SUITE, name: names.aggregate(n), value: m, unit: "M pairs/s", note: `${n} × ${pairs} pairs at once; ${navigator.hardwareConcurrency} cores` });
    }
    const ceiling = await best(reps, () => runWorkers(null, 2, pairs));
    ctx.record({
      suite: SUITE, name: names.ceiling, value: ceiling.mpairs, unit: "M pairs/s",
      note: `what 2 Workers reach with nothing shared: the machine's own scaling (${(ceiling.mpairs / unshared.mpairs).toFixed(2)}× of 1)`,
    });
    const scaling = aggregate.get(2)! / aggregate.get(1)!;
    ctx.record({ suite: SUITE, name: "target: 2 Workers / 1 Worker throughput, shared pool", value: scaling, unit: "×", note: verdict(scaling >= 1.8, "≥ 1.8×") });
    // The target assumes the machine scales about 1.9× by itself; on a shared VM it often does not.
    const machine = ceiling.mpairs / unshared.mpairs;
    ctx.record({
      suite: SUITE, name: "workers: shared pool's 2-Worker scaling / the machine's own", value: scaling / machine, unit: "×",
      note: `shared ${scaling.toFixed(2)}× against unshared ${machine.toFixed(2)}× in this run: 1.0 means sharing costs no scaling`,
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
  const reps = ctx.quick ? 1 : 3;
  const provider = LibfabricProvider.open({ provider: "shm" });
  const pool = new MemoryPool(provider);
  const handle = pool.share();
  try {
    const rate = new Map<number, number>();
    for (let r = 0; r < reps; r++) {
      for (const n of [1, 2]) rate.set(n, Math.max(rate.get(n) ?? 0, await runRma(handle, n, writes)));
    }
    for (const [n, value] of rate) {
      ctx.record({ suite: SUITE, name: names.rma(n), value, unit: "writes/s", note: `best of ${reps} × ${writes} writes per Worker, 16 in flight, to its own address` });
    }
    const scaling = rate.get(2)! / rate.get(1)!;
    ctx.record({ suite: SUITE, name: "target: 2 Workers / 1 Worker RMA message rate (64 B, shm)", value: scaling, unit: "×", note: verdict(scaling >= 1.6, "≥ 1.6×") });
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
