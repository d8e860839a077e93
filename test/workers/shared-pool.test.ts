// A pool shared across real Bun Workers: lock-free stacks under contention, nothing lost, nothing
// handed out twice, counters exact; growth, cross-Worker release, late attach, terminated Workers.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import {
  AllocToolsError, HostProvider, LibfabricProvider, MemoryPool, type MemoryPoolOptions, type RegionProvider, type SharedPoolHandle,
} from "../../lib/index.ts";
import { describeFabric } from "../helpers.ts";
import { describe } from "bun:test";
import type { Command, RegionInfo } from "./worker-pool.ts";

const KiB = 1024;
/** The largest request of each class: small, medium, large, huge. */
const SIZES = [256, 2 * KiB, 16 * KiB, 64 * KiB] as const;
/** Every stack starts with one region and grows one at a time: growth happens under contention. */
const ONE_EACH: MemoryPoolOptions = {
  small: { chunkSize: SIZES[0], initialCount: 1, growCount: 1, maxRegions: 256 },
  medium: { chunkSize: SIZES[1], initialCount: 1, growCount: 1, maxRegions: 128 },
  large: { chunkSize: SIZES[2], initialCount: 1, growCount: 1, maxRegions: 64 },
  huge: { chunkSize: SIZES[3], initialCount: 1, growCount: 1, maxRegions: 48 },
  maxPinnedBytes: 6 * 1024 * KiB, // inside the 8 MiB RLIMIT_MEMLOCK, whatever the Workers do
};
const PAIRS = Number(process.env.ALLOCTOOLS_STRESS_PAIRS ?? 1_000_000);
// Real Workers, 10^6 pairs each: more than 5 s.
setDefaultTimeout(60_000);

type Reply = { ok: true; [k: string]: unknown } | { ok: false; error: string; code?: string };

function spawn(): Worker {
  return new Worker(new URL("./worker-pool.ts", import.meta.url));
}

function ask<T = Record<string, unknown>>(w: Worker, m: Command): Promise<T & { ok: true }> {
  return new Promise((resolve, reject) => {
    w.onmessage = (e: MessageEvent<Reply>) => (e.data.ok ? resolve(e.data as T & { ok: true }) : reject(new Error(e.data.error)));
    w.onerror = (e) => reject(e instanceof ErrorEvent ? new Error(e.message) : e);
    w.postMessage(m);
  });
}

/** Terminates a Worker and waits until its thread is gone. */
function terminated(w: Worker): Promise<void> {
  return new Promise((resolve) => {
    w.addEventListener("close", () => resolve(), { once: true });
    w.terminate();
  });
}

/** Every pooled region is once somewhere, none in use, and the counters add up. */
function expectIntact(pool: MemoryPool, gets: number): void {
  const a = pool.audit();
  expect(a.problems).toEqual([]);
  expect(a.lost).toBe(0);
  expect(a.inUse).toBe(0);
  expect(a.onStacks + a.cached).toBe(a.regions);
  const s = pool.stats();
  expect(s.gets).toBe(gets);
  expect(s.releases).toBe(gets);
  expect(s.regionsInUse).toBe(0);
  expect(s.hits + s.misses).toBe(gets);
  let regions = 0;
  let blocks = 0;
  for (const st of Object.values(s.stacks)) {
    expect(st.inUse).toBe(0);
    expect(st.free).toBe(st.regions);
    expect(st.gets).toBe(st.releases);
    expect(st.misses).toBe(st.growths); // each growth served the get that found the stack dry
    regions += st.regions;
    blocks += st.blocks;
  }
  expect(regions).toBe(a.regions);
  expect(s.registrations).toBe(blocks); // one registration per block, none lost, none extra
}

