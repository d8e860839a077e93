// Model-based test: random sequences of get, release, double release, user and temporary regions,
// growth and close, checked after every step against a simple model of what should be out. Hostile
// and careless steps are mixed in: releasing a Proxy of a region, releasing a region while an RMA
// operation uses it, transferring a region's memory out of its view before releasing it (what the
// stray buffer may then do is tested in child processes, in transfer.test.ts).
import { afterAll, expect, test } from "bun:test";
import fc from "fast-check";
import {
  AllocToolsError, HostProvider, MemoryBlockAllocator, MemoryPool, type MemoryBlock, type MemoryRegion,
} from "../../lib/index.ts";
import { beginOperation, endOperation, type MemoryRegionImpl } from "../../lib/memory/region.ts";
import { vmLckKiB } from "../helpers.ts";

const PAGE = 4096;
const options = {
  small: { chunkSize: 64, initialCount: 1, growCount: 3 },
  medium: { chunkSize: 1024, initialCount: 1, growCount: 2 },
  large: { chunkSize: 8192, initialCount: 0, growCount: 1 },
  huge: { chunkSize: 32768, initialCount: 1, growCount: 1 },
  maxPinnedBytes: 512 * 1024,
};

type Op =
  | { kind: "get"; bytes: number }
  | { kind: "release"; pick: number }
  | { kind: "releaseTwice"; pick: number }
  | { kind: "user"; pages: number }
  | { kind: "forge"; pick: number }
  | { kind: "busy"; pick: number }
  | { kind: "transfer"; pick: number }
  | { kind: "close" };

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 1, max: 70000 }).map((bytes) => ({ kind: "get" as const, bytes })) },
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 64 }).map((bytes) => ({ kind: "get" as const, bytes })) },
  { weight: 6, arbitrary: fc.nat().map((pick) => ({ kind: "release" as const, pick })) },
  { weight: 1, arbitrary: fc.nat().map((pick) => ({ kind: "releaseTwice" as const, pick })) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 3 }).map((pages) => ({ kind: "user" as const, pages })) },
  { weight: 1, arbitrary: fc.nat().map((pick) => ({ kind: "forge" as const, pick })) },
  { weight: 1, arbitrary: fc.nat().map((pick) => ({ kind: "busy" as const, pick })) },
  { weight: 1, arbitrary: fc.nat().map((pick) => ({ kind: "transfer" as const, pick })) },
  { weight: 1, arbitrary: fc.constant({ kind: "close" as const }) },
);

const host = new HostProvider();
const userMemory = new MemoryBlockAllocator({ lock: false }); // page-aligned, so VmLck is exact
afterAll(() => host.close());

