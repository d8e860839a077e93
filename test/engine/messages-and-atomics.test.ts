// The engine's messages and remote atomics through the fake transport (logic only): the forms and
// what each returns, abort signals and receive deadlines that cancel (a message that matched is
// never lost to a caller told "failed"), receive() taking pool memory, messages(), atomics' cells,
// and the refusals before anything is posted. Each transport's own tests run the real thing.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { ANY_SOURCE, ANY_TAG, AllocToolsError, HostProvider, MemoryPool, Received, RmaTimeoutError, type MemoryRegion } from "../../lib/index.ts";
import { FakeEndpoint, FakeTransport } from "./fake-transport.ts";

let provider: HostProvider;
let pool: MemoryPool;
let region: MemoryRegion;

beforeEach(() => {
  provider = new HostProvider();
  pool = new MemoryPool(provider, { small: { chunkSize: 1024, initialCount: 4 }, medium: { chunkSize: 16384, initialCount: 1 }, large: { chunkSize: 65536, initialCount: 1 }, huge: { chunkSize: 1 << 20, initialCount: 1 } });
  region = pool.getRegion(1024);
});

afterEach(() => {
  provider.close();
});

const code = (f: () => unknown): string => {
  try {
    f();
    return "none";
  } catch (e) {
    return e instanceof AllocToolsError ? e.code : (e as Error).name;
  }
};
const lastPosted = (ep: FakeEndpoint) => ep.fake.postedIds[ep.fake.postedIds.length - 1]!;

describe("messages: the forms", () => {
  test("recv resolves with a Received naming source, tag and length; recvSync returns one; the region is pinned meanwhile", async () => {
    const ep = new FakeEndpoint(provider);
    const peer = ep.insert(new Uint8Array(1));
    const pending = ep.recv(region, 512, ANY_SOURCE, 7, { ignore: 0xff });
    expect(region.inFlight).toBe(1);
    ep.fake.deliverMessage(lastPosted(ep), peer, 0x47, 100);
    const received = await pending;
    expect(received).toBeInstanceOf(Received);
    expect([received.source, received.tag, received.length]).toEqual([peer, 0x47, 100]);
    expect(region.inFlight).toBe(0);
    const realPoll = ep.fake.poll.bind(ep.fake);
    ep.fake.poll = () => {
      for (const op of ep.fake.engine.active) if (op.kind === "recv") ep.fake.deliverMessage(op.id, peer, 9, 3);
      return realPoll();
    };
    const sync = ep.recvSync(region, 8, peer, 9);
    expect([sync.source, sync.tag, sync.length]).toEqual([peer, 9, 3]);
    ep.close();
  });

  test("postRecv/received(id): null while pending, the Received once, then RangeError; received() of a send is refused without retiring it", () => {
    const ep = new FakeEndpoint(provider);
    const peer = ep.insert(new Uint8Array(1));
    const id = ep.postRecv(region, 64, ANY_SOURCE, 1);
    expect(ep.received(id)).toBeNull();
    ep.fake.deliverMessage(id, peer, 1, 64);
    ep.poll();
    expect(ep.received(id)?.length).toBe(64);
    expect(() => ep.received(id)).toThrow(RangeError);
    const send = ep.postSend(region, 0, peer, 5); // zero-length messages are allowed
    expect(() => ep.received(send)).toThrow(/not a postRecv/);
    ep.fake.deliver(send);
    ep.poll();
    expect(ep.completed(send)).toBe(true);
    ep.close();
  });

  test("send resolves once the transport lets go; sendSync returns then", async () => {
    const ep = new FakeEndpoint(provider);
    const peer = ep.insert(new Uint8Array(1));
    const sent = ep.send(region, 64, peer, 3);
    ep.fake.deliver(lastPosted(ep));
    await sent;
    ep.fake.completeAll = true;
    ep.sendSync(region, 64, peer, 3);
    expect(region.inFlight).toBe(0);
    ep.close();
  });

  test("refusals before anything is taken: tags outside [0, 2^32), bad masks, bad signals, a send to ANY_SOURCE, an unknown peer", () => {
    const ep = new FakeEndpoint(provider);
    const peer = ep.insert(new Uint8Array(1));
    expect(code(() => ep.postSend(region, 8, peer, -1))).toBe("RangeError");
    expect(code(() => ep.postSend(region, 8, peer, 2 ** 32))).toBe("RangeError");
    expect(code(() => ep.postRecv(region, 8, peer, 1.5))).toBe("RangeError");
    expect(code(() => ep.postRecv(region, 8, peer, 1, { ignore: -1 }))).toBe("RangeError");
    expect(code(() => ep.postRecv(region, 8, peer, 1, { ignore: ANY_TAG + 1 }))).toBe("RangeError");
    expect(code(() => ep.postRecv(region, 8, peer, 1, { signal: {} as AbortSignal }))).toBe("TypeError");
    expect(code(() => ep.postSend(region, 8, ANY_SOURCE as number, 1))).toBe("RangeError");
    expect(code(() => ep.postRecv(region, 8, 99, 1))).toBe("RangeError");
    expect(code(() => ep.postRecv(region, 2048, peer, 1))).toBe("RangeError"); // past the region
    expect(ep.fake.postedIds).toEqual([]);
    expect(region.inFlight).toBe(0);
    ep.close();
  });

  test("a transport without messages: NOT_SUPPORTED with its reason", () => {
    const fake = new FakeTransport();
    fake.messaging = "this provider has no tagged messages";
    const ep = new FakeEndpoint(provider, {}, fake);
    const peer = ep.insert(new Uint8Array(1));
    expect(code(() => ep.postSend(region, 8, peer, 1))).toBe("NOT_SUPPORTED");
    expect(() => ep.recvSync(region, 8, peer, 1)).toThrow(/no tagged messages/);
    ep.close();
  });
});

