// Compiles an offsetof probe from ffi/layout.ts against the installed libfabric headers and
// compares: a libfabric whose layout drifted fails here, not in production.
import { expect, test } from "bun:test";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ENUM_VALUES, layout } from "../../ffi/layout.ts";
import { REQUIRE_LIBFABRIC } from "../helpers.ts";
import { temporaryDirectory } from "../temporary-directory.ts";

const HEADERS = ["rdma/fabric.h", "rdma/fi_domain.h", "rdma/fi_endpoint.h", "rdma/fi_rma.h", "rdma/fi_tagged.h", "rdma/fi_atomic.h", "rdma/fi_cm.h", "rdma/fi_eq.h", "rdma/fi_errno.h"];
const cc = Bun.which("cc") ?? Bun.which("gcc");
const headers = existsSync("/usr/include/rdma/fabric.h");
const reason = !cc ? "no C compiler (cc)" : !headers ? "no libfabric headers (apt-get install libfabric-dev)" : "";

if (reason && !REQUIRE_LIBFABRIC) console.warn(`[alloctools] skipping the offsetof probe: ${reason}`);

test.skipIf(reason !== "" && !REQUIRE_LIBFABRIC)("struct offsets and enum values in ffi/layout.ts match the installed headers", () => {
  if (reason) throw new Error(`the offsetof probe is required (ALLOCTOOLS_REQUIRE_LIBFABRIC=1) but cannot run: ${reason}`);
  const lines: string[] = [];
  const expected: string[] = [];
  for (const [name, s] of Object.entries(layout)) {
    for (const [field, offset] of Object.entries(s.fields)) {
      lines.push(`  printf("${name}.${field} %zu\\n", offsetof(${s.cName}, ${field}));`);
      expected.push(`${name}.${field} ${offset}`);
    }
    if (s.size !== undefined) {
      lines.push(`  printf("${name}.sizeof %zu\\n", sizeof(${s.cName}));`);
      expected.push(`${name}.sizeof ${s.size}`);
    }
  }
  for (const [name, value] of Object.entries(ENUM_VALUES)) {
    lines.push(`  printf("${name} %d\\n", (int)${name});`);
    expected.push(`${name} ${value}`);
  }
  const src = `#include <stddef.h>\n#include <stdio.h>\n${HEADERS.map((h) => `#include <${h}>`).join("\n")}\nint main(void) {\n${lines.join("\n")}\n  return 0;\n}\n`;
  const dir = temporaryDirectory("layout");
  writeFileSync(join(dir, "probe.c"), src);
  const build = Bun.spawnSync([cc!, "-o", join(dir, "probe"), join(dir, "probe.c")], { stderr: "pipe" });
  expect(build.stderr.toString()).toBe("");
  expect(build.exitCode).toBe(0);
  const run = Bun.spawnSync([join(dir, "probe")], { stdout: "pipe" });
  expect(run.stdout.toString().trim().split("\n")).toEqual(expected);
});
