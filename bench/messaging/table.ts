// Prints the messaging suite's figures of a `bun run bench --json` file as the markdown table that
// docs/performance.md and docs/messaging.md quote: one column per case, each ratio cell with the
// two figures it divides.
//
//   bun bench/messaging/table.ts <bench.json>
import { readFileSync } from "node:fs";
import {
  BANDWIDTH_SIZES, BANDWIDTH_TARGET, CASES, FI_PINGPONG, MPI_OSU_BW, MPI_PING_PONG, PROMISE_TARGET, RATE_TARGET, row, TAG_BW, TAG_LAT,
  TAGGED_PAIR, UCX_PAIR, type Form, type MessagingCase,
} from "./rows.ts";

interface FigureJson { suite: string; name: string; value: number | null; unit: string; note?: string }

const path = process.argv[2];
if (path === undefined) {
  console.error("usage: bun bench/messaging/table.ts <bench.json>");
  process.exit(2);
}
const figures = new Map<string, FigureJson>();
for (const f of (JSON.parse(readFileSync(path, "utf8")) as { figures: FigureJson[] }).figures) if (f.suite === "messaging") figures.set(f.name, f);

const value = (name: string) => figures.get(name)?.value ?? null;

function amount(name: string): string {
  const f = figures.get(name);
  if (f === undefined || f.value === null) return "—";
  if (f.unit === "ns") return f.value >= 1000 ? `${(f.value / 1000).toFixed(f.value >= 10_000 ? 1 : 2)} µs` : `${Math.round(f.value)} ns`;
  if (f.unit === "MB/s") return `${Math.round(f.value).toLocaleString("en-US")} MB/s`;
  if (f.unit === "msg/s") return `${Math.round(f.value / 1000).toLocaleString("en-US")} k/s`;
  return `${f.value}`;
}

/** A ratio cell: the ratio in bold with ✓/✗ against the target, then "ours vs theirs". */
function ratioCell(ratio: string, ours: string, theirs: string, target: number | null, atMost: boolean): string {
  const r = value(ratio);
  if (r === null) return `— (${(figures.get(ratio)?.note ?? "not in this run").slice(0, 80)})`;
  const met = target === null ? "" : (atMost ? r <= target : r >= target) ? " ✓" : " ✗";
  return `**${r.toFixed(2)}×**${met} (${amount(ours)} vs ${amount(theirs)})`;
}

/** Our own C loop of each case, and the tool shipped with the transport (none for MPI). */
const ownLoop = (c: MessagingCase) => (c.transport === "libfabric" ? TAGGED_PAIR : c.transport === "ucx" ? UCX_PAIR : MPI_PING_PONG);
const ownWindowLoop = (c: MessagingCase) => (c.transport === "mpi" ? MPI_OSU_BW : ownLoop(c));
const tool = (c: MessagingCase) => (c.transport === "libfabric" ? FI_PINGPONG : c.transport === "ucx" ? TAG_LAT : null);
const windowTool = (c: MessagingCase) => (c.transport === "ucx" ? TAG_BW : null);

const lines: string[] = [];
lines.push(`| figure | target | ${CASES.map((c) => c.label).join(" | ")} |`);
lines.push(`|---|---|${CASES.map(() => "---").join("|")}|`);
const latencyRow = (form: Form, against: "loop" | "tool") => {
  const label = `${form === "sync" ? "`sendSync`/`recvSync`" : "`send`/`recv` awaited"}, 64 B half round trip, / ${against === "loop" ? "our C loop (p50 / p50)" : "`fi_pingpong` (mean / mean) or `ucx_perftest -t tag_lat` (p50 / p50)"}`;
  const target = form === "promise" ? `≤ ${PROMISE_TARGET}×` : "≤ 1.2× libfabric, MPI; ≤ 1.5× UCX shm";
  const cells = CASES.map((c) => {
    const anchor = against === "loop" ? ownLoop(c) : tool(c);
    if (anchor === null) return "(no such tool)";
    const caseTarget = form === "promise" ? PROMISE_TARGET : c.latencyTarget;
    const ours = anchor === FI_PINGPONG ? row.latencyMean(c, form) : row.latency(c, form);
    return ratioCell(row.latencyRatio(c, form, anchor), ours, row.anchorLatency(c, anchor), caseTarget, true);
  });
  lines.push(`| ${label} | ${target} | ${cells.join(" | ")} |`);
};
latencyRow("sync", "loop");
latencyRow("sync", "tool");
latencyRow("promise", "loop");
latencyRow("promise", "tool");
for (const bytes of BANDWIDTH_SIZES) {
  for (const against of ["loop", "tool"] as const) {
    if (against === "tool" && !CASES.some((c) => windowTool(c) !== null)) continue;
    const cells = CASES.map((c) => {
      const anchor = against === "loop" ? ownWindowLoop(c) : windowTool(c);
      if (anchor === null) return "";
      return ratioCell(row.bandwidthRatio(c, bytes, anchor), row.bandwidth(c, bytes), row.anchorBandwidth(c, anchor, bytes), BANDWIDTH_TARGET, false);
    });
    lines.push(`| bandwidth ${bytes >> 20} MiB, window 64, / ${against === "loop" ? "our C osu_bw loop" : "`ucx_perftest -t tag_bw -O 64`"} | ≥ ${BANDWIDTH_TARGET}× | ${cells.join(" | ")} |`);
  }
}
for (const against of ["loop", "tool"] as const) {
  const cells = CASES.map((c) => {
    const anchor = against === "loop" ? ownWindowLoop(c) : windowTool(c);
    if (anchor === null) return "";
    return ratioCell(row.rateRatio(c, anchor), row.rate(c), row.anchorRate(c, anchor), RATE_TARGET, false);
  });
  lines.push(`| message rate, 64 B, window 64, / ${against === "loop" ? "our C osu_bw loop" : "`ucx_perftest -t tag_bw -O 64`"} | ≥ ${RATE_TARGET}× | ${cells.join(" | ")} |`);
}
lines.push(`| heap cells per \`sendSync\`+\`recvSync\` pair | ≤ 1 (the \`Received\`) | ${CASES.map((c) => amount(row.cells(c))).join(" | ")} |`);
console.log(lines.join("\n"));
