// Run in a child process by owner-close.test.ts: the owner of a shared pool closes it while its
// Workers hold regions, have RMA operations in flight, make temporary and user regions, or attach
// (issue 21, defect 4). A signal here ends the process, which the test reports; otherwise the
// child prints one JSON line of what happened, round by round.
//
//   bun test/workers/owner-close-child.ts <views|busy|race|unpooled> <host|tcp|shm|ucx-tcp|ucx-shm> [rounds]
import {
  HostProvider, LibfabricProvider, MemoryPool, UcxProvider, type MemoryPoolOptions, type RegionProvider,
} from "../../lib/index.ts";
import { vmLckKiB } from "../helpers.ts";
import type { OwnerCloseCommand } from "./owner-close-worker.ts";

const [scenario = "views", label = "host", roundsArg] = process.argv.slice(2);
const ROUNDS = Number(roundsArg ?? 5);
const KiB = 1024;
/** The largest request of each class: small, medium, large, huge. */
const SIZES = [256, 2 * KiB, 16 * KiB, 64 * KiB] as const;
const TEMPORARY = 200 * KiB;
/** Two regions a class at first (one for the owner's cache, one for the first Worker's), one more per growth. */
const POOL: MemoryPoolOptions = {
  small: { chunkSize: SIZES[0], initialCount: 2, growCount: 1, maxRegions: 64 },
  medium: { chunkSize: SIZES[1], initialCount: 2, growCount: 1, maxRegions: 64 },
  large: { chunkSize: SIZES[2], initialCount: 2, growCount: 1, maxRegions: 32 },
  huge: { chunkSize: SIZES[3], initialCount: 2, growCount: 1, maxRegions: 16 },
  maxPinnedBytes: 6 * 1024 * KiB,
};

function open(): RegionProvider {
  switch (label) {
    case "host": return new HostProvider();
    case "tcp": return LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" });
    case "shm": return LibfabricProvider.open({ provider: "shm" });
    case "ucx-tcp": return UcxProvider.open({ transports: "tcp" });
    case "ucx-shm": return UcxProvider.open({ transports: "posix,cma" });
    default: throw new Error(`unknown provider ${label}`);
  }
}

type Reply = { seq: number; ok: boolean; error?: string; code?: string; at?: string; [k: string]: unknown };

/** A Worker asked by sequence number; a command may answer more than once (`at`). */
class OwnerCloseWorker {
  private readonly worker = new Worker(new URL("./owner-close-worker.ts", import.meta.url));
  private seq = 0;
  private readonly listeners = new Map<number, (r: Reply) => void>();

  constructor() {
    this.worker.onmessage = (e: MessageEvent<Reply>) => this.listeners.get(e.data.seq)?.(e.data);
    this.worker.onerror = (e) => { throw new Error(`worker error: ${e instanceof ErrorEvent ? e.message : String(e)}`); };
  }

  /** Sends `command`; resolves with its replies in order, the first `count` of them. */
  send(command: OwnerCloseCommand, count = 1): Promise<Reply>[] {
    const seq = ++this.seq;
    const replies = Array.from({ length: count }, () => Promise.withResolvers<Reply>());
    let next = 0;
    this.listeners.set(seq, (r) => {
      const slot = replies[next++];
      if (slot === undefined) return;
      if (r.ok) slot.resolve(r);
      else slot.reject(new Error(`${r.code}: ${r.error}`));
    });
    this.worker.postMessage({ ...command, seq });
    return replies.map((r) => r.promise);
  }

  ask(command: OwnerCloseCommand): Promise<Reply> {
    return this.send(command)[0]!;
  }

  terminate(): Promise<void> {
    return new Promise((resolve) => {
      this.worker.addEventListener("close", () => resolve(), { once: true });
      this.worker.terminate();
    });
  }
}

function codeOf(e: unknown): string {
  const code = (e as { code?: unknown }).code;
  return typeof code === "string" ? code : e instanceof Error ? e.name : String(e);
}

const waitFor = (words: Int32Array) => { while (Atomics.load(words, 0) === 0) Atomics.wait(words, 0, 0, 100); };

/** A Worker holds regions of every class (the owner's blocks and its own), a temporary and a user region; the owner closes; the Worker touches them. */
async function views(provider: RegionProvider): Promise<Record<string, unknown>> {
  const pool = new MemoryPool(provider, POOL);
  const handle = pool.share({ cacheSize: 2 });
  const worker = new OwnerCloseWorker();
  try {
    await worker.ask({ cmd: "hold", handle, perClass: 2, sizes: SIZES, temporaryBytes: TEMPORARY, userBytes: 8 * KiB });
    const report = pool.close();
    const touched = await worker.ask({ cmd: "touch" });
    const detached = await worker.ask({ cmd: "close" });
    return { reported: report.count, touched, leaked: detached.leaked };
  } finally {
    await worker.terminate();
  }
}

