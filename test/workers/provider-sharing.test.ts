// Providers share themselves: provider.share() gives a structured-cloneable handle, the class's
// attach() a view in this thread over the same keys (and domain). Handles from another process or
// from a closed provider, and providers that cannot share, get typed errors. The pool's stacks are
// not reachable from outside.
import { ptr } from "bun:ffi";
import { expect, test } from "bun:test";
import {
  AllocToolsError, HostProvider, LibfabricProvider, MemoryPool, type HostProviderHandle, type LibfabricProviderHandle,
  type ProviderHandle, type RegionProvider, type SharedPoolHandle,
} from "../../lib/index.ts";
import { FailingProvider } from "../fakes.ts";
import { describeFabric } from "../helpers.ts";

function code(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    if (e instanceof AllocToolsError) return e.code;
    return (e as Error).name;
  }
  return undefined;
}

/** A handle another process made: run there, printed as JSON (bigints as strings), rebuilt here. */
function handleFromChild(source: string): Record<string, unknown> {
  const r = Bun.spawnSync([process.execPath, "-e", source], { cwd: import.meta.dir, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`child failed: ${r.stderr.toString()}`);
  return JSON.parse(r.stdout.toString()) as Record<string, unknown>;
}

test("HostProvider shares itself: a view draws keys from the same counter and registers for real", () => {
  const owner = new HostProvider({ firstKey: 100n });
  try {
    const handle = structuredClone(owner.share());
    const view = HostProvider.attach(handle);
    expect(view.isAttached).toBe(true);
    const buffer = new Uint8Array(4096);
    const viewed = view.register(ptr(buffer), buffer.length, 0);
    const owned = owner.register(ptr(buffer), buffer.length, 0);
    expect(owned.remoteKey).not.toBe(viewed.remoteKey);
    view.deregister(viewed);
    owner.deregister(owned);
    view.close(); // detaches only
    expect(view.closed).toBe(true);
    expect(owner.closed).toBe(false);
  } finally {
    owner.close();
  }
});

test("a closed provider's handle, a foreign process's handle and a forged one get typed errors", () => {
  const owner = new HostProvider();
  const handle = owner.share();
  owner.close();
  expect(code(() => HostProvider.attach(handle))).toBe("PROVIDER_CLOSED");
  expect(code(() => owner.share())).toBe("PROVIDER_CLOSED");
  const child = handleFromChild(`
    import { HostProvider } from "../../lib/index.ts";
    const h = new HostProvider().share();
    console.log(JSON.stringify({ ...h, keys: null }));`);
  expect(child.pid).not.toBe(process.pid);
  const foreign = { ...child, keys: new SharedArrayBuffer(16) } as unknown as HostProviderHandle;
  expect(code(() => HostProvider.attach(foreign))).toBe("NOT_SUPPORTED");
  expect(code(() => HostProvider.attach({ kind: "alloctools.HostProvider" } as HostProviderHandle))).toBe("TypeError");
  expect(code(() => HostProvider.attach(null as unknown as HostProviderHandle))).toBe("TypeError");
});

test("a pool handle from another process is refused with NOT_SUPPORTED before anything is touched", () => {
  const child = handleFromChild(`
    import { HostProvider, MemoryPool } from "../../lib/index.ts";
    const h = new MemoryPool(new HostProvider(), { small: { initialCount: 1 } }).share();
    console.log(JSON.stringify({ ...h, buffer: null, provider: { ...h.provider, keys: null } }));`);
  const provider = new HostProvider();
  try {
    const pool = new MemoryPool(provider);
    const mine = pool.share();
    // The other process's numbers with this process's buffers: only the pid tells them apart.
    const foreign = { ...child, buffer: mine.buffer, provider: mine.provider } as unknown as SharedPoolHandle;
    expect(code(() => MemoryPool.attach(foreign))).toBe("NOT_SUPPORTED");
    expect(pool.audit().problems).toEqual([]);
    expect(pool.close().count).toBe(0);
  } finally {
    provider.close();
  }
});

test("a custom provider that cannot share makes pool.share() fail with NOT_SUPPORTED, the pool intact", () => {
  const inner = new HostProvider();
  const custom: RegionProvider = new FailingProvider(inner); // no share()
  try {
    const pool = new MemoryPool(custom, { small: { initialCount: 2 } });
    let error: unknown;
    try { pool.share(); } catch (e) { error = e; }
    expect(error).toBeInstanceOf(AllocToolsError);
    expect((error as AllocToolsError).code).toBe("NOT_SUPPORTED");
    expect((error as Error).message).toContain("cannot be shared with Workers");
    expect(pool.isAttached).toBe(false);
    const r = pool.getRegion(10); // still an unshared, working pool
    pool.releaseRegion(r);
    expect(pool.audit().problems).toEqual([]);
    expect(pool.close().count).toBe(0);
  } finally {
    inner.close();
  }
});

test("the pool's stacks are private: no small/medium/large/huge, a pushed index cannot be smuggled in", () => {
  const provider = new HostProvider();
  try {
    using pool = new MemoryPool(provider, { small: { initialCount: 2 } });
    for (const name of ["small", "medium", "large", "huge", "stacks", "regions", "core", "shared"]) expect(name in pool).toBe(false);
    // @ts-expect-error not part of the type any more
    expect(pool.small).toBeUndefined();
    const a = pool.getRegion(10);
    const b = pool.getRegion(10);
    expect(a).not.toBe(b);
    expect(pool.stats().stacks.small.inUse).toBe(2);
    pool.releaseRegion(a);
    pool.releaseRegion(b);
  } finally {
    provider.close();
  }
});

describeFabric("LibfabricProvider shares itself [tcp]", () => {
  test("a view has the owner's domain, info and handles; keys stay unique; close() detaches only", () => {
    const owner = LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" });
    try {
      expect(owner.info.threading).toBe("safe");
      const view = LibfabricProvider.attach(structuredClone(owner.share()));
      expect(view.isAttached).toBe(true);
      expect(view.handles).toEqual(owner.handles);
      expect(view.info).toEqual(owner.info);
      expect(view.sharesDomainWith(owner)).toBe(true);
      expect(owner.sharesDomainWith(view)).toBe(true);
      const buffer = new Uint8Array(4096);
      const address = ptr(buffer);
      const mine = owner.register(address, 4096, 0x3f00);
      const theirs = view.register(address, 4096, 0x3f00);
      expect(theirs.remoteKey).not.toBe(mine.remoteKey); // one counter: no -FI_ENOKEY
      view.deregister(theirs);
      owner.deregister(mine);
      view.close();
      expect(view.closed).toBe(true);
      expect(owner.closed).toBe(false);
      const again = owner.register(address, 4096, 0x3f00); // the domain is still open
      owner.deregister(again);
    } finally {
      owner.close();
    }
  });

  test("attach refuses a closed provider's handle and another process's handle; share() refuses a non-thread-safe domain", () => {
    const owner = LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" });
    const handle = owner.share();
    const view = LibfabricProvider.attach(handle);
    owner.close();
    expect(view.closed).toBe(true); // the owner closed the domain under it
    expect(code(() => view.register(0, 1, 0))).toBe("PROVIDER_CLOSED");
    expect(code(() => LibfabricProvider.attach(handle))).toBe("PROVIDER_CLOSED");
    const child = handleFromChild(`
      import { LibfabricProvider } from "../../lib/index.ts";
      const h = LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" }).share();
      console.log(JSON.stringify({ ...h, keys: null, keyLimit: String(h.keyLimit), info: { ...h.info, caps: String(h.info.caps) } }));`);
    const foreign = { ...child, keys: new SharedArrayBuffer(16) } as unknown as LibfabricProviderHandle;
    expect(code(() => LibfabricProvider.attach(foreign))).toBe("NOT_SUPPORTED");
    // shm honours a lower threading level (tcp always answers FI_THREAD_SAFE).
    const domainOnly = LibfabricProvider.open({ provider: "shm", threading: "domain" });
    try {
      expect(domainOnly.info.threading).toBe("domain");
      expect(code(() => domainOnly.share())).toBe("NOT_SUPPORTED");
      const pool = new MemoryPool(domainOnly, { small: { initialCount: 1 } });
      expect(code(() => pool.share())).toBe("NOT_SUPPORTED");
      expect(pool.close().count).toBe(0);
    } finally {
      domainOnly.close();
    }
  });
});

test("ProviderHandle is plain data: every field survives structuredClone", () => {
  const provider = new HostProvider();
  try {
    const handle: ProviderHandle = provider.share();
    expect(structuredClone(handle)).toEqual(handle);
  } finally {
    provider.close();
  }
});
