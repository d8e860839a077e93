// `bun run bench [--quick] [--json <path>] [--filter <regex>]`
// Discovers bench/suites/*.ts, lets each register mitata benches, runs them, then prints the
// p50/p99 table, the ratio tables the suites declared and their own figures, and writes JSON
// (to --json <path> or $ALLOCTOOLS_BENCH_JSON). Which suite and benchmark it is on, and how far,
// goes to stderr (bench/progress.ts): one updating line on a terminal, plain lines otherwise.
import { B, measure, run } from "mitata";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { dirname, resolve } from "node:path";
import { libfabricStatus } from "../lib/index.ts";
import type { BenchContext, BenchStats, Cleanup, Comparison, Figure, ProviderUse, Suite } from "./context.ts";
import { Progress } from "./progress.ts";

const USAGE = `usage: bun run bench [--quick] [--json <path>] [--filter <regex>] [--suite <regex>]
  --quick          CI smoke run: every benchmark, ~30 ms each (seconds in all)
  --json <path>    write all figures as JSON (also: ALLOCTOOLS_BENCH_JSON=<path>)
  --filter <re>    run only the mitata benchmarks whose name matches
  --suite <re>     set up only the suites (bench/suites/<name>.ts) whose file name matches
progress (suite, benchmark n/total, seconds so far) goes to stderr: one updating line on a
terminal, plain lines otherwise; stdout and the JSON carry only the results`;

interface Options {
  quick: boolean;
  json: string | undefined;
  filter: RegExp | undefined;
  suite: RegExp | undefined;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { quick: false, json: process.env.ALLOCTOOLS_BENCH_JSON || undefined, filter: undefined, suite: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) fail(`${a} needs a value`);
      return v;
    };
    if (a === "--quick") o.quick = true;
    else if (a === "--json") o.json = value();
    else if (a?.startsWith("--json=")) o.json = a.slice(7);
    else if (a === "--filter") o.filter = new RegExp(value());
    else if (a === "--suite") o.suite = new RegExp(value());
    else if (a === "--help" || a === "-h") { console.log(USAGE); process.exit(0); }
    else fail(`unknown argument ${a}`);
  }
  return o;
}

function fail(message: string): never {
  console.error(`bench: ${message}\n${USAGE}`);
  process.exit(2);
}

// ---- machine --------------------------------------------------------------------------------------

interface Machine {
  cpu: string;
  cpuDetail: string;
  cores: number;
  arch: string;
  kernel: string;
  virtualized: boolean;
  memoryGiB: number;
  description: string;
}

function machine(): Machine {
  const cpus = os.cpus();
  let info = "";
  try { info = readFileSync("/proc/cpuinfo", "utf8"); } catch { /* not Linux */ }
  const field = (k: string) => new RegExp(`^${k}\\s*:\\s*(.*)$`, "m").exec(info)?.[1]?.trim();
  const cpu = field("model name") ?? cpus[0]?.model ?? "unknown CPU";
  const mhz = Number(field("cpu MHz") ?? cpus[0]?.speed ?? 0);
  const family = field("cpu family");
  const model = field("model");
  const virtualized = /\bhypervisor\b/.test(field("flags") ?? "");
  const detail = [family && model ? `family ${family} model ${model}` : "", mhz ? `${(mhz / 1000).toFixed(2)} GHz` : ""]
    .filter(Boolean).join(", ");
  const m: Omit<Machine, "description"> = {
    cpu, cpuDetail: detail, cores: cpus.length, arch: `${process.arch}-${process.platform}`, kernel: os.release(),
    virtualized, memoryGiB: Math.round(os.totalmem() / 2 ** 30),
  };
  const description = `${cpu}${detail ? ` (${detail})` : ""}, ${m.cores} ${virtualized ? "vCPUs (VM)" : "cores"}, ` +
    `${m.memoryGiB} GiB, Linux ${m.kernel}, Bun ${Bun.version}`;
  return { ...m, description };
}

// ---- quick mode -----------------------------------------------------------------------------------

interface BenchLike {
  f: Parameters<typeof measure>[0];
  _name: string;
  _args: Record<string, unknown[]>;
  _group: number;
  _gc: boolean | "once" | "inner";
  flags: number;
  _highlight: string | false;
}

/**
 * mitata 1.0 gives every benchmark at least 642 ms of CPU time and offers no option to change
 * that from run(); quick mode replaces B#run with the same logic, passing a small min_cpu_time.
 */
