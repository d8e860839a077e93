import { expect, test } from "bun:test";
import { Libfabric, libfabric, nativeView, readPtr } from "../../ffi/libfabric.ts";
import { FabricError, LibraryLoadError } from "../../ffi/errors.ts";
import { FI, FI_MIN_LIBRARY_VERSION, L } from "../../ffi/layout.ts";
import * as libc from "../../ffi/libc.ts";
import { describeFabric, runBun } from "../helpers.ts";

test("a missing library gives LibraryLoadError saying what was tried and how to install", () => {
  let err: unknown;
  try {
    Libfabric.load("/nonexistent/libfabric.so.1");
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(LibraryLoadError);
  const e = err as LibraryLoadError;
  expect(e.tried).toEqual(["/nonexistent/libfabric.so.1"]);
  expect(e.message).toContain("ALLOCTOOLS_LIBFABRIC_PATH=/nonexistent/libfabric.so.1");
  expect(e.message).toContain("apt-get install libfabric1");
  expect(e.cause).toBeDefined();
});

test("ALLOCTOOLS_LIBFABRIC_PATH overrides the library path", () => {
  const r = runBun(
    `import { libfabricStatus } from "./ffi/libfabric.ts"; console.log(JSON.stringify(libfabricStatus()));`,
    { ALLOCTOOLS_LIBFABRIC_PATH: "/nonexistent/libfabric.so.1" },
  );
  expect(r.exitCode).toBe(0);
  const status = JSON.parse(r.stdout);
  expect(status.available).toBe(false);
  expect(status.reason).toContain("/nonexistent/libfabric.so.1");
});

describeFabric("ffi/libfabric", () => {
  test("fi_version is within the versions our layouts were made for", () => {
    const fi = libfabric();
    expect(fi.version).toBeGreaterThanOrEqual(FI_MIN_LIBRARY_VERSION);
    expect(fi.versionString).toMatch(/^\d+\.\d+$/);
  });

  test("fi_strerror text and FabricError shape", () => {
    const fi = libfabric();
    expect(fi.strerror(FI.ENOKEY)).toBe("Required key not available");
    let err: unknown;
    try {
      fi.check("fi_mr_reg", -FI.ENOKEY, "detail");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FabricError);
    const e = err as FabricError;
    expect(e.function).toBe("fi_mr_reg");
    expect(e.errno).toBe(266);
    expect(e.code).toBe("FI_ENOKEY");
    expect(e.description).toBe("Required key not available");
    expect(new FabricError("fi_x", FI.ENOSYS, "").notSupported).toBe(true);
  });

  test("fi_getinfo with impossible hints is a FabricError (-FI_ENODATA)", () => {
    const fi = libfabric();
    const hints = fi.allocInfo();
    try {
      nativeView(readPtr(hints, L.fi_info.fabric_attr), 24).setBigUint64(L.fi_fabric_attr.prov_name, BigInt(libc.strdup("no-such-provider")), true);
      let err: unknown;
      try { fi.getInfo(hints, null, null, 0n); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(FabricError);
      expect((err as FabricError).function).toBe("fi_getinfo");
      expect((err as FabricError).errno).toBe(FI.ENODATA);
    } finally {
      fi.freeInfo(hints);
    }
  });

  test("fi_close of a NULL handle is an AllocToolsTypeError, not a segmentation fault at 0x10", () => {
    // In a child: before, reading the ops table of fid 0 killed the process.
    const r = runBun(`
import { libfabric } from "./ffi/libfabric.ts";
const fi = libfabric();
const names = [];
for (const close of [() => fi.close(0, "endpoint"), () => fi.closeMr(0)]) {
  try { close(); names.push("returned"); } catch (error) { names.push(error.name + " " + error.code + " " + error.message); }
}
console.log(JSON.stringify(names));`);
    expect(r.stderr).not.toContain("Segmentation fault");
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([
      "TypeError INVALID_ARGUMENT fi_close of a NULL endpoint: there is no libfabric object to close (a handle that was never recorded)",
      "TypeError INVALID_ARGUMENT fi_close of a NULL mr: there is no libfabric object to close (a handle that was never recorded)",
    ]);
  });

  test("fi_tostr describes an fi_info", () => {
    const fi = libfabric();
    const hints = fi.allocInfo();
    try {
      expect(fi.infoToString(hints)).toContain("fi_info");
    } finally {
      fi.freeInfo(hints);
    }
  });
});
