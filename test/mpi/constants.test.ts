// Compiles a probe with mpicc against the installed mpi.h and compares with ffi/mpi.ts: the
// constants, the error classes and the globals behind the predefined handles. An Open MPI whose
// values drifted fails here, not in production. Then an MPICH-like library (a stand-in built with
// cc: MPI symbols, no ompi_mpi_comm_world) is refused with NOT_SUPPORTED.
import { expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { HANDLE_SYMBOLS, MPI, MPI_ERROR_CLASS_NAMES, MPI_STATUS, MPI_THREAD } from "../../ffi/mpi.ts";
import { REQUIRE_MPI, runBun } from "../helpers.ts";
import { temporaryDirectory } from "../temporary-directory.ts";

const mpicc = Bun.which("mpicc");
const cc = Bun.which("cc") ?? Bun.which("gcc");
const reason = mpicc === null ? "no mpicc (apt-get install libopenmpi-dev)" : "";
if (reason && !REQUIRE_MPI) console.warn(`[alloctools] skipping the mpi.h probe: ${reason}`);

test.skipIf(reason !== "" && !REQUIRE_MPI)("constants, MPI_Status offsets, error classes and handle globals in ffi/mpi.ts match the installed mpi.h", () => {
  if (reason) throw new Error(`the mpi.h probe is required (ALLOCTOOLS_REQUIRE_MPI=1) but cannot run: ${reason}`);
  const lines: string[] = [];
  const expected: string[] = [];
  const constant = (cName: string, value: number) => {
    lines.push(`  printf("${cName} %ld\\n", (long)(${cName}));`);
    expected.push(`${cName} ${value}`);
  };
  for (const [name, value] of Object.entries(MPI_THREAD)) constant(`MPI_THREAD_${name}`, value);
  constant("MPI_SUCCESS", MPI.SUCCESS);
  constant("MPI_MODE_NOCHECK", MPI.MODE_NOCHECK);
  constant("MPI_LOCK_SHARED", MPI.LOCK_SHARED);
  constant("MPI_ANY_SOURCE", MPI.ANY_SOURCE);
  constant("MPI_ANY_TAG", MPI.ANY_TAG);
  constant("MPI_MAX_ERROR_STRING", MPI.MAX_ERROR_STRING);
  constant("MPI_MAX_LIBRARY_VERSION_STRING", MPI.MAX_LIBRARY_VERSION_STRING);
  constant("sizeof(MPI_Aint)", MPI.AINT_SIZE);
  constant("(MPI_Status *)MPI_STATUS_IGNORE == NULL", 1);
  constant("MPI_TAG_UB", MPI.TAG_UB);
  constant("MPI_UNDEFINED", MPI.UNDEFINED);
  constant("sizeof(MPI_Request)", MPI.HANDLE_SIZE);
  constant("sizeof(MPI_Message)", MPI.HANDLE_SIZE);
  constant("sizeof(MPI_Status)", MPI_STATUS.size);
  constant("offsetof(MPI_Status, MPI_SOURCE)", MPI_STATUS.MPI_SOURCE);
  constant("offsetof(MPI_Status, MPI_TAG)", MPI_STATUS.MPI_TAG);
  constant("offsetof(MPI_Status, MPI_ERROR)", MPI_STATUS.MPI_ERROR);
  for (const [value, name] of Object.entries(MPI_ERROR_CLASS_NAMES)) constant(name, Number(value));
  for (const [name, symbol] of Object.entries(HANDLE_SYMBOLS)) {
    lines.push(`  printf("MPI_${name} %d\\n", (void *)MPI_${name} == (void *)&${symbol});`);
    expected.push(`MPI_${name} 1`);
  }
  const src = `#include <stdio.h>\n#include <stddef.h>\n#include <mpi.h>\nint main(void) {\n${lines.join("\n")}\n  return 0;\n}\n`;
  const dir = temporaryDirectory("mpi-constants");
  writeFileSync(join(dir, "probe.c"), src);
  const build = Bun.spawnSync([mpicc!, "-o", join(dir, "probe"), join(dir, "probe.c")], { stderr: "pipe" });
  expect(build.stderr.toString()).toBe("");
  expect(build.exitCode).toBe(0);
  // Not MPI_Init'ed: the probe only prints compile-time values and addresses.
  const run = Bun.spawnSync([join(dir, "probe")], { stdout: "pipe" });
  expect(run.stdout.toString().trim().split("\n")).toEqual(expected);
});

test.skipIf(cc === null && !REQUIRE_MPI)("an MPICH-like library (handles as integers, no ompi_ globals) is refused with NOT_SUPPORTED", () => {
  if (cc === null) throw new Error("a C compiler is required for the MPICH stand-in");
  const dir = temporaryDirectory("mpich");
  // The two functions ffi/mpi.ts calls before it decides; MPICH's MPI_Comm is an int (0x44000000).
  writeFileSync(join(dir, "fake.c"), `#include <string.h>
int MPI_Init_thread(int *argc, char ***argv, int required, int *provided) { (void)argc; (void)argv; *provided = required; return 0; }
int MPI_Get_library_version(char *version, int *length) { strcpy(version, "MPICH Version: 4.0.2"); *length = (int)strlen(version); return 0; }
`);
  const library = join(dir, "libfakempich.so");
  const build = Bun.spawnSync([cc, "-shared", "-fPIC", "-o", library, join(dir, "fake.c")], { stderr: "pipe" });
  expect(build.exitCode, build.stderr.toString()).toBe(0);
  const r = runBun(`
    const { MpiProvider, AllocToolsError } = await import("./lib/index.ts");
    try { MpiProvider.open(); console.log("opened"); } catch (e) { console.log(JSON.stringify({ type: e.constructor.name, code: e.code, message: e.message })); }
  `, { ALLOCTOOLS_MPI_PATH: library });
  expect(r.exitCode, r.stderr).toBe(0);
  const out = JSON.parse(r.stdout.trim());
  expect(out.type).toBe("AllocToolsError");
  expect(out.code).toBe("NOT_SUPPORTED");
  expect(out.message).toContain("is not Open MPI (MPICH Version: 4.0.2)");
  expect(out.message).toContain("ALLOCTOOLS_MPI_PATH");
});
