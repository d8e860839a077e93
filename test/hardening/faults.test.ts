// Limits and faults that must be survived: typed errors, and the pool exactly as it was.
import { afterAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import {
  AllocToolsError, FabricError, FI, HostProvider, LibfabricProvider, MemoryBlockAllocator, MemoryPool, SystemError,
  type PoolStats,
} from "../../lib/index.ts";
import { libfabric } from "../../ffi/libfabric.ts";
import { FailingProvider } from "../fakes.ts";
import { describeFabric, runBun, vmLckKiB } from "../helpers.ts";

const tiny = {
  small: { chunkSize: 256, initialCount: 2 }, medium: { chunkSize: 4096, initialCount: 1 },
  large: { chunkSize: 65536, initialCount: 1 }, huge: { chunkSize: 1 << 20, initialCount: 1 },
};

/** The parts of the stats that a failed call must leave unchanged. */
function books(s: PoolStats) {
  return { gets: s.gets, releases: s.releases, pinned: s.pinnedBytes, regs: s.registrations, deregs: s.deregistrations,
    inUse: s.regionsInUse, growths: s.growths, misses: s.misses, temps: s.liveTemporaryRegions };
}

describe("registration failing inside the provider", () => {
  const host = new HostProvider();
  afterAll(() => host.close());

  test("growth: typed error, nothing stays pinned or registered, the pool is as it was and still grows later", () => {
    const fp = new FailingProvider(host);
    using pool = new MemoryPool(fp, tiny);
    const held = [pool.getRegion(10), pool.getRegion(10)]; // the two initial small regions
    const before = books(pool.stats());
    const lck = vmLckKiB();
    fp.failNext = 1;
    let err: unknown;
    try { pool.getRegion(10); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(SystemError);
    expect((err as SystemError).function).toBe("fake_register");
    expect(books(pool.stats())).toEqual(before);
    expect(vmLckKiB()).toBe(lck); // the block was unmapped
    expect(fp.live.size).toBe(4);
    const grown = pool.getRegion(10); // the fault is gone: growth works
    expect(pool.stats().stacks.small.growths).toBe(1);
    for (const r of [...held, grown]) pool.releaseRegion(r);
  });

  test("temporary and user regions: typed error, nothing leaks", () => {
    const fp = new FailingProvider(host);
    using pool = new MemoryPool(fp, tiny);
    const before = books(pool.stats());
    const lck = vmLckKiB();
    fp.failNext = 2;
    expect(() => pool.getRegion(4 << 20)).toThrow(SystemError);
    expect(() => pool.registerUserRegion(new Uint8Array(100))).toThrow(SystemError);
    expect(books(pool.stats())).toEqual(before);
    expect(vmLckKiB()).toBe(lck);
  });

  test("a failure while building the initial stacks leaves nothing pinned", () => {
    const fp = new FailingProvider(host);
    const lck = vmLckKiB();
    fp.failNext = 0;
    // Fail the third registration (the large class): the two blocks already made are undone.
    let calls = 0;
    const inner = fp.register.bind(fp);
    fp.register = (a, l, acc) => { if (++calls === 3) throw new SystemError("fake_register", 12, "Cannot allocate memory"); return inner(a, l, acc); };
    expect(() => new MemoryPool(fp, tiny)).toThrow(SystemError);
    expect(fp.live.size).toBe(0);
    expect(vmLckKiB()).toBe(lck);
  });
});

describe("RLIMIT_MEMLOCK exhausted (unprivileged child: CAP_IPC_LOCK dropped, prlimit --memlock)", () => {
  const prlimit = Bun.which("prlimit");
  const setpriv = Bun.which("setpriv");
  test.skipIf(!prlimit || !setpriv)("growth fails naming the limit; the pool still serves what it holds; VmLck unchanged", () => {
    const code = `
      import { MemoryPool, HostProvider } from "./lib/index.ts";
      const lck = () => Number(/VmLck:\\s+(\\d+)/.exec(require("fs").readFileSync("/proc/self/status", "utf8"))[1]);
      const pool = new MemoryPool(new HostProvider(), {
        small: { chunkSize: 1024, initialCount: 64 }, medium: { chunkSize: 16384, initialCount: 4 },
        large: { chunkSize: 65536, initialCount: 1 }, huge: { chunkSize: 262144, initialCount: 1 } });
      const out = { pinned: pool.stats().pinnedBytes, lckBefore: lck() };
      const held = [];
      for (let i = 0; i < 4; i++) held.push(pool.getRegion(10000));
      try { pool.getRegion(10000); out.grew = true; } catch (e) { out.error = { name: e.name, fn: e.function, code: e.code, message: e.message }; }
      out.lckAfter = lck();
      out.stats = pool.stats();
      for (const r of held) pool.releaseRegion(r);
      const again = pool.getRegion(10000); // still served from what the pool holds
      out.servedAfter = again.size;
      pool.releaseRegion(again);
      out.inUse = pool.stats().regionsInUse;
      pool.close();
      out.lckClosed = lck();
      console.log(JSON.stringify(out));
    `;
    // 480 KiB: room for the pool's 448 KiB of blocks, not for another 64 KiB medium block.
    const r = Bun.spawnSync([prlimit!, "--memlock=491520:491520", setpriv!, "--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock",
      process.execPath, "-e", code], { cwd: `${import.meta.dir}/../..`, stdout: "pipe", stderr: "pipe" });
    expect(r.stderr.toString()).not.toContain("error:");
    const out = JSON.parse(r.stdout.toString().trim());
    expect(out.grew).toBeUndefined();
    expect(out.error.name).toBe("SystemError");
    expect(out.error.fn).toBe("mlock");
    expect(out.error.message).toContain("RLIMIT_MEMLOCK is 491520 bytes");
    expect(out.lckAfter).toBe(out.lckBefore);
    expect(out.stats.stacks.medium.growths).toBe(0);
    expect(out.stats.regionsInUse).toBe(4);
    expect(out.servedAfter).toBe(16384);
    expect(out.inUse).toBe(0);
    expect(out.lckClosed).toBe(0);
  });
});

describeFabric("a real duplicate key on libfabric", () => {
  test("-FI_ENOKEY from fi_mr_reg is a FabricError; the pool is intact and the next growth works", () => {
    const p = LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1", firstKey: 1000n });
    const fi = libfabric();
    const block = new MemoryBlockAllocator().allocate(4096);
    try {
      using pool = new MemoryPool(p, tiny); // uses keys 1000..1003
      const held = [pool.getRegion(10), pool.getRegion(10)];
      // Someone else on this domain takes the key the pool will request next.
      const squatter = fi.mrReg(p.handles.domain, block.address, 4096, FI.REMOTE_READ, 0n, 1004n, 0);
      const before = books(pool.stats());
      const lck = vmLckKiB();
      let err: unknown;
      try { pool.getRegion(10); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(FabricError);
      expect((err as FabricError).function).toBe("fi_mr_reg");
      expect((err as FabricError).errno).toBe(FI.ENOKEY);
      expect(books(pool.stats())).toEqual(before);
      expect(vmLckKiB()).toBe(lck);
      expect(p.registrations).toBe(4);
      const grown = pool.getRegion(10); // key 1005
      expect(grown.remoteKey).toBe(1005n);
      for (const r of [...held, grown]) pool.releaseRegion(r);
      fi.close(squatter, "mr");
    } finally {
      p.close();
      block.free();
    }
  });
});

describe("leaks", () => {
  test("close() with regions out reports count, sizes and (debug) where they were got", () => {
    const host = new HostProvider();
    const pool = new MemoryPool(host, { ...tiny, debug: true });
    pool.getRegion(100);
    pool.getRegion(5000);
    const report = pool.close();
    expect(report.count).toBe(2);
    expect(report.regions.map((r) => r.size)).toEqual([256, 65536]);
    for (const r of report.regions) expect(r.origin).toContain("faults.test.ts");
    host.close();
  });

  test("a pool never closed is reported and freed by the FinalizationRegistry backstop", () => {
    const r = runBun(`
      import { MemoryPool, HostProvider } from "./lib/index.ts";
      const lck = () => Number(/VmLck:\\s+(\\d+)/.exec(require("fs").readFileSync("/proc/self/status", "utf8"))[1]);
      const warnings = [];
      process.on("warning", (w) => warnings.push(w.message));
      const host = new HostProvider();
      (() => { const p = new MemoryPool(host); p.getRegion(10); })();
      const before = lck();
      for (let i = 0; i < 50 && warnings.length === 0; i++) { Bun.gc(true); await Bun.sleep(20); }
      console.log(JSON.stringify({ warnings, before, after: lck() }));
    `);
    const out = JSON.parse(r.stdout.trim());
    expect(out.before).toBeGreaterThan(0);
    expect(out.warnings.join("\n")).toContain("garbage-collected without close()");
    expect(out.after).toBe(0);
  });

  test("[Symbol.dispose] warns about regions still in use", () => {
    const r = runBun(`
      import { MemoryPool, HostProvider } from "./lib/index.ts";
      const warnings = [];
      process.on("warning", (w) => warnings.push(w.message));
      { using pool = new MemoryPool(new HostProvider()); pool.getRegion(10); }
      await Bun.sleep(10);
      console.log(JSON.stringify(warnings));
    `);
    expect(JSON.parse(r.stdout.trim()).join("\n")).toContain("closed with 1 region(s)");
  });
});

describe("fork safety (MADV_DONTFORK)", () => {
  test("a child started with Bun.spawn runs its own pool; the parent's pinned blocks are undisturbed", async () => {
    const host = new HostProvider();
    using pool = new MemoryPool(host, tiny);
    const region = pool.getRegion(1000);
    region.view.fill(0x5a);
    const lck = vmLckKiB();
    const child = Bun.spawn([process.execPath, "-e", `
      import { MemoryPool, HostProvider } from "./lib/index.ts";
      const pool = new MemoryPool(new HostProvider());
      const r = pool.getRegion(1000); r.view.fill(1); pool.releaseRegion(r); pool.close();
      console.log("child ok");
    `], { cwd: `${import.meta.dir}/../..`, stdout: "pipe" });
    expect((await new Response(child.stdout).text()).trim()).toBe("child ok");
    expect(await child.exited).toBe(0);
    expect(region.view.every((b) => b === 0x5a)).toBe(true);
    expect(vmLckKiB()).toBe(lck);
    // The mapping is marked DONTFORK (VM_DONTCOPY shows as "dc" in smaps).
    const smaps = readFileSync("/proc/self/smaps", "utf8");
    const start = region.baseAddress.toString(16);
    const entry = smaps.split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/).find((e) => e.startsWith(start));
    expect(entry).toBeDefined();
    expect(entry!).toMatch(/VmFlags:.* dc/);
    pool.releaseRegion(region);
    host.close();
  });
});

describe("bad options", () => {
  const host = new HostProvider();
  afterAll(() => host.close());
  test("wrong types are TypeErrors, inconsistent limits RangeErrors; nothing is pinned", () => {
    const lck = vmLckKiB();
    expect(() => new MemoryPool(host, { small: { chunkSize: "1024" as unknown as number } })).toThrow(TypeError);
    expect(() => new MemoryPool(host, { small: 5 as unknown as object })).toThrow(TypeError);
    expect(() => new MemoryPool(host, null as unknown as object)).toThrow(TypeError);
    expect(() => new MemoryPool(host, { small: { chunkSize: 32768 } })).toThrow(/larger than the class below/);
    expect(() => new MemoryPool(host, { medium: { chunkSize: 0 } })).toThrow(RangeError);
    expect(() => new MemoryPool(host, { large: { initialCount: -1 } })).toThrow(RangeError);
    expect(() => new MemoryPool(host, { huge: { growCount: 0 } })).toThrow(RangeError);
    expect(() => new MemoryPool(host, { small: { initialCount: 1.5 } })).toThrow(RangeError);
    expect(() => new MemoryPool(host, { maxPinnedBytes: -5 })).toThrow(RangeError);
    expect(() => new MemoryPool(host, { maxPinnedBytes: NaN })).toThrow(RangeError);
    expect(() => new MemoryPool(host, { maxPinnedBytes: 1 << 20 })).toThrow(/more than maxPinnedBytes/);
    expect(() => new MemoryPool(host, { hugePages: "yes" as unknown as boolean })).toThrow(TypeError);
    expect(() => new MemoryPool(host, { debug: 1 as unknown as boolean })).toThrow(TypeError);
    expect(() => new MemoryPool({} as unknown as HostProvider)).toThrow(TypeError);
    expect(vmLckKiB()).toBe(lck);
  });

  test("a closed pool or provider refuses use with POOL_CLOSED / PROVIDER_CLOSED", () => {
    const p = new HostProvider();
    const pool = new MemoryPool(p, tiny);
    pool.close();
    try { pool.getRegion(1); } catch (e) { expect((e as AllocToolsError).code).toBe("POOL_CLOSED"); }
    p.close();
    try { new MemoryPool(p); } catch (e) { expect((e as AllocToolsError).code).toBe("PROVIDER_CLOSED"); }
  });
});
