// Every example runs from its own folder, as a user who copied it runs it (issue 25, item 4), and
// imports only "alloctools": pingpong and rpc over libfabric tcp and shm, UCX tcp and shared memory,
// and MPI under mpirun -n 2, plus a PMIx job (issue 23); the older examples once each, briefly
// (test/rma/example.test.ts, test/mpi/mpi.test.ts and test/jobs/ run them fully). Runs are short:
// they show that the example works, not how fast.
import { expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describeFabric, describeMpi, describeUcx, fabric, mpi, REQUIRE_LIBFABRIC, REQUIRE_UCX, ucx } from "../helpers.ts";
import { launch, mpirunArgv, summary, type Launch } from "../jobs/launch.ts";

const EXAMPLES = join(import.meta.dir, "..", "..", "examples");
/** Every file of examples/, each run below. */
const RUN_HERE = ["job-ring.ts", "mpi-ring.ts", "pingpong.ts", "rma-pingpong.ts", "rpc.ts"];

/** `bun <file> <args>` in examples/; the process group is killed after `timeoutMs`. */
function runExample(file: string, args: string[], timeoutMs = 60_000): Promise<Launch> {
  return launch([process.execPath, file, ...args], {}, timeoutMs, EXAMPLES);
}

/** `mpirun -n <ranks> bun <file> <args>` in examples/. */
function mpirunExample(ranks: number, file: string, args: string[]): Promise<Launch> {
  if (!mpi.available) throw new Error(`mpirun is not available: ${mpi.reason}`);
  return launch(mpirunArgv(mpi.mpirun, ranks, [process.execPath, file, ...args]), {}, 120_000, EXAMPLES);
}

/** Exit 0, nothing on stderr, no error or warning on stdout (where UCX logs), and the lines of stdout. */
function cleanOutput(run: Launch): string[] {
  expect(run.stderr, summary(run)).toBe("");
  expect(run.exitCode, summary(run)).toBe(0);
  const lines = run.stdout.trim().split("\n");
  expect(lines.filter((line) => /error|warn/i.test(line))).toEqual([]);
  return lines;
}

/** A pingpong run: its figures (p50 and mean half round trip) are positive, and its last line says what ran. */
function expectPingPong(run: Launch, size: number, iterations: number, transport: string, form: string): void {
  const lines = cleanOutput(run);
  const row = lines.find((line) => line.startsWith(`${size} `))?.trim().split(/\s+/).map(Number);
  expect(row?.slice(0, 2), run.stdout).toEqual([size, iterations]);
  expect(row![2]).toBeGreaterThan(0);
  expect(row![3]).toBeGreaterThan(0);
  expect(lines.at(-1)).toBe(`pingpong ok: ${iterations} round trips of ${size} B over ${transport} (${form})`);
}

/** An rpc run: `clients` clients each said every request was answered and verified. */
function expectRpc(run: Launch, requests: number, transport: string, clients: number): void {
  const lines = cleanOutput(run);
  expect(lines.filter((line) => line === `rpc ok: ${requests} requests answered and verified over ${transport}`).length, run.stdout).toBe(clients);
  expect(lines.filter((line) => line.startsWith("# p50 ")).length).toBe(clients);
}

/** The pingpong and rpc runs of one transport that needs no launcher. */
function alone(transport: string): void {
  test(`pingpong.ts --transport ${transport}: sendSync/recvSync, 64 B`, async () => {
    expectPingPong(await runExample("pingpong.ts", ["--transport", transport, "--iterations", "50"]), 64, 50, transport, "sendSync/recvSync");
  }, 60_000);
  test(`pingpong.ts --transport ${transport} --promises: send/recv, 64 KiB (past the eager limit)`, async () => {
    const run = await runExample("pingpong.ts", ["--transport", transport, "--promises", "--size", "64k", "--iterations", "20"]);
    expectPingPong(run, 65_536, 20, transport, "send/recv");
  }, 60_000);
  test(`rpc.ts --transport ${transport}: 40 requests, 4 in flight`, async () => {
    expectRpc(await runExample("rpc.ts", ["--transport", transport, "--requests", "40", "--window", "4"]), 40, transport, 1);
  }, 60_000);
}

