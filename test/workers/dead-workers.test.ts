// What a Worker that dies leaves behind, and what a slow one must keep (issue 10, Worker items):
// its temporary and user regions are freed by the owner's close; a growth lock is taken from a dead
// Worker at once and never from a live one; a growth or spill cut short is undone or found; an
// attached pool's close reports from the shared state words.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { HostProvider, LibfabricProvider, MemoryPool, type MemoryPoolOptions, type RegionProvider } from "../../lib/index.ts";
import { describeFabric, vmLckKiB } from "../helpers.ts";
import type { StateCommand } from "./state-worker.ts";
import type { Command, RegionInfo } from "./worker-pool.ts";

setDefaultTimeout(30_000);

const ONE_EACH: MemoryPoolOptions = {
  small: { initialCount: 1, growCount: 1, maxRegions: 64 },
  medium: { initialCount: 1, growCount: 1, maxRegions: 16 },
  large: { initialCount: 1, growCount: 1, maxRegions: 8 },
  huge: { initialCount: 1, growCount: 1, maxRegions: 4 },
};

type Reply = { ok?: boolean; error?: string; [k: string]: unknown };

function spawn(file: string): Worker {
  return new Worker(new URL(file, import.meta.url));
}

function ask<T>(w: Worker, m: Command | StateCommand): Promise<T> {
  return new Promise((resolve, reject) => {
    w.onmessage = (e: MessageEvent<Reply>) => (e.data.ok === false ? reject(new Error(e.data.error)) : resolve(e.data as T));
    w.onerror = (e) => reject(e instanceof ErrorEvent ? new Error(e.message) : e);
    w.postMessage(m);
  });
}

function terminated(w: Worker): Promise<void> {
  return new Promise((resolve) => {
    w.addEventListener("close", () => resolve(), { once: true });
    w.terminate();
  });
}

function runChild(file: string, args: string[], env: Record<string, string> = {}): { out: Record<string, unknown>; stderr: string } {
  const r = Bun.spawnSync([process.execPath, `${import.meta.dir}/${file}`, ...args], {
    stdout: "pipe", stderr: "pipe", timeout: 100_000, env: { ...process.env, ...env },
  });
  const stderr = r.stderr.toString();
  if (r.exitCode !== 0) throw new Error(`${file} ${args.join(" ")} exited ${r.exitCode}: ${stderr}`);
  return { out: JSON.parse(r.stdout.toString().trim().split("\n").at(-1)!) as Record<string, unknown>, stderr };
}

function deadUnpooledRegions(label: string): void {
  test(`a terminated Worker's temporary and user regions are reported and freed by the owner's close [${label}]`, () => {
    const { out } = runChild("dead-worker-child.ts", [label]);
    expect(out.live).toEqual([1, 1]); // the Worker held one of each when it died
    expect(out.whileHeld as number).toBeGreaterThan(out.baseline as number);
    expect(out.reported).toEqual(["temporary", "user"]);
    expect(out.bytes).toBe(1536 * 1024 + 256 * 1024);
    expect(out.after).toBe(out.baseline); // deregistered and unmapped: nothing stays locked
    expect(out.providerError).toBeNull(); // tcp: no EBUSY, the domain closes
  });
}

interface GrowthCut { cuts: string[]; problems: string[]; lockedKiB: number; closeError: string | null }

function growthCuts(label: string): void {
  // The torture test's crash (1 run in 50 on tcp): a Worker terminated between its block's RESERVED
  // and naming it in the lock line, or a taker between forgetting the block and retiring it, left
  // a block nobody undid; the owner's close then closed its registration handle, 0: fi_close(NULL),
  // a segmentation fault at address 0x10 (host: an mmap of 0 bytes at 0x0 thrown from close).
  for (const mode of ["growth", "takeover"]) {
    test(`a Worker terminated at any step of a ${mode === "growth" ? "growth" : "take-over of a dead Worker's growth"}: close does not crash, frees and unpins everything [${label}]`, () => {
      const { out } = runChild("growth-cut-child.ts", [label, mode]);
      const cases = out.cases as GrowthCut[];
      expect(cases.length).toBeGreaterThan(20); // every step was cut at, the last case ran to the end
      expect(cases.filter((each) => each.closeError !== null || each.problems.length > 0 || each.lockedKiB !== 0)).toEqual([]);
      // Cut between fi_mr_reg's return and noting its handle, a growth leaves a registration nobody knows of: EBUSY, and only that.
      if (out.providerError !== null) expect(out.providerError).toContain("EBUSY");
    }, 120_000);
  }

  test(`a growth terminated at the retry of its push (its CAS lost a race): the next taker pushes the block's regions, none is lost [${label}]`, () => {
    // Before: the retry had already written the last link, so the block looked pushed and its 3 free regions were lost (the torture test's "free but on no stack").
    const { out } = runChild("growth-cut-child.ts", [label, "retry"]);
    expect(out.cases).toEqual([{ cuts: [expect.stringContaining("BlockTable.pushRest at the retry")], problems: [], lockedKiB: 0, closeError: null }]);
    expect(out.providerError).toBeNull();
  });

  test(`the owner's close finding a live Worker's growth still mapping (its lock wait ran out) closes no registration it never recorded [${label}]`, () => {
    // Before: fi_close of the recorded handle, 0 (a segmentation fault at 0x10 on tcp).
    const { out } = runChild("growth-cut-child.ts", [label, "unfinished"]);
    expect(out.cases).toEqual([{ cuts: ["growth-past-close-wait"], problems: [], lockedKiB: 0, closeError: null }]);
    expect(out.providerError).toBeNull();
  });
}

