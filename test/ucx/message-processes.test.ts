// Tagged messages and remote atomics over UCX between Bun processes of this host (message-agent.ts),
// on tcp and on shared memory with UCX-allocated blocks and with our own: every form at 0, 1, the
// eager limit, one past it, 4 MiB and 64 MiB; receive(); ordering across the eager/rendezvous
// boundary, pre-posted and late; ANY_SOURCE with two senders; truncation; 4 processes each doing
// fetchAdd(1) 10^4 times on one counter (exact, every value distinct); a compareSwap lock around a
// plain read-modify-write through 10^4 acquisitions; a timed-out atomic completing late; sends to
// a peer whose endpoint closed and whose process exited.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { describeUcx } from "../helpers.ts";
import { AgentProcess } from "../rma/peers.ts";
import { eagerLimit } from "./eager-limit.ts";

setDefaultTimeout(120_000);

const AGENT = `${import.meta.dir}/message-agent.ts`;
const MiB = 1 << 20;
/** Atomic operations per process (the 10^4; fewer with ALLOCTOOLS_ATOMIC_ITERATIONS for a quick run). */
const ITERATIONS = Number(process.env.ALLOCTOOLS_ATOMIC_ITERATIONS ?? 10_000);

const CASES = [
  { label: "tcp", transports: "tcp", netDevices: "lo", args: ["--transports", "tcp", "--net-devices", "lo"], oneSidedAtomics: false },
  { label: "shm, UCX-allocated blocks", transports: "posix,cma", args: ["--transports", "posix,cma", "--allocate", "true"], oneSidedAtomics: true },
  { label: "shm, own blocks", transports: "sysv,cma", args: ["--transports", "sysv,cma", "--allocate", "false"], oneSidedAtomics: false },
] as const;

type Result = { source: number; tag: number; length: number; mismatch: number; regionSize?: number };
type Reply = {
  ok?: boolean; error?: { name: string; code?: string; message: string }; results?: Result[]; fetched?: string[]; words?: string[];
  peer?: number; spins?: number; pending?: number; inTransport?: number; regionsInUse?: number;
};
type Agent = AgentProcess & { ready: AgentProcess["ready"] & { counter: string } };

const ask = async (agent: AgentProcess, command: Record<string, unknown>, timeoutMs = 60_000) => (await agent.request(command, timeoutMs)) as unknown as Reply;

async function startAgents(args: readonly string[], count: number, timeoutMs = 10_000): Promise<Agent[]> {
  return (await Promise.all(Array.from({ length: count }, () => AgentProcess.start([...args, "--timeout", String(timeoutMs)], undefined, 20_000, AGENT)))) as Agent[];
}

/** Each agent inserts every agent (itself too), in order: peer i is agent i everywhere. */
async function insertAll(agents: Agent[]): Promise<void> {
  for (const agent of agents) for (const other of agents) expect((await ask(agent, { op: "insert", name: other.ready.name })).error).toBeUndefined();
}

