// Compiles an offsetof probe from ffi/ucx.ts's layout table (and its constants) against the
// installed UCX headers (ucp.h, and uct.h for the remote-key trial) and compares: a UCX whose ABI drifted fails here, not in production.
import { expect, test } from "bun:test";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ucxLayout } from "../../ffi/ucx.ts";
import { REQUIRE_UCX } from "../helpers.ts";

const cc = Bun.which("cc") ?? Bun.which("gcc");
const headers = existsSync("/usr/include/ucp/api/ucp.h");
const reason = !cc ? "no C compiler (cc)" : !headers ? "no UCX headers (apt-get install libucx-dev)" : "";
if (reason && !REQUIRE_UCX) console.warn(`[alloctools] skipping the UCX offsetof probe: ${reason}`);

/** C expressions whose values ffi/ucx.ts copies as numbers. */
const CONSTANTS: Record<string, [string, number]> = {
  API_MAJOR: ["UCP_API_MAJOR", 1], API_MINOR: ["UCP_API_MINOR", 13],
  PARAM_FIELD_FEATURES: ["UCP_PARAM_FIELD_FEATURES", 1], FEATURE_RMA: ["UCP_FEATURE_RMA", 2],
  FEATURE_TAG: ["UCP_FEATURE_TAG", 1], FEATURE_AMO64: ["UCP_FEATURE_AMO64", 8],
  PARAM_FIELD_MT_WORKERS_SHARED: ["UCP_PARAM_FIELD_MT_WORKERS_SHARED", 0x20],
  WORKER_PARAM_FIELD_THREAD_MODE: ["UCP_WORKER_PARAM_FIELD_THREAD_MODE", 1], THREAD_MODE_SINGLE: ["UCS_THREAD_MODE_SINGLE", 0],
  MEM_MAP_PARAM_FIELD_ADDRESS: ["UCP_MEM_MAP_PARAM_FIELD_ADDRESS", 1], MEM_MAP_PARAM_FIELD_LENGTH: ["UCP_MEM_MAP_PARAM_FIELD_LENGTH", 2],
  MEM_MAP_PARAM_FIELD_FLAGS: ["UCP_MEM_MAP_PARAM_FIELD_FLAGS", 4], MEM_MAP_PARAM_FIELD_PROT: ["UCP_MEM_MAP_PARAM_FIELD_PROT", 8],
  MEM_MAP_ALLOCATE: ["UCP_MEM_MAP_ALLOCATE", 2],
  MEM_MAP_PROT_LOCAL_READ: ["UCP_MEM_MAP_PROT_LOCAL_READ", 1], MEM_MAP_PROT_LOCAL_WRITE: ["UCP_MEM_MAP_PROT_LOCAL_WRITE", 2],
  MEM_MAP_PROT_REMOTE_READ: ["UCP_MEM_MAP_PROT_REMOTE_READ", 0x100], MEM_MAP_PROT_REMOTE_WRITE: ["UCP_MEM_MAP_PROT_REMOTE_WRITE", 0x200],
  MEM_ATTR_FIELD_ADDRESS: ["UCP_MEM_ATTR_FIELD_ADDRESS", 1], MEM_ATTR_FIELD_LENGTH: ["UCP_MEM_ATTR_FIELD_LENGTH", 2],
  EP_PARAM_FIELD_REMOTE_ADDRESS: ["UCP_EP_PARAM_FIELD_REMOTE_ADDRESS", 1],
  EP_PARAM_FIELD_ERR_HANDLING_MODE: ["UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE", 2], ERR_HANDLING_MODE_NONE: ["UCP_ERR_HANDLING_MODE_NONE", 0],
  EP_CLOSE_FLAG_FORCE: ["UCP_EP_CLOSE_FLAG_FORCE", 1], OP_ATTR_FIELD_FLAGS: ["UCP_OP_ATTR_FIELD_FLAGS", 0x10],
  OP_ATTR_FIELD_MEMH: ["UCP_OP_ATTR_FIELD_MEMH", 0x100], OK: ["UCS_OK", 0], INPROGRESS: ["UCS_INPROGRESS", 1],
  OP_ATTR_FIELD_DATATYPE: ["UCP_OP_ATTR_FIELD_DATATYPE", 8], OP_ATTR_FIELD_REPLY_BUFFER: ["UCP_OP_ATTR_FIELD_REPLY_BUFFER", 0x20],
  OP_ATTR_FIELD_MEMORY_TYPE: ["UCP_OP_ATTR_FIELD_MEMORY_TYPE", 0x40], OP_ATTR_FIELD_RECV_INFO: ["UCP_OP_ATTR_FIELD_RECV_INFO", 0x80],
  OP_ATTR_FLAG_NO_IMM_CMPL: ["UCP_OP_ATTR_FLAG_NO_IMM_CMPL", 0x10000], DATATYPE_CONTIG_8: ["ucp_dt_make_contig(8)", 64],
  ATOMIC_OP_ADD: ["UCP_ATOMIC_OP_ADD", 0], ATOMIC_OP_CSWAP: ["UCP_ATOMIC_OP_CSWAP", 2],
  ERR_INVALID_PARAM: ["UCS_ERR_INVALID_PARAM", -5], ERR_INVALID_ADDR: ["UCS_ERR_INVALID_ADDR", -7],
  ERR_NOT_IMPLEMENTED: ["UCS_ERR_NOT_IMPLEMENTED", -8], ERR_MESSAGE_TRUNCATED: ["UCS_ERR_MESSAGE_TRUNCATED", -9],
  ERR_CANCELED: ["UCS_ERR_CANCELED", -16], ERR_UNSUPPORTED: ["UCS_ERR_UNSUPPORTED", -22],
  TAG_RECV_INFO_SIZE: ["sizeof(ucp_tag_recv_info_t)", 16], TAG_SIZE: ["sizeof(ucp_tag_t)", 8],
  COMPONENT_ATTR_FIELD_NAME: ["UCT_COMPONENT_ATTR_FIELD_NAME", 1], COMPONENT_NAME_MAX: ["UCT_COMPONENT_NAME_MAX", 16],
  MEMORY_TYPE_HOST: ["UCS_MEMORY_TYPE_HOST", 0], ERR_NO_DEVICE: ["UCS_ERR_NO_DEVICE", -14], ERR_LAST: ["UCS_ERR_LAST", -100],
  STATUS_SIZE: ["(long)sizeof(ucs_status_t)", 1],
};