test("every example imports only \"alloctools\" (and node: built-ins), and every example is run here", () => {
  expect(readdirSync(EXAMPLES).filter((file) => file.endsWith(".ts")).sort()).toEqual(RUN_HERE);
  for (const file of RUN_HERE) {
    const text = readFileSync(join(EXAMPLES, file), "utf8");
    const specifiers = [...text.matchAll(/^import\b[^;]*?\bfrom\s+"([^"]+)"/gm)].map((match) => match[1]);
    expect(specifiers, file).toContain("alloctools");
    for (const specifier of specifiers) expect(specifier, file).toMatch(/^(alloctools|node:[a-z_/]+)$/);
  }
});

describeFabric("examples over libfabric, each with the server process it starts", () => {
  alone("tcp");
  alone("shm");
  test("rma-pingpong.ts --provider tcp: pooled and per-message rows", async () => {
    const run = await runExample("rma-pingpong.ts", ["--provider", "tcp", "--sizes", "64", "--iterations", "5", "--json"]);
    const rows = (JSON.parse(cleanOutput(run).join("\n")) as { rows: { memory: string }[] }).rows;
    expect(rows.map((row) => row.memory).sort()).toEqual(["per-message", "per-message", "pooled", "pooled"]);
  }, 60_000);
});

describeUcx("examples over UCX, each with the server process it starts", () => {
  alone("ucx-tcp");
  alone("ucx-shm");
});

test("job-ring.ts alone: a job of one process, its own neighbour over tcp and UCX", async () => {
  if (!(fabric.available || REQUIRE_LIBFABRIC) || !(ucx.available || REQUIRE_UCX)) {
    console.warn("[alloctools] skipped: job-ring.ts alone (it needs libfabric and UCX)");
    return;
  }
  const lines = cleanOutput(await runExample("job-ring.ts", []));
  expect(lines).toEqual(['rank 0/1 via singleton: tcp got "tcp from rank 0 to rank 0", ucx got "ucx from rank 0 to rank 0"']);
}, 60_000);

describeMpi("examples under mpirun", () => {
  test("pingpong.ts --transport mpi on 2 ranks", async () => {
    expectPingPong(await mpirunExample(2, "pingpong.ts", ["--transport", "mpi", "--iterations", "50"]), 64, 50, "mpi", "sendSync/recvSync");
  }, 150_000);
  test("rpc.ts --transport mpi on 2 ranks", async () => {
    expectRpc(await mpirunExample(2, "rpc.ts", ["--transport", "mpi", "--requests", "40", "--window", "4"]), 40, "mpi", 1);
  }, 150_000);
  test("mpi-ring.ts on 2 ranks", async () => {
    const lines = cleanOutput(await mpirunExample(2, "mpi-ring.ts", [])).filter((line) => line.startsWith("rank ")).sort();
    expect(lines.length).toBe(2);
    expect(lines[0]).toStartWith('rank 0/2 got "from rank 1 to rank 0');
  }, 150_000);
  test("a PMIx job (Job.open, exchangeNames) with libfabric: pingpong.ts over shm on 2 ranks, rpc.ts over tcp on 3 (rank 0 serving 2 clients)", async () => {
    if (!fabric.available && !REQUIRE_LIBFABRIC) {
      console.warn(`[alloctools] skipped: examples in a PMIx job (libfabric not available: ${fabric.reason})`);
      return;
    }
    expectPingPong(await mpirunExample(2, "pingpong.ts", ["--transport", "shm", "--promises", "--iterations", "50"]), 64, 50, "shm", "send/recv");
    expectRpc(await mpirunExample(3, "rpc.ts", ["--transport", "tcp", "--requests", "20", "--window", "4"]), 20, "tcp", 2);
  }, 240_000);
  // Ranks that closed one well after the other made UCX tcp log "error during flush" (on stdout).
  test("a PMIx job with UCX: rpc.ts over ucx-tcp on 2 ranks", async () => {
    if (!(ucx.available || REQUIRE_UCX)) {
      console.warn(`[alloctools] skipped: rpc.ts over UCX in a PMIx job (UCX not available: ${ucx.reason})`);
      return;
    }
    expectRpc(await mpirunExample(2, "rpc.ts", ["--transport", "ucx-tcp", "--requests", "20", "--window", "4"]), 20, "ucx-tcp", 1);
  }, 150_000);
});
