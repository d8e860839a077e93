// Remote atomics between processes, on tcp and shm: four agents (test/messages/agent.ts) add to
// one counter in a fifth, in every form, and two take turns under a compareSwap lock around a record;
// an atomic whose target stops progressing times out, completes late, and is applied once.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { Endpoint, LibfabricProvider, RemoteRegion, RmaTimeoutError } from "../../lib/index.ts";
import { describeFabric } from "../helpers.ts";
import { fromHex } from "../rma/pattern.ts";
import { MessageAgent } from "../messages/message-agents.ts";

const PER_PROCESS = 10_000;
const PROCESSES = 4;
const LOCKS = 10_000;
/** The lock's contenders: two processes (each acquisition is four round trips; more contenders only queue). */
const CONTENDERS = 2;

const CASES = [
  { provider: "tcp", options: { provider: "tcp", node: "127.0.0.1" }, args: ["--provider", "tcp", "--node", "127.0.0.1"] },
  { provider: "shm", options: { provider: "shm" }, args: ["--provider", "shm"] },
] as const;

for (const c of CASES) {
  describeFabric(`remote atomics between processes [${c.provider}]`, () => {
    let target: MessageAgent;
    let initiators: MessageAgent[];
    let targetAt: string[];
    beforeAll(async () => {
      // The target turns its event loop as fast as it can: it applies every atomic (rxm and shm
      // do them in the target's progress).
      [target, ...initiators] = await Promise.all([
        MessageAgent.start([...c.args, "--interval", "0"]),
        ...Array.from({ length: PROCESSES }, () => MessageAgent.start([...c.args])),
      ]);
      targetAt = await Promise.all(initiators.map((i) => i.insert(target)));
    }, 60_000);
    afterAll(async () => {
      const codes = await Promise.all([target, ...initiators].map((agent) => agent?.stop()));
      expect(codes).toEqual(codes.map(() => 0));
    }, 30_000);

    test(`${PROCESSES} processes × ${PER_PROCESS} fetchAdd(1) on one counter (sync, promise and windows of posts): it ends at exactly ${PROCESSES * PER_PROCESS}, every value fetched once`, async () => {
      const forms = ["sync", "promise", "post", "post"];
      const replies = await Promise.all(initiators.map((initiator, i) =>
        initiator.request({ op: "fetchAdd", peer: targetAt[i], remote: target.ready.words, count: PER_PROCESS, window: 64, form: forms[i] }, 120_000)));
      const values = replies.flatMap((r) => r.values!);
      expect(values.length).toBe(PROCESSES * PER_PROCESS);
      const seen = new Uint8Array(PROCESSES * PER_PROCESS);
      let duplicates = 0;
      let outOfRange = 0;
      for (const v of values) {
        if (v < 0 || v >= seen.length) outOfRange++;
        else if (seen[v] !== 0) duplicates++;
        else seen[v] = 1;
      }
      expect({ duplicates, outOfRange }).toEqual({ duplicates: 0, outOfRange: 0 });
      expect((await target.request({ op: "words" })).counter).toBe(String(PROCESSES * PER_PROCESS));
    }, 180_000);

    test(`a compareSwap lock around a record (read, add one, write back, by RMA): ${LOCKS} acquisitions by ${CONTENDERS} processes, no update lost`, async () => {
      const replies = await Promise.all(initiators.slice(0, CONTENDERS).map((initiator, i) =>
        initiator.request({ op: "lock", peer: targetAt[i], remote: target.ready.words, count: LOCKS / CONTENDERS, me: i + 1 }, 300_000)));
      for (const r of replies) expect(r.ok).toBe(true);
      const words = await target.request({ op: "words" });
      expect([words.record, words.lock]).toEqual([String(LOCKS), "0"]);
    }, 320_000);

    test("an atomic whose target stops progressing times out, completes late, and is applied exactly once", async () => {
      const provider = LibfabricProvider.open(c.options);
      // Long enough for the first atomic (the connection is made then) on a busy machine.
      const endpoint = new Endpoint(provider, { timeoutMs: 2000 });
      try {
        const peer = endpoint.insert(fromHex(target.ready.name));
        const counter = RemoteRegion.fromBytes(fromHex(target.ready.words)).subregion(0, 8);
        const before = endpoint.fetchAddSync(peer, counter, 1n) + 1n; // connected; the counter is now `before`
        process.kill(target.ready.pid, "SIGSTOP"); // the target stops: nothing progresses there
        let error: unknown;
        try { await endpoint.fetchAdd(peer, counter, 1n); } catch (e) { error = e; }
        expect(error).toBeInstanceOf(RmaTimeoutError);
        expect(endpoint.inTransportCount).toBe(1); // still posted: its cell is not reused
        const second = endpoint.postFetchAdd(peer, counter, 1n);
        await Bun.sleep(200);
        process.kill(target.ready.pid, "SIGCONT");
        let value: bigint | null = null;
        for (const deadline = performance.now() + 10_000; value === null && performance.now() < deadline;) {
          endpoint.poll();
          value = endpoint.fetched(second);
          await Bun.sleep(1);
        }
        expect(value).toBe(before + 1n); // the timed-out one was applied first, once
        for (const deadline = performance.now() + 10_000; endpoint.inTransportCount > 0 && performance.now() < deadline;) {
          endpoint.poll();
          await Bun.sleep(1);
        }
        expect(endpoint.inTransportCount).toBe(0); // the late completion came in
        expect(endpoint.fetchAddSync(peer, counter, 0n)).toBe(before + 2n);
      } finally {
        endpoint.close();
        provider.close();
      }
    }, 40_000);
  });
}