function suite(label: string, open: () => RegionProvider): void {
  let provider: RegionProvider;
  beforeAll(() => { provider = open(); });
  afterAll(() => provider.close());

  deadUnpooledRegions(label);
  growthCuts(label);

  test(`an attached pool's close reports what the state words say it holds, not a stale flag [${label}]`, async () => {
    const pool = new MemoryPool(provider, ONE_EACH);
    const handle = pool.share();
    const w = spawn("./worker-pool.ts");
    try {
      const held = await ask<{ regions: RegionInfo[] }>(w, { cmd: "hold", handle, sizes: [10, 10] });
      const [first, second] = held.regions.map((r) => r.index);
      // The owner releases the first (handed over), and gets it again: the owner holds it now.
      pool.releaseRegion(pool.region(first!));
      const again = pool.getRegion(10);
      expect(pool.indexOf(again)).toBe(first!);
      const closed = await ask<{ leaked: number }>(w, { cmd: "close" });
      expect(closed.leaked).toBe(1); // only the second: still the Worker's
      expect(pool.audit().problems).toEqual([]);
      pool.releaseRegion(again);
      const report = pool.close();
      expect(report.count).toBe(1); // the Worker's second region, never released
      expect(second).toBeGreaterThanOrEqual(0);
    } finally {
      w.terminate();
      if (!pool.closed) pool.close();
    }
  });

  test(`a live Worker holding a growth lock longer than any lease keeps it; a dead one loses it at once [${label}]`, async () => {
    const pool = new MemoryPool(provider, ONE_EACH);
    const handle = pool.share({ cacheSize: 0 });
    const one = pool.getRegion(10); // the small class is empty now: the next get grows it
    const slow = spawn("./state-worker.ts");
    const dead = spawn("./state-worker.ts");
    try {
      const holdMs = 3500; // longer than the 3 s lease the old code took over after
      const unlocked = new Promise<{ unlockedAt: number }>((resolve) => {
        slow.onmessage = (e) => { if (e.data.at === "unlocked") resolve(e.data); };
      });
      await new Promise<void>((resolve) => {
        slow.addEventListener("message", (e) => { if (e.data.at === "locked") resolve(); });
        slow.postMessage({ cmd: "hold-lock", handle, classIndex: 0, holdMs } satisfies StateCommand);
      });
      const t = Date.now();
      const grown = pool.getRegion(10); // waits for the slow Worker: it is alive
      const waited = Date.now() - t;
      const { unlockedAt } = await unlocked;
      expect(Date.now()).toBeGreaterThanOrEqual(unlockedAt);
      expect(waited).toBeGreaterThanOrEqual(holdMs - 400);
      pool.releaseRegion(grown);
      const taken = pool.getRegion(10);

      await ask(dead, { cmd: "hold-lock", handle, classIndex: 0, holdMs: -1 });
      await terminated(dead);
      const t2 = Date.now();
      const afterDeath = pool.getRegion(10); // grows: the lock is taken from the dead Worker
      expect(Date.now() - t2).toBeLessThan(1000);
      for (const r of [one, taken, afterDeath]) pool.releaseRegion(r);
      const a = pool.audit();
      expect(a.problems).toEqual([]);
      expect(a.inUse).toBe(0);
      expect(pool.close().count).toBe(0);
    } finally {
      slow.terminate();
      dead.terminate();
      if (!pool.closed) pool.close();
    }
  });

  test(`a growth a Worker left half-done (mapped and pinned) is undone by the next grower and by close [${label}]`, async () => {
    const before = vmLckKiB();
    const pool = new MemoryPool(provider, ONE_EACH);
    const handle = pool.share({ cacheSize: 0 });
    const first = pool.getRegion(2000); // medium's one region: the next medium get grows
    const baseline = vmLckKiB();
    const pinned = pool.stats().pinnedBytes;
    const mediumPinned = pool.stats().stacks.medium.pinnedBytes;
    const bytes = 1 << 20;
    const w = spawn("./state-worker.ts");
    try {
      await ask(w, { cmd: "abandon-growth", handle, classIndex: 1, bytes });
      expect(vmLckKiB()).toBe(baseline + bytes / 1024);
      expect(pool.stats().pinnedBytes).toBe(pinned + bytes);
      await terminated(w);
      const held = pool.getRegion(2000); // medium is empty: grows, after undoing the dead growth
      const grownBytes = pool.stats().stacks.medium.pinnedBytes - mediumPinned;
      expect(grownBytes).toBeGreaterThan(0);
      expect(pool.stats().pinnedBytes).toBe(pinned + grownBytes);
      expect(vmLckKiB()).toBe(baseline + grownBytes / 1024);
      pool.releaseRegion(held);
      pool.releaseRegion(first);
      expect(pool.audit().problems).toEqual([]);
      expect(pool.close().count).toBe(0);
      expect(vmLckKiB()).toBe(before);
    } finally {
      w.terminate();
      if (!pool.closed) pool.close();
    }
  });

  test(`a Worker terminated in a growth's reserve, before noting which block its region indices belong to: the audit counts no such region lost [${label}]`, async () => {
    // Before: those indices read block 0 (the word was never written), a live block, so the audit
    // called them free on no stack (torture: "region 8 is free but on no stack and in no cache").
    const pool = new MemoryPool(provider, ONE_EACH);
    const handle = pool.share({ cacheSize: 0 });
    const w = spawn("./state-worker.ts");
    try {
      const reserved = await ask<{ first: number }>(w, { cmd: "reserve-cut", handle, classIndex: 2, count: 3 });
      expect(reserved.first).toBeGreaterThan(0);
      await terminated(w);
      const a = pool.audit();
      expect(a.problems).toEqual([]);
      expect(a.lost).toBe(0);
      const grown = [pool.getRegion(20_000), pool.getRegion(20_000)]; // large: takes the dead Worker's lock, grows
      for (const r of grown) pool.releaseRegion(r);
      expect(pool.audit().problems).toEqual([]);
      expect(pool.close().count).toBe(0);
    } finally {
      w.terminate();
      if (!pool.closed) pool.close();
    }
  });

  test(`a Worker dead between a spill's push and its count, or between a release's cache entry and its count: nothing twice, nothing lost [${label}]`, async () => {
    const pool = new MemoryPool(provider, { ...ONE_EACH, small: { initialCount: 16, growCount: 16, maxRegions: 64 } });
    const handle = pool.share({ cacheSize: 8 });
    const spiller = spawn("./state-worker.ts");
    const releaser = spawn("./state-worker.ts");
    try {
      const cut = await ask<{ count: number; half: number }>(spiller, { cmd: "spill-cut", handle, classIndex: 0 });
      expect(cut.count).toBe(8);
      expect(cut.half).toBe(4);
      await terminated(spiller);
      let a = pool.audit();
      expect(a.problems).toEqual([]);
      expect(a.lost).toBe(0);
      expect(a.inUse).toBe(0);
      const recorded = await ask<{ index: number }>(releaser, { cmd: "release-cut", handle, classIndex: 0 });
      await terminated(releaser);
      a = pool.audit();
      expect(a.problems).toEqual([]);
      expect(a.inUse).toBe(1); // still the dead Worker's: reported at close, never handed out
      // Everyone else keeps working, and never gets a region twice.
      const got = Array.from({ length: 40 }, () => pool.getRegion(10));
      expect(new Set(got).size).toBe(40);
      expect(got.map((r) => pool.indexOf(r))).not.toContain(recorded.index);
      for (const r of got) pool.releaseRegion(r);
      expect(pool.audit().problems).toEqual([]);
      expect(pool.close().count).toBe(1);
    } finally {
      spiller.terminate();
      releaser.terminate();
      if (!pool.closed) pool.close();
    }
  });
}

