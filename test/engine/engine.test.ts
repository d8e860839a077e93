// The operation engine (lib/engine/endpoint-engine.ts) driven through a fake transport adapter:
// logic only, no fabric. Each transport's own tests (test/rma, test/ucx, test/mpi) then keep to
// what is the transport's own. The local memory is a host pool's real regions, so pinning
// (`inFlight`) is the pool's real pinning.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { AllocToolsError, HostProvider, MemoryPool, RmaTimeoutError, type MemoryRegion } from "../../lib/index.ts";
import { Posted } from "../../lib/engine/transport.ts";
import { FakeEndpoint, FinishingTransport } from "./fake-transport.ts";

let provider: HostProvider;
let pool: MemoryPool;
let region: MemoryRegion;
/** Set by a test that leaves memory pinned for good: its provider cannot close (BUSY), by design. */
let leaveOpen = false;

beforeEach(() => {
  provider = new HostProvider();
  pool = new MemoryPool(provider, { small: { chunkSize: 1024, initialCount: 4 }, medium: { chunkSize: 16384, initialCount: 1 }, large: { chunkSize: 65536, initialCount: 1 }, huge: { chunkSize: 1 << 20, initialCount: 1 } });
  region = pool.getRegion(1024);
});

afterEach(() => {
  if (!leaveOpen) provider.close();
  leaveOpen = false;
});

const pinned = (r: MemoryRegion) => r.inFlight;
const code = (f: () => unknown): string => {
  try {
    f();
    return "none";
  } catch (e) {
    return e instanceof AllocToolsError ? e.code : (e as Error).name;
  }
};

