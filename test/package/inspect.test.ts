// Issue 13, item 4 (inspection): console.log of a pool printed about 2,700 lines. Pools, regions,
// providers and endpoints now print one line each, with what a reader looks for first.
import { describe, expect, test } from "bun:test";
import { inspect } from "node:util";
import { Endpoint, HostProvider, LibfabricProvider, MemoryPool } from "../../lib/index.ts";
import { bytes } from "../../lib/inspect.ts";
import { describeFabric } from "../helpers.ts";

function oneLineOf(value: unknown): string {
  const text = Bun.inspect(value);
  expect(text.split("\n")).toHaveLength(1);
  expect(inspect(value)).toBe(text); // node:util's inspect uses the same symbol
  return text;
}

describe("one-line summaries", () => {
  test("a host pool, its region and its provider", () => {
    const provider = new HostProvider();
    const pool = new MemoryPool(provider);
    const region = pool.getRegion(4000);
    expect(oneLineOf(pool)).toBe("MemoryPool { provider: host, regionsInUse: 1, pinned: 3.75 MiB, classes: 1 KiB/16 KiB/64 KiB/1 MiB, shared: false }");
    expect(oneLineOf(region)).toBe(`MemoryRegion { address: 0x${region.address.toString(16)}, size: 16384, messageLength: 4000, remoteKey: ${region.remoteKey}n, flags: PARTIAL }`);
    expect(oneLineOf(provider)).toBe(`HostProvider { registrations: ${provider.registrations}, closed: false }`);
    pool.releaseRegion(region);
    pool.close();
    expect(oneLineOf(pool)).toBe("MemoryPool { closed: true }");
    provider.close();
    expect(oneLineOf(provider)).toBe("HostProvider { registrations: 0, closed: true }");
  });

  test("a fall-back host provider says why", () => {
    using provider = new HostProvider({ reason: "libfabric is not available" });
    expect(oneLineOf(provider)).toBe(`HostProvider { registrations: 0, closed: false, reason: "libfabric is not available" }`);
  });

  test("byte counts read in binary units", () => {
    expect([bytes(512), bytes(16384), bytes(3.75 * 1024 * 1024), bytes(1.5 * 1024 ** 3), bytes(Infinity)])
      .toEqual(["512 B", "16 KiB", "3.75 MiB", "1.5 GiB", "Infinity"]);
  });
});

describeFabric("one-line summaries on libfabric", () => {
  test("a tcp provider, its endpoint and a pool of thousands of regions", () => {
    using provider = LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" });
    using pool = new MemoryPool(provider, { small: { initialCount: 2048 } });
    using endpoint = new Endpoint(provider);
    expect(oneLineOf(pool)).toStartWith("MemoryPool { provider: tcp;ofi_rxm, regionsInUse: 0, pinned: ");
    expect(oneLineOf(provider)).toBe(`LibfabricProvider { provider: tcp;ofi_rxm, mrMode: ${provider.info.mrModeNames.join("|") || "0"}, registrations: 4, closed: false }`);
    expect(oneLineOf(endpoint)).toBe("Endpoint { provider: tcp;ofi_rxm, pending: 0, progressInterval: -1, closed: false }");
  });
});
