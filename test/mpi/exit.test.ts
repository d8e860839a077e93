// A rank that leaves its MPI job early never hangs the job: under mpirun with 2 and 4 ranks, one rank
// exits (process.exit(0) or (3), an uncaught exception, an unhandled rejection) or is killed
// (SIGKILL, SIGHUP) while the others wait for it in a barrier, a nonblocking barrier or an
// allgather. The job ends within a bound, with a non-zero status, and the output names the rank.
// Jobs whose ranks all end normally, with and without close(), still exit 0. test/mpi/exit-agent.ts
// is one rank; ALLOCTOOLS_MPI_EXIT_TIMEOUT_MS is 2 s here.
import { expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { describeMpi, fabric, REQUIRE_LIBFABRIC, runBun } from "../helpers.ts";
import { brief, mpirun } from "./run.ts";

const AGENT = "test/mpi/exit-agent.ts";
const EXIT_TIMEOUT_MS = 2000;
/** How long a job with a leaver may take to end: start-up, the exit bound, mpirun's teardown. */
const JOB_BOUND_MS = 25_000;

interface Leaving {
  ranks: number;
  how: "exit-0" | "exit-3" | "throw" | "reject" | "kill" | "hangup";
  leaver: number;
  where: "barrier" | "barrier-async" | "allgather";
}

/**
 * What the output must say, naming the rank, for each way of leaving: the rank's own line where it
 * can say one (mpirun's messages after it, "MPI_ABORT was invoked on rank R", "exited on signal
 * 14", are not asserted: under load mpirun once failed to print its help text, ORTE_ERROR_LOG "Out
 * of resource" in show_help.c); mpirun's for a rank killed by a signal.
 */
function naming({ ranks, how, leaver }: Leaving): RegExp {
  const ours = `alloctools: rank ${leaver} of ${ranks} \\(pid \\d+\\)`;
  switch (how) {
    case "exit-0":
    case "reject": // Bun's exit event says 0 after an unhandled rejection, so it goes the exit-0 way
      return new RegExp(`${ours} exited with its MPI job open, and MPI_Finalize did not return within ${EXIT_TIMEOUT_MS} ms`);
    case "exit-3":
    case "throw":
      return new RegExp(`${ours} exited with code ${how === "exit-3" ? 3 : 1} while its MPI job was open: MPI_Abort ends the job`);
    case "kill":
      return new RegExp(`process rank ${leaver} with PID \\d+ on node \\S+ exited on signal 9`);
    case "hangup":
      return new RegExp(`process rank ${leaver} with PID \\d+ on node \\S+ exited on signal 1 `);
  }
}

const leavings: Leaving[] = [
  { ranks: 2, how: "exit-0", leaver: 1, where: "barrier" },
  { ranks: 2, how: "throw", leaver: 0, where: "barrier-async" },
  { ranks: 2, how: "reject", leaver: 1, where: "allgather" },
  { ranks: 2, how: "kill", leaver: 1, where: "barrier" },
  { ranks: 4, how: "exit-0", leaver: 2, where: "barrier-async" },
  { ranks: 4, how: "exit-3", leaver: 3, where: "barrier" },
  { ranks: 4, how: "hangup", leaver: 1, where: "allgather" },
];

describeMpi("a rank that leaves its MPI job early ends the job, naming itself", () => {
  for (const leaving of leavings) {
    const { ranks, how, leaver, where } = leaving;
    test(`${ranks} ranks: rank ${leaver} ${how} while the others wait in ${where}`, async () => {
      const started = performance.now();
      const run = await mpirun(ranks, ["bun", AGENT, how, String(leaver), where],
        { ALLOCTOOLS_MPI_EXIT_TIMEOUT_MS: String(EXIT_TIMEOUT_MS) }, JOB_BOUND_MS + 5000);
      const elapsed = performance.now() - started;
      const output = run.stdout + run.stderr;
      expect(run.timedOut, brief(run)).toBe(false);
      expect(elapsed).toBeLessThan(JOB_BOUND_MS);
      expect(run.exitCode, brief(run)).not.toBe(0);
      expect(output).toMatch(naming(leaving));
      expect(output).toContain(`rank ${leaver} leaves: ${how}`);
      expect(output).not.toContain("passed the wait");
    }, JOB_BOUND_MS + 10_000);
  }
});

describeMpi("a rank that leaves with a libfabric shm endpoint open leaves no /dev/shm file", () => {
  // MPI_Abort and the bound on MPI_Finalize end the process from the exit event: the libfabric
  // providers are closed first (ffi/exit-cleanups.ts), or the leaver's shm file stayed.
  for (const how of ["exit-3", "exit-0"] as const) {
    test(`2 ranks: rank 1 ${how} with an shm endpoint open`, async () => {
      if (!fabric.available && !REQUIRE_LIBFABRIC) {
        console.warn(`[alloctools] skipped: shm files at an early exit (libfabric not available: ${fabric.reason})`);
        return;
      }
      const run = await mpirun(2, ["bun", AGENT, how, "1", "barrier", "shm"],
        { ALLOCTOOLS_MPI_EXIT_TIMEOUT_MS: String(EXIT_TIMEOUT_MS) }, JOB_BOUND_MS + 5000);
      expect(run.exitCode, brief(run)).not.toBe(0);
      const ranks = [...run.stdout.matchAll(/^rank (\d) pid (\d+) shm (\S+)$/gm)].map((m) => ({ rank: Number(m[1]), pid: m[2]!, file: m[3]! }));
      expect(ranks.map((r) => r.rank).sort(), brief(run)).toEqual([0, 1]);
      for (const { pid, file } of ranks) {
        expect(file).toStartWith(`${pid}:`); // it had its file: the check below means something
        expect(readdirSync("/dev/shm").filter((name) => name.startsWith(`${pid}:`))).toEqual([]);
      }
    }, JOB_BOUND_MS + 10_000);
  }
});

describeMpi("jobs whose ranks all end normally still exit 0", () => {
  const endings: Array<{ ranks: number; how: "end-open" | "close" | "mixed"; provider: boolean }> = [
    { ranks: 2, how: "end-open", provider: false },
    { ranks: 2, how: "mixed", provider: true },
    { ranks: 4, how: "close", provider: true },
    { ranks: 4, how: "end-open", provider: true },
  ];
  for (const { ranks, how, provider } of endings) {
    test(`${ranks} ranks, ${how}${provider ? ", with a provider, pool and endpoint" : ""}`, async () => {
      const run = await mpirun(ranks, ["bun", AGENT, how, "0", "barrier", ...(provider ? ["provider"] : [])],
        { ALLOCTOOLS_MPI_EXIT_TIMEOUT_MS: String(EXIT_TIMEOUT_MS) }, JOB_BOUND_MS);
      expect(run.timedOut, brief(run)).toBe(false);
      expect(run.exitCode, brief(run)).toBe(0);
      expect(run.stdout.split("\n").filter((line) => line.includes("ends normally")).length, brief(run)).toBe(ranks);
      expect(run.stderr).not.toContain("alloctools: rank");
    }, JOB_BOUND_MS + 10_000);
  }
});

describeMpi("ALLOCTOOLS_MPI_EXIT_TIMEOUT_MS", () => {
  test("a value that is not a whole number of milliseconds: RangeError naming it, before MPI is initialized", () => {
    const r = runBun(`
      const { MpiJob } = await import("./lib/index.ts");
      const { mpiLibrary } = await import("./ffi/mpi.ts");
      let error = "";
      try { MpiJob.open(); } catch (e) { error = (e instanceof RangeError ? "RangeError " : "other ") + e.code + " " + e.message; }
      console.log(JSON.stringify({ error, initialized: mpiLibrary().initialized }));
    `, { ALLOCTOOLS_MPI_EXIT_TIMEOUT_MS: "soon", OMPI_COMM_WORLD_SIZE: undefined, PMIX_RANK: undefined });
    expect(r.exitCode, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split("\n").pop()!);
    expect(out.error).toStartWith('RangeError OUT_OF_RANGE ALLOCTOOLS_MPI_EXIT_TIMEOUT_MS must be a whole number of milliseconds');
    expect(out.error).toContain('"soon"');
    expect(out.initialized).toBe(false);
  }, 60_000);
});
