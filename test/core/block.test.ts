import { describe, expect, test } from "bun:test";
import { MemoryBlockAllocator, AllocToolsError } from "../../lib/index.ts";
import { vmLckKiB, runBun } from "../helpers.ts";

describe("MemoryBlockAllocator", () => {
  const allocator = new MemoryBlockAllocator();

  test("blocks are page-aligned, page-rounded, mlock'd (VmLck grows by the size) and zero-copy", () => {
    const before = vmLckKiB();
    const block = allocator.allocate(100_000);
    try {
      expect(block.address % allocator.pageSize).toBe(0);
      expect(block.size).toBe(Math.ceil(100_000 / allocator.pageSize) * allocator.pageSize);
      expect(vmLckKiB() - before).toBe(block.size / 1024);
      expect(block.view.length).toBe(block.size);
      block.view[123] = 0xab;
      const { read } = require("bun:ffi");
      expect(read.u8(block.address, 123)).toBe(0xab); // the view is the memory, not a copy
    } finally {
      block.free();
    }
    expect(vmLckKiB()).toBe(before);
  });

  test("free() is idempotent and detaches the view", () => {
    const block = allocator.allocate(4096);
    const sub = new Uint8Array(block.view.buffer, 0, 16);
    block.free();
    block.free();
    expect(block.freed).toBe(true);
    expect(block.view.length).toBe(0);
    expect(sub.length).toBe(0);
    expect(sub[0]).toBeUndefined(); // no access to unmapped memory
  });

  test("huge pages: true fails clearly where none are reserved; 'try' falls back", () => {
    const reserved = Number(require("node:fs").readFileSync("/proc/sys/vm/nr_hugepages", "utf8"));
    if (reserved === 0) {
      expect(() => allocator.allocate(1 << 21, { hugePages: true })).toThrow(AllocToolsError);
      try { allocator.allocate(1 << 21, { hugePages: true }); } catch (e) {
        expect((e as AllocToolsError).code).toBe("HUGE_PAGES");
        expect((e as Error).message).toContain("nr_hugepages");
      }
    }
    const block = allocator.allocate(4096, { hugePages: "try" });
    expect(block.size).toBeGreaterThanOrEqual(4096);
    block.free();
  });

  test("bad sizes are refused", () => {
    for (const bad of [0, -1, NaN, 1.5, Infinity]) expect(() => allocator.allocate(bad)).toThrow(RangeError);
    expect(() => allocator.allocate("10" as unknown as number)).toThrow(TypeError);
  });

  test("MADV_DONTFORK: a child started with Bun.spawn works; the parent's block is intact", () => {
    const block = allocator.allocate(8192);
    block.view.fill(7);
    const r = runBun(`console.log("child ok")`);
    expect(r.stdout.trim()).toBe("child ok");
    expect(block.view.every((b) => b === 7)).toBe(true);
    block.free();
  });
});

describe("mlock beyond RLIMIT_MEMLOCK", () => {
  const prlimit = Bun.which("prlimit");
  const setpriv = Bun.which("setpriv");
  test.skipIf(!prlimit || !setpriv)("the error names RLIMIT_MEMLOCK and its value; nothing stays mapped", () => {
    const code = `
      import { MemoryBlockAllocator } from "./lib/index.ts";
      const a = new MemoryBlockAllocator();
      const maps = () => require("fs").readFileSync("/proc/self/maps", "utf8").split("\\n").length;
      const before = maps();
      try { a.allocate(1 << 20); console.log("no error"); }
      catch (e) { console.log(JSON.stringify({ name: e.name, fn: e.function, code: e.code, message: e.message, leaked: maps() - before })); }
    `;
    const r = Bun.spawnSync([prlimit!, "--memlock=65536:65536", setpriv!, "--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock",
      process.execPath, "-e", code], { cwd: `${import.meta.dir}/../..`, stdout: "pipe", stderr: "pipe" });
    const out = JSON.parse(r.stdout.toString().trim());
    expect(out.name).toBe("SystemError");
    expect(out.fn).toBe("mlock");
    expect(["ENOMEM", "EPERM", "EAGAIN"]).toContain(out.code);
    expect(out.message).toContain("RLIMIT_MEMLOCK is 65536 bytes");
    expect(out.leaked).toBeLessThanOrEqual(0);
  });
});
