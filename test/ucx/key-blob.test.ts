// RemoteRegion version 2: a variable-length key blob (UCX's packed rkey) beside the 32-byte
// version 1 that libfabric regions keep producing. Needs no UCX.
import { expect, test } from "bun:test";
import fc from "fast-check";
import { RemoteRegion, RemoteRegionFormatError } from "../../lib/index.ts";

const U64_MAX = (1n << 64n) - 1n;
const blob = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

test("a region with a key blob writes version 2: the 32-byte header, the blob length, the blob", () => {
  const keyBlob = blob(35);
  const r = new RemoteRegion(0x7f00_1234_5000n, 0n, 4096, keyBlob);
  const b = r.toBytes();
  expect(r.version).toBe(2);
  expect(b.length).toBe(36 + 35);
  expect(r.byteLength).toBe(b.length);
  expect([...b.subarray(0, 8)]).toEqual([0x41, 0x54, 0x52, 0x52, 2, 0, 0, 0]);
  const dv = new DataView(b.buffer);
  expect(dv.getBigUint64(8, true)).toBe(0x7f00_1234_5000n);
  expect(dv.getBigUint64(24, true)).toBe(4096n);
  expect(dv.getUint32(32, true)).toBe(35);
  expect([...b.subarray(36)]).toEqual([...keyBlob]);
});

test("a region without a blob still writes the 32-byte version 1 (what libfabric regions produce)", () => {
  const r = new RemoteRegion(4096n, 77n, 100);
  expect(r.version).toBe(1);
  expect(r.keyBlob).toBeNull();
  expect(r.toBytes().length).toBe(RemoteRegion.BYTES);
  expect(r.toBytes()[4]).toBe(1);
  expect(JSON.parse(JSON.stringify(r))).toEqual({ address: "4096", key: "77", length: 100 });
});

test("both versions round-trip through bytes and JSON, blobs of 1 to MAX_KEY_BLOB bytes", () => {
  fc.assert(fc.property(
    fc.bigInt({ min: 0n, max: U64_MAX - (1n << 32n) }), fc.bigInt({ min: 0n, max: U64_MAX }), fc.nat({ max: 2 ** 32 }),
    fc.option(fc.uint8Array({ minLength: 1, maxLength: 600 })),
    (address, key, length, keyBlob) => {
      const r = new RemoteRegion(address, key, length, keyBlob);
      const back = RemoteRegion.fromBytes(r.toBytes());
      expect(back.equals(r)).toBe(true);
      expect(back.version).toBe(keyBlob === null ? 1 : 2);
      expect(RemoteRegion.fromJSON(JSON.stringify(r)).equals(r)).toBe(true);
      expect(RemoteRegion.fromJSON(JSON.parse(JSON.stringify(r))).equals(r)).toBe(true);
    }));
  const largest = new RemoteRegion(1n, 0n, 1, blob(RemoteRegion.MAX_KEY_BLOB));
  expect(RemoteRegion.fromBytes(largest.toBytes()).equals(largest)).toBe(true);
});

test("fromBytes copies the blob; sub-regions share it (endpoints cache unpacked keys by it)", () => {
  const keyBlob = blob(10);
  const r = new RemoteRegion(1000n, 0n, 100, keyBlob);
  const bytes = r.toBytes();
  const back = RemoteRegion.fromBytes(bytes);
  bytes[40] = bytes[40]! ^ 0xff;
  expect(back.equals(r)).toBe(true);
  const sub = back.subregion(10, 20);
  expect(sub.keyBlob).toBe(back.keyBlob);
  expect([sub.address, sub.length, sub.version]).toEqual([1010n, 20, 2]);
  expect(Bun.inspect(sub)).toContain("key blob of 10 bytes"); // the log line; String(sub) is the text form
  expect(RemoteRegion.parse(String(sub)).equals(sub)).toBe(true);
  expect(r.equals(new RemoteRegion(1000n, 0n, 100, blob(10, 2)))).toBe(false);
  expect(r.equals(new RemoteRegion(1000n, 0n, 100))).toBe(false);
});

test("truncated, extended or altered version 2 bytes are refused with RemoteRegionFormatError, each saying why", () => {
  const good = new RemoteRegion(4096n, 0n, 100, blob(23)).toBytes();
  for (let n = 0; n < good.length; n++) {
    expect(() => RemoteRegion.fromBytes(good.slice(0, n))).toThrow(RemoteRegionFormatError);
    if (n > 5) expect(() => RemoteRegion.fromBytes(good.slice(0, n))).toThrow(/truncated/);
  }
  expect(() => RemoteRegion.fromBytes(new Uint8Array([...good, 0]))).toThrow(/59 bytes, got 60/);
  const alter = (at: number, value: number) => { const b = good.slice(); new DataView(b.buffer).setUint32(at, value, true); return b; };
  expect(() => RemoteRegion.fromBytes(alter(32, 0))).toThrow(/key blob length 0/);
  expect(() => RemoteRegion.fromBytes(alter(32, RemoteRegion.MAX_KEY_BLOB + 1))).toThrow(/outside 1 to 4096/);
  expect(() => RemoteRegion.fromBytes(alter(32, 0xffff_ffff))).toThrow(RemoteRegionFormatError);
  expect(() => RemoteRegion.fromBytes(alter(32, 24))).toThrow(/truncated/);
  const reserved = good.slice();
  reserved[6] = 1;
  expect(() => RemoteRegion.fromBytes(reserved)).toThrow(/reserved/);
  const version3 = good.slice();
  version3[4] = 3;
  expect(() => RemoteRegion.fromBytes(version3)).toThrow(/version 3/);
});

test("bad key blobs in JSON and in the constructor are refused", () => {
  const base = { address: "1", key: "0", length: 1 };
  for (const keyBlob of ["", "abc", "zz", "ABCD", 12, null, "00".repeat(RemoteRegion.MAX_KEY_BLOB + 1)]) {
    expect(() => RemoteRegion.fromJSON({ ...base, keyBlob })).toThrow(RemoteRegionFormatError);
  }
  expect(RemoteRegion.fromJSON({ ...base, keyBlob: "0a0b" }).keyBlob).toEqual(new Uint8Array([10, 11]));
  expect(() => new RemoteRegion(1n, 0n, 1, new Uint8Array(0))).toThrow(RangeError);
  expect(() => new RemoteRegion(1n, 0n, 1, new Uint8Array(RemoteRegion.MAX_KEY_BLOB + 1))).toThrow(RangeError);
  expect(() => new RemoteRegion(1n, 0n, 1, [1, 2] as unknown as Uint8Array)).toThrow(TypeError);
});
