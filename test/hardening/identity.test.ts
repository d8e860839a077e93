// Issue 10 #3 and #11, issue 13 item 4: regions are accepted by identity only, and nobody but the
// library changes them. A Proxy, a copy or a hand-made object is refused with a typed error and
// leaves the pool as it was; the public fields of a region cannot be written.
import { afterAll, describe, expect, test } from "bun:test";
import * as alloctools from "../../lib/index.ts";
import { AllocToolsError, HostProvider, MemoryPool, MemoryRegionPointer, type MemoryRegion } from "../../lib/index.ts";
import { LocalRange, resolveLocal } from "../../lib/engine/local-memory.ts";

const tiny = {
  small: { chunkSize: 256, initialCount: 4, maxRegions: 4 }, medium: { chunkSize: 4096, initialCount: 1 },
  large: { chunkSize: 65536, initialCount: 1 }, huge: { chunkSize: 1 << 20, initialCount: 1 },
};

function failure(f: () => unknown): unknown {
  try { f(); } catch (e) { return e; }
  return undefined;
}

describe("regions are tamper-proof", () => {
  const host = new HostProvider();
  afterAll(() => host.close());

  test("size, address, view, keys, owner and inUse cannot be written or redefined", () => {
    using pool = new MemoryPool(host, tiny);
    const region = pool.getRegion(100);
    const before = { size: region.size, address: region.address, view: region.view, key: region.remoteKey, inUse: (region as { inUse?: boolean }).inUse };
    const writable = region as unknown as Record<string, unknown>;
    for (const [field, value] of [["size", 1e9], ["address", 0], ["view", new Uint8Array(1e6)], ["remoteKey", 0n], ["owner", null], ["inUse", false], ["inFlight", 0], ["length", 1e9]] as const) {
      expect(failure(() => { writable[field] = value; })).toBeInstanceOf(TypeError);
      expect(failure(() => Object.defineProperty(region, field, { value }))).toBeInstanceOf(TypeError);
    }
    expect(Object.isFrozen(region)).toBe(true);
    expect({ size: region.size, address: region.address, view: region.view, key: region.remoteKey, inUse: (region as { inUse?: boolean }).inUse }).toEqual(before);
    expect(failure(() => { region.messageLength = 1e9; })).toBeInstanceOf(RangeError); // the one setter, checked
    pool.releaseRegion(region);
  });

  test("a pointer's region, offset and address cannot be changed", () => {
    using pool = new MemoryPool(host, tiny);
    const region = pool.getRegion(100);
    const pointer = region.pointer(8);
    const writable = pointer as unknown as Record<string, unknown>;
    for (const [field, value] of [["region", null], ["offset", -64], ["address", 0]] as const) {
      expect(failure(() => { writable[field] = value; })).toBeInstanceOf(TypeError);
    }
    expect([pointer.region, pointer.offset, pointer.address]).toEqual([region, 8, region.address + 8]);
    pool.releaseRegion(region);
  });

  test("the package does not export the region class (its constructor and internals)", () => {
    expect("MemoryRegionImpl" in alloctools).toBe(false);
  });
});

describe("releaseRegion accepts regions by identity only", () => {
  const host = new HostProvider();
  afterAll(() => host.close());

  test("a Proxy whose inUse reads true is refused (FOREIGN_REGION); the region is never handed out twice", () => {
    using pool = new MemoryPool(host, tiny);
    const region = pool.getRegion(100);
    pool.releaseRegion(region);
    const proxy = new Proxy(region, { get: (target, key) => (key === "inUse" ? true : Reflect.get(target, key)) });
    const error = failure(() => pool.releaseRegion(proxy));
    expect(error).toBeInstanceOf(AllocToolsError);
    expect((error as AllocToolsError).code).toBe("FOREIGN_REGION");
    const got = [0, 1, 2, 3].map(() => pool.getRegion(100));
    expect(new Set(got).size).toBe(4);
    for (const r of got) pool.releaseRegion(r);
    expect(pool.audit().problems).toEqual([]);
  });

  test("on a full stack, a Proxy or a look-alike gets a typed error and the next gets work (no untyped TypeError)", () => {
    using pool = new MemoryPool(host, tiny);
    const all = [0, 1, 2, 3].map(() => pool.getRegion(10));
    for (const r of all) pool.releaseRegion(r); // the stack is full: every region is on it
    const fakes: unknown[] = [
      new Proxy(all[0]!, { get: (t, k) => (k === "inUse" ? true : Reflect.get(t, k)) }),
      { owner: pool, inUse: true, index: 0, stackId: 0, address: all[0]!.address, size: 256 },
      Object.create(all[1]!),
    ];
    for (const fake of fakes) {
      const error = failure(() => pool.releaseRegion(fake as MemoryRegion));
      expect(error).toBeInstanceOf(AllocToolsError);
      expect((error as AllocToolsError).code).toBe("FOREIGN_REGION");
      expect(failure(() => pool.indexOf(fake as MemoryRegion))).toBeInstanceOf(AllocToolsError);
    }
    for (const bad of [null, undefined, 42, "region"]) expect(failure(() => pool.releaseRegion(bad as unknown as MemoryRegion))).toBeInstanceOf(TypeError);
    const again = [0, 1, 2, 3].map(() => pool.getRegion(10));
    expect(new Set(again).size).toBe(4);
    expect(pool.stats().regionsInUse).toBe(4);
    for (const r of again) pool.releaseRegion(r);
    expect(pool.audit().problems).toEqual([]);
  });

  test("RMA local memory: a pointer over a look-alike region is refused before anything is posted", () => {
    using pool = new MemoryPool(host, tiny);
    const region = pool.getRegion(10);
    const range = new LocalRange();
    resolveLocal("write", region.pointer(8), 8, range);
    expect(range.address).toBe(region.address + 8);
    const forged = new MemoryRegionPointer(new Proxy(region, {}), 8);
    expect(failure(() => resolveLocal("write", forged, 8, range))).toBeInstanceOf(TypeError);
    pool.releaseRegion(region);
  });
});
