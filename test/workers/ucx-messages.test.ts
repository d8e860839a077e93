// Tagged messages and remote atomics over UCX from real Workers of one shared pool: each Worker
// attaches, makes its own UcxEndpoint over the attached pool's provider (a view of the owner's
// context) with the shared pool for receive(), and exchanges messages (eager and rendezvous) with
// the other Workers and another process, each checked byte for byte and in order per sender;
// receive() takes its regions from the shared pool. Then 4 Workers each do fetchAdd(1) 10^4 times
// on one Worker's counter: exact, every fetched value distinct. Over tcp and over posix,cma.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { MemoryPool, UcxProvider, type MemoryPoolOptions, type SharedPoolHandle } from "../../lib/index.ts";
import { describeUcx } from "../helpers.ts";
import { AgentProcess } from "../rma/peers.ts";
import { eagerLimit } from "../ucx/eager-limit.ts";
import { seedOf } from "./message-seeds.ts";
import type { MessageCommand } from "./ucx-message-worker.ts";

setDefaultTimeout(180_000);

const POOL: MemoryPoolOptions = {
  small: { chunkSize: 4096, initialCount: 8 },
  medium: { chunkSize: 65_536, initialCount: 4, growCount: 4 },
  large: { chunkSize: 256 << 10, initialCount: 2, growCount: 2 },
  huge: { chunkSize: 1 << 20, initialCount: 1 },
};
const AGENT = `${import.meta.dir}/../ucx/message-agent.ts`;
const WORKERS = 4;
/** fetchAdds per Worker (the 10^4; fewer with ALLOCTOOLS_ATOMIC_ITERATIONS). */
const ITERATIONS = Number(process.env.ALLOCTOOLS_ATOMIC_ITERATIONS ?? 10_000);

const CASES = [
  { label: "tcp", transports: "tcp", netDevices: "lo", agentArgs: ["--transports", "tcp", "--net-devices", "lo"] },
  { label: "posix,cma", transports: "posix,cma", agentArgs: ["--transports", "posix,cma", "--allocate", "true"] },
] as const;

type Reply = { seq: number; ok: boolean; error?: string; [k: string]: unknown };
type Received = { from: number; length: number; mismatch: number; sharedIndex: boolean };

/** A Worker of ucx-message-worker.ts, asked one command at a time. */
class MessageWorker {
  readonly worker = new Worker(new URL("./ucx-message-worker.ts", import.meta.url));
  private seq = 0;
  private readonly waiting = new Map<number, (r: Reply) => void>();
  private readonly exited: Promise<void>;

  constructor() {
    this.worker.onmessage = (e: MessageEvent<Reply>) => {
      this.waiting.get(e.data.seq)?.(e.data);
      this.waiting.delete(e.data.seq);
    };
    this.exited = new Promise((resolve) => this.worker.addEventListener("close", () => resolve(), { once: true }));
  }

  ask<T = Reply>(m: MessageCommand, timeoutMs = 150_000): Promise<T> {
    const seq = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`Worker ${m.cmd} did not answer in ${timeoutMs} ms`)), timeoutMs);
      this.waiting.set(seq, (r) => {
        clearTimeout(timer);
        if (r.ok) resolve(r as T);
        else reject(new Error(`Worker ${m.cmd}: ${r.error}`));
      });
      this.worker.postMessage({ ...m, seq });
    });
  }

  terminated(): Promise<void> {
    this.worker.terminate();
    return this.exited;
  }
}

