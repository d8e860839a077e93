// Tagged messages (issue 23) against C, in the same run: over libfabric tcp and shm, MPI, UCX shm
// and tcp, the library's loops (bench/messaging/loops.ts) and the C anchors'. Per case:
// - a 64 B ping-pong, half round trip, with sendSync/recvSync and with send/recv awaited, against
//   fi_pingpong -e rdm -m tagged and our C loop (bench/c/tagged-pair.c) on libfabric, ucx_perftest
//   -t tag_lat and our C loop (bench/c/ucx-tagged-pair.c) on UCX, a C MPI_Send/MPI_Recv ping-pong
//   (bench/c/mpi-messages.c, osu_latency's loop) on MPI;
// - osu_bw's window test (64 messages posted, all completed, a 4-byte ack back) at 1 MiB and 4 MiB,
//   and its message rate at 64 B, against the same loop in C (tagged-pair.c, ucx-tagged-pair.c,
//   mpi-messages.c) and, on UCX, ucx_perftest -t tag_bw -O 64 too;
// - heap cells per sendSync+recvSync pair.
// Each side is a process pair (responder on CPU 1, initiator on CPU 0; MPI ranks bound by mpirun),
// ours and the anchor's in alternating order round after round. Every row of
// bench/messaging/rows.ts is recorded: a value, or NaN with a note saying why there is none.
import { join } from "node:path";
import { mpiStatus } from "../../ffi/mpi.ts";
import { ucxStatus } from "../../ffi/ucx.ts";
import { buildC } from "../c/build.ts";
import type { BenchContext, Suite } from "../context.ts";
import { pinnable } from "../cpu.ts";
import { median, spread } from "../stats.ts";
import { fiPingpong, mpiJob, ucxPerftest, type MpiLine } from "../messaging/anchors.ts";
import type { LatencyResult, WindowResult } from "../messaging/loops.ts";
import { LibraryPair, runCPair } from "../messaging/pairs.ts";
import {
  BANDWIDTH_SIZES, BANDWIDTH_TARGET, CASES, caseRows, FI_PINGPONG, MPI_OSU_BW, MPI_PING_PONG, PROMISE_TARGET, RATE_TARGET, row, SMALL, TAG_BW,
  TAG_LAT, TAGGED_PAIR, UCX_PAIR, WINDOW, type Form, type MessagingCase,
} from "../messaging/rows.ts";

const SUITE = "messaging";
const MPI_RANK = join(import.meta.dir, "..", "messaging", "mpi-rank.ts");

/** How long each test runs: counts of iterations (window tests: of windows). */
interface Plan {
  rounds: number;
  latencyIterations: number;
  latencyWarmup: number;
  /** Window rounds by message size, and their warm-up. */
  windows: { bytes: number; iterations: number; warmup: number }[];
  cellsIterations: number;
  timeoutMs: number;
}

// Warm-ups are long in a full run: the loops reach the JIT's top tier only after thousands of
// calls, and a cold first round would otherwise decide the message rate. Quick mode (CI) keeps
// everything short: its figures only show that each row runs.
const plan = (quick: boolean): Plan => ({
  rounds: quick ? 1 : 3,
  latencyIterations: quick ? 500 : 20_000,
  latencyWarmup: quick ? 50 : 5000,
  windows: [
    { bytes: BANDWIDTH_SIZES[0], iterations: quick ? 2 : 20, warmup: quick ? 1 : 2 },
    { bytes: BANDWIDTH_SIZES[1], iterations: quick ? 1 : 5, warmup: 1 },
    { bytes: SMALL, iterations: quick ? 20 : 3000, warmup: quick ? 5 : 1000 },
  ],
  cellsIterations: quick ? 500 : 2000,
  timeoutMs: quick ? 60_000 : 300_000,
});

/** A latency figure of an anchor: fi_pingpong has only a mean. */
type AnchorLatency = { medianNs?: number; meanNs: number };