describe("messages: abort signals and deadlines", () => {
  test("an aborted signal: recv rejects and recvSync throws with its reason, having posted and pinned nothing", async () => {
    const ep = new FakeEndpoint(provider);
    const reason = new Error("not wanted");
    const signal = AbortSignal.abort(reason);
    await expect(ep.recv(region, 8, ANY_SOURCE, 1, { signal })).rejects.toBe(reason);
    expect(() => ep.recvSync(region, 8, ANY_SOURCE, 1, { signal })).toThrow(reason);
    await expect(ep.receive(ANY_SOURCE, 1, { signal })).rejects.toThrow(/pool/); // no pool: refused first
    expect(ep.fake.postedIds).toEqual([]);
    expect(region.inFlight).toBe(0);
    ep.close();
  });

  test("abort while posted: the transport is asked to cancel; the receive rejects with the reason once it confirms, exactly once", async () => {
    const ep = new FakeEndpoint(provider);
    const controller = new AbortController();
    let settled = 0;
    const outcome = ep.recv(region, 8, ANY_SOURCE, 1, { signal: controller.signal }).then(() => "resolved", (e: unknown) => e).finally(() => settled++);
    const id = lastPosted(ep);
    controller.abort(new Error("user gave up"));
    expect(ep.fake.cancelled).toEqual([id]);
    expect(region.inFlight).toBe(1); // until the transport confirms
    ep.fake.deliver(id, new Error("FI_ECANCELED"));
    ep.poll();
    expect(((await outcome) as Error).message).toBe("user gave up");
    ep.fake.deliver(id); // a stray second completion changes nothing
    ep.poll();
    await Bun.sleep(1);
    expect(settled).toBe(1);
    expect(region.inFlight).toBe(0);
    ep.close();
  });

  test("abort racing a match: the message had matched, so the receive completes with it", async () => {
    const ep = new FakeEndpoint(provider);
    const peer = ep.insert(new Uint8Array(1));
    const controller = new AbortController();
    const outcome = ep.recv(region, 8, ANY_SOURCE, 1, { signal: controller.signal });
    const id = lastPosted(ep);
    controller.abort(new Error("too late"));
    ep.fake.deliverMessage(id, peer, 1, 8); // the transport says: it matched before the cancel
    ep.poll();
    expect((await outcome).length).toBe(8);
    ep.close();
  });

  test("a receive past timeoutMs is cancelled, not abandoned: RmaTimeoutError once the transport confirms; a match at the last moment wins", async () => {
    const ep = new FakeEndpoint(provider, { timeoutMs: 10 });
    const peer = ep.insert(new Uint8Array(1));
    const late = ep.postRecv(region, 8, ANY_SOURCE, 1);
    const lucky = ep.postRecv(region.pointer(8), 8, ANY_SOURCE, 2);
    await Bun.sleep(20);
    ep.poll();
    expect(ep.fake.cancelled.sort()).toEqual([late, lucky].sort());
    expect(ep.fake.abandoned).toEqual([]);
    expect(ep.received(late)).toBeNull(); // not until the transport confirms
    ep.fake.deliver(late, new Error("cancelled"));
    ep.fake.deliverMessage(lucky, peer, 2, 8);
    ep.poll();
    expect(() => ep.received(late)).toThrow(RmaTimeoutError);
    expect(ep.received(lucky)?.tag).toBe(2);
    expect(ep.stats().timedOut).toBe(2);
    ep.close();
  });
});