describe("the three forms", () => {
  test("promise: resolves once the transport lets go; the region is pinned meanwhile and unpinned once", async () => {
    const ep = new FakeEndpoint(provider);
    const peer = ep.insert(new Uint8Array(1));
    const done = ep.write(region, 64, peer, FakeEndpoint.target());
    expect(pinned(region)).toBe(1);
    expect(ep.pendingCount).toBe(1);
    ep.fake.deliver(ep.fake.postedIds[0]!);
    await done;
    expect(pinned(region)).toBe(0);
    expect(ep.pendingCount).toBe(0);
    expect(ep.stats()).toEqual({ posted: 1, retried: 0, completed: 1, failed: 0, timedOut: 0, bytesWritten: 64, bytesRead: 0, bytesSent: 0, bytesReceived: 0 });
    ep.close();
  });

  test("sync: turns until the transport lets go, then returns; throws what the transport reported", () => {
    const ep = new FakeEndpoint(provider);
    const peer = ep.insert(new Uint8Array(1));
    ep.fake.completeAll = true;
    ep.writeSync(region, 64, peer, FakeEndpoint.target());
    expect(pinned(region)).toBe(0);
    ep.fake.completeAll = false;
    ep.fake.answers.push(Posted.POSTED);
    // The transport reports an error for the next operation at its first poll.
    const failure = new Error("remote access error");
    const realPoll = ep.fake.poll.bind(ep.fake);
    ep.fake.poll = () => {
      for (const op of ep.fake.engine.active) ep.fake.deliver(op.id, failure);
      return realPoll();
    };
    expect(() => ep.readSync(region, 64, peer, FakeEndpoint.target())).toThrow(failure);
    expect(pinned(region)).toBe(0);
    expect(ep.stats().failed).toBe(1);
    ep.close();
  });

  test("post: ids are numbers, completed(id) is false until the transport lets go, true once, then RangeError", () => {
    const ep = new FakeEndpoint(provider);
    const peer = ep.insert(new Uint8Array(1));
    const ids = Array.from({ length: 8 }, (_, i) => ep.postWrite(region.pointer(i * 8), 8, peer, FakeEndpoint.target()));
    expect(new Set(ids).size).toBe(8);
    expect(ids.every((id) => Number.isInteger(id) && id > 0)).toBe(true);
    expect(ids.map((id) => ep.completed(id))).toEqual(Array(8).fill(false));
    expect(pinned(region)).toBe(8);
    for (const id of ids.slice(0, 4)) ep.fake.deliver(id);
    expect(ep.poll()).toBe(4);
    expect(ids.map((id) => ep.completed(id))).toEqual([true, true, true, true, false, false, false, false]);
    expect(() => ep.completed(ids[0]!)).toThrow(RangeError);
    for (const id of ids.slice(4)) ep.fake.deliver(id);
    ep.poll();
    expect(ids.slice(4).every((id) => ep.completed(id))).toBe(true);
    expect(pinned(region)).toBe(0);
    expect(() => ep.completed(0)).toThrow(RangeError);
    expect(() => ep.completed(1.5)).toThrow(RangeError);
    ep.close();
  });

  test("a refused post: sync throws it, the promise rejects with it, completed(id) throws it; nothing stays pinned", async () => {
    const ep = new FakeEndpoint(provider);
    const peer = ep.insert(new Uint8Array(1));
    ep.fake.answers.push(Posted.FAILED, Posted.FAILED, Posted.FAILED);
    expect(() => ep.writeSync(region, 8, peer, FakeEndpoint.target())).toThrow(/fake_write refused/);
    await expect(ep.read(region, 8, peer, FakeEndpoint.target())).rejects.toThrow(/fake_read refused/);
    const id = ep.postWrite(region, 8, peer, FakeEndpoint.target());
    expect(() => ep.completed(id)).toThrow(/fake_write refused/);
    expect(pinned(region)).toBe(0);
    expect(ep.stats()).toEqual({ posted: 0, retried: 0, completed: 0, failed: 3, timedOut: 0, bytesWritten: 0, bytesRead: 0, bytesSent: 0, bytesReceived: 0 });
    ep.close();
  });

  test("bad input is refused before a slot is taken or anything is pinned", () => {
    const ep = new FakeEndpoint(provider);
    const peer = ep.insert(new Uint8Array(1));
    const small = FakeEndpoint.target(16);
    expect(code(() => ep.writeSync(region, 17, peer, small))).toBe("RangeError");
    expect(code(() => ep.postWrite(region, 0, peer, small))).toBe("RangeError");
    expect(code(() => ep.postWrite(region, 8, 99, small))).toBe("RangeError");
    expect(code(() => ep.postWrite({} as MemoryRegion, 8, peer, small))).toBe("TypeError");
    expect(code(() => ep.postWrite(region, 8, peer, {} as never))).toBe("TypeError");
    expect(ep.fake.postedIds).toEqual([]);
    expect(pinned(region)).toBe(0);
    expect(ep.pendingCount).toBe(0);
    ep.close();
  });
});

describe("pushed-back posts", () => {
  test("RETRY queues the operation; later ones queue behind it; a turn posts them again in order", () => {
    const ep = new FakeEndpoint(provider);
    const peer = ep.insert(new Uint8Array(1));
    ep.fake.answers.push(Posted.RETRY);
    const first = ep.postWrite(region, 8, peer, FakeEndpoint.target());
    const second = ep.postWrite(region.pointer(8), 8, peer, FakeEndpoint.target());
    expect(ep.fake.postedIds).toEqual([]); // the second waited behind the first
    ep.fake.answers.push(Posted.RETRY); // pushed back once more at the next turn
    ep.poll();
    expect(ep.fake.postedIds).toEqual([]);
    ep.poll();
    expect(ep.fake.postedIds).toEqual([first, second]);
    expect(ep.stats().retried).toBe(2);
    expect(ep.stats().posted).toBe(2);
    ep.close();
  });
});

