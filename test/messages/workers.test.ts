// Tagged messages from Workers: each Worker attaches the shared pool and opens its own Endpoint on
// the pool's provider view (the owner's domain), with the shared pool as its receive() pool. Four
// Workers pass messages around a ring and to and from an agent process, on tcp and on shm;
// what they receive lands in regions of the shared pool.
import { expect, setDefaultTimeout, test } from "bun:test";
import { LibfabricProvider, MemoryPool } from "../../lib/index.ts";
import { describeFabric } from "../helpers.ts";
import { MessageAgent } from "./message-agents.ts";
import type { MessageWorkerCommand } from "./message-worker.ts";

setDefaultTimeout(120_000);

const WORKERS = 4;
const ROUNDS = 100;
const SIZES = [1, 100, 16_385, 300_000];

type Reply = { ok: boolean; error?: string; code?: string; [k: string]: unknown };

function ask<T extends Reply>(w: Worker, m: MessageWorkerCommand): Promise<T> {
  return new Promise((resolve, reject) => {
    w.onmessage = (e: MessageEvent<T>) => (e.data.ok ? resolve(e.data) : reject(new Error(`${e.data.code ?? ""} ${e.data.error}`)));
    w.onerror = (e) => reject(e instanceof ErrorEvent ? new Error(e.message) : e);
    w.postMessage(m);
  });
}

const CASES = [
  { provider: "tcp", options: { provider: "tcp", node: "127.0.0.1" }, agent: ["--provider", "tcp", "--node", "127.0.0.1"] },
  { provider: "shm", options: { provider: "shm" }, agent: ["--provider", "shm"] },
] as const;

async function workersExchange(c: (typeof CASES)[number]): Promise<void> {
  const provider = LibfabricProvider.open(c.options);
  // The huge class holds the largest message: what receive() takes on shm (no FI_PEEK there).
  const pool = new MemoryPool(provider, { small: { chunkSize: 512, initialCount: 64 }, large: { chunkSize: 65_536, initialCount: 16 }, huge: { chunkSize: 512 * 1024, initialCount: 8 } });
  const handle = pool.share();
  const agent = await MessageAgent.start([...c.agent]);
  const workers = Array.from({ length: WORKERS }, () => new Worker(new URL("./message-worker.ts", import.meta.url)));
  try {
    const opened = await Promise.all(workers.map((w, id) => ask<Reply & { name: string; sameDomain: number }>(w, { cmd: "open", handle, id })));
    for (const o of opened) expect(o.sameDomain).toBe(provider.handles.domain);
    const agentPeers = [];
    for (const o of opened) agentPeers.push((await agent.request({ op: "insert", name: o.name })).peer!);
    const served = agent.request({ op: "serve", peers: agentPeers, rounds: ROUNDS, sizes: SIZES }, 120_000);
    const results = await Promise.all(workers.map((w, id) => ask<Reply & { errors: string[]; received: number; fromSharedPool: number }>(w, {
      cmd: "ring", next: opened[(id + 1) % WORKERS]!.name, previous: opened[(id + WORKERS - 1) % WORKERS]!.name, agent: agent.ready.name, rounds: ROUNDS, sizes: SIZES,
    })));
    expect((await served).errors).toEqual([]);
    for (const r of results) {
      expect(r.errors).toEqual([]);
      expect(r.received).toBe(2 * ROUNDS);
      expect(r.fromSharedPool).toBe(ROUNDS / 2); // every receive() of the ring took a region of the shared pool
    }
    const closed = await Promise.all(workers.map((w) => ask<Reply & { leaked: number }>(w, { cmd: "close" })));
    for (const r of closed) expect(r.leaked).toBe(0);
    expect(pool.audit().problems).toEqual([]);
    expect(pool.audit().inUse).toBe(0);
  } finally {
    for (const w of workers) w.terminate();
    await agent.stop();
    if (!pool.closed) pool.close();
    provider.close();
  }
}

describeFabric("tagged messages from Workers", () => {
  // One provider after the other: shm endpoints of Workers that closed while others were open
  // are kept open until no endpoint of the process is (lib/libfabric/process-endpoints.ts), so the
  // shm provider's close fails EBUSY while the tcp case's Workers still have theirs.
  for (const c of CASES) {
    test(`[${c.provider}] ${WORKERS} Workers, each with its own Endpoint: ${ROUNDS} rounds around a ring and to and from another process, receiving into the shared pool`, async () => {
      await workersExchange(c);
    }, 300_000);
  }
});