describe("receive(): a message of unknown size into the endpoint's pool", () => {
  test("the transport finds it, the engine gives it a pooled region of its length, the Message holds it until released", async () => {
    const ep = new FakeEndpoint(provider, { pool });
    const peer = ep.insert(new Uint8Array(1));
    const before = pool.stats().regionsInUse;
    const pending = ep.receive(ANY_SOURCE, 4);
    const id = lastPosted(ep);
    expect(ep.fake.found(id, 3000)).toBe(true);
    ep.fake.deliverMessage(id, peer, 4, 3000);
    ep.poll();
    const message = await pending;
    expect([message.source, message.tag, message.length, message.view.length]).toEqual([peer, 4, 3000, 3000]);
    expect(message.region.size).toBeGreaterThanOrEqual(3000);
    expect(message.region.inFlight).toBe(0);
    expect(pool.stats().regionsInUse).toBe(before + 1);
    message.release();
    message.release(); // idempotent
    expect(pool.stats().regionsInUse).toBe(before);
    ep.close();
  });

  test("without options.pool it is refused; a pool that cannot give the memory fails the receive with its error, nothing kept", async () => {
    const plain = new FakeEndpoint(provider);
    await expect(plain.receive(ANY_SOURCE, 1)).rejects.toThrow(TypeError);
    plain.close();
    const small = new MemoryPool(provider, { maxPinnedBytes: 4 << 20 });
    const ep = new FakeEndpoint(provider, { pool: small });
    const pending = ep.receive(ANY_SOURCE, 1).catch((e: unknown) => e);
    const id = lastPosted(ep);
    const before = small.stats().regionsInUse;
    expect(ep.fake.found(id, 64 << 20)).toBe(false); // above maxPinnedBytes
    ep.fake.deliver(id, ep.fake.engine.inTransport(id)!.failure);
    ep.poll();
    expect((await pending as AllocToolsError).code).toBe("PINNED_LIMIT");
    expect(small.stats().regionsInUse).toBe(before);
    ep.close();
  });

  test("a receive() that fails after its memory was taken gives the region back", async () => {
    const ep = new FakeEndpoint(provider, { pool });
    const before = pool.stats().regionsInUse;
    const pending = ep.receive(ANY_SOURCE, 1).catch((e: unknown) => e);
    const id = lastPosted(ep);
    ep.fake.found(id, 100);
    expect(pool.stats().regionsInUse).toBe(before + 1);
    ep.fake.deliver(id, new Error("the claim failed"));
    ep.poll();
    expect(((await pending) as Error).message).toBe("the claim failed");
    expect(pool.stats().regionsInUse).toBe(before);
    ep.close();
  });

  test("messages(): one Message after the other; ends when the signal aborts, and when the endpoint closes", async () => {
    const ep = new FakeEndpoint(provider, { pool });
    const peer = ep.insert(new Uint8Array(1));
    const controller = new AbortController();
    const seen: number[] = [];
    const loop = (async () => {
      for await (const message of ep.messages(5, { signal: controller.signal })) {
        seen.push(message.length);
        message.release();
      }
      return "ended";
    })();
    for (const length of [10, 20]) {
      await Bun.sleep(1);
      const id = lastPosted(ep);
      ep.fake.found(id, length);
      ep.fake.deliverMessage(id, peer, 5, length);
      ep.poll();
    }
    await Bun.sleep(1);
    controller.abort();
    const id = lastPosted(ep);
    ep.fake.deliver(id, new Error("cancelled"));
    ep.poll();
    expect(await loop).toBe("ended");
    expect(seen).toEqual([10, 20]);
    const closing = (async () => {
      for await (const message of ep.messages(6)) message.release();
      return "ended";
    })();
    await Bun.sleep(1);
    ep.close();
    expect(await closing).toBe("ended");
  });
});

