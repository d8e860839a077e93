// The three ways to wait for an operation (lib/engine/rma-endpoint.ts): writeSync/readSync,
// postWrite/postRead + poll + completed, and the promise form with its bounded inline spin; the
// pinning of local regions while operations are in flight; Endpoint options bounded by fi_info.
// Two endpoints in one process, over each provider.
import { cellsPerCall } from "../heap-cells.ts";
import { afterAll, beforeAll, expect, test } from "bun:test";
import {
  AllocToolsError, Endpoint, LibfabricProvider, MemoryPool, RemoteRegion, RmaError, RmaTimeoutError,
  type LibfabricProviderOptions, type MemoryRegion, type PeerAddress,
} from "../../lib/index.ts";
import type { MemoryRegionImpl } from "../../lib/memory/region.ts";
import { describeFabric } from "../helpers.ts";
import { fillPattern, firstMismatch, RMA_POOL, SENTINEL } from "./pattern.ts";

interface Case {
  readonly label: string;
  readonly options: LibfabricProviderOptions;
  /** What a wrong key ends as (see docs/rma.md). */
  readonly badKey: "error" | "timeout";
}

const CASES: readonly Case[] = [
  { label: "tcp", options: { provider: "tcp", node: "127.0.0.1" }, badKey: "error" },
  { label: "shm", options: { provider: "shm" }, badKey: "timeout" },
  { label: "udp", options: { provider: "udp", node: "127.0.0.1" }, badKey: "timeout" },
  { label: "sockets", options: { provider: "sockets", node: "127.0.0.1" }, badKey: "error" },
];

class Pair {
  readonly providers: LibfabricProvider[];
  readonly pools: MemoryPool[];
  readonly a: Endpoint;
  readonly b: Endpoint;
  readonly peer: PeerAddress;
  readonly src: MemoryRegion;
  readonly dst: MemoryRegion;

  constructor(c: Case, timeoutMs = 5000, spinMicroseconds = 20) {
    this.providers = [LibfabricProvider.open(c.options), LibfabricProvider.open(c.options)];
    this.pools = this.providers.map((p) => new MemoryPool(p, RMA_POOL));
    this.a = new Endpoint(this.providers[0]!, { timeoutMs, spinMicroseconds });
    this.b = new Endpoint(this.providers[1]!, { timeoutMs, spinMicroseconds });
    this.peer = this.a.insert(this.b.name);
    this.b.insert(this.a.name);
    this.src = this.pools[0]!.getRegion(65_536);
    this.dst = this.pools[1]!.getRegion(65_536);
    this.dst.view.fill(SENTINEL);
  }

  close(): void {
    for (const p of this.providers) p.close();
    for (const p of this.pools) p.close();
  }
}


const pinned = (r: MemoryRegion) => (r as MemoryRegionImpl).inFlight;

