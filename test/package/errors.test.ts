// Issue 13, item 6: errors a new user meets first say what was asked, what is available, and carry a code.
import { describe, expect, test } from "bun:test";
import {
  AllocToolsError, AllocToolsRangeError, AllocToolsTypeError, Endpoint, HostProvider, LibfabricProvider, LibraryLoadError,
  MemoryPool, openProvider, openProviderDescribed, type LibfabricProviderOptions,
} from "../../lib/index.ts";
import { checkKnownKeys } from "../../lib/options.ts";
import { describeFabric, runBun } from "../helpers.ts";

describe("argument errors carry a code", () => {
  test("getRegion(100n) is a TypeError that says to pass a number, and the pool is intact", () => {
    using pool = new MemoryPool(new HostProvider(), { small: { initialCount: 1 }, medium: { initialCount: 0 }, large: { initialCount: 0 }, huge: { initialCount: 0 } });
    const before = JSON.stringify(pool.stats());
    let caught: unknown;
    try {
      pool.getRegion(100n as unknown as number);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(TypeError);
    expect(caught).toBeInstanceOf(AllocToolsTypeError);
    expect((caught as AllocToolsTypeError).code).toBe("INVALID_ARGUMENT");
    expect((caught as Error).message).toContain("bigint 100n");
    expect((caught as Error).message).toContain("pass 100 instead");
    expect(JSON.stringify(pool.stats())).toBe(before);
    const region = pool.getRegion(100);
    expect(region.size).toBe(1024);
    pool.releaseRegion(region);
  });

  test("a size out of range is an AllocToolsRangeError with code OUT_OF_RANGE", () => {
    using pool = new MemoryPool(new HostProvider(), { small: { initialCount: 0 }, medium: { initialCount: 0 }, large: { initialCount: 0 }, huge: { initialCount: 0 } });
    for (const size of [0, -1, 1.5, Number.NaN]) {
      let caught: unknown;
      try {
        pool.getRegion(size);
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(RangeError);
      expect((caught as AllocToolsRangeError).code).toBe("OUT_OF_RANGE");
    }
  });

  test("the argument errors are constructible like TypeError and RangeError", () => {
    const type = new AllocToolsTypeError("bad");
    const range = new AllocToolsRangeError("far", { cause: 1 });
    expect([type.message, type.code, type instanceof TypeError]).toEqual(["bad", "INVALID_ARGUMENT", true]);
    expect([range.message, range.code, range.cause, range instanceof RangeError]).toEqual(["far", "OUT_OF_RANGE", 1, true]);
    expect(new LibraryLoadError("gone", ["libfabric.so.1"]).code).toBe("LIBRARY_LOAD");
  });

  test("LibraryLoadError from a bad ALLOCTOOLS_LIBFABRIC_PATH has code LIBRARY_LOAD", () => {
    const r = runBun(
      `import { LibfabricProvider } from "./lib/index.ts";
       try { LibfabricProvider.open({ provider: "tcp" }); } catch (e) { console.log(e.name, e.code); }`,
      { ALLOCTOOLS_LIBFABRIC_PATH: "/nonexistent/libfabric.so.1" });
    expect(r.stdout.trim()).toBe("LibraryLoadError LIBRARY_LOAD");
  });
});

describe("unknown option keys are refused", () => {
  test("MemoryPool: maxPinedBytes names the key, the near one and every known key; nothing is pinned", () => {
    const provider = new HostProvider();
    let caught: unknown;
    try {
      new MemoryPool(provider, { maxPinedBytes: 1 << 20 } as never);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(AllocToolsTypeError);
    expect((caught as AllocToolsTypeError).code).toBe("UNKNOWN_OPTION");
    const message = (caught as Error).message;
    expect(message).toContain(`unknown option "maxPinedBytes"`);
    expect(message).toContain(`did you mean "maxPinnedBytes"?`);
    expect(message).toContain("known options: small, medium, large, huge, maxPinnedBytes, access, hugePages, debug");
    expect(provider.registrations).toBe(0);
    provider.close();
  });

  test("MemoryPool: a stack option typo is refused with the stack named", () => {
    using provider = new HostProvider();
    expect(() => new MemoryPool(provider, { small: { chunksize: 2048 } } as never))
      .toThrow(`MemoryPool options.small: unknown option "chunksize" (did you mean "chunkSize"?); known options: chunkSize, initialCount, growCount, maxRegions`);
  });

  test("openProvider and LibfabricProvider.open refuse unknown keys before loading anything", () => {
    expect(() => openProvider({ provider: "host", nod: "127.0.0.1" } as never)).toThrow(`openProvider options: unknown option "nod" (did you mean "node"?)`);
    expect(() => LibfabricProvider.open({ provider: "tcp", servce: "0" } as LibfabricProviderOptions)).toThrow(`LibfabricProvider.open options: unknown option "servce" (did you mean "service"?)`);
  });

  test("checkKnownKeys (lib/options.ts) serves other options objects", () => {
    expect(() => checkKnownKeys({ a: 1, b: 2 }, { a: true }, "thing options")).toThrow(`thing options: unknown option "b"; known options: a`);
    expect(() => checkKnownKeys({ a: 1 }, { a: true }, "thing options")).not.toThrow();
  });
});

describe("Endpoint on the host provider", () => {
  test("is a typed NOT_SUPPORTED error, not an engine TypeError", () => {
    using provider = new HostProvider();
    let caught: unknown;
    try {
      new Endpoint(provider as never);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(AllocToolsError);
    expect((caught as AllocToolsError).code).toBe("NOT_SUPPORTED");
    expect((caught as Error).message).toContain("Endpoint needs a LibfabricProvider");
    expect((caught as Error).message).toContain("got host");
  });
});

describe("the fall-back warning", () => {
  test("says why once, without repeating itself", () => {
    const r = runBun(
      `import { openProvider } from "./lib/index.ts";
       const p = openProvider(); console.log(p.kind); p.close();`,
      { ALLOCTOOLS_LIBFABRIC_PATH: "/nonexistent/libfabric.so.1", ALLOCTOOLS_PROVIDER: "" });
    expect(r.stdout.trim()).toBe("host");
    expect(r.stderr).toContain("AllocToolsFallback: alloctools: using the host provider (libfabric is not available (ALLOCTOOLS_LIBFABRIC_PATH=/nonexistent/libfabric.so.1 could not be loaded)");
    expect(r.stderr).not.toContain("libfabric not available: libfabric is not available");
  });

  test("openProviderDescribed gives the same reason", () => {
    const r = runBun(
      `import { openProviderDescribed } from "./lib/index.ts";
       const o = openProviderDescribed(); console.log(o.description); o.provider.close();`,
      { ALLOCTOOLS_LIBFABRIC_PATH: "/nonexistent/libfabric.so.1", ALLOCTOOLS_PROVIDER: "" });
    expect(r.stdout).toStartWith("host provider (libfabric is not available (");
    expect(openProviderDescribed({ provider: "host" }).description).toBe("host provider (asked for)");
  });
});

describeFabric("a provider that is not here", () => {
  test("names the provider asked for and lists the available ones", () => {
    let caught: unknown;
    try {
      openProvider({ provider: "verbs" });
    } catch (e) {
      caught = e;
    }
    const message = (caught as Error).message;
    expect(message).toStartWith("fi_getinfo failed: No data available (ENODATA, 61)");
    expect(message).toContain(`no libfabric provider "verbs" for an rdm endpoint with RMA here; available: `);
    const available = message.slice(message.indexOf("available: ") + "available: ".length).split(", ");
    expect(available).toContain("shm");
    expect(available.some((name) => name.startsWith("tcp"))).toBe(true);
    // Each listed name opens.
    using shm = LibfabricProvider.open({ provider: "shm" });
    expect(shm.name).toBe("shm");
  });
});
