// Issue 13, item 8: every export and public member has a TSDoc comment. Runs `bun run docs:check`
// (TypeDoc's validation, nothing written) and fails listing each undocumented declaration as
// file:line. Files still being written by other work in flight are in PENDING: their gaps are
// printed, not failed; empty PENDING to hold every file to it.
import { expect, test } from "bun:test";
import { join } from "node:path";

const PENDING: readonly string[] = [];

test("every export and public member is documented (bun run docs:check)", () => {
  const root = join(import.meta.dir, "..", "..");
  const result = Bun.spawnSync([process.execPath, "scripts/docs.ts", "--check"], { cwd: root, stdout: "pipe", stderr: "pipe" });
  const output = result.stdout.toString() + result.stderr.toString();
  const gaps = [...output.matchAll(/^ {4}(\S+?):(\d+) {2}(.+)$/gm)].map(([, file = "", line, what]) => ({ file, line: Number(line), what }));
  const other = output.slice(output.indexOf("other TypeDoc warnings:")).split("\n").filter((l) => l.startsWith("  ") && output.includes("other TypeDoc warnings:"));
  const pending = gaps.filter((g) => PENDING.includes(g.file));
  if (pending.length > 0) console.warn(`[alloctools] ${pending.length} undocumented in files with work in flight (${[...new Set(pending.map((g) => g.file))].join(", ")})`);
  const failing = gaps.filter((g) => !PENDING.includes(g.file)).map((g) => `${g.file}:${g.line}  ${g.what}`);
  expect([...failing, ...other]).toEqual([]);
  if (gaps.length === 0 && other.length === 0) expect(result.exitCode).toBe(0);
}, 60_000);
