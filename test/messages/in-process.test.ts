// Tagged messages between endpoints of one process, each on its own provider and pool, over tcp
// and shm (and the basics over udp and sockets): every form, the sizes around each provider's
// thresholds (inject_size, rxm's 16 KiB eager limit, 4 MiB, 64 MiB) with receives posted before
// and after the message arrives, exact truncation, ANY_SOURCE and tag masks, order per (pair, tag)
// across the eager/rendezvous boundary, and receive()/messages() into the endpoint's pool.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { ANY_SOURCE, ANY_TAG, AllocToolsError, type Endpoint, type MemoryRegion } from "../../lib/index.ts";
import type { MemoryRegionImpl } from "../../lib/memory/region.ts";
import { describeFabric } from "../helpers.ts";
import { Group, RXM_EAGER_LIMIT, SHM, SOCKETS, TCP, UDP, type MessageCase } from "./message-pair.ts";
import { INTACT, landed, landing, payload } from "./landing.ts";

const MiB = 1 << 20;
const pinned = (r: MemoryRegion) => (r as MemoryRegionImpl).inFlight;

/** Turns every endpoint of the group until `done()` or `ms` pass. */
async function turnUntil(group: Group, done: () => boolean, ms = 5000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!done() && performance.now() < deadline) {
    for (const s of group.stations) s.endpoint.poll();
    await Bun.sleep(0);
  }
}

/** Lets a sent message arrive at the receiver (an unexpected message) before its receive is posted. */
async function letArrive(group: Group, ms = 30): Promise<void> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    for (const s of group.stations) s.endpoint.poll();
    await Bun.sleep(1);
  }
}

function thresholdSizes(inject: number, largest: number): number[] {
  const sizes = [0, 1, inject, inject + 1, RXM_EAGER_LIMIT, RXM_EAGER_LIMIT + 1, 4 * MiB, 64 * MiB];
  return [...new Set(sizes)].filter((s) => s <= largest).sort((x, y) => x - y);
}