/** Everything measured for one case over the rounds, and why what is missing is missing. */
class CaseFigures {
  readonly latency: Record<Form, LatencyResult[]> = { sync: [], promise: [] };
  readonly windows = new Map<number, WindowResult[]>();
  readonly anchorLatency = new Map<string, AnchorLatency[]>();
  /** By anchor, then message size. */
  readonly anchorWindows = new Map<string, Map<number, WindowResult[]>>();
  cells: { perPair: number; types: Record<string, number> } | null = null;
  /** Why a row has no value, by row name. */
  readonly why = new Map<string, string>();
  /** Why the whole case has no values (a missing library). */
  caseWhy = "";

  constructor(readonly c: MessagingCase) {}

  /** A window test's result: ours (`anchor` null) or an anchor's. */
  addWindow(bytes: number, result: WindowResult, anchor: string | null): void {
    let into = this.windows;
    if (anchor !== null) {
      into = this.anchorWindows.get(anchor) ?? new Map<number, WindowResult[]>();
      this.anchorWindows.set(anchor, into);
    }
    into.set(bytes, [...(into.get(bytes) ?? []), result]);
  }

  addAnchorLatency(anchor: string, result: AnchorLatency): void {
    this.anchorLatency.set(anchor, [...(this.anchorLatency.get(anchor) ?? []), result]);
  }

  /** Marks the rows of a failed step with its reason (the first reason wins). */
  failed(rows: string[], error: unknown): void {
    const reason = error instanceof Error ? error.message : String(error);
    for (const name of rows) if (!this.why.has(name)) this.why.set(name, `failed: ${reason.split("\n")[0]}`);
  }

  /** The rows of our side's window tests (`anchor` null), or of an anchor's. */
  windowRows(anchor: string | null): string[] {
    return [...BANDWIDTH_SIZES, SMALL].map((bytes) => this.windowRow(bytes, anchor));
  }

  /** The row of one window test: a bandwidth, or at SMALL the message rate. */
  windowRow(bytes: number, anchor: string | null): string {
    const c = this.c;
    if (bytes === SMALL) return anchor === null ? row.rate(c) : row.anchorRate(c, anchor);
    return anchor === null ? row.bandwidth(c, bytes) : row.anchorBandwidth(c, anchor, bytes);
  }
}

// ---- the cases ----------------------------------------------------------------------------------

/** One round of the library's side through a LibraryPair (libfabric, UCX); throws at the first failure. */
async function libraryRound(pair: LibraryPair, figures: CaseFigures, p: Plan): Promise<void> {
  for (const form of ["sync", "promise"] as const) {
    figures.latency[form].push(await pair.run<LatencyResult>({ op: "lat", form, size: SMALL, iterations: p.latencyIterations, warmup: p.latencyWarmup }, p.timeoutMs));
  }
  for (const w of p.windows) {
    figures.addWindow(w.bytes, await pair.run<WindowResult>({ op: "window", size: w.bytes, window: WINDOW, iterations: w.iterations, warmup: w.warmup }, p.timeoutMs), null);
  }
}

/** libfabric: our pair against fi_pingpong and tagged-pair.c. */
async function libfabricCase(ctx: BenchContext, figures: CaseFigures, p: Plan): Promise<void> {
  const c = figures.c;
  if (!ctx.fabric) {
    if (process.env.ALLOCTOOLS_REQUIRE_LIBFABRIC === "1") throw new Error("messaging bench: libfabric is not loaded and ALLOCTOOLS_REQUIRE_LIBFABRIC=1");
    figures.caseWhy = "libfabric is not loaded on this machine";
    return;
  }
  const node = c.what === "tcp" ? ["--node", "127.0.0.1"] : [];
  const program = buildC("tagged-pair");
  const fiPingpongPath = Bun.which("fi_pingpong");
  const anchors = async () => {
    if (fiPingpongPath === null) figures.failed([row.anchorLatency(c, FI_PINGPONG)], "fi_pingpong is not installed (apt-get install libfabric-bin)");
    else {
      try { figures.addAnchorLatency(FI_PINGPONG, await fiPingpong(c.what, SMALL, p.latencyIterations, p.timeoutMs)); }
      catch (e) { figures.failed([row.anchorLatency(c, FI_PINGPONG)], e); }
    }
    if ("missing" in program) {
      figures.failed([row.anchorLatency(c, TAGGED_PAIR), ...figures.windowRows(TAGGED_PAIR)], `tagged-pair.c not built: ${program.missing}`);
      return;
    }
    await cPairTests(figures, p, program.path, c.what, node, TAGGED_PAIR);
  };
  ctx.provider({ suite: SUITE, label: c.label, description: `libfabric ${c.what}${node.length ? " on 127.0.0.1" : ""}: bench/messaging/peer.ts pair against ${FI_PINGPONG} and bench/c/tagged-pair.c; responder on CPU 1, initiator on CPU 0${pinnable ? "" : " (not pinned)"}` });
  await pairedRounds(figures, p, ["libfabric", c.what, ...node], anchors);
}