for (const c of CASES) {
  describeFabric(`RMA forms [${c.label}]`, () => {
    let pair: Pair;
    beforeAll(() => { pair = new Pair(c); });
    afterAll(() => pair?.close());

    test("writeSync/readSync move the bytes and return once done; the region is pinned only meanwhile", () => {
      const { a, peer, src, dst } = pair;
      for (const size of [1, 64, 4097, 65_536]) {
        dst.view.fill(SENTINEL);
        fillPattern(src.view.subarray(0, size), size);
        a.writeSync(src, size, peer, dst.remote());
        expect(firstMismatch(dst.view.subarray(0, size), size)).toBe(-1);
        expect(pinned(src)).toBe(0);
        src.view.fill(0);
        a.readSync(src.pointer(0), size, peer, dst.remote());
        expect(firstMismatch(src.view.subarray(0, size), size)).toBe(-1);
      }
      expect(a.pendingCount).toBe(0);
      expect(a.inTransportCount).toBe(0);
    });

    test("postWrite/postRead return numeric ids; poll + completed drive a window of 32 without promises", () => {
      const { a, peer, src, dst } = pair;
      fillPattern(src.view, 3);
      const ids: number[] = [];
      for (let i = 0; i < 32; i++) ids.push(a.postWrite(src.pointer(i * 1024), 1024, peer, dst.remote().subregion(i * 1024, 1024)));
      expect(ids.every((id) => typeof id === "number" && Number.isInteger(id))).toBe(true);
      expect(new Set(ids).size).toBe(32);
      expect(pinned(src)).toBeGreaterThan(0); // pinned while posted (some may have completed already)
      const deadline = performance.now() + 5000;
      const done = new Set<number>();
      while (done.size < ids.length && performance.now() < deadline) {
        a.poll();
        pair.b.poll(); // the target is in this process: it progresses too
        for (const id of ids) if (!done.has(id) && a.completed(id)) done.add(id);
      }
      expect(done.size).toBe(32);
      expect(firstMismatch(dst.view.subarray(0, 32 * 1024), 3)).toBe(-1);
      expect(pinned(src)).toBe(0);
      // A retired id is unknown from now on; so is one never issued.
      expect(() => a.completed(ids[0]!)).toThrow(RangeError);
      expect(() => a.completed(0)).toThrow(RangeError);
      expect(() => a.completed(0.5)).toThrow(RangeError);
      const read = a.postRead(src, 8, peer, dst.remote());
      while (!a.completed(read)) { a.poll(); pair.b.poll(); }
      expect(firstMismatch(src.view.subarray(0, 8), 3)).toBe(-1);
    });

    test("refusals throw synchronously in every form, having posted and pinned nothing", () => {
      const { a, peer, src, dst } = pair;
      const posted = a.stats().posted;
      const small = dst.pointer(100).remote(10);
      expect(() => a.writeSync(src, 11, peer, small)).toThrow(RangeError);
      expect(() => a.readSync(src, 11, peer, small)).toThrow(RangeError);
      expect(() => a.postWrite(src, 11, peer, small)).toThrow(RangeError);
      expect(() => a.postRead(src.pointer(src.size - 4), 5, peer, dst.remote())).toThrow(RangeError);
      expect(() => a.writeSync(src, 1, 12345n, dst.remote())).toThrow(RangeError);
      expect(() => a.postWrite({} as MemoryRegion, 1, peer, dst.remote())).toThrow(TypeError);
      expect(a.stats().posted).toBe(posted);
      expect(pinned(src)).toBe(0);
    });

    test("writeSync and completed(id) throw what the promise would reject with: a wrong key", async () => {
      const bad = new Pair(c, 400);
      try {
        const { a, peer, src, dst } = bad;
        const wrong = new RemoteRegion(dst.remoteAddress, dst.remoteKey + 99n, 64);
        const expected = c.badKey === "error" ? RmaError : RmaTimeoutError;
        expect(() => a.writeSync(src, 64, peer, wrong)).toThrow(expected);
        const id = a.postWrite(src, 64, peer, wrong);
        let thrown: unknown;
        const deadline = performance.now() + 3000;
        while (thrown === undefined && performance.now() < deadline) {
          a.poll();
          bad.b.poll();
          try { if (a.completed(id)) break; } catch (e) { thrown = e; }
        }
        expect(thrown).toBeInstanceOf(expected);
        expect(() => a.completed(id)).toThrow(RangeError); // retired by the throw
        if (c.badKey === "timeout") {
          // Timed out but still posted: the region stays pinned until the endpoint closes.
          expect(pinned(src)).toBeGreaterThan(0);
          expect(a.inTransportCount).toBeGreaterThan(0);
          expect(a.pendingCount).toBe(0); // nobody waits for them: the event loop is not kept busy
        }
        a.close();
        expect(pinned(src)).toBe(0);
      } finally {
        bad.close();
      }
    }, 20_000);

    test("the promise form's inline spin blocks the event loop at most spinMicroseconds, and a hung write still times out", async () => {
      if (c.badKey !== "timeout") return; // needs an operation that never completes
      const bad = new Pair(c, 300, 2000);
      try {
        const { a, peer, src, dst } = bad;
        const wrong = new RemoteRegion(dst.remoteAddress, dst.remoteKey + 99n, 64);
        await a.write(src, 64, peer, dst.remote()); // connected: what follows times the spin alone
        const t = performance.now();
        const p = a.write(src, 64, peer, wrong);
        const blocked = performance.now() - t;
        expect(blocked).toBeLessThan(2 + 50); // 2 ms of spin, plus one slow turn on a loaded machine
        let err: unknown;
        try { await p; } catch (e) { err = e; }
        expect(err).toBeInstanceOf(RmaTimeoutError);
      } finally {
        bad.close();
      }
    }, 20_000);

    if (c.label === "tcp" || c.label === "shm") {
      test("writeSync, readSync and postWrite/poll/completed allocate nothing per call", () => {
        const { a, peer, src, dst } = pair;
        const remote = dst.remote();
        const n = 2000;
        const write = cellsPerCall(() => a.writeSync(src, 64, peer, remote), n);
        const read = cellsPerCall(() => a.readSync(src, 64, peer, remote), n);
        const post = cellsPerCall(() => {
          const id = a.postWrite(src, 64, peer, remote);
          while (!a.completed(id)) { a.poll(); pair.b.poll(); }
        }, n);
        // An allocation on the path shows as at least one cell per call; the ~100 cells the heap
        // snapshots themselves leave are well under 0.2 per call.
        const over = (r: { perCall: number; types: Record<string, number> }) => (r.perCall < 0.2 ? "none" : r);
        expect({ writeSync: over(write), readSync: over(read), post: over(post) }).toEqual({ writeSync: "none", readSync: "none", post: "none" });
      }, 60_000);
    }
  });
}

