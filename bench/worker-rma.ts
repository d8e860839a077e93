// A Worker of bench/suites/workers.ts: attaches to a shared pool over libfabric, opens its own
// Endpoint on the pool's provider (a view of the owner's domain) and times 64 B RMA writes from a
// pooled region into another of its pooled regions through its own address, `window` in flight,
// once every Worker is ready. Without a handle it opens a provider (a domain) and a pool of its
// own instead: what Workers reach when they share nothing.
import { Endpoint, LibfabricProvider, MemoryPool, type SharedPoolHandle } from "../lib/index.ts";

declare const self: Worker;

export interface RmaJob {
  /** The shared pool to attach to; null: a shm provider and pool of this Worker's own. */
  handle: SharedPoolHandle | null;
  writes: number;
  bytes: number;
  window: number;
  /** Promises (`write`, one per operation) or postWrite/poll/completed windows. */
  form: "promise" | "windowed";
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

/** The same writes without promises: postWrite ids, `window` in flight, poll() and completed(). */
function windowed(ep: Endpoint, pool: MemoryPool, count: number, bytes: number, window: number): void {
  const target = pool.getRegion(bytes * window);
  const peer = ep.insert(ep.name);
  const remote = target.remote();
  const sources = Array.from({ length: window }, () => pool.getRegion(bytes));
  const places = Array.from({ length: window }, (_, w) => remote.subregion(w * bytes, bytes));
  const ids = new Array<number>(window).fill(0);
  let posted = 0;
  let done = 0;
  while (done < count) {
    while (posted < count && posted - done < window) {
      const slot = posted % window;
      ids[slot] = ep.postWrite(sources[slot]!, bytes, peer, places[slot]!);
      posted++;
    }
    ep.poll();
    while (done < posted && ep.completed(ids[done % window]!)) done++;
  }
  for (const source of sources) pool.releaseRegion(source);
  pool.releaseRegion(target);
}

self.onmessage = async (e: MessageEvent<RmaJob>) => {
  const job = e.data;
  const own = job.handle === null ? LibfabricProvider.open({ provider: "shm" }) : null;
  const pool = own !== null ? new MemoryPool(own) : MemoryPool.attach(job.handle!);
  const ep = new Endpoint(pool.provider as LibfabricProvider, { timeoutMs: 30_000 });
  // Warm up until the optimizing JIT is done with the loop (see worker-pairs.ts).
  const run = (count: number) => job.form === "windowed" ? windowed(ep, pool, count, job.bytes, job.window) : writes(ep, pool, count, job.bytes, job.window);
  await run(Math.min(job.writes, 20_000));
  const b = new Int32Array(job.barrier);
  Atomics.add(b, 0, 1);
  Atomics.notify(b, 0);
  for (let n; (n = Atomics.load(b, 0)) < job.parties;) Atomics.wait(b, 0, n, 50);
  const t = Bun.nanoseconds();
  await run(job.writes);
  const ns = Bun.nanoseconds() - t;
  ep.close();
  pool.close();
  own?.close();
  postMessage({ ns, writes: job.writes } satisfies RmaResult);
};