describe("remote atomics", () => {
  test("fetchAddSync returns what the transport found; the operand reached its cell; negative numbers wrap", () => {
    const ep = new FakeEndpoint(provider);
    const peer = ep.insert(new Uint8Array(1));
    const realPost = ep.fake.post.bind(ep.fake);
    const operands: Array<[bigint, bigint]> = [];
    ep.fake.post = (op) => {
      const posted = realPost(op);
      operands.push(ep.fake.operands(op.id));
      ep.fake.deliverFetched(op.id, 41n);
      return posted;
    };
    expect(ep.fetchAddSync(peer, FakeEndpoint.target(8), 1)).toBe(41n);
    expect(ep.fetchAddSync(peer, FakeEndpoint.target(8), -1)).toBe(41n);
    expect(ep.compareSwapSync(peer, FakeEndpoint.target(8), 41n, 2n ** 64n - 1n)).toBe(41n);
    expect(operands).toEqual([[1n, 0n], [2n ** 64n - 1n, 0n], [2n ** 64n - 1n, 41n]]);
    ep.close();
  });

  test("promise and post forms: the value found; fetched(id) null while pending, the value once, then RangeError", async () => {
    const ep = new FakeEndpoint(provider);
    const peer = ep.insert(new Uint8Array(1));
    const pending = ep.fetchAdd(peer, FakeEndpoint.target(8), 5n);
    ep.fake.deliverFetched(lastPosted(ep), 2n ** 63n);
    expect(await pending).toBe(2n ** 63n);
    const id = ep.postCompareSwap(peer, FakeEndpoint.target(8), 0, 1);
    expect(ep.fetched(id)).toBeNull();
    ep.fake.deliverFetched(id, 0n);
    ep.poll();
    expect(ep.fetched(id)).toBe(0n);
    expect(() => ep.fetched(id)).toThrow(RangeError);
    const write = ep.postWrite(region, 8, peer, FakeEndpoint.target());
    expect(() => ep.fetched(write)).toThrow(/not an atomic/);
    ep.close();
  });

  test("refused before posting: a misaligned or short word, values outside 64 bits, a transport without atomics", () => {
    const ep = new FakeEndpoint(provider);
    const peer = ep.insert(new Uint8Array(1));
    const target = FakeEndpoint.target(64);
    expect(code(() => ep.postFetchAdd(peer, target.subregion(4), 1))).toBe("RangeError");
    expect(code(() => ep.postFetchAdd(peer, target.subregion(0, 4), 1))).toBe("RangeError");
    expect(code(() => ep.postFetchAdd(peer, target, 2n ** 64n))).toBe("RangeError");
    expect(code(() => ep.postFetchAdd(peer, target, 0.5))).toBe("RangeError");
    expect(code(() => ep.postFetchAdd(peer, target, "1" as never))).toBe("TypeError");
    expect(code(() => ep.postCompareSwap(peer, target, -(2n ** 63n) - 1n, 0))).toBe("RangeError");
    expect(ep.fake.postedIds).toEqual([]);
    ep.close();
    const fake = new FakeTransport();
    fake.atomics = "the provider has no FI_ATOMIC";
    const none = new FakeEndpoint(provider, {}, fake);
    expect(code(() => none.fetchAddSync(none.insert(new Uint8Array(1)), target, 1))).toBe("NOT_SUPPORTED");
    none.close();
  });

  test("a timed-out atomic keeps its slot (and cell) until the transport lets go: the late answer lands in its own cell", async () => {
    const ep = new FakeEndpoint(provider, { timeoutMs: 5 });
    const peer = ep.insert(new Uint8Array(1));
    const timedOut = ep.postFetchAdd(peer, FakeEndpoint.target(8), 1);
    await Bun.sleep(15);
    ep.poll();
    expect(() => ep.fetched(timedOut)).toThrow(RmaTimeoutError);
    const next = ep.postFetchAdd(peer, FakeEndpoint.target(8), 2);
    expect(next & 0xffff).not.toBe(timedOut & 0xffff); // not the timed-out operation's slot
    ep.fake.deliverFetched(timedOut, 111n); // late
    ep.fake.deliverFetched(next, 222n);
    ep.poll();
    expect(ep.fetched(next)).toBe(222n);
    ep.close();
  });
});

