// Issue 10 #4: user memory is held for as long as it is registered. A resizable ArrayBuffer is
// refused (it could shrink under the registration); a growable SharedArrayBuffer registers at its
// length then; a buffer transferred away while registered makes the region fail its next use with
// AllocToolsError DETACHED (RMA, pointer views, remote(), release, which still deregisters); the
// region's view is exactly what was registered.
import { afterAll, describe, expect, test } from "bun:test";
import { AllocToolsError, HostProvider, MemoryPool, type MemoryRegion } from "../../lib/index.ts";
import { LocalRange, resolveLocal } from "../../lib/engine/local-memory.ts";

const tiny = {
  small: { chunkSize: 256, initialCount: 1 }, medium: { chunkSize: 4096, initialCount: 1 },
  large: { chunkSize: 65536, initialCount: 1 }, huge: { chunkSize: 1 << 20, initialCount: 1 },
};

function codeOf(f: () => unknown): string | undefined {
  try { f(); } catch (e) { return e instanceof AllocToolsError ? e.code : (e as Error).name; }
  return undefined;
}

describe("registerUserRegion and the memory it holds", () => {
  const host = new HostProvider();
  afterAll(() => host.close());

  test("a resizable ArrayBuffer (or a view of one) is refused with a TypeError that says what to do; nothing is registered", () => {
    using pool = new MemoryPool(host, tiny);
    const before = pool.stats();
    const resizable = new ArrayBuffer(4096, { maxByteLength: 1 << 20 });
    for (const memory of [resizable, new Uint8Array(resizable), new DataView(resizable, 16, 64)]) {
      expect(() => pool.registerUserRegion(memory)).toThrow(/resizable ArrayBuffer.*transferToFixedLength/);
      expect(codeOf(() => pool.registerUserRegion(memory))).toBe("TypeError");
    }
    expect(pool.stats().registrations).toBe(before.registrations);
    expect(pool.stats().pinnedBytes).toBe(before.pinnedBytes);
    const fixed = pool.registerUserRegion(resizable.transferToFixedLength()); // what the message suggests
    expect(fixed.size).toBe(4096);
    pool.releaseRegion(fixed);
  });

  test("a growable SharedArrayBuffer registers at its length now; its region and view stay that length as it grows", () => {
    using pool = new MemoryPool(host, tiny);
    const sab = new SharedArrayBuffer(4096, { maxByteLength: 65536 });
    const region = pool.registerUserRegion(sab);
    sab.grow(65536);
    expect(region.size).toBe(4096);
    expect(region.view.byteLength).toBe(4096);
    expect(region.pointer(0).view().byteLength).toBe(4096);
    pool.releaseRegion(region);
  });

  test("the region's view is exactly the registered bytes of a view into a larger buffer", () => {
    using pool = new MemoryPool(host, tiny);
    const buffer = new ArrayBuffer(1024);
    const region = pool.registerUserRegion(new Uint8Array(buffer, 100, 300));
    expect(region.size).toBe(300);
    expect(region.view.byteLength).toBe(300);
    expect(region.view.byteOffset).toBe(100);
    pool.releaseRegion(region);
  });

  test("a buffer transferred away while registered: RMA, views, remote() and release fail with DETACHED; release still deregisters", () => {
    using pool = new MemoryPool(host, tiny);
    const buffer = new ArrayBuffer(8192);
    const region: MemoryRegion = pool.registerUserRegion(new Uint8Array(buffer));
    const registrations = host.registrations;
    const moved = buffer.transfer(); // the memory may now be freed and reused at any time
    expect(buffer.detached).toBe(true);
    expect(codeOf(() => resolveLocal("write", region, 8, new LocalRange()))).toBe("DETACHED");
    expect(codeOf(() => resolveLocal("read", region.pointer(16), 8, new LocalRange()))).toBe("DETACHED");
    expect(codeOf(() => region.pointer(0).view(8))).toBe("DETACHED");
    expect(codeOf(() => region.pointer(0).remote(8))).toBe("DETACHED");
    expect(codeOf(() => region.remote())).toBe("DETACHED");
    expect(codeOf(() => pool.releaseRegion(region))).toBe("DETACHED");
    expect(host.registrations).toBe(registrations - 1); // deregistered all the same
    expect(pool.stats().liveUserRegions).toBe(0);
    expect(codeOf(() => pool.releaseRegion(region))).toBe("DOUBLE_RELEASE");
    expect(moved.byteLength).toBe(8192);
  });

  test("a buffer moved by structuredClone's transfer list is caught the same way", () => {
    using pool = new MemoryPool(host, tiny);
    const buffer = new ArrayBuffer(4096);
    const region = pool.registerUserRegion(buffer);
    structuredClone(buffer, { transfer: [buffer] });
    expect(codeOf(() => resolveLocal("write", region, 1, new LocalRange()))).toBe("DETACHED");
    expect(codeOf(() => pool.releaseRegion(region))).toBe("DETACHED");
  });

  test("a detached buffer is refused at registration with DETACHED", () => {
    using pool = new MemoryPool(host, tiny);
    const buffer = new ArrayBuffer(64);
    buffer.transfer();
    expect(codeOf(() => pool.registerUserRegion(buffer))).toBe("DETACHED");
  });
});