function suite(label: string, open: () => RegionProvider): void {
  let provider: RegionProvider;
  beforeAll(() => { provider = open(); });
  afterAll(() => provider.close());

  for (const workers of [2, 4]) {
    for (const cacheSize of [0, 4]) {
      test(`${workers} Workers × ${PAIRS} get/release pairs, all classes, cache ${cacheSize}: stamps hold, counters exact [${label}]`, async () => {
        const pool = new MemoryPool(provider, ONE_EACH);
        const handle = pool.share({ cacheSize });
        const ws = Array.from({ length: workers }, spawn);
        const barrier = new SharedArrayBuffer(4); // all start at once: the loops overlap
        try {
          const results = await Promise.all(ws.map((w, k) => ask<{ errors: string[]; gets: number; ms: number; leaked: number }>(w,
            { cmd: "stress", handle, id: k + 1, pairs: PAIRS, maxHold: 3, sizes: SIZES, barrier, parties: workers })));
          for (const r of results) {
            expect(r.errors).toEqual([]);
            expect(r.gets).toBe(PAIRS);
            expect(r.leaked).toBe(0);
          }
          expectIntact(pool, workers * PAIRS);
          const s = pool.stats();
          expect(s.growths).toBeGreaterThan(0); // they started with one region per class
          expect(s.pinnedBytes).toBeLessThanOrEqual(6 * 1024 * KiB);
          // Growth only when a stack runs dry, once per time: never more regions per class than the
          // Workers can hold at once (3 kept + 1 just got), have in flight back to the stack (1), and
          // keep in their caches.
          for (const st of Object.values(s.stacks)) expect(st.regions).toBeLessThanOrEqual(workers * (3 + 1 + 1 + cacheSize));
          expect(pool.close().count).toBe(0);
        } finally {
          ws.forEach((w) => w.terminate());
          if (!pool.closed) pool.close();
        }
      });
    }
  }

  test(`cross-Worker release; the same address, keys and bytes everywhere [${label}]`, async () => {
    const pool = new MemoryPool(provider, ONE_EACH);
    const handle = pool.share();
    const [a, b] = [spawn(), spawn()];
    try {
      const held = await ask<{ regions: RegionInfo[] }>(a, { cmd: "hold", handle, sizes: [10, 1000, 10_000, 60_000] });
      for (const info of held.regions) {
        const here = pool.region(info.index);
        expect(here.address).toBe(info.address);
        expect(here.size).toBe(info.size);
        expect(here.remoteKey).toBe(info.remoteKey);
        expect(here.remoteAddress).toBe(info.remoteAddress);
        expect(here.view[0]).toBe(info.firstByte); // the Worker's write, seen through this thread's view
      }
      expect(pool.stats().regionsInUse).toBe(4);
      // B attaches, sees the same regions, and releases two that A got.
      await ask(b, { cmd: "hold", handle, sizes: [] });
      const seen = await ask<{ regions: RegionInfo[] }>(b, { cmd: "describe", indices: held.regions.map((r) => r.index) });
      expect(seen.regions.map((r) => [r.address, r.remoteKey, r.remoteAddress])).toEqual(held.regions.map((r) => [r.address, r.remoteKey, r.remoteAddress]));
      const idx = held.regions.map((r) => r.index);
      const first = await ask<{ errors: string[] }>(b, { cmd: "release", indices: idx.slice(0, 2) });
      expect(first.errors).toEqual([]);
      // Free in B's cache (their state words still name B): free here too.
      expect(idx.slice(0, 2).map((i) => pool.region(i).inUse)).toEqual([false, false]);
      expect(idx.slice(2).map((i) => pool.region(i).inUse)).toEqual([true, true]);
      // The owner releases the other two; releasing any of them again, anywhere, is a double release.
      for (const i of idx.slice(2)) pool.releaseRegion(pool.region(i));
      const again = await ask<{ errors: string[] }>(a, { cmd: "release", indices: idx });
      expect(again.errors).toEqual(["DOUBLE_RELEASE", "DOUBLE_RELEASE", "DOUBLE_RELEASE", "DOUBLE_RELEASE"]);
      expect(() => pool.releaseRegion(pool.region(idx[0]!))).toThrow(AllocToolsError);
      expectIntact(pool, 4);
      await ask(a, { cmd: "close" });
      await ask(b, { cmd: "close" });
      expect(pool.close().count).toBe(0);
    } finally {
      a.terminate();
      b.terminate();
      if (!pool.closed) pool.close();
    }
  });

  test(`temporary and user regions stay in the Worker that made them; keys stay unique; counters shared [${label}]`, async () => {
    const pool = new MemoryPool(provider, ONE_EACH);
    const handle = pool.share();
    const w = spawn();
    try {
      const before = pool.stats();
      const unpooled = await ask<{ temporary: RegionInfo; user: RegionInfo; isTemp: boolean; isUser: boolean }>(w,
        { cmd: "unpooled", handle, temporaryBytes: SIZES[3] + 1, keep: false });
      expect([unpooled.isTemp, unpooled.isUser]).toEqual([true, true]);
      const mine = pool.getRegion(SIZES[3] + 1); // the owner's own temporary region
      const keys = [unpooled.temporary.remoteKey, unpooled.user.remoteKey, mine.remoteKey];
      for (let i = 0; i < pool.stats().stacks.small.regions; i++) keys.push(pool.region(i).remoteKey);
      expect(new Set(keys).size).toBe(keys.length); // one counter for every thread's registrations
      pool.releaseRegion(mine);
      let s = pool.stats();
      expect(s.temporaryRegions - before.temporaryRegions).toBe(2);
      expect(s.userRegions - before.userRegions).toBe(1);
      expect([s.liveTemporaryRegions, s.liveUserRegions, s.regionsInUse]).toEqual([0, 0, 0]);
      expect(s.registrations - s.deregistrations).toBe(before.registrations - before.deregistrations);
      expect(s.pinnedBytes).toBe(before.pinnedBytes);
      // Kept when the Worker's pool closes: deregistered there, and reported by that close.
      await ask(w, { cmd: "unpooled", handle, temporaryBytes: SIZES[3] + 1, keep: true });
      expect(pool.stats().liveTemporaryRegions).toBe(1);
      const closed = await ask<{ leaked: number }>(w, { cmd: "close" });
      expect(closed.leaked).toBe(2);
      s = pool.stats();
      expect([s.liveTemporaryRegions, s.liveUserRegions]).toEqual([0, 0]);
      expect(s.pinnedBytes).toBe(before.pinnedBytes);
      expect(s.gets - s.releases).toBe(2); // the two that close reported, not released
      expect(pool.audit().problems).toEqual([]);
      expect(pool.close().count).toBe(0);
    } finally {
      w.terminate();
      if (!pool.closed) pool.close();
    }
  });

  test(`attach after growth: a late Worker sees every block, grown here or by another Worker [${label}]`, async () => {
    const pool = new MemoryPool(provider, ONE_EACH);
    const mine = Array.from({ length: 5 }, () => pool.getRegion(100)); // grows small 4 times before sharing
    const handle = pool.share({ cacheSize: 0 });
    const more = Array.from({ length: 3 }, () => pool.getRegion(100)); // and 3 more times after
    const [early, late] = [spawn(), spawn()];
    try {
      const e = await ask<{ regions: RegionInfo[] }>(early, { cmd: "hold", handle, sizes: [100, 100] }); // grown in a Worker
      const l = await ask<{ regions: RegionInfo[] }>(late, { cmd: "hold", handle, sizes: [] });
      expect(l).toBeDefined();
      const all = [...mine, ...more].map((r) => (r as unknown as { index: number }).index).concat(e.regions.map((r) => r.index));
      expect(new Set(all).size).toBe(10);
      const seen = await ask<{ regions: RegionInfo[] }>(late, { cmd: "describe", indices: all });
      for (const info of seen.regions) {
        const here = pool.region(info.index);
        expect([here.address, here.remoteKey, here.remoteAddress]).toEqual([info.address, info.remoteKey, info.remoteAddress]);
      }
      expect(new Set(seen.regions.map((r) => r.remoteKey)).size).toBe(10); // one block (one key) each
      const s = pool.stats();
      expect(s.stacks.small.regions).toBe(10);
      expect(s.stacks.small.growths).toBe(9);
      const freed = await ask<{ errors: string[] }>(late, { cmd: "release", indices: all });
      expect(freed.errors).toEqual([]);
      expectIntact(pool, 10);
      await ask(early, { cmd: "close" });
      await ask(late, { cmd: "close" });
      expect(pool.close().count).toBe(0);
    } finally {
      early.terminate();
      late.terminate();
      if (!pool.closed) pool.close();
    }
  });

  test(`a Worker terminated while holding regions: the pool stays intact and close() reports them [${label}]`, async () => {
    const pool = new MemoryPool(provider, ONE_EACH);
    const handle = pool.share();
    const doomed = spawn();
    const next = spawn();
    try {
      const held = await ask<{ regions: RegionInfo[] }>(doomed, { cmd: "hold", handle, sizes: [1, 300, 3000, 30_000] });
      await terminated(doomed);
      const a = pool.audit();
      expect(a.problems).toEqual([]);
      expect(a.inUse).toBe(4);
      expect(pool.stats().regionsInUse).toBe(4);
      // Others carry on, and never get the dead Worker's regions.
      const r = await ask<{ errors: string[]; gets: number }>(next, { cmd: "stress", handle, id: 9, pairs: 20_000, maxHold: 3, sizes: SIZES });
      expect(r.errors).toEqual([]);
      const s = pool.stats();
      expect(s.regionsInUse).toBe(4);
      expect(pool.audit().problems).toEqual([]);
      const report = pool.close();
      expect(report.count).toBe(4);
      expect(report.regions.map((x) => x.kind).sort()).toEqual(["huge", "large", "medium", "small"]);
      expect(report.bytes).toBe(held.regions.reduce((n, x) => n + x.size, 0));
    } finally {
      doomed.terminate();
      next.terminate();
      if (!pool.closed) pool.close();
    }
  });

  test(`Workers terminated in the middle of their loops leave nothing handed out twice, nothing lost [${label}]`, () => {
    // In a child process, so that its Workers' deaths and the audits that follow are its alone.
    const r = Bun.spawnSync([process.execPath, `${import.meta.dir}/terminate-child.ts`, label], {
      stdout: "pipe", stderr: "pipe", timeout: 50_000,
    });
    expect(r.stderr.toString()).toBe("");
    expect(r.exitCode).toBe(0);
    const out = JSON.parse(r.stdout.toString()) as { results: { problems: string[]; lost: number; inUse: number }[]; leaked: number };
    let held = 0;
    for (const x of out.results) {
      // Never twice, never on a stack while in use, never lost: a growth cut short is finished or
      // undone by the next grower, a spill cut short is read from the dead Worker's cache.
      expect(x.problems).toEqual([]);
      expect(x.lost).toBe(0);
      expect(x.inUse - held).toBeLessThanOrEqual(4); // what the dead Worker held: still in use, never reused
      held = x.inUse;
    }
    expect(out.leaked).toBe(held); // reported at close
  });
}

