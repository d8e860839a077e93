// A message from a sender the receiver never inserted (libfabric 1.17). tcp;ofi_rxm reports its
// source as FI_ADDR_NOTAVAIL, which Received.source gives as ANY_SOURCE, and a receive naming
// another peer does not take it; once the receiver inserts the sender, its messages (even one sent
// before the insert) name it. shm gets it wrong: it reports fi_addr 0, the first peer the receiver
// inserted, and a receive naming any peer takes the stranger's message (smr_match_id treats an
// unknown sender as a wildcard). docs/messaging.md says so; this keeps it honest.
import { afterEach, expect, test } from "bun:test";
import { ANY_SOURCE } from "../../lib/index.ts";
import { describeFabric } from "../helpers.ts";
import { SHM, Station, TCP } from "./message-pair.ts";
import { INTACT, landed, landing, payload } from "./landing.ts";

let stations: Station[] = [];
afterEach(() => {
  for (const s of stations) s.close();
  stations = [];
});

/** A receiver that inserted `known` (fi_addr 0) and a stranger it never inserted, who inserted it. */
function strangers(c: typeof TCP) {
  const [receiver, known, stranger] = [new Station(c), new Station(c), new Station(c)];
  stations = [receiver, known, stranger];
  const knownPeer = receiver.endpoint.insert(known.endpoint.name);
  const toReceiver = stranger.endpoint.insert(receiver.endpoint.name);
  return { receiver, stranger, knownPeer, toReceiver };
}

async function settle(stations: Station[], ms: number): Promise<void> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    for (const s of stations) s.endpoint.poll();
    await Bun.sleep(1);
  }
}

describeFabric("a message from a sender never inserted [tcp]", () => {
  test("Received.source is ANY_SOURCE; a receive from another peer leaves it; after insert() the sender is named, also for a message sent before", async () => {
    const { receiver, stranger, knownPeer, toReceiver } = strangers(TCP);
    const source = payload(stranger.pool, 32, 4);
    const sink = landing(receiver.pool, 32);
    await stranger.endpoint.send(source, 32, toReceiver, 70);
    const fromKnown = receiver.endpoint.postRecv(sink, 32, knownPeer, 70);
    await settle(stations, 100);
    expect(receiver.endpoint.received(fromKnown)).toBeNull(); // not the known peer's message
    const got = await receiver.endpoint.recv(sink, 32, ANY_SOURCE, 70);
    expect([got.source as unknown, got.length, landed(sink, 32, 4)]).toEqual([ANY_SOURCE, 32, INTACT]);
    // Sent while still unknown, received after the insert: named by its new address.
    await stranger.endpoint.send(source, 32, toReceiver, 71);
    await settle(stations, 50);
    const inserted = receiver.endpoint.insert(stranger.endpoint.name);
    expect((await receiver.endpoint.recv(sink, 32, inserted, 71)).source).toBe(inserted);
    await stranger.endpoint.send(source, 32, toReceiver, 72);
    expect((await receiver.endpoint.recv(sink, 32, ANY_SOURCE, 72)).source).toBe(inserted);
  }, 30_000);
});

describeFabric("a message from a sender never inserted [shm]", () => {
  test("shm 1.17 names fi_addr 0 (another peer) as its source, and a receive naming that peer takes it", async () => {
    const { receiver, stranger, knownPeer, toReceiver } = strangers(SHM);
    expect(knownPeer).toBe(0n);
    const source = payload(stranger.pool, 32, 4);
    const sink = landing(receiver.pool, 32);
    await stranger.endpoint.send(source, 32, toReceiver, 70);
    const got = await receiver.endpoint.recv(sink, 32, ANY_SOURCE, 70);
    expect([got.source, landed(sink, 32, 4)]).toEqual([knownPeer, INTACT]); // wrong: it came from the stranger
    await stranger.endpoint.send(source, 32, toReceiver, 71);
    const taken = await receiver.endpoint.recv(sink, 32, knownPeer, 71, { signal: AbortSignal.timeout(5000) });
    expect(taken.source).toBe(knownPeer); // a receive from the known peer took the stranger's message
    // Inserted, it is named right.
    const inserted = receiver.endpoint.insert(stranger.endpoint.name);
    await stranger.endpoint.send(source, 32, toReceiver, 72);
    expect((await receiver.endpoint.recv(sink, 32, ANY_SOURCE, 72)).source).toBe(inserted);
  }, 30_000);
});