/** UCX: our pair against ucx_perftest tag_lat and tag_bw. */
async function ucxCase(ctx: BenchContext, figures: CaseFigures, p: Plan): Promise<void> {
  const c = figures.c;
  const status = ucxStatus();
  if (!status.available) {
    if (process.env.ALLOCTOOLS_REQUIRE_UCX === "1") throw new Error(`messaging bench: UCX not available (${status.reason}) and ALLOCTOOLS_REQUIRE_UCX=1`);
    figures.caseWhy = `UCX not available: ${status.reason}`;
    return;
  }
  const netDevices = c.what === "tcp" ? "lo" : undefined;
  const env = { ...(process.env as Record<string, string>), UCX_TLS: c.what, ...(netDevices ? { UCX_NET_DEVICES: netDevices } : {}) };
  const perftestPath = Bun.which("ucx_perftest");
  const program = buildC("ucx-tagged-pair", ["-lucp", "-lucs"]);
  const deviceOption = netDevices ? ["--net-devices", netDevices] : [];
  const anchors = async () => {
    if ("missing" in program) figures.failed([row.anchorLatency(c, UCX_PAIR), ...figures.windowRows(UCX_PAIR)], `ucx-tagged-pair.c not built: ${program.missing}`);
    else await cPairTests(figures, p, program.path, c.what, deviceOption, UCX_PAIR);
    if (perftestPath === null) {
      figures.failed([row.anchorLatency(c, TAG_LAT), ...figures.windowRows(TAG_BW)], "ucx_perftest is not installed (apt-get install ucx-utils)");
      return;
    }
    try {
      const lat = await ucxPerftest("tag_lat", env, SMALL, p.latencyIterations, p.latencyWarmup, null, p.timeoutMs);
      figures.addAnchorLatency(TAG_LAT, { medianNs: lat.medianNs, meanNs: lat.meanNs });
    } catch (e) { figures.failed([row.anchorLatency(c, TAG_LAT)], e); }
    for (const w of p.windows) {
      try {
        // The same number of messages as ours, at most WINDOW outstanding.
        const bw = await ucxPerftest("tag_bw", env, w.bytes, w.iterations * WINDOW, w.warmup * WINDOW, WINDOW, p.timeoutMs);
        figures.addWindow(w.bytes, { seconds: Number.NaN, mbPerSec: bw.mbPerSec, messagesPerSec: bw.messagesPerSec }, TAG_BW);
      } catch (e) { figures.failed([figures.windowRow(w.bytes, TAG_BW)], e); }
    }
  };
  ctx.provider({ suite: SUITE, label: c.label, description: `UCX ${status.version}, UCX_TLS=${c.what}${netDevices ? `, UCX_NET_DEVICES=${netDevices}` : ""}: bench/messaging/peer.ts pair against bench/c/ucx-tagged-pair.c, ${TAG_LAT} and ${TAG_BW} -O ${WINDOW}; responder/server on CPU 1, initiator/client on CPU 0${pinnable ? "" : " (not pinned)"}` });
  await pairedRounds(figures, p, ["ucx", c.what, ...(netDevices ? ["--net-devices", netDevices] : [])], anchors);
}

