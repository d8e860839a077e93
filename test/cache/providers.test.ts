// The cache over real providers: a peer reads what a cached region holds. On tcp and shm the peer
// is a second libfabric endpoint (its own domain) reading through the region's remote key; on the
// host provider it is a second process reading this process's memory at the region's address.
// The stale-registration case of the trackers (a buffer freed, a new one at the same address) is
// run for real: the new buffer is a miss and the peer sees the new bytes.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ptr } from "bun:ffi";
import {
  AllocToolsError, Endpoint, HostProvider, LibfabricProvider, MemoryPool, RegistrationCache, RemoteRegion,
  type LibfabricProviderOptions, type MemoryRegion, type PeerAddress,
} from "../../lib/index.ts";
import { describeFabric, runBun } from "../helpers.ts";
import { fillPattern, firstMismatch } from "../rma/pattern.ts";

const TARGET_POOL = { small: { initialCount: 0 }, medium: { initialCount: 0 }, large: { initialCount: 2 }, huge: { initialCount: 0 } };

/** A buffer of `size` bytes at `address`, made after the one there was collected; null when none landed there. */
function bufferAt(address: number, size: number): ArrayBuffer | null {
  Bun.gc(true);
  const tries: ArrayBuffer[] = [];
  for (let i = 0; i < 64; i++) {
    const b = new ArrayBuffer(size);
    if (ptr(b) === address) return b;
    tries.push(b);
  }
  return null;
}

/** A region over a new buffer of `size` bytes filled with the pattern of `seed`. */
function acquireFilled(cache: RegistrationCache, size: number, seed: number): MemoryRegion {
  const buffer = new ArrayBuffer(size);
  fillPattern(new Uint8Array(buffer), seed);
  return cache.acquire(buffer);
}