for (const c of CASES) {
  describeUcx(`UCX messages and atomics from Workers of one shared pool [${c.label}]`, () => {
    let provider: UcxProvider;
    let pool: MemoryPool;
    let handle: SharedPoolHandle;
    let agent: AgentProcess;
    let workers: MessageWorker[];
    let opened: Array<{ name: Uint8Array; counter: Uint8Array; isView: boolean }>;

    beforeAll(async () => {
      provider = UcxProvider.open({ transports: c.transports, ...("netDevices" in c ? { netDevices: c.netDevices } : {}) });
      pool = new MemoryPool(provider, POOL);
      handle = pool.share({ maxWorkers: 8 });
      agent = await AgentProcess.start([...c.agentArgs, "--timeout", "60000"], undefined, 15_000, AGENT);
      workers = Array.from({ length: WORKERS }, () => new MessageWorker());
      opened = await Promise.all(workers.map((w) => w.ask<{ name: Uint8Array; counter: Uint8Array; isView: boolean }>({ cmd: "open", handle })));
      // Position 0 is the agent, 1..4 the Workers; everyone inserts everyone in that order.
      const names = [new Uint8Array(Buffer.from(agent.ready.name, "hex")), ...opened.map((o) => o.name)];
      for (const name of names) await agent.request({ op: "insert", name: Buffer.from(name).toString("hex") });
      await Promise.all(workers.map((w, i) => w.ask({ cmd: "peers", names, position: i + 1 })));
    });
    afterAll(async () => {
      const closed = await Promise.all(workers.map((w) => w.ask<{ leaked: number }>({ cmd: "close" })));
      expect(closed.map((r) => r.leaked)).toEqual(workers.map(() => 0));
      for (const w of workers) await w.terminated();
      expect(await agent.stop()).toBe(0);
      expect(pool.audit().problems).toEqual([]);
      expect(pool.close().count).toBe(0);
      provider.close();
      expect(provider.contextUsers).toBe(-1);
    });

    test("each Worker exchanges eager and rendezvous messages with the other Workers and another process; receive() takes the shared pool's regions", async () => {
      expect(opened.map((o) => o.isView)).toEqual(workers.map(() => true));
      const limit = eagerLimit(c.transports, "netDevices" in c ? c.netDevices : undefined, "self");
      const sizes = [0, 1, limit, limit + 1, 200_000];
      const everyone = [0, 1, 2, 3, 4];
      // Each Worker sends to the 4 others (3 Workers and the agent) and receives from them.
      const exchanges = workers.map((w, i) => w.ask<{ received: Received[] }>({
        cmd: "exchange", tag: 77, sizes, to: everyone.filter((p) => p !== i + 1), expected: 4 * sizes.length,
      }));
      const agentSends = (async () => {
        for (let p = 1; p <= WORKERS; p++) {
          const sent = await agent.request({ op: "send", peer: p, tag: 77, lengths: sizes, seeds: sizes.map((_, i) => seedOf(0, i)), form: "promise" }, 150_000);
          expect(sent.error).toBeUndefined();
        }
      })();
      const agentReceived = agent.request({ op: "receive", peer: -1, tag: 77, count: WORKERS * sizes.length, bySource: true }, 150_000) as Promise<unknown> as
        Promise<{ error?: unknown; results: Array<{ source: number; length: number; mismatch: number }> }>;
      const results = await Promise.all(exchanges);
      await agentSends;
      const atAgent = await agentReceived;
      expect(atAgent.error).toBeUndefined();
      const bySender = (list: Array<{ from: number; length: number; mismatch: number }>) => {
        const out: Record<number, Array<[number, number]>> = {};
        for (const r of list) (out[r.from] ??= []).push([r.length, r.mismatch]);
        return out;
      };
      const inOrder = sizes.map((size) => [size, -1] as [number, number]);
      for (const [i, r] of results.entries()) {
        const expected: Record<number, Array<[number, number]>> = {};
        for (const p of everyone) if (p !== i + 1) expected[p] = inOrder;
        expect({ worker: i + 1, got: bySender(r.received) }).toEqual({ worker: i + 1, got: expected });
        expect(r.received.every((m) => m.sharedIndex)).toBe(true);
      }
      const expectedAtAgent: Record<number, Array<[number, number]>> = {};
      for (let p = 1; p <= WORKERS; p++) expectedAtAgent[p] = inOrder;
      expect(bySender(atAgent.results.map((r) => ({ from: r.source, length: r.length, mismatch: r.mismatch })))).toEqual(expectedAtAgent);
      expect(pool.stats().regionsInUse).toBe(WORKERS); // the Workers' counters; every message's region went back
    });

    test(`${WORKERS} Workers each doing fetchAdd(1) ${ITERATIONS} times on one Worker's counter end at exactly ${WORKERS * ITERATIONS}, every fetched value distinct`, async () => {
      const replies = await Promise.all(workers.map((w) => w.ask<{ fetched: number[] }>({ cmd: "fetchAdd", peer: 1, remote: opened[0]!.counter, count: ITERATIONS })));
      const all = replies.flatMap((r) => r.fetched);
      expect(new Set(all).size).toBe(WORKERS * ITERATIONS);
      expect([Math.min(...all), Math.max(...all)]).toEqual([0, WORKERS * ITERATIONS - 1]);
      expect((await workers[0]!.ask<{ value: string }>({ cmd: "counter" })).value).toBe(String(WORKERS * ITERATIONS));
    });
  });
}