/** One round of a C pair (tagged-pair.c, ucx-tagged-pair.c): the ping-pong and every window test with one process pair. */
async function cPairTests(figures: CaseFigures, p: Plan, binary: string, what: string, options: string[], anchor: string): Promise<void> {
  const tests = [["lat", SMALL, p.latencyIterations, p.latencyWarmup], ...p.windows.map((w) => ["window", w.bytes, WINDOW, w.iterations, w.warmup])];
  try {
    for (const reply of await runCPair(binary, what, options, tests.map((t) => t.map(String)), p.timeoutMs)) {
      if (reply.test === "lat") figures.addAnchorLatency(anchor, { medianNs: reply.medianNs!, meanNs: reply.meanNs! });
      else figures.addWindow(reply.bytes, { seconds: reply.seconds!, mbPerSec: reply.mbPerSec!, messagesPerSec: reply.messagesPerSec! }, anchor);
    }
  } catch (e) { figures.failed([row.anchorLatency(figures.c, anchor), ...figures.windowRows(anchor)], e); }
}

/** The rounds of a pair-based case: ours and the anchors' alternately first; the cells at the end. */
async function pairedRounds(figures: CaseFigures, p: Plan, args: string[], anchors: () => Promise<void>): Promise<void> {
  let pair: LibraryPair | null = null;
  const ourRows = [row.latency(figures.c, "sync"), row.latency(figures.c, "promise"), row.latencyMean(figures.c, "sync"), row.latencyMean(figures.c, "promise"), ...figures.windowRows(null), row.cells(figures.c)];
  try {
    pair = await LibraryPair.start(args);
  } catch (e) {
    figures.failed(ourRows, e);
  }
  // A pair that failed a command is stopped: its other side may still be in the loop, and every
  // later command would wait for its timeout.
  const stopAfter = async (e: unknown) => {
    figures.failed(ourRows, e);
    await pair?.stop();
    pair = null;
  };
  for (let round = 0; round < p.rounds; round++) {
    if (round % 2 === 1) await anchors();
    if (pair !== null) await libraryRound(pair, figures, p).catch(stopAfter);
    if (round % 2 === 0) await anchors();
  }
  if (pair !== null) {
    try {
      figures.cells = await pair.run({ op: "cells", size: SMALL, iterations: p.cellsIterations }, p.timeoutMs);
    } catch (e) { figures.failed([row.cells(figures.c)], e); }
    await pair.stop();
  }
}

/** MPI: a Bun job (bench/messaging/mpi-rank.ts) against a C job (bench/c/mpi-messages.c), alternately. */
async function mpiCase(ctx: BenchContext, figures: CaseFigures, p: Plan): Promise<void> {
  const c = figures.c;
  const status = mpiStatus();
  const mpirun = Bun.which("mpirun");
  const missing = (why: string) => {
    if (process.env.ALLOCTOOLS_REQUIRE_MPI === "1") throw new Error(`messaging bench: ${why} (ALLOCTOOLS_REQUIRE_MPI=1)`);
    figures.caseWhy = why;
  };
  if (!status.available) return missing(`Open MPI not available (${status.reason})`);
  if (mpirun === null) return missing("no mpirun on PATH (apt-get install openmpi-bin)");
  const program = Bun.which("mpicc") === null ? { missing: "no mpicc (apt-get install libopenmpi-dev)" } : buildC("mpi-messages", [], undefined, "mpicc");
  ctx.provider({ suite: SUITE, label: c.label, description: `${status.version}, 2 ranks under mpirun --oversubscribe (bound by mpirun): bench/messaging/mpi-rank.ts against bench/c/mpi-messages.c` });
  const tests = (lat: string[]) => [
    ...lat,
    ...p.windows.flatMap((w) => ["window", String(w.bytes), String(WINDOW), String(w.iterations), String(w.warmup)]),
  ];
  const latency = [String(SMALL), String(p.latencyIterations), String(p.latencyWarmup)];
  const ours = async () => {
    try {
      const lines = await mpiJob(mpirun, [process.execPath, MPI_RANK, ...tests(["lat-sync", ...latency, "lat-promise", ...latency]), "cells", String(SMALL), String(p.cellsIterations)], p.timeoutMs);
      takeMpiLines(figures, lines, null);
    } catch (e) { figures.failed([row.latency(c, "sync"), row.latency(c, "promise"), row.latencyMean(c, "sync"), row.latencyMean(c, "promise"), ...figures.windowRows(null), row.cells(c)], e); }
  };
  const anchors = async () => {
    const rows = [row.anchorLatency(c, MPI_PING_PONG), ...figures.windowRows(MPI_OSU_BW)];
    if ("missing" in program) { figures.failed(rows, `mpi-messages.c not built: ${program.missing}`); return; }
    try { takeMpiLines(figures, await mpiJob(mpirun, [program.path, ...tests(["lat", ...latency])], p.timeoutMs), MPI_OSU_BW); }
    catch (e) { figures.failed(rows, e); }
  };
  for (let round = 0; round < p.rounds; round++) {
    if (round % 2 === 1) await anchors();
    await ours();
    if (round % 2 === 0) await anchors();
  }
}

