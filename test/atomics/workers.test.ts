// Remote atomics from Workers: four Workers, each with its own Endpoint on the shared pool's
// provider view (test/messages/message-worker.ts), add one to a counter in another process
// 10^4 times each, in windows of posted fetchAdds, on tcp and on shm.
import { expect, test } from "bun:test";
import { LibfabricProvider, MemoryPool } from "../../lib/index.ts";
import { describeFabric } from "../helpers.ts";
import { MessageAgent } from "../messages/message-agents.ts";
import type { MessageWorkerCommand } from "../messages/message-worker.ts";

const WORKERS = 4;
const PER_WORKER = 10_000;

type Reply = { ok: boolean; error?: string; code?: string; [k: string]: unknown };

function ask<T extends Reply>(w: Worker, m: MessageWorkerCommand): Promise<T> {
  return new Promise((resolve, reject) => {
    w.onmessage = (e: MessageEvent<T>) => (e.data.ok ? resolve(e.data) : reject(new Error(`${e.data.code ?? ""} ${e.data.error}`)));
    w.onerror = (e) => reject(e instanceof ErrorEvent ? new Error(e.message) : e);
    w.postMessage(m);
  });
}

const CASES = [
  { provider: "tcp", options: { provider: "tcp", node: "127.0.0.1" }, agent: ["--provider", "tcp", "--node", "127.0.0.1", "--interval", "0"] },
  { provider: "shm", options: { provider: "shm" }, agent: ["--provider", "shm", "--interval", "0"] },
] as const;

async function workersAdd(c: (typeof CASES)[number]): Promise<void> {
  const provider = LibfabricProvider.open(c.options);
  const pool = new MemoryPool(provider, { small: { initialCount: 16 } });
  const agent = await MessageAgent.start([...c.agent]);
  const workers = Array.from({ length: WORKERS }, () => new Worker(new URL("../messages/message-worker.ts", import.meta.url)));
  try {
    const handle = pool.share();
    await Promise.all(workers.map((w, id) => ask(w, { cmd: "open", handle, id })));
    const results = await Promise.all(workers.map((w) => ask<Reply & { values: number[] }>(w, { cmd: "fetchAdd", agent: agent.ready.name, remote: agent.ready.words, count: PER_WORKER, window: 64 })));
    const seen = new Uint8Array(WORKERS * PER_WORKER);
    let wrong = 0;
    for (const v of results.flatMap((r) => r.values)) {
      if (v < 0 || v >= seen.length || seen[v] !== 0) wrong++;
      else seen[v] = 1;
    }
    expect(wrong).toBe(0); // every value in range and fetched once
    expect((await agent.request({ op: "words" })).counter).toBe(String(WORKERS * PER_WORKER));
    for (const r of await Promise.all(workers.map((w) => ask<Reply & { leaked: number }>(w, { cmd: "close" })))) expect(r.leaked).toBe(0);
  } finally {
    for (const w of workers) w.terminate();
    await agent.stop();
    if (!pool.closed) pool.close();
    provider.close();
  }
}

describeFabric("remote atomics from Workers", () => {
  // One provider after the other (see test/messages/workers.test.ts).
  for (const c of CASES) {
    test(`[${c.provider}] ${WORKERS} Workers × ${PER_WORKER} fetchAdd(1) on one counter in another process: it ends at exactly ${WORKERS * PER_WORKER}, every value fetched once`, async () => {
      await workersAdd(c);
    }, 180_000);
  }
});
