// Tagged messages and remote atomics on MpiEndpoint, for real: jobs of 2 and 4 Bun ranks under
// mpirun (test/mpi/messages-agent.ts is one rank; the scenarios are in message-scenarios.ts,
// atomic-scenarios.ts, cost-scenarios.ts and interop-scenarios.ts), and a job with a rank in C
// (test/mpi/c/messages-rank.c, built with mpicc) that follows only docs/messaging.md and docs/rma.md.
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describeMpi, REQUIRE_MPI } from "../helpers.ts";
import { brief, failures, mpirun, mpirunApps, type MpiRun } from "./run.ts";

const AGENT = ["bun", "test/mpi/messages-agent.ts"];

function expectClean(run: MpiRun, ranks: number[]): void {
  expect(failures(run)).toEqual([]);
  expect(run.results.map((r) => r.rank), brief(run)).toEqual(ranks);
  expect(run.exitCode, brief(run)).toBe(0);
}

describeMpi("MpiEndpoint messages and atomics (mpirun)", () => {
  test("2 ranks: every send form against every receive form at 0, 1, 4096, 4097 B and 4 MiB, 64 MiB; ANY_SOURCE and ANY_TAG; " +
    "refused masks and tags above MPI_TAG_UB; truncation; order per (pair, tag) with receives posted late and early; aborts racing sends; " +
    "deadlines and close; messages to the own rank; atomics' bad input, wrapping and late completion; no allocation per call", async () => {
    const run = await mpirun(2, [...AGENT, "forms", "wildcards", "refusals", "truncation", "ordering", "abort-race", "to-self", "atomic-bad-input", "allocation"],
      {}, 240_000);
    expectClean(run, [0, 1]);
    for (const r of run.results) {
      expect(r.facts.formsExchanged).toBe(60); // 5 sizes × 3 send forms × 4 receive forms, received by each rank
      expect(r.checks.length).toBeGreaterThan(60);
    }
    const even = run.results[0]!.facts;
    const race = even.abortRace as { completed: number; aborted: number };
    expect(race.completed + race.aborted).toBe(300);
    expect(even.cellsPerSendRecvPair as number).toBeLessThan(1.2);
    console.log(`[alloctools] MPI: abort race ${JSON.stringify(race)}; heap cells per sendSync+recvSync ${even.cellsPerSendRecvPair}, ` +
      `per fetchAddSync ${JSON.stringify(even.cellsPerFetchAddSync)}; an atomic against a target out of MPI for 600 ms waited ${even.atomicAgainstStalledTargetMs} ms`);
  }, 300_000);

  test("4 ranks: a server reading every client with messages(); wildcards in pairs; 4 × 10^4 fetchAdd(1) on one counter end at exactly " +
    "4 × 10^4 with every fetched value distinct; a compareSwap lock protects a record through 10^4 acquisitions", async () => {
    const run = await mpirun(4, [...AGENT, "server", "wildcards", "counter", "lock"], {}, 240_000);
    expectClean(run, [0, 1, 2, 3]);
    const lockChecks = run.results[0]!.checks.filter((c) => c.name.startsWith("lock:") || c.name.startsWith("counter:"));
    expect(lockChecks.length).toBe(4); // the counter's two and the lock's two on rank 0, all passed
    console.log(`[alloctools] MPI 4 ranks: µs per fetchAdd ${run.results.map((r) => r.facts.counterMicrosecondsPerAdd).join("/")}, ` +
      `µs per lock acquisition ${run.results.slice(1).map((r) => r.facts.lockMicrosecondsPerAcquisition).join("/")}`);
  }, 300_000);

  test("a C rank (mpicc) that knows only docs/messaging.md: MPI_Recv/MPI_Send against every send and receive form, both ways; " +
    "its MPI_Fetch_and_op and MPI_NO_OP reads interleaved with our fetchAdd on one counter", async () => {
    const mpicc = Bun.which("mpicc");
    if (mpicc === null) {
      if (REQUIRE_MPI) throw new Error("the C rank is required (ALLOCTOOLS_REQUIRE_MPI=1) but there is no mpicc (apt-get install libopenmpi-dev)");
      console.warn("[alloctools] skipped: the C MPI rank (no mpicc)");
      return;
    }
    const directory = mkdtempSync(join(tmpdir(), "alloctools-c-peer-"));
    try {
      const binary = join(directory, "messages-rank");
      const build = Bun.spawnSync([mpicc, "-Wall", "-O2", "-o", binary, `${import.meta.dir}/c/messages-rank.c`], { stderr: "pipe" });
      expect(build.stderr.toString()).toBe("");
      expect(build.exitCode).toBe(0);
      // Every rank the same osc_rdma_max_attach (the Bun ranks would set 4096 for themselves only).
      const run = await mpirunApps([{ ranks: 2, command: [...AGENT, "c-peer"] }, { ranks: 1, command: [binary] }],
        { OMPI_MCA_osc_rdma_max_attach: "4096" }, 120_000);
      expectClean(run, [0, 1]);
      expect(run.stdout).toContain("c peer: ok, 48 messages, 10000 atomics");
      expect(run.results[0]!.facts.cPeerRounds).toBe(48);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  }, 180_000);

  test("unexpected messages: 10^4 of 64 B and 100 of 4 MiB sent before any receive is posted, all received; the receiver's memory meanwhile", async () => {
    const run = await mpirun(2, [...AGENT, "unexpected-memory"], {}, 120_000);
    expectClean(run, [0, 1]);
    const figures = run.results[1]!.facts.unexpectedMemoryKiB as Record<"small" | "large", Record<string, number>>;
    // ob1 keeps each eager message (a fragment and its bytes); a rendezvous message waits at the
    // sender, only its header here.
    expect(figures.small.growthWhileWaiting).toBeLessThan(64 * 1024);
    expect(figures.large.growthWhileWaiting).toBeLessThan(16 * 1024);
    console.log(`[alloctools] MPI unexpected messages, receiver RSS in KiB: ${JSON.stringify(figures)}`);
  }, 180_000);
});
