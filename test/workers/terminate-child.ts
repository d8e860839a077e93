// Run in a child process by shared-pool.test.ts: a Worker is terminated in the middle of its
// get/release loop, then the pool is audited and closed. For tcp, libfabric is loaded first: its
// PSM dependency replaces the signal handlers that stop a busy Worker unless ffi/ puts them back.
import { HostProvider, LibfabricProvider, MemoryPool } from "../../lib/index.ts";

const KiB = 1024;
const SIZES = [256, 2 * KiB, 16 * KiB, 64 * KiB];
const one = (chunkSize: number, maxRegions: number) => ({ chunkSize, initialCount: 1, growCount: 1, maxRegions });
const provider = process.argv[2] === "tcp" ? LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" }) : new HostProvider();
const pool = new MemoryPool(provider, {
  small: one(SIZES[0]!, 256), medium: one(SIZES[1]!, 128), large: one(SIZES[2]!, 64), huge: one(SIZES[3]!, 48),
  maxPinnedBytes: 6 * 1024 * KiB,
});
const handle = pool.share({ cacheSize: 4 });
const results = [];
for (const ms of [20, 150, 300]) {
  const w = new Worker(new URL("./worker-pool.ts", import.meta.url));
  w.postMessage({ cmd: "stress", handle, id: 7, pairs: 1e9, maxHold: 3, sizes: SIZES });
  await Bun.sleep(ms);
  await new Promise<void>((resolve) => {
    w.addEventListener("close", () => resolve(), { once: true });
    w.terminate();
  });
  const a = pool.audit();
  results.push({ ms, problems: a.problems, lost: a.lost, inUse: a.inUse, gets: pool.stats().gets });
}
// The pool still works for others after that.
const after = MemoryPool.attach(handle);
for (let i = 0; i < 1000; i++) after.releaseRegion(after.getRegion(SIZES[i & 3]!));
after.close();
const report = pool.close();
provider.close();
console.log(JSON.stringify({ results, leaked: report.count }));
