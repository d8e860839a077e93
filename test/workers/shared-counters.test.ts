// Model-based test of a shared pool's statistics in one thread: the owner and views attached to it
// (each a slot with its own cache, as a Worker has) get and release in random order, release each
// other's regions, detach and attach again. Only releases are counted on the hot path and gets are
// derived from them (CACHE in shared-layout.ts), so every step that moves a cache's count without
// a get or release (fill at attach, spill, flush at detach, a release past a cache of size 0) must
// keep stats().gets and stats().releases exact, per class and in all.
import { afterAll, expect, test } from "bun:test";
import fc from "fast-check";
import { HostProvider, MemoryPool, type MemoryPoolOptions, type MemoryRegion } from "../../lib/index.ts";
import { SIZE_CLASSES } from "../../lib/pool/stack.ts";

const options: MemoryPoolOptions = {
  small: { chunkSize: 64, initialCount: 2, growCount: 2, maxRegions: 64 },
  medium: { chunkSize: 1024, initialCount: 1, growCount: 1, maxRegions: 64 },
  large: { chunkSize: 4096, initialCount: 1, growCount: 1, maxRegions: 64 },
  huge: { chunkSize: 8192, initialCount: 1, growCount: 1, maxRegions: 64 },
};
const CLASS_SIZES = [64, 1024, 4096, 8192];

type Op =
  | { kind: "get"; view: number; k: number }
  | { kind: "release"; view: number; pick: number }
  | { kind: "reattach"; view: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant("get" as const), view: fc.nat(2), k: fc.nat(3) }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant("release" as const), view: fc.nat(2), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("reattach" as const), view: fc.integer({ min: 1, max: 2 }) }) },
);

const host = new HostProvider();
afterAll(() => host.close());

for (const cacheSize of [0, 2, 16]) {
  test(`gets and releases stay exact through fills, spills, flushes and cross-view releases [cacheSize ${cacheSize}]`, () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 80 }), (ops) => {
        const owner = new MemoryPool(host, options);
        const handle = owner.share({ maxWorkers: 3, cacheSize }); // every reattach takes the slot its view left
        // View 0 is the owner; views 1 and 2 are attached (slots of their own, as Workers).
        const views = [owner, MemoryPool.attach(handle), MemoryPool.attach(handle)];
        const out: { region: MemoryRegion; k: number; gotBy: number }[] = [];
        const gets = [0, 0, 0, 0];
        const releases = [0, 0, 0, 0];
        try {
          for (const step of ops) {
            if (step.kind === "get") {
              out.push({ region: views[step.view]!.getRegion(CLASS_SIZES[step.k]!), k: step.k, gotBy: step.view });
              gets[step.k]!++;
            } else if (step.kind === "release" && out.length > 0) {
              const { region, k } = out.splice(step.pick % out.length, 1)[0]!;
              views[step.view]!.releaseRegion(region);
              releases[k]!++;
            } else if (step.kind === "reattach" && !out.some(({ gotBy }) => gotBy === step.view)) {
              // Detaching flushes the view's cache to the shared stacks; a new view fills its own.
              views[step.view]!.close();
              views[step.view] = MemoryPool.attach(handle);
            }
            const s = owner.stats();
            SIZE_CLASSES.forEach((name, k) => {
              expect(s.stacks[name].gets).toBe(gets[k]!);
              expect(s.stacks[name].releases).toBe(releases[k]!);
              expect(s.stacks[name].inUse).toBe(gets[k]! - releases[k]!);
            });
          }
          for (const { region } of out.splice(0)) owner.releaseRegion(region);
          const audit = owner.audit();
          expect(audit.problems).toEqual([]);
          expect(audit.inUse).toBe(0);
          expect(owner.stats().gets).toBe(owner.stats().releases);
        } finally {
          for (const view of views.slice(1)) view.close();
          owner.close();
        }
      }),
      { numRuns: 60 },
    );
  });
}
