// The shared state of a UCX context (lib/ucx/ucx-shared-context.ts): users and the one cleanup, the
// owner's close flag, and the table of UCX-allocated blocks (each taken once, whoever races for
// it, a full table refused). Logic with real Workers racing; then a provider whose table is full
// hands the pool no block, and the pool maps its own.
import { expect, test } from "bun:test";
import { MemoryPool, UcxProvider } from "../../lib/index.ts";
import type { MemoryRegionImpl } from "../../lib/memory/region.ts";
import { MAX_PROVIDED_BLOCKS, UcxSharedContext } from "../../lib/ucx/ucx-shared-context.ts";
import { describeUcx } from "../helpers.ts";

test("users: the owner's reference, retain and release; the last release cleans up once; nothing retains after", () => {
  const shared = new UcxSharedContext();
  expect(shared.users).toBe(1);
  expect(shared.retain()).toBe(true);
  expect(shared.release()).toBe(false); // the owner still holds it
  expect(shared.closed).toBe(false);
  shared.markClosed();
  expect(new UcxSharedContext(shared.buffer).closed).toBe(true); // a view sees it
  expect(shared.release()).toBe(true); // the owner's own reference: the last one
  expect(shared.cleanedUp).toBe(true);
  expect(shared.retain()).toBe(false);
  expect(UcxSharedContext.fits(shared.buffer)).toBe(true);
  expect(UcxSharedContext.fits(new SharedArrayBuffer(64))).toBe(false);
});

test("blocks: recorded, found, taken once; a full table refuses the next one", () => {
  const shared = new UcxSharedContext();
  expect(shared.addBlock({ address: 0x10000, length: 4096, memh: 77 })).toBe(true);
  expect(shared.hasBlock(0x10000)).toBe(true);
  expect(shared.hasBlock(0x20000)).toBe(false);
  expect(shared.takeBlock(0x10000)).toEqual({ address: 0x10000, length: 4096, memh: 77 });
  expect(shared.takeBlock(0x10000)).toBeNull();
  for (let i = 0; i < MAX_PROVIDED_BLOCKS; i++) expect(shared.addBlock({ address: (i + 1) * 4096, length: 4096, memh: i + 1 })).toBe(true);
  expect(shared.addBlock({ address: 1 << 30, length: 4096, memh: 1 })).toBe(false);
  expect(shared.blockCount).toBe(MAX_PROVIDED_BLOCKS);
  expect(shared.takeBlock(5 * 4096)!.memh).toBe(5);
  expect(shared.addBlock({ address: 1 << 30, length: 4096, memh: 9 })).toBe(true); // the freed slot
});

test("4 Workers race for every block and retain/release while the owner lets go: each block taken exactly once, exactly one cleanup", async () => {
  const shared = new UcxSharedContext();
  const addresses = Array.from({ length: 512 }, (_, i) => (i + 1) * 65536);
  for (const [i, address] of addresses.entries()) shared.addBlock({ address, length: 65536, memh: i + 1 });
  const start = new SharedArrayBuffer(8);
  const gate = new Int32Array(start);
  const workers = Array.from({ length: 4 }, () => new Worker(new URL("./shared-context-worker.ts", import.meta.url)));
  const replies = workers.map((w, k) => new Promise<{ taken: number[]; cleanups: number }>((resolve) => {
    w.onmessage = (e) => resolve(e.data);
    // Each Worker walks the addresses from its own starting point, so they collide everywhere.
    w.postMessage({ buffer: shared.buffer, addresses: [...addresses.slice(k * 128), ...addresses.slice(0, k * 128)], start, cycles: 20_000 });
  }));
  while (Atomics.load(gate, 0) < workers.length) await Bun.sleep(1);
  Atomics.store(gate, 1, 1);
  await Bun.sleep(2);
  shared.markClosed();
  const ownerCleans = shared.release() ? 1 : 0; // while the Workers retain and release
  const results = await Promise.all(replies);
  for (const w of workers) w.terminate();
  const taken = results.flatMap((r) => r.taken);
  expect(taken.length).toBe(addresses.length);
  expect(new Set(taken).size).toBe(addresses.length);
  expect(shared.blockCount).toBe(0);
  expect(ownerCleans + results.reduce((n, r) => n + r.cleanups, 0)).toBe(1); // whoever let go last, once
  expect(shared.cleanedUp).toBe(true);
});

describeUcx("UcxProvider with a full block table", () => {
  test("allocateBlock gives the pool nothing and the pool maps and registers its own blocks", () => {
    const provider = UcxProvider.open({ transports: "posix,cma" });
    const shared = new UcxSharedContext(provider.share().state);
    const dummies: number[] = [];
    for (let address = 1 << 30; shared.addBlock({ address, length: 4096, memh: 1 }); address += 4096) dummies.push(address);
    try {
      expect(provider.allocateBlock(1 << 16)).toBeUndefined();
      const pool = new MemoryPool(provider, { small: { chunkSize: 256, initialCount: 4 } });
      const region = pool.getRegion(100) as MemoryRegionImpl;
      expect(region.remoteKeyBytes!.length).toBe(10); // our own memory: the empty 10-byte key
      pool.releaseRegion(region);
      expect(pool.close().count).toBe(0);
    } finally {
      for (const address of dummies) shared.takeBlock(address);
      provider.close();
    }
    expect(provider.contextUsers).toBe(-1);
  });
});
