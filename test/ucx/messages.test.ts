// Tagged messages over UCX between endpoints (workers) of this process, on tcp and on shared memory
// with UCX-allocated blocks and with our own: every form at sizes 0, 1, the eager limit and one
// past it, 4 MiB and 64 MiB, byte for byte with nothing written past the message; receive() and
// messages() into the pool; ANY_SOURCE and tag masks; truncation; ordering across the
// eager/rendezvous boundary, pre-posted and unexpected; abort of a receive racing its message;
// deadlines; a sender never inserted; sender-id collisions at insert; refusals; heap allocation
// of the sync pair.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { fullGC, heapStats } from "bun:jsc";
import {
  ANY_SOURCE, ANY_TAG, AllocToolsError, MemoryPool, RmaTimeoutError, UcxEndpoint, UcxProvider, type MemoryRegion, type Received,
} from "../../lib/index.ts";
import type { MemoryRegionImpl } from "../../lib/memory/region.ts";
import { senderId } from "../../lib/ucx/sender-id.ts";
import { describeUcx } from "../helpers.ts";
import { fillPattern, firstMismatch, firstNot, SENTINEL } from "../rma/pattern.ts";
import { eagerLimit } from "./eager-limit.ts";
import { collidingAddress } from "./sender-ids.ts";

setDefaultTimeout(60_000);

const CASES = [
  { label: "tcp", transports: "tcp", netDevices: "lo" },
  { label: "shm, UCX-allocated blocks", transports: "posix,cma", allocateBlocks: true },
  { label: "shm, own blocks", transports: "sysv,cma", allocateBlocks: false },
] as const;

const MiB = 1 << 20;
const POOL = {
  small: { chunkSize: 4096, initialCount: 8 },
  medium: { chunkSize: 65_536, initialCount: 4 },
  large: { chunkSize: MiB, initialCount: 2 },
  huge: { chunkSize: 4 * MiB + 4096, initialCount: 4 },
} as const;
/** Bytes after each message in its receive buffer that must stay the sentinel. */
const SLACK = 64;

type Form = "promise" | "sendSync" | "recvSync" | "post";
const FORMS: readonly Form[] = ["promise", "sendSync", "recvSync", "post"];

const pinned = (r: MemoryRegion) => (r as MemoryRegionImpl).inFlight;

/** The error a call throws or a promise rejects with, as its code or name. */
async function failure(f: () => unknown): Promise<unknown> {
  try {
    await f();
  } catch (e) {
    return e;
  }
  throw new Error("expected a failure");
}

