// The hot path of messages allocates nothing but the Received a receive returns: sendSync +
// recvSync (the message waiting unexpected, and the receive posted first), on tcp and shm.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { describeFabric } from "../helpers.ts";
import { Group, SHM, TCP } from "./message-pair.ts";
import { cellsPerCall, perCallTypes } from "../heap-cells.ts";

const CALLS = 2000;

for (const c of [TCP, SHM]) {
  describeFabric(`allocation per message [${c.label}]`, () => {
    let group: Group;
    beforeAll(() => { group = new Group(c, 2); });
    afterAll(() => group?.close());

    test("sendSync + recvSync: one Received per pair, nothing else", () => {
      const [a, b] = [group.endpoint(0), group.endpoint(1)];
      const [toB, fromA] = [group.peer(0, 1), group.peer(1, 0)];
      const source = group.pool(0).getRegion(64);
      const sink = group.pool(1).getRegion(64);
      const unexpected = cellsPerCall(() => {
        a.sendSync(source, 64, toB, 9);
        b.recvSync(sink, 64, fromA, 9);
      }, CALLS);
      const preposted = cellsPerCall(() => {
        const id = b.postRecv(sink, 64, fromA, 10);
        a.sendSync(source, 64, toB, 10);
        while (b.received(id) === null) b.poll();
      }, CALLS);
      // The Received is the one cell per pair (heapStats counts it as an "Object"); an allocation
      // anywhere else on the path shows as another cell per call. The snapshots leave ~0.1 per call.
      expect(Object.keys(perCallTypes(unexpected, CALLS))).toEqual(["Object"]);
      expect(Object.keys(perCallTypes(preposted, CALLS))).toEqual(["Object"]);
      for (const r of [unexpected, preposted]) {
        expect(r.perCall).toBeGreaterThan(0.8);
        expect(r.perCall).toBeLessThan(1.25);
      }
      group.pool(0).releaseRegion(source);
      group.pool(1).releaseRegion(sink);
    }, 60_000);
  });
}