describe("timeouts", () => {
  test("a late completion: the caller gets RmaTimeoutError at its deadline; the region stays pinned until the transport lets go", async () => {
    const ep = new FakeEndpoint(provider, { timeoutMs: 20 });
    const peer = ep.insert(new Uint8Array(1));
    const started = performance.now();
    const error = await ep.write(region, 8, peer, FakeEndpoint.target()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RmaTimeoutError);
    expect((error as RmaTimeoutError).function).toBe("fake_write");
    expect((error as RmaTimeoutError).timeoutMs).toBe(20);
    expect(performance.now() - started).toBeGreaterThanOrEqual(19);
    expect(ep.fake.abandoned).toHaveLength(1);
    expect(pinned(region)).toBe(1); // still in transport
    expect(ep.inTransportCount).toBe(1);
    expect(ep.pendingCount).toBe(0); // finishesAbandoned false: nobody waits, the event loop is not kept busy
    ep.fake.deliver(ep.fake.abandoned[0]!); // completes late
    ep.poll();
    expect(pinned(region)).toBe(0);
    expect(ep.inTransportCount).toBe(0);
    expect(ep.stats()).toEqual({ posted: 1, retried: 0, completed: 1, failed: 0, timedOut: 1, bytesWritten: 8, bytesRead: 0, bytesSent: 0, bytesReceived: 0 });
    ep.close();
  });

  test("sync forms: a pending writeSync, or one pushed back first, throws RmaTimeoutError after timeoutMs (its deadline starts with its wait)", () => {
    const ep = new FakeEndpoint(provider, { timeoutMs: 20 });
    const peer = ep.insert(new Uint8Array(1));
    for (const answers of [[], [Posted.RETRY]]) {
      ep.fake.answers.push(...answers);
      const started = performance.now();
      expect(() => ep.writeSync(region, 8, peer, FakeEndpoint.target())).toThrow(RmaTimeoutError);
      const waited = performance.now() - started;
      expect(waited).toBeGreaterThanOrEqual(19);
      expect(waited).toBeLessThan(2_000);
    }
    expect(ep.stats().timedOut).toBe(2);
    for (const id of ep.fake.postedIds) ep.fake.deliver(id);
    ep.poll();
    expect(pinned(region)).toBe(0);
    ep.close();
  });

  test("post form: completed(id) throws the timeout once and retires the id; a late completion does not revive it", async () => {
    const ep = new FakeEndpoint(provider, { timeoutMs: 5 });
    const peer = ep.insert(new Uint8Array(1));
    const id = ep.postRead(region, 8, peer, FakeEndpoint.target());
    await Bun.sleep(15);
    ep.poll();
    expect(() => ep.completed(id)).toThrow(RmaTimeoutError);
    expect(() => ep.completed(id)).toThrow(RangeError);
    ep.fake.deliver(id);
    ep.poll();
    expect(() => ep.completed(id)).toThrow(RangeError);
    expect(pinned(region)).toBe(0);
    ep.close();
  });

  test("where the transport ends abandoned operations itself, pendingCount counts them until it does", async () => {
    const ep = new FakeEndpoint(provider, { timeoutMs: 5 });
    ep.fake.finishesAbandoned = true;
    const peer = ep.insert(new Uint8Array(1));
    const id = ep.postWrite(region, 8, peer, FakeEndpoint.target());
    await Bun.sleep(15);
    ep.poll();
    expect(() => ep.completed(id)).toThrow(RmaTimeoutError);
    expect(ep.pendingCount).toBe(1);
    ep.fake.deliver(id);
    ep.poll();
    expect(ep.pendingCount).toBe(0);
    ep.close();
  });
});

