// The registration cache (lib/cache/registration-cache.ts) against its targets, per provider:
// - acquire+release hit of a 4 KiB view (target ≤ 60 ns), and its heap cells per call (0);
// - a miss (register + evict) against raw registerUserRegion+releaseRegion (target ≤ 1.2×), per-call
//   p50s in alternating batches (custom: mitata's batch averages swallow this machine's stalls);
// - 1,000 views into one 1 MiB ArrayBuffer: registrations made (target 1);
// - an RMA write of a plain 64 KiB Buffer through Endpoint options.cache against the same write
//   from a pooled region (target ≤ 1.1×), two endpoints in this process over tcp and shm.
import { bench, do_not_optimize, group } from "mitata";
import {
  Endpoint, HostProvider, LibfabricProvider, MemoryPool, RegistrationCache, SIZE_CLASSES, type MemoryPoolOptions, type RegionProvider,
} from "../../lib/index.ts";
import type { BenchContext, Suite } from "../context.ts";
import { cellsPerOp } from "../jit.ts";

const SUITE = "cache";
const KiB = 1024;
const MiB = 1024 * KiB;
const MISS_BYTES = 64 * KiB;
const RMA_BYTES = 64 * KiB;

export const names = {
  hit: (p: string) => `cache hit ${p} acquire+release 4 KiB view`,
  poolHit: (p: string) => `pool.userRegion hit ${p} 4 KiB view`,
};

/** A pool with no pooled regions: only what userRegion and registerUserRegion register. */
const EMPTY_POOL: MemoryPoolOptions = Object.fromEntries(SIZE_CLASSES.map((n) => [n, { initialCount: 0 }]));

interface Subject {
  label: string;
  provider: RegionProvider;
}

function openSubjects(ctx: BenchContext): Subject[] {
  const subjects: Subject[] = [{ label: "host", provider: new HostProvider() }];
  ctx.provider({ suite: SUITE, label: "host", description: "built-in host provider (mlock)" });
  if (!ctx.fabric) return subjects;
  for (const [label, options] of [["tcp", { provider: "tcp", node: "127.0.0.1" }], ["shm", { provider: "shm" }]] as const) {
    try {
      const p = LibfabricProvider.open(options);
      subjects.push({ label, provider: p });
      ctx.provider({ suite: SUITE, label, description: `libfabric ${p.info.version} ${p.name}` });
    } catch (e) {
      if (process.env.ALLOCTOOLS_REQUIRE_LIBFABRIC === "1") throw e;
      ctx.provider({ suite: SUITE, label, description: `not available, skipped: ${(e as Error).message}` });
    }
  }
  return subjects;
}

function registerBenches(t: Subject): void {
  group(`${t.label}: registration cache`, () => {
    bench(names.hit(t.label), function* () {
      const cache = new RegistrationCache(t.provider);
      const view = new Uint8Array(new ArrayBuffer(MiB), 8 * KiB, 4 * KiB);
      cache.release(cache.acquire(view));
      yield () => cache.release(cache.acquire(view));
      cache.close();
    });
    bench(names.poolHit(t.label), function* () {
      const pool = new MemoryPool(t.provider, EMPTY_POOL);
      const view = new Uint8Array(new ArrayBuffer(MiB), 8 * KiB, 4 * KiB);
      yield () => pool.releaseRegion(pool.userRegion(view));
      pool.close();
    });
  });
}

/** p50 and p99 of per-call times. */
function percentiles(times: number[]): { p50: number; p99: number } {
  const sorted = [...times].sort((x, y) => x - y);
  return { p50: sorted[Math.floor((sorted.length - 1) * 0.5)]!, p99: sorted[Math.floor((sorted.length - 1) * 0.99)]! };
}

/**
 * Per-call times of each op, in alternating batches within one run: on a loaded two-core machine
 * a mitata batch average swallows the scheduler's millisecond stalls, a per-call p50 does not.
 */
