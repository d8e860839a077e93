// Remote atomics over UCX between endpoints (workers) of this process, on tcp and on shared memory
// with UCX-allocated blocks (one-sided CPU atomics) and with our own (emulated by the target):
// fetchAdd and compareSwap in the three forms with exact unsigned 64-bit values, wrap-around and
// negative operands; a compareSwap lock; refusals before anything is posted; NOT_SUPPORTED without
// UCP_FEATURE_AMO64; no allocation per fetchAddSync beyond the bigint it returns.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { fullGC, heapStats } from "bun:jsc";
import { MemoryPool, RemoteRegion, UcxEndpoint, UcxProvider, type MemoryRegion } from "../../lib/index.ts";
import { describeUcx } from "../helpers.ts";

const CASES = [
  { label: "tcp", transports: "tcp", netDevices: "lo" },
  { label: "shm, UCX-allocated blocks", transports: "posix,cma", allocateBlocks: true },
  { label: "shm, own blocks", transports: "sysv,cma", allocateBlocks: false },
] as const;

const POOL = { small: { chunkSize: 4096, initialCount: 4 } } as const;
const MAX = (1n << 64n) - 1n;

async function failure(f: () => unknown): Promise<Error & { code?: string }> {
  try {
    await f();
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error("expected a failure");
}

for (const c of CASES) {
  describeUcx(`UCX remote atomics in one process [${c.label}]`, () => {
    let provider: UcxProvider;
    let pool: MemoryPool;
    let a: UcxEndpoint;
    let b: UcxEndpoint;
    let toB: number;
    let target: MemoryRegion;
    let words: BigUint64Array;
    let remote: RemoteRegion;

    beforeAll(() => {
      provider = UcxProvider.open({ transports: c.transports, ...("netDevices" in c ? { netDevices: c.netDevices } : {}), ...("allocateBlocks" in c ? { allocateBlocks: c.allocateBlocks } : {}) });
      pool = new MemoryPool(provider, POOL);
      a = new UcxEndpoint(provider, { timeoutMs: 10_000 });
      b = new UcxEndpoint(provider, { timeoutMs: 10_000 });
      toB = a.insert(b.name);
      b.insert(a.name);
      target = pool.getRegion(4096);
      words = new BigUint64Array(target.view.buffer, target.view.byteOffset, 512);
      remote = RemoteRegion.fromBytes(target.remote().toBytes());
    });
    afterAll(() => {
      a?.close();
      b?.close();
      pool.releaseRegion(target);
      expect(pool.close().count).toBe(0);
      provider.close();
    });

    test("fetchAdd in the three forms returns the value before the add, exact to 64 bits; the word wraps; a negative value subtracts", async () => {
      words[0] = 10n;
      expect(await a.fetchAdd(toB, remote, 5)).toBe(10n);
      expect(a.fetchAddSync(toB, remote, 7n)).toBe(15n);
      const id = a.postFetchAdd(toB, remote, 1);
      let fetched: bigint | null = null;
      while ((fetched = a.fetched(id)) === null) a.poll();
      expect(fetched).toBe(22n);
      expect(words[0]).toBe(23n);
      words[1] = MAX - 1n;
      const high = remote.subregion(8);
      expect(a.fetchAddSync(toB, high, 3)).toBe(MAX - 1n);
      expect(words[1]).toBe(1n); // wrapped modulo 2^64
      expect(a.fetchAddSync(toB, high, -1)).toBe(1n);
      expect(a.fetchAddSync(toB, high, (1n << 63n) + 12345n)).toBe(0n);
      expect(words[1]).toBe((1n << 63n) + 12345n);
      expect(await a.fetchAdd(toB, high, 0)).toBe((1n << 63n) + 12345n);
      expect(() => a.fetched(id)).toThrow(RangeError); // retired
    });

    test("compareSwap in the three forms: the value found; the swap happens exactly when it equals expected", async () => {
      words[2] = 100n;
      const word = remote.subregion(16, 8);
      expect(await a.compareSwap(toB, word, 99, 1)).toBe(100n);
      expect(words[2]).toBe(100n);
      expect(a.compareSwapSync(toB, word, 100, MAX)).toBe(100n);
      expect(words[2]).toBe(MAX);
      const id = a.postCompareSwap(toB, word, MAX, 1n << 62n);
      let found: bigint | null = null;
      while ((found = a.fetched(id)) === null) a.poll();
      expect(found).toBe(MAX);
      expect(words[2]).toBe(1n << 62n);
      expect(words[3]).toBe(0n); // the next word is untouched
    });

    test("a compareSwap lock around a read-modify-write by two endpoints: 2000 acquisitions, no lost update", async () => {
      const c2 = new UcxEndpoint(provider, { timeoutMs: 10_000 });
      try {
        const c2ToB = c2.insert(b.name);
        words[8] = 0n; // the lock
        words[9] = 0n; // the record
        const lock = remote.subregion(64, 8);
        const record = remote.subregion(72, 8);
        const acquire = (ep: UcxEndpoint, peer: number, me: bigint) => { while (ep.compareSwapSync(peer, lock, 0, me) !== 0n); };
        const release = (ep: UcxEndpoint, peer: number, me: bigint) => { expect(ep.compareSwapSync(peer, lock, me, 0)).toBe(me); };
        for (let i = 0; i < 1000; i++) {
          for (const [ep, peer, me] of [[a, toB, 1n], [c2, c2ToB, 2n]] as const) {
            acquire(ep, peer, me);
            // Read the record with a no-op add, write it back plus one with a swap: only the lock keeps this exact.
            const value = ep.fetchAddSync(peer, record, 0);
            expect(ep.compareSwapSync(peer, record, value, value + 1n)).toBe(value);
            release(ep, peer, me);
          }
        }
        expect([words[8], words[9]]).toEqual([0n, 2000n]);
      } finally {
        c2.close();
      }
    });

    test("refusals before posting: misaligned, short, uninserted peer, no key blob, bad values, closed endpoint", async () => {
      const before = words[0];
      const refusals = {
        misaligned: await failure(() => a.fetchAdd(toB, remote.subregion(4), 1)),
        short: await failure(() => a.fetchAddSync(toB, remote.subregion(0, 4), 1)),
        shortCompareSwap: await failure(() => a.postCompareSwap(toB, remote.subregion(4088 + 4), 0, 1)),
        notInserted: await failure(() => a.fetchAdd(99, remote, 1)),
        noKeyBlob: await failure(() => a.fetchAdd(toB, new RemoteRegion(remote.address, 1n, 8), 1)),
        fractional: await failure(() => a.fetchAdd(toB, remote, 1.5)),
        tooBig: await failure(() => a.compareSwap(toB, remote, 1n << 64n, 0)),
        notANumber: await failure(() => a.fetchAdd(toB, remote, "1" as unknown as number)),
      };
      expect(Object.fromEntries(Object.entries(refusals).map(([k, e]) => [k, e.name]))).toEqual({
        misaligned: "RangeError", short: "RangeError", shortCompareSwap: "RangeError", notInserted: "RangeError", noKeyBlob: "TypeError",
        fractional: "RangeError", tooBig: "RangeError", notANumber: "TypeError",
      });
      expect(refusals.misaligned.message).toContain("not a multiple of 8");
      expect(refusals.short.message).toContain("fewer than 8");
      expect(words[0]).toBe(before);
      expect([a.pendingCount, a.inTransportCount]).toEqual([0, 0]);
      const closed = new UcxEndpoint(provider);
      const peer = closed.insert(b.name);
      closed.close();
      expect((await failure(() => closed.fetchAdd(peer, remote, 1))).code).toBe("ENDPOINT_CLOSED");
      expect((await failure(() => closed.compareSwapSync(peer, remote, 0, 1))).code).toBe("ENDPOINT_CLOSED");
    });

    test("fetchAddSync allocates nothing per call beyond the bigint it returns", () => {
      words[0] = 0n;
      const n = 3000;
      const measured = cellsPerCall(() => { a.fetchAddSync(toB, remote, 1); }, n);
      expect({ perCall: measured.perCall < 1.2 ? "at most the bigint" : measured }).toEqual({ perCall: "at most the bigint" });
      expect(words[0]).toBe(BigInt(2 * n)); // the warm-up's and the measured calls'
    });
  });
}

describeUcx("UCX remote atomics without UCP_FEATURE_AMO64", () => {
  test("a provider opened with atomics: false: fetchAdd and compareSwap are NOT_SUPPORTED naming the provider, before anything is posted; messages and RMA still work", async () => {
    const provider = UcxProvider.open({ transports: "tcp", netDevices: "lo", atomics: false });
    const pool = new MemoryPool(provider, POOL);
    const a = new UcxEndpoint(provider);
    const b = new UcxEndpoint(provider);
    try {
      expect(provider.info.atomics).toBe(false);
      const toB = a.insert(b.name);
      b.insert(a.name);
      const region = pool.getRegion(64);
      const error = await failure(() => a.fetchAdd(toB, region.remote(), 1));
      expect([error.name, error.code]).toEqual(["AllocToolsError", "NOT_SUPPORTED"]);
      expect(error.message).toContain("ucx(tcp)");
      expect(error.message).toContain("UCP_FEATURE_AMO64");
      expect((await failure(() => a.compareSwapSync(toB, region.remote(), 0, 1))).code).toBe("NOT_SUPPORTED");
      expect(a.pendingCount).toBe(0);
      await a.write(region, 8, toB, region.remote());
      await a.send(region, 8, toB, 1);
      expect(b.recvSync(region, 8, 0, 1).length).toBe(8);
      pool.releaseRegion(region);
      const withAtomics = UcxProvider.open({ transports: "tcp" });
      expect(withAtomics.info.atomics).toBe(true);
      withAtomics.close();
      expect(() => UcxProvider.open({ atomics: "yes" as unknown as boolean })).toThrow(TypeError);
    } finally {
      a.close();
      b.close();
      pool.close();
      provider.close();
    }
  });
});

/** Heap cells left per call of `op` over `n` calls (after a warm-up), minus an empty loop's. */
function cellsPerCall(op: () => void, n: number): { perCall: number; types: Record<string, number> } {
  for (let i = 0; i < n; i++) op();
  const delta = (f: () => void) => {
    fullGC();
    const before = heapStats().objectTypeCounts;
    for (let i = 0; i < n; i++) f();
    const after = heapStats().objectTypeCounts;
    const types: Record<string, number> = {};
    let total = 0;
    for (const [k, v] of Object.entries(after)) {
      const d = v - (before[k] ?? 0);
      if (d > 0) { types[k] = d; total += d; }
    }
    return { total, types };
  };
  const base = delta(() => {});
  const m = delta(op);
  return { perCall: Math.max(0, m.total - base.total) / n, types: m.types };
}
