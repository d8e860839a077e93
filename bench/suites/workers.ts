// A pool shared across Workers: aggregate get+release throughput for 1, 2 and 4 Workers, the
// single-Worker pair cost of the shared pool next to the unshared one (same loop, same sizes, each
// in its own Worker so neither JIT profile sees the other), and the RMA message rate of 1 and 2
// Workers each with its own Endpoint over the shared pool (64 B writes on shm), beside C threads
// doing the same on one domain (bench/c/rma-threads.c). Targets (issue 11):
// shared ≤ 1.25× unshared in one Worker; 2 Workers ≥ 1.8× the pairs/s of 1; RMA 2 Workers ≥ 1.6× 1.
import { bench, group } from "mitata";
import { DEFAULT_STACKS, HostProvider, LibfabricProvider, MemoryPool, type SharedPoolHandle } from "../../lib/index.ts";
import { buildC, type CProgram } from "../c/build.ts";
import type { BenchContext, Suite } from "../context.ts";
import type { PairsJob, PairsResult } from "../worker-pairs.ts";
import type { RmaJob, RmaResult } from "../worker-rma.ts";
import { median, spread } from "../stats.ts";

const SUITE = "workers";
/** One request per size class of the default pool: 1 KiB, 16 KiB, 64 KiB, 1 MiB classes. */
const SIZES = [100, 5000, 30_000, 500_000] as const;
/** Regions held at once in the "after a burst" runs: 16 per class, past a Worker's cache and the huge class's 2 initial regions. */
const BURST = 64;

export const names = {
  pair: (kind: "shared" | "unshared") => `workers: 1 Worker get+release pair, ${kind} pool`,
  burstPair: (kind: "shared" | "unshared") => `workers: 1 Worker get+release pair after a burst, ${kind} pool`,
  aggregate: (n: number) => `workers: aggregate get+release, ${n} Worker${n > 1 ? "s" : ""}, shared pool`,
  ceiling: "workers: aggregate get+release, 2 Workers, unshared pool each",
  rma: (n: number, form: "promise" | "windowed") => `workers: RMA 64 B writes, ${n} Worker${n > 1 ? "s" : ""}, own Endpoint each, shm, ${form}`,
  cRma: (n: number, ownDomains: boolean) => `workers: C RMA 64 B writes, ${n} thread${n > 1 ? "s" : ""}, ${ownDomains ? "a domain each" : "one domain"}, shm`,
  mainShared: "shared pool get+release 1 KiB (one thread)",
  mainUnshared: "unshared pool get+release 1 KiB (one thread)",
};

/** Runs `workers` Workers together over `handle` (or their own unshared pools); ns per pair of each. */
async function runWorkers(handle: SharedPoolHandle | null, workers: number, pairs: number, burst: number): Promise<PairsResult[]> {
  const barrier = new SharedArrayBuffer(4);
  const ws = Array.from({ length: workers }, () => new Worker(new URL("../worker-pairs.ts", import.meta.url)));
  try {
    return await Promise.all(ws.map((w) => new Promise<PairsResult>((resolve, reject) => {
      w.onmessage = (e: MessageEvent<PairsResult>) => resolve(e.data);
      w.onerror = (e) => reject(new Error(e.message));
      w.postMessage({ handle, pairs, sizes: SIZES, burst, barrier, parties: workers } satisfies PairsJob);
    })));
  } finally {
    for (const w of ws) w.terminate();
  }
}

/** Aggregate million pairs per second of one run, and the slowest Worker's ns per pair. */
async function measure(handle: SharedPoolHandle | null, workers: number, pairs: number, burst = 0): Promise<{ nsPerPair: number; mpairs: number }> {
  const rs = await runWorkers(handle, workers, pairs, burst);
  const wall = Math.max(...rs.map((r) => r.ns));
  return { nsPerPair: Math.max(...rs.map((r) => r.ns / r.pairs)), mpairs: (rs.reduce((n, r) => n + r.pairs, 0) / wall) * 1e3 };
}


const verdict = (ok: boolean, target: string) => `${ok ? "meets" : "MISSES"} target ${target}`;

