// RMA over UCX from real Workers of one shared pool: each Worker attaches, makes its own
// UcxEndpoint over the attached pool's provider (a view of the owner's UCX context) and writes and
// reads stamped payloads, from pooled, temporary and user regions, into another process's pooled
// region and into the other Workers' pooled and temporary regions, over tcp and over posix,cma at
// the same time. The owner's audit is clean afterwards; a Worker terminated mid-RMA leaves the
// others working and its regions in the owner's close report; bad handles get typed errors.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { MemoryPool, UcxProvider, type MemoryPoolOptions, type SharedPoolHandle } from "../../lib/index.ts";
import { describeUcx } from "../helpers.ts";
import { AgentProcess } from "../rma/peers.ts";
import { fromHex } from "../rma/pattern.ts";
import { UCX_AGENT } from "../ucx/two-peers.ts";
import type { UcxCommand, UcxTarget } from "./ucx-rma-worker.ts";

setDefaultTimeout(60_000);

/** Medium regions are the inboxes and pooled sources: two per Worker, so Workers grow that class themselves. */
const POOL: MemoryPoolOptions = {
  small: { chunkSize: 4096, initialCount: 4 },
  medium: { chunkSize: 65_536, initialCount: 2, growCount: 2 },
  large: { chunkSize: 256 << 10, initialCount: 1 },
  huge: { chunkSize: 1 << 20, initialCount: 1 },
};
const INBOX = 65_536;
const TEMPORARY = (1 << 20) + 65_536; // above the largest class: a temporary region of the Worker's own
const USER = 65_536;
/** Each writer owns one slice of every inbox (and of the other process's region). */
const SLICE = 8192;
/** Writes (each read back) per Worker: every target and form a few dozen times; 2 cores shared by busy-polling threads make each one slow. */
const OPS = 60;

type Reply = { seq: number; ok: boolean; error?: string; [k: string]: unknown };

/** A Worker of ucx-rma-worker.ts, asked one command at a time. */
class RmaWorker {
  readonly worker = new Worker(new URL("./ucx-rma-worker.ts", import.meta.url));
  private seq = 0;
  private readonly waiting = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  /** Resolves when the Worker says its run is under way (`announce`). */
  running: Promise<void>;
  private onRunning: () => void = () => {};
  /** Resolves once the Worker's thread has ended, however it ended. */
  readonly exited: Promise<void>;
  private ended = false;
  private lastError = "";

  constructor() {
    this.running = new Promise((resolve) => { this.onRunning = resolve; });
    this.worker.onmessage = (e: MessageEvent<Reply>) => {
      if (e.data.seq === -1) return this.onRunning();
      this.waiting.get(e.data.seq)?.resolve(e.data);
      this.waiting.delete(e.data.seq);
    };
    this.worker.addEventListener("error", (e) => { this.lastError = e instanceof ErrorEvent ? e.message : String(e); });
    this.exited = new Promise((resolve) => {
      this.worker.addEventListener("close", (e) => {
        this.ended = true;
        const why = `the Worker ended (exit ${(e as CloseEvent & { code?: number }).code ?? "?"}${this.lastError ? `: ${this.lastError}` : ""})`;
        for (const w of this.waiting.values()) w.reject(new Error(why));
        this.waiting.clear();
        resolve();
      }, { once: true });
    });
  }

  ask<T = Reply>(m: UcxCommand, timeoutMs = 30_000): Promise<T> {
    const seq = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      if (this.ended) return reject(new Error(`Worker ${m.cmd}: the Worker has ended`));
      const timer = setTimeout(() => reject(new Error(`Worker ${m.cmd} did not answer in ${timeoutMs} ms`)), timeoutMs);
      this.waiting.set(seq, {
        resolve: (r) => {
          clearTimeout(timer);
          if (r.ok) resolve(r as T);
          else reject(new Error(`Worker ${m.cmd}: ${r.error}`));
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(new Error(`Worker ${m.cmd}: ${e.message}`));
        },
      });
      this.worker.postMessage({ ...m, seq });
    });
  }

  /** Terminates the Worker (if it still runs) and waits for its thread to end. */
  terminated(): Promise<void> {
    if (!this.ended) this.worker.terminate();
    return this.exited;
  }
}

type Opened = { name: Uint8Array; pooled: Uint8Array; temporary: Uint8Array; kinds: string[]; isView: boolean };
type RunResult = { writes: number; reads: number; errors: string[]; ms: number };

/** The final stamp's seed of writer `w` in target `t` (distinct per pair, mod 256). */
const finalSeed = (w: number, t: number) => (w * 37 + t * 11 + 5) & 0xff;

/**
 * Targets of writer `w` among `workers` Workers: the other process's region (peer 0, slice w), then
 * each other Worker's pooled and temporary inbox (slice w). Names are [agent, ...workers].
 */
