// Remote atomics against C, in the same run (issue 26's target: fetchAddSync at most 1.3× a C loop
// doing the same operation against the same target).
//
// Every transport's rows come from two initiator processes taking turns, round after round (which
// goes first alternates), against one target: our C program (bench/c/<transport>-atomics.c in
// initiator mode) and a Bun process running the library (bench/atomics/initiator.ts). Both time
// each operation alone and wait for it before the next, after the same warm-up, and print p50,
// mean and p99 in the same JSON line (bench/atomics/forms.ts, bench/c/latency-samples.h).
// - libfabric tcp and shm: the target is the C program in target mode, busy-polling its completion
//   queue (rxm and shm apply atomics in the target's progress) on CPU 1; initiators on CPU 0.
// - UCX tcp and shared memory (posix,cma, UCX-allocated memory, as UcxProvider allocates it there):
//   the target is bench/c/ucx-atomics.c in target mode, busy-progressing its worker on CPU 1.
// - MPI: two jobs of 2 ranks under mpirun, alternated: the C one (bench/c/mpi-atomics.c) and the
//   Bun one (bench/atomics/mpi-rank.ts); rank 1 waits in a blocking barrier, which makes the MPI
//   progress that performs the atomics (osc/rdma over vader emulates them at the target).
// The library figures are fetchAddSync, compareSwapSync and postFetchAdd + poll() until fetched(id)
// returns; the C figures fetch-and-add and compare-and-swap; each library form's ratio is its p50
// over C's p50 for the same operation in the same round, the median of the rounds.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { buildC } from "../c/build.ts";
import type { BenchContext, Suite } from "../context.ts";
import { onCpu, pinnable } from "../cpu.ts";
import { jsonLines, mpirunTwoRanks, ReadyProcess } from "../peer-process.ts";
import { median, spread } from "../stats.ts";
import { FORMS, type Form, type Latency } from "../atomics/forms.ts";
import { mpiStatus } from "../../ffi/mpi.ts";
import { ucxStatus } from "../../ffi/ucx.ts";

const SUITE = "atomics";
/** Issue 26: fetchAddSync at most this many times the C loop's p50. */
export const TARGET_RATIO = 1.3;
const INITIATOR = resolve(import.meta.dir, "../atomics/initiator.ts");
const MPI_RANK = resolve(import.meta.dir, "../atomics/mpi-rank.ts");

/** The transports measured: the label of their rows. */
export const TRANSPORTS = ["libfabric tcp", "libfabric shm", "UCX tcp", "UCX shm (posix,cma), UCX-allocated target", "UCX shm (posix,cma), target's own memory", "MPI"] as const;
type Transport = (typeof TRANSPORTS)[number];

/** The C operation a library form is compared with. */
const C_OPERATION: Readonly<Record<Form, "fetchAdd" | "compareSwap">> = {
  fetchAddSync: "fetchAdd", compareSwapSync: "compareSwap", "postFetchAdd+fetched": "fetchAdd",
};

/** The row of a library form's ratio to C: one per transport and form, always present. */
export const ratioRow = (transport: string, form: Form): string => `${transport}: ${form} / C ${C_OPERATION[form]}`;

/** One initiator's figures of one round, by operation (C) or form (library). */
type RoundLines = Map<string, Latency>;

/** Runs one initiator to its end: its lines, or why there are none. */
type Initiator = () => Promise<Latency[] | string>;

interface Sizes { rounds: number; iterations: number; warmup: number }

/**
 * Operations per round: a tenth over tcp, where each takes ~20 µs on an idle machine and its mean
 * reaches ~200 µs on a loaded one (a full run with 20000 over tcp took 9 minutes there).
 */
function sizesFor(quick: boolean, overTcp: boolean): Sizes {
  const scale = overTcp ? 10 : 1;
  return quick ? { rounds: 1, iterations: 2000 / scale, warmup: 1000 / scale } : { rounds: 5, iterations: 20_000 / scale, warmup: 5000 / scale };
}