for (const options of [{ provider: "tcp", node: "127.0.0.1" }, { provider: "shm" }] as LibfabricProviderOptions[]) {
  describeFabric(`RegistrationCache over ${options.provider}: a peer endpoint reads cached regions`, () => {
    let local: LibfabricProvider;
    let remote: LibfabricProvider;
    let cache: RegistrationCache;
    let pool: MemoryPool;
    let near: Endpoint; // on the cache's provider, with options.cache
    let far: Endpoint; // the peer
    let toFar: PeerAddress;
    let toNear: PeerAddress;
    let landing: MemoryRegion; // the peer's pooled region

    beforeAll(() => {
      local = LibfabricProvider.open(options);
      remote = LibfabricProvider.open(options);
      cache = new RegistrationCache(local);
      pool = new MemoryPool(remote, TARGET_POOL);
      near = new Endpoint(local, { cache, timeoutMs: 3000 });
      far = new Endpoint(remote, { timeoutMs: 3000 });
      toFar = near.insert(far.name);
      toNear = far.insert(near.name);
      landing = pool.getRegion(65_536);
    });
    afterAll(() => {
      near.close();
      far.close();
      cache.close();
      pool.close();
      local.close();
      remote.close();
    });

    /** The peer reads `length` bytes of `region` into its landing region. */
    async function peerReads(region: MemoryRegion, length: number): Promise<Uint8Array> {
      landing.view.fill(0);
      await far.read(landing, length, toNear, region.remote());
      return landing.view.subarray(0, length);
    }

    test("the peer reads a cached region's bytes, at an odd offset of a larger buffer", async () => {
      const buffer = new ArrayBuffer(200_000);
      const view = new Uint8Array(buffer, 12_345, 40_000);
      fillPattern(view, 7);
      const region = cache.acquire(view);
      expect(region.isCached).toBe(true);
      expect(firstMismatch(await peerReads(region, 40_000), 7)).toBe(-1);
      cache.release(region);
      // A hit hands out the same keys; the peer reads the bytes as they are now.
      fillPattern(view, 8);
      const again = cache.acquire(view);
      expect(again.remoteKey).toBe(region.remoteKey);
      expect(firstMismatch(await peerReads(again, 40_000), 8)).toBe(-1);
      cache.release(again);
    });

    test("a buffer collected and a new one at the same address: a miss, and the peer sees the new bytes", async () => {
      let reused = 0;
      for (let attempt = 0; attempt < 20 && reused < 3; attempt++) {
        // In a frame of its own, which ends: an async frame keeps its temporaries alive.
        const { address, oldKey } = await (async () => {
          const old = acquireFilled(cache, 4096, 1);
          expect(firstMismatch(await peerReads(old, 4096), 1)).toBe(-1);
          cache.release(old);
          cache.flush(); // deregistered: nothing references the old buffer any more
          return { address: old.address, oldKey: old.remoteKey };
        })();
        const fresh = bufferAt(address, 4096);
        if (fresh === null) continue;
        reused++;
        const bytes = new Uint8Array(fresh);
        fillPattern(bytes, 2);
        const misses = cache.stats().misses;
        const r = cache.acquire(bytes);
        expect(r.address).toBe(address);
        expect(cache.stats().misses).toBe(misses + 1);
        expect(r.remoteKey).not.toBe(oldKey);
        expect(firstMismatch(await peerReads(r, 4096), 2)).toBe(-1);
        cache.release(r);
      }
      expect(reused).toBeGreaterThan(0); // the allocator did hand the address out again
    });

    test("Endpoint with options.cache writes and reads a plain Buffer zero-copy; the region is released when the operation settles", async () => {
      const out = Buffer.allocUnsafe(65_536);
      fillPattern(out, 3);
      landing.view.fill(0);
      const before = cache.stats();
      for (let i = 0; i < 4; i++) await near.write(out, 65_536, toFar, landing.remote());
      expect(firstMismatch(landing.view, 3)).toBe(-1);
      expect(cache.stats()).toMatchObject({ misses: before.misses + 1, hits: before.hits + 3, inUse: 0 });
      fillPattern(landing.view, 4);
      const into = new Uint8Array(65_536);
      await near.read(into.subarray(1000, 2000), 1000, toFar, landing.remote());
      expect(firstMismatch(into.subarray(1000, 2000), 4)).toBe(-1);
      expect(into[999]).toBe(0);
      expect(into[2000]).toBe(0);
      expect(cache.stats().inUse).toBe(0);
    });

    test("a view refused before posting: too long, detached, not a view, no cache; nothing stays in use", async () => {
      const posted = near.stats().posted;
      const view = new Uint8Array(100);
      expect(() => near.write(view, 101, toFar, landing.remote())).toThrow(RangeError);
      const gone = new ArrayBuffer(4096);
      const goneView = new Uint8Array(gone, 0, 100);
      cache.release(cache.acquire(goneView));
      gone.transfer();
      expect(() => near.write(goneView, 10, toFar, landing.remote())).toThrow(RangeError); // a detached view has 0 bytes
      let error: unknown;
      try { cache.acquire(gone); } catch (e) { error = e; }
      expect((error as AllocToolsError).code).toBe("DETACHED");
      expect(() => near.write(gone as never, 1, toFar, landing.remote())).toThrow(TypeError); // a buffer is not a view
      expect(() => far.write(view as never, 10, toNear, landing.remote())).toThrow(TypeError); // far has no cache
      expect(() => near.write(view, 10, 999n, new RemoteRegion(0n, 0n, 10))).toThrow(RangeError); // unknown peer
      expect(near.stats().posted).toBe(posted);
      expect(cache.stats().inUse).toBe(0);
    });

    test("a cached region whose buffer was transferred away is refused before posting (DETACHED)", () => {
      const posted = near.stats().posted;
      const buffer = new ArrayBuffer(4096);
      const region = cache.acquire(buffer);
      buffer.transfer();
      let error: unknown;
      try { near.write(region, 100, toFar, landing.remote()); } catch (e) { error = e; }
      expect((error as AllocToolsError).code).toBe("DETACHED");
      expect(near.stats().posted).toBe(posted);
      cache.release(region);
      cache.flush();
      expect(cache.stats().inUse).toBe(0);
    });
  });
}

describe("RegistrationCache over the host provider: a second process reads the cached region's memory", () => {
  test("the bytes at the region's address are the buffer's, for a hit too", () => {
    const provider = new HostProvider();
    const cache = new RegistrationCache(provider);
    try {
      const buffer = new ArrayBuffer(3 * 4096);
      const view = new Uint8Array(buffer, 1000, 5000);
      fillPattern(view, 5);
      cache.release(cache.acquire(view));
      const region = cache.acquire(view); // a hit
      expect(cache.stats().hits).toBe(1);
      const reader = `
        const fs = require("node:fs");
        const fd = fs.openSync("/proc/${process.pid}/mem", "r");
        const out = Buffer.alloc(${region.size});
        fs.readSync(fd, out, 0, out.length, ${region.address});
        process.stdout.write(out.toString("hex"));`;
      const r = runBun(reader);
      expect(r.stderr).toBe("");
      expect(r.exitCode).toBe(0);
      const seen = Buffer.from(r.stdout, "hex");
      expect(seen.length).toBe(5000);
      expect(firstMismatch(new Uint8Array(seen), 5)).toBe(-1);
      cache.release(region);
    } finally {
      cache.close();
      provider.close();
    }
  });
});
