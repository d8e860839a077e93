// Run in a child process by dead-workers.test.ts (a close that touches a handle nobody recorded
// crashes the process): Workers terminated at every step of a real growth, and of a real take-over
// of a dead Worker's growth, on one provider. After each cut the owner gets from the class (taking
// the lock over if a dead Worker holds it), then closes the pool: it must not crash, must leave
// nothing locked, and the audit must be clean. Prints one line per case before its close (the last
// line names the case that crashed) and a summary last.
//   growth-cut-child.ts LABEL growth     every step of one Worker's growth
//   growth-cut-child.ts LABEL takeover   a growth cut after its block was reserved, mapped or
//                                        registered, then every step of the take-over by a second Worker
//   growth-cut-child.ts LABEL retry      a growth of 4 regions whose push of the 3 it does not keep
//                                        lost a CAS race, cut at the retry: the next taker pushes them
//   growth-cut-child.ts LABEL unfinished a live Worker's growth still mapping when the close stops
//                                        waiting for its lock (state-worker.ts): no registration to close
import { HostProvider, LibfabricProvider, MemoryPool } from "../../lib/index.ts";
import { vmLckKiB } from "../helpers.ts";
import type { CutCommand, CutReply } from "./cut-worker.ts";
import type { StateCommand } from "./state-worker.ts";

const [label = "host", mode = "growth"] = process.argv.slice(2);
const provider = label === "tcp" ? LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" }) : new HostProvider();
const BYTES = 2000; // the medium class

/** Starts a cut Worker, returns where it stopped, and terminates it. */
async function cutWorker(command: CutCommand): Promise<CutReply> {
  const worker = new Worker(new URL("./cut-worker.ts", import.meta.url));
  try {
    return await new Promise<CutReply>((resolve, reject) => {
      worker.onmessage = (event: MessageEvent<CutReply>) => resolve(event.data);
      worker.onerror = (event) => reject(new Error(event.message));
      worker.postMessage(command);
    });
  } finally {
    await new Promise<void>((resolve) => {
      worker.addEventListener("close", () => resolve(), { once: true });
      worker.terminate();
    });
  }
}

interface Case { cuts: string[]; problems: string[]; lockedKiB: number; closeError: string | null }
const cases: Case[] = [];

/** One pool: its only medium region held by the owner, so that every Worker's get grows the class. */
async function runCase(steps: (number | string)[], atRetry = false): Promise<CutReply[]> {
  const baseline = vmLckKiB();
  const pool = new MemoryPool(provider, { medium: { initialCount: 1, growCount: atRetry ? 4 : 1, maxRegions: 16 } });
  const handle = pool.share({ cacheSize: 0 });
  const held = pool.getRegion(BYTES);
  const replies: CutReply[] = [];
  for (const step of steps) replies.push(await cutWorker({ handle, bytes: BYTES, step, atRetry }));
  const cuts = replies.map((reply) => (reply.at === "cut" ? `${reply.name}@${reply.step}` : "done"));
  console.log(JSON.stringify({ closing: cuts }));
  let closeError: string | null = null;
  const problems: string[] = [];
  try {
    pool.releaseRegion(pool.getRegion(BYTES)); // grows: takes the lock over from a dead Worker
    pool.releaseRegion(held);
    problems.push(...pool.audit().problems);
    pool.close();
  } catch (error) {
    closeError = `${(error as Error).name}: ${(error as Error).message}`;
    if (!pool.closed) try { pool.close(); } catch { /* reported above */ }
  }
  cases.push({ cuts, problems, lockedKiB: vmLckKiB() - baseline, closeError });
  return replies;
}

/** The owner closes while a live Worker's growth is MAPPED, its lock no longer held. */
async function runUnfinished(): Promise<void> {
  const pool = new MemoryPool(provider, { medium: { initialCount: 1, growCount: 1, maxRegions: 16 } });
  const handle = pool.share({ cacheSize: 0 });
  const worker = new Worker(new URL("./state-worker.ts", import.meta.url));
  await new Promise<void>((resolve, reject) => {
    worker.onmessage = () => resolve();
    worker.onerror = (event) => reject(new Error(event.message));
    worker.postMessage({ cmd: "growth-past-close-wait", handle, classIndex: 1, bytes: 1 << 20 } satisfies StateCommand);
  });
  console.log(JSON.stringify({ closing: ["growth-past-close-wait"] }));
  let closeError: string | null = null;
  try {
    pool.close();
  } catch (error) {
    closeError = `${(error as Error).name}: ${(error as Error).message}`;
  }
  worker.terminate();
  cases.push({ cuts: ["growth-past-close-wait"], problems: [], lockedKiB: 0, closeError });
}

if (mode === "unfinished") {
  await runUnfinished();
} else if (mode === "retry") {
  const [reply] = await runCase(["BlockTable.pushRest#1"], true);
  if (reply!.at !== "cut") throw new Error("the growth never reached its push");
} else if (mode === "growth") {
  for (let step = 1; ; step++) {
    const [reply] = await runCase([step]);
    if (reply!.at === "done") break;
  }
} else {
  for (const first of ["BlockTable.notePinned#1", "BlockTable.noteRegistered#1", "BlockTable.publish#1"]) {
    for (let step = 1; ; step++) {
      const [, second] = await runCase([first, step]);
      // From its reserve on the second Worker grows by itself: the growth mode covers those steps.
      if (second!.at === "done" || second!.name === "BlockTable.reserve") break;
    }
  }
}

let providerError: string | null = null;
try {
  provider.close();
} catch (error) {
  const inner = error instanceof AggregateError ? ` (${error.errors.map((each) => (each as Error).message).join("; ")})` : "";
  providerError = `${(error as Error).name}: ${(error as Error).message}${inner}`;
}
console.log(JSON.stringify({ cases, providerError }));
