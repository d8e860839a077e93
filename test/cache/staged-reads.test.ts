// Reads through an Endpoint's registration cache land in the cache's staging memory and are copied
// into the caller's view when the transport is done (read-staging.ts): the bytes arrive exactly
// in the view, for every kind of view and size (above the largest size class too), nothing around
// the view changes, staging buffers are reused (one registration serves read after read), idle
// staging memory stays bounded, and nothing stays in use.
import { afterAll, beforeAll, expect, test } from "bun:test";
import {
  Endpoint, LibfabricProvider, MemoryPool, RegistrationCache, type LibfabricProviderOptions, type MemoryRegion, type PeerAddress,
} from "../../lib/index.ts";
import { describeFabric } from "../helpers.ts";
import { fillPattern, firstMismatch, firstNot, SENTINEL } from "../rma/pattern.ts";

const SOURCE_BYTES = (4 << 20) + 8192;

for (const options of [{ provider: "tcp", node: "127.0.0.1" }, { provider: "shm" }] as LibfabricProviderOptions[]) {
  describeFabric(`Endpoint { cache } reads through staging memory [${options.provider}]`, () => {
    let local: LibfabricProvider;
    let remote: LibfabricProvider;
    let cache: RegistrationCache;
    let pool: MemoryPool;
    let near: Endpoint;
    let far: Endpoint;
    let toFar: PeerAddress;
    let source: MemoryRegion;

    beforeAll(() => {
      local = LibfabricProvider.open(options);
      remote = LibfabricProvider.open(options);
      cache = new RegistrationCache(local);
      pool = new MemoryPool(remote, { small: { initialCount: 0 }, medium: { initialCount: 0 }, large: { initialCount: 0 }, huge: { initialCount: 0 } });
      near = new Endpoint(local, { cache, timeoutMs: 5000 });
      far = new Endpoint(remote, { timeoutMs: 5000 });
      toFar = near.insert(far.name);
      far.insert(near.name);
      source = pool.getRegion(SOURCE_BYTES);
      fillPattern(source.view, 41);
    });
    afterAll(() => {
      near.close();
      far.close();
      cache.close();
      pool.releaseRegion(source);
      pool.close();
      local.close();
      remote.close();
    });

    test("every size, at an odd offset of a larger buffer: exactly the bytes read, nothing around them", async () => {
      for (const length of [1, 3, 4097, 65_537, (1 << 20) + 1, (4 << 20) + 1]) {
        const buffer = new ArrayBuffer(length + 200);
        const all = new Uint8Array(buffer).fill(SENTINEL);
        const view = new Uint8Array(buffer, 77, length);
        await near.read(view, length, toFar, source.remote());
        expect({ length, mismatch: firstMismatch(view, 41) }).toEqual({ length, mismatch: -1 });
        expect(firstNot(all.subarray(0, 77), SENTINEL)).toBe(-1);
        expect(firstNot(all.subarray(77 + length), SENTINEL)).toBe(-1);
      }
      expect(cache.stats().inUse).toBe(0);
    });

    test("a Float64Array, a DataView, a Buffer and a growable SharedArrayBuffer; a read shorter than its view", async () => {
      const expected = new Uint8Array(source.view.subarray(0, 4096));
      const f64 = new Float64Array(new ArrayBuffer(8192), 16, 512);
      near.readSync(f64, 4096, toFar, source.remote());
      expect(new Uint8Array(f64.buffer, 16, 4096)).toEqual(expected);
      const dataView = new DataView(new ArrayBuffer(8192), 3, 5000);
      const id = near.postRead(dataView, 4096, toFar, source.remote());
      while (!near.completed(id)) { near.poll(); far.poll(); }
      expect(new Uint8Array(dataView.buffer, 3, 4096)).toEqual(expected);
      expect(new Uint8Array(dataView.buffer, 3 + 4096, 5000 - 4096).every((b) => b === 0)).toBe(true); // past the length: untouched
      const buffer = Buffer.alloc(4096);
      await near.read(buffer, 4096, toFar, source.remote());
      expect(new Uint8Array(buffer)).toEqual(expected);
      const sab = new SharedArrayBuffer(4096, { maxByteLength: 16_384 });
      const reading = near.read(new Uint8Array(sab), 4096, toFar, source.remote());
      sab.grow(16_384); // grows only: its memory stays, the read is delivered
      await reading;
      expect(Array.from(new Uint8Array(sab, 0, 4096))).toEqual(Array.from(expected));
    });

    test("staging buffers are reused: 200 reads of one size cost one registration; idle staging memory is bounded", async () => {
      await near.read(new Uint8Array(65_536), 65_536, toFar, source.remote());
      const before = cache.stats();
      for (let i = 0; i < 200; i++) await near.read(new Uint8Array(65_536), 65_536, toFar, source.remote());
      const after = cache.stats();
      expect(after.stagedReads - before.stagedReads).toBe(200);
      expect(after.registered).toBe(before.registered); // the same staging buffer, already registered
      expect(after.stagingBytes).toBe(before.stagingBytes);
      // Many reads in flight at once: a staging buffer each; then the idle ones are kept up to 16 MiB.
      const views = Array.from({ length: 64 }, () => new Uint8Array(1 << 20));
      await Promise.all(views.map((v) => near.read(v, 1 << 20, toFar, source.remote())));
      for (const v of views) expect(firstMismatch(v, 41)).toBe(-1);
      const s = cache.stats();
      expect(s.inUse).toBe(0);
      expect(s.stagingBytes).toBeGreaterThan(0);
      expect(s.stagingBytes).toBeLessThanOrEqual(16 << 20); // only idle ones are left: at most the idle limit
      expect(s.bytes).toBeLessThanOrEqual(s.stagingBytes); // dropped staging buffers took their registrations along
    });

    test("a view transferred after its read completed keeps the bytes (the moved buffer has them)", async () => {
      const view = new Uint8Array(4096);
      await near.read(view, 4096, toFar, source.remote());
      const moved = new Uint8Array(view.buffer.transfer());
      expect(firstMismatch(moved, 41)).toBe(-1);
    });

    test("a read refused before posting leaves no staging buffer in use", () => {
      const posted = near.stats().posted;
      expect(() => near.read(new Uint8Array(10), 11, toFar, source.remote())).toThrow(RangeError);
      const gone = new Uint8Array(4096);
      gone.buffer.transfer();
      expect(() => near.read(gone, 1, toFar, source.remote())).toThrow(RangeError); // a detached view has 0 bytes
      expect(near.stats().posted).toBe(posted);
      expect(cache.stats().inUse).toBe(0);
    });
  });
}
