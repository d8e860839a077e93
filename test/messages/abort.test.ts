// Aborting a posted receive while its message arrives, on tcp and shm: the receive settles exactly
// once, either with the message (it had matched: the cancel came too late) or with the signal's
// reason, and then the message is still there for the next receive; either way its memory is
// unpinned and the next operation in its slot is not disturbed by a late completion.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { ANY_SOURCE, type Endpoint, type MemoryRegion } from "../../lib/index.ts";
import type { MemoryRegionImpl } from "../../lib/memory/region.ts";
import { describeFabric } from "../helpers.ts";
import { Group, SHM, TCP, type MessageCase } from "./message-pair.ts";
import { INTACT, landed, landing, payload } from "./landing.ts";

const pinned = (r: MemoryRegion) => (r as MemoryRegionImpl).inFlight;
/** Eager, SAR and rendezvous on rxm; inline and CMA on shm. */
const SIZES = [8, 20_000, 300_000];
const ROUNDS = 240;

/** How far the message got before the abort, by round. */
async function abortPoint(round: number, a: Endpoint, b: Endpoint): Promise<void> {
  switch (round % 4) {
    case 0: return; // before anyone progressed
    case 1: a.poll(); return; // the sender posted, maybe sent
    case 2: a.poll(); b.poll(); b.poll(); return; // the message may have arrived and matched
    default: await Bun.sleep(0); // an event-loop turn: maybe complete already
  }
}

function abortTests(c: MessageCase): void {
  let group: Group;
  beforeAll(() => { group = new Group(c, 2); });
  afterAll(() => group?.close());

  test(`${ROUNDS} receives aborted at four points while their message (${SIZES.join(", ")} B) arrives: each settles once, no message lost or delivered twice`, async () => {
    const [a, b] = [group.endpoint(0), group.endpoint(1)];
    const toB = group.peer(0, 1);
    const outcomes = { message: 0, aborted: 0 };
    const problems: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const size = SIZES[round % SIZES.length]!;
      const seed = round % 250;
      const source = payload(group.pool(0), size, seed);
      const sink = landing(group.pool(1), size);
      const controller = new AbortController();
      const reason = new Error(`abort ${round}`);
      let settled = 0;
      const receive = b.recv(sink, size, ANY_SOURCE, 60, { signal: controller.signal }).then(
        (r) => { settled++; return r; },
        (e) => { settled++; if (e !== reason) problems.push(`round ${round}: rejected with ${e}`); return null; });
      const sent = a.send(source, size, toB, 60);
      await abortPoint(round, a, b);
      controller.abort(reason);
      const got = await receive;
      await sent;
      if (got !== null) {
        outcomes.message++;
        if (got.length !== size || landed(sink, size, seed).mismatch !== -1) problems.push(`round ${round}: matched receive holds the wrong bytes`);
      } else {
        outcomes.aborted++;
        // The cancelled receive took nothing: the message is still there.
        sink.view.fill(0xa5);
        const again = await b.recv(sink, size, ANY_SOURCE, 60);
        if (again.length !== size || landed(sink, size, seed).mismatch !== -1) problems.push(`round ${round}: the message was lost to an aborted receive`);
      }
      if (pinned(sink) !== 0 || b.inTransportCount !== 0) problems.push(`round ${round}: still pinned (${pinned(sink)}) or in transport (${b.inTransportCount})`);
      // Nothing of this round is left to be taken twice: the next message on the tag is the next one sent.
      group.pool(1).releaseRegion(sink);
      group.pool(0).releaseRegion(source);
      if (settled !== 1) problems.push(`round ${round}: settled ${settled} times`);
    }
    const marker = payload(group.pool(0), 16, 251);
    const sink = landing(group.pool(1), 16);
    await a.send(marker, 16, toB, 60);
    const next = await b.recv(sink, 16, ANY_SOURCE, 60);
    expect([next.length, landed(sink, 16, 251)]).toEqual([16, INTACT]);
    expect(problems).toEqual([]);
    // Both outcomes happened: the race was run, not one side of it.
    expect(outcomes.message).toBeGreaterThan(0);
    expect(outcomes.aborted).toBeGreaterThan(0);
    group.pool(0).releaseRegion(marker);
    group.pool(1).releaseRegion(sink);
  }, 120_000);

  test("the post form: received(id) throws the reason once; a pre-aborted signal throws at once, in every form, taking nothing", async () => {
    const [a, b] = [group.endpoint(0), group.endpoint(1)];
    const sink = landing(group.pool(1), 64);
    const controller = new AbortController();
    const id = b.postRecv(sink, 64, ANY_SOURCE, 61, { signal: controller.signal });
    expect(pinned(sink)).toBe(1);
    controller.abort(new Error("stop"));
    let thrown: unknown;
    const deadline = performance.now() + 5000;
    while (thrown === undefined && performance.now() < deadline) {
      try { if (b.received(id) !== null) break; } catch (e) { thrown = e; }
      b.poll();
      await Bun.sleep(0);
    }
    expect((thrown as Error).message).toBe("stop");
    expect(() => b.received(id)).toThrow(RangeError); // retired by the throw
    expect(pinned(sink)).toBe(0);
    const aborted = AbortSignal.abort(new Error("already"));
    const before = b.stats().posted;
    expect(() => b.recvSync(sink, 64, ANY_SOURCE, 61, { signal: aborted })).toThrow("already");
    expect(() => b.postRecv(sink, 64, ANY_SOURCE, 61, { signal: aborted })).toThrow("already");
    expect(await b.recv(sink, 64, ANY_SOURCE, 61, { signal: aborted }).catch((e: Error) => e.message)).toBe("already");
    expect(await b.receive(ANY_SOURCE, 61, { signal: aborted }).catch((e: Error) => e.message)).toBe("already");
    expect([b.stats().posted, pinned(sink), b.inTransportCount]).toEqual([before, 0, 0]);
    // Nothing was taken: a message on the tag goes to the next receive.
    const source = payload(group.pool(0), 64, 5);
    await a.send(source, 64, group.peer(0, 1), 61);
    expect((await b.recv(sink, 64, ANY_SOURCE, 61)).length).toBe(64);
    group.pool(0).releaseRegion(source);
    group.pool(1).releaseRegion(sink);
  });

  test("receive() aborted while it waits, or as its message arrives: its pooled region goes back to the pool", async () => {
    const [a, b] = [group.endpoint(0), group.endpoint(1)];
    const pool = group.pool(1);
    const inUse = pool.audit().inUse;
    const source = payload(group.pool(0), 5000, 7);
    for (let round = 0; round < 60; round++) {
      const controller = new AbortController();
      const receive = b.receive(ANY_SOURCE, 62, { signal: controller.signal }).then((m) => m, () => null);
      const sent = round % 2 === 0 ? a.send(source, 5000, group.peer(0, 1), 62) : null;
      await abortPoint(round, a, b);
      controller.abort();
      const message = await receive;
      await sent;
      if (message !== null) {
        expect(message.length).toBe(5000);
        message.release();
      } else if (sent !== null) {
        (await b.receive(ANY_SOURCE, 62)).release(); // not lost
      }
      expect(pool.audit().inUse).toBe(inUse);
    }
    expect(b.inTransportCount).toBe(0);
    group.pool(0).releaseRegion(source);
  }, 60_000);
}

for (const c of [TCP, SHM]) describeFabric(`aborting receives [${c.label}]`, () => abortTests(c));