/** Alternates the two initiators (C first on even rounds); the rounds where both answered. */
async function alternate(rounds: number, c: Initiator, library: Initiator): Promise<{ c: RoundLines[]; library: RoundLines[] }> {
  const result = { c: [] as RoundLines[], library: [] as RoundLines[] };
  const byName = (lines: Latency[]) => new Map(lines.map((l) => [l.operation, l] as const));
  for (let round = 0; round < rounds; round++) {
    const first = round % 2 === 0 ? c : library;
    const second = round % 2 === 0 ? library : c;
    const a = await first();
    if (typeof a === "string") throw new Error(`${first === c ? "the C initiator" : "the library initiator"} failed: ${a}`);
    const b = await second();
    if (typeof b === "string") throw new Error(`${second === c ? "the C initiator" : "the library initiator"} failed: ${b}`);
    result.c.push(byName(first === c ? a : b));
    result.library.push(byName(first === c ? b : a));
  }
  return result;
}

const us = (ns: number) => `${(ns / 1000).toFixed(2)} µs`;

/** The rows of one transport: C's p50 per operation, each form's p50, each form's ratio to C with the verdict. */
function record(ctx: BenchContext, transport: Transport, calls: Readonly<Record<string, string>>, rounds: { c: RoundLines[]; library: RoundLines[] }, lines: string[]): void {
  const n = rounds.c.length;
  const summary = (figures: Latency[]) =>
    `median of ${n} round(s) of ${figures[0]!.iterations} operations each timed alone (${spread(figures.map((f) => f.p50 / 1000))} µs); mean ${us(median(figures.map((f) => f.mean)))}, p99 ${us(median(figures.map((f) => f.p99)))}`;
  for (const operation of ["fetchAdd", "compareSwap"] as const) {
    const figures = rounds.c.map((r) => r.get(operation)!);
    ctx.record({ suite: SUITE, name: `${transport}: C ${operation} p50`, value: median(figures.map((f) => f.p50)), unit: "ns", note: `${calls[operation]}; ${summary(figures)}` });
  }
  for (const form of FORMS) {
    const figures = rounds.library.map((r) => r.get(form)!);
    const p50 = median(figures.map((f) => f.p50));
    ctx.record({ suite: SUITE, name: `${transport}: ${form} p50`, value: p50, unit: "ns", note: summary(figures) });
    const ratios = rounds.library.map((r, i) => r.get(form)!.p50 / rounds.c[i]!.get(C_OPERATION[form])!.p50);
    const ratio = median(ratios);
    const verdict = form === "fetchAddSync" ? `target ≤ ${TARGET_RATIO}×: ${ratio <= TARGET_RATIO ? "met" : "NOT met"}; ` : "";
    ctx.record({ suite: SUITE, name: ratioRow(transport, form), value: ratio, unit: "×", note: `${verdict}p50 over C's p50 in the same round, median of ${n} (${spread(ratios)})` });
    const cP50 = median(rounds.c.map((r) => r.get(C_OPERATION[form])!.p50));
    lines.push(`| ${transport} | ${form} | ${us(p50)} | ${us(cP50)} | ${ratio.toFixed(2)}× (${spread(ratios)}) |`);
  }
}

/** Every row of a transport that could not be measured, saying why. */
function notMeasured(ctx: BenchContext, transport: Transport, why: string, lines: string[]): void {
  ctx.provider({ suite: SUITE, label: transport, description: `not measured: ${why}` });
  for (const form of FORMS) {
    ctx.record({ suite: SUITE, name: ratioRow(transport, form), value: Number.NaN, unit: "×", note: `not measured: ${why}` });
    lines.push(`| ${transport} | ${form} | not measured | | ${why.slice(0, 120)} |`);
  }
}

/** Measures one transport, or records why not; throws only when the REQUIRE variable of its library is set. */
async function measureTransport(ctx: BenchContext, transport: Transport, require: string, lines: string[],
  run: () => Promise<{ calls: Readonly<Record<string, string>>; rounds: { c: RoundLines[]; library: RoundLines[] } }>): Promise<void> {
  try {
    const { calls, rounds } = await run();
    record(ctx, transport, calls, rounds, lines);
  } catch (e) {
    if (process.env[require] === "1") throw e;
    notMeasured(ctx, transport, (e as Error).message, lines);
  }
}

// ---- libfabric ---------------------------------------------------------------------------------

interface FabricTarget { name: string; address: string; key: string; provider: string }

const FABRIC_CALLS = { fetchAdd: "fi_fetch_atomic(FI_SUM, FI_UINT64) + fi_cq_readfrom until its completion", compareSwap: "fi_compare_atomic(FI_CSWAP, FI_UINT64) + fi_cq_readfrom until its completion" };