test("random sequences keep the pool's books, pins and ownership exact", () => {
  const lck0 = vmLckKiB();
  fc.assert(
    fc.property(fc.array(op, { minLength: 1, maxLength: 60 }), (ops) => {
      const pool = new MemoryPool(host, options);
      const out: MemoryRegion[] = [];
      const released: MemoryRegion[] = [];
      const userBlocks = new Map<MemoryRegion, MemoryBlock>();
      let gets = 0;
      let releases = 0;
      let retired = 0;
      const strays: ArrayBuffer[] = []; // memory moved out of views (touched only in transfer.test.ts's child processes)
      let closed = false;
      try {
        for (const o of ops) {
          if (closed) break;
          const before = pool.stats();
          switch (o.kind) {
            case "get": {
              try {
                const r = pool.getRegion(o.bytes);
                expect(r.view.byteLength).toBe(r.size); // never a region whose memory left its view
                out.push(r);
                gets++;
              } catch (e) {
                expect((e as AllocToolsError).code).toBe("PINNED_LIMIT");
                expect(pool.stats()).toEqual(before); // a refused get changes nothing
              }
              break;
            }
            case "user": {
              const block = userMemory.allocate(o.pages * PAGE);
              try {
                const r = pool.registerUserRegion(block.view);
                userBlocks.set(r, block);
                out.push(r);
                gets++;
              } catch (e) {
                expect((e as AllocToolsError).code).toBe("PINNED_LIMIT");
                block.free();
              }
              break;
            }
            case "release": {
              if (out.length === 0) break;
              const [r] = out.splice(o.pick % out.length, 1);
              pool.releaseRegion(r!);
              releases++;
              userBlocks.get(r!)?.free();
              released.push(r!);
              break;
            }
            case "releaseTwice": {
              if (released.length === 0) break;
              const r = released[o.pick % released.length]!;
              if (out.includes(r)) break; // it was got again since: releasing it is legal
              expect(() => pool.releaseRegion(r)).toThrow(AllocToolsError);
              expect(pool.stats()).toEqual(before);
              break;
            }
            case "forge": {
              const candidates = [...out, ...released];
              if (candidates.length === 0) break;
              const r = candidates[o.pick % candidates.length]!;
              const proxy = new Proxy(r, { get: (t, k) => (k === "inUse" ? true : Reflect.get(t, k)) });
              expect(() => pool.releaseRegion(proxy)).toThrow(/look-alike/);
              expect(pool.stats()).toEqual(before);
              break;
            }
            case "busy": {
              if (out.length === 0) break;
              const r = out[o.pick % out.length]! as MemoryRegionImpl;
              beginOperation(r);
              try {
                expect(() => pool.releaseRegion(r)).toThrow(/RMA operation/);
                expect(() => pool.close()).toThrow(/RMA operation/);
                expect(pool.stats()).toEqual(before);
              } finally {
                endOperation(r);
              }
              break;
            }
            case "transfer": {
              if (out.length === 0) break;
              const [r] = out.splice(o.pick % out.length, 1);
              strays.push((r!.view.buffer as ArrayBuffer).transfer());
              if (r!.isUser) {
                expect(() => pool.releaseRegion(r!)).toThrow(/no memory any more/); // deregistered all the same
              } else {
                pool.releaseRegion(r!);
              }
              if (r!.isPartial) retired++;
              releases++;
              userBlocks.get(r!)?.free();
              released.push(r!);
              break;
            }
            case "close": {
              const report = pool.close();
              expect(report.count).toBe(out.length);
              expect(report.bytes).toBe(out.reduce((n, r) => n + r.size, 0));
              closed = true;
              break;
            }
          }
          if (!closed) check(pool, out, gets, releases, lck0);
        }
        // A retired region shows once its stack hands out past it.
        if (!closed) expect(pool.stats().retiredRegions).toBeLessThanOrEqual(retired);
      } finally {
        if (!closed) pool.close();
        for (const b of userBlocks.values()) b.free();
      }
      expect(strays.every((stray) => stray.byteLength > 0)).toBe(true);
      expect(vmLckKiB()).toBe(lck0);
    }),
    { numRuns: 150 },
  );
});

function check(pool: MemoryPool, out: MemoryRegion[], gets: number, releases: number, lck0: number): void {
  const s = pool.stats();
  // No region is out twice, and no two regions out overlap.
  expect(new Set(out).size).toBe(out.length);
  const spans = out.map((r) => [r.address, r.address + r.size] as const).sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < spans.length; i++) expect(spans[i]![0]).toBeGreaterThanOrEqual(spans[i - 1]![1]);
  // The statistics match the model.
  expect(s.gets).toBe(gets);
  expect(s.releases).toBe(releases);
  expect(s.regionsInUse).toBe(out.length);
  expect(s.liveTemporaryRegions).toBe(out.filter((r) => r.isTemp).length);
  expect(s.liveUserRegions).toBe(out.filter((r) => r.isUser).length);
  expect(s.hits + s.misses).toBe(Object.values(s.stacks).reduce((n, st) => n + st.gets, 0));
  // Pinned bytes are the live blocks, temporaries and user regions; the kernel agrees.
  const temps = out.filter((r) => r.isTemp).reduce((n, r) => n + Math.ceil(r.size / PAGE) * PAGE, 0);
  const users = out.filter((r) => r.isUser).reduce((n, r) => n + r.size, 0);
  const blocks = Object.values(s.stacks).reduce((n, st) => n + st.pinnedBytes, 0);
  expect(s.pinnedBytes).toBe(blocks + temps + users);
  expect(s.pinnedBytes).toBeLessThanOrEqual(options.maxPinnedBytes);
  expect((vmLckKiB() - lck0) * 1024).toBe(s.pinnedBytes);
}
