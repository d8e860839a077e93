// Remote atomics between endpoints of one process (libfabric): fetchAdd (fi_fetch_atomic FI_SUM)
// and compareSwap (fi_compare_atomic FI_CSWAP) on 64-bit words in every form, on tcp, shm and
// sockets; what is refused before anything is posted; the providers that have none (udp;ofi_rxd
// returns wrong values, so it is refused); a wrong key, and what it does to an shm endpoint;
// fetchAddSync allocates nothing but its bigint.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { AllocToolsError, Endpoint, LibfabricProvider, RemoteRegion, RmaError, RmaTimeoutError, type MemoryRegion } from "../../lib/index.ts";
import { describeFabric } from "../helpers.ts";
import { Group, SHM, SOCKETS, TCP, UDP, type MessageCase } from "../messages/message-pair.ts";
import { cellsPerCall, perCallTypes } from "../heap-cells.ts";

/** What a wrong key ends as: tcp;ofi_rxm and sockets answer EACCES, shm never answers. */
const BAD_KEY: Record<string, typeof RmaError | typeof RmaTimeoutError> = { tcp: RmaError, shm: RmaTimeoutError, sockets: RmaError };

function atomicTests(c: MessageCase): void {
  let group: Group;
  let a: Endpoint;
  let toB: bigint;
  let target: MemoryRegion;
  let words: BigUint64Array;
  beforeAll(() => {
    group = new Group(c, 2, { timeoutMs: 2000 });
    a = group.endpoint(0);
    toB = group.peer(0, 1);
    target = group.pool(1).getRegion(4096);
    target.view.fill(0);
    words = new BigUint64Array(target.view.buffer, target.view.byteOffset, 512);
  });
  afterAll(() => group?.close());

  const word = (index: number) => target.remote().subregion(index * 8, 8);

  test("fetchAdd returns the value before the add, in every form; negative values subtract; the word wraps modulo 2^64", async () => {
    words[0] = 5n;
    expect(await a.fetchAdd(toB, word(0), 3)).toBe(5n);
    expect(a.fetchAddSync(toB, word(0), 10n)).toBe(8n);
    const id = a.postFetchAdd(toB, word(0), -1);
    let value: bigint | null = null;
    while (value === null) { a.poll(); group.endpoint(1).poll(); value = a.fetched(id); }
    expect(value).toBe(18n);
    expect(() => a.fetched(id)).toThrow(RangeError); // retired
    expect(words[0]).toBe(17n);
    words[1] = 2n ** 64n - 2n;
    expect(a.fetchAddSync(toB, word(1), 5)).toBe(2n ** 64n - 2n);
    expect(words[1]).toBe(3n);
    expect(a.fetchAddSync(toB, word(1), 2n ** 63n)).toBe(3n);
    expect(words[1]).toBe(2n ** 63n + 3n);
    // Values beyond 2^53 travel exact both ways.
    words[2] = 2n ** 60n + 12345n;
    expect(a.fetchAddSync(toB, word(2), 2n ** 55n + 1n)).toBe(2n ** 60n + 12345n);
    expect(words[2]).toBe(2n ** 60n + 2n ** 55n + 12346n);
  });

  test("compareSwap swaps only where the word equals expected, and returns the value found, in every form", async () => {
    words[3] = 7n;
    expect(a.compareSwapSync(toB, word(3), 7n, 100n)).toBe(7n);
    expect(words[3]).toBe(100n);
    expect(await a.compareSwap(toB, word(3), 7n, 200n)).toBe(100n); // no swap
    expect(words[3]).toBe(100n);
    const id = a.postCompareSwap(toB, word(3), 100n, 2n ** 64n - 1n);
    let value: bigint | null = null;
    while (value === null) { a.poll(); group.endpoint(1).poll(); value = a.fetched(id); }
    expect([value, words[3]]).toEqual([100n, 2n ** 64n - 1n]);
    expect(a.compareSwapSync(toB, word(3), -1, 0)).toBe(2n ** 64n - 1n); // -1 is 2^64 - 1
    expect(words[3]).toBe(0n);
  });

  test("a window of 64 posted fetchAdds: every value fetched once, the word ends at their sum", () => {
    words[4] = 0n;
    const ids = Array.from({ length: 64 }, () => a.postFetchAdd(toB, word(4), 1));
    const values: bigint[] = [];
    const pending = new Set(ids);
    while (pending.size > 0) {
      a.poll();
      group.endpoint(1).poll();
      for (const id of pending) {
        const v = a.fetched(id);
        if (v !== null) { values.push(v); pending.delete(id); }
      }
    }
    expect(values.sort((x, y) => Number(x - y))).toEqual(Array.from({ length: 64 }, (_, i) => BigInt(i)));
    expect(words[4]).toBe(64n);
  });

  test("refused before anything is posted: a misaligned word, a region shorter than 8 bytes, a value out of range, an unknown peer; the word is untouched", () => {
    words[5] = 9n;
    const posted = a.stats().posted;
    const remote = target.remote();
    expect(() => a.fetchAddSync(toB, remote.subregion(5 * 8 + 4, 8), 1)).toThrow(/aligned 64-bit word/);
    expect(() => a.fetchAddSync(toB, remote.subregion(5 * 8, 4), 1)).toThrow(/fewer than 8/);
    expect(() => a.postCompareSwap(toB, remote.subregion(5 * 8 + 1, 8), 0, 1)).toThrow(RangeError);
    expect(() => a.fetchAddSync(toB, word(5), 2n ** 64n)).toThrow(RangeError);
    expect(() => a.fetchAddSync(toB, word(5), 0.5)).toThrow(RangeError);
    expect(() => a.fetchAddSync(toB, word(5), "1" as never)).toThrow(TypeError);
    expect(() => a.fetchAddSync(999n, word(5), 1)).toThrow(RangeError);
    expect(() => a.fetchAddSync(toB, {} as RemoteRegion, 1)).toThrow(TypeError);
    expect([a.stats().posted, words[5], a.inTransportCount]).toEqual([posted, 9n, 0]);
  });

  test(`a wrong key ends as ${BAD_KEY[c.label]!.name}, never as a value; the word is untouched`, async () => {
    // Endpoints of their own: on shm the unanswered atomic blocks its endpoint (next test).
    const bad = new Group(c, 2, { timeoutMs: 1000 });
    try {
      const region = bad.pool(1).getRegion(64);
      const view = new BigUint64Array(region.view.buffer, region.view.byteOffset, 1);
      view[0] = 1n;
      const remote = region.remote().subregion(0, 8);
      const wrong = new RemoteRegion(remote.address, remote.key + 1000n, 8);
      let error: unknown;
      try { await bad.endpoint(0).fetchAdd(bad.peer(0, 1), wrong, 1n); } catch (e) { error = e; }
      expect(error).toBeInstanceOf(BAD_KEY[c.label]!);
      expect(view[0]).toBe(1n);
      if (c.label === "shm") {
        // shm never answers a refused atomic, and answers in order: every later operation of this
        // endpoint that waits for an answer (atomics, reads, delivery-complete writes, sends above
        // 4 KiB), to any peer, times out behind it. docs/rma.md says to close such an endpoint.
        let later: unknown;
        try { bad.endpoint(0).fetchAddSync(bad.peer(0, 1), remote, 1n); } catch (e) { later = e; }
        expect(later).toBeInstanceOf(RmaTimeoutError);
      } else {
        expect(bad.endpoint(0).fetchAddSync(bad.peer(0, 1), remote, 1n)).toBe(1n); // the endpoint goes on
      }
    } finally {
      bad.close();
    }
  }, 20_000);

  // Not on sockets: its progress thread makes each synchronous atomic take milliseconds here.
  if (c.label !== "sockets") test("fetchAddSync and compareSwapSync allocate nothing but the bigint they return", () => {
    words[7] = 0n;
    const n = 2000;
    const remote = word(7);
    const fetch = cellsPerCall(() => { a.fetchAddSync(toB, remote, 1); }, n);
    const fetchBig = cellsPerCall(() => { a.fetchAddSync(toB, remote, 1n); }, n);
    const swap = cellsPerCall(() => { a.compareSwapSync(toB, remote, 0, 0); }, n);
    // The returned bigint is the one cell per call, with number and bigint operands alike.
    for (const r of [fetch, fetchBig, swap]) {
      expect(r.perCall).toBeLessThan(1.2);
      expect(Object.keys(perCallTypes(r, n)).filter((t) => t !== "BigInt")).toEqual([]);
    }
  }, 60_000);
}

