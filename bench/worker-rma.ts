// A Worker of bench/suites/workers.ts: attaches to a shared pool over libfabric, opens its own
// Endpoint on the pool's provider (a view of the owner's domain) and times 64 B RMA writes from a
// pooled region into another of its pooled regions through its own address, `window` in flight,
// once every Worker is ready.
import { Endpoint, MemoryPool, type LibfabricProvider, type SharedPoolHandle } from "../lib/index.ts";

declare const self: Worker;

export interface RmaJob {
  handle: SharedPoolHandle;
  writes: number;
  bytes: number;
  window: number;
  /** Word 0 counts Workers ready; they start when it reaches `parties`. */
  barrier: SharedArrayBuffer;
  parties: number;
}

export interface RmaResult {
  ns: number;
  writes: number;
}

async function writes(ep: Endpoint, pool: MemoryPool, count: number, bytes: number, window: number): Promise<void> {
  const target = pool.getRegion(bytes * window);
  const peer = ep.insert(ep.name);
  const remote = target.remote();
  const lane = async (w: number) => {
    const source = pool.getRegion(bytes);
    source.view.fill(w, 0, bytes);
    const where = remote.subregion(w * bytes, bytes);
    for (let i = w; i < count; i += window) await ep.write(source, bytes, peer, where);
    pool.releaseRegion(source);
  };
  await Promise.all(Array.from({ length: window }, (_, w) => lane(w)));
  pool.releaseRegion(target);
}

self.onmessage = async (e: MessageEvent<RmaJob>) => {
  const job = e.data;
  const pool = MemoryPool.attach(job.handle);
  const ep = new Endpoint(pool.provider as LibfabricProvider, { timeoutMs: 30_000 });
  await writes(ep, pool, Math.min(job.writes, 2_000), job.bytes, job.window); // warm up
  const b = new Int32Array(job.barrier);
  Atomics.add(b, 0, 1);
  Atomics.notify(b, 0);
  for (let n; (n = Atomics.load(b, 0)) < job.parties;) Atomics.wait(b, 0, n, 50);
  const t = Bun.nanoseconds();
  await writes(ep, pool, job.writes, job.bytes, job.window);
  const ns = Bun.nanoseconds() - t;
  ep.close();
  pool.close();
  postMessage({ ns, writes: job.writes } satisfies RmaResult);
};