function interleaved(ops: Record<string, () => void>, batches: number, perBatch: number): Record<string, number[]> {
  const keys = Object.keys(ops);
  const times: Record<string, number[]> = Object.fromEntries(keys.map((k) => [k, []]));
  for (const k of keys) for (let i = 0; i < 200; i++) ops[k]!(); // warm up
  for (let b = 0; b < batches; b++) {
    for (let j = 0; j < keys.length; j++) {
      const k = keys[(b + j) % keys.length]!;
      const op = ops[k]!;
      const out = times[k]!;
      for (let i = 0; i < perBatch; i++) {
        const t0 = Bun.nanoseconds();
        op();
        out.push(Bun.nanoseconds() - t0);
      }
    }
  }
  return times;
}

/**
 * A miss in steady state against raw registration: one entry allowed and two buffers taken in
 * turn, so every acquire evicts (deregisters) the other buffer and registers its own, as
 * registerUserRegion + releaseRegion registers and deregisters per call.
 */
function measureMiss(ctx: BenchContext, t: Subject): void {
  const cache = new RegistrationCache(t.provider, { maxEntries: 1 });
  const pool = new MemoryPool(t.provider, EMPTY_POOL);
  // Buffers of their own for each: on the host provider, a page the cache keeps pinned would
  // spare raw registration its munlock.
  const cached = [new Uint8Array(MISS_BYTES), new Uint8Array(MISS_BYTES)];
  const raw = [new Uint8Array(MISS_BYTES), new Uint8Array(MISS_BYTES)];
  let turn = 0;
  const times = interleaved({
    miss: () => { turn ^= 1; cache.release(cache.acquire(cached[turn]!)); },
    raw: () => { turn ^= 1; pool.releaseRegion(pool.registerUserRegion(raw[turn]!)); },
  }, ctx.quick ? 4 : 40, ctx.quick ? 100 : 500);
  const miss = percentiles(times.miss!);
  const direct = percentiles(times.raw!);
  const n = times.miss!.length;
  ctx.record({ suite: SUITE, name: `cache miss ${t.label} 64 KiB (register + evict)`, value: miss.p50, unit: "ns", note: `p50 of ${n}; p99 ${(miss.p99 / 1000).toFixed(1)} µs` });
  ctx.record({ suite: SUITE, name: `raw registerUserRegion+releaseRegion ${t.label} 64 KiB`, value: direct.p50, unit: "ns", note: `p50 of ${n}; p99 ${(direct.p99 / 1000).toFixed(1)} µs` });
  ctx.record({ suite: SUITE, name: `cache miss / raw registerUserRegion ${t.label} 64 KiB`, value: miss.p50 / direct.p50, unit: "×", note: "per-call p50s, alternating batches in one run (target ≤ 1.2×)" });
  cache.close();
  pool.close();
}

/** Views a parser hands out: 1,000 of them into one 1 MiB buffer, and what they cost in registrations. */
function measureViews(ctx: BenchContext, t: Subject): void {
  const cache = new RegistrationCache(t.provider);
  const buffer = new ArrayBuffer(MiB);
  const views = Array.from({ length: 1000 }, (_, i) => new Uint8Array(buffer, i * 1048, 1000));
  const times: number[] = [];
  for (const view of views) {
    const t0 = Bun.nanoseconds();
    cache.release(cache.acquire(view));
    times.push(Bun.nanoseconds() - t0);
  }
  const s = cache.stats();
  const { p50 } = percentiles(times.slice(1));
  ctx.record({
    suite: SUITE, name: `1,000 views into one 1 MiB ArrayBuffer (${t.label}): registrations`, value: s.registered, unit: "",
    note: `${s.misses} miss, ${s.hits} hits; first view ${(times[0]! / 1000).toFixed(0)} µs (registers 1 MiB), each other view p50 ${p50.toFixed(0)} ns (a new region object) (target: 1 registration)`,
  });
  cache.close();
}

/** Heap cells a hit allocates (target 0), beside a positive control. */
function measureCells(ctx: BenchContext): void {
  const host = new HostProvider();
  const cache = new RegistrationCache(host);
  const view = new Uint8Array(new ArrayBuffer(MiB), 8 * KiB, 4 * KiB);
  let sink: unknown;
  for (const { name, op } of [
    { name: "cache hit acquire+release 4 KiB view", op: () => cache.release(cache.acquire(view)) },
    { name: "control: new Uint8Array(64)", op: () => { sink = new Uint8Array(64); } },
  ]) {
    const a = cellsPerOp(op);
    const types = Object.entries(a.types).map(([k, v]) => `${k} ${v}`).join(", ");
    ctx.record({ suite: SUITE, name: `heap cells per call: ${name}`, value: a.perOp, unit: "cells", note: types ? `new cells: ${types}` : "nothing allocated" });
  }
  do_not_optimize(sink);
  cache.close();
  host.close();
}

