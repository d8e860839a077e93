// Issue 25, small things a new user met: `${region}` printed [object Object]; ALLOCTOOLS_PROVIDER
// with a typo gave FabricError ENODATA (the README promises a TypeError); a plain object where a
// RemoteRegion belongs (what structuredClone or postMessage leave) got an error that did not say
// how to make it a RemoteRegion again.
import { expect, test } from "bun:test";
import { Endpoint, HostProvider, LibfabricProvider, MemoryPool, RemoteRegion } from "../../lib/index.ts";
import { describeFabric } from "../helpers.ts";

test("`${region}` is the region's one line, not [object Object]", () => {
  const provider = new HostProvider();
  const pool = new MemoryPool(provider);
  const region = pool.getRegion(64);
  expect(`${region}`).toMatch(/^MemoryRegion \{ address: 0x[0-9a-f]+, size: \d+/);
  expect(`${region.remote()}`).toMatch(/^rr\./);
  pool.releaseRegion(region);
  provider.close();
});

describeFabric("small things over libfabric", () => {
  test("ALLOCTOOLS_PROVIDER naming no provider here is a TypeError listing what there is", () => {
    const run = Bun.spawnSync([process.execPath, "-e", `
      import { openProvider } from ${JSON.stringify(new URL("../../lib/index.ts", import.meta.url).pathname)};
      try { openProvider(); console.log("opened"); } catch (e) { console.log(e.name, e.code, e.message); }`], {
      env: { ...process.env, ALLOCTOOLS_PROVIDER: "tpc" }, stdout: "pipe",
    });
    const out = run.stdout.toString();
    expect(out).toStartWith("TypeError INVALID_ARGUMENT ALLOCTOOLS_PROVIDER names no provider here: \"tpc\"");
    expect(out).toContain("available: host, ucx, mpi, tcp");
  });

  test("a structured clone of a RemoteRegion given as one: TypeError naming fromJSON and parse", () => {
    const provider = LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" });
    const pool = new MemoryPool(provider);
    const endpoint = new Endpoint(provider);
    const peer = endpoint.insert(new Endpoint(provider).name);
    const region = pool.getRegion(64);
    const clone = structuredClone(region.remote()) as unknown as RemoteRegion;
    expect(() => endpoint.postWrite(region, 8, peer, clone)).toThrow(/RemoteRegion\.fromJSON\(\).*RemoteRegion\.parse\(\)/);
    expect(() => endpoint.postWrite(region, 8, peer, 42 as never)).toThrow(/got number/);
    pool.releaseRegion(region);
    provider.close();
  }, 30_000);
});