/** One Worker's reads from a stalled Worker's region are in flight: the owner's close is BUSY and the pool keeps serving. */
async function busy(provider: RegionProvider): Promise<Record<string, unknown>> {
  const pool = new MemoryPool(provider, POOL);
  const handle = pool.share();
  const [target, initiator] = [new OwnerCloseWorker(), new OwnerCloseWorker()];
  const gate = new SharedArrayBuffer(4);
  try {
    const exposed = await target.ask({ cmd: "endpoint", handle, exposeBytes: 4 * KiB, timeoutMs: 30_000 });
    await initiator.ask({ cmd: "endpoint", handle, exposeBytes: 10, timeoutMs: 30_000 });
    const [stalled, resumed] = target.send({ cmd: "stall", gate }, 2) as [Promise<Reply>, Promise<Reply>];
    await stalled;
    const [posted, done] = initiator.send({ cmd: "read", name: exposed.name as string, remote: exposed.remote as string, length: 4 * KiB, temporaryBytes: TEMPORARY }, 2) as [Promise<Reply>, Promise<Reply>];
    const inFlight = (await posted).inFlight;
    await Bun.sleep(50);
    let closeError: { code: string; message: string } | null = null;
    try {
      pool.close();
    } catch (e) {
      closeError = { code: codeOf(e), message: (e as Error).message };
    }
    const stillOpen = !pool.closed;
    let ownerServes = false;
    if (stillOpen) {
      const r = pool.getRegion(100);
      r.view.fill(1);
      pool.releaseRegion(r);
      ownerServes = true;
    }
    const workerServes = stillOpen ? (await initiator.ask({ cmd: "serve", sizes: SIZES })).served : 0;
    Atomics.store(new Int32Array(gate), 0, 1);
    Atomics.notify(new Int32Array(gate), 0);
    await resumed;
    const reads = await done;
    const closedTarget = await target.ask({ cmd: "close" });
    const closedInitiator = await initiator.ask({ cmd: "close" });
    const report = pool.closed ? null : pool.close();
    return { inFlight, closeError, stillOpen, ownerServes, workerServes, reads, leaked: [closedTarget.leaked, closedInitiator.leaked], reported: report?.count ?? null };
  } finally {
    Atomics.store(new Int32Array(gate), 0, 1);
    await target.terminate();
    await initiator.terminate();
    if (!pool.closed) try { pool.close(); } catch { /* reported above */ }
  }
}

/** A Worker does RMA as fast as it can while the owner closes (BUSY answers retried): typed errors only, never a signal. */
async function race(provider: RegionProvider, round: number): Promise<Record<string, unknown>> {
  const pool = new MemoryPool(provider, POOL);
  const handle = pool.share();
  const [target, initiator] = [new OwnerCloseWorker(), new OwnerCloseWorker()];
  const started = new SharedArrayBuffer(4);
  try {
    const exposed = await target.ask({ cmd: "endpoint", handle, exposeBytes: 4 * KiB, timeoutMs: 10_000 });
    await initiator.ask({ cmd: "endpoint", handle, exposeBytes: 10, timeoutMs: 10_000 });
    const hammered = initiator.ask({ cmd: "hammer", name: exposed.name as string, remote: exposed.remote as string, length: 512, temporaryBytes: TEMPORARY, started });
    waitFor(new Int32Array(started));
    await Bun.sleep(round % 7);
    let busyAnswers = 0;
    const otherErrors: string[] = [];
    for (let attempt = 0; attempt < 100_000 && !pool.closed; attempt++) {
      try {
        pool.close();
      } catch (e) {
        if (codeOf(e) === "BUSY") busyAnswers++;
        else otherErrors.push(`${codeOf(e)}: ${(e as Error).message}`);
        await Bun.sleep(0);
      }
    }
    const result = await hammered;
    await target.ask({ cmd: "close" });
    await initiator.ask({ cmd: "close" });
    return { closed: pool.closed, busyAnswers, otherErrors, ...result };
  } finally {
    await target.terminate();
    await initiator.terminate();
  }
}

/** Workers make and release temporary and user regions, and attach and detach, while the owner closes. */
async function unpooled(provider: RegionProvider, round: number): Promise<Record<string, unknown>> {
  const pool = new MemoryPool(provider, POOL);
  const handle = pool.share({ maxWorkers: 8 });
  const [churner, attacher] = [new OwnerCloseWorker(), new OwnerCloseWorker()];
  const [churning, attaching] = [new SharedArrayBuffer(4), new SharedArrayBuffer(4)];
  try {
    const churned = churner.ask({ cmd: "churn", handle, temporaryBytes: TEMPORARY + round * 4096, userBytes: 12 * KiB, started: churning });
    const reattached = attacher.ask({ cmd: "reattach", handle, started: attaching });
    waitFor(new Int32Array(churning));
    waitFor(new Int32Array(attaching));
    await Bun.sleep(round % 5);
    const report = pool.close();
    return { reported: report.count, churn: await churned, reattach: await reattached };
  } finally {
    await churner.terminate();
    await attacher.terminate();
  }
}

const provider = open();
const baseline = vmLckKiB();
const rounds: Record<string, unknown>[] = [];
for (let round = 0; round < ROUNDS; round++) {
  if (scenario === "views") rounds.push(await views(provider));
  else if (scenario === "busy") rounds.push(await busy(provider));
  else if (scenario === "race") rounds.push(await race(provider, round));
  else if (scenario === "unpooled") rounds.push(await unpooled(provider, round));
  else throw new Error(`unknown scenario ${scenario}`);
}
const lockedAfterRounds = vmLckKiB();
let providerError: string | null = null;
try {
  provider.close();
} catch (e) {
  providerError = `${codeOf(e)}: ${(e as Error).message}`;
}
console.log(JSON.stringify({ rounds, baseline, lockedAfterRounds, providerError }));
process.exit(0);