describe("shared pool across Workers [host]", () => suite("host", () => new HostProvider()));
describeFabric("shared pool across Workers [tcp]", () => suite("tcp", () => LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" })));

test("the handle is structured-cloneable and attach refuses anything else", () => {
  const provider = new HostProvider();
  try {
    const pool = new MemoryPool(provider, ONE_EACH);
    const handle = pool.share();
    const copy = structuredClone(handle) as SharedPoolHandle;
    new Int32Array(copy.buffer)[1 << 10] = 42; // a SharedArrayBuffer is shared, not copied
    expect(new Int32Array(handle.buffer)[1 << 10]).toBe(42);
    new Int32Array(copy.buffer)[1 << 10] = 0;
    const other = MemoryPool.attach(copy);
    const r = other.getRegion(10);
    expect(pool.region((r as unknown as { index: number }).index).address).toBe(r.address);
    // A region of the sibling pool object can be released through the owner: same shared region.
    pool.releaseRegion(r);
    expect(() => other.releaseRegion(r)).toThrow(/not in use/);
    expect(() => MemoryPool.attach({} as SharedPoolHandle)).toThrow(TypeError);
    expect(pool.share()).toBe(handle);
    expect(other.close().count).toBe(0);
    expect(pool.close().count).toBe(0);
    expect(() => MemoryPool.attach(handle)).toThrow(AllocToolsError);
  } finally {
    provider.close();
  }
});
