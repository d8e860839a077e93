// Run in a child process by dead-workers.test.ts: Workers hammer one shared pool (every class,
// growth, temporary and user regions) while Workers are terminated at random moments and new
// ones take their place. At the end: the audit must be clean, close() must free everything (VmLck
// back to where it was) and the provider must close. Seeded: ALLOCTOOLS_TORTURE_SEED replays a
// run; ALLOCTOOLS_TORTURE_MS sets its length (default 2500).
import { HostProvider, LibfabricProvider, MemoryPool } from "../../lib/index.ts";
import { vmLckKiB } from "../helpers.ts";

const label = process.argv[2] ?? "host";
const seed = Number(process.env.ALLOCTOOLS_TORTURE_SEED ?? Math.floor(Math.random() * 2 ** 31));
const durationMs = Number(process.env.ALLOCTOOLS_TORTURE_MS ?? 2500);
let state = seed >>> 0 || 1;
const random = () => (state = (Math.imul(state, 1664525) + 1013904223) >>> 0);

const KiB = 1024;
const SIZES = [256, 2 * KiB, 16 * KiB, 64 * KiB];
const one = (chunkSize: number, maxRegions: number) => ({ chunkSize, initialCount: 1, growCount: 1 + (chunkSize < 4096 ? 3 : 0), maxRegions });
const provider = label === "tcp" ? LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" }) : new HostProvider();
const baseline = vmLckKiB();
const pool = new MemoryPool(provider, {
  small: one(SIZES[0]!, 256), medium: one(SIZES[1]!, 128), large: one(SIZES[2]!, 48), huge: one(SIZES[3]!, 24),
  maxPinnedBytes: 7 * 1024 * KiB,
});
const handle = pool.share({ cacheSize: 4, maxWorkers: 1024, maxUnpooledRegions: 8 });

const running = new Set<Worker>();
/** Workers that attached and are in their loops: the ones worth terminating. */
const working = new Set<Worker>();
let workers = 0;
let terminated = 0;
let gets = 0;
const errors: string[] = [];

function start(): void {
  const w = new Worker(new URL("./worker-pool.ts", import.meta.url));
  workers++;
  running.add(w);
  w.onmessage = (e: MessageEvent<{ ok: boolean; at?: string; gets?: number; error?: string }>) => {
    if (!e.data.ok) errors.push(e.data.error ?? "?");
    if (e.data.at === "attached") working.add(w);
    if (e.data.at === "done") {
      working.delete(w);
      gets += e.data.gets ?? 0;
      running.delete(w);
      w.terminate();
    }
  };
  w.onerror = (e) => errors.push(e.message);
  w.postMessage({ cmd: "torture", handle, seed: random(), ops: 2_000 + (random() % 200_000), sizes: SIZES, temporaryBytes: SIZES[3]! + 1 });
}

function kill(w: Worker): Promise<void> {
  running.delete(w);
  working.delete(w);
  terminated++;
  return new Promise((resolve) => {
    w.addEventListener("close", () => resolve(), { once: true });
    w.terminate();
  });
}

const end = Date.now() + durationMs;
while (Date.now() < end) {
  while (running.size < 3) start();
  await Bun.sleep(2 + (random() % 60));
  const list = [...working];
  if (list.length > 0 && random() % 3 !== 0) await kill(list[random() % list.length]!);
}
for (const w of [...running]) await kill(w);

const audit = pool.audit();
const stats = pool.stats();
const report = pool.close();
let providerError: string | null = null;
try {
  provider.close();
} catch (e) {
  providerError = `${(e as Error).name}: ${(e as Error).message}${e instanceof AggregateError ? ` (${e.errors.map((x) => (x as Error).message).join("; ")})` : ""}`;
}
console.log(JSON.stringify({
  seed, workers, terminated, gets: gets + stats.gets, problems: [...audit.problems.slice(0, 10), ...errors.slice(0, 10)], lost: audit.lost,
  leaked: report.count, baseline, after: vmLckKiB(), providerError,
}));
