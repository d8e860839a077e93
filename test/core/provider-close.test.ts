// Issue 13 item 3: a pool stops serving when its provider closes. The provider closes its pools
// (children before parents: the pool's registrations go before the domain), so every later use
// of the pool is refused with PROVIDER_CLOSED; views of regions still out are detached.
import { expect, test } from "bun:test";
import { AllocToolsError, MemoryPool } from "../../lib/index.ts";
import { describeEachProvider, vmLckKiB } from "../helpers.ts";

const tiny = {
  small: { chunkSize: 256, initialCount: 2 }, medium: { chunkSize: 4096, initialCount: 1 },
  large: { chunkSize: 65536, initialCount: 1 }, huge: { chunkSize: 1 << 20, initialCount: 1 },
};

function codeOf(f: () => unknown): string | undefined {
  try { f(); } catch (e) { return e instanceof AllocToolsError ? e.code : `untyped ${(e as Error).name}`; }
  return undefined;
}

describeEachProvider("closing the provider closes its pools", (c) => {
  test("getRegion, registerUserRegion and releaseRegion are refused with PROVIDER_CLOSED; memory is unpinned", async () => {
    const lck = vmLckKiB();
    const provider = c.open();
    const pool = new MemoryPool(provider, tiny);
    const region = pool.getRegion(100);
    expect(vmLckKiB()).toBeGreaterThan(lck);
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on("warning", onWarning);
    try {
      provider.close();
      await Bun.sleep(1); // warnings are emitted on the next tick
    } finally {
      process.off("warning", onWarning);
    }
    expect(pool.closed).toBe(true);
    expect(codeOf(() => pool.getRegion(100))).toBe("PROVIDER_CLOSED");
    expect(codeOf(() => pool.getRegion(4 << 20))).toBe("PROVIDER_CLOSED");
    expect(codeOf(() => pool.registerUserRegion(new Uint8Array(64)))).toBe("PROVIDER_CLOSED");
    expect(codeOf(() => pool.releaseRegion(region))).toBe("PROVIDER_CLOSED");
    expect(region.view.byteLength).toBe(0); // detached, never dangling
    expect(vmLckKiB()).toBe(lck);
    expect(pool.close().count).toBe(0); // already closed with its provider
    expect(warnings.join("\n")).toContain("1 region(s)");
  });

  test("the README's order (provider closed while `using pool` is open) ends cleanly", () => {
    const provider = c.open();
    {
      using pool = new MemoryPool(provider, tiny);
      pool.releaseRegion(pool.getRegion(4000));
      provider.close();
    } // dispose: nothing left to do, nothing thrown
    expect(provider.closed).toBe(true);
  });

  test("a pool closed on its own is forgotten by the provider; closing the provider later changes nothing", () => {
    const provider = c.open();
    const pool = new MemoryPool(provider, tiny);
    pool.close();
    const other = new MemoryPool(provider, tiny);
    provider.close();
    expect(codeOf(() => pool.getRegion(1))).toBe("POOL_CLOSED");
    expect(codeOf(() => other.getRegion(1))).toBe("PROVIDER_CLOSED");
  });
});
