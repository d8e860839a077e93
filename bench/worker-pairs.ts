// The Worker of bench/suites/workers.ts: attaches to a shared pool (or makes its own unshared one)
// and times get+release pairs once every Worker is ready, so that their loops overlap.
import { HostProvider, MemoryPool, type SharedPoolHandle } from "../lib/index.ts";

declare const self: Worker;

export interface PairsJob {
  /** A shared pool to attach to; null: an unshared pool of this Worker's own. */
  handle: SharedPoolHandle | null;
  pairs: number;
  /** Request sizes cycled through (one per class for "all classes"). */
  sizes: readonly number[];
  /**
   * Regions held at once, then released, before the warm-up: enough that each pool takes its slow
   * path (an unshared pool grows its huge class, a shared pool's cache misses and spills), which
   * the JIT then compiles into the loop as it would in a program that ever did so.
   */
  burst: number;
  /** Word 0 counts Workers ready; they start when it reaches `parties`. */
  barrier: SharedArrayBuffer;
  parties: number;
}

export interface PairsResult {
  ns: number;
  pairs: number;
}

function loop(pool: MemoryPool, sizes: readonly number[], pairs: number): void {
  const mask = sizes.length - 1; // a power of two
  for (let i = 0; i < pairs; i++) pool.releaseRegion(pool.getRegion(sizes[i & mask]!));
}

self.onmessage = (e: MessageEvent<PairsJob>) => {
  const job = e.data;
  const provider = job.handle === null ? new HostProvider() : null;
  const pool = job.handle === null ? new MemoryPool(provider!) : MemoryPool.attach(job.handle);
  const held = Array.from({ length: job.burst }, (_, i) => pool.getRegion(job.sizes[i % job.sizes.length]!));
  for (const region of held) pool.releaseRegion(region);
  // Warm up long enough that the optimizing JIT has finished with the loop: a compiler thread still
  // busy once the timed loop starts takes a core from the other Worker.
  loop(pool, job.sizes, Math.min(job.pairs, 2_000_000));
  const b = new Int32Array(job.barrier);
  Atomics.add(b, 0, 1);
  Atomics.notify(b, 0);
  for (let n; (n = Atomics.load(b, 0)) < job.parties;) Atomics.wait(b, 0, n, 50);
  const t = Bun.nanoseconds();
  loop(pool, job.sizes, job.pairs);
  const ns = Bun.nanoseconds() - t;
  pool.close();
  provider?.close();
  postMessage({ ns, pairs: job.pairs } satisfies PairsResult);
};
