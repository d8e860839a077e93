// RMA from any Worker (issue 11): each Worker attaches to the shared pool, opens its own Endpoint
// over the pool's provider (a view of the owner's fabric and domain), and moves stamped payloads
// between pooled regions: into another process's region and into another Worker's, on tcp and
// shm at the same time. Then: a Worker terminated mid-RMA, and the typed errors of bad input.
import { expect, setDefaultTimeout, test } from "bun:test";
import { AllocToolsError, Endpoint, LibfabricProvider, MemoryPool } from "../../lib/index.ts";
import { describeFabric } from "../helpers.ts";
import { AgentProcess } from "../rma/peers.ts";
import type { RmaCommand, RmaTarget } from "./rma-worker.ts";

setDefaultTimeout(120_000);

const OPS = Number(process.env.ALLOCTOOLS_RMA_OPS ?? 10_000);
const WORKERS = 4;
const PAYLOAD = 256;
/** Operations each Worker keeps in flight (lanes): the run is latency-bound, so this sets its length. */
const WINDOW = 64;
/** Each Worker writes its own slots: WINDOW lanes of PAYLOAD bytes at WORKER × WINDOW × PAYLOAD. */
const slotsOf = (worker: number) => worker * WINDOW * PAYLOAD;

type Reply = { ok: boolean; error?: string; code?: string; [k: string]: unknown };

function ask<T extends Reply>(w: Worker, m: RmaCommand): Promise<T> {
  return new Promise((resolve, reject) => {
    w.onmessage = (e: MessageEvent<T>) => (e.data.ok ? resolve(e.data) : reject(new Error(`${e.data.code ?? ""} ${e.data.error}`)));
    w.onerror = (e) => reject(e instanceof ErrorEvent ? new Error(e.message) : e);
    w.postMessage(m);
  });
}

const CASES = [
  { provider: "tcp", node: "127.0.0.1", agent: ["--provider", "tcp", "--node", "127.0.0.1"] },
  { provider: "shm", agent: ["--provider", "shm"] },
] as const;

async function workersDoRma(c: (typeof CASES)[number]): Promise<void> {
  const provider = LibfabricProvider.open(c.provider === "tcp" ? { provider: "tcp", node: c.node } : { provider: "shm" });
  const pool = new MemoryPool(provider, { small: { chunkSize: 512, initialCount: 64 }, large: { initialCount: WORKERS } });
  const handle = pool.share();
  const agent = await AgentProcess.start([...c.agent]);
  const workers = Array.from({ length: WORKERS }, () => new Worker(new URL("./rma-worker.ts", import.meta.url)));
  try {
    const opened = await Promise.all(workers.map((w, id) =>
      ask<Reply & { name: string; remote: string; providerClass: string; sameDomain: number }>(w, { cmd: "open", handle, id, exposeBytes: WORKERS * WINDOW * PAYLOAD })));
    for (const o of opened) {
      expect(o.providerClass).toBe("LibfabricProvider");
      expect(o.sameDomain).toBe(provider.handles.domain);
    }
    // Worker i writes into the agent process's region and into Worker i+1's region, in its own slots.
    const results = await Promise.all(workers.map((w, id) => {
      const next = opened[(id + 1) % WORKERS]!;
      const targets: RmaTarget[] = [
        { name: agent.ready.name, remote: agent.ready.remote, offset: slotsOf(id) },
        { name: next.name, remote: next.remote, offset: slotsOf(id) },
      ];
      return ask<Reply & { writes: number; reads: number; errors: string[] }>(w, { cmd: "run", targets, ops: OPS, payload: PAYLOAD, window: WINDOW });
    }));
    for (const r of results) {
      expect(r.errors).toEqual([]);
      expect([r.writes, r.reads]).toEqual([OPS, OPS]);
    }
    // What each Worker's region holds: whole payloads of its one writer, nothing torn or foreign.
    const checks = await Promise.all(workers.map((w, id) =>
      ask<Reply & { errors: string[] }>(w, { cmd: "check", writers: [{ id: (id + WORKERS - 1) % WORKERS, offset: slotsOf((id + WORKERS - 1) % WORKERS) }], payload: PAYLOAD, window: WINDOW })));
    for (const r of checks) expect(r.errors).toEqual([]);
    const closed = await Promise.all(workers.map((w) => ask<Reply & { leaked: number }>(w, { cmd: "close" })));
    for (const r of closed) expect(r.leaked).toBe(0);
    const audit = pool.audit();
    expect(audit.problems).toEqual([]);
    expect(audit.inUse).toBe(0);
    const stats = pool.stats();
    expect(stats.gets).toBe(stats.releases);
    expect(stats.gets).toBeGreaterThanOrEqual(WORKERS * (2 * OPS + 1));
    expect(pool.close().count).toBe(0);
  } catch (e) {
    console.error(`[${c.provider}]`, e);
    throw e;
  } finally {
    for (const w of workers) w.terminate();
    if (!pool.closed) pool.close();
    await agent.stop();
    provider.close();
  }
}

describeFabric("RMA from Workers", () => {
  test(`${WORKERS} Workers, each with its own Endpoint, on tcp and shm at once: ${OPS} stamped writes and reads each, into another process and into each other`, async () => {
    await Promise.all(CASES.map(workersDoRma));
  }, 300_000);

  test("a Worker terminated mid-RMA: the others finish, the owner's close reports its regions", () => {
    const r = Bun.spawnSync([process.execPath, `${import.meta.dir}/rma-terminate-child.ts`], { stdout: "pipe", stderr: "pipe", timeout: 90_000 });
    const stderr = r.stderr.toString();
    expect(r.exitCode).toBe(0);
    const out = JSON.parse(r.stdout.toString().trim().split("\n").at(-1)!) as {
      survivors: { errors: string[]; writes: number; reads: number }[]; reported: number; problems: string[]; ops: number;
    };
    expect(stderr).toBe("");
    for (const s of out.survivors) {
      expect(s.errors).toEqual([]);
      expect([s.writes, s.reads]).toEqual([out.ops, out.ops]);
    }
    expect(out.problems).toEqual([]);
    expect(out.reported).toBeGreaterThanOrEqual(1); // its exposed region, and the buffers it had in flight
  });

  test("an Endpoint over a closed shared provider, in this thread and in a Worker, is a typed error", async () => {
    const owner = LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" });
    const pool = new MemoryPool(owner, { small: { initialCount: 1 } });
    const handle = pool.share();
    const providerHandle = owner.share();
    const view = LibfabricProvider.attach(providerHandle);
    const worker = new Worker(new URL("./rma-worker.ts", import.meta.url));
    try {
      await ask(worker, { cmd: "view", provider: providerHandle }); // a view made while the provider was open
      expect(pool.close().count).toBe(0);
      owner.close();
      let error: unknown;
      try { new Endpoint(view); } catch (e) { error = e; }
      expect(error).toBeInstanceOf(AllocToolsError);
      expect((error as AllocToolsError).code).toBe("PROVIDER_CLOSED");
      const inWorker = await ask<Reply & { endpointOverView: string; attachPool: string; attachProvider: string }>(worker,
        { cmd: "after-close", handle, provider: providerHandle });
      expect([inWorker.endpointOverView, inWorker.attachPool, inWorker.attachProvider]).toEqual(["PROVIDER_CLOSED", "POOL_CLOSED", "PROVIDER_CLOSED"]);
    } finally {
      worker.terminate();
      if (!pool.closed) pool.close();
      owner.close();
    }
  });
});
