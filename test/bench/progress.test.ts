// Issue 25, item 7: the benchmark runner says which suite and benchmark it is on, and how far, on
// stderr: plain lines when stdout is not a terminal (no escape codes anywhere), and nothing of it
// in the report on stdout or in the --json file. Kept short: one suite, the 64-byte cases.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const work = mkdtempSync(join(tmpdir(), "alloctools-bench-progress-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

test("bun run bench --quick --suite pool with stdout piped: plain progress lines on stderr, no escape codes, nothing extra in the JSON", () => {
  const json = join(work, "bench.json");
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => name !== "FORCE_COLOR"));
  const r = Bun.spawnSync([process.execPath, "run", "bench", "--quick", "--suite", "pool", "--filter", "64 B", "--json", json],
    { cwd: join(import.meta.dir, "..", ".."), env, stdout: "pipe", stderr: "pipe" });
  const stdout = r.stdout.toString();
  const stderr = r.stderr.toString();
  if (r.exitCode !== 0) throw new Error(`bench exited ${r.exitCode}:\n${stdout}\n${stderr}`);
  expect(stdout).not.toContain("\x1b");
  expect(stderr).not.toContain("\x1b");
  expect(stderr).not.toContain("\r");
  expect(stderr).toMatch(/^bench: setting up suite 1\/1: pool \(\d+ s\)$/m);
  const steps = [...stderr.matchAll(/^bench: benchmark (\d+)\/(\d+) \[pool\] (.+ 64 B) \(\d+ s\)$/gm)];
  const report = JSON.parse(readFileSync(json, "utf8")) as Record<string, unknown> & { benchmarks: { name: string }[] };
  expect(steps.map((step) => Number(step[1]))).toEqual(report.benchmarks.map((_, i) => i + 1));
  expect(steps.every((step) => Number(step[2]) === report.benchmarks.length)).toBe(true);
  expect(steps.map((step) => step[3])).toEqual(report.benchmarks.map((bench) => bench.name));
  expect(stderr).toMatch(/^bench: cleaning up suite 1\/1: pool \(\d+ s\)$/m);
  // The report and the JSON are what they were without progress.
  expect(stdout).not.toContain("bench: ");
  expect(stdout).toContain("== p50 and p99 per benchmark");
  expect(Object.keys(report)).toEqual(["schema", "date", "mode", "command", "durationSeconds", "machine", "git", "runtime", "libfabric",
    "providers", "suites", "benchmarks", "comparisons", "figures", "errors"]);
  expect(JSON.stringify(report)).not.toContain("bench: ");
}, 60_000);
