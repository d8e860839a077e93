// Issue 25, small things: code written for every transport takes an AnyEndpoint (a union such as
// `Endpoint | UcxEndpoint` has a `write` whose peer is `never`); the type check is the test, plus a
// real write through the type on tcp.
import { expect, test } from "bun:test";
import { Endpoint, LibfabricProvider, MemoryPool, type AnyEndpoint, type MemoryRegion, type PinnedBudget, type RemoteRegion, type UcxEndpoint } from "../../lib/index.ts";
import { describeFabric } from "../helpers.ts";

/** Written once for every transport. */
function writeThrough(endpoint: AnyEndpoint, local: MemoryRegion, peer: number | bigint, remote: RemoteRegion): void {
  endpoint.writeSync(local, 8, peer, remote);
}

// Compile-time: every endpoint is an AnyEndpoint, and PinnedBudget is exported.
const accepts = (endpoint: Endpoint | UcxEndpoint): AnyEndpoint => endpoint;
const budget: PinnedBudget | undefined = undefined;

describeFabric("AnyEndpoint", () => {
  test("an Endpoint passed as AnyEndpoint writes with its own peer", () => {
    expect([typeof accepts, budget]).toEqual(["function", undefined]);
    const provider = LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" });
    const pool = new MemoryPool(provider);
    const a = new Endpoint(provider);
    const b = new Endpoint(provider);
    const target = pool.getRegion(64);
    const local = pool.getRegion(64);
    local.view.fill(5);
    writeThrough(a, local, a.insert(b.name), target.remote());
    expect(target.view[7]).toBe(5);
    a.close();
    b.close();
    pool.releaseRegion(target);
    pool.releaseRegion(local);
    provider.close();
  }, 30_000);
});
