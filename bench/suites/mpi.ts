// MPI: MpiEndpoint.writeSync 64 B (MPI_Put + MPI_Win_flush through bun:ffi) against the same loop
// in C (bench/c/mpi-put-flush.c, built with mpicc) on the same kind of dynamic window, 2 ranks
// under mpirun, in this run. Each side runs as its own mpirun job, alternated; a sample is the
// mean of one batch of operations, so clock reads stay out of the figure. The ratio's target is
// 1.5x at most. Missing pieces (no mpirun, no mpicc) are reported as rows saying why.
//
// Run directly under mpirun, this file is the Bun side's rank program:
//   mpirun -n 2 bun bench/suites/mpi.ts --rank <bytes> <batches> <batch size>
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { mpiStatus } from "../../ffi/mpi.ts";
import type { BenchContext, Suite } from "../context.ts";
import { mpirunTwoRanks } from "../peer-process.ts";

const SUITE = "mpi";
const BYTES = 64;
const C_SOURCE = resolve(import.meta.dir, "../c/mpi-put-flush.c");
/** The target of issue 16: writeSync at most 1.5x the C loop. */
const TARGET_RATIO = 1.5;

/** One side's figures, ns per operation. */
interface Sample { p50: number; p99: number; avg: number; samples: number; batch: number }

/** The Bun side: rank 0 writes with writeSync, rank 1 only exposes memory (polls a barrier every 1 ms, as the C side does). */
async function rankProgram(bytes: number, batches: number, batch: number): Promise<void> {
  const { MpiJob, MpiProvider, MpiEndpoint, MemoryPool, RemoteRegion } = await import("../../lib/index.ts");
  const job = MpiJob.open();
  const provider = MpiProvider.open();
  const pool = new MemoryPool(provider);
  const endpoint = new MpiEndpoint(provider);
  const target = pool.getRegion(bytes);
  const remotes = job.allgather(target.remote().toBytes()).map((b) => RemoteRegion.fromBytes(b));
  if (job.rank === 0) {
    const source = pool.getRegion(bytes);
    const remote = remotes[1]!;
    for (let i = 0; i < batch * 16; i++) endpoint.writeSync(source, bytes, 1, remote); // warm-up (JIT tiers)
    const samples = new Float64Array(batches);
    for (let b = 0; b < batches; b++) {
      const start = Bun.nanoseconds();
      for (let i = 0; i < batch; i++) endpoint.writeSync(source, bytes, 1, remote);
      samples[b] = (Bun.nanoseconds() - start) / batch;
    }
    samples.sort();
    let sum = 0;
    for (const s of samples) sum += s;
    console.log(JSON.stringify({ bytes, p50: samples[batches >> 1], p99: samples[Math.floor(batches * 0.99)], avg: sum / batches, samples: batches, batch }));
    pool.releaseRegion(source);
    await job.barrierAsync(); // MPI_Ibarrier matches MPI_Ibarrier only
  } else {
    await job.barrierAsync(1); // the target leaves the core to the writer (2 cores), as the C side does
  }
  pool.releaseRegion(target);
  endpoint.close();
  pool.close();
  provider.close();
  job.close();
}

/** `mpirun -n 2 <command>`; the JSON line rank 0 prints, or why there is none. */
function runJob(mpirun: string, command: string[]): Sample | string {
  const lines = mpirunTwoRanks<Sample>(mpirun, command);
  return typeof lines === "string" ? lines : lines[0]!;
}

const suite: Suite = {
  name: SUITE,
  setup(ctx: BenchContext) {
    const mpirun = Bun.which("mpirun");
    const mpicc = Bun.which("mpicc");
    const status = mpiStatus();
    const missing = (why: string) => {
      ctx.provider({ suite: SUITE, label: "mpi", description: `not measured: ${why}` });
      if (process.env.ALLOCTOOLS_REQUIRE_MPI === "1") throw new Error(`mpi bench: ${why} (ALLOCTOOLS_REQUIRE_MPI=1)`);
    };
    if (!status.available) return missing(`Open MPI not available (${status.reason})`);
    if (mpirun === null) return missing("no mpirun on PATH (apt-get install openmpi-bin)");
    ctx.provider({ suite: SUITE, label: "mpi", description: `2 ranks under mpirun --oversubscribe, ${status.version}, dynamic window, ${BYTES} B` });

    let binary: string | null = null;
    let cMissing = "";
    if (mpicc === null) {
      cMissing = "no mpicc (apt-get install libopenmpi-dev): the C reference is not built";
    } else {
      binary = join(mkdtempSync(join(tmpdir(), "alloctools-bench-mpi-")), "mpi-put-flush");
      const build = Bun.spawnSync([mpicc, "-O2", "-o", binary, C_SOURCE], { stderr: "pipe" });
      if (build.exitCode !== 0) {
        cMissing = `mpicc failed: ${build.stderr.toString().trim().split("\n")[0]}`;
        binary = null;
      }
    }
    const batches = ctx.quick ? 100 : 1000;
    const batch = 64;
    const rounds = ctx.quick ? 1 : 2;
    const cSamples: Sample[] = [];
    const bunSamples: Sample[] = [];
    for (let round = 0; round < rounds; round++) {
      if (binary !== null) {
        const c = runJob(mpirun, [binary, String(BYTES), String(batches), String(batch)]);
        if (typeof c === "string") cMissing = `the C reference failed: ${c}`;
        else cSamples.push(c);
      }
      const js = runJob(mpirun, [process.execPath, import.meta.path, "--rank", String(BYTES), String(batches), String(batch)]);
      if (typeof js === "string") {
        if (process.env.ALLOCTOOLS_REQUIRE_MPI === "1") throw new Error(`mpi bench: MpiEndpoint.writeSync run failed: ${js}`);
        ctx.record({ suite: SUITE, name: `MpiEndpoint.writeSync ${BYTES} B p50`, value: Number.NaN, unit: "ns", note: `failed: ${js}` });
        return;
      }
      bunSamples.push(js);
    }
    const best = (samples: Sample[]) => samples.reduce((a, b) => (b.p50 < a.p50 ? b : a));
    const note = (s: Sample) => `${s.samples} batches of ${s.batch}; p99 ${Math.round(s.p99)} ns; ${rounds} round(s), best p50`;
    const js = best(bunSamples);
    ctx.record({ suite: SUITE, name: `MpiEndpoint.writeSync ${BYTES} B p50`, value: js.p50, unit: "ns", note: note(js) });
    if (cSamples.length === 0) {
      ctx.record({ suite: SUITE, name: `C MPI_Put+MPI_Win_flush ${BYTES} B p50`, value: Number.NaN, unit: "ns", note: `missing: ${cMissing}` });
      return;
    }
    const c = best(cSamples);
    ctx.record({ suite: SUITE, name: `C MPI_Put+MPI_Win_flush ${BYTES} B p50`, value: c.p50, unit: "ns", note: note(c) });
    const ratio = js.p50 / c.p50;
    ctx.record({
      suite: SUITE, name: `writeSync / C ratio ${BYTES} B`, value: ratio, unit: "x",
      note: `target <= ${TARGET_RATIO}x: ${ratio <= TARGET_RATIO ? "met" : "NOT met"} (this run)`,
    });
  },
};
export default suite;

if (import.meta.main && process.argv[2] === "--rank") {
  const [bytes, batches, batch] = process.argv.slice(3).map(Number);
  await rankProgram(bytes!, batches!, batch!);
}