describe("completions delivered twice, ids reused", () => {
  test("a completion delivered twice is counted and unpins once", () => {
    const ep = new FakeEndpoint(provider);
    const peer = ep.insert(new Uint8Array(1));
    const a = ep.postWrite(region, 8, peer, FakeEndpoint.target());
    const b = ep.postWrite(region, 8, peer, FakeEndpoint.target());
    const opA = ep.fake.engine.inTransport(a)!;
    ep.fake.engine.complete(opA, null);
    ep.fake.engine.complete(opA, null);
    ep.fake.deliver(a);
    ep.poll();
    expect(pinned(region)).toBe(1); // b's pin is still there
    expect(ep.stats().completed).toBe(1);
    expect(ep.completed(a)).toBe(true);
    expect(ep.completed(b)).toBe(false);
    ep.fake.deliver(b);
    ep.poll();
    expect(ep.completed(b)).toBe(true);
    expect(pinned(region)).toBe(0);
    ep.close();
  });

  test("a retired id whose slot is reused names nothing: the new operation has a new id, the old one throws, a stale completion is ignored", () => {
    const ep = new FakeEndpoint(provider);
    const peer = ep.insert(new Uint8Array(1));
    const seen = new Set<number>();
    let previous = 0;
    for (let round = 0; round < 100; round++) {
      const id = ep.postWrite(region, 8, peer, FakeEndpoint.target());
      expect(seen.has(id)).toBe(false);
      seen.add(id);
      if (previous !== 0) {
        expect(() => ep.completed(previous)).toThrow(RangeError);
        ep.fake.deliver(previous); // a stale completion naming the old id
      }
      ep.fake.deliver(id);
      ep.poll();
      expect(ep.completed(id)).toBe(true);
      previous = id;
    }
    expect(ep.stats().completed).toBe(100);
    expect(pinned(region)).toBe(0);
    ep.close();
  });

  test("maxPending: one more than it is BUSY, and nothing is taken or pinned", () => {
    const ep = new FakeEndpoint(provider, { maxPending: 4 });
    const peer = ep.insert(new Uint8Array(1));
    for (let i = 0; i < 4; i++) ep.postWrite(region, 8, peer, FakeEndpoint.target());
    expect(code(() => ep.postWrite(region, 8, peer, FakeEndpoint.target()))).toBe("BUSY");
    expect(pinned(region)).toBe(4);
    ep.close();
  });
});

describe("close", () => {
  test("cancels what is posted, drains (what ends in time keeps its outcome), fails the rest with ENDPOINT_CLOSED; idempotent", async () => {
    const ep = new FakeEndpoint(provider, { closeTimeoutMs: 20 });
    const peer = ep.insert(new Uint8Array(1));
    const ids = [ep.postWrite(region, 8, peer, FakeEndpoint.target()), ep.postWrite(region, 8, peer, FakeEndpoint.target())];
    const promise = ep.write(region, 8, peer, FakeEndpoint.target()).then(() => "done", (e: AllocToolsError) => e.code);
    ep.fake.answers.push(Posted.RETRY);
    const queued = ep.postRead(region, 8, peer, FakeEndpoint.target()); // never posted
    ep.fake.deliver(ids[0]!); // ends during the drain
    const started = performance.now();
    ep.close();
    expect(performance.now() - started).toBeGreaterThanOrEqual(19); // the others were waited for, bounded
    ep.close();
    expect(ep.fake.closes).toBe(1);
    expect(ep.fake.cancelled.sort()).toEqual([...ids, ep.fake.postedIds[2]!].sort());
    expect(ep.completed(ids[0]!)).toBe(true);
    expect(code(() => ep.completed(ids[1]!))).toBe("ENDPOINT_CLOSED");
    expect(code(() => ep.completed(queued))).toBe("ENDPOINT_CLOSED");
    expect(await promise).toBe("ENDPOINT_CLOSED");
    expect(pinned(region)).toBe(0);
    expect(code(() => ep.writeSync(region, 8, peer, FakeEndpoint.target()))).toBe("ENDPOINT_CLOSED");
    expect(ep.poll()).toBe(0);
    expect(code(() => ep.progress())).toBe("ENDPOINT_CLOSED");
  });

  test("a transport that cannot let go at close keeps its operations pinned for good; the callers still get ENDPOINT_CLOSED", () => {
    const ep = new FakeEndpoint(provider, { closeTimeoutMs: 1 });
    ep.fake.releasesOnClose = false;
    const peer = ep.insert(new Uint8Array(1));
    const id = ep.postWrite(region, 8, peer, FakeEndpoint.target());
    ep.close();
    expect(code(() => ep.completed(id))).toBe("ENDPOINT_CLOSED");
    expect(pinned(region)).toBe(1);
    expect(code(() => pool.releaseRegion(region))).toBe("BUSY");
    expect(code(() => provider.close())).toBe("BUSY");
    leaveOpen = true;
  });

  test("the provider closes its endpoints first", () => {
    const ep = new FakeEndpoint(provider);
    provider.close();
    expect(ep.closed).toBe(true);
    expect(ep.fake.closes).toBe(1);
  });
});

