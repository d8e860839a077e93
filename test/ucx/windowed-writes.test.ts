// Windowed writes share flushes: a window of postWrite()s costs one ucp_ep_flush_nbx per peer and
// poll, each write completes only once a flush issued after its put has completed (its stamp is
// then in the target's memory), writes posted after a flush wait for the next one, and a flush
// that fails or is cut short by close() fails every write it covers.
import type { MemoryRegionImpl } from "../../lib/memory/region.ts";
import { afterAll, beforeAll, expect, test } from "bun:test";
import { AllocToolsError, MemoryPool, UcxEndpoint, UcxError, UcxProvider } from "../../lib/index.ts";
import { UCX } from "../../ffi/ucx.ts";
import { describeUcx } from "../helpers.ts";
import { fillPattern, firstMismatch, RMA_POOL, SENTINEL } from "../rma/pattern.ts";

const CASES = [
  { label: "tcp", transports: "tcp", allocateBlocks: false },
  { label: "shm, UCX-allocated blocks", transports: "posix,cma", allocateBlocks: true },
] as const;
const WINDOW = 16;
const CHUNK = 65_536;

for (const c of CASES) {
  describeUcx(`UcxEndpoint windowed writes [${c.label}]`, () => {
    let provider: UcxProvider;
    let pool: MemoryPool;
    let a: UcxEndpoint;
    let b: UcxEndpoint;
    let peer: number;
    let source: MemoryRegionImpl;
    let target: MemoryRegionImpl;

    beforeAll(() => {
      provider = UcxProvider.open({ transports: c.transports, allocateBlocks: c.allocateBlocks });
      pool = new MemoryPool(provider, RMA_POOL);
      a = new UcxEndpoint(provider, { timeoutMs: 5000 });
      b = new UcxEndpoint(provider, { timeoutMs: 5000 });
      peer = a.insert(b.name);
      b.insert(a.name);
      source = pool.getRegion(RMA_POOL.huge.chunkSize) as MemoryRegionImpl;
      target = pool.getRegion(RMA_POOL.huge.chunkSize) as MemoryRegionImpl;
    });
    afterAll(() => {
      a.close();
      b.close();
      pool.releaseRegion(source);
      pool.releaseRegion(target);
      expect(pool.close().count).toBe(0);
      provider.close();
    });

    /** Stamps WINDOW chunks of the source (seed `seed + i`) and posts them to WINDOW chunks of the target. */
    const postWindow = (endpoint: UcxEndpoint, endpointPeer: number, seed: number, first = 0, count = WINDOW): number[] => {
      const remote = target.remote();
      const ids: number[] = [];
      for (let i = first; i < first + count; i++) {
        fillPattern(source.view.subarray(i * CHUNK, (i + 1) * CHUNK), seed + i);
        ids.push(endpoint.postWrite(source.pointer(i * CHUNK), CHUNK, endpointPeer, remote.subregion(i * CHUNK)));
      }
      return ids;
    };
    const inTarget = (i: number, seed: number) => firstMismatch(target.view.subarray(i * CHUNK, (i + 1) * CHUNK), seed + i) === -1;

    test("a window of 16 writes costs one flush; each write completes only with its stamp in the target's memory", () => {
      target.view.fill(SENTINEL);
      const flushes = a.stats().flushes;
      const ids = postWindow(a, peer, 300);
      expect(source.inFlight).toBe(WINDOW);
      expect(a.stats().flushes).toBe(flushes); // posting issues none
      const done = new Set<number>();
      const landedAtCompletion: boolean[] = [];
      const deadline = performance.now() + 5000;
      while (done.size < WINDOW && performance.now() < deadline) {
        a.poll();
        ids.forEach((id, i) => {
          if (done.has(id) || !a.completed(id)) return;
          done.add(id);
          landedAtCompletion[i] = inTarget(i, 300);
        });
      }
      expect(done.size).toBe(WINDOW);
      expect(landedAtCompletion).toEqual(Array.from({ length: WINDOW }, () => true));
      expect(a.stats().flushes - flushes).toBe(1);
      expect(source.inFlight).toBe(0);
      expect(a.flushesInFlight).toBe(0);
    });

    test("writes posted after a flush was issued wait for the next flush", () => {
      target.view.fill(SENTINEL);
      const flushes = a.stats().flushes;
      const early = postWindow(a, peer, 400, 0, 8);
      a.poll(); // issues the flush covering the first 8
      const late = postWindow(a, peer, 400, 8, 8);
      const pending = new Set([...early, ...late]);
      const deadline = performance.now() + 5000;
      while (pending.size > 0 && performance.now() < deadline) {
        a.poll();
        for (const id of [...pending]) if (a.completed(id)) pending.delete(id);
      }
      expect(pending.size).toBe(0);
      expect(a.stats().flushes - flushes).toBe(2);
      for (let i = 0; i < WINDOW; i++) expect(inTarget(i, 400)).toBe(true);
      expect(source.inFlight).toBe(0);
    });

    test("writeSync and the promise form move the same bytes; concurrent promises share a flush", async () => {
      target.view.fill(SENTINEL);
      const remote = target.remote();
      fillPattern(source.view.subarray(0, CHUNK), 500);
      a.writeSync(source, CHUNK, peer, remote);
      expect(inTarget(0, 500)).toBe(true);
      const flushes = a.stats().flushes;
      const writes: Promise<void>[] = [];
      for (let i = 1; i < 8; i++) {
        fillPattern(source.view.subarray(i * CHUNK, (i + 1) * CHUNK), 500 + i);
        writes.push(a.write(source.pointer(i * CHUNK), CHUNK, peer, remote.subregion(i * CHUNK)));
      }
      await Promise.all(writes);
      for (let i = 1; i < 8; i++) expect(inTarget(i, 500)).toBe(true);
      expect(a.stats().flushes - flushes).toBe(1);
      expect(source.inFlight).toBe(0);
    });

    test("close() fails the writes awaiting a flush, issued or not, with ENDPOINT_CLOSED and unpins their regions", () => {
      const e = new UcxEndpoint(provider);
      const p = e.insert(b.name);
      const flushed = postWindow(e, p, 600, 0, 8);
      e.poll(); // a flush covering the first 8 is issued (over tcp still in flight)
      const unflushed = postWindow(e, p, 600, 8, 8);
      expect(e.flushesInFlight).toBe(c.transports === "tcp" ? 1 : 0);
      e.close();
      const outcome = (id: number) => {
        try {
          return e.completed(id) ? "done" : "pending";
        } catch (err) {
          return (err as AllocToolsError).code;
        }
      };
      // Over shared memory with UCX-allocated blocks a flush completes inside poll(): the first 8 may be done.
      for (const id of flushed) expect(outcome(id)).toBeOneOf(c.transports === "tcp" ? ["ENDPOINT_CLOSED"] : ["done", "ENDPOINT_CLOSED"]);
      for (const id of unflushed) expect(outcome(id)).toBe("ENDPOINT_CLOSED");
      expect(source.inFlight).toBe(0);
      expect(e.pendingCount).toBe(0);
      expect(e.flushesInFlight).toBe(0);
    });

    test("a flush that ends in an error fails every write it covers with a UcxError naming ucp_ep_flush_nbx (status injected)", () => {
      const e = new UcxEndpoint(provider);
      const p = e.insert(b.name);
      try {
        const ids = postWindow(e, p, 700, 0, 4);
        // The completion of the flush of epoch 1 with UCS_ERR_CANCELED, as checkFlushes() reports one.
        (e as unknown as { transport: { cover(peer: number, epoch: number, status: number): void } }).transport.cover(p, 1, UCX.ERR_CANCELED);
        for (const id of ids) {
          // Over tcp the put itself may still be going out: the write settles once its request ends.
          let error: unknown = null;
          const deadline = performance.now() + 5000;
          try {
            while (!e.completed(id) && performance.now() < deadline) e.poll();
          } catch (err) {
            error = err;
          }
          expect(error).toBeInstanceOf(UcxError);
          expect((error as UcxError).message).toContain("ucp_ep_flush_nbx");
        }
        expect(source.inFlight).toBe(0);
        // The next window is unaffected.
        const next = postWindow(e, p, 800, 0, 4);
        const deadline = performance.now() + 5000;
        const pending = new Set(next);
        while (pending.size > 0 && performance.now() < deadline) {
          e.poll();
          for (const id of [...pending]) if (e.completed(id)) pending.delete(id);
        }
        expect(pending.size).toBe(0);
        expect(e.stats().failed).toBe(4);
      } finally {
        e.close();
      }
    });
  });
}
