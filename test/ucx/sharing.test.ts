// UcxProvider shares itself: share() gives a structured-cloneable handle, attach() a view over the
// same UCX context (in this thread here; test/workers/ucx-*.test.ts does it from real Workers).
// A view's endpoint is a ucp_worker of its own whose RMA uses the owner's registrations; the
// context lives until the owner closed and the last endpoint or allocated block is gone; handles
// from another process, a closed provider or a forger get typed errors.
import type { MemoryRegionImpl } from "../../lib/memory/region.ts";
import { expect, test } from "bun:test";
import { AllocToolsError, MemoryPool, UcxEndpoint, UcxProvider, type UcxProviderHandle } from "../../lib/index.ts";
import { describeUcx, runBun } from "../helpers.ts";
import { fillPattern, firstMismatch } from "../rma/pattern.ts";

const POOL = { small: { chunkSize: 256, initialCount: 4 }, medium: { chunkSize: 4096, initialCount: 2 },
  large: { chunkSize: 65536, initialCount: 1 }, huge: { chunkSize: 1 << 20, initialCount: 1 } };

function code(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return e instanceof AllocToolsError ? e.code : (e as Error).name;
  }
  return undefined;
}

/** A handle made in another process, printed as JSON and rebuilt here (its buffer replaced by one of ours). */
function handleFromChild(): Record<string, unknown> {
  const r = Bun.spawnSync([process.execPath, "-e", `
    import { UcxProvider } from "../../lib/index.ts";
    const p = UcxProvider.open({ transports: "tcp" });
    console.log(JSON.stringify({ ...p.share(), state: null }));
    p.close();`], { cwd: import.meta.dir, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`child failed: ${r.stderr.toString()}`);
  return JSON.parse(r.stdout.toString()) as Record<string, unknown>;
}

describeUcx("UcxProvider shares itself", () => {
  for (const transports of ["tcp", "posix,cma"]) {
    test(`[${transports}] a view has the owner's context; its own endpoint writes and reads the owner's regions`, async () => {
      const owner = UcxProvider.open({ transports });
      const handle = structuredClone(owner.share());
      expect(handle.kind).toBe("alloctools.UcxProvider");
      expect(handle.pid).toBe(process.pid);
      const view = UcxProvider.attach(handle);
      expect(view.isAttached).toBe(true);
      expect(view.info).toEqual(owner.info);
      expect(view.sharesContextWith(owner) && owner.sharesContextWith(view)).toBe(true);
      const pool = new MemoryPool(owner, POOL);
      const users = owner.contextUsers; // the owner, and each block's registration (allocated or mapped)
      expect(users).toBe(1 + 4);
      const mine = new UcxEndpoint(owner, { timeoutMs: 5000 });
      const theirs = new UcxEndpoint(view, { timeoutMs: 5000 });
      expect(owner.contextUsers).toBe(users + 2); // each endpoint, whichever provider object it was made on
      const target = pool.getRegion(60_000) as MemoryRegionImpl;
      const source = pool.getRegion(60_000) as MemoryRegionImpl;
      const peer = theirs.insert(mine.name);
      mine.insert(theirs.name);
      fillPattern(source.view.subarray(0, 60_000), 7);
      // The view's endpoint takes a region of a pool over the owner: the same context, not foreign.
      await theirs.write(source, 60_000, peer, target.remote());
      expect(firstMismatch(target.view.subarray(0, 60_000), 7)).toBe(-1);
      source.view.fill(0);
      theirs.readSync(source, 60_000, peer, target.remote());
      expect(firstMismatch(source.view.subarray(0, 60_000), 7)).toBe(-1);
      pool.releaseRegion(target);
      pool.releaseRegion(source);
      view.close(); // closes its endpoint only
      expect(theirs.closed).toBe(true);
      expect(mine.closed).toBe(false);
      expect(owner.closed).toBe(false);
      mine.close();
      expect(pool.close().count).toBe(0);
      owner.close();
      expect(owner.contextUsers).toBe(-1); // cleaned up: nothing held it any more
    });
  }

  test("the context outlives its owner's close while a view's endpoint is open; the endpoint's close cleans it up", () => {
    const owner = UcxProvider.open({ transports: "posix,cma" });
    const view = UcxProvider.attach(owner.share());
    const endpoint = new UcxEndpoint(view);
    const handle = owner.share();
    owner.close();
    expect(view.closed).toBe(true); // the owner closed it under the view
    expect(owner.contextUsers).toBe(1); // the view's endpoint
    expect(code(() => new UcxEndpoint(view))).toBe("PROVIDER_CLOSED");
    expect(code(() => view.register(4096, 4096, 0))).toBe("PROVIDER_CLOSED");
    expect(code(() => UcxProvider.attach(handle))).toBe("PROVIDER_CLOSED");
    expect(code(() => owner.share())).toBe("PROVIDER_CLOSED");
    expect(endpoint.poll()).toBe(0); // its worker still progresses on the living context
    endpoint.close();
    expect(owner.contextUsers).toBe(-1);
    view.close();
  });

  test("a context opened with threadShared: false is not shared: share() and pool.share() are NOT_SUPPORTED, the pool keeps working", () => {
    const single = UcxProvider.open({ transports: "tcp", threadShared: false });
    try {
      expect(single.info.threadShared).toBe(false);
      expect(code(() => single.share())).toBe("NOT_SUPPORTED");
      const pool = new MemoryPool(single, POOL);
      expect(code(() => pool.share())).toBe("NOT_SUPPORTED");
      pool.releaseRegion(pool.getRegion(100));
      expect(pool.close().count).toBe(0);
      expect(code(() => UcxProvider.open({ threadShared: "yes" as unknown as boolean }))).toBe("TypeError");
    } finally {
      single.close();
    }
  });

  test("a handle from another process is NOT_SUPPORTED; a forged or foreign-kind one a TypeError", () => {
    const owner = UcxProvider.open({ transports: "tcp" });
    try {
      const child = handleFromChild();
      expect(child.pid).not.toBe(process.pid);
      const foreign = { ...child, state: owner.share().state } as unknown as UcxProviderHandle;
      expect(code(() => UcxProvider.attach(foreign))).toBe("NOT_SUPPORTED");
      const forged = [
        null, {}, { ...owner.share(), kind: "alloctools.LibfabricProvider" }, { ...owner.share(), state: new SharedArrayBuffer(8) },
        { ...owner.share(), context: "0x1" },
      ];
      for (const h of forged) expect(code(() => UcxProvider.attach(h as unknown as UcxProviderHandle))).toBe("TypeError");
    } finally {
      owner.close();
    }
  });

  test("a shared UCX pool: an attached pool's provider is a view, its regions carry the packed rkey, blocks it grows are UCX-allocated", () => {
    const owner = UcxProvider.open({ transports: "posix,cma" });
    const pool = new MemoryPool(owner, POOL);
    const held = pool.getRegion(100);
    const handle = structuredClone(pool.share());
    const attached = MemoryPool.attach(handle);
    expect(attached.provider).toBeInstanceOf(UcxProvider);
    const view = attached.provider as UcxProvider;
    expect(view.isAttached && view.sharesContextWith(owner)).toBe(true);
    const region = attached.region(pool.indexOf(held)) as MemoryRegionImpl;
    expect(region.remoteKeyBytes).toEqual((held as MemoryRegionImpl).remoteKeyBytes);
    expect(region.remote().version).toBe(2);
    // Grow the huge class from the attached pool: the provider allocates the blocks (one-sided on
    // shm). The one initial huge region waits in the owner's cache (share() puts one region of each
    // class there), so each of the two gets grows a block.
    const blocksBefore = owner.contextUsers;
    const grown = [attached.getRegion(1 << 20), attached.getRegion(1 << 20)] as MemoryRegionImpl[];
    expect(owner.contextUsers).toBe(blocksBefore + 2);
    expect(grown[1]!.remoteKeyBytes!.length).toBeGreaterThan(10); // a posix segment's key, not an empty 10-byte one
    // The owner meets a region of the block the attached pool grew: its rkey is packed again there.
    const seenByOwner = pool.region(attached.indexOf(grown[1]!)) as MemoryRegionImpl;
    expect(seenByOwner.address).toBe(grown[1]!.address);
    expect(seenByOwner.remoteKeyBytes).toEqual(grown[1]!.remoteKeyBytes);
    const temporary = attached.getRegion(3 << 20) as MemoryRegionImpl; // registered in the view
    expect(temporary.remoteKeyBytes).not.toBeNull();
    for (const r of [...grown, temporary]) attached.releaseRegion(r);
    expect(attached.close().count).toBe(0);
    pool.releaseRegion(held);
    expect(pool.audit().problems).toEqual([]);
    expect(pool.close().count).toBe(0);
    expect(owner.contextUsers).toBe(1); // every allocated block freed, the grown one included
    owner.close();
    expect(owner.contextUsers).toBe(-1);
  });

  test("a provider closed before its shared pool keeps the context instead of aborting in ucp_cleanup (run in a child)", () => {
    const r = runBun(`
      const { MemoryPool, UcxProvider } = await import("./lib/index.ts");
      const owner = UcxProvider.open({ transports: "tcp" });
      const pool = new MemoryPool(owner, { medium: { chunkSize: 60000, initialCount: 2, growCount: 2 } });
      const attached = MemoryPool.attach(pool.share());
      const grown = [attached.getRegion(60000), attached.getRegion(60000), attached.getRegion(60000)];
      for (const r of grown) attached.releaseRegion(r);
      attached.close();
      owner.close(); // the shared pool is still open: its blocks stay mapped, so the context stays
      console.log(JSON.stringify({ users: owner.contextUsers }));
    `);
    expect(r.stderr).not.toContain("Assertion");
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout.trim().split("\n").at(-1)!).users).toBeGreaterThan(0);
  });
});