describe("a failed transport", () => {
  test("a poll that throws fails every pending operation with it, and every later one; progress() throws it", async () => {
    const ep = new FakeEndpoint(provider, { closeTimeoutMs: 1 });
    const peer = ep.insert(new Uint8Array(1));
    const id = ep.postWrite(region, 8, peer, FakeEndpoint.target());
    const failure = new Error("fi_cq_read: the queue is broken");
    ep.fake.pollFailure = failure;
    ep.poll();
    expect(() => ep.completed(id)).toThrow(failure);
    await expect(ep.write(region, 8, peer, FakeEndpoint.target())).rejects.toThrow(failure);
    expect(() => ep.progress()).toThrow(failure);
    ep.close();
  });
});

describe("cached views", () => {
  test("without a cache a plain view is refused; with one it is acquired for the operation and given back when the transport lets go", async () => {
    const { RegistrationCache } = await import("../../lib/index.ts");
    const plain = new FakeEndpoint(provider);
    const view = new Uint8Array(4096);
    expect(code(() => plain.postWrite(view as never, 64, plain.insert(new Uint8Array(1)), FakeEndpoint.target()))).toBe("TypeError");
    plain.close();
    const cache = new RegistrationCache(provider);
    const ep = new FakeEndpoint(provider, { cache });
    const peer = ep.insert(new Uint8Array(1));
    const id = ep.postWrite(view, 64, peer, FakeEndpoint.target());
    expect(cache.stats().inUse).toBe(1);
    ep.fake.deliver(id);
    ep.poll();
    expect(ep.completed(id)).toBe(true);
    expect(cache.stats().inUse).toBe(0);
    ep.close();
    cache.close();
  });
});