/**
 * RMA write of 64 KiB, one at a time (await each), from a plain Buffer through the endpoint's
 * cache and from a pooled region, in alternating batches so both see the same machine.
 */
async function measureRma(ctx: BenchContext, provider: "tcp" | "shm"): Promise<void> {
  const options = provider === "tcp" ? { provider, node: "127.0.0.1" } : { provider };
  let local: LibfabricProvider;
  let remote: LibfabricProvider;
  try {
    local = LibfabricProvider.open(options);
    remote = LibfabricProvider.open(options);
  } catch (e) {
    if (process.env.ALLOCTOOLS_REQUIRE_LIBFABRIC === "1") throw e;
    ctx.record({ suite: SUITE, name: `RMA write 64 KiB ${provider}: Buffer through cache / pooled region`, value: NaN, unit: "×", note: `not available: ${(e as Error).message}` });
    return;
  }
  const pool = new MemoryPool(local, EMPTY_POOL);
  const targetPool = new MemoryPool(remote, EMPTY_POOL);
  const cache = new RegistrationCache(local);
  const near = new Endpoint(local, { cache });
  const far = new Endpoint(remote);
  try {
    const peer = near.insert(far.name);
    far.insert(near.name);
    far.startProgress(0);
    const target = targetPool.getRegion(RMA_BYTES);
    const pooled = pool.getRegion(RMA_BYTES);
    const plain = Buffer.alloc(RMA_BYTES, 7);
    const remoteRegion = target.remote();
    const batches = ctx.quick ? 4 : 20;
    const perBatch = ctx.quick ? 50 : 200;
    const times = { cached: [] as number[], pooled: [] as number[] };
    for (let i = 0; i < 50; i++) { await near.write(plain, RMA_BYTES, peer, remoteRegion); await near.write(pooled, RMA_BYTES, peer, remoteRegion); }
    for (let b = 0; b < batches; b++) {
      for (const mode of b % 2 === 0 ? (["cached", "pooled"] as const) : (["pooled", "cached"] as const)) {
        const source = mode === "cached" ? plain : pooled;
        for (let i = 0; i < perBatch; i++) {
          const t0 = Bun.nanoseconds();
          await near.write(source, RMA_BYTES, peer, remoteRegion);
          times[mode].push(Bun.nanoseconds() - t0);
        }
      }
    }
    const p50 = (xs: number[]) => xs.sort((x, y) => x - y)[Math.floor((xs.length - 1) / 2)]!;
    const cached = p50(times.cached);
    const fromPool = p50(times.pooled);
    const s = cache.stats();
    ctx.record({ suite: SUITE, name: `RMA write 64 KiB ${provider}: plain Buffer through Endpoint options.cache`, value: cached, unit: "ns", note: `p50 of ${times.cached.length}; cache ${s.misses} miss, ${s.hits} hits` });
    ctx.record({ suite: SUITE, name: `RMA write 64 KiB ${provider}: pooled region`, value: fromPool, unit: "ns", note: `p50 of ${times.pooled.length}` });
    ctx.record({ suite: SUITE, name: `RMA write 64 KiB ${provider}: Buffer through cache / pooled region`, value: cached / fromPool, unit: "×", note: "p50s, alternating batches in one run (target ≤ 1.1×)" });
    pool.releaseRegion(pooled);
    targetPool.releaseRegion(target);
  } finally {
    near.close();
    far.close();
    cache.close();
    pool.close();
    targetPool.close();
    local.close();
    remote.close();
  }
}

const suite: Suite = {
  name: SUITE,
  async setup(ctx: BenchContext) {
    const subjects = openSubjects(ctx);
    for (const t of subjects) {
      registerBenches(t);
      measureMiss(ctx, t);
      measureViews(ctx, t);
    }
    measureCells(ctx);
    if (ctx.fabric) for (const p of ["tcp", "shm"] as const) await measureRma(ctx, p);
    return () => {
      for (const t of subjects) t.provider.close();
    };
  },
};
export default suite;
