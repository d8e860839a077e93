// Interop with a C peer the library never saw (test/messages/tagged-peer.c: plain fi_tsend,
// fi_tinject, fi_trecv and fi_fetch_atomic, written from docs/messaging.md's wire format alone),
// on tcp and shm: messages both ways in every form of the library at the sizes around the
// thresholds, the C side's sources and tags as the library sends them, the library's Received
// source naming the C peer, masks and truncation; and the C peer's remote atomics on a counter
// of this process interleaved with the library's.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { ANY_SOURCE, type AllocToolsError } from "../../lib/index.ts";
import { RXM_EAGER_LIMIT, Station, SHM, TCP } from "./message-pair.ts";
import { INTACT, landed, landing, payload } from "./landing.ts";
import { describeTaggedPeer, TaggedPeer, type CGot } from "./c-tagged-peer.ts";

const MiB = 1 << 20;
const ATOMICS = 1000;

for (const c of [TCP, SHM]) {
  describeTaggedPeer(`interop with a C peer [${c.label}]`, (binary) => {
    let peer: TaggedPeer;
    let station: Station;
    /** The C peer in this endpoint's address vector, and this endpoint in the C peer's. */
    let cAtBun: bigint;
    let bunAtC: bigint;
    let sizes: number[];

    beforeAll(async () => {
      station = new Station(c);
      peer = await TaggedPeer.start(binary, c.options.provider!, c.options.node);
      cAtBun = station.endpoint.insert(peer.name);
      bunAtC = await peer.insert(station.endpoint.name);
      const inject = station.injectSize;
      sizes = [...new Set([0, 1, inject, inject + 1, RXM_EAGER_LIMIT, RXM_EAGER_LIMIT + 1, 4 * MiB])].sort((x, y) => x - y);
    }, 30_000);
    afterAll(async () => {
      expect(await peer?.stop()).toBe(0);
      station?.close();
    });

    test("the library sends to C (promise, sync, post forms): C's fi_trecv gets the tag in the low half, the bytes, nothing past them, and names the sender", async () => {
      const endpoint = station.endpoint;
      for (const [f, form] of ["promise", "sync", "post"].entries()) {
        const tag = 0x8000_0000 + f; // the top bit of the 32: the high half of the 64-bit tag stays 0
        const largest = Math.max(...sizes);
        const received = peer.command<{ got: CGot[] }>(`recv ${bunAtC} ${tag} 0 ${largest} ${f * 16} ${sizes.length}`);
        for (const [i, size] of sizes.entries()) {
          const source = payload(station.pool, size, f * 16 + i);
          if (form === "promise") await endpoint.send(source, size, cAtBun, tag);
          else if (form === "sync") endpoint.sendSync(source, size, cAtBun, tag);
          else {
            const id = endpoint.postSend(source, size, cAtBun, tag);
            while (!endpoint.completed(id)) { endpoint.poll(); await Bun.sleep(0); }
          }
          station.pool.releaseRegion(source);
        }
        const got = (await received).got;
        expect({ form, got }).toEqual({ form, got: sizes.map((length) => ({ length, tag, source: Number(bunAtC), mismatch: -1, guard: -1 })) });
      }
    }, 60_000);

    test("C sends to the library (fi_tinject, fi_tsend): recv, recvSync, postRecv/received, receive() and messages() get the bytes and name the C peer", async () => {
      const endpoint = station.endpoint;
      const largest = Math.max(...sizes);
      for (const [f, form] of ["promise", "sync", "post", "receive", "messages"].entries()) {
        const tag = 200 + f;
        const seedBase = 40 + f * 16;
        const sent = peer.command(`send ${bunAtC} ${tag} ${seedBase} ${sizes.join(" ")}`);
        const results: { source: unknown; tag: number; length: number; mismatch: number; guard: number }[] = [];
        for (const i of sizes.keys()) {
          if (form === "receive" || form === "messages") {
            const message = form === "receive" ? await endpoint.receive(cAtBun, tag) : (await endpoint.messages(tag)[Symbol.asyncIterator]().next()).value!;
            results.push({ source: message.source, tag: message.tag, length: message.length, mismatch: landed(message.region, message.length, seedBase + i, message.region.size - 4096).mismatch, guard: -1 });
            message.release();
            continue;
          }
          const sink = landing(station.pool, largest);
          const r = form === "promise" ? await endpoint.recv(sink, largest, ANY_SOURCE, tag)
            : form === "sync" ? endpoint.recvSync(sink, largest, cAtBun, tag)
            : await (async () => {
              const id = endpoint.postRecv(sink, largest, ANY_SOURCE, tag);
              for (;;) { const got = endpoint.received(id); if (got !== null) return got; endpoint.poll(); await Bun.sleep(0); }
            })();
          results.push({ source: r.source, tag: r.tag, length: r.length, ...landed(sink, r.length, seedBase + i, largest) });
          station.pool.releaseRegion(sink);
        }
        await sent;
        expect({ form, results }).toEqual({ form, results: sizes.map((length) => ({ source: cAtBun, tag, length, mismatch: -1, guard: -1 })) });
      }
    }, 60_000);

    test("truncation of C's message, and (where masks are taken) a masked receive of it", async () => {
      const endpoint = station.endpoint;
      const sink = landing(station.pool, 100);
      const sent = peer.command(`send ${bunAtC} 300 7 5000`);
      let error: unknown;
      try { await endpoint.recv(sink, 100, cAtBun, 300); } catch (e) { error = e; }
      await sent;
      expect((error as AllocToolsError).code).toBe("TRUNCATED");
      expect((error as Error).message).toMatch(/5000 bytes.*100 bytes/);
      expect(landed(sink, 100, 7)).toEqual(INTACT);
      if (c.masks) {
        await peer.command(`send ${bunAtC} ${0x0301_00ff} 8 64`);
        const got = await endpoint.recv(sink, 100, ANY_SOURCE, 0x0301_0000, { ignore: 0xff });
        expect([got.tag, got.length, got.source]).toEqual([0x0301_00ff, 64, cAtBun]);
      }
      station.pool.releaseRegion(sink);
    }, 30_000);

    test(`C's fi_fetch_atomic interleaved with the library's fetchAdd on a counter here: ${2 * ATOMICS} adds, every value once, and C reads the total`, async () => {
      // The counter lives in this process; a second endpoint here adds to it while C does.
      const target = station.pool.getRegion(64);
      const words = new BigUint64Array(target.view.buffer, target.view.byteOffset, 8);
      words[0] = 0n;
      const remote = target.remote().subregion(0, 8);
      station.endpoint.startProgress(0); // the target applies every atomic in its progress
      const other = new Station(c);
      try {
        const toTarget = other.endpoint.insert(station.endpoint.name);
        const fromC = peer.command<{ values: number[] }>(`fetchadd ${bunAtC} ${remote.address} ${remote.key} ${ATOMICS}`, 120_000);
        const ours: number[] = [];
        const window: number[] = [];
        for (let posted = 0; ours.length < ATOMICS;) {
          while (posted < ATOMICS && window.length < 16) { window.push(other.endpoint.postFetchAdd(toTarget, remote, 1n)); posted++; }
          other.endpoint.poll();
          for (let i = window.length - 1; i >= 0; i--) {
            const value = other.endpoint.fetched(window[i]!);
            if (value !== null) { ours.push(Number(value)); window.splice(i, 1); }
          }
          await Bun.sleep(0);
        }
        const theirs = (await fromC).values;
        const all = [...ours, ...theirs].sort((x, y) => x - y);
        expect(all).toEqual(Array.from({ length: 2 * ATOMICS }, (_, i) => i));
        // Interleaved, not one after the other: each side saw values from the other's range.
        expect(Math.max(...theirs)).toBeGreaterThan(Math.min(...ours));
        expect(Math.max(...ours)).toBeGreaterThan(Math.min(...theirs));
        expect((await peer.command<{ value: string }>(`read ${bunAtC} ${remote.address} ${remote.key}`)).value).toBe(String(2 * ATOMICS));
        expect(words[0]).toBe(BigInt(2 * ATOMICS));
      } finally {
        station.endpoint.stopProgress();
        other.close();
        station.pool.releaseRegion(target);
      }
    }, 180_000);
  });
}