describe("counters", () => {
  test("bytes written, read, sent and received are counted once each operation completes (a receive counts what the message held)", () => {
    const ep = new FakeEndpoint(provider);
    const peer = ep.insert(new Uint8Array(1));
    const write = ep.postWrite(region, 100, peer, FakeEndpoint.target());
    const read = ep.postRead(region, 30, peer, FakeEndpoint.target());
    const send = ep.postSend(region, 7, peer, 1);
    const recv = ep.postRecv(region, 512, ANY_SOURCE, 1);
    for (const id of [write, read, send]) ep.fake.deliver(id);
    ep.fake.deliverMessage(recv, peer, 1, 40);
    ep.poll();
    expect(ep.stats()).toMatchObject({ bytesWritten: 100, bytesRead: 30, bytesSent: 7, bytesReceived: 40 });
    expect(ep.stats().latency).toBeUndefined();
    ep.close();
  });

  test("options.latency: percentiles by kind, from post to completion, p50 <= p90 <= p99 <= max", async () => {
    const ep = new FakeEndpoint(provider, { latency: true });
    const peer = ep.insert(new Uint8Array(1));
    for (let i = 0; i < 20; i++) {
      const id = ep.postWrite(region, 8, peer, FakeEndpoint.target());
      if (i === 19) await Bun.sleep(5);
      ep.fake.deliver(id);
      ep.poll();
      ep.completed(id);
    }
    const write = ep.stats().latency?.write;
    expect(write?.count).toBe(20);
    expect(write!.p50).toBeLessThanOrEqual(write!.p90);
    expect(write!.p90).toBeLessThanOrEqual(write!.p99);
    expect(write!.p99).toBeLessThanOrEqual(write!.max);
    expect(write!.max).toBeGreaterThanOrEqual(4000); // the slow one: at least 4 ms, in µs
    expect(ep.stats().latency?.read).toBeUndefined();
    expect(() => new FakeEndpoint(provider, { latency: "yes" as never })).toThrow(TypeError);
    ep.close();
  });
});
