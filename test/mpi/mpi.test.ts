// MPI for real: jobs of 2 and 4 Bun processes under mpirun (test/mpi/agent.ts is one rank), the
// pool suite over MpiProvider inside mpirun, and the library outside mpirun. Few mpirun runs, each
// batching many checks: a job costs about a second to start.
import { expect, test } from "bun:test";
import { describeMpi, fabric, REQUIRE_LIBFABRIC, runBun } from "../helpers.ts";
import { brief, failures, mpirun } from "./run.ts";

const AGENT = "test/mpi/agent.ts";

describeMpi("MPI jobs (mpirun)", () => {
  test("2 ranks: stamped writes and reads in all three forms, all-to-all, bad input, exchangeNames feeding libfabric tcp, signals", async () => {
    const scenarios = ["ring", "all-to-all", "bad-input", "allgather", "signals"];
    if (fabric.available || REQUIRE_LIBFABRIC) scenarios.push("libfabric-names");
    else console.warn(`[alloctools] skipped: exchangeNames feeding libfabric tcp (libfabric not available: ${fabric.reason})`);
    const run = await mpirun(2, ["bun", AGENT, ...scenarios], { ALLOCTOOLS_TEST_SALT: String(Date.now() % 1e6) });
    expect(failures(run)).toEqual([]);
    expect(run.results.map((r) => r.rank), brief(run)).toEqual([0, 1]);
    expect(run.exitCode, brief(run)).toBe(0);
    for (const r of run.results) {
      expect(r.facts.size).toBe(2);
      expect(r.facts.launched).toBe(true);
      expect(r.facts.threadLevel).toBe("MPI_THREAD_MULTIPLE");
      expect(String(r.facts.description)).toContain(`rank ${r.rank} of 2`);
      expect(r.facts.allToAllCells).toBe(4);
      expect(r.checks.length).toBeGreaterThan(30);
      if (scenarios.includes("libfabric-names")) expect(r.facts.libfabricNames).toBe(true);
    }
    expect(String(run.results[0]!.facts.ringReceived)).toStartWith("from 1 to 0 round 0");
    expect(String(run.results[1]!.facts.ringReceived)).toStartWith("from 0 to 1 round 0");
  }, 120_000);

  test("4 ranks: the ring and a 4-rank all-to-all (16 stamped cells read back by every rank); a job left open is finalized at exit", async () => {
    const run = await mpirun(4, ["bun", AGENT, "ring", "all-to-all", "allgather", "leave-open"], { ALLOCTOOLS_TEST_SALT: "44" });
    expect(failures(run)).toEqual([]);
    expect(run.results.map((r) => r.rank), brief(run)).toEqual([0, 1, 2, 3]);
    expect(run.exitCode, brief(run)).toBe(0);
    for (const r of run.results) {
      expect(r.facts.size).toBe(4);
      expect(r.facts.allToAllCells).toBe(16);
      expect(String(r.facts.ringReceived)).toStartWith(`from ${(r.rank + 3) % 4} to ${r.rank} round 0 salt 44`);
    }
  }, 120_000);

  test("provider.close() with an operation in flight closes the endpoint first, then the pool: no BUSY, the pool closed (2 ranks)", async () => {
    const run = await mpirun(2, ["bun", AGENT, "close-order"]);
    expect(failures(run)).toEqual([]);
    expect(run.results.map((r) => r.rank), brief(run)).toEqual([0, 1]);
    for (const r of run.results) expect(r.facts.closeOrder).toBe(true);
    expect(run.exitCode, brief(run)).toBe(0);
  }, 120_000);

  test("the pool suite over MpiProvider, on 2 ranks", async () => {
    const run = await mpirun(2, ["bun", "test", "--preload", "./test/mpi/finalize.preload.ts", "test/core/pool.test.ts", "-t", "\\[mpi\\]"],
      { ALLOCTOOLS_TEST_MPI_PROVIDER: "1" });
    const output = run.stdout + run.stderr;
    const passed = output.split("\n").filter((line) => line.startsWith("(pass) MemoryPool [mpi]")).length;
    const failed = output.split("\n").filter((line) => line.startsWith("(fail)"));
    expect(failed).toEqual([]);
    expect(passed).toBeGreaterThanOrEqual(2 * 15);
    expect(output).not.toContain("(pass) MemoryPool [host]"); // only the mpi case ran
    expect(run.exitCode, brief(run)).toBe(0);
  }, 120_000);

  // --tcp: libfabric tcp endpoints, names exchanged by MpiJob; a ring of 3 once lost writes (docs/rma.md).
  for (const transport of ["mpi", "tcp"] as const) {
    test(`examples/mpi-ring.ts on 3 ranks${transport === "tcp" ? " --tcp" : ""}: every rank got its stamp from the previous one and read its own back`, async () => {
      if (transport === "tcp" && !fabric.available && !REQUIRE_LIBFABRIC) {
        console.warn(`[alloctools] skipped: mpi-ring --tcp (libfabric not available: ${fabric.reason})`);
        return;
      }
      const run = await mpirun(3, ["bun", "examples/mpi-ring.ts", ...(transport === "tcp" ? ["--tcp"] : [])]);
      expect(run.exitCode, brief(run)).toBe(0);
      const lines = run.stdout.trim().split("\n").filter((line) => line.startsWith("rank ")).sort();
      expect(lines.length).toBe(3);
      for (let rank = 0; rank < 3; rank++) {
        expect(lines[rank]).toMatch(new RegExp(`^rank ${rank}/3 got "from rank ${(rank + 2) % 3} to rank ${rank} at \\d+" read back "from rank ${rank} to rank ${(rank + 1) % 3} at \\d+"$`));
      }
    }, 120_000);
  }

  test("outside mpirun: rank 0 of 1 (singleton), allgather works, MpiProvider refused with an MpiError that says why", () => {
    const r = runBun(`
      const { MpiJob, MpiProvider, MpiError, AllocToolsError } = await import("./lib/index.ts");
      const job = MpiJob.open();
      const all = job.allgather(new Uint8Array([1, 2, 3]));
      let provider = "opened";
      try { MpiProvider.open().close(); } catch (e) { provider = e instanceof MpiError ? e.function + " " + e.code + " " + e.message : "other " + e; }
      job.close();
      let reopen = "";
      try { MpiJob.open(); } catch (e) { reopen = e instanceof AllocToolsError ? e.code + " " + e.message : "other " + e; }
      console.log(JSON.stringify({ rank: job.rank, size: job.size, launched: job.launched, all: all.map((b) => [...b]), provider, reopen }));
    `, { OMPI_COMM_WORLD_SIZE: undefined, PMIX_RANK: undefined });
    expect(r.exitCode, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split("\n").pop()!);
    expect(out.rank).toBe(0);
    expect(out.size).toBe(1);
    expect(out.launched).toBe(false);
    expect(out.all).toEqual([[1, 2, 3]]);
    expect(out.provider).toStartWith("MPI_Win_create_dynamic MPI_ERR_WIN");
    expect(out.provider).toContain("mpirun -n 2");
    expect(out.reopen).toStartWith("NOT_SUPPORTED MPI was finalized");
  }, 60_000);
});

test("ALLOCTOOLS_MPI_PATH pointing nowhere: LibraryLoadError with an install hint", () => {
  const r = runBun(`
    const { mpiStatus } = await import("./ffi/mpi.ts");
    const { MpiJob, LibraryLoadError } = await import("./lib/index.ts");
    let error = "";
    try { MpiJob.open(); } catch (e) { error = (e instanceof LibraryLoadError ? "LibraryLoadError " : "other ") + e.message; }
    console.log(JSON.stringify({ error, status: mpiStatus() }));
  `, { ALLOCTOOLS_MPI_PATH: "/nonexistent/libmpi.so.40" });
  expect(r.exitCode, r.stderr).toBe(0);
  const out = JSON.parse(r.stdout.trim());
  expect(out.error).toStartWith("LibraryLoadError MPI is not available (ALLOCTOOLS_MPI_PATH=/nonexistent/libmpi.so.40");
  expect(out.error).toContain("apt-get install openmpi-bin libopenmpi-dev");
  expect(out.status.available).toBe(false);
});