describe("dead and slow Workers [host]", () => suite("host", () => new HostProvider()));
describeFabric("dead and slow Workers [tcp]", () => suite("tcp", () => LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" })));

function torture(label: string): void {
  test(`Workers terminated at random (seeded): audit clean, nothing locked after close [${label}]`, () => {
    const { out, stderr } = runChild("torture-child.ts", [label], { ALLOCTOOLS_TORTURE_MS: process.env.ALLOCTOOLS_TORTURE_MS ?? "2500" });
    console.log(`torture [${label}]: seed ${out.seed} (ALLOCTOOLS_TORTURE_SEED=${out.seed} replays it): ${out.workers} Workers, ${out.terminated} terminated, ${out.gets} gets`);
    expect(stderr).toBe("");
    expect(out.problems).toEqual([]);
    expect(out.lost).toBe(0);
    expect(out.terminated as number).toBeGreaterThan(0);
    expect(out.after).toBe(out.baseline); // nothing stays locked
    // A Worker terminated between fi_mr_reg's return and noting the handle leaves a registration
    // nobody knows of; the domain then refuses to close (EBUSY). That, and only that, is allowed.
    if (out.providerError !== null) expect(out.providerError).toContain("EBUSY");
  });
}

describe("torture [host]", () => torture("host"));
describeFabric("torture [tcp]", () => torture("tcp"));
