// The pieces under the shared pool, in one thread: the tagged Treiber stack, the growth lock's
// lease, the shared key counter, and the capacity a shared pool is sized for.
import { expect, test } from "bun:test";
import { AllocToolsError, HostProvider, MemoryPool } from "../../lib/index.ts";
import { SharedKeyCounter } from "../../lib/memory/key-counter.ts";
import { LockResult } from "../../lib/sharing/growth-locks.ts";
import { SharedPoolState } from "../../lib/sharing/shared-pool-state.ts";
import { SharedStack, indexBitsFor } from "../../lib/sharing/shared-stack.ts";

function stack(capacity = 100): { s: SharedStack; words: Int32Array } {
  const words = new Int32Array(new SharedArrayBuffer(4 * (16 + capacity)));
  return { s: new SharedStack(words, 0, 16, indexBitsFor(capacity)), words };
}

test("LIFO, empty is -1, a batch goes on in one push", () => {
  const { s } = stack();
  expect(s.pop()).toBe(-1);
  s.push(3);
  s.push(0); // index 0 is a real index (stored as 1)
  expect(s.snapshot(10)).toEqual([0, 3]);
  s.pushAll([5, 7, 8, 9, 6], 1, 3); // a range of a source array, its first element on top
  expect(s.snapshot(10)).toEqual([7, 8, 9, 0, 3]);
  s.pushAll([], 0, 0);
  expect(s.snapshot(10)).toEqual([7, 8, 9, 0, 3]);
  expect([s.pop(), s.pop(), s.pop(), s.pop(), s.pop(), s.pop()]).toEqual([7, 8, 9, 0, 3, -1]);
});

test("ABA: a head back at the same index after pops and a push has another tag, so a stale CAS fails", () => {
  const { s, words } = stack();
  s.push(2);
  s.push(1); // stack: 1, 2
  const stale = Atomics.load(words, 0); // a pop reads head = 1, next = 2 ... and stalls
  expect(s.pop()).toBe(1);
  expect(s.pop()).toBe(2);
  s.push(1); // stack: 1 (next: none); same top index as the stale read
  expect(words[0]! & ((1 << indexBitsFor(100)) - 1)).toBe(stale & ((1 << indexBitsFor(100)) - 1));
  expect(Atomics.load(words, 0)).not.toBe(stale); // the stalled pop's CAS cannot succeed
  expect(s.snapshot(10)).toEqual([1]);
});

test("the tag wraps without disturbing the index", () => {
  const { s, words } = stack(3); // 2 index bits: 30 tag bits, wrapped here by hand
  words[0] = 0;
  s.push(1);
  words[0] = (words[0]! & 3) | (-1 << 2); // tag all ones: the next pop wraps it
  expect(s.pop()).toBe(1);
  expect(s.pop()).toBe(-1);
  s.push(2);
  expect(s.pop()).toBe(2);
});

test("a growth lock held by a live thread is never taken over, however long it takes", () => {
  const spec = {
    stacks: [0, 1, 2, 3].map(() => ({ chunkSize: 64, initialCount: 1, growCount: 1, capacity: 4, maxBlocks: 4 })),
    maxWorkers: 4, cacheSize: 0, maxUnpooledRegions: 0,
  };
  const a = SharedPoolState.create(spec);
  const b = SharedPoolState.attach(a.buffer, spec); // same thread: alive while this test runs
  expect(a.locks.lock(0)).toBe(LockResult.ACQUIRED);
  expect(b.locks.lock(1, 100)).toBe(LockResult.ACQUIRED); // other classes are not blocked
  b.locks.unlock(1);
  expect(b.locks.lock(0, 300)).toBe(LockResult.TIMED_OUT); // a is slow, not dead
  b.locks.unlock(0); // not b's: changes nothing
  expect(b.locks.lock(0, 50)).toBe(LockResult.TIMED_OUT);
  a.locks.unlock(0);
  expect(b.locks.lock(0, 100)).toBe(LockResult.ACQUIRED);
}, 20_000);

test("the key counter is shared: unique keys from every view, KEYS_EXHAUSTED at the limit", () => {
  const k = new SharedKeyCounter(5n);
  const other = new SharedKeyCounter(k.buffer);
  expect([k.take(10n, "x"), other.take(10n, "x"), k.take(10n, "x")]).toEqual([5n, 6n, 7n]);
  expect(other.take(9n, "x")).toBe(8n);
  expect(() => k.take(9n, "exhausted")).toThrow(AllocToolsError);
  expect(other.closed).toBe(false);
  k.markClosed();
  expect(other.closed).toBe(true);
});

test("a shared pool grows up to maxRegions, then refuses with PINNED_LIMIT and stays intact", () => {
  const provider = new HostProvider();
  try {
    const pool = new MemoryPool(provider, { small: { chunkSize: 64, initialCount: 1, growCount: 2, maxRegions: 5 } });
    pool.share({ cacheSize: 0 });
    const got = Array.from({ length: 5 }, () => pool.getRegion(10));
    let err: unknown;
    try { pool.getRegion(10); } catch (e) { err = e; }
    expect((err as AllocToolsError).code).toBe("PINNED_LIMIT");
    expect((err as Error).message).toContain("maxRegions");
    for (const r of got) pool.releaseRegion(r);
    const a = pool.audit();
    expect(a.problems).toEqual([]);
    expect(a.regions).toBe(5 + 32 + 16 + 2); // the other classes keep their defaults
    expect(pool.stats().stacks.small.regions).toBe(5);
    expect(pool.stats().stacks.small.gets).toBe(5);
    expect(pool.close().count).toBe(0);
  } finally {
    provider.close();
  }
});

test("unshared pools are untouched by sharing: same behaviour, audit agrees", () => {
  const provider = new HostProvider();
  try {
    using pool = new MemoryPool(provider, { small: { chunkSize: 64, initialCount: 2 } });
    const r = pool.getRegion(1);
    expect(pool.isAttached).toBe(false);
    expect(pool.audit()).toEqual({ regions: pool.stats().stacks.small.regions + 32 + 16 + 2, onStacks: 51, cached: 0, inUse: 1, lost: 0, problems: [] });
    pool.releaseRegion(r);
  } finally {
    provider.close();
  }
});

test("share() options are checked; attach refuses past maxWorkers and after close", () => {
  const provider = new HostProvider();
  try {
    const pool = new MemoryPool(provider, { small: { chunkSize: 64, initialCount: 1 } });
    expect(() => pool.share({ maxWorkers: 0 })).toThrow(RangeError);
    expect(() => pool.share({ cacheSize: -1 })).toThrow(RangeError);
    const handle = pool.share({ maxWorkers: 2 }); // the owner and one more
    const one = MemoryPool.attach(handle);
    expect(one.isAttached).toBe(true);
    expect(() => MemoryPool.attach(handle)).toThrow(/maxWorkers/);
    expect(one.close().count).toBe(0);
    expect(pool.close().count).toBe(0);
    expect(() => MemoryPool.attach(handle)).toThrow();
  } finally {
    provider.close();
  }
});

test("share() refuses more regions than the 16-bit index allows (the ABA tag keeps 16 bits)", () => {
  const provider = new HostProvider();
  const pool = new MemoryPool(provider, { small: { chunkSize: 64, initialCount: 1, maxRegions: 70_000 } });
  try {
    expect(() => pool.share()).toThrow(/at most 65535 regions/);
    expect(pool.isAttached).toBe(false);
    const r = pool.getRegion(10); // still a working, unshared pool
    pool.releaseRegion(r);
  } finally {
    pool.close();
    provider.close();
  }
});
