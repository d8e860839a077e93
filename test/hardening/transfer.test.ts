// Issue 10 #8: a caller moves pool memory out of a region's view (`region.view.buffer.transfer()`).
// What the library does: each region's view has a buffer of its own, exactly the region, so the
// transfer takes only that region; a pooled region whose view was emptied leaves service for good
// (a get never hands out a view of length 0); close() and the release of a temporary region finish
// without throwing, unpin everything, and never unmap memory the stray buffer still points at (its
// pages become fresh zero pages instead). Runs in child processes: a mistake here is a SIGSEGV.
import { afterAll, describe, expect, test } from "bun:test";
import { HostProvider, MemoryBlockAllocator, MemoryPool } from "../../lib/index.ts";
import { runBun } from "../helpers.ts";

const tiny = {
  small: { chunkSize: 256, initialCount: 4 }, medium: { chunkSize: 4096, initialCount: 1 },
  large: { chunkSize: 65536, initialCount: 1 }, huge: { chunkSize: 1 << 20, initialCount: 1 },
};

/** Runs `body` in a child with `lck()` and `pool` in scope; its last line prints the result JSON. */
function child(body: string) {
  const r = runBun(`
    import { MemoryPool, HostProvider } from "./lib/index.ts";
    const lck = () => Number(/VmLck:\\s+(\\d+)/.exec(require("fs").readFileSync("/proc/self/status", "utf8"))[1]);
    const host = new HostProvider();
    const pool = new MemoryPool(host, ${JSON.stringify(tiny)});
    ${body}
  `);
  if (r.exitCode !== 0) throw new Error(`child exited with ${r.exitCode}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").at(-1)!);
}

describe("transfer() of pool memory", () => {
  const host = new HostProvider();
  afterAll(() => host.close());

  test("a region's view.buffer is exactly the region: it reaches no neighbour", () => {
    using pool = new MemoryPool(host, tiny);
    const a = pool.getRegion(10);
    const b = pool.getRegion(10);
    for (const r of [a, b, pool.getRegion(5000), pool.getRegion(4 << 20)]) {
      expect(r.view.buffer.byteLength).toBe(r.size);
      expect(r.view.byteOffset).toBe(0);
      pool.releaseRegion(r);
    }
  });

  test("a pooled region whose view was transferred is retired: never handed out again, neighbours untouched", () => {
    using pool = new MemoryPool(host, tiny);
    const regions = [0, 1, 2, 3].map(() => pool.getRegion(10));
    regions[1]!.view.fill(3);
    const stray = (regions[1]!.view.buffer as ArrayBuffer).transfer();
    expect(new Uint8Array(stray)[0]).toBe(3); // the caller has the memory now
    for (const r of regions) pool.releaseRegion(r);
    const again = [0, 1, 2, 3, 4, 5].map(() => pool.getRegion(10)); // 3 old ones, then growth
    for (const r of again) expect(r.view.byteLength).toBe(r.size);
    expect(again).not.toContain(regions[1]!);
    expect(regions[1]!.retired).toBe(true);
    const s = pool.stats();
    expect(s.retiredRegions).toBe(1);
    expect(s.regionsInUse).toBe(6);
    for (const r of again) pool.releaseRegion(r);
    expect(pool.audit().problems).toEqual([]);
  });

  test("close() after a transfer finishes, unpins everything, and the stray buffer stays safe to touch", () => {
    const out = child(`
      const baseline = lck();
      const region = pool.getRegion(10);
      const stray = region.view.buffer.transfer();
      pool.releaseRegion(region);
      const held = pool.getRegion(5000);
      held.view.buffer.transfer(); // and one still out at close
      let threw = null;
      try { pool.close(); } catch (e) { threw = String(e); }
      const view = new Uint8Array(stray);
      view[0] = 1; // would be SIGSEGV if the block had been unmapped under it (or another mapping's data)
      console.log(JSON.stringify({ threw, baseline, after: lck(), byte: view[0], length: view.length }));
    `);
    expect(out.threw).toBeNull();
    expect(out.baseline).toBeGreaterThan(0);
    expect(out.after).toBe(0); // the pool was the only locked memory of the child
    expect(out.byte).toBe(1);
    expect(out.length).toBe(256);
  });

  test("releasing a temporary region whose view was transferred finishes and unpins its block", () => {
    const out = child(`
      const region = pool.getRegion(4 << 20);
      const before = lck();
      const stray = region.view.buffer.transfer();
      let threw = null;
      try { pool.releaseRegion(region); } catch (e) { threw = String(e); }
      const view = new Uint8Array(stray);
      view.fill(5);
      const live = pool.stats().liveTemporaryRegions;
      let closeThrew = null;
      try { pool.close(); } catch (e) { closeThrew = String(e); }
      console.log(JSON.stringify({ threw, closeThrew, before, after: lck(), byte: view[view.length - 1], live }));
    `);
    expect(out.threw).toBeNull();
    expect(out.closeThrew).toBeNull();
    expect(out.before - out.after).toBeGreaterThanOrEqual((4 << 20) / 1024); // the temporary block and the pool
    expect(out.after).toBe(0);
    expect(out.byte).toBe(5);
    expect(out.live).toBe(0);
  });
});

describe("MemoryBlock.free after a transfer of its view", () => {
  test("free() neither throws nor leaves pages locked; the block reports the transfer; the stray stays safe", () => {
    const r = runBun(`
      import { MemoryBlockAllocator } from "./lib/index.ts";
      const lck = () => Number(/VmLck:\\s+(\\d+)/.exec(require("fs").readFileSync("/proc/self/status", "utf8"))[1]);
      const before = lck();
      const block = new MemoryBlockAllocator().allocate(8192);
      const stray = block.regionView(4096, 4096).buffer.transfer();
      const transferredBefore = block.transferred;
      block.free();
      new Uint8Array(stray).fill(1); // fresh zero pages under it: no SIGSEGV
      console.log(JSON.stringify({ transferredBefore, transferred: block.transferred, freed: block.freed,
        view: block.view.byteLength, locked: lck() - before, last: new Uint8Array(stray)[4095] }));
    `);
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout.trim())).toEqual({ transferredBefore: true, transferred: true, freed: true, view: 0, locked: 0, last: 1 });
  });

  test("regionView refuses ranges outside the block", () => {
    const block = new MemoryBlockAllocator().allocate(4096);
    try {
      for (const [offset, length] of [[-1, 10], [0, 0], [4000, 200], [0.5, 10], [NaN, 1]] as const) {
        expect(() => block.regionView(offset, length)).toThrow(RangeError);
      }
    } finally {
      block.free();
    }
  });
});

describe("MemoryBlock is frozen", () => {
  test("address and size (what free() unmaps) cannot be changed", () => {
    const block = new MemoryBlockAllocator().allocate(4096);
    try {
      const writable = block as unknown as Record<string, unknown>;
      expect(() => { writable.address = 4096; }).toThrow(TypeError);
      expect(() => { writable.size = 1 << 30; }).toThrow(TypeError);
      expect(Object.isFrozen(block)).toBe(true);
    } finally {
      block.free();
    }
    expect(block.freed).toBe(true);
  });
});
