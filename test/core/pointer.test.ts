import { expect, test, describe, afterAll } from "bun:test";
import { HostProvider, MemoryPool, MemoryRegionAllocator, MemoryRegionPointer } from "../../lib/index.ts";

const provider = new HostProvider();
const pool = new MemoryPool(provider, { small: { chunkSize: 256, initialCount: 8 }, medium: { chunkSize: 4096, initialCount: 1 },
  large: { chunkSize: 65536, initialCount: 0 }, huge: { chunkSize: 1 << 20, initialCount: 0 } });
afterAll(() => { pool.close(); provider.close(); });

describe("MemoryRegionPointer", () => {
  test("Symbol.toPrimitive: number for number/default, 0x-hex for string", () => {
    const r = pool.getRegion(100);
    const p = r.pointer(16);
    expect(+p).toBe(r.address + 16);
    expect((p as unknown as number) + 0).toBe(r.address + 16);
    expect(`${p}`).toBe(`0x${(r.address + 16).toString(16)}`);
    expect(String(p)).toBe(`0x${(r.address + 16).toString(16)}`);
    pool.releaseRegion(r);
  });

  test("add() moves within the region, to one past the end, and refuses to leave it", () => {
    const r = pool.getRegion(100);
    const p = r.pointer();
    expect(p.add(10).offset).toBe(10);
    expect(p.add(10).add(-10).equals(p)).toBe(true);
    expect(p.add(256).offset).toBe(256);
    expect(() => p.add(257)).toThrow(RangeError);
    expect(() => p.add(-1)).toThrow(RangeError);
    expect(() => p.add(1.5)).toThrow(RangeError);
    expect(() => p.add(NaN)).toThrow(RangeError);
    pool.releaseRegion(r);
  });

  test("keys, remote address at the pointer, views bounded by the region", () => {
    const r = pool.getRegion(100);
    const p = r.pointer(40);
    expect(p.region).toBe(r);
    expect(p.localKey).toBe(r.localKey);
    expect(p.remoteKey).toBe(r.remoteKey);
    expect(p.remoteAddress).toBe(r.remoteAddress + 40n);
    const v = p.view(16);
    v[0] = 5;
    expect(r.view[40]).toBe(5);
    expect(p.view().length).toBe(256 - 40);
    expect(() => p.view(217)).toThrow(RangeError);
    expect(r.pointer(0)).toBe(r.pointer()); // the base pointer is made once
    pool.releaseRegion(r);
  });

  test("the null pointer", () => {
    const n = MemoryRegionPointer.NULL;
    expect(n.isNull).toBe(true);
    expect(+n).toBe(0);
    expect(() => n.add(1)).toThrow(TypeError);
    expect(() => n.remoteKey).toThrow(TypeError);
    expect(n.equals(MemoryRegionPointer.NULL)).toBe(true);
  });
});

describe("MemoryRegionAllocator", () => {
  test("allocate(n) counts elements, not bytes", () => {
    const a = new MemoryRegionAllocator(pool, Float64Array);
    const p = a.allocate(100); // 800 bytes: more than the 256-byte small class
    expect(p.region!.size).toBeGreaterThanOrEqual(800);
    expect(p.region!.size).toBe(4096);
    a.deallocate(p);
    const bytes = new MemoryRegionAllocator(pool);
    const q = bytes.allocate(100);
    expect(q.region!.size).toBe(256);
    bytes.deallocate(q);
  });

  test("deallocate takes back what allocate gave; double deallocate is an error", () => {
    const a = new MemoryRegionAllocator(pool, Uint32Array);
    const p = a.allocate(4);
    a.deallocate(p);
    expect(() => a.deallocate(p)).toThrow(/not in use/);
    expect(() => a.deallocate(MemoryRegionPointer.NULL)).toThrow(TypeError);
  });

  test("allocateArray gives a typed array over registered memory, and deallocateArray gives it back", () => {
    const before = pool.stats().regionsInUse;
    const a = new MemoryRegionAllocator(pool, Int32Array);
    const arr = a.allocateArray(10);
    expect(arr).toBeInstanceOf(Int32Array);
    expect(arr.length).toBe(10);
    arr[3] = -7;
    const region = a.regionOf(arr)!;
    expect(new Int32Array(region.view.buffer, region.view.byteOffset, 10)[3]).toBe(-7);
    expect(pool.stats().regionsInUse).toBe(before + 1);
    a.deallocateArray(arr);
    expect(pool.stats().regionsInUse).toBe(before);
    expect(() => a.deallocateArray(arr)).toThrow(TypeError);
  });
});