for (const c of CASES) {
  describeUcx(`UCX messages and atomics between processes [${c.label}]`, () => {
    /** a = 0, b = 1 (the receiver and the counter's owner), c = 2, d = 3. */
    let agents: Agent[];
    let limit: number;
    const [A, B, C, D] = [0, 1, 2, 3];

    beforeAll(async () => {
      agents = await startAgents(c.args, 4);
      await insertAll(agents);
      limit = eagerLimit(c.transports, "netDevices" in c ? c.netDevices : undefined, "intra");
    });
    afterAll(async () => {
      const codes = await Promise.all(agents.map((agent) => agent.stop()));
      expect(codes).toEqual([0, 0, 0, 0]);
    });

    test("every form at 0, 1, the eager limit, +1, 4 MiB and 64 MiB arrives byte for byte from the peer that sent it", async () => {
      const forms = ["promise", "sync", "post"] as const;
      for (const [i, length] of [0, 1, limit, limit + 1, 4 * MiB, 64 * MiB].entries()) {
        for (const [f, form] of forms.entries()) {
          const seed = i * 3 + f;
          const [received, sent] = await Promise.all([
            ask(agents[B]!, { op: "recv", peer: A, tag: 100 + i, capacity: length + 64, form, seeds: [seed] }),
            ask(agents[A]!, { op: "send", peer: B, tag: 100 + i, lengths: [length], seeds: [seed], form: forms[(f + 1) % 3] }),
          ]);
          expect({ length, form, sent: sent.error, received: received.error }).toEqual({ length, form, sent: undefined, received: undefined });
          expect(received.results).toEqual([{ source: A, tag: 100 + i, length, mismatch: -1 }]);
        }
      }
    });

    test("receive() takes pooled regions of each message's length, 0 B to 64 MiB", async () => {
      const lengths = [0, 1, limit, limit + 1, 4 * MiB, 64 * MiB];
      const seeds = lengths.map((_, i) => 30 + i);
      const [received, sent] = await Promise.all([
        ask(agents[B]!, { op: "receive", peer: A, tag: 200, count: lengths.length, seeds }),
        ask(agents[A]!, { op: "send", peer: B, tag: 200, lengths, seeds, form: "promise" }),
      ]);
      expect(sent.error).toBeUndefined();
      expect(received.error).toBeUndefined();
      expect(received.results!.map((r) => [r.length, r.mismatch, r.regionSize! >= Math.max(r.length, 1)])).toEqual(lengths.map((l) => [l, -1, true]));
    });

    test("messages of one pair and tag arrive in the order sent across the eager/rendezvous boundary, receives posted first and late", async () => {
      const lengths = [limit, limit + 1, 1, 4 * MiB, 0, limit + 1, limit, MiB, 1, limit - 1, limit + 2];
      const seeds = lengths.map((_, i) => 50 + i);
      const expected = lengths.map((length) => ({ source: A, tag: 300, length, mismatch: -1 }));
      // Posted first: b's receives are waiting before a sends.
      const early = ask(agents[B]!, { op: "recv", peer: A, tag: 300, capacity: 4 * MiB, form: "post", count: lengths.length, seeds });
      await Bun.sleep(50);
      const sent = await ask(agents[A]!, { op: "send", peer: B, tag: 300, lengths, seeds, form: "post" });
      expect(sent.error).toBeUndefined();
      expect((await early).results).toEqual(expected);
      // Late: a sends everything (its eager messages complete), then b receives.
      const sending = ask(agents[A]!, { op: "send", peer: B, tag: 300, lengths, seeds, form: "promise" });
      await Bun.sleep(200);
      const late = await ask(agents[B]!, { op: "recv", peer: A, tag: 300, capacity: 4 * MiB, form: "sync", count: lengths.length, seeds });
      expect((await sending).error).toBeUndefined();
      expect(late.results).toEqual(expected);
    });

    test("ANY_SOURCE and a tag mask take both senders' messages, each with its source", async () => {
      const [received, fromA, fromC] = await Promise.all([
        ask(agents[B]!, { op: "recv", peer: -1, tag: 0x4400, ignore: 0xff, capacity: 4 * MiB, form: "promise", count: 4 }),
        ask(agents[A]!, { op: "send", peer: B, tag: 0x4401, lengths: [10, limit + 1], seeds: [1, 2], form: "sync" }),
        ask(agents[C]!, { op: "send", peer: B, tag: 0x44ff, lengths: [20, 4 * MiB], seeds: [3, 4], form: "sync" }),
      ]);
      expect([fromA.error, fromC.error, received.error]).toEqual([undefined, undefined, undefined]);
      const got = received.results!.map((r) => [r.source, r.tag, r.length]).sort((x, y) => x[0]! - y[0]! || x[2]! - y[2]!);
      expect(got).toEqual([[A, 0x4401, 10], [A, 0x4401, limit + 1], [C, 0x44ff, 20], [C, 0x44ff, 4 * MiB]]);
    });

    test("truncation between processes: TRUNCATED naming both lengths; the sender completes; the next message is intact", async () => {
      for (const length of [limit + 1, 4 * MiB]) {
        const [received, sent] = await Promise.all([
          ask(agents[B]!, { op: "recv", peer: A, tag: 500, capacity: 100, form: "promise" }),
          ask(agents[A]!, { op: "send", peer: B, tag: 500, lengths: [length], seeds: [5], form: "promise" }),
        ]);
        expect(sent.error).toBeUndefined();
        expect(received.error?.code).toBe("TRUNCATED");
        expect(received.error?.message).toContain(`a message of ${length} bytes is longer than the receive's 100 bytes`);
      }
      const [received] = await Promise.all([
        ask(agents[B]!, { op: "recv", peer: A, tag: 500, capacity: 100, form: "sync", seeds: [6] }),
        ask(agents[A]!, { op: "send", peer: B, tag: 500, lengths: [100], seeds: [6], form: "sync" }),
      ]);
      expect(received.results).toEqual([{ source: A, tag: 500, length: 100, mismatch: -1 }]);
    });

    test(`4 processes each doing fetchAdd(1) ${ITERATIONS} times on one counter end at exactly ${4 * ITERATIONS}, every fetched value distinct`, async () => {
      await ask(agents[B]!, { op: "resetCounter" });
      const remote = agents[B]!.ready.counter;
      const forms = ["sync", "promise", "post", "sync"];
      const replies = await Promise.all([A, B, C, D].map((i) => ask(agents[i]!, { op: "fetchAdd", peer: B, remote, count: ITERATIONS, value: 1, form: forms[i] }, 280_000)));
      expect(replies.map((r) => r.error)).toEqual([undefined, undefined, undefined, undefined]);
      const all = replies.flatMap((r) => r.fetched!.map(Number));
      expect(all.length).toBe(4 * ITERATIONS);
      expect(new Set(all).size).toBe(4 * ITERATIONS);
      expect([Math.min(...all), Math.max(...all)]).toEqual([0, 4 * ITERATIONS - 1]);
      // Each process saw its own values increase.
      for (const r of replies) expect(r.fetched!.map(Number).every((v, i, list) => i === 0 || v > list[i - 1]!)).toBe(true);
      expect((await ask(agents[B]!, { op: "counter" })).words![0]).toBe(String(4 * ITERATIONS));
    }, 300_000); // tcp: 43 s here with other sessions' tests running (load ~15)

    test("the target's own Atomics.add on the word, interleaved with 2 processes' fetchAdds, loses nothing", async () => {
      await ask(agents[B]!, { op: "resetCounter" });
      const remote = agents[B]!.ready.counter;
      const count = Math.min(ITERATIONS, 2000);
      const replies = await Promise.all([
        ask(agents[B]!, { op: "localAdd", index: 3, count }),
        ...[A, C].map((i) => ask(agents[i]!, { op: "fetchAdd", peer: B, remote, index: 3, count, value: 1, form: "sync" }, 110_000)),
      ]);
      expect(replies.map((r) => r.error)).toEqual([undefined, undefined, undefined]);
      expect((await ask(agents[B]!, { op: "counter" })).words![3]).toBe(String(3 * count));
    });

    test(`a compareSwap lock protects a plain read-modify-write through ${ITERATIONS} acquisitions by 2 processes, one of them the target: no lost update`, async () => {
      await ask(agents[B]!, { op: "resetCounter" });
      const remote = agents[B]!.ready.counter;
      const each = ITERATIONS / 2;
      const replies = await Promise.all([A, B].map((i) => ask(agents[i]!, { op: "lock", peer: B, remote, count: each, me: i + 1 }, 280_000)));
      expect(replies.map((r) => r.error)).toEqual([undefined, undefined]);
      expect((await ask(agents[B]!, { op: "counter" })).words!.slice(0, 2)).toEqual(["0", String(ITERATIONS)]);
    }, 300_000); // tcp: 74 s here under the same load

    test(c.oneSidedAtomics
      ? "an atomic on UCX-allocated shared memory completes while the target does not progress (one-sided)"
      : "an atomic to a target that stops progressing fails with RmaTimeoutError; its completion arrives late, and it was applied once", async () => {
      const timed = await startAgents(c.args, 1, 1500);
      try {
        const [x] = timed;
        await ask(x!, { op: "insert", name: agents[B]!.ready.name });
        await ask(agents[B]!, { op: "resetCounter" });
        await ask(agents[B]!, { op: "stopProgress" });
        let reply: Reply;
        try {
          reply = await ask(x!, { op: "fetchAdd", peer: 0, remote: agents[B]!.ready.counter, index: 2, count: 1, value: 5, form: "promise" });
          if (c.oneSidedAtomics) {
            expect(reply.error).toBeUndefined();
            expect(reply.fetched).toEqual(["0"]);
          } else {
            expect(reply.error?.name).toBe("RmaTimeoutError");
            expect(reply.error?.message).toStartWith("ucp_atomic_op_nbx failed: Operation timed out");
            expect(reply.inTransport).toBe(1);
          }
        } finally {
          await ask(agents[B]!, { op: "startProgress" });
        }
        // The late completion arrives: nothing stays in transport, the add happened exactly once.
        let pending = await ask(x!, { op: "pending" });
        for (let i = 0; i < 100 && pending.inTransport !== 0; i++) {
          await Bun.sleep(20);
          pending = await ask(x!, { op: "pending" });
        }
        expect(pending).toMatchObject({ pending: 0, inTransport: 0 });
        expect((await ask(agents[B]!, { op: "counter" })).words![2]).toBe("5");
        expect((await ask(x!, { op: "fetchAdd", peer: 0, remote: agents[B]!.ready.counter, index: 2, count: 1, value: 1, form: "sync" })).fetched).toEqual(["5"]);
      } finally {
        expect(await timed[0]!.stop()).toBe(0);
      }
    });
  });

  describeUcx(`UCX sends to a closed peer [${c.label}]`, () => {
    test("a peer whose endpoint closed, then whose process exited: each send completes (an eager one may be lost) or fails with a typed error, never hangs; the sender lives on", async () => {
      const [x, y] = await startAgents(c.args, 2, 2000);
      try {
        await insertAll([x!, y!]);
        const [warm] = await Promise.all([
          ask(y!, { op: "recv", peer: 0, tag: 1, capacity: 64, form: "promise" }),
          ask(x!, { op: "send", peer: 1, tag: 1, lengths: [8], seeds: [1], form: "sync" }),
        ]);
        expect(warm.error).toBeUndefined();
        const outcomes: string[] = [];
        const sendAll = async () => {
          for (const length of [64, 4 * MiB, 64]) {
            const r = await ask(x!, { op: "send", peer: 1, tag: 2, lengths: [length], seeds: [2], form: "promise" }, 30_000);
            outcomes.push(r.error === undefined ? "ok" : `${r.error.name}`);
            if (r.error !== undefined) expect(["UcxError", "RmaTimeoutError"]).toContain(r.error.name);
          }
        };
        await ask(y!, { op: "closeEndpoint" });
        await sendAll();
        expect(await y!.stop()).toBe(0);
        await sendAll();
        // The 4 MiB (rendezvous) sends never silently succeed: nobody received them.
        expect([outcomes[1], outcomes[4]].every((o) => o !== "ok")).toBe(true);
        expect((await ask(x!, { op: "pending" })).pending).toBe(0);
      } finally {
        expect(await x!.stop()).toBe(0);
      }
    });
  });
}