async function measureFabric(ctx: BenchContext, provider: "tcp" | "shm", sizes: Sizes) {
  const program = buildC("fabric-atomics");
  if ("missing" in program) throw new Error(`the C reference is not built: ${program.missing}`);
  const node = provider === "tcp" ? ["--node", "127.0.0.1"] : [];
  const target = await ReadyProcess.start<FabricTarget>([...onCpu(1), program.path, "target", provider, ...node], `the C ${provider} target`, (t) => typeof t.name === "string");
  try {
    const { name, address, key } = target.ready;
    ctx.provider({
      suite: SUITE, label: `libfabric ${provider}`,
      description: `${target.ready.provider}: the C initiator (bench/c/fabric-atomics.c) and a Bun process with Endpoint take turns against one C target busy-polling its completion queue; ` +
        (pinnable ? "target on CPU 1, initiators on CPU 0" : "not pinned (no taskset or one CPU)"),
    });
    const common = ["--name", name, "--address", address, "--key", key, ...node, "--iterations", String(sizes.iterations), "--warmup", String(sizes.warmup)];
    const rounds = await alternate(sizes.rounds,
      () => jsonLines<Latency>([...onCpu(0), program.path, "initiator", provider, ...common, "--operations", "fetchAdd,compareSwap"]),
      () => jsonLines<Latency>([...onCpu(0), process.execPath, INITIATOR, "fabric", provider, ...common, "--forms", FORMS.join(",")]));
    return { calls: FABRIC_CALLS, rounds };
  } finally {
    await target.stop();
  }
}

// ---- UCX -----------------------------------------------------------------------------------------

interface UcxTarget { name: string; address: string; rkey: string }

/** A UCX row: its transports, and whether the target's word is in memory UCX allocated (one-sided over shared memory). */
interface UcxCase { transport: Transport; transports: string; netDevices: string; allocate: boolean }

const UCX_CASES: readonly UcxCase[] = [
  { transport: "UCX tcp", transports: "tcp", netDevices: "lo", allocate: false },
  { transport: "UCX shm (posix,cma), UCX-allocated target", transports: "posix,cma", netDevices: "-", allocate: true },
  { transport: "UCX shm (posix,cma), target's own memory", transports: "posix,cma", netDevices: "-", allocate: false },
];

const UCX_CALLS = {
  fetchAdd: "ucp_atomic_op_nbx(UCP_ATOMIC_OP_ADD, 8 bytes, reply buffer) + ucp_worker_progress until done",
  compareSwap: "ucp_atomic_op_nbx(UCP_ATOMIC_OP_CSWAP, 8 bytes, reply buffer) + ucp_worker_progress until done",
};

async function measureUcx(ctx: BenchContext, c: UcxCase, sizes: Sizes) {
  const status = ucxStatus();
  if (!status.available) throw new Error(`UCX not available (${status.reason})`);
  const program = buildC("ucx-atomics", ["-lucp", "-lucs"]);
  if ("missing" in program) throw new Error(`the C reference is not built: ${program.missing}`);
  const target = await ReadyProcess.start<UcxTarget>([...onCpu(1), program.path, "target", c.transports, c.netDevices, ...(c.allocate ? ["--allocate"] : [])],
    `the C UCX target (${c.transports})`, (t) => typeof t.name === "string");
  try {
    const where = c.transports === "tcp" ? "emulated by the target's worker progress" : c.allocate ? "one-sided: done by the initiator's CPU on the target's segment mapped in its process" : "emulated by the target's worker progress (memory UCX did not allocate)";
    ctx.provider({
      suite: SUITE, label: c.transport,
      description: `UCX ${status.version}, UCX_TLS=${c.transports}${c.netDevices !== "-" ? `, UCX_NET_DEVICES=${c.netDevices}` : ""}: the C initiator (bench/c/ucx-atomics.c) and a Bun process with UcxEndpoint take turns against one C target busy-progressing its worker; atomics ${where}; ` +
        (pinnable ? "target on CPU 1, initiators on CPU 0" : "not pinned (no taskset or one CPU)"),
    });
    const { name, address, rkey } = target.ready;
    const common = [c.transports, c.netDevices, "--name", name, "--address", address, "--rkey", rkey, "--iterations", String(sizes.iterations), "--warmup", String(sizes.warmup)];
    const rounds = await alternate(sizes.rounds,
      () => jsonLines<Latency>([...onCpu(0), program.path, "initiator", ...common, "--operations", "fetchAdd,compareSwap"]),
      () => jsonLines<Latency>([...onCpu(0), process.execPath, INITIATOR, "ucx", ...common, "--forms", FORMS.join(",")]));
    return { calls: UCX_CALLS, rounds };
  } finally {
    await target.stop();
  }
}

