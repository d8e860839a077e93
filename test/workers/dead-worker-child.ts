// Run in a child process by dead-workers.test.ts (Workers are terminated here, and VmLck is this
// process's own): a Worker makes a temporary and a user region and is terminated while holding
// them; then the owner closes. Prints what close() reported and what stayed locked.
import { HostProvider, LibfabricProvider, MemoryPool } from "../../lib/index.ts";
import { vmLckKiB } from "../helpers.ts";

const label = process.argv[2] ?? "host";
const provider = label === "tcp" ? LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" }) : new HostProvider();
const baseline = vmLckKiB();
const pool = new MemoryPool(provider, { small: { initialCount: 4 }, huge: { initialCount: 1 } });
const handle = pool.share();
const worker = new Worker(new URL("./worker-pool.ts", import.meta.url));
const reply = await new Promise<{ ok: boolean; error?: string }>((resolve) => {
  worker.onmessage = (e) => resolve(e.data);
  worker.postMessage({ cmd: "unpooled", handle, temporaryBytes: 1536 * 1024, keep: true, userBytes: 256 * 1024 });
});
if (!reply.ok) throw new Error(reply.error);
const whileHeld = vmLckKiB();
await new Promise<void>((resolve) => {
  worker.addEventListener("close", () => resolve(), { once: true });
  worker.terminate();
});
const stats = pool.stats();
const report = pool.close();
let providerError: string | null = null;
try {
  provider.close();
} catch (e) {
  providerError = `${(e as Error).name}: ${(e as Error).message}`;
}
console.log(JSON.stringify({
  baseline, whileHeld, after: vmLckKiB(), live: [stats.liveTemporaryRegions, stats.liveUserRegions],
  reported: report.regions.map((r) => r.kind).sort(), bytes: report.bytes, providerError,
}));
