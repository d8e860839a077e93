// A shared pool attaches to its provider handle through a registry (issue 22): each transport
// registers an attach function under its handle's kind, so the sharing code imports no transport
// and a new transport edits nothing there. A kind nobody registered is a typed error that names
// the kinds there are.
import { expect, test } from "bun:test";
import { Glob } from "bun";
import { readFileSync } from "node:fs";
import { AllocToolsError, HostProvider, MemoryPool, type HostProviderHandle, type ProviderHandle, type SharedPoolHandle } from "../../lib/index.ts";
import { attachProvider, registerProviderAttach } from "../../lib/memory/provider-attach.ts";

const LIB = `${import.meta.dir}/../../lib`;
const TRANSPORTS = ["host", "libfabric", "ucx", "mpi"];

test("nothing in lib/sharing, lib/pool, lib/cache or lib/memory imports a transport", () => {
  const offenders: string[] = [];
  for (const layer of ["sharing", "pool", "cache", "memory"]) {
    for (const file of new Glob(`${layer}/**/*.ts`).scanSync(LIB)) {
      const text = readFileSync(`${LIB}/${file}`, "utf8");
      for (const [, from] of text.matchAll(/\bfrom\s+"([^"]+)"/g)) {
        if (TRANSPORTS.some((t) => from!.startsWith(`../${t}/`) || from!.startsWith(`../../lib/${t}/`))) offenders.push(`${file} imports ${from}`);
      }
    }
  }
  expect(offenders).toEqual([]);
});

/** A transport of the test's own: a host provider whose handle has another kind, registered here. */
class TestTransport extends HostProvider {
  override share(): HostProviderHandle {
    return { ...super.share(), kind: "test.TestTransport" } as unknown as HostProviderHandle;
  }
}
registerProviderAttach("test.TestTransport", (handle) => HostProvider.attach({ ...handle, kind: "alloctools.HostProvider" } as HostProviderHandle));

test("a transport the sharing code has never heard of shares a pool once it registers its attach", () => {
  const provider = new TestTransport();
  try {
    const pool = new MemoryPool(provider, { small: { initialCount: 2 } });
    const handle = pool.share();
    expect(handle.provider.kind).toBe("test.TestTransport");
    const attached = MemoryPool.attach(structuredClone(handle) as SharedPoolHandle);
    const region = attached.getRegion(100);
    expect(pool.region(attached.indexOf(region)).address).toBe(region.address);
    attached.releaseRegion(region);
    expect(attached.close().count).toBe(0);
    expect(pool.close().count).toBe(0);
  } finally {
    provider.close();
  }
});

test("a provider handle of a kind nobody registered: NOT_SUPPORTED naming the registered kinds; a non-handle: TypeError", () => {
  let error: unknown;
  try {
    attachProvider({ kind: "test.Unknown", pid: process.pid, name: "x" } as ProviderHandle);
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(AllocToolsError);
  expect((error as AllocToolsError).code).toBe("NOT_SUPPORTED");
  for (const kind of ["alloctools.HostProvider", "alloctools.LibfabricProvider", "alloctools.UcxProvider", "test.TestTransport"]) {
    expect((error as Error).message).toContain(kind);
  }
  for (const bad of [null, 7, {}, { kind: 7 }]) expect(() => attachProvider(bad as unknown as ProviderHandle)).toThrow(TypeError);
});

test("registering a kind twice with another function is refused; the same function again is fine", () => {
  const attach = (handle: ProviderHandle) => HostProvider.attach(handle as HostProviderHandle);
  registerProviderAttach("test.Twice", attach);
  registerProviderAttach("test.Twice", attach);
  expect(() => registerProviderAttach("test.Twice", (handle) => attach(handle))).toThrow(TypeError);
  expect(() => registerProviderAttach("", attach)).toThrow(TypeError);
});
