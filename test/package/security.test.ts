// Issue 13, item 8 / README "Security": what a peer given a key or a remote() may touch.
import { expect, test } from "bun:test";
import { HostProvider, MemoryPool } from "../../lib/index.ts";

test("remote() describes the whole size class; subregion() describes only what was asked for", () => {
  using provider = new HostProvider();
  using pool = new MemoryPool(provider, { small: { initialCount: 0 }, medium: { initialCount: 1 }, large: { initialCount: 0 }, huge: { initialCount: 0 } });
  using region = pool.getRegion(4000);
  expect(region.size).toBe(16 * 1024);
  expect(region.remote().length).toBe(16 * 1024);
  expect(region.remote().subregion(0, 4000).length).toBe(4000);
});

test("one key covers every region of a block, and a released region keeps its key and its bytes", () => {
  using provider = new HostProvider();
  using pool = new MemoryPool(provider, { small: { initialCount: 2 }, medium: { initialCount: 0 }, large: { initialCount: 0 }, huge: { initialCount: 0 } });
  const first = pool.getRegion(100);
  const second = pool.getRegion(100);
  expect(first.remoteKey).toBe(second.remoteKey);
  first.view[0] = 42;
  const key = first.remoteKey;
  pool.releaseRegion(first);
  const again = pool.getRegion(100);
  expect(again.remoteKey).toBe(key);
  expect(again.view[0]).toBe(42);
  pool.releaseRegion(again);
  pool.releaseRegion(second);
});