// ---- MPI -----------------------------------------------------------------------------------------

const MPI_CALLS = {
  fetchAdd: "MPI_Fetch_and_op(MPI_SUM, MPI_UINT64_T) + MPI_Win_flush",
  compareSwap: "MPI_Compare_and_swap(MPI_UINT64_T) + MPI_Win_flush",
};

/** mpicc of bench/c/mpi-atomics.c into a temporary directory: the binary, or why there is none. */
function buildMpiC(): string {
  const mpicc = Bun.which("mpicc");
  if (mpicc === null) throw new Error("no mpicc (apt-get install libopenmpi-dev): the C reference is not built");
  const binary = join(mkdtempSync(join(tmpdir(), "alloctools-bench-atomics-")), "mpi-atomics");
  const build = Bun.spawnSync([mpicc, "-O2", `-I${resolve(import.meta.dir, "../c")}`, "-o", binary, resolve(import.meta.dir, "../c/mpi-atomics.c")], { stderr: "pipe" });
  if (build.exitCode !== 0) throw new Error(`mpicc failed: ${build.stderr.toString().trim().split("\n")[0]}`);
  return binary;
}

async function measureMpi(ctx: BenchContext, sizes: Sizes) {
  const status = mpiStatus();
  if (!status.available) throw new Error(`Open MPI not available (${status.reason})`);
  const mpirun = Bun.which("mpirun");
  if (mpirun === null) throw new Error("no mpirun on PATH (apt-get install openmpi-bin)");
  const binary = buildMpiC();
  ctx.provider({
    suite: SUITE, label: "MPI",
    description: `${status.version}: a C job (bench/c/mpi-atomics.c) and a Bun job (MpiEndpoint) of 2 ranks under mpirun --oversubscribe, alternated; rank 0 on a word of rank 1, which waits in a blocking barrier`,
  });
  const counts = [String(sizes.iterations), String(sizes.warmup)];
  const rounds = await alternate(sizes.rounds,
    async () => mpirunTwoRanks<Latency>(mpirun, [binary, "fetchAdd,compareSwap", ...counts]),
    async () => mpirunTwoRanks<Latency>(mpirun, [process.execPath, MPI_RANK, FORMS.join(","), ...counts]));
  return { calls: MPI_CALLS, rounds };
}

// ---- the suite -----------------------------------------------------------------------------------

const suite: Suite = {
  name: SUITE,
  async setup(ctx: BenchContext) {
    const lines: string[] = [];
    for (const provider of ["tcp", "shm"] as const) {
      const transport = `libfabric ${provider}` as const;
      if (!ctx.fabric) notMeasured(ctx, transport, "libfabric is not available", lines);
      else await measureTransport(ctx, transport, "ALLOCTOOLS_REQUIRE_LIBFABRIC", lines, () => measureFabric(ctx, provider, sizesFor(ctx.quick, provider === "tcp")));
    }
    for (const c of UCX_CASES) await measureTransport(ctx, c.transport, "ALLOCTOOLS_REQUIRE_UCX", lines, () => measureUcx(ctx, c, sizesFor(ctx.quick, c.transports === "tcp")));
    await measureTransport(ctx, "MPI", "ALLOCTOOLS_REQUIRE_MPI", lines, () => measureMpi(ctx, sizesFor(ctx.quick, false)));
    return () => {
      console.log(`\n== atomics: the library against a C loop, same target, same run (p50 per operation; target fetchAddSync ≤ ${TARGET_RATIO}× C)\n`);
      console.log("| transport | library form | library p50 | C p50 (same operation) | library / C (rounds) |");
      console.log("|---|---|---|---|---|");
      for (const l of lines) console.log(l);
    };
  },
};
export default suite;
