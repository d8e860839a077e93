// Run in a child process by rma-workers.test.ts: three Workers do RMA over one shared pool on shm;
// Worker 0 is terminated in the middle of its operations. Workers 1 and 2 (which target each
// other) must finish every operation; the owner's audit must be clean and its close() must report
// what Worker 0 held. Prints one JSON line.
import { LibfabricProvider, MemoryPool } from "../../lib/index.ts";
import type { RmaCommand, RmaTarget } from "./rma-worker.ts";

const OPS = 2_000;
const PAYLOAD = 256;
const WINDOW = 16;
const provider = LibfabricProvider.open({ provider: "shm" });
const pool = new MemoryPool(provider, { small: { chunkSize: 512, initialCount: 64 } });
const handle = pool.share();
const workers = [0, 1, 2].map(() => new Worker(new URL("./rma-worker.ts", import.meta.url)));
const ask = <T>(w: Worker, m: RmaCommand) => new Promise<T>((resolve, reject) => {
  w.onmessage = (e) => (e.data.ok ? resolve(e.data as T) : reject(new Error(e.data.error)));
  w.postMessage(m);
});
type Opened = { name: string; remote: string };
const opened = await Promise.all(workers.map((w, id) => ask<Opened>(w, { cmd: "open", handle, id, exposeBytes: 3 * WINDOW * PAYLOAD })));
const target = (to: number, from: number): RmaTarget => ({ name: opened[to]!.name, remote: opened[to]!.remote, offset: from * WINDOW * PAYLOAD });
void ask(workers[0]!, { cmd: "run", targets: [target(1, 0)], ops: 1e9, payload: PAYLOAD, window: WINDOW }).catch(() => {});
const survivors = Promise.all([
  ask<{ errors: string[]; writes: number; reads: number }>(workers[1]!, { cmd: "run", targets: [target(2, 1)], ops: OPS, payload: PAYLOAD, window: WINDOW }),
  ask<{ errors: string[]; writes: number; reads: number }>(workers[2]!, { cmd: "run", targets: [target(1, 2)], ops: OPS, payload: PAYLOAD, window: WINDOW }),
]);
await Bun.sleep(300);
await new Promise<void>((resolve) => {
  workers[0]!.addEventListener("close", () => resolve(), { once: true });
  workers[0]!.terminate();
});
const done = await survivors;
await Promise.all(workers.slice(1).map((w) => ask(w, { cmd: "close" })));
const audit = pool.audit();
const report = pool.close();
let providerError: string | null = null;
try {
  provider.close();
} catch (e) {
  providerError = (e as Error).message; // the dead Worker's endpoint was never closed: EBUSY
}
for (const w of workers) w.terminate();
console.log(JSON.stringify({
  survivors: done.map((d) => ({ errors: d.errors, writes: d.writes, reads: d.reads })), ops: OPS,
  problems: audit.problems, reported: report.count, providerError,
}));
