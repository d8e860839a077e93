import { describe, expect, test } from "bun:test";
import * as libc from "../../ffi/libc.ts";
import { SystemError } from "../../ffi/errors.ts";
import { vmLckKiB } from "../helpers.ts";

describe("ffi/libc", () => {
  test("page size is a power of two", () => {
    expect(libc.pageSize).toBeGreaterThanOrEqual(4096);
    expect(libc.pageSize & (libc.pageSize - 1)).toBe(0);
  });

  test("mmap gives page-aligned memory; mlock shows in VmLck; munlock/munmap undo it", () => {
    const before = vmLckKiB();
    const len = 64 * 1024;
    const at = libc.mmap(len);
    expect(at % libc.pageSize).toBe(0);
    libc.mlock(at, len);
    expect(vmLckKiB() - before).toBe(len / 1024);
    libc.madvise(at, len, libc.MADV_DONTFORK);
    libc.munlock(at, len);
    expect(vmLckKiB()).toBe(before);
    libc.munmap(at, len);
  });

  test("a failing call becomes SystemError with function, errno and strerror text", () => {
    // madvise on an unaligned address is EINVAL.
    const at = libc.mmap(libc.pageSize);
    try {
      libc.madvise(at + 1, 10, libc.MADV_DONTFORK);
      throw new Error("madvise should have failed");
    } catch (e) {
      expect(e).toBeInstanceOf(SystemError);
      const err = e as SystemError;
      expect(err.function).toBe("madvise");
      expect(err.errno).toBe(22);
      expect(err.code).toBe("EINVAL");
      expect(err.description).toBe("Invalid argument");
      expect(err.message).toContain("madvise failed: Invalid argument (EINVAL, errno 22)");
    } finally {
      libc.munmap(at, libc.pageSize);
    }
  });

  test("RLIMIT_MEMLOCK is readable", () => {
    const { soft, hard } = libc.memlockLimit();
    expect(typeof soft).toBe("bigint");
    expect(hard >= soft).toBe(true);
  });

  test("strdup/free round-trip a C string", () => {
    const p = libc.strdup("tcp");
    const { CString } = require("bun:ffi");
    expect(new CString(p).toString()).toBe("tcp");
    libc.free(p);
  });
});
