// The Bun side of the atomics bench over MPI, run as 2 ranks (bench/suites/atomics.ts does):
//   mpirun -n 2 bun bench/atomics/mpi-rank.ts <forms> <iterations> <warmup>
// Rank 0 times each form on a 64-bit word of rank 1's pooled region (bench/atomics/forms.ts), one
// JSON line per form; rank 1 waits in a blocking barrier meanwhile, as the C job's rank 1 does
// (bench/c/mpi-atomics.c): its MPI progress performs the atomics.
import { MemoryPool, MpiEndpoint, MpiJob, MpiProvider, RemoteRegion } from "../../lib/index.ts";
import { measureAll, parseForms } from "./forms.ts";

const [formList, iterationText, warmupText] = process.argv.slice(2);
const job = MpiJob.open();
const provider = MpiProvider.open();
const pool = new MemoryPool(provider);
const endpoint = new MpiEndpoint(provider, { timeoutMs: 30_000 });
const word = pool.getRegion(64);
const remotes = job.allgather(word.remote().toBytes()).map((bytes) => RemoteRegion.fromBytes(bytes).subregion(0, 8));
if (job.rank === 0) {
  try {
    measureAll(endpoint, parseForms(formList ?? "fetchAddSync"), 1, remotes[1]!, Number(iterationText ?? 1000), Number(warmupText ?? 100));
  } catch (e) {
    console.log(JSON.stringify({ error: (e as Error).message }));
  }
}
job.barrier();
pool.releaseRegion(word);
endpoint.close();
pool.close();
provider.close();
job.close();