function shortenBenchmarks(minCpuTimeNs: number): void {
  const proto = B.prototype as unknown as { run(this: BenchLike, thrw?: boolean): Promise<unknown> };
  proto.run = async function (this: BenchLike, thrw = false) {
    const names = Object.keys(this._args);
    const combos: Record<string, unknown>[] = [{}];
    for (const n of names) {
      const next: Record<string, unknown>[] = [];
      for (const c of combos) for (const v of this._args[n] ?? []) next.push({ ...c, [n]: v });
      combos.splice(0, combos.length, ...next);
    }
    const runs = [];
    for (const args of combos) {
      let name = this._name;
      for (const [k, v] of Object.entries(args)) name = name.replaceAll(`$${k}`, String(v));
      let stats, error;
      try {
        stats = await measure(this.f as never, {
          min_cpu_time: minCpuTimeNs, min_samples: 4, gc: this._gc === false ? false : undefined,
          ...(names.length > 0 ? { args } : {}),
        } as never);
      } catch (e) { error = e; if (thrw) throw e; }
      runs.push({ stats, error, args, name });
    }
    return {
      runs, kind: names.length === 0 ? "static" : names.length === 1 ? "args" : "multi-args",
      args: this._args, alias: this._name, group: this._group, baseline: (this.flags & 2) !== 0,
      style: { highlight: this._highlight, compact: (this.flags & 1) !== 0 },
    };
  };
}

// ---- which suite registered which bench -----------------------------------------------------------

let currentSuite = "?";
const suiteOfBench = new Map<string, string>();
/** Every bench registered, to count those the filter lets through. */
const registeredBenches = new Set<BenchLike>();
{
  // B's constructor names the bench through B#name: tag each bench with the suite being set up.
  const proto = B.prototype as unknown as { name(this: BenchLike, n: string, c?: unknown): unknown };
  const original = proto.name;
  proto.name = function (this: BenchLike, n: string, c?: unknown) {
    if (!suiteOfBench.has(n)) suiteOfBench.set(n, currentSuite);
    registeredBenches.add(this);
    return original.call(this, n, c);
  };
}

/** Says which benchmark B#run (mitata's, or quick mode's) measures, and how far the run is. */
function reportEachBenchmark(progress: Progress, filter: RegExp): void {
  const total = [...registeredBenches].filter((bench) => filter.test(bench._name)).length;
  let measured = 0;
  const proto = B.prototype as unknown as { run(this: BenchLike, thrw?: boolean): Promise<unknown> };
  const measureOne = proto.run;
  proto.run = async function (this: BenchLike, thrw?: boolean) {
    progress.benchmark(suiteOfBench.get(this._name) ?? "?", this._name, ++measured, total);
    try {
      return await measureOne.call(this, thrw);
    } finally {
      progress.clear();
    }
  };
}

// ---- formatting -----------------------------------------------------------------------------------

function formatNs(ns: number): string {
  if (!Number.isFinite(ns)) return "-";
  if (ns < 1) return `${ns.toFixed(2)} ns`;
  if (ns < 100) return `${ns.toFixed(1)} ns`;
  if (ns < 1e3) return `${ns.toFixed(0)} ns`;
  if (ns < 1e6) return `${(ns / 1e3).toFixed(ns < 1e4 ? 2 : 1)} µs`;
  if (ns < 1e9) return `${(ns / 1e6).toFixed(2)} ms`;
  return `${(ns / 1e9).toFixed(2)} s`;
}

function formatRatio(r: number): string {
  if (!Number.isFinite(r)) return "-";
  if (r >= 100) return `${Math.round(r).toLocaleString("en-US")}×`;
  if (r >= 10) return `${r.toFixed(1)}×`;
  if (r >= 0.1) return `${r.toFixed(2)}×`;
  return `${r.toPrecision(2)}×`;
}