for (const c of CASES) {
  describeUcx(`UCX tagged messages in one process [${c.label}]`, () => {
    let provider: UcxProvider;
    let pool: MemoryPool;
    /** a and c send to b; b receives (and replies). */
    let a: UcxEndpoint;
    let b: UcxEndpoint;
    let cEp: UcxEndpoint;
    let toB: number;
    let cToB: number;
    let fromA: number;
    let fromC: number;
    let limit: number;
    let src: MemoryRegion;
    let dst: MemoryRegion;

    beforeAll(() => {
      provider = UcxProvider.open({ transports: c.transports, ...("netDevices" in c ? { netDevices: c.netDevices } : {}), ...("allocateBlocks" in c ? { allocateBlocks: c.allocateBlocks } : {}) });
      pool = new MemoryPool(provider, POOL);
      a = new UcxEndpoint(provider, { timeoutMs: 10_000 });
      b = new UcxEndpoint(provider, { timeoutMs: 10_000, pool });
      cEp = new UcxEndpoint(provider, { timeoutMs: 10_000 });
      toB = a.insert(b.name);
      cToB = cEp.insert(b.name);
      fromA = b.insert(a.name);
      fromC = b.insert(cEp.name);
      a.insert(a.name); // a peer index that is not b's, for the refusals
      limit = eagerLimit(c.transports, "netDevices" in c ? c.netDevices : undefined, "self");
      src = pool.getRegion(4 * MiB + 4096);
      dst = pool.getRegion(4 * MiB + 4096);
    });
    afterAll(() => {
      for (const ep of [a, b, cEp]) ep?.close();
      pool.releaseRegion(src);
      pool.releaseRegion(dst);
      expect(pool.close().count).toBe(0);
      provider.close();
    });

    /** Waits for posted receive `id` of `ep`, turning every endpoint of the thread. */
    const waitReceived = (ep: UcxEndpoint, id: number): Received<number> => {
      for (;;) {
        const got = ep.received(id);
        if (got !== null) return got;
        ep.poll();
      }
    };
    const waitCompleted = (ep: UcxEndpoint, id: number): void => {
      while (!ep.completed(id)) ep.poll();
    };

    /** One message of `length` bytes from a to b in `form`; b's receive takes `capacity` bytes. */
    async function transfer(form: Form, from: MemoryRegion, length: number, into: MemoryRegion, capacity: number, tag: number): Promise<Received<number>> {
      if (form === "promise") {
        const received = b.recv(into, capacity, fromA, tag);
        await a.send(from, length, toB, tag);
        return await received;
      }
      if (form === "sendSync") {
        const id = b.postRecv(into, capacity, fromA, tag);
        a.sendSync(from, length, toB, tag);
        return waitReceived(b, id);
      }
      if (form === "recvSync") {
        const id = a.postSend(from, length, toB, tag);
        const received = b.recvSync(into, capacity, fromA, tag);
        waitCompleted(a, id);
        return received;
      }
      const receiveId = b.postRecv(into, capacity, fromA, tag);
      const sendId = a.postSend(from, length, toB, tag);
      let sent = false;
      let received: Received<number> | null = null;
      while (!sent || received === null) {
        b.poll();
        if (!sent) sent = a.completed(sendId);
        if (received === null) received = b.received(receiveId);
      }
      return received;
    }

    test("the eager limit ucx_info reports is where a send starts to wait for its receive (rendezvous)", async () => {
      expect(limit).toBeGreaterThan(64);
      // Eager: complete with no receive posted (the message waits in b's worker, unexpected).
      const eager = a.postSend(src, limit, toB, 900);
      let eagerDone = false;
      for (let i = 0; i < 1000 && !eagerDone; i++) {
        a.poll();
        eagerDone = a.completed(eager);
      }
      expect(eagerDone).toBe(true);
      // One byte more: rendezvous, which completes only once b receives it.
      const rendezvous = a.postSend(src, limit + 1, toB, 901);
      let rendezvousDone = false;
      for (const until = performance.now() + 50; performance.now() < until && !rendezvousDone;) {
        a.poll();
        rendezvousDone = a.completed(rendezvous);
      }
      expect(rendezvousDone).toBe(false);
      expect(b.recvSync(dst, limit + 1, fromA, 901).length).toBe(limit + 1);
      waitCompleted(a, rendezvous);
      expect(b.recvSync(dst, limit, fromA, 900).length).toBe(limit);
    });

    test("every form moves 0, 1, eager limit, +1, 4 MiB and 64 MiB byte for byte; nothing past the message is written", async () => {
      const sizes = [0, 1, limit, limit + 1, 4 * MiB, 64 * MiB];
      const big = [pool.getRegion(64 * MiB + 4096), pool.getRegion(64 * MiB + 4096)] as const;
      try {
        for (const [i, length] of sizes.entries()) {
          const [from, into] = length > 4 * MiB ? big : [src, dst];
          fillPattern(from.view.subarray(0, length), i);
          for (const form of FORMS) {
            into.view.subarray(0, length + SLACK).fill(SENTINEL);
            const tag = 1000 + i;
            const got = await transfer(form, from, length, into, length + SLACK, tag);
            expect({ form, length, source: got.source, tag: got.tag, received: got.length }).toEqual({ form, length, source: fromA, tag, received: length });
            expect({ form, length, mismatch: firstMismatch(into.view.subarray(0, length), i), after: firstNot(into.view.subarray(length, length + SLACK), SENTINEL) })
              .toEqual({ form, length, mismatch: -1, after: -1 });
            expect([pinned(from), pinned(into)]).toEqual([0, 0]);
          }
        }
      } finally {
        for (const r of big) pool.releaseRegion(r);
      }
      expect([a.pendingCount, b.pendingCount, a.inTransportCount, b.inTransportCount]).toEqual([0, 0, 0, 0]);
    });

    test("receive() takes a pooled region of the message's length (a temporary one for 64 MiB); release() gives it back", async () => {
      const big = pool.getRegion(64 * MiB + 4096);
      try {
        for (const [i, length] of [0, 1, limit, limit + 1, 4 * MiB, 64 * MiB].entries()) {
          const from = length > 4 * MiB ? big : src;
          fillPattern(from.view.subarray(0, length), 40 + i);
          const inUse = pool.stats().regionsInUse;
          const sent = a.send(from, length, toB, 2000);
          const message = await b.receive(fromA, 2000);
          await sent;
          expect({ length, source: message.source, tag: message.tag, received: message.length, view: message.view.length }).toEqual({ length, source: fromA, tag: 2000, received: length, view: length });
          expect(message.region.size).toBeGreaterThanOrEqual(Math.max(length, 1));
          expect(firstMismatch(message.view, 40 + i)).toBe(-1);
          expect(pool.stats().regionsInUse).toBe(inUse + 1);
          expect(pinned(message.region)).toBe(0);
          message.release();
          expect(pool.stats().regionsInUse).toBe(inUse);
        }
      } finally {
        pool.releaseRegion(big);
      }
    });

    test("receive() into a pool that refuses the message's memory fails with the pool's error; the message is dropped whole and its sender completes", async () => {
      // Room for the default classes' first blocks (3.5 MiB), not for a temporary region of 2 MiB.
      const small = new MemoryPool(provider, { maxPinnedBytes: 4 * MiB });
      const receiver = new UcxEndpoint(provider, { timeoutMs: 10_000, pool: small });
      try {
        const fromAHere = receiver.insert(a.name);
        const toReceiver = a.insert(receiver.name);
        for (const length of [2 * MiB, 4 * MiB]) {
          const sent = a.send(src, length, toReceiver, 2500);
          const error = await failure(() => receiver.receive(fromAHere, 2500)) as AllocToolsError;
          expect({ length, code: error.code }).toEqual({ length, code: "PINNED_LIMIT" });
          await sent; // a rendezvous sender is told its message was taken
        }
        fillPattern(src.view.subarray(0, 100), 7);
        await a.send(src, 100, toReceiver, 2500);
        using next = await receiver.receive(fromAHere, 2500);
        expect([next.length, firstMismatch(next.view, 7)]).toEqual([100, -1]);
      } finally {
        receiver.close();
        small.close();
      }
    });

    test("messages() yields each message from any source until its signal aborts", async () => {
      const controller = new AbortController();
      const seen: Array<[number, number, number]> = [];
      const server = (async () => {
        for await (const message of b.messages(3000, { ignore: 0xff, signal: controller.signal })) {
          seen.push([message.source, message.tag, message.length]);
          message.release();
          if (seen.length === 4) controller.abort();
        }
      })();
      await a.send(src, 10, toB, 3001);
      await cEp.send(src, limit + 1, cToB, 3002);
      await a.send(src, 0, toB, 3003);
      await cEp.send(src, 4 * MiB, cToB, 3004);
      await server;
      // Messages of different senders are not ordered between them: compare by tag.
      expect(seen.sort((x, y) => x[1] - y[1])).toEqual([[fromA, 3001, 10], [fromC, 3002, limit + 1], [fromA, 3003, 0], [fromC, 3004, 4 * MiB]]);
    });

    test("ANY_SOURCE reports the sender as a peer usable for the reply; a named source matches only its own messages", async () => {
      // c's message first: a receive named for a does not take it.
      const forA = b.postRecv(dst, 100, fromA, 4000);
      await cEp.send(src, 7, cToB, 4000);
      for (let i = 0; i < 50; i++) b.poll();
      expect(b.received(forA)).toBeNull();
      await a.send(src, 5, toB, 4000);
      expect(waitReceived(b, forA)).toMatchObject({ source: fromA, length: 5 });
      // c's message is still there, for ANY_SOURCE; the reply goes to the source it names.
      const any = b.recvSync(dst, 100, ANY_SOURCE, 4000);
      expect(any).toMatchObject({ source: fromC, tag: 4000, length: 7 });
      const reply = cEp.recv(dst.pointer(1000), 100, cToB, 4001);
      b.sendSync(src, 3, any.source, 4001);
      expect(await reply).toMatchObject({ tag: 4001, length: 3 });
    });

    test("tag masks: ignored bits match anything, the others must match; ANY_TAG matches every tag", async () => {
      await a.send(src, 1, toB, 0x1300);
      await a.send(src, 2, toB, 0x12ab);
      // 0x12xx with the low byte ignored takes 0x12ab, not the older 0x1300.
      expect(b.recvSync(dst, 10, fromA, 0x1200, { ignore: 0xff })).toMatchObject({ tag: 0x12ab, length: 2 });
      expect(b.recvSync(dst, 10, ANY_SOURCE, 0, { ignore: ANY_TAG })).toMatchObject({ source: fromA, tag: 0x1300, length: 1 });
      // Tags at the edges of the 32 bits (their UCX tag words are not exact doubles in between).
      for (const tag of [0, 1, 0x1f_ffff, 0x20_0000, 0x7fff_ffff, 0x8000_0000, 0xffdf_ffff, 0xffe0_0000, 0xffff_ffff]) {
        await a.send(src, 4, toB, tag);
        expect(b.recvSync(dst, 10, fromA, tag)).toMatchObject({ source: fromA, tag, length: 4 });
      }
      await a.send(src, 4, toB, 0xabcd_1234);
      expect(b.recvSync(dst, 10, ANY_SOURCE, 0xabcd_0000, { ignore: 0xffff })).toMatchObject({ tag: 0xabcd_1234 });
    });

    test("truncation: TRUNCATED names both lengths, eager and rendezvous, posted first or late; nothing past the receive is written", async () => {
      const capacity = 100;
      const into = dst.pointer(8);
      for (const length of [limit, limit + 1, 4 * MiB]) {
        for (const order of ["posted first", "late"] as const) {
          for (const form of ["promise", "sync", "post"] as const) {
            if (form === "sync" && order === "posted first") continue; // a sync receive waits before anything else can be posted
            dst.view.fill(SENTINEL);
            let error: unknown;
            if (order === "posted first") {
              const promised = form === "promise" ? failure(() => b.recv(into, capacity, fromA, 5000)) : null;
              const id = form === "post" ? b.postRecv(into, capacity, fromA, 5000) : -1;
              await a.send(src, length, toB, 5000);
              error = await (promised ?? failure(() => waitReceived(b, id)));
            } else {
              const sent = a.postSend(src, length, toB, 5000);
              for (let i = 0; i < 50; i++) a.poll();
              error = await failure(() => form === "promise" ? b.recv(into, capacity, fromA, 5000)
                : form === "sync" ? b.recvSync(into, capacity, fromA, 5000) : waitReceived(b, b.postRecv(into, capacity, fromA, 5000)));
              waitCompleted(a, sent);
            }
            const e = error as AllocToolsError;
            expect({ length, order, form, name: e.name, code: e.code }).toEqual({ length, order, form, name: "AllocToolsError", code: "TRUNCATED" });
            expect(e.message).toContain(`a message of ${length} bytes is longer than the receive's ${capacity} bytes`);
            expect({ before: firstNot(dst.view.subarray(0, 8), SENTINEL), after: firstNot(dst.view.subarray(8 + capacity, 8 + capacity + 2 * limit), SENTINEL) })
              .toEqual({ before: -1, after: -1 });
            expect(pinned(dst)).toBe(0);
          }
        }
      }
      expect([a.inTransportCount, b.inTransportCount]).toEqual([0, 0]);
    });

    test("receives posted late (unexpected): eager sends complete at once, rendezvous ones once received; all arrive", async () => {
      const sizes = [1, limit, limit + 1, 4 * MiB];
      const sources = sizes.map((size, i) => {
        const r = pool.getRegion(size);
        fillPattern(r.view.subarray(0, size), 60 + i);
        return r;
      });
      try {
        const ids = sizes.map((size, i) => a.postSend(sources[i]!, size, toB, 6000 + i));
        for (let i = 0; i < 100; i++) a.poll();
        const done = ids.map((id) => a.completed(id));
        expect(done).toEqual([true, true, false, false]);
        for (const [i, size] of [...sizes.entries()].reverse()) {
          const got = b.recvSync(dst, 4 * MiB, fromA, 6000 + i);
          expect({ size, got: got.length, mismatch: firstMismatch(dst.view.subarray(0, size), 60 + i) }).toEqual({ size, got: size, mismatch: -1 });
        }
        waitCompleted(a, ids[2]!);
        waitCompleted(a, ids[3]!);
      } finally {
        for (const r of sources) pool.releaseRegion(r);
      }
    });

    test("one pair, one tag: messages arrive in the order sent across the eager/rendezvous boundary (posted first, late, and through receive())", async () => {
      const sizes = [limit, limit + 1, 1, 4 * MiB, 0, limit + 1, limit, MiB, 1, limit - 1, limit + 2];
      const sources = sizes.map((size, i) => {
        const r = pool.getRegion(Math.max(size, 1));
        fillPattern(r.view.subarray(0, size), 80 + i);
        return r;
      });
      const sinks = sizes.map((size) => pool.getRegion(Math.max(size, 1) + SLACK));
      const check = (i: number, got: { length: number }, view: Uint8Array) => ({ i, length: got.length, mismatch: firstMismatch(view.subarray(0, got.length), 80 + i) });
      const expected = sizes.map((size, i) => ({ i, length: size, mismatch: -1 }));
      try {
        // Posted first: each receive takes any length, so only the order decides what lands where.
        const receives = sinks.map((sink) => b.postRecv(sink, sink.size, fromA, 7000));
        const sends = sizes.map((size, i) => a.postSend(sources[i]!, size, toB, 7000));
        const got = receives.map((id) => waitReceived(b, id));
        for (const id of sends) waitCompleted(a, id);
        expect(got.map((g, i) => check(i, g, sinks[i]!.view))).toEqual(expected);
        // Late: every message sent before any receive.
        const late = sizes.map((size, i) => a.postSend(sources[i]!, size, toB, 7001));
        for (let i = 0; i < 100; i++) a.poll();
        const gotLate = sinks.map((sink) => b.recvSync(sink, sink.size, fromA, 7001));
        for (const id of late) waitCompleted(a, id);
        expect(gotLate.map((g, i) => check(i, g, sinks[i]!.view))).toEqual(expected);
        // receive(): probes in the order asked.
        const viaReceive = sizes.map((size, i) => a.send(sources[i]!, size, toB, 7002));
        const messages = await Promise.all(sizes.map(() => b.receive(fromA, 7002)));
        await Promise.all(viaReceive);
        expect(messages.map((m, i) => check(i, m, m.view))).toEqual(expected);
        for (const m of messages) m.release();
      } finally {
        for (const r of [...sources, ...sinks]) pool.releaseRegion(r);
      }
    });

    test("abort of a posted receive racing its message settles exactly once: the message is received, or the receive fails with the reason and the message waits for the next", async () => {
      const rounds = 120;
      let received = 0;
      let aborted = 0;
      for (let round = 0; round < rounds; round++) {
        const controller = new AbortController();
        const reason = new Error(`stop ${round}`);
        let settlements = 0;
        const outcome = b.recv(dst, 64, fromA, 8000, { signal: controller.signal }).then(
          (got) => { settlements++; return got; },
          (e) => { settlements++; return e; });
        const length = round % 3 === 0 ? limit + 1 : 16; // eager and rendezvous
        const sent = a.postSend(src, length, toB, 8000);
        for (let i = 0; i < round % 5; i++) b.poll();
        controller.abort(reason);
        const result = await outcome;
        await Bun.sleep(0);
        expect(settlements).toBe(1);
        if (result === reason) {
          aborted++;
          // The message was not taken: the next receive gets it.
          const next = b.recvSync(dst, limit + 1, fromA, 8000);
          expect(next.length).toBe(length);
        } else if (result instanceof AllocToolsError && result.code === "TRUNCATED") {
          received++; // a rendezvous message matched before the abort: truncated into 64 bytes
        } else {
          expect(result).toMatchObject({ source: fromA, length });
          received++;
        }
        waitCompleted(a, sent);
      }
      expect(received + aborted).toBe(rounds);
      expect({ bothOutcomesSeen: received > 0 && aborted > 0 }).toEqual({ bothOutcomesSeen: true });
      expect([b.pendingCount, b.inTransportCount, pinned(dst)]).toEqual([0, 0, 0]);
      // An already-aborted signal: the sync form throws its reason, the promise rejects with it, nothing is taken.
      const done = new AbortController();
      done.abort(new Error("already"));
      expect(() => b.recvSync(dst, 64, fromA, 8001, { signal: done.signal })).toThrow("already");
      expect(await failure(() => b.recv(dst, 64, fromA, 8001, { signal: done.signal }))).toBe(done.signal.reason);
      expect(await failure(() => b.receive(fromA, 8001, { signal: done.signal }))).toBe(done.signal.reason);
      // A posted receive and a receive() aborted while waiting: the reason, once; the pool takes nothing.
      const controller = new AbortController();
      const inUse = pool.stats().regionsInUse;
      const id = b.postRecv(dst, 64, fromA, 8002, { signal: controller.signal });
      const pending = failure(() => b.receive(fromA, 8002, { signal: controller.signal }));
      controller.abort(new Error("later"));
      expect(await pending).toBe(controller.signal.reason);
      expect(() => waitReceived(b, id)).toThrow("later");
      expect(pool.stats().regionsInUse).toBe(inUse);
      expect(pinned(dst)).toBe(0);
    });

    test("a receive past its deadline fails with RmaTimeoutError and takes nothing: the next message goes to the next receive", async () => {
      const quick = new UcxEndpoint(provider, { timeoutMs: 150 });
      try {
        const bToQuick = b.insert(quick.name);
        const fromB = quick.insert(b.name);
        const start = performance.now();
        const error = await failure(() => quick.recv(dst, 64, fromB, 9000));
        expect(error).toBeInstanceOf(RmaTimeoutError);
        expect((error as Error).message).toStartWith("ucp_tag_recv_nbx failed: Operation timed out");
        expect(performance.now() - start).toBeGreaterThanOrEqual(140);
        expect(() => quick.recvSync(dst, 64, fromB, 9000)).toThrow(RmaTimeoutError);
        b.sendSync(src, 9, bToQuick, 9000);
        expect(quick.recvSync(dst, 64, fromB, 9000).length).toBe(9);
        expect(quick.inTransportCount).toBe(0);
      } finally {
        quick.close();
      }
    });

    test("a message from a worker never inserted is received by ANY_SOURCE with source ANY_SOURCE (-1); a named receive does not take it", async () => {
      const stranger = new UcxEndpoint(provider, { timeoutMs: 5000 });
      try {
        const strangerToB = stranger.insert(b.name);
        const named = b.postRecv(dst, 64, fromA, 10_000);
        await stranger.send(src, 11, strangerToB, 10_000);
        for (let i = 0; i < 50; i++) b.poll();
        expect(b.received(named)).toBeNull();
        expect(b.recvSync(dst.pointer(100), 64, ANY_SOURCE, 10_000)).toMatchObject({ source: ANY_SOURCE, tag: 10_000, length: 11 });
        await a.send(src, 12, toB, 10_000);
        expect(waitReceived(b, named)).toMatchObject({ source: fromA, length: 12 });
        const message = await (async () => { await stranger.send(src, 13, strangerToB, 10_001); return b.receive(ANY_SOURCE, 10_001); })();
        expect([message.source, message.length]).toEqual([ANY_SOURCE, 13]);
        message.release();
      } finally {
        stranger.close();
      }
    });

    test("insert: an address with another inserted address's sender id is NOT_SUPPORTED and adds nothing; one address twice keeps its first peer for messages", async () => {
      const forged = collidingAddress(cEp.name, senderId(a.name));
      expect(senderId(forged)).toBe(senderId(a.name));
      const next = b.insert(a.name); // one address twice: allowed
      const error = await failure(() => b.insert(forged)) as AllocToolsError;
      expect([error.name, error.code]).toEqual(["AllocToolsError", "NOT_SUPPORTED"]);
      expect(error.message).toContain(`sender id 0x${senderId(a.name).toString(16).padStart(8, "0")}`);
      expect(error.message).toContain(`peer ${fromA}`);
      const again = b.insert(a.name);
      expect(again).toBe(next + 1); // the refused insert took no index
      await a.send(src, 3, toB, 11_000);
      expect(b.recvSync(dst, 8, ANY_SOURCE, 11_000).source).toBe(fromA);
      await b.send(src, 2, again, 11_001); // the second peer of the address reaches it
      expect(a.recvSync(dst, 8, ANY_SOURCE, 11_001).length).toBe(2);
    });

    test("refusals: uninserted peers, tags and masks out of range, lengths beyond the region, receive() without a pool; nothing is taken", async () => {
      const refusals = {
        sendToNobody: await failure(() => a.send(src, 1, 99, 1)),
        sendToAny: await failure(() => a.sendSync(src, 1, ANY_SOURCE as number, 1)),
        recvFromNobody: await failure(() => b.recv(dst, 1, 99, 1)),
        negativeTag: await failure(() => a.postSend(src, 1, toB, -1)),
        tagTooBig: await failure(() => a.send(src, 1, toB, 2 ** 32)),
        fractionalTag: await failure(() => b.recvSync(dst, 1, fromA, 1.5)),
        badMask: await failure(() => b.recv(dst, 1, fromA, 1, { ignore: 2 ** 32 })),
        tooLong: await failure(() => a.send(src, src.size + 1, toB, 1)),
        negativeLength: await failure(() => b.postRecv(dst, -1, fromA, 1)),
        noPool: await failure(() => a.receive(ANY_SOURCE, 1)),
      };
      const names = Object.fromEntries(Object.entries(refusals).map(([k, e]) => [k, (e as Error).name]));
      expect(names).toEqual({
        sendToNobody: "RangeError", sendToAny: "RangeError", recvFromNobody: "RangeError", negativeTag: "RangeError", tagTooBig: "RangeError",
        fractionalTag: "RangeError", badMask: "RangeError", tooLong: "RangeError", negativeLength: "RangeError", noPool: "TypeError",
      });
      expect([pinned(src), pinned(dst), a.pendingCount, b.pendingCount]).toEqual([0, 0, 0, 0]);
    });

    test("sendSync + recvSync allocate nothing per pair beyond the Received", () => {
      const n = 3000;
      const pair = () => {
        a.sendSync(src, 64, toB, 12_000);
        b.recvSync(dst, 64, fromA, 12_000);
      };
      const measured = cellsPerCall(pair, n);
      // The Received (an Object cell) per pair is counted, so an allocation would show beside it;
      // the ~100 cells the heap snapshots leave are well under 0.2 per pair.
      expect(measured.types.Object ?? 0).toBeGreaterThanOrEqual(n);
      expect({ perPair: measured.perCall < 1.2 ? "at most the Received" : measured }).toEqual({ perPair: "at most the Received" });
      // A tag whose UCX tag word is not exact as a double (2^30 << 32): its BigInt is made once, not per call.
      const wide = cellsPerCall(() => {
        a.sendSync(src, 64, toB, 0x4000_0000);
        b.recvSync(dst, 64, fromA, 0x4000_0000);
      }, n);
      expect({ perPair: wide.perCall < 1.2 ? "at most the Received" : wide }).toEqual({ perPair: "at most the Received" });
    });

    test("close with receives pending: they fail with ENDPOINT_CLOSED; messages() ends", async () => {
      const closing = new UcxEndpoint(provider, { timeoutMs: 10_000, pool });
      const fromAHere = closing.insert(a.name);
      const recv = failure(() => closing.recv(dst, 64, fromAHere, 13_000));
      const receive = failure(() => closing.receive(ANY_SOURCE, 13_000));
      const served: number[] = [];
      const server = (async () => { for await (const m of closing.messages(13_001)) { served.push(m.length); m.release(); } })();
      await Bun.sleep(5);
      closing.close();
      expect([(await recv as AllocToolsError).code, (await receive as AllocToolsError).code]).toEqual(["ENDPOINT_CLOSED", "ENDPOINT_CLOSED"]);
      await server;
      expect(served).toEqual([]);
      expect(pinned(dst)).toBe(0);
      expect(await failure(() => closing.send(src, 1, 0, 1))).toMatchObject({ code: "ENDPOINT_CLOSED" });
    });
  });
}

/** Heap cells left per call of `op` over `n` calls (after a warm-up), minus an empty loop's. */
function cellsPerCall(op: () => void, n: number): { perCall: number; types: Record<string, number> } {
  for (let i = 0; i < n; i++) op();
  const delta = (f: () => void) => {
    fullGC();
    const before = heapStats().objectTypeCounts;
    for (let i = 0; i < n; i++) f();
    const after = heapStats().objectTypeCounts;
    const types: Record<string, number> = {};
    let total = 0;
    for (const [k, v] of Object.entries(after)) {
      const d = v - (before[k] ?? 0);
      if (d > 0) { types[k] = d; total += d; }
    }
    return { total, types };
  };
  const base = delta(() => {});
  const m = delta(op);
  return { perCall: Math.max(0, m.total - base.total) / n, types: m.types };
}