function takeMpiLines(figures: CaseFigures, lines: MpiLine[], anchor: string | null): void {
  for (const line of lines) {
    if (line.test === "lat") figures.addAnchorLatency(MPI_PING_PONG, { medianNs: line.medianNs!, meanNs: line.meanNs! });
    else if (line.test === "lat-sync" || line.test === "lat-promise") figures.latency[line.test === "lat-sync" ? "sync" : "promise"].push(line as LatencyResult);
    else if (line.test === "window") figures.addWindow(line.bytes, line as WindowResult, anchor);
    else if (line.test === "cells" && figures.cells === null) figures.cells = { perPair: line.perPair!, types: line.types ?? {} };
  }
}

// ---- recording ---------------------------------------------------------------------------------

const verdict = (met: boolean) => (met ? "met" : "NOT met");

/** Records every row of the case: medians over the rounds, ratios of medians, and a reason for each missing value. */
function recordCase(ctx: BenchContext, figures: CaseFigures): void {
  const c = figures.c;
  const recorded = new Set<string>();
  const record = (name: string, value: number, unit: string, note: string) => {
    recorded.add(name);
    ctx.record({ suite: SUITE, name, value, unit, note });
  };
  const rounds = (n: number) => `median of ${n} round(s)`;
  // Our latencies.
  const ourLatency: Partial<Record<Form, { medianNs: number; meanNs: number }>> = {};
  for (const form of ["sync", "promise"] as const) {
    const results = figures.latency[form];
    if (results.length === 0) continue;
    const medianNs = median(results.map((r) => r.medianNs));
    const meanNs = median(results.map((r) => r.meanNs));
    ourLatency[form] = { medianNs, meanNs };
    record(row.latency(c, form), medianNs, "ns", `p50; p99 ${Math.round(median(results.map((r) => r.p99Ns)))} ns; ${rounds(results.length)} (${spread(results.map((r) => r.medianNs / 1000), 2)} µs)`);
    record(row.latencyMean(c, form), meanNs, "ns", `all the time over 2 × iterations, as fi_pingpong and osu_latency report; ${rounds(results.length)}`);
  }
  // The anchors' latencies and the ratios.
  for (const anchor of c.latencyAnchors) {
    const results = figures.anchorLatency.get(anchor) ?? [];
    if (results.length === 0) continue;
    const hasMedian = results.every((r) => r.medianNs !== undefined);
    const value = hasMedian ? median(results.map((r) => r.medianNs!)) : median(results.map((r) => r.meanNs));
    const meanNs = median(results.map((r) => r.meanNs));
    record(row.anchorLatency(c, anchor), value, "ns", `${hasMedian ? `p50; mean ${Math.round(meanNs)} ns` : "mean (all the time over 2 × iterations; it reports no percentile)"}; ${rounds(results.length)}`);
    for (const form of ["sync", "promise"] as const) {
      const ours = ourLatency[form];
      if (ours === undefined) continue;
      const ratio = hasMedian ? ours.medianNs / value : ours.meanNs / meanNs;
      const target = form === "promise" ? PROMISE_TARGET : c.latencyTarget;
      const measure = hasMedian ? "p50 / p50" : "mean / mean (our mean, its only figure)";
      record(row.latencyRatio(c, form, anchor), ratio, "×",
        `${measure}; ${target === null ? "no target set for this transport" : `target ≤ ${target}×: ${verdict(ratio <= target)}`}${hasMedian ? `; mean / mean ${(ours.meanNs / meanNs).toFixed(2)}×` : ""}`);
    }
  }
  // Windows.
  for (const bytes of [...BANDWIDTH_SIZES, SMALL]) {
    const rate = bytes === SMALL;
    const pick = (r: WindowResult) => (rate ? r.messagesPerSec : r.mbPerSec);
    const unit = rate ? "msg/s" : "MB/s";
    const megabytes = rate ? "" : "MB = 1e6 bytes; ";
    const ours = figures.windows.get(bytes) ?? [];
    if (ours.length > 0) record(figures.windowRow(bytes, null), median(ours.map(pick)), unit, `osu_bw's loop (${WINDOW} postSend/postRecv, poll() until all completed, a 4-byte ack back); ${megabytes}${rounds(ours.length)}`);
    for (const anchor of c.windowAnchors) {
      const theirs = figures.anchorWindows.get(anchor)?.get(bytes) ?? [];
      if (theirs.length === 0) continue;
      const how = anchor === TAG_BW ? `-O ${WINDOW} (at most ${WINDOW} sends outstanding, no ack per window), the same number of messages` : `the same loop in C: ${WINDOW} posted, all completed, a 4-byte ack back`;
      record(figures.windowRow(bytes, anchor), median(theirs.map(pick)), unit, `${how}; ${megabytes}${rounds(theirs.length)}`);
      if (ours.length === 0) continue;
      const ratio = median(ours.map(pick)) / median(theirs.map(pick));
      const target = rate ? RATE_TARGET : BANDWIDTH_TARGET;
      record(rate ? row.rateRatio(c, anchor) : row.bandwidthRatio(c, bytes, anchor), ratio, "×", `target ≥ ${target}×: ${verdict(ratio >= target)}`);
    }
  }
  if (figures.cells !== null) {
    const types = Object.entries(figures.cells.types).map(([type, count]) => `${type} ${count}`).join(", ");
    record(row.cells(c), figures.cells.perPair, "cells", `bun:jsc heap statistics, net of an empty loop; target ≤ 1 (the Received): ${verdict(figures.cells.perPair <= 1.2)}; ${types || "nothing allocated"}`);
  }
  // Every row not recorded says why.
  for (const { name, unit } of caseRows(c)) {
    if (recorded.has(name)) continue;
    const reason = figures.caseWhy || figures.why.get(name) || whyRatioMissing(figures, name) || "not measured";
    ctx.record({ suite: SUITE, name, value: Number.NaN, unit, note: reason.startsWith("not ") || reason.startsWith("failed") ? reason : `not measured: ${reason}` });
  }
}