function table(header: string[], rows: string[][], align: ("l" | "r")[] = []): string {
  const width = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => (align[i] === "r" ? c.padStart(width[i]!) : c.padEnd(width[i]!))).join("  ").trimEnd();
  return [line(header), width.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

function formatFigure(f: Figure): string {
  if (f.unit === "ns") return formatNs(f.value);
  const v = Math.abs(f.value) >= 100 || Number.isInteger(f.value) ? Math.round(f.value).toLocaleString("en-US") : f.value.toPrecision(3);
  return `${v} ${f.unit}`;
}

// ---- main -----------------------------------------------------------------------------------------

const options = parseArgs(process.argv.slice(2));
const started = Date.now();
const progress = new Progress(Boolean(process.stdout.isTTY));
const host = machine();
const fabric = libfabricStatus();
const figures: Figure[] = [];
const comparisons: Comparison[] = [];
const providers: ProviderUse[] = [];
const results = new Map<string, BenchStats>();
let runDone = false;

const ctx: BenchContext = {
  quick: options.quick,
  fabric: fabric.available,
  record(f) {
    if (typeof f?.value !== "number" || typeof f.name !== "string") throw new TypeError("record takes { suite, name, value, unit, note? }");
    figures.push({ ...f });
  },
  compare(c) { comparisons.push({ ...c }); },
  provider(p) { providers.push({ ...p }); },
  result(name) { return runDone ? results.get(name) : undefined; },
};

console.log(`alloctools benchmark (${options.quick ? "quick mode: a smoke run, figures are rough" : "full run"})`);
console.log(`machine: ${host.description}`);
if (fabric.available) {
  console.log(`libfabric: ${fabric.version} (${fabric.path})`);
} else {
  console.log(`libfabric: ${fabric.reason}`);
  console.log("=> running on the built-in host provider only (mlock'd memory, 64-bit keys); libfabric rows are skipped");
  if (process.env.ALLOCTOOLS_REQUIRE_LIBFABRIC === "1") {
    console.error("bench: ALLOCTOOLS_REQUIRE_LIBFABRIC=1 but libfabric is not available");
    process.exit(1);
  }
}

const suitesDir = resolve(import.meta.dir, "suites");
const files = [...new Bun.Glob("*.ts").scanSync({ cwd: suitesDir })].filter((f) => options.suite?.test(f) ?? true).sort();
const cleanups: { suite: string; fn: Cleanup }[] = [];
const suiteErrors: string[] = [];
const suiteNames: string[] = [];
for (const [index, file] of files.entries()) {
  currentSuite = file;
  progress.setup(file.replace(/\.ts$/, ""), index + 1, files.length);
  try {
    const mod = (await import(resolve(suitesDir, file))) as { default?: Suite };
    const suite = mod.default;
    if (!suite || typeof suite.name !== "string" || typeof suite.setup !== "function") {
      throw new TypeError(`${file} must default-export { name: string, setup(ctx) }`);
    }
    currentSuite = suite.name;
    suiteNames.push(suite.name);
    const t0 = performance.now();
    const cleanup = await suite.setup(ctx);
    progress.clear();
    if (typeof cleanup === "function") cleanups.push({ suite: suite.name, fn: cleanup });
    console.log(`suite ${suite.name} (${file}): set up in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  } catch (e) {
    progress.clear();
    suiteErrors.push(`${file}: setup failed: ${(e as Error)?.stack ?? e}`);
    console.error(`bench: suite ${file} failed to set up, skipping it:\n${(e as Error)?.stack ?? e}`);
  }
}
currentSuite = "?";
if (suiteNames.length === 0) console.log("no suites found in bench/suites/");
for (const p of providers) console.log(`provider [${p.suite}] ${p.label}: ${p.description}`);
console.log("");

if (options.quick) shortenBenchmarks(30e6);
const filter = options.filter ?? /.*/;
reportEachBenchmark(progress, filter);
// Colours only on a terminal (CI logs and redirected output stay plain), as NO_COLOR/FORCE_COLOR say.
const colors = process.env.FORCE_COLOR ? true : process.env.NO_COLOR ? false : Boolean(process.stdout.isTTY);
const report = await run({ filter, colors, print: (text: string) => progress.print(text) });
const benchRows: {
  suite: string; name: string; p50: number; p99: number; avg: number; min: number; max: number;
  p75: number; p999: number; ticks: number; rssBytesPerIter?: number; error?: string;
}[] = [];
for (const trial of report.benchmarks) {
  for (const r of trial.runs) {
    const suite = suiteOfBench.get(trial.alias) ?? "?";
    if (r.stats) {
      const s = r.stats;
      results.set(r.name, { p50: s.p50, p99: s.p99, avg: s.avg, min: s.min, max: s.max, ticks: s.ticks });
      // mitata's heap figure is the change in resident memory per iteration (coarse); see the JIT figures for cells.
      benchRows.push({
        suite, name: r.name, p50: s.p50, p99: s.p99, avg: s.avg, min: s.min, max: s.max, p75: s.p75, p999: s.p999, ticks: s.ticks,
        ...(s.heap ? { rssBytesPerIter: s.heap.avg } : {}),
      });
    } else {
      const message = r.error instanceof Error ? r.error.message : String((r.error as { message?: string })?.message ?? r.error);
      benchRows.push({ suite, name: r.name, p50: NaN, p99: NaN, avg: NaN, min: NaN, max: NaN, p75: NaN, p999: NaN, ticks: 0, error: message });
    }
  }
}
runDone = true;

// Cleanups run after the run: they may read results and record figures (JIT checks, targets).
for (const [index, { suite, fn }] of cleanups.reverse().entries()) {
  progress.cleanup(suite, index + 1, cleanups.length);
  try { await fn(); } catch (e) {
    suiteErrors.push(`${suite}: cleanup failed: ${(e as Error)?.stack ?? e}`);
    console.error(`bench: cleanup of ${suite} failed:\n${(e as Error)?.stack ?? e}`);
  }
  progress.clear();
}

// ---- summary --------------------------------------------------------------------------------------

console.log("\n== p50 and p99 per benchmark (time per iteration)\n");
console.log(table(["suite", "benchmark", "p50", "p99", "avg", "iterations"],
  benchRows.map((b) => [b.suite, b.name, b.error ? `error: ${b.error}` : formatNs(b.p50), formatNs(b.p99), formatNs(b.avg), b.ticks.toLocaleString("en-US")]),
  ["l", "l", "r", "r", "r", "r"]));

const comparisonRows = comparisons.map((c) => {
  const base = results.get(c.baseline);
  const cand = results.get(c.candidate);
  return { ...c, baselineP50: base?.p50 ?? null, candidateP50: cand?.p50 ?? null, ratio: base && cand ? base.p50 / cand.p50 : null };
});
for (const name of [...new Set(comparisons.map((c) => c.table))]) {
  const cells = comparisonRows.filter((c) => c.table === name);
  const rows = [...new Set(cells.map((c) => c.row))];
  const cols = [...new Set(cells.map((c) => c.column))];
  console.log(`\n== ${name} (ratio of p50s; > 1 means the second is faster)\n`);
  console.log(table(["", ...cols], rows.map((r) => [r, ...cols.map((col) => {
    const c = cells.find((x) => x.row === r && x.column === col);
    if (!c) return "";
    if (c.ratio === null) return "n/a";
    return `${formatRatio(c.ratio)} (${formatNs(c.baselineP50!)} / ${formatNs(c.candidateP50!)})`;
  })]), ["l", ...cols.map(() => "r" as const)]));
}

if (figures.length > 0) {
  console.log("\n== figures measured outside mitata\n");
  console.log(table(["suite", "figure", "value", "note"], figures.map((f) => [f.suite, f.name, formatFigure(f), f.note ?? ""]), ["l", "l", "r", "l"]));
}

const errors = [...suiteErrors, ...benchRows.filter((b) => b.error).map((b) => `${b.name}: ${b.error}`)];
const seconds = (Date.now() - started) / 1000;
console.log(`\n${benchRows.length} benchmarks, ${figures.length} figures, ${errors.length} errors, in ${seconds.toFixed(1)} s` +
  (fabric.available ? "" : " (built-in host provider only: libfabric not available)"));

if (options.json) {
  const path = resolve(options.json);
  const doc = {
    schema: "alloctools-bench/1",
    date: new Date(started).toISOString(),
    mode: options.quick ? "quick" : "full",
    command: `bun run bench${process.argv.slice(2).length ? ` ${process.argv.slice(2).join(" ")}` : ""}`,
    durationSeconds: seconds,
    machine: host,
    git: gitState(),
    runtime: { bun: Bun.version, bunRevision: Bun.revision, mitata: mitataVersion(), mitataClock: report.context.cpu },
    libfabric: fabric,
    providers,
    suites: suiteNames,
    benchmarks: benchRows,
    comparisons: comparisonRows,
    figures,
    errors,
  };
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(doc, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 2)}\n`);
  console.log(`JSON written to ${path}`);
}

/** The commit measured, and whether the library's sources differ from it. */
function gitState(): { commit: string | null; libraryDirty: boolean | null } {
  const git = (args: string[]) => {
    try {
      const r = Bun.spawnSync(["git", ...args], { cwd: resolve(import.meta.dir, ".."), stdout: "pipe", stderr: "ignore" });
      return r.exitCode === 0 ? r.stdout.toString().trim() : null;
    } catch { return null; }
  };
  const commit = git(["rev-parse", "HEAD"]);
  const status = git(["status", "--porcelain", "--", "lib", "ffi"]);
  return { commit, libraryDirty: status === null ? null : status.length > 0 };
}

function mitataVersion(): string {
  try {
    return (JSON.parse(readFileSync(resolve(import.meta.dir, "../node_modules/mitata/package.json"), "utf8")) as { version: string }).version;
  } catch { return "unknown"; }
}

process.exit(errors.length > 0 ? 1 : 0);