function messageTests(c: MessageCase, full: boolean): void {
  let group: Group;
  let a: Endpoint;
  let b: Endpoint;
  /** b as a's peer, a as b's peer. */
  let toB: bigint;
  let fromA: bigint;
  beforeAll(() => {
    group = new Group(c, 3);
    a = group.endpoint(0);
    b = group.endpoint(1);
    toB = group.peer(0, 1);
    fromA = group.peer(1, 0);
  });
  afterAll(() => group?.close());

  const largest = full ? 64 * MiB : 4 * MiB;

  test(`sizes around the thresholds (0, 1, inject_size and one past it, 16 KiB and one past it, 4 MiB${full ? ", 64 MiB" : ""}), receive posted first and posted late: exact length, nothing past it`, async () => {
    const sizes = thresholdSizes(group.stations[0]!.injectSize, largest);
    const results: Record<string, unknown> = {};
    for (const size of sizes) {
      for (const late of [false, true]) {
        const seed = size % 251 + (late ? 1 : 0);
        const source = payload(group.pool(0), size, seed);
        const sink = landing(group.pool(1), size);
        let received;
        if (late) {
          const sent = a.send(source, size, toB, 40);
          await letArrive(group);
          received = await b.recv(sink, size, fromA, 40);
          await sent;
        } else {
          const pending = b.recv(sink, size, fromA, 40);
          await a.send(source, size, toB, 40);
          received = await pending;
        }
        results[`${size}${late ? " late" : ""}`] = { source: received.source, tag: received.tag, length: received.length, ...landed(sink, size, seed) };
        expect(pinned(source) + pinned(sink)).toBe(0);
        group.pool(0).releaseRegion(source);
        group.pool(1).releaseRegion(sink);
      }
    }
    const expected = Object.fromEntries(Object.keys(results).map((k) => [k, { source: fromA, tag: 40, length: Number.parseInt(k), ...INTACT }]));
    expect(results).toEqual(expected);
  }, 120_000);

  test("every form: send/recv, sendSync/recvSync, postSend/postRecv with completed(id)/received(id)", async () => {
    const inject = group.stations[0]!.injectSize;
    for (const size of [1, inject + 1, RXM_EAGER_LIMIT + 1, 200_000]) {
      const source = payload(group.pool(0), size, 7);
      const sink = landing(group.pool(1), size);
      // Sync: a small send completes without its receiver (the message waits unexpected); a
      // rendezvous one needs the receive posted, so it goes by postSend and is retired after.
      const id = a.postSend(source, size, toB, 41);
      const got = b.recvSync(sink, size, fromA, 41);
      await turnUntil(group, () => a.completed(id));
      expect([got.source, got.tag, got.length, landed(sink, size, 7)]).toEqual([fromA, 41, size, INTACT]);
      // sendSync after the receive is posted, at every size.
      sink.view.fill(0xa5, 0, size + 4096);
      const recvId = b.postRecv(sink, size, ANY_SOURCE, 42);
      a.sendSync(source, size, toB, 42);
      let received = b.received(recvId);
      while (received === null) { b.poll(); received = b.received(recvId); }
      expect([received.source as unknown, received.tag, received.length, landed(sink, size, 7)]).toEqual([c.reportsSource ? fromA : ANY_SOURCE, 42, size, INTACT]);
      expect(() => b.received(recvId)).toThrow(RangeError); // retired
      group.pool(0).releaseRegion(source);
      group.pool(1).releaseRegion(sink);
    }
  }, 60_000);

  test("truncation: a longer message fails TRUNCATED naming both lengths; the receive holds exactly its first bytes, nothing is written past it; in every form", async () => {
    const inject = group.stations[0]!.injectSize;
    const cases = [[2, 1], [inject + 1, inject], [RXM_EAGER_LIMIT + 1, 100], [RXM_EAGER_LIMIT, 0], [4 * MiB, RXM_EAGER_LIMIT + 1], [4 * MiB, 0]] as const;
    for (const [messageLength, receiveLength] of cases) {
      for (const form of ["promise", "sync", "post", "late"] as const) {
        const seed = (messageLength + receiveLength) % 253;
        const source = payload(group.pool(0), messageLength, seed);
        const sink = landing(group.pool(1), receiveLength);
        let error: unknown;
        if (form === "promise" || form === "late") {
          const sent = a.send(source, messageLength, toB, 43);
          if (form === "late") await letArrive(group);
          try { await b.recv(sink, receiveLength, fromA, 43); } catch (e) { error = e; }
          await sent;
        } else if (form === "sync") {
          const sent = a.postSend(source, messageLength, toB, 43);
          try { b.recvSync(sink, receiveLength, fromA, 43); } catch (e) { error = e; }
          await turnUntil(group, () => a.completed(sent));
        } else {
          const id = b.postRecv(sink, receiveLength, ANY_SOURCE, 43);
          const sent = a.send(source, messageLength, toB, 43);
          await turnUntil(group, () => { try { return b.received(id) !== null; } catch (e) { error = e; return true; } });
          await sent;
        }
        const where = `${messageLength} into ${receiveLength} (${form})`;
        expect({ where, code: (error as AllocToolsError)?.code, message: (error as Error)?.message?.includes(`${messageLength} bytes`) && (error as Error).message.includes(`${receiveLength} bytes`) })
          .toEqual({ where, code: "TRUNCATED", message: true });
        expect({ where, ...landed(sink, receiveLength, seed) }).toEqual({ where, ...INTACT });
        expect(pinned(sink)).toBe(0);
        group.pool(0).releaseRegion(source);
        group.pool(1).releaseRegion(sink);
      }
    }
    expect(b.inTransportCount).toBe(0);
  }, 120_000);

  test("ANY_SOURCE takes messages of both senders and names each; a receive from one sender leaves the other's message", async () => {
    const c2 = group.endpoint(2);
    const fromC = group.peer(1, 2);
    const sourceA = payload(group.pool(0), 100, 1);
    const sourceC = payload(group.pool(2), 100, 2);
    const sinks = [landing(group.pool(1), 100), landing(group.pool(1), 100)];
    // Both messages are waiting (unexpected) when the receives are posted: a's first.
    await a.send(sourceA, 100, toB, 44);
    await letArrive(group);
    await c2.send(sourceC, 100, group.peer(2, 1), 44);
    await letArrive(group);
    const fromCFirst = await b.recv(sinks[0]!, 100, fromC, 44); // skips a's earlier message
    const any = await b.recv(sinks[1]!, 100, ANY_SOURCE, 44);
    expect([fromCFirst.source, landed(sinks[0]!, 100, 2)]).toEqual([fromC, INTACT]);
    expect([any.source as unknown, landed(sinks[1]!, 100, 1)]).toEqual([c.reportsSource ? fromA : ANY_SOURCE, INTACT]);
    // Receives posted first: ANY_SOURCE twice, each message once, each named by its sender
    // (where the provider reports senders: the payload says who sent it).
    const pending = [b.recv(sinks[0]!, 100, ANY_SOURCE, 45), b.recv(sinks[1]!, 100, ANY_SOURCE, 45)];
    await Promise.all([a.send(sourceA, 100, toB, 45), c2.send(sourceC, 100, group.peer(2, 1), 45)]);
    const got = await Promise.all(pending);
    const senders = sinks.map((sink) => (landed(sink, 100, 1).mismatch === -1 ? fromA : landed(sink, 100, 2).mismatch === -1 ? fromC : null));
    expect(senders.slice().sort()).toEqual([fromA, fromC].sort());
    expect(got.map((r) => r.source as unknown)).toEqual(c.reportsSource ? senders : [ANY_SOURCE, ANY_SOURCE]);
    for (const r of [sourceA]) group.pool(0).releaseRegion(r);
    group.pool(2).releaseRegion(sourceC);
    for (const r of sinks) group.pool(1).releaseRegion(r);
  });

  test(c.masks ? "tag masks: ignored bits match anything, the others must match; ANY_TAG takes every tag; Received.tag is the message's own"
    : "tag masks are refused (NOT_SUPPORTED naming the provider), having taken nothing: the provider mishandles them", async () => {
    if (!c.masks) {
      const sink = landing(group.pool(1), 8);
      const code = (f: () => unknown) => { try { f(); return "none"; } catch (e) { return `${(e as AllocToolsError).code} ${/shm/.test((e as Error).message)}`; } };
      expect([
        code(() => b.recvSync(sink, 8, fromA, 0, { ignore: ANY_TAG })),
        code(() => b.postRecv(sink, 8, ANY_SOURCE, 0x10, { ignore: 0xf })),
        code(() => b.recv(sink, 8, fromA, 0, { ignore: 1 })), // a refusal throws, as for write()
        await b.receive(ANY_SOURCE, 0, { ignore: 0xff }).then(() => "none", (e) => `${e.code} ${/shm/.test(e.message)}`),
      ]).toEqual(["NOT_SUPPORTED true", "NOT_SUPPORTED true", "NOT_SUPPORTED true", "NOT_SUPPORTED true"]);
      expect([pinned(sink), b.inTransportCount]).toEqual([0, 0]);
      group.pool(1).releaseRegion(sink);
      return;
    }
    const source = payload(group.pool(0), 8, 3);
    const sink = landing(group.pool(1), 8);
    const tags = [0x1234_0001, 0x1234_ffff, 0xffff_ffff, 0, 0x0002_0000];
    for (const tag of tags) await a.send(source, 8, toB, tag);
    await letArrive(group);
    const masked = [await b.recv(sink, 8, fromA, 0x1234_0000, { ignore: 0xffff }), await b.recv(sink, 8, fromA, 0x1234_0000, { ignore: 0xffff })];
    expect(masked.map((r) => r.tag)).toEqual([0x1234_0001, 0x1234_ffff]);
    // 0x00010000 with the low byte ignored does not match 0x00020000: it stays for a later receive.
    const unmatched = b.postRecv(sink, 8, fromA, 0x0001_0000, { ignore: 0xff });
    await letArrive(group, 50);
    expect(b.received(unmatched)).toBeNull();
    expect((await b.recv(sink, 8, fromA, 0, { ignore: ANY_TAG })).tag).toBe(0xffff_ffff);
    expect((await b.recv(sink, 8, fromA, 0)).tag).toBe(0);
    expect((await b.recv(sink, 8, ANY_SOURCE, 0, { ignore: 0xffff_0000 })).tag).toBe(0x0002_0000);
    await a.send(source, 8, toB, 0x0001_00ab);
    await turnUntil(group, () => { const r = b.received(unmatched); if (r !== null) expect(r.tag).toBe(0x0001_00ab); return r !== null; });
    group.pool(0).releaseRegion(source);
    group.pool(1).releaseRegion(sink);
  });

  test("order per (pair, tag) across inject, eager, SAR and rendezvous sizes, receives posted first and late", async () => {
    const inject = group.stations[0]!.injectSize;
    const sizes = [1, RXM_EAGER_LIMIT, RXM_EAGER_LIMIT + 1, 2 * MiB, inject, 200_000, 0, RXM_EAGER_LIMIT + 1, 1, 2 * MiB, inject + 1, 5];
    for (const late of [false, true]) {
      const sources = sizes.map((size, i) => payload(group.pool(0), size, i + 10));
      const sinks = sizes.map(() => landing(group.pool(1), 2 * MiB));
      let recvIds: number[] = [];
      const post = () => (recvIds = sinks.map((sink) => b.postRecv(sink, 2 * MiB, fromA, 46)));
      if (!late) post();
      const sendIds = sizes.map((size, i) => a.postSend(sources[i]!, size, toB, 46));
      if (late) {
        await letArrive(group, 50);
        post();
      }
      const got: ({ length: number } | null)[] = sizes.map(() => null);
      await turnUntil(group, () => {
        recvIds.forEach((id, i) => { if (got[i] === null) got[i] = b.received(id); });
        return got.every((g) => g !== null);
      }, 20_000);
      const sent = new Set<number>();
      await turnUntil(group, () => sendIds.every((id) => sent.has(id) || (a.completed(id) && sent.add(id) !== null)));
      expect(got.map((g) => g?.length)).toEqual(sizes);
      expect(sinks.map((sink, i) => landed(sink, sizes[i]!, i + 10, 2 * MiB))).toEqual(sizes.map(() => INTACT));
      for (const r of sources) group.pool(0).releaseRegion(r);
      for (const r of sinks) group.pool(1).releaseRegion(r);
    }
  }, 60_000);

  test("receive(): a message of unknown size lands in a region of b's pool, exactly; messages() serves a stream until aborted", async () => {
    const pool = group.pool(1);
    const before = pool.audit().inUse;
    // 0 bytes: empty-receive.test.ts, in a child process (it crashed sockets).
    for (const size of [1, RXM_EAGER_LIMIT + 1, 4 * MiB]) {
      const source = payload(group.pool(0), size, 9);
      const sent = a.send(source, size, toB, 47);
      const message = await b.receive(ANY_SOURCE, 47);
      await sent;
      expect([message.source as unknown, message.tag, message.length, message.view.length]).toEqual([c.reportsSource ? fromA : ANY_SOURCE, 47, size, size]);
      expect(pool.indexOf(message.region)).toBeGreaterThanOrEqual(0); // the endpoint's pool
      expect(message.region.size).toBeGreaterThanOrEqual(Math.max(size, 1));
      expect(landed(message.region, size, 9, message.region.size - 4096)).toMatchObject({ mismatch: -1 });
      message.release();
      message.release(); // idempotent
      group.pool(0).releaseRegion(source);
    }
    const stream = new AbortController();
    const served: number[] = [];
    const server = (async () => {
      for await (const message of b.messages(48, { signal: stream.signal, ignore: c.masks ? 0xf : 0 })) {
        served.push(message.tag);
        message.release();
        if (served.length === 3) stream.abort();
      }
    })();
    const source = payload(group.pool(0), 64, 1);
    const tags = c.masks ? [48, 49, 0x3f] : [48, 48, 48];
    for (const tag of tags) await a.send(source, 64, toB, tag);
    await server;
    expect(served).toEqual(tags);
    expect(pool.audit().inUse).toBe(before);
    group.pool(0).releaseRegion(source);
  }, 60_000);

  test("many unexpected messages (1000 × 64 B) wait for receives posted late, in order", async () => {
    const source = payload(group.pool(0), 64, 0);
    const ids: number[] = [];
    for (let i = 0; i < 1000; i++) {
      source.view[0] = i & 0xff;
      source.view[1] = i >> 8;
      ids.push(a.postSend(source, 64, toB, 50));
      await turnUntil(group, () => a.completed(ids[i]!));
    }
    await letArrive(group);
    const sink = landing(group.pool(1), 64);
    for (let i = 0; i < 1000; i++) {
      const r = b.recvSync(sink, 64, fromA, 50);
      if (r.length !== 64 || sink.view[0] !== (i & 0xff) || sink.view[1] !== i >> 8) throw new Error(`message ${i}: ${r.length} bytes, first bytes ${sink.view[0]} ${sink.view[1]}`);
    }
    group.pool(0).releaseRegion(source);
    group.pool(1).releaseRegion(sink);
  }, 60_000);
}

for (const c of [TCP, SHM]) describeFabric(`tagged messages in one process [${c.label}]`, () => messageTests(c, true));
for (const c of [UDP, SOCKETS]) describeFabric(`tagged messages in one process [${c.label}]`, () => messageTests(c, false));
