// The pool against every provider: host always, libfabric tcp and shm for real.
import { afterAll, beforeAll, expect, test } from "bun:test";
import {
  AllocToolsError, MemoryPool, RegionFlag, type MemoryRegion, type RegionProvider, LibfabricProvider,
} from "../../lib/index.ts";
import type { MemoryRegionImpl } from "../../lib/memory/region.ts";
import { describeEachProvider, vmLckKiB } from "../helpers.ts";

const small = { small: { chunkSize: 256, initialCount: 4 }, medium: { chunkSize: 4096, initialCount: 2 },
  large: { chunkSize: 65536, initialCount: 1 }, huge: { chunkSize: 1 << 20, initialCount: 1 } };

/**
 * What names a registration: the remote key, or for UCX (whose packed rkey of our own memory is the
 * same bytes for every registration) the memory handle, which is the local key.
 */
const registrationKey = (r: MemoryRegion): bigint => (r.remoteKeyBytes === null ? r.remoteKey : r.localKey);

describeEachProvider("MemoryPool", (c) => {
  let provider: RegionProvider;
  beforeAll(() => { provider = c.open(); });
  afterAll(() => provider.close());

  test("the default pool pins its blocks: VmLck grows by pinnedBytes, and close() gives it all back", () => {
    const before = vmLckKiB();
    const pool = new MemoryPool(provider);
    const s = pool.stats();
    expect(s.pinnedBytes).toBeGreaterThan(0);
    expect(s.pinnedBytes).toBeLessThanOrEqual(8 * 1024 * 1024); // fits the common RLIMIT_MEMLOCK
    expect(vmLckKiB() - before).toBe(s.pinnedBytes / 1024);
    expect(s.registrations).toBe(4); // one registration per block, one block per class
    expect(pool.close().count).toBe(0);
    expect(vmLckKiB()).toBe(before);
    expect(pool.stats().pinnedBytes).toBe(0);
  });

  test("getRegion routes to the smallest class that fits", () => {
    using pool = new MemoryPool(provider, small);
    const cases: [number, number][] = [[1, 256], [256, 256], [257, 4096], [4096, 4096], [4097, 65536], [65537, 1 << 20], [1 << 20, 1 << 20]];
    for (const [bytes, size] of cases) {
      const r = pool.getRegion(bytes);
      expect(r.size).toBe(size);
      expect(r.view.length).toBe(size);
      expect(r.messageLength).toBe(bytes);
      expect(r.isPartial).toBe(true);
      expect(r.isTemp).toBe(false);
      pool.releaseRegion(r);
    }
  });

  test("flags: region.flags.isUser/isTemp/isPartial, the bits, and region.isUser/isTemp/isPartial", () => {
    using pool = new MemoryPool(provider, small);
    const pooled = pool.getRegion(10);
    const temp = pool.getRegion(2 << 20);
    const user = pool.registerUserRegion(new Uint8Array(64));
    expect([pooled.flags.isPartial, pooled.flags.isTemp, pooled.flags.isUser]).toEqual([true, false, false]);
    expect([temp.flags.isPartial, temp.flags.isTemp, temp.flags.isUser]).toEqual([false, true, false]);
    expect([user.flags.isPartial, user.flags.isTemp, user.flags.isUser]).toEqual([false, false, true]);
    expect([pooled.isPartial, temp.isTemp, user.isUser]).toEqual([true, true, true]);
    expect(+temp.flags & RegionFlag.TEMP).toBe(RegionFlag.TEMP);
    expect(temp.flags.bits).toBe(RegionFlag.TEMP);
    expect(String(pooled.flags)).toBe("PARTIAL");
    const other = pool.getRegion(10);
    expect(other).not.toBe(pooled);
    expect(other.flags).toBe(pooled.flags); // one shared instance per combination
    for (const r of [pooled, temp, user, other]) pool.releaseRegion(r);
  });

  test("LIFO: a release followed by a get of the same class returns the same region", () => {
    using pool = new MemoryPool(provider, small);
    const a = pool.getRegion(100);
    const b = pool.getRegion(100);
    expect(a).not.toBe(b);
    pool.releaseRegion(a);
    expect(pool.getRegion(10)).toBe(a);
    pool.releaseRegion(b);
    expect(pool.getRegion(200)).toBe(b);
    pool.releaseRegion(a);
    pool.releaseRegion(b);
  });

  test("the same view object every time (made once per region), over the region's own memory", () => {
    using pool = new MemoryPool(provider, small);
    const r = pool.getRegion(64);
    const view = r.view;
    view[0] = 42;
    pool.releaseRegion(r);
    const again = pool.getRegion(64);
    expect(again.view).toBe(view);
    const { read } = require("bun:ffi");
    expect(read.u8(again.address, 0)).toBe(42);
    pool.releaseRegion(again);
  });

  test("a dry stack grows by one block (one registration), no temporary region, and regions do not overlap", () => {
    using pool = new MemoryPool(provider, small);
    const before = pool.stats();
    const got: MemoryRegion[] = [];
    for (let i = 0; i < 10; i++) got.push(pool.getRegion(200)); // 4 initial, then growth by 4, twice
    const s = pool.stats();
    expect(s.stacks.small.growths).toBe(2);
    expect(s.stacks.small.misses).toBe(2);
    expect(s.stacks.small.hits).toBe(8);
    expect(s.registrations - before.registrations).toBe(2);
    expect(s.temporaryRegions).toBe(0);
    expect(got.every((r) => !r.isTemp && r.size === 256)).toBe(true);
    const spans = got.map((r) => [r.address, r.address + r.size]).sort((x, y) => x[0]! - y[0]!);
    for (let i = 1; i < spans.length; i++) expect(spans[i]![0]!).toBeGreaterThanOrEqual(spans[i - 1]![1]!);
    expect(new Set(got).size).toBe(10);
    for (const r of got) pool.releaseRegion(r);
    expect(pool.stats().regionsInUse).toBe(0);
  });

  test("requests above the huge class get temporary regions: registered on the fly, gone on release", () => {
    using pool = new MemoryPool(provider, small);
    const lck = vmLckKiB();
    const before = pool.stats();
    const r = pool.getRegion((1 << 20) + 1);
    expect(r.isTemp).toBe(true);
    expect(r.size).toBe((1 << 20) + 1);
    expect(r.view.length).toBe(r.size);
    expect(vmLckKiB()).toBeGreaterThan(lck);
    expect(pool.stats().liveTemporaryRegions).toBe(1);
    expect(pool.stats().registrations - before.registrations).toBe(1);
    const view = r.view;
    pool.releaseRegion(r);
    expect(view.length).toBe(0); // unmapped: the view is detached
    const s = pool.stats();
    expect(s.liveTemporaryRegions).toBe(0);
    expect(s.temporaryRegions).toBe(1);
    expect(s.deregistrations - before.deregistrations).toBe(1);
    expect(s.pinnedBytes).toBe(before.pinnedBytes);
    expect(vmLckKiB()).toBe(lck);
  });

  test("user regions: zero-copy over the caller's memory, deregistered but not freed on release", () => {
    using pool = new MemoryPool(provider, small);
    const mine = new Uint8Array(10000);
    const r = pool.registerUserRegion(mine.subarray(100, 5100));
    expect(r.isUser).toBe(true);
    expect(r.size).toBe(5000);
    r.view[0] = 9;
    expect(mine[100]).toBe(9);
    expect(pool.stats().liveUserRegions).toBe(1);
    pool.releaseRegion(r);
    expect(pool.stats().liveUserRegions).toBe(0);
    mine[100] = 10; // still ours, still mapped
    expect(mine[100]).toBe(10);
  });

  test("registering the same buffer twice gives two registrations with distinct keys (no -FI_ENOKEY)", () => {
    using pool = new MemoryPool(provider, small);
    const buf = new Uint8Array(4096);
    const a = pool.registerUserRegion(buf);
    const b = pool.registerUserRegion(buf);
    expect(a.address).toBe(b.address);
    if (provider.kind === "ucx") {
      // UCX's registration cache hands back one memory handle, counted twice: two registrations, one key.
      expect((a as MemoryRegionImpl).registration).not.toBe((b as MemoryRegionImpl).registration);
      expect(a.localKey).toBe(b.localKey);
    } else {
      expect(a.remoteKey).not.toBe(b.remoteKey);
    }
    pool.releaseRegion(a);
    pool.releaseRegion(b);
  });

  test("keys and remote addresses: exact bigints, virtual or offset per the provider's addressing", () => {
    using pool = new MemoryPool(provider, small);
    const regions = [pool.getRegion(10), pool.getRegion(10), pool.getRegion(1000)];
    for (const r of regions) {
      expect(typeof r.remoteKey).toBe("bigint");
      expect(typeof r.localKey).toBe("bigint");
      const expected = provider.virtualAddressing ? BigInt(r.address) : BigInt(r.address - r.baseAddress);
      expect(r.remoteAddress).toBe(expected);
      expect(r.pointer(3).remoteAddress).toBe(expected + 3n);
    }
    // Sub-regions of one block share its registration; in offset mode the second one is not at 0.
    if (!provider.virtualAddressing) expect(regions[1]!.remoteAddress).toBeGreaterThan(0n);
    for (const r of regions) pool.releaseRegion(r);
  });

  test("statistics add up", () => {
    using pool = new MemoryPool(provider, small);
    const a = pool.getRegion(1);
    const b = pool.getRegion(5000);
    const t = pool.getRegion(2 << 20);
    const u = pool.registerUserRegion(new ArrayBuffer(100));
    let s = pool.stats();
    expect(s.gets).toBe(4);
    expect(s.regionsInUse).toBe(4);
    expect(s.peakPinnedBytes).toBeGreaterThanOrEqual(s.pinnedBytes);
    for (const r of [a, b, t, u]) pool.releaseRegion(r);
    s = pool.stats();
    expect(s.releases).toBe(4);
    expect(s.regionsInUse).toBe(0);
    expect(s.stacks.small.gets).toBe(1);
    expect(s.stacks.large.gets).toBe(1);
    expect(s.temporaryRegions).toBe(1);
    expect(s.userRegions).toBe(1);
    expect(s.registrations - s.deregistrations).toBe(4); // the four blocks remain
  });

  test("maxPinnedBytes is enforced with a clear error; the pool stays usable", () => {
    using pool = new MemoryPool(provider, { ...small, maxPinnedBytes: 2 * 1024 * 1024 });
    let err: unknown;
    try { pool.getRegion(3 << 20); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(AllocToolsError);
    expect((err as AllocToolsError).code).toBe("PINNED_LIMIT");
    expect((err as Error).message).toContain("maxPinnedBytes");
    const r = pool.getRegion(100);
    expect(r.size).toBe(256);
    pool.releaseRegion(r);
    expect(pool.stats().regionsInUse).toBe(0);
  });

  test("close() reports regions still in use; a closed pool refuses use", () => {
    const pool = new MemoryPool(provider, { ...small, debug: true });
    const kept = pool.getRegion(300);
    pool.getRegion(2 << 20);
    const report = pool.close();
    expect(report.count).toBe(2);
    expect(report.bytes).toBe(4096 + (2 << 20));
    expect(report.regions.map((r) => r.kind).sort()).toEqual(["medium", "temporary"]);
    expect(report.regions[0]!.origin).toContain("pool.test.ts");
    expect(pool.close().count).toBe(0); // idempotent
    expect(() => pool.getRegion(10)).toThrow(AllocToolsError);
    expect(() => pool.releaseRegion(kept)).toThrow(/closed/);
    expect(() => pool.registerUserRegion(new ArrayBuffer(8))).toThrow(AllocToolsError);
    expect(kept.view.length).toBe(0);
  });

  test("bad sizes: RangeError or TypeError, and the pool is intact", () => {
    using pool = new MemoryPool(provider, small);
    const before = pool.stats();
    for (const bad of [0, -1, NaN, 1.5, -Infinity, Infinity, 2 ** 53]) expect(() => pool.getRegion(bad)).toThrow(RangeError);
    for (const bad of ["10", 10n, null, undefined, {}]) expect(() => pool.getRegion(bad as unknown as number)).toThrow(TypeError);
    expect(pool.stats()).toEqual(before);
  });

  test("double release and foreign regions are errors; no region is handed out twice afterwards", () => {
    using pool = new MemoryPool(provider, small);
    using other = new MemoryPool(provider, small);
    const r = pool.getRegion(10);
    pool.releaseRegion(r);
    expect(() => pool.releaseRegion(r)).toThrow(AllocToolsError);
    try { pool.releaseRegion(r); } catch (e) { expect((e as AllocToolsError).code).toBe("DOUBLE_RELEASE"); }
    const foreign = other.getRegion(10);
    try { pool.releaseRegion(foreign); } catch (e) { expect((e as AllocToolsError).code).toBe("FOREIGN_REGION"); }
    other.releaseRegion(foreign);
    const out = new Set<MemoryRegion>();
    for (let i = 0; i < 20; i++) {
      const g = pool.getRegion(10);
      expect(out.has(g)).toBe(false);
      out.add(g);
    }
    for (const g of out) pool.releaseRegion(g);
    expect(pool.stats().regionsInUse).toBe(0);
  });

  test("pools are independent (no singleton): each has its own regions and registrations", () => {
    using a = new MemoryPool(provider, small);
    using b = new MemoryPool(provider, small);
    const ra = a.getRegion(10);
    const rb = b.getRegion(10);
    expect(ra.address).not.toBe(rb.address);
    expect(registrationKey(ra)).not.toBe(registrationKey(rb));
    a.releaseRegion(ra);
    b.releaseRegion(rb);
  });

  test("using: a temporary region disposes back to its pool", () => {
    using pool = new MemoryPool(provider, small);
    {
      using t = pool.getRegion(3 << 20) as MemoryRegionImpl;
      expect(t.isTemp).toBe(true);
    }
    expect(pool.stats().liveTemporaryRegions).toBe(0);
  });

  test("messageLength is settable up to size", () => {
    using pool = new MemoryPool(provider, small);
    const r = pool.getRegion(10);
    r.messageLength = 256;
    expect(r.messageLength).toBe(256);
    expect(() => { r.messageLength = 257; }).toThrow(RangeError);
    expect(() => { r.messageLength = -1; }).toThrow(RangeError);
    pool.releaseRegion(r);
  });

  test("a closed provider is refused", () => {
    const p = c.open();
    p.close();
    p.close(); // idempotent
    expect(() => new MemoryPool(p)).toThrow(AllocToolsError);
  });

  if (c.needsFabric) {
    test("a requested key of 2**60 + 5 round-trips exactly", () => {
      const p = c.open({ firstKey: 2n ** 60n + 5n }) as LibfabricProvider;
      try {
        if (p.providerKeys) return; // the provider picks keys itself
        using pool = new MemoryPool(p, { ...small, small: { chunkSize: 256, initialCount: 1 } });
        const r = pool.getRegion(1);
        expect(r.remoteKey).toBe(2n ** 60n + 5n);
        pool.releaseRegion(r);
      } finally {
        p.close();
      }
    });
  }
});