describe("transports that finish sync operations in one call (finishNow)", () => {
  const open = (options = {}) => {
    const transport = new FinishingTransport();
    const ep = new FakeEndpoint(provider, options, transport);
    return { ep, transport, peer: ep.insert(new Uint8Array(1)) };
  };

  test("writeSync and readSync run through finishNow, not post: no slot, nothing left pinned, counted like any operation", () => {
    const { ep, transport, peer } = open();
    ep.writeSync(region, 64, peer, FakeEndpoint.target());
    region.view.fill(0);
    ep.readSync(region, 32, peer, FakeEndpoint.target());
    expect(transport.finished.map((f) => [f.kind, f.length, f.peer, f.remoteAddress])).toEqual([["write", 64, peer, 0x1000], ["read", 32, peer, 0x1000]]);
    expect(transport.postedIds).toEqual([]);
    expect([...region.view.subarray(0, 33)]).toEqual([...Array(32).fill(0xab), 0]);
    expect(pinned(region)).toBe(0);
    expect(ep.pendingCount).toBe(0);
    expect(ep.stats()).toEqual({ posted: 2, retried: 0, completed: 2, failed: 0, timedOut: 0, bytesWritten: 64, bytesRead: 32, bytesSent: 0, bytesReceived: 0 });
    ep.close();
  });

  test("a refusal (FAILED) and an error found in the call (DONE with a failure) are thrown; the region is unpinned; the endpoint goes on", () => {
    const { ep, transport, peer } = open();
    transport.nowAnswers.push(Posted.FAILED);
    expect(() => ep.writeSync(region, 8, peer, FakeEndpoint.target())).toThrow("fake_write refused at once");
    const found = new Error("MPI_Win_flush failed");
    transport.failure = found;
    expect(() => ep.readSync(region, 8, peer, FakeEndpoint.target())).toThrow(found);
    expect(pinned(region)).toBe(0);
    ep.writeSync(region, 8, peer, FakeEndpoint.target());
    expect(ep.stats()).toMatchObject({ posted: 2, completed: 1, failed: 2 });
    ep.close();
  });

  test("bad input is refused before the transport sees anything, as on the table's path", () => {
    const { ep, transport, peer } = open();
    expect(code(() => ep.writeSync(region, 0, peer, FakeEndpoint.target()))).toBe("RangeError");
    expect(code(() => ep.writeSync(region, 64, peer, FakeEndpoint.target(32)))).toBe("RangeError");
    expect(code(() => ep.writeSync(region, 2048, peer, FakeEndpoint.target()))).toBe("RangeError");
    expect(code(() => ep.writeSync(region, 8, peer, { address: 0x1000n, key: 7n, length: 64 } as never))).toBe("TypeError");
    expect(code(() => ep.writeSync(region, 8, peer + 5, FakeEndpoint.target()))).toBe("RangeError");
    expect(transport.finished).toEqual([]);
    expect(pinned(region)).toBe(0);
    ep.close();
    expect(code(() => ep.writeSync(region, 8, peer, FakeEndpoint.target()))).toBe("ENDPOINT_CLOSED");
  });

  test("fetchAddSync and compareSwapSync: the operand and compare words reach the transport, the value found comes back", () => {
    const { ep, transport, peer } = open();
    transport.atomicFinds = 41n;
    expect(ep.fetchAddSync(peer, FakeEndpoint.target(), -1)).toBe(41n);
    transport.atomicFinds = 2n ** 64n - 1n;
    expect(ep.compareSwapSync(peer, FakeEndpoint.target(), 5n, 2n ** 63n)).toBe(2n ** 64n - 1n);
    expect(transport.finished.map((f) => [f.kind, f.operand, f.compare])).toEqual([["fetchAdd", 2n ** 64n - 1n, 0n], ["compareSwap", 2n ** 63n, 5n]]);
    ep.close();
  });

  test("promise and post forms still go through post and the table; with options.latency, and behind a pushed-back post, sync forms do too", async () => {
    const { ep, transport, peer } = open();
    transport.completeAll = true;
    await ep.write(region, 8, peer, FakeEndpoint.target());
    const id = ep.postRead(region, 8, peer, FakeEndpoint.target());
    ep.poll();
    expect(ep.completed(id)).toBe(true);
    expect(transport.postedIds).toHaveLength(2);
    transport.answers.push(Posted.RETRY);
    const queued = ep.postWrite(region, 8, peer, FakeEndpoint.target());
    ep.writeSync(region, 8, peer, FakeEndpoint.target()); // through the table, posted after the queued one
    expect(transport.postedIds).toHaveLength(4);
    expect(transport.postedIds[2]).toBe(queued);
    expect(transport.finished).toEqual([]);
    ep.close();
    const timed = open({ latency: true });
    timed.transport.completeAll = true;
    timed.ep.writeSync(region, 8, timed.peer, FakeEndpoint.target());
    expect(timed.transport.finished).toEqual([]);
    expect(timed.transport.postedIds).toHaveLength(1);
    expect(timed.ep.stats().latency?.write?.count).toBe(1);
    timed.ep.close();
  });

  test("a read into a plain view through a cache: the bytes reach the view, and the cached region goes back", async () => {
    const { RegistrationCache } = await import("../../lib/index.ts");
    const cache = new RegistrationCache(provider);
    const { ep, transport, peer } = open({ cache });
    const view = new Uint8Array(4096);
    transport.readByte = 0x5c;
    ep.readSync(view, 100, peer, FakeEndpoint.target());
    expect(view[0]).toBe(0x5c);
    expect(view[99]).toBe(0x5c);
    expect(view[100]).toBe(0);
    expect(cache.stats().inUse).toBe(0);
    ep.close();
    cache.close();
  });
});