/**
 * Nine rounds of: 1 Worker unshared, 1 shared, 2 shared, 2 unshared, 4 shared, then 1 unshared, 1
 * shared and 2 shared again after a burst (BURST regions held at once before the warm-up). The
 * machine is shared and its speed drifts over seconds, so each ratio is taken within a round and
 * the median of the rounds is the figure (their range beside it); throughputs are the best round's.
 */
async function measureWorkers(ctx: BenchContext, provider: HostProvider): Promise<void> {
  // Long enough (~0.2 s a run) that thread start-up and JIT threads do not decide the scaling.
  const pairs = ctx.quick ? 400_000 : 20_000_000;
  const rounds = ctx.quick ? 1 : 9;
  // share() and each attach put one region of every class in that thread's cache: with the default
  // 2 huge regions, the third thread finds none, misses on its first get and runs its loop at the
  // after-a-burst cost. One huge region for the owner and each of 4 Workers keeps the runs alike.
  const pool = new MemoryPool(provider, { huge: { chunkSize: DEFAULT_STACKS.huge.chunkSize, initialCount: 5, growCount: DEFAULT_STACKS.huge.growCount } });
  const handle = pool.share();
  try {
    const best = { unshared: Infinity, shared: Infinity, one: 0, two: 0, four: 0, ceiling: 0 };
    const pairRatios: number[] = [];
    const scalings: number[] = [];
    const machine: number[] = [];
    const burstRatios: number[] = [];
    const burstScalings: number[] = [];
    const afterBurst = { unshared: Infinity, shared: Infinity };
    for (let round = 0; round < rounds; round++) {
      const unshared = await measure(null, 1, pairs);
      const shared = await measure(handle, 1, pairs);
      const two = await measure(handle, 2, pairs);
      const ceiling = await measure(null, 2, pairs);
      const four = await measure(handle, 4, pairs);
      const unsharedBurst = await measure(null, 1, pairs, BURST);
      const sharedBurst = await measure(handle, 1, pairs, BURST);
      const twoBurst = await measure(handle, 2, pairs, BURST);
      burstScalings.push(twoBurst.mpairs / sharedBurst.mpairs);
      burstRatios.push(sharedBurst.nsPerPair / unsharedBurst.nsPerPair);
      afterBurst.unshared = Math.min(afterBurst.unshared, unsharedBurst.nsPerPair);
      afterBurst.shared = Math.min(afterBurst.shared, sharedBurst.nsPerPair);
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
    ctx.record({ suite: SUITE, name: "target: shared / unshared pair cost, 1 Worker", value: ratio, unit: "×", note: `median of ${rounds} rounds (${spread(pairRatios)}); ${verdict(ratio <= 1.25, "≤ 1.25×")}` });
    // A program that ever emptied a shared cache or grew an unshared pool has the slow path's call
    // compiled into its loop: pairs cost more in both, and these rows show by how much.
    const burstNote = `best of ${rounds} rounds, after ${BURST} regions were held at once (an unshared pool grows, a shared cache misses and spills)`;
    ctx.record({ suite: SUITE, name: names.burstPair("unshared"), value: afterBurst.unshared, unit: "ns", note: burstNote });
    ctx.record({ suite: SUITE, name: names.burstPair("shared"), value: afterBurst.shared, unit: "ns", note: burstNote });
    ctx.record({ suite: SUITE, name: "workers: shared / unshared pair cost after a burst, 1 Worker", value: median(burstRatios), unit: "×", note: `median of ${rounds} rounds (${spread(burstRatios)})` });
    ctx.record({ suite: SUITE, name: "workers: 2 Workers / 1 Worker throughput after a burst, shared pool", value: median(burstScalings), unit: "×", note: `median of ${rounds} rounds (${spread(burstScalings)})` });
    for (const [n, m] of [[1, best.one], [2, best.two], [4, best.four]] as const) {
      ctx.record({ suite: SUITE, name: names.aggregate(n), value: m, unit: "M pairs/s", note: `${n} × ${pairs} pairs at once, best of ${rounds}; ${navigator.hardwareConcurrency} cores` });
    }
    const ownScaling = median(machine);
    ctx.record({
      suite: SUITE, name: names.ceiling, value: best.ceiling, unit: "M pairs/s",
      note: `what 2 Workers reach with nothing shared: the machine's own scaling, median ${ownScaling.toFixed(2)}× of 1 (${spread(machine)})`,
    });
    const scaling = median(scalings);
    ctx.record({ suite: SUITE, name: "target: 2 Workers / 1 Worker throughput, shared pool", value: scaling, unit: "×", note: `median of ${rounds} rounds (${spread(scalings)}); ${verdict(scaling >= 1.8, "≥ 1.8×")}` });
    // The target assumes the machine scales about 1.9× by itself; on a shared VM it often does not.
    const relative = scalings.map((s, i) => s / machine[i]!);
    ctx.record({
      suite: SUITE, name: "workers: shared pool's 2-Worker scaling / the machine's own", value: median(relative), unit: "×",
      note: `per round, shared 2/1 over unshared 2/1, median (${spread(relative)}): 1.0 means sharing costs no scaling`,
    });
    const s = pool.stats();
    ctx.record({ suite: SUITE, name: "workers: counters after the runs", value: s.gets - s.releases, unit: "regions out", note: `gets ${s.gets}, releases ${s.releases}; audit problems: ${pool.audit().problems.length}` });
  } finally {
    pool.close();
  }
}

/** Runs `workers` Workers doing RMA over `handle` at once; writes per second in all. */
async function runRma(handle: SharedPoolHandle | null, workers: number, writes: number, form: RmaJob["form"] = "promise"): Promise<number> {
  const barrier = new SharedArrayBuffer(4);
  const ws = Array.from({ length: workers }, () => new Worker(new URL("../worker-rma.ts", import.meta.url)));
  try {
    const rs = await Promise.all(ws.map((w) => new Promise<RmaResult>((resolve, reject) => {
      w.onmessage = (e: MessageEvent<RmaResult>) => resolve(e.data);
      w.onerror = (e) => reject(new Error(e.message));
      w.postMessage({ handle, writes, bytes: 64, window: 16, form, barrier, parties: workers } satisfies RmaJob);
    })));
    const wall = Math.max(...rs.map((r) => r.ns));
    return (rs.reduce((n, r) => n + r.writes, 0) / wall) * 1e9;
  } finally {
    for (const w of ws) w.terminate();
  }
}

/** C's rate for `threads` threads on one shared domain (or a domain each), or why there is none. */
function cRate(c: CProgram, threads: number, writes: number, ownDomains: boolean): number | string {
  if (!("path" in c)) return c.missing;
  const r = Bun.spawnSync([c.path, "shm", "--threads", String(threads), "--writes", String(writes), "--size", "64", "--window", "16",
    ...(ownDomains ? ["--own-domains"] : [])], { stdout: "pipe", stderr: "pipe" });
  const out = r.stdout.toString().trim();
  let reply: { ok?: boolean; error?: string; writesPerSecond?: number };
  try {
    reply = JSON.parse(out || "{}");
  } catch {
    return `failed: rma-threads printed ${JSON.stringify(out.slice(0, 200))}`;
  }
  return reply.ok ? reply.writesPerSecond! : `failed: ${reply.error ?? r.stderr.toString().slice(0, 200)}`;
}

/**
 * RMA message rate of 1 and 2 Workers, each with its own Endpoint on the shared pool's domain, in
 * both forms (promises; postWrite/poll/completed windows), beside our C program doing the same with
 * 1 and 2 threads on one shared domain and on a domain each (bench/c/rma-threads.c), in rounds.
 */
async function measureRma(ctx: BenchContext): Promise<void> {
  if (!ctx.fabric) {
    ctx.record({ suite: SUITE, name: names.rma(1, "promise"), value: Number.NaN, unit: "writes/s", note: "not supported here: libfabric not available" });
    return;
  }
  // Long enough (~0.4 s a run) that thread start-up and JIT threads do not decide the scaling.
  const writes = ctx.quick ? 2_000 : 500_000;
  const rounds = ctx.quick ? 1 : 9;
  const c = buildC("rma-threads", ["-lfabric", "-lpthread"]);
  const provider = LibfabricProvider.open({ provider: "shm" });
  const pool = new MemoryPool(provider);
  const handle = pool.share();
  const series = new Map<string, number[]>();
  const add = (name: string, value: number) => series.set(name, [...(series.get(name) ?? []), value]);
  let cMissing: string | null = null;
  try {
    for (let round = 0; round < rounds; round++) {
      for (const form of ["promise", "windowed"] as const) {
        const one = await runRma(handle, 1, writes, form);
        const two = await runRma(handle, 2, writes, form);
        add(names.rma(1, form), one);
        add(names.rma(2, form), two);
        add(`scaling ${form}`, two / one);
      }
      const cOne = cRate(c, 1, writes, false);
      const cTwo = cRate(c, 2, writes, false);
      const cApart = cRate(c, 2, writes, true);
      if (typeof cOne === "string" || typeof cTwo === "string" || typeof cApart === "string") {
        cMissing = [cOne, cTwo, cApart].find((x) => typeof x === "string") as string;
        continue;
      }
      add(names.cRma(1, false), cOne);
      add(names.cRma(2, false), cTwo);
      add(names.cRma(2, true), cApart);
      add("scaling C", cTwo / cOne);
      add("scaling C apart", cApart / cOne);
    }
    const note = `best of ${rounds} × ${writes} writes per thread, 16 in flight, each to its own address`;
    for (const name of [names.rma(1, "promise"), names.rma(2, "promise"), names.rma(1, "windowed"), names.rma(2, "windowed")]) {
      ctx.record({ suite: SUITE, name, value: Math.max(...series.get(name)!), unit: "writes/s", note });
    }
    const promise = series.get("scaling promise")!;
    const windowed = series.get("scaling windowed")!;
    ctx.record({
      suite: SUITE, name: "target: 2 Workers / 1 Worker RMA message rate (64 B, shm)", value: median(promise), unit: "×",
      note: `promise form, median of ${rounds} rounds (${spread(promise)}); ${verdict(median(promise) >= 1.6, "≥ 1.6×")}`,
    });
    ctx.record({ suite: SUITE, name: "workers: 2 Workers / 1 Worker RMA message rate, windowed form", value: median(windowed), unit: "×", note: `median of ${rounds} rounds (${spread(windowed)})` });
    if (cMissing !== null) {
      ctx.record({ suite: SUITE, name: names.cRma(1, false), value: Number.NaN, unit: "writes/s", note: `C reference missing: ${cMissing}` });
      return;
    }
    for (const name of [names.cRma(1, false), names.cRma(2, false), names.cRma(2, true)]) {
      ctx.record({ suite: SUITE, name, value: Math.max(...series.get(name)!), unit: "writes/s", note: `${note}; bench/c/rma-threads.c` });
    }
    const cShared = series.get("scaling C")!;
    const cApart = series.get("scaling C apart")!;
    ctx.record({ suite: SUITE, name: "workers: C 2 threads / 1 thread, one shared domain", value: median(cShared), unit: "×", note: `median of ${rounds} rounds (${spread(cShared)}): what libfabric's shm gives two threads of one domain` });
    ctx.record({ suite: SUITE, name: "workers: C 2 threads / 1 thread, a domain each", value: median(cApart), unit: "×", note: `median of ${rounds} rounds (${spread(cApart)})` });
    const relative = windowed.map((x, i) => x / cShared[i]!);
    ctx.record({
      suite: SUITE, name: "workers: Workers' RMA scaling / C's on one shared domain", value: median(relative), unit: "×",
      note: `windowed form over C, per round, median (${spread(relative)}): 1.0 means the library scales as C does`,
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
    // The same pair in this thread, through mitata: both pools made inside the generator. One
    // getRegion serves both pools here, so the JIT's code for it depends on what ran before it in
    // this process; the Worker rows above, each pool in a fresh thread, are the like-for-like ones.
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