test.skipIf(reason !== "" && !REQUIRE_UCX)("struct offsets and constants in ffi/ucx.ts match the installed UCX headers", async () => {
  if (reason) throw new Error(`the UCX offsetof probe is required (ALLOCTOOLS_REQUIRE_UCX=1) but cannot run: ${reason}`);
  const { UCX } = await import("../../ffi/ucx.ts");
  const lines: string[] = [];
  const expected: string[] = [];
  for (const [name, s] of Object.entries(ucxLayout)) {
    for (const [field, offset] of Object.entries(s.fields)) {
      lines.push(`  printf("${name}.${field} %zu\\n", offsetof(${s.cName}, ${field}));`);
      expected.push(`${name}.${field} ${offset}`);
    }
    lines.push(`  printf("${name}.sizeof %zu\\n", sizeof(${s.cName}));`);
    expected.push(`${name}.sizeof ${s.size}`);
  }
  for (const [name, [expression, value]] of Object.entries(CONSTANTS)) {
    lines.push(`  printf("${name} %ld\\n", (long)(${expression}));`);
    expected.push(`${name} ${value}`);
    if (name in UCX) expect({ name, value: UCX[name as keyof typeof UCX] as number }).toEqual({ name, value });
  }
  const src = `#include <stddef.h>\n#include <stdio.h>\n#include <ucp/api/ucp.h>\n#include <uct/api/uct.h>\nint main(void) {\n${lines.join("\n")}\n  return 0;\n}\n`;
  const dir = mkdtempSync(join(tmpdir(), "alloctools-ucx-layout-"));
  writeFileSync(join(dir, "probe.c"), src);
  const build = Bun.spawnSync([cc!, "-o", join(dir, "probe"), join(dir, "probe.c")], { stderr: "pipe" });
  expect(build.stderr.toString()).toBe("");
  expect(build.exitCode).toBe(0);
  const run = Bun.spawnSync([join(dir, "probe")], { stdout: "pipe" });
  expect(run.stdout.toString().trim().split("\n")).toEqual(expected);
});