/** A ratio is missing because one of its two figures is: say which. */
function whyRatioMissing(figures: CaseFigures, name: string): string | undefined {
  const c = figures.c;
  const reasons: string[] = [];
  for (const form of ["sync", "promise"] as const) for (const anchor of c.latencyAnchors) {
    if (name !== row.latencyRatio(c, form, anchor)) continue;
    for (const part of [row.latency(c, form), row.anchorLatency(c, anchor)]) if (figures.why.has(part)) reasons.push(`${part}: ${figures.why.get(part)}`);
  }
  for (const anchor of c.windowAnchors) for (const bytes of [...BANDWIDTH_SIZES, SMALL]) {
    if (name !== (bytes === SMALL ? row.rateRatio(c, anchor) : row.bandwidthRatio(c, bytes, anchor))) continue;
    for (const part of [figures.windowRow(bytes, null), figures.windowRow(bytes, anchor)]) if (figures.why.has(part)) reasons.push(`${part}: ${figures.why.get(part)}`);
  }
  return reasons.length > 0 ? `not measured: ${reasons.join("; ")}` : undefined;
}

const suite: Suite = {
  name: SUITE,
  async setup(ctx: BenchContext) {
    const p = plan(ctx.quick);
    for (const c of CASES) {
      const figures = new CaseFigures(c);
      try {
        if (c.transport === "libfabric") await libfabricCase(ctx, figures, p);
        else if (c.transport === "ucx") await ucxCase(ctx, figures, p);
        else await mpiCase(ctx, figures, p);
      } catch (e) {
        if (/ALLOCTOOLS_REQUIRE_/.test((e as Error).message)) throw e;
        figures.caseWhy = `failed: ${(e as Error).message}`;
      }
      recordCase(ctx, figures);
    }
  },
};
export default suite;
