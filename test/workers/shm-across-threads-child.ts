// One round of issue 21 #5 in a process of its own: shm endpoints of two threads of one process are
// peers, one thread is parked (Atomics.wait) while the other's operation towards it times out, and
// the other closes its endpoint and exits. The parked thread then progresses again and closes
// everything. Without the process-wide endpoint table, the parked thread wrote into memory the
// closed endpoint had unmapped (SIGSEGV). argv[2]: "initiator-leaves" (the Worker wrote and
// leaves) or "target-leaves" (the main thread wrote; the Worker's endpoint was the target).
import { Endpoint, LibfabricProvider, MemoryPool, RemoteRegion } from "../../lib/index.ts";

declare const self: Worker;

/** What the main thread hands the Worker. */
interface Setup {
  readonly handle: ReturnType<MemoryPool["share"]>;
  readonly name: Uint8Array;
  readonly remote: Uint8Array;
  readonly flag: Int32Array;
}

const mode = process.argv[2] ?? "initiator-leaves";

if (Bun.isMainThread) {
  const provider = LibfabricProvider.open({ provider: "shm" });
  const pool = new MemoryPool(provider);
  const endpoint = new Endpoint(provider, { timeoutMs: 50, closeTimeoutMs: 20 });
  const region = pool.getRegion(4096);
  const flag = new Int32Array(new SharedArrayBuffer(8));
  const worker = new Worker(import.meta.url, { argv: [mode] });
  const exited = new Promise((resolve) => worker.addEventListener("close", resolve));
  const fromWorker = new Promise<{ name: Uint8Array; remote: Uint8Array }>((resolve) => (worker.onmessage = ({ data }) => resolve(data)));
  worker.postMessage({ handle: pool.share(), name: endpoint.name, remote: region.remote().toBytes(), flag });
  let outcome = "none";
  if (mode === "target-leaves") {
    const { name, remote } = await fromWorker;
    // The Worker is parked now: this write towards its endpoint times out.
    try {
      endpoint.writeSync(region, 4096, endpoint.insert(name), RemoteRegion.fromBytes(remote));
      outcome = "done";
    } catch (e) {
      outcome = (e as Error).name;
    }
    Atomics.store(flag, 1, 1);
    Atomics.notify(flag, 1);
  } else {
    Atomics.wait(flag, 0, 0); // parked while the Worker's write times out and it closes and leaves
  }
  await exited;
  for (let i = 0; i < 100; i++) {
    endpoint.progress();
    await Bun.sleep(1);
  }
  endpoint.close();
  pool.releaseRegion(region);
  pool.close();
  provider.close();
  console.log(JSON.stringify({ outcome, closed: true }));
} else {
  self.onmessage = ({ data }: MessageEvent<Setup>) => {
    const pool = MemoryPool.attach(data.handle);
    const endpoint = new Endpoint(pool.provider as LibfabricProvider, { timeoutMs: 50, closeTimeoutMs: 20 });
    const local = pool.getRegion(4096);
    if (mode === "initiator-leaves") {
      try {
        endpoint.writeSync(local, 4096, endpoint.insert(data.name), RemoteRegion.fromBytes(data.remote));
      } catch {
        // times out: the main thread is parked
      }
      Atomics.store(data.flag, 0, 1);
      Atomics.notify(data.flag, 0);
    } else {
      endpoint.insert(data.name);
      self.postMessage({ name: endpoint.name, remote: local.remote().toBytes() });
      Atomics.wait(data.flag, 1, 0); // parked while the main thread's write towards this endpoint times out
    }
    endpoint.close();
    pool.releaseRegion(local);
    pool.close();
    process.exit(0);
  };
}