for (const c of [TCP, SHM, SOCKETS]) describeFabric(`remote atomics in one process [${c.label}]`, () => atomicTests(c));

describeFabric("remote atomics refused where the provider has none it can be trusted with", () => {
  test("udp;ofi_rxd: NOT_SUPPORTED naming the provider (its fetching atomics return wrong values), nothing posted", () => {
    const group = new Group(UDP, 2);
    try {
      const target = group.pool(1).getRegion(64);
      const a = group.endpoint(0);
      for (const f of [() => a.fetchAddSync(group.peer(0, 1), target.remote(), 1), () => a.postCompareSwap(group.peer(0, 1), target.remote(), 0, 1)]) {
        let error: unknown;
        try { f(); } catch (e) { error = e; }
        expect(error).toBeInstanceOf(AllocToolsError);
        expect((error as AllocToolsError).code).toBe("NOT_SUPPORTED");
        expect((error as Error).message).toContain("udp;ofi_rxd");
      }
      expect(a.stats().posted).toBe(0);
    } finally {
      group.close();
    }
  });

  test("a closed endpoint: ENDPOINT_CLOSED in every form", () => {
    const provider = LibfabricProvider.open(TCP.options);
    try {
      const endpoint = new Endpoint(provider);
      const remote = new RemoteRegion(0n, 1n, 8);
      endpoint.close();
      const code = (f: () => unknown) => { try { f(); return "none"; } catch (e) { return (e as AllocToolsError).code; } };
      // The promise form throws too: a refusal is synchronous, as for write().
      expect([code(() => endpoint.fetchAddSync(0n, remote, 1)), code(() => endpoint.postCompareSwap(0n, remote, 0, 1)), code(() => endpoint.fetchAdd(0n, remote, 1))])
        .toEqual(["ENDPOINT_CLOSED", "ENDPOINT_CLOSED", "ENDPOINT_CLOSED"]);
    } finally {
      provider.close();
    }
  });
});
