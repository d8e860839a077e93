// Issue 10 #1, the pool's half: while an RMA operation uses a region (`inFlight`, counted by the
// endpoints with beginOperation/endOperation), nothing unmaps it. releaseRegion and close() refuse
// with BUSY and change nothing; the garbage-collection backstop cannot run, because the operation
// holds the region and the region holds its pool. Operations are begun here as an endpoint begins
// them; test/hardening/busy-endpoint.test.ts does the same with a real Endpoint.
import { afterAll, describe, expect, test } from "bun:test";
import { AllocToolsError, HostProvider, MemoryPool, type MemoryRegion, type PoolStats } from "../../lib/index.ts";
import { beginOperation, endOperation, type MemoryRegionImpl } from "../../lib/memory/region.ts";
import { runBun, vmLckKiB } from "../helpers.ts";

const tiny = {
  small: { chunkSize: 256, initialCount: 2 }, medium: { chunkSize: 4096, initialCount: 1 },
  large: { chunkSize: 65536, initialCount: 1 }, huge: { chunkSize: 1 << 20, initialCount: 1 },
};

function books(s: PoolStats) {
  return { gets: s.gets, releases: s.releases, inUse: s.regionsInUse, pinned: s.pinnedBytes, deregs: s.deregistrations, temps: s.liveTemporaryRegions };
}

function busyCode(f: () => unknown): string | undefined {
  try { f(); } catch (e) { return e instanceof AllocToolsError ? e.code : `untyped ${(e as Error).name}: ${(e as Error).message}`; }
  return undefined;
}

/** What an endpoint does around one operation on `region`. */
function inFlight(region: MemoryRegion): { end(): void } {
  const r = region as MemoryRegionImpl;
  beginOperation(r);
  return { end: () => endOperation(r) };
}

describe("BUSY while RMA is in flight", () => {
  const host = new HostProvider();
  afterAll(() => host.close());

  test("releaseRegion of a pooled region refuses with BUSY and changes nothing; after the operation it releases", () => {
    using pool = new MemoryPool(host, tiny);
    const region = pool.getRegion(100);
    const op = inFlight(region);
    expect(region.inFlight).toBe(1);
    const before = books(pool.stats());
    expect(busyCode(() => pool.releaseRegion(region))).toBe("BUSY");
    expect(books(pool.stats())).toEqual(before);
    expect(region.inUse).toBe(true);
    const other = pool.getRegion(100);
    expect(other).not.toBe(region); // the busy region never went back on the stack
    op.end();
    pool.releaseRegion(region);
    pool.releaseRegion(other);
    expect(pool.audit().problems).toEqual([]);
  });

  test("a temporary region is neither deregistered nor unmapped while busy", () => {
    using pool = new MemoryPool(host, tiny);
    const region = pool.getRegion(4 << 20);
    const lck = vmLckKiB();
    const op = inFlight(region);
    expect(busyCode(() => pool.releaseRegion(region))).toBe("BUSY");
    expect(vmLckKiB()).toBe(lck);
    region.view[region.size - 1] = 7; // still mapped: the transport may write here
    expect(pool.stats().liveTemporaryRegions).toBe(1);
    op.end();
    pool.releaseRegion(region);
    expect(vmLckKiB()).toBe(lck - (4 << 20) / 1024);
    expect(pool.stats().liveTemporaryRegions).toBe(0);
  });

  test("close() (and a user region's release) refuses with BUSY naming how many regions are busy; the pool stays open and closes after", () => {
    const pool = new MemoryPool(host, tiny);
    const a = pool.getRegion(100);
    const b = pool.getRegion(5000);
    const user = pool.registerUserRegion(new Uint8Array(64));
    const ops = [inFlight(a), inFlight(a), inFlight(user)];
    let message = "";
    try { pool.close(); } catch (e) { message = (e as Error).message; expect((e as AllocToolsError).code).toBe("BUSY"); }
    expect(message).toContain("2 region(s)");
    expect(message).toContain("3 RMA operation(s)");
    expect(pool.closed).toBe(false);
    expect(busyCode(() => pool.releaseRegion(user))).toBe("BUSY"); // a user region is not deregistered under RMA either
    expect(pool.stats().liveUserRegions).toBe(1);
    pool.releaseRegion(b);
    pool.releaseRegion(pool.getRegion(100)); // still serving
    a.view[0] = 1;
    for (const op of ops) op.end();
    expect(pool.close().count).toBe(2); // a and the user region were still out
    expect(a.view.byteLength).toBe(0);
  });

  test("endOperation without an operation in flight is a RangeError (an endpoint bug, not a wrap to -1)", () => {
    using pool = new MemoryPool(host, tiny);
    const region = pool.getRegion(10);
    expect(() => endOperation(region as MemoryRegionImpl)).toThrow(RangeError);
    expect(region.inFlight).toBe(0);
    pool.releaseRegion(region);
  });
});

describe("the GC backstop and operations in flight", () => {
  test("a dropped pool whose region an operation holds is not collected; once the operation ends it is", () => {
    const r = runBun(`
      import { MemoryPool, HostProvider } from "./lib/index.ts";
      import { beginOperation, endOperation } from "./lib/memory/region.ts";
      const lck = () => Number(/VmLck:\\s+(\\d+)/.exec(require("fs").readFileSync("/proc/self/status", "utf8"))[1]);
      const warnings = [];
      process.on("warning", (w) => warnings.push(w.message));
      const host = new HostProvider();
      // What an endpoint's pending operation keeps: the region (which keeps its pool). Work is
      // done inside functions so that no stale reference stays in this frame (conservative scan).
      const holder = { operation: null };
      (() => {
        const pool = new MemoryPool(host);
        const region = pool.getRegion(100);
        beginOperation(region);
        holder.operation = { region };
      })();
      const pinned = lck();
      for (let i = 0; i < 10; i++) { Bun.gc(true); await Bun.sleep(10); }
      const byte = (() => { const view = holder.operation.region.view; view.fill(9); return view[99]; })(); // still mapped
      const during = { warnings: warnings.length, lck: lck(), byte };
      (() => { endOperation(holder.operation.region); holder.operation = null; })();
      for (let i = 0; i < 50 && warnings.length === 0; i++) { Bun.gc(true); await Bun.sleep(20); }
      console.log(JSON.stringify({ pinned, during, after: { warnings, lck: lck() } }));
    `);
    expect(r.exitCode).toBe(0);
    const out = JSON.parse(r.stdout.trim());
    expect(out.pinned).toBeGreaterThan(0);
    expect(out.during).toEqual({ warnings: 0, lck: out.pinned, byte: 9 });
    expect(out.after.warnings.join("\n")).toContain("garbage-collected without close()");
    expect(out.after.lck).toBe(0);
  });
});
