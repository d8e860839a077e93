// Pools advise their blocks MADV_HUGEPAGE by default (hugePages: "transparent"): the kernel's own
// record of the mapping (/proc/self/smaps, VmFlags "hg") says so; hugePages: false leaves plain pages.
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { HostProvider, MemoryPool, type MemoryPoolOptions } from "../../lib/index.ts";

/** The VmFlags of the mapping that holds `address`. */
function vmFlags(address: number): string[] {
  const lines = readFileSync("/proc/self/smaps", "utf8").split("\n");
  let inside = false;
  for (const line of lines) {
    const range = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    if (range) inside = parseInt(range[1]!, 16) <= address && address < parseInt(range[2]!, 16);
    else if (inside && line.startsWith("VmFlags:")) return line.slice("VmFlags:".length).trim().split(/\s+/);
  }
  throw new Error(`no mapping holds 0x${address.toString(16)}`);
}

function blockFlags(options: MemoryPoolOptions): { flags: string[]; blockBytes: number } {
  using provider = new HostProvider();
  using pool = new MemoryPool(provider, { huge: { chunkSize: 1 << 20, initialCount: 1 }, ...options });
  const region = pool.getRegion(1 << 20);
  const flags = vmFlags(region.baseAddress);
  const blockBytes = pool.stats().stacks.huge.pinnedBytes;
  pool.releaseRegion(region);
  return { flags, blockBytes };
}

test("default pool blocks are advised MADV_HUGEPAGE (VmFlags hg), locked (lo), not rounded up to 2 MiB", () => {
  const { flags, blockBytes } = blockFlags({});
  expect(flags).toContain("hg");
  expect(flags).toContain("lo");
  expect(blockBytes).toBe(1 << 20);
});

test("hugePages: false leaves plain pages (no hg); a bad value is refused, naming the four accepted", () => {
  expect(blockFlags({ hugePages: false }).flags).not.toContain("hg");
  using provider = new HostProvider();
  expect(() => new MemoryPool(provider, { hugePages: "always" as unknown as boolean })).toThrow('options.hugePages must be true, false, "try" or "transparent", got always');
});

test("a shared pool's growth is advised too (its own mapping path records each step)", () => {
  using provider = new HostProvider();
  using pool = new MemoryPool(provider, { huge: { chunkSize: 1 << 20, initialCount: 1, growCount: 1 } });
  pool.share();
  const first = pool.getRegion(1 << 20);
  const grown = pool.getRegion(1 << 20); // the stack was empty: a block grown through the shared path
  expect(grown.baseAddress).not.toBe(first.baseAddress);
  expect(vmFlags(grown.baseAddress)).toContain("hg");
  pool.releaseRegion(first);
  pool.releaseRegion(grown);
});