describeFabric("Endpoint options are bounded by the provider's fi_info", () => {
  test("cqSize above tx_attr->size + rx_attr->size, avCount above ep_cnt, unknown keys: refused, nothing opened", () => {
    const provider = LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" });
    try {
      expect(() => new Endpoint(provider, { cqSize: 2 ** 30 })).toThrow(/cqSize .*tx_attr->size \d+ \+ rx_attr->size \d+/);
      expect(() => new Endpoint(provider, { avCount: 2 ** 30 })).toThrow(/avCount .*ep_cnt \d+/);
      expect(() => new Endpoint(provider, { cqSize: 2 ** 30 })).toThrow(RangeError);
      expect(() => new Endpoint(provider, { cqSize: 0 })).toThrow(RangeError);
      expect(() => new Endpoint(provider, { spinMicroseconds: -1 })).toThrow(RangeError);
      expect(() => new Endpoint(provider, { timeoutMs: NaN })).toThrow(RangeError);
      expect(() => new Endpoint(provider, { cqsize: 16 } as never)).toThrow(/unknown Endpoint option "cqsize"/);
      // The largest allowed sizes open.
      const ep = new Endpoint(provider, { cqSize: 4096, spinMicroseconds: 0 });
      ep.close();
    } finally {
      provider.close();
    }
  });
});

describeFabric("a closed endpoint in the sync and post forms", () => {
  test("writeSync, postWrite and completed throw ENDPOINT_CLOSED / RangeError; poll returns 0", () => {
    const pair = new Pair(CASES[0]!);
    try {
      const { a, peer, src, dst } = pair;
      a.writeSync(src, 1, peer, dst.remote());
      a.close();
      const closed = (f: () => unknown) => {
        try { f(); } catch (e) { return e instanceof AllocToolsError ? e.code : e; }
        return "no error";
      };
      expect(closed(() => a.writeSync(src, 1, peer, dst.remote()))).toBe("ENDPOINT_CLOSED");
      expect(closed(() => a.postRead(src, 1, peer, dst.remote()))).toBe("ENDPOINT_CLOSED");
      expect(a.poll()).toBe(0);
      expect(() => a.completed(1)).toThrow(RangeError);
    } finally {
      pair.close();
    }
  });
});
