// Descriptors as strings: RemoteRegion.toString()/parse() for both versions (UCX key blobs from a
// real UCX context included), endpoint.nameString and insert(string) for every endpoint kind, and
// garbage strings refused with typed errors that say why, leaving the endpoint as it was.
import { expect, test } from "bun:test";
import fc from "fast-check";
import {
  AllocToolsTypeError, Endpoint, LibfabricProvider, MemoryPool, RemoteRegion, RemoteRegionFormatError, UcxEndpoint, UcxProvider,
} from "../../lib/index.ts";
import { peerNameBytes, peerNameString, type PeerNameKind } from "../../lib/engine/peer-name.ts";
import { describeFabric, describeUcx } from "../helpers.ts";

const U64_MAX = (1n << 64n) - 1n;
/** Every character unreserved in a URL (RFC 3986): what passes through argv, env, files and URLs as it is. */
const URL_SAFE = /^[A-Za-z0-9._~-]+$/;

test("RemoteRegion: toString() is rr. + base64url of toBytes(), URL-safe, and parse() gives the region back, both versions", () => {
  fc.assert(fc.property(
    fc.bigInt({ min: 0n, max: U64_MAX - (1n << 32n) }), fc.bigInt({ min: 0n, max: U64_MAX }), fc.nat({ max: 2 ** 32 }),
    fc.option(fc.uint8Array({ minLength: 1, maxLength: 600 })),
    (address, key, length, keyBlob) => {
      const region = new RemoteRegion(address, key, length, keyBlob);
      const text = region.toString();
      expect(text).toMatch(URL_SAFE);
      expect(text).toStartWith("rr.");
      expect(Buffer.from(text.slice(3), "base64url")).toEqual(Buffer.from(region.toBytes()));
      expect(`${region}`).toBe(text);
      const back = RemoteRegion.parse(text);
      expect(back.equals(region)).toBe(true);
      expect(back.version).toBe(keyBlob === null ? 1 : 2);
    }));
  const largest = new RemoteRegion(1n, 0n, 1, new Uint8Array(RemoteRegion.MAX_KEY_BLOB).fill(0xff));
  expect(RemoteRegion.parse(largest.toString()).equals(largest)).toBe(true);
  expect(new RemoteRegion(0n, 0n, 0).toString()).toHaveLength(3 + 43); // 32 bytes: 43 base64url characters
});

test("RemoteRegion.parse: any string is either a canonical region string or a RemoteRegionFormatError, never another error", () => {
  fc.assert(fc.property(fc.oneof(fc.string(), fc.string().map((s) => `rr.${s}`), fc.base64String().map((s) => `rr.${s}`)), (text) => {
    let region: RemoteRegion | undefined;
    try {
      region = RemoteRegion.parse(text);
    } catch (e) {
      expect(e).toBeInstanceOf(RemoteRegionFormatError);
      return;
    }
    expect(region.toString()).toBe(text);
  }));
});

test("RemoteRegion.parse: garbage strings are RemoteRegionFormatErrors that say why", () => {
  const good = new RemoteRegion(4096n, 77n, 100).toString();
  const goodBlob = new RemoteRegion(4096n, 0n, 100, new Uint8Array([1, 2, 3])).toBytes();
  const withBytes = (mutate: (bytes: Uint8Array) => void, bytes = RemoteRegion.parse(good).toBytes()) => {
    mutate(bytes);
    return `rr.${Buffer.from(bytes).toString("base64url")}`;
  };
  const cases: [unknown, RegExp][] = [
    ["", /no "rr\." prefix/],
    ["rr", /no "rr\." prefix/],
    ["rr.", /nothing after the prefix/],
    [`fi.${good.slice(3)}`, /prefix is "fi", not "rr"/],
    [` ${good}`, /prefix is " rr"/],
    [`${good} `, /outside base64url/],
    [`${good}==`, /outside base64url/],
    [good.replace(/.$/, "!"), /outside base64url/],
    [`${good}AA`, /length no byte string encodes to/],
    [`${good}A`, /32 bytes, got 33/],
    [good.replace(/.$/, good.endsWith("A") ? "B" : "A"), /canonical/], // the last character's unused bits set
    [good.slice(0, -4), /truncated/],
    [withBytes((b) => (b[0] = 0x42)), /bad magic/],
    [withBytes((b) => (b[4] = 9)), /unsupported RemoteRegion version 9/],
    [withBytes((b) => (b[5] = 1)), /reserved bytes/],
    [withBytes((b) => new DataView(b.buffer).setUint32(32, 4, true), goodBlob.slice()), /3-byte key blob|4-byte key blob/],
    [withBytes((b) => new DataView(b.buffer).setUint32(32, 0, true), goodBlob.slice()), /key blob length 0/],
    [`rr.${"A".repeat(1 << 20)}`, /longer than/],
    [42, /takes a string, got number/],
    [null, /takes a string, got object/],
    [new RemoteRegion(1n, 1n, 1).toBytes(), /takes a string, got object/],
  ];
  for (const [text, message] of cases) {
    let error: unknown;
    try { RemoteRegion.parse(text as string); } catch (e) { error = e; }
    expect(error, String(text).slice(0, 40)).toBeInstanceOf(RemoteRegionFormatError);
    expect((error as RemoteRegionFormatError).code).toBe("REMOTE_REGION_FORMAT");
    expect((error as Error).message, String(text).slice(0, 40)).toMatch(message);
  }
});

