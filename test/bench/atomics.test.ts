// Issue 26's bench rows: `bun run bench --quick --suite atomics --json` gives, for every transport
// and every library form, its ratio to the C loop on the same target: a finite figure, or a row
// that says why it was not measured. No timing is asserted.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FORMS } from "../../bench/atomics/forms.ts";
import { ratioRow, TRANSPORTS } from "../../bench/suites/atomics.ts";

const work = mkdtempSync(join(tmpdir(), "alloctools-bench-atomics-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface Figure { suite: string; name: string; value: number | null; unit: string; note?: string }

test("bun run bench --quick --suite atomics --json: every transport's rows, each a finite ratio to C with both p50s, or a reason", () => {
  const json = join(work, "atomics.json");
  const r = Bun.spawnSync([process.execPath, "run", "bench", "--quick", "--suite", "atomics", "--json", json],
    { cwd: join(import.meta.dir, "..", ".."), stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`bench exited ${r.exitCode}:\n${r.stdout.toString()}\n${r.stderr.toString()}`);
  const report = JSON.parse(readFileSync(json, "utf8")) as { figures: Figure[]; errors: unknown[] };
  expect(report.errors).toEqual([]);
  const figures = new Map(report.figures.filter((f) => f.suite === "atomics").map((f) => [f.name, f]));
  const problems: string[] = [];
  for (const transport of TRANSPORTS) {
    for (const form of FORMS) {
      const name = ratioRow(transport, form);
      const row = figures.get(name);
      if (row === undefined) { problems.push(`${name}: missing`); continue; }
      // JSON writes NaN as null: a row without a figure must say why.
      if (row.value === null || !Number.isFinite(row.value)) {
        if (!/not measured|not supported|missing/.test(row.note ?? "")) problems.push(`${name}: no figure and no reason (${row.note})`);
        continue;
      }
      if (!(row.value > 0)) problems.push(`${name}: ratio ${row.value}`);
      // A measured ratio stands on both p50s, recorded beside it.
      for (const part of [`${transport}: ${form} p50`, `${transport}: C ${form === "compareSwapSync" ? "compareSwap" : "fetchAdd"} p50`]) {
        const p50 = figures.get(part);
        if (p50 === undefined || p50.value === null || !(p50.value > 0)) problems.push(`${part}: missing beside its ratio`);
      }
      if (form === "fetchAddSync" && !/target ≤ 1\.3×: (met|NOT met)/.test(row.note ?? "")) problems.push(`${name}: no verdict against the 1.3× target`);
    }
  }
  expect(problems).toEqual([]);
}, 180_000);
