// `bun bench/chart.ts [--markdown] [in.json] [out.svg]` (defaults docs/bench.json, docs/bench.svg)
// Draws the JSON of `bun run bench --json` as an SVG bar chart: p50 ns per operation, pool
// against raw registration for every ratio-table cell, on a log scale, plus the baselines for
// scale, with the machine it was measured on in the heading. --markdown also prints the README's
// results tables from the same JSON.
import { readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { POOL_RATIO_TABLE } from "./context.ts";

interface BenchRow { suite: string; name: string; p50: number | null; p99: number | null }
interface ComparisonRow {
  table: string; row: string; column: string; baseline: string; candidate: string;
  baselineP50: number | null; candidateP50: number | null; ratio: number | null;
}
interface Report {
  date: string;
  mode: string;
  command: string;
  machine: { description: string };
  runtime: { bun: string; mitata: string };
  git?: { commit: string | null; libraryDirty: boolean | null };
  benchmarks: BenchRow[];
  comparisons: ComparisonRow[];
}

const root = resolve(import.meta.dir, "..");
const args = process.argv.slice(2);
const markdown = args.includes("--markdown");
const paths = args.filter((a) => a !== "--markdown");
const input = resolve(paths[0] ?? `${root}/docs/bench.json`);
const output = resolve(paths[1] ?? `${root}/docs/bench.svg`);
const report = JSON.parse(readFileSync(input, "utf8")) as Report;
// Only the pool suite's pool-vs-raw table: other suites' comparisons have other meanings.
report.comparisons = report.comparisons.filter((c) => c.table === POOL_RATIO_TABLE);

const COLORS = { pool: "#2b6cb0", raw: "#dd6b20", scale: "#718096", grid: "#e2e8f0", text: "#1a202c", muted: "#4a5568" };
const WIDTH = 1060;
const LABEL_W = 320; // row labels on the left
const PLOT_W = 560; // the log axis
const BAR_H = 9;
const ROW_H = 26;

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function formatNs(ns: number): string {
  if (ns < 100) return `${ns.toFixed(1)} ns`;
  if (ns < 1e3) return `${ns.toFixed(0)} ns`;
  if (ns < 1e6) return `${(ns / 1e3).toFixed(ns < 1e4 ? 2 : 1)} µs`;
  return `${(ns / 1e6).toFixed(2)} ms`;
}

function formatRatio(r: number): string {
  if (r >= 100) return `${Math.round(r).toLocaleString("en-US")}× faster`;
  if (r >= 1.05) return `${r.toFixed(1)}× faster`;
  if (r > 0.95) return "about the same";
  return r > 0.1 ? `${(1 / r).toFixed(2)}× slower` : `${Math.round(1 / r).toLocaleString("en-US")}× slower`;
}

// Log scale over whole decades that cover every value drawn.
const values = [
  ...report.comparisons.flatMap((c) => [c.baselineP50, c.candidateP50]),
  ...report.benchmarks.map((b) => b.p50),
].filter((v): v is number => typeof v === "number" && v > 0);
const lo = Math.floor(Math.log10(Math.min(...values, 1)));
const hi = Math.ceil(Math.log10(Math.max(...values, 10)));
const x = (ns: number) => LABEL_W + ((Math.log10(Math.max(ns, 10 ** lo)) - lo) / (hi - lo)) * PLOT_W;

const parts: string[] = [];
let y = 0;
const text = (tx: number, ty: number, s: string, attrs = "") => parts.push(`<text x="${tx.toFixed(1)}" y="${ty.toFixed(1)}" ${attrs}>${esc(s)}</text>`);
const bar = (ty: number, ns: number, color: string, label: string) => {
  const w = Math.max(1, x(ns) - LABEL_W);
  parts.push(`<rect x="${LABEL_W}" y="${ty.toFixed(1)}" width="${w.toFixed(1)}" height="${BAR_H}" fill="${color}"><title>${esc(`${label}: ${formatNs(ns)}`)}</title></rect>`);
  text(LABEL_W + w + 4, ty + BAR_H - 1, formatNs(ns), `class="v"`);
};

// Heading: what, where, when.
y += 24;
text(16, y, "alloctools: pool getRegion+releaseRegion vs raw registration, p50 per operation (log scale)", `class="h1"`);
y += 18;
text(16, y, `Measured on ${report.machine.description}`, `class="sub"`);
y += 15;
const commit = report.git?.commit ? ` at commit ${report.git.commit.slice(0, 7)}${report.git.libraryDirty ? " (library modified)" : ""}` : "";
text(16, y, `${report.date.slice(0, 16).replace("T", " ")} UTC, ${report.mode} run of \`${report.command}\`${commit}, mitata ${report.runtime.mitata}; bars are medians (p50)`, `class="sub"`);
y += 16;
parts.push(`<rect x="16" y="${y}" width="10" height="10" fill="${COLORS.pool}"/>`);
text(30, y + 9, "pool get+release (registered memory, no system call)", `class="sub"`);
parts.push(`<rect x="360" y="${y}" width="10" height="10" fill="${COLORS.raw}"/>`);
text(374, y + 9, "raw registration of the same size through the same provider", `class="sub"`);
parts.push(`<rect x="720" y="${y}" width="10" height="10" fill="${COLORS.scale}"/>`);
text(734, y + 9, "baselines, for scale", `class="sub"`);
y += 22;

const plotTop = y;
const drawAxis = (top: number, bottom: number) => {
  for (let d = lo; d <= hi; d++) {
    const gx = x(10 ** d);
    parts.push(`<line x1="${gx.toFixed(1)}" y1="${top}" x2="${gx.toFixed(1)}" y2="${bottom}" stroke="${COLORS.grid}"/>`);
    text(gx, bottom + 14, formatNs(10 ** d).replace(".0 ", " ").replace(".00 ", " "), `class="axis" text-anchor="middle"`);
  }
};

// One block per provider column of each ratio table.
const tables = [...new Set(report.comparisons.map((c) => c.table))];
const gridLater: (() => void)[] = [];
for (const table of tables) {
  const cells = report.comparisons.filter((c) => c.table === table);
  for (const column of [...new Set(cells.map((c) => c.column))]) {
    y += 6;
    text(16, y + 12, column, `class="h2"`);
    y += 20;
    for (const c of cells.filter((k) => k.column === column)) {
      if (c.baselineP50 === null || c.candidateP50 === null) continue;
      text(LABEL_W - 8, y + BAR_H + 4, c.row, `class="row" text-anchor="end"`);
      bar(y, c.candidateP50, COLORS.pool, c.candidate);
      bar(y + BAR_H + 1, c.baselineP50, COLORS.raw, c.baseline);
      if (c.ratio !== null) text(WIDTH - 16, y + BAR_H + 4, formatRatio(c.ratio), `class="ratio" text-anchor="end"`);
      y += ROW_H;
    }
  }
}

// Baselines and the other hot operations, for scale.
const scale = report.benchmarks.filter((b) => b.p50 !== null && (b.suite === "baselines" || /^(allocator|pointer)/.test(b.name)));
if (scale.length > 0) {
  y += 6;
  text(16, y + 12, "for scale: baselines, allocator and fancy pointer", `class="h2"`);
  y += 20;
  for (const b of scale) {
    text(LABEL_W - 8, y + BAR_H, b.name, `class="row" text-anchor="end"`);
    bar(y + 1, b.p50!, COLORS.scale, b.name);
    y += ROW_H - 8;
  }
}
const plotBottom = y + 4;
gridLater.push(() => drawAxis(plotTop, plotBottom));
const grid: string[] = [];
{
  const saved = parts.splice(0, parts.length);
  for (const f of gridLater) f();
  grid.push(...parts.splice(0, parts.length));
  parts.push(...saved);
}
y = plotBottom + 34;
text(16, y, "Temporary regions (above the huge class, 1 MiB) are mapped, pinned and registered on every get: the pool gives them no advantage, by design.", `class="sub"`);
y += 14;

const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${y}" viewBox="0 0 ${WIDTH} ${y}" font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif">
<style>
text { fill: ${COLORS.text}; font-size: 11px; }
.h1 { font-size: 15px; font-weight: 600; }
.h2 { font-size: 12px; font-weight: 600; }
.sub { fill: ${COLORS.muted}; font-size: 11px; }
.axis, .v { fill: ${COLORS.muted}; font-size: 10px; }
.ratio { font-weight: 600; }
</style>
<rect width="100%" height="100%" fill="#ffffff"/>
${grid.join("\n")}
${parts.join("\n")}
</svg>
`;
writeFileSync(output, svg);
// With --markdown stdout carries the tables only.
(markdown ? console.error : console.log)(`chart written to ${output} (${report.comparisons.length} comparisons, ${scale.length} scale bars)`);

if (markdown) console.log(`\n${markdownTables(report)}`);

/** The README's tables: every ratio cell, then the other hot operations and baselines. */
function markdownTables(r: Report): string {
  const out: string[] = [];
  out.push("| provider (raw = what a registration costs there) | size | pool get+release p50 | raw p50 | raw / pool |");
  out.push("|---|---|--:|--:|--:|");
  const columns = [...new Set(r.comparisons.map((c) => c.column))];
  const byColumn = [...r.comparisons].sort((a, b) => columns.indexOf(a.column) - columns.indexOf(b.column));
  for (const c of byColumn) {
    if (c.baselineP50 === null || c.candidateP50 === null || c.ratio === null) continue;
    const ratio = c.ratio >= 100 ? `**${Math.round(c.ratio).toLocaleString("en-US")}×**` : c.ratio >= 1 ? `**${c.ratio.toFixed(1)}×**` : `${c.ratio.toPrecision(2)}×`;
    out.push(`| ${c.column} | ${c.row} | ${formatNs(c.candidateP50)} | ${formatNs(c.baselineP50)} | ${ratio} |`);
  }
  const others = r.benchmarks.filter((b) => b.p50 !== null && (b.suite === "baselines" || /^(allocator|pointer)/.test(b.name)));
  out.push("", "| operation | p50 | p99 |", "|---|--:|--:|");
  for (const b of others) out.push(`| ${b.name.replace(/\|/g, "\\|").replace(/`/g, "\\`")} | ${formatNs(b.p50!)} | ${b.p99 === null ? "-" : formatNs(b.p99)} |`);
  return out.join("\n");
}
