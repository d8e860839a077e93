// Compiles an offsetof probe from ffi/pmix.ts's layout table and constants against the installed
// libpmix-dev headers and compares: a PMIx whose ABI drifted fails here, not in a job.
import { expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PMIX, PMIX_ATTRIBUTES, pmixLayout, pmixStatusName } from "../../ffi/pmix.ts";
import { pmixCompileFlags, REQUIRE_PMIX } from "./gates.ts";
import { temporaryDirectory } from "../temporary-directory.ts";

const includeFlags = pmixCompileFlags()?.include ?? null;

const cc = Bun.which("cc") ?? Bun.which("gcc");
const reason = !cc ? "no C compiler (cc)" : includeFlags === null ? "no PMIx headers (apt-get install libpmix-dev pkg-config)" : "";
if (reason && !REQUIRE_PMIX) console.warn(`[alloctools] skipping the PMIx offsetof probe: ${reason}`);

/** Statuses whose names ffi/pmix.ts spells: each must be that macro's value. */
const STATUSES = [-1, -18, -24, -25, -27, -46, -47, -52, -61, -157];

test.skipIf(reason !== "" && !REQUIRE_PMIX)("struct offsets, constants and attribute keys in ffi/pmix.ts match the installed PMIx headers", () => {
  if (reason) throw new Error(`the PMIx offsetof probe is required (ALLOCTOOLS_REQUIRE_PMIX=1) but cannot run: ${reason}`);
  const lines: string[] = [];
  const expected: string[] = [];
  for (const [name, s] of Object.entries(pmixLayout)) {
    for (const [field, offset] of Object.entries(s.fields)) {
      lines.push(`  printf("${name}.${field} %zu\\n", offsetof(${s.cName}, ${field}));`);
      expected.push(`${name}.${field} ${offset}`);
    }
    lines.push(`  printf("${name}.sizeof %zu\\n", sizeof(${s.cName}));`);
    expected.push(`${name}.sizeof ${s.size}`);
  }
  for (const [name, value] of Object.entries(PMIX)) {
    lines.push(`  printf("${name} %ld\\n", (long)(PMIX_${name}));`);
    expected.push(`${name} ${value}`);
  }
  for (const [name, value] of Object.entries(PMIX_ATTRIBUTES)) {
    lines.push(`  printf("${name} %s\\n", PMIX_${name});`);
    expected.push(`${name} ${value}`);
  }
  for (const status of STATUSES) {
    lines.push(`  printf("${pmixStatusName(status)} %d\\n", ${pmixStatusName(status)});`);
    expected.push(`${pmixStatusName(status)} ${status}`);
  }
  lines.push(`  printf("pmix_scope_t %zu\\n", sizeof(pmix_scope_t));`, `  printf("pmix_status_t %zu\\n", sizeof(pmix_status_t));`);
  expected.push("pmix_scope_t 1", "pmix_status_t 4");
  const src = `#include <stddef.h>\n#include <stdio.h>\n#include <pmix.h>\nint main(void) {\n${lines.join("\n")}\n  return 0;\n}\n`;
  const dir = temporaryDirectory("pmix-layout");
  writeFileSync(join(dir, "probe.c"), src);
  const build = Bun.spawnSync([cc!, ...includeFlags!, "-o", join(dir, "probe"), join(dir, "probe.c")], { stderr: "pipe" });
  expect(build.stderr.toString()).toBe("");
  expect(build.exitCode).toBe(0);
  const run = Bun.spawnSync([join(dir, "probe")], { stdout: "pipe" });
  rmSync(dir, { recursive: true, force: true });
  expect(run.stdout.toString().trim().split("\n")).toEqual(expected);
});
