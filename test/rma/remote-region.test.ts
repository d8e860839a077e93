// RemoteRegion: the fixed binary layout, JSON with decimal bigints, bounds of sub-regions, and
// clear errors for anything that is not a RemoteRegion. Needs no libfabric.
import { expect, test } from "bun:test";
import fc from "fast-check";
import { RemoteRegion, RemoteRegionFormatError } from "../../lib/index.ts";

const U64_MAX = (1n << 64n) - 1n;

test("toBytes is the documented 32-byte little-endian layout", () => {
  const r = new RemoteRegion(0x0102030405060708n, (1n << 60n) + 5n, 4097);
  const b = r.toBytes();
  expect(b.length).toBe(RemoteRegion.BYTES);
  expect([...b.subarray(0, 8)]).toEqual([0x41, 0x54, 0x52, 0x52, 1, 0, 0, 0]); // "ATRR", version 1, reserved
  expect([...b.subarray(8, 16)]).toEqual([8, 7, 6, 5, 4, 3, 2, 1]);
  const dv = new DataView(b.buffer);
  expect(dv.getBigUint64(16, true)).toBe((1n << 60n) + 5n);
  expect(dv.getBigUint64(24, true)).toBe(4097n);
});

test("bytes and JSON round-trip every u64 address and key exactly", () => {
  fc.assert(fc.property(
    fc.bigInt({ min: 0n, max: U64_MAX - (1n << 32n) }), fc.bigInt({ min: 0n, max: U64_MAX }), fc.nat({ max: 2 ** 32 }),
    (address, key, length) => {
      const r = new RemoteRegion(address, key, length);
      expect(RemoteRegion.fromBytes(r.toBytes()).equals(r)).toBe(true);
      const json = JSON.stringify(r);
      expect(RemoteRegion.fromJSON(JSON.parse(json)).equals(r)).toBe(true);
      expect(RemoteRegion.fromJSON(json).equals(r)).toBe(true);
    }));
});

test("JSON carries bigints as decimal strings", () => {
  const r = new RemoteRegion(U64_MAX - 10n, U64_MAX, 10);
  expect(JSON.parse(JSON.stringify(r))).toEqual({ address: "18446744073709551605", key: "18446744073709551615", length: 10 });
});

test("random bytes are refused with a clear error, never misread", () => {
  fc.assert(fc.property(fc.uint8Array({ minLength: 0, maxLength: 64 }), (bytes) => {
    expect(() => RemoteRegion.fromBytes(bytes)).toThrow(RemoteRegionFormatError);
  }));
});

test("truncated, extended or altered bytes are refused, each saying why", () => {
  const good = new RemoteRegion(4096n, 77n, 100).toBytes();
  for (let n = 0; n < good.length; n++) expect(() => RemoteRegion.fromBytes(good.slice(0, n))).toThrow(/truncated/);
  expect(() => RemoteRegion.fromBytes(new Uint8Array([...good, 0]))).toThrow(/32 bytes, got 33/);
  const alter = (i: number, v: number) => { const b = good.slice(); b[i] = v; return b; };
  expect(() => RemoteRegion.fromBytes(alter(0, 0x42))).toThrow(/magic/);
  expect(() => RemoteRegion.fromBytes(alter(4, 2))).toThrow(/version 2/);
  expect(() => RemoteRegion.fromBytes(alter(6, 1))).toThrow(/reserved/);
  expect(() => RemoteRegion.fromBytes(alter(31, 1))).toThrow(/above 2\^53/); // length
  const wrap = new RemoteRegion(U64_MAX, 1n, 0).toBytes();
  new DataView(wrap.buffer).setBigUint64(24, 2n, true); // address + length passes 2^64
  expect(() => RemoteRegion.fromBytes(wrap)).toThrow(RemoteRegionFormatError);
  expect(() => RemoteRegion.fromBytes("x" as unknown as Uint8Array)).toThrow(RemoteRegionFormatError);
});

test("bad JSON is refused, each saying why", () => {
  const bad: unknown[] = [null, 5, "not json", {}, { address: 1, key: "1", length: 1 }, { address: "01", key: "1", length: 1 },
    { address: "1", key: "-1", length: 1 }, { address: "1", key: "18446744073709551616", length: 1 },
    { address: "1", key: "1", length: -1 }, { address: "1", key: "1", length: "1" }, { address: "1", key: "1", length: 1.5 }];
  for (const v of bad) expect(() => RemoteRegion.fromJSON(v)).toThrow(RemoteRegionFormatError);
});

test("constructor and sub-regions keep inside the bounds", () => {
  expect(() => new RemoteRegion(-1n, 0n, 1)).toThrow(RangeError);
  expect(() => new RemoteRegion(0n, 1n << 64n, 1)).toThrow(RangeError);
  expect(() => new RemoteRegion(0n, 0n, -1)).toThrow(RangeError);
  expect(() => new RemoteRegion(U64_MAX, 0n, 2)).toThrow(RangeError);
  const r = new RemoteRegion(1000n, 9n, 100);
  const s = r.subregion(10, 20);
  expect([s.address, s.key, s.length]).toEqual([1010n, 9n, 20]);
  expect(r.subregion(100).length).toBe(0);
  expect(r.subregion(40).length).toBe(60);
  expect(() => r.subregion(101)).toThrow(RangeError);
  expect(() => r.subregion(90, 11)).toThrow(RangeError);
  expect(() => r.subregion(-1, 1)).toThrow(RangeError);
  expect(() => s.subregion(0, 21)).toThrow(RangeError); // a sub-region cannot grow back
  expect(r.contains(0, 100)).toBe(true);
  expect(r.contains(1, 100)).toBe(false);
  expect(Bun.inspect(r)).toContain("100 bytes"); // the log line; String(r) is the text form (RemoteRegion.parse)
  expect(RemoteRegion.parse(String(r)).equals(r)).toBe(true);
});