test("peer names: every kind round-trips as <prefix>.<base64url>, and another kind's name is refused by its prefix", () => {
  const prefixes: Record<PeerNameKind, string> = { libfabric: "fi", ucx: "ucx", mpi: "mpi" };
  fc.assert(fc.property(fc.constantFrom<PeerNameKind>("libfabric", "ucx", "mpi"), fc.uint8Array({ minLength: 1, maxLength: 700 }), (kind, bytes) => {
    const text = peerNameString(kind, bytes);
    expect(text).toMatch(URL_SAFE);
    expect(text).toStartWith(`${prefixes[kind]}.`);
    expect(peerNameBytes(kind, text)).toEqual(bytes);
    for (const other of ["libfabric", "ucx", "mpi"] as const) {
      if (other !== kind) expect(() => peerNameBytes(other, text)).toThrow(AllocToolsTypeError);
    }
  }));
  expect(() => peerNameBytes("libfabric", peerNameString("ucx", new Uint8Array([1])))).toThrow(/it is a UcxEndpoint's worker address \("ucx\."\)/);
  expect(() => peerNameBytes("mpi", "mpi.")).toThrow(/nothing after the prefix/);
  expect(() => peerNameBytes("ucx", "hello")).toThrow(/insert takes a UcxEndpoint's worker address as bytes or as its nameString/);
});

describeFabric("libfabric Endpoint names as strings", () => {
  for (const provider of ["tcp", "shm"] as const) {
    test(`${provider}: nameString is fi. + base64url of name; a write through a peer inserted by its string lands; garbage is refused and changes nothing`, async () => {
      const fabric = provider === "tcp" ? LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" }) : LibfabricProvider.open({ provider: "shm" });
      const pool = new MemoryPool(fabric);
      const initiator = new Endpoint(fabric, { timeoutMs: 5000 });
      const target = new Endpoint(fabric, { timeoutMs: 5000 });
      try {
        expect(target.nameString).toMatch(/^fi\.[A-Za-z0-9_-]+$/);
        expect(Buffer.from(target.nameString.slice(3), "base64url")).toEqual(Buffer.from(target.name));
        expect(() => initiator.insert("fi.!!")).toThrow(AllocToolsTypeError);
        expect(() => initiator.insert(`ucx.${target.nameString.slice(3)}`)).toThrow(/UcxEndpoint's worker address/);
        expect(initiator.stats().posted).toBe(0);
        const peer = initiator.insert(target.nameString);
        const inbox = pool.getRegion(64);
        inbox.view.fill(0);
        const remote = RemoteRegion.parse(inbox.remote().subregion(0, 64).toString());
        const outbox = pool.getRegion(64);
        outbox.view.set(new TextEncoder().encode(`through ${provider} by string`));
        target.startProgress(0);
        await initiator.write(outbox, 64, peer, remote);
        target.stopProgress();
        expect(new TextDecoder().decode(inbox.view.subarray(0, 64)).replace(/\0+$/, "")).toBe(`through ${provider} by string`);
        pool.releaseRegion(inbox);
        pool.releaseRegion(outbox);
      } finally {
        initiator.close();
        target.close();
        pool.close();
        fabric.close();
      }
    });
  }
});

describeUcx("UcxEndpoint names and version 2 regions as strings", () => {
  test("nameString is ucx. + base64url of the worker address; a write through a peer inserted by its string into a region whose packed rkey crossed as a string lands", async () => {
    const provider = UcxProvider.open({ transports: "tcp" });
    const pool = new MemoryPool(provider);
    const initiator = new UcxEndpoint(provider, { timeoutMs: 5000 });
    const target = new UcxEndpoint(provider, { timeoutMs: 5000 });
    try {
      expect(target.nameString).toMatch(/^ucx\.[A-Za-z0-9_-]+$/);
      expect(Buffer.from(target.nameString.slice(4), "base64url")).toEqual(Buffer.from(target.name));
      expect(() => initiator.insert(`fi.${target.nameString.slice(4)}`)).toThrow(/a libfabric Endpoint's name/);
      const peer = initiator.insert(target.nameString);
      const inbox = pool.getRegion(64);
      inbox.view.fill(0);
      const text = inbox.remote().subregion(0, 64).toString();
      const remote = RemoteRegion.parse(text);
      expect(remote.version).toBe(2);
      expect(remote.keyBlob!.length).toBeGreaterThan(0);
      expect(text).toMatch(URL_SAFE);
      const outbox = pool.getRegion(64);
      outbox.view.set(new TextEncoder().encode("through UCX by string"));
      target.startProgress(0);
      await initiator.write(outbox, 64, peer, remote);
      target.stopProgress();
      expect(new TextDecoder().decode(inbox.view.subarray(0, 64)).replace(/\0+$/, "")).toBe("through UCX by string");
      pool.releaseRegion(inbox);
      pool.releaseRegion(outbox);
    } finally {
      initiator.close();
      target.close();
      pool.close();
      provider.close();
    }
  });
});
