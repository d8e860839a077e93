// Slots: a shared pool takes `maxWorkers` attached pools at once. A pool that detaches holding
// nothing frees its slot for the next attach, so a server that replaces its Workers over time
// never runs out; one that leaves a region in use, or whose Worker was terminated, keeps its slot
// (the region stays its own in the owner's report). Counters of every occupant stay in the totals.
// Each thread also starts warm: share() and attach put one free region of each class in its cache.
import { afterAll, expect, test } from "bun:test";
import { AllocToolsRangeError, HostProvider, MemoryPool, type SharedPoolHandle } from "../../lib/index.ts";
import type { Command } from "./worker-pool.ts";

const host = new HostProvider();
afterAll(() => host.close());

const HUGE = 1 << 20;

test("views that detach holding nothing free their slots: 50 attaches through a pool of 2 slots, totals exact", () => {
  const owner = new MemoryPool(host);
  const handle = owner.share({ maxWorkers: 2 });
  try {
    for (let i = 0; i < 50; i++) {
      const view = MemoryPool.attach(handle);
      const pooled = view.getRegion(100);
      const temporary = view.getRegion(2 * HUGE);
      const user = view.registerUserRegion(new Uint8Array(4096));
      expect(temporary.isTemp && user.isUser).toBe(true);
      for (const r of [pooled, temporary, user]) view.releaseRegion(r);
      expect(view.close().count).toBe(0);
    }
    const s = owner.stats();
    expect(s.temporaryRegions).toBe(50);
    expect(s.userRegions).toBe(50);
    expect(s.liveTemporaryRegions + s.liveUserRegions).toBe(0);
    expect(s.gets).toBe(150);
    expect(s.releases).toBe(150);
    expect(s.registrations - s.deregistrations).toBe(s.stacks.small.blocks + s.stacks.medium.blocks + s.stacks.large.blocks + s.stacks.huge.blocks);
    expect(owner.audit().problems).toEqual([]);
  } finally {
    expect(owner.close().count).toBe(0);
  }
});

test("a view that detaches with a region in use keeps its slot; the owner still reports the region", () => {
  const owner = new MemoryPool(host);
  const handle = owner.share({ maxWorkers: 2 });
  try {
    const view = MemoryPool.attach(handle);
    const kept = view.getRegion(100);
    const index = view.indexOf(kept);
    expect(view.close().count).toBe(1);
    // A refused attach takes no slot, so it can be tried twice.
    expect(() => MemoryPool.attach(handle)).toThrow(AllocToolsRangeError);
    expect(() => MemoryPool.attach(handle)).toThrow("2 attached pools at once");
    expect(owner.region(index).inUse).toBe(true);
  } finally {
    const report = owner.close();
    expect(report.count).toBe(1);
  }
});

test("Workers that come and go: 12 real Workers one after another through 2 slots, each attaching, working and detaching", async () => {
  const owner = new MemoryPool(host);
  const handle: SharedPoolHandle = owner.share({ maxWorkers: 2 });
  try {
    for (let i = 0; i < 12; i++) {
      const worker = new Worker(new URL("./worker-pool.ts", import.meta.url));
      try {
        // The Worker attaches, stamps and checks every region it holds, then closes (detaches).
        const reply = await ask(worker, { cmd: "stress", handle, id: i + 1, pairs: 2_000, maxHold: 8, sizes: [1024, 16 * 1024, 64 * 1024, HUGE] });
        expect(reply.errors).toEqual([]);
        expect(reply.gets).toBe(2_000);
        expect(reply.leaked).toBe(0);
      } finally {
        worker.terminate();
      }
    }
    const s = owner.stats();
    expect(s.gets).toBe(12 * 2_000);
    expect(s.releases).toBe(s.gets);
    const audit = owner.audit();
    expect(audit.problems).toEqual([]);
    expect(audit.inUse).toBe(0);
  } finally {
    expect(owner.close().count).toBe(0);
  }
});

type Reply = { ok: true; [key: string]: unknown } | { ok: false; error: string; code?: string };

function ask(worker: Worker, command: Command): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    worker.onmessage = (e: MessageEvent<Reply>) => (e.data.ok ? resolve(e.data) : reject(new Error(e.data.error)));
    worker.onerror = (e) => reject(new Error(e.message));
    worker.postMessage(command);
  });
}

test("share() and attach put one free region of each class in the thread's cache, where the stack has one", () => {
  const owner = new MemoryPool(host, { huge: { chunkSize: HUGE, initialCount: 1, growCount: 1 } });
  const smallFree = owner.stats().stacks.small.free;
  const handle = owner.share({ maxWorkers: 3 });
  try {
    const view = MemoryPool.attach(handle);
    const stacks = owner.stats().stacks;
    expect(stacks.small.cached).toBe(2); // the owner's and the view's
    expect(stacks.huge.cached).toBe(1); // the one huge region went to the owner; the view found none
    expect(stacks.small.free).toBe(smallFree); // cached regions are free all the same
    // The view's first get takes its cached region: no stack is touched, nothing grows.
    const region = view.getRegion(100);
    expect(owner.stats().stacks.small.cached).toBe(1);
    expect(owner.stats().growths).toBe(0);
    view.releaseRegion(region);
    expect(view.close().count).toBe(0);
    expect(owner.stats().stacks.small.cached).toBe(1); // detaching gave the view's cache back
  } finally {
    expect(owner.close().count).toBe(0);
  }
});
