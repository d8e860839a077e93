// Issue 23's messaging suite runs in CI's quick mode and records every row it declares
// (bench/messaging/rows.ts): a finite value, or no value and a note saying why ("not measured: ...",
// "failed: ..."). No timing is asserted: quick-mode figures are rough.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { allRows, CASES } from "../../bench/messaging/rows.ts";

const work = mkdtempSync(join(tmpdir(), "alloctools-bench-messaging-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface FigureJson { suite: string; name: string; value: number | null; unit: string; note?: string }

test("bun run bench --quick --suite messaging --json: every declared row is present, with a value or a reason", () => {
  const json = join(work, "messaging.json");
  const r = Bun.spawnSync([process.execPath, "run", "bench", "--quick", "--suite", "messaging", "--json", json],
    { cwd: join(import.meta.dir, "..", ".."), stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`bench exited ${r.exitCode}:\n${r.stdout.toString()}\n${r.stderr.toString()}`);
  const report = JSON.parse(readFileSync(json, "utf8")) as { figures: FigureJson[]; errors: unknown[] };
  const figures = report.figures.filter((f) => f.suite === "messaging");
  const declared = allRows();
  // Five cases: libfabric tcp and shm, MPI, UCX shm and tcp.
  expect(new Set(declared.map((d) => d.name.split(":")[0])).size).toBe(CASES.length);
  // Each row once, in the unit declared.
  expect(figures.map((f) => f.name).sort()).toEqual(declared.map((d) => d.name).sort());
  const byName = new Map(figures.map((f) => [f.name, f]));
  const bad: string[] = [];
  for (const { name, unit } of declared) {
    const figure = byName.get(name)!;
    if (figure.unit !== unit) bad.push(`${name}: unit ${figure.unit}, declared ${unit}`);
    const measured = typeof figure.value === "number" && Number.isFinite(figure.value);
    const explained = figure.value === null && /^(not measured|not built|failed)\b.{10,}/.test(figure.note ?? "");
    if (!measured && !explained) bad.push(`${name}: value ${figure.value}, note ${JSON.stringify(figure.note)}`);
  }
  expect(bad).toEqual([]);
  expect(report.errors).toEqual([]);
}, 170_000);
