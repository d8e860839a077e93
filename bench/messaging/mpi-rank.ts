// The library's side of the messaging bench over MPI: one rank of 2 under mpirun, running the loops
// of bench/messaging/loops.ts on MpiEndpoint, the same tests in the same order as
// bench/c/mpi-messages.c takes them. Rank 0 (the initiator) prints one JSON line per test.
//
//   mpirun -n 2 bun bench/messaging/mpi-rank.ts lat-sync <bytes> <iterations> <warmup> \
//       lat-promise <bytes> <iterations> <warmup> window <bytes> <window> <iterations> <warmup> cells <bytes> <iterations>
import { MemoryPool, MpiEndpoint, MpiJob, MpiProvider } from "../../lib/index.ts";
import { cellsPerPair, latency, pingPongSync, windowed, type LoopSide } from "./loops.ts";

const REGION_BYTES = 4 << 20;

async function main(argv: string[]): Promise<void> {
  const job = MpiJob.open();
  const provider = MpiProvider.open();
  const pool = new MemoryPool(provider, { small: { initialCount: 0 }, medium: { initialCount: 0 }, large: { initialCount: 0 }, huge: { chunkSize: REGION_BYTES, initialCount: 1 } });
  const endpoint = new MpiEndpoint(provider, { timeoutMs: 120_000 });
  const region = pool.getRegion(REGION_BYTES);
  region.view.fill(0x5a);
  const initiator = job.rank === 0;
  const side: LoopSide = { endpoint, peer: 1 - job.rank, region };
  const say = (o: unknown) => { if (initiator) process.stdout.write(`${JSON.stringify(o)}\n`); };
  const number = (i: number) => Number(argv[i]);
  try {
    for (let a = 0; a < argv.length;) {
      const test = argv[a]!;
      // A full collection first, then both ranks start together.
      Bun.gc(true);
      job.barrier();
      if (test === "lat-sync" || test === "lat-promise") {
        const form = test === "lat-sync" ? "sync" : "promise";
        say({ test, bytes: number(a + 1), ...(await latency(side, form, number(a + 1), number(a + 2), number(a + 3), initiator)) });
        a += 4;
      } else if (test === "window") {
        say({ test, bytes: number(a + 1), window: number(a + 2), ...windowed(side, number(a + 1), number(a + 2), number(a + 3), number(a + 4), initiator) });
        a += 5;
      } else if (test === "cells") {
        if (initiator) say({ test, bytes: number(a + 1), ...cellsPerPair(side, number(a + 1), number(a + 2)) });
        else for (let i = 0; i < 2 * number(a + 2); i++) pingPongSync(side, number(a + 1), false);
        a += 3;
      } else {
        throw new Error(`unknown test ${test} (lat-sync, lat-promise, window, cells)`);
      }
    }
  } catch (e) {
    process.stdout.write(`${JSON.stringify({ error: `rank ${job.rank}: ${(e as Error).message}` })}\n`);
    process.exitCode = 1;
  }
  job.barrier();
  pool.releaseRegion(region);
  endpoint.close();
  pool.close();
  provider.close();
  job.close();
}

await main(process.argv.slice(2));