function targetsOf(w: number, opened: Opened[], agentRemote: Uint8Array, withAgent = true): UcxTarget[] {
  const out: UcxTarget[] = [];
  if (withAgent) out.push({ peer: 0, remote: agentRemote, offset: w * SLICE, length: SLICE, finalSeed: finalSeed(w, 0) });
  opened.forEach((o, other) => {
    if (other === w) return;
    out.push({ peer: 1 + other, remote: o.pooled, offset: w * SLICE, length: SLICE, finalSeed: finalSeed(w, 1 + 2 * other) });
    out.push({ peer: 1 + other, remote: o.temporary, offset: w * SLICE, length: SLICE, finalSeed: finalSeed(w, 2 + 2 * other) });
  });
  return out;
}

interface Setup {
  provider: UcxProvider;
  pool: MemoryPool;
  handle: SharedPoolHandle;
  agent: AgentProcess;
}

const CASES = [
  { label: "tcp", transports: "tcp", agentArgs: ["--transports", "tcp", "--net-devices", "lo"], netDevices: "lo" },
  { label: "posix,cma", transports: "posix,cma", agentArgs: ["--transports", "posix,cma", "--allocate", "true"] },
] as const;

describeUcx("UCX RMA from Workers of one shared pool", () => {
  const setups = new Map<string, Setup>();

  beforeAll(async () => {
    for (const c of CASES) {
      const provider = UcxProvider.open({ transports: c.transports, ...("netDevices" in c ? { netDevices: c.netDevices } : {}) });
      const pool = new MemoryPool(provider, POOL);
      const handle = pool.share({ maxWorkers: 16 });
      const agent = await AgentProcess.start([...c.agentArgs, "--timeout", "10000"], undefined, 15_000, UCX_AGENT);
      setups.set(c.label, { provider, pool, handle, agent });
    }
  });
  afterAll(async () => {
    for (const s of setups.values()) {
      expect(await s.agent.stop()).toBe(0);
      expect(s.pool.close().count).toBe(0); // children before parents: the shared pool, then its provider
      s.provider.close();
      expect(s.provider.contextUsers).toBe(-1); // every Worker's endpoint and registration gone: cleaned up
    }
  });

  test("4 Workers (2 on tcp, 2 on posix,cma, at once) write and read stamped payloads into another process and into each other", async () => {
    const runs = CASES.map(async (c) => {
      const s = setups.get(c.label)!;
      const workers = [new RmaWorker(), new RmaWorker()];
      try {
        const opened = await Promise.all(workers.map((w) => w.ask<Opened>({ cmd: "open", handle: s.handle, inboxBytes: INBOX, temporaryBytes: TEMPORARY, userBytes: USER })));
        for (const o of opened) {
          expect(o.isView).toBe(true);
          expect(o.kinds).toEqual(["pooled", "temporary", "user", "temporary"]);
        }
        const names = [fromHex(s.agent.ready.name), ...opened.map((o) => o.name)];
        await Promise.all(workers.map((w) => w.ask({ cmd: "peers", names })));
        const agentRemote = fromHex(s.agent.ready.remote);
        const targets = workers.map((_, w) => targetsOf(w, opened, agentRemote));
        const results = await Promise.all(workers.map((w, i) => w.ask<RunResult>({ cmd: "run", targets: targets[i]!, ops: OPS, seed: 1000 + i, maxLength: SLICE })));
        for (const r of results) expect({ errors: r.errors, writes: r.writes, reads: r.reads }).toEqual({ errors: [], writes: OPS + 3, reads: OPS });
        // The final stamps are in the targets' memory as the targets see it.
        for (const [w] of workers.entries()) {
          const c0 = await s.agent.request({ op: "check", offset: w * SLICE, length: SLICE, seed: finalSeed(w, 0) });
          expect({ writer: w, mismatch: c0.mismatch }).toEqual({ writer: w, mismatch: -1 });
        }
        for (const [t, target] of workers.entries()) {
          const checks = workers.flatMap((_, w) => w === t ? [] : [
            { region: "pooled" as const, offset: w * SLICE, length: SLICE, seed: finalSeed(w, 1 + 2 * t) },
            { region: "temporary" as const, offset: w * SLICE, length: SLICE, seed: finalSeed(w, 2 + 2 * t) },
          ]);
          const { mismatches } = await target.ask<{ mismatches: number[] }>({ cmd: "inbox", checks });
          expect(mismatches).toEqual(checks.map(() => -1));
        }
        const closed = await Promise.all(workers.map((w) => w.ask<{ leaked: number }>({ cmd: "close" })));
        expect(closed.map((r) => r.leaked)).toEqual([0, 0]);
        return results;
      } finally {
        for (const w of workers) await w.terminated();
      }
    });
    const results = await Promise.all(runs);
    for (const s of setups.values()) {
      const audit = s.pool.audit();
      expect(audit.problems).toEqual([]);
      // The Workers grew the medium class themselves (UCX-allocated blocks on posix,cma) and used them.
      expect(s.pool.stats().stacks.medium.growths).toBeGreaterThan(0);
      expect(s.pool.stats().regionsInUse).toBe(0);
    }
    console.log(`[ucx workers] ${CASES.map((c, i) => `${c.label}: ${results[i]!.map((r) => `${Math.round(r.ms)} ms`).join(", ")}`).join("; ")} for ${OPS} writes + reads each`);
  });

  test("a Worker terminated mid-RMA leaves the others working; the owner's close reports and frees its regions", async () => {
    const agent = setups.get("posix,cma")!.agent;
    const provider = UcxProvider.open({ transports: "posix,cma" });
    const pool = new MemoryPool(provider, POOL);
    const handle = pool.share({ maxWorkers: 8 });
    const [first, second, victim] = [new RmaWorker(), new RmaWorker(), new RmaWorker()];
    const all = [first!, second!, victim!];
    try {
      const opened = await Promise.all(all.map((w) => w.ask<Opened>({ cmd: "open", handle, inboxBytes: INBOX, temporaryBytes: TEMPORARY, userBytes: USER })));
      const names = [fromHex(agent.ready.name), ...opened.map((o) => o.name)];
      await Promise.all(all.map((w) => w.ask({ cmd: "peers", names })));
      const agentRemote = fromHex(agent.ready.remote);
      // The victim writes into the other process and the survivors' pooled inboxes, until terminated.
      const victimTargets = targetsOf(2, opened, agentRemote).filter((t) => t.remote !== opened[0]!.temporary && t.remote !== opened[1]!.temporary);
      void victim!.ask({ cmd: "run", targets: victimTargets, ops: 1_000_000, seed: 77, maxLength: SLICE, announce: true }, 120_000).catch(() => {});
      await victim!.running;
      await victim!.terminated();
      // The survivors work on, with each other and the other process, as if nothing happened.
      const survivors = opened.slice(0, 2);
      const results = await Promise.all([first!, second!].map((w, i) => w.ask<RunResult>({
        cmd: "run", targets: targetsOf(i, survivors, agentRemote), ops: OPS, seed: 2000 + i, maxLength: SLICE,
      })));
      for (const r of results) expect(r.errors).toEqual([]);
      const closed = await Promise.all([first!, second!].map((w) => w.ask<{ leaked: number }>({ cmd: "close" })));
      expect(closed.map((r) => r.leaked)).toEqual([0, 0]);
      expect(pool.audit().problems).toEqual([]);
      const blocks = Object.values(pool.stats().stacks).reduce((n, s) => n + s.blocks, 0);
      const report = pool.close();
      // What the victim held: two pooled regions, two temporary ones and a user region.
      expect(report.count).toBe(5);
      expect(report.regions.map((r) => r.kind).sort()).toEqual(["medium", "medium", "temporary", "temporary", "user"]);
      provider.close();
      // The victim's ucp_worker was never destroyed: the context is kept (leaked), not cleaned up under it.
      // If the victim died with operations still counted, a transport could yet complete them into the
      // pool's blocks: the owner's close keeps them (UCX's own, allocated), each holding the context too.
      expect([1, 1 + blocks]).toContain(provider.contextUsers);
    } finally {
      for (const w of all) await w.terminated();
    }
  });

  test("in a Worker: a closed provider's handle, another process's and a forged one, a closed pool's handle and an endpoint over a view whose owner closed are typed errors", async () => {
    const closedProvider = UcxProvider.open({ transports: "tcp" });
    const closedHandle = closedProvider.share();
    closedProvider.close();
    const poolProvider = UcxProvider.open({ transports: "tcp" });
    const closedPool = new MemoryPool(poolProvider, POOL);
    const closedPoolHandle = closedPool.share();
    expect(closedPool.close().count).toBe(0);
    const live = UcxProvider.open({ transports: "tcp" });
    const worker = new RmaWorker();
    try {
      const { seq: _s, ...codes } = await worker.ask({ cmd: "bad-handles", closedProvider: closedHandle, closedPool: closedPoolHandle, live: live.share() });
      expect(codes).toEqual({ ok: true, closedProvider: "PROVIDER_CLOSED", otherProcess: "NOT_SUPPORTED", forged: "TypeError", closedPool: "POOL_CLOSED" });
      live.close(); // under the Worker's view
      const { seq: _t, ...after } = await worker.ask({ cmd: "endpoint-on-view" });
      expect(after).toEqual({ ok: true, closed: true, endpoint: "PROVIDER_CLOSED", register: "PROVIDER_CLOSED" });
    } finally {
      await worker.terminated();
      poolProvider.close();
    }
    expect(live.contextUsers).toBe(-1);
  });
});
