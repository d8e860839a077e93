// RegistrationCache logic over the host provider (real mlock, VmLck read back): exactness per
// buffer object, one registration for many views, growth, invalidation of detached buffers,
// resizable buffers refused, LRU eviction under each limit, in-use entries never evicted, bad
// input and close.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { AllocToolsError, HostProvider, MemoryPool, RegistrationCache, type MemoryRegion, type RegionProvider } from "../../lib/index.ts";
import { pageSize } from "../../ffi/libc.ts";
import { vmLckKiB } from "../helpers.ts";
import { beginOperation, endOperation, type MemoryRegionImpl } from "../../lib/memory/region.ts";

function code(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return e instanceof AllocToolsError ? e.code : (e as Error).name;
  }
  return "no error";
}

let provider: HostProvider;
let cache: RegistrationCache;
beforeEach(() => {
  provider = new HostProvider();
  cache = new RegistrationCache(provider, { maxEntries: 64, maxBytes: 64 << 20 });
});
afterEach(() => {
  cache.close();
  provider.close();
});

describe("acquire and release", () => {
  test("a user, cached region over exactly the bytes of the view, with usable keys", () => {
    const buffer = new ArrayBuffer(10_000);
    const bytes = new Uint8Array(buffer);
    bytes.forEach((_, i) => { bytes[i] = i & 0xff; });
    const view = new Float64Array(buffer, 800, 100);
    const r = cache.acquire(view);
    expect(r.isUser).toBe(true);
    expect(r.isCached).toBe(true);
    expect(r.isTemp).toBe(false);
    expect(r.size).toBe(800);
    expect(r.view.byteOffset).toBe(800);
    expect(r.view.buffer).toBe(buffer);
    expect(r.view[0]).toBe(800 & 0xff);
    expect(r.remoteKey).toBe(r.localKey);
    expect(r.remoteAddress).toBe(BigInt(r.address)); // host addresses virtually
    expect(r.address - r.baseAddress).toBe(800); // the whole (small) buffer is registered
    cache.release(r);
    expect(cache.stats()).toMatchObject({ hits: 0, misses: 1, entries: 1, inUse: 0, registrations: 1 });
  });

  test("a hit reuses the registration and, for the same view range, the region object", () => {
    const view = new Uint8Array(new ArrayBuffer(1 << 16), 4096, 4096);
    const first = cache.acquire(view);
    cache.release(first);
    const again = cache.acquire(new Uint8Array(view.buffer, 4096, 4096));
    expect(again).toBe(first);
    cache.release(again);
    expect(cache.stats()).toMatchObject({ hits: 1, misses: 1, registrations: 1 });
    expect(provider.registrations).toBe(1);
  });

  test("the same view acquired twice gives two regions, each released once", () => {
    const view = new Uint8Array(8192);
    const a = cache.acquire(view);
    const b = cache.acquire(view);
    expect(b).not.toBe(a);
    expect(cache.stats().inUse).toBe(2);
    cache.release(a);
    cache.release(b);
    expect(code(() => cache.release(a))).toBe("DOUBLE_RELEASE");
    expect(cache.stats().inUse).toBe(0);
  });

  test("1,000 views into one 1 MiB ArrayBuffer cost one registration", () => {
    const buffer = new ArrayBuffer(1 << 20);
    const held: MemoryRegion[] = [];
    for (let i = 0; i < 1000; i++) {
      const r = cache.acquire(new Uint8Array(buffer, i * 1048, 1000));
      expect(r.address - r.baseAddress).toBe(i * 1048);
      if (i % 3 === 0) held.push(r);
      else cache.release(r);
    }
    for (const r of held) cache.release(r);
    expect(cache.stats()).toMatchObject({ misses: 1, hits: 999, registrations: 1, registered: 1, entries: 1 });
    expect(provider.registrations).toBe(1);
  });

  test("overlapping views share the registration and see each other's bytes", () => {
    const buffer = new ArrayBuffer(3 * pageSize);
    const a = cache.acquire(new Uint8Array(buffer, 100, 2 * pageSize));
    const b = cache.acquire(new Uint8Array(buffer, pageSize, 2 * pageSize));
    expect(a.remoteKey).toBe(b.remoteKey);
    b.view[0] = 42;
    expect(a.view[pageSize - 100]).toBe(42);
    cache.release(a);
    cache.release(b);
    expect(provider.registrations).toBe(1);
  });

  test("Buffer.allocUnsafe: every Buffer its own ArrayBuffer, each an entry, bounded by maxEntries", () => {
    const small = new RegistrationCache(provider, { maxEntries: 8 });
    try {
      for (let i = 0; i < 100; i++) small.release(small.acquire(Buffer.allocUnsafe(64)));
      const s = small.stats();
      expect(s.misses).toBe(100);
      expect(s.entries).toBe(8);
      expect(s.evictions).toBe(92);
      expect(s.registrations).toBe(8);
    } finally {
      small.close();
    }
  });
});

describe("growth of a large buffer's registration", () => {
  test("pages around the view, clipped to the buffer; a wider view grows it; the old one lives while held", () => {
    const big = new RegistrationCache(provider, { wholeBufferBytes: 64 * 1024 });
    try {
      const buffer = new ArrayBuffer(1 << 20);
      const a = big.acquire(new Uint8Array(buffer, 10, 100));
      const base = a.baseAddress;
      expect(a.address - base).toBeLessThan(pageSize);
      expect((base % pageSize === 0) || a.address - base === 10).toBe(true); // page-aligned, or the buffer's start
      const b = big.acquire(new Uint8Array(buffer, 500_000, 1000));
      expect(b.remoteKey).not.toBe(a.remoteKey);
      expect(big.stats()).toMatchObject({ misses: 2, registrations: 2, entries: 1 });
      big.release(a); // the first registration's last holder: deregistered now
      expect(big.stats().registrations).toBe(1);
      expect(provider.registrations).toBe(1);
      // The grown registration covers the first view too.
      const c = big.acquire(new Uint8Array(buffer, 10, 100));
      expect(c.remoteKey).toBe(b.remoteKey);
      big.release(b);
      big.release(c);
      expect(big.stats().hits).toBe(1);
    } finally {
      big.close();
    }
  });

  test("views walked through in order grow the registration geometrically", () => {
    const big = new RegistrationCache(provider, { wholeBufferBytes: 4096 });
    try {
      const buffer = new ArrayBuffer(4 << 20);
      for (let at = 0; at < buffer.byteLength; at += 16_384) big.release(big.acquire(new Uint8Array(buffer, at, 16_384)));
      expect(big.stats().registered).toBeLessThanOrEqual(10); // log2(4 MiB / 16 KiB) + 1, not 256
      expect(big.stats().registrations).toBe(1);
    } finally {
      big.close();
    }
  });
});

describe("stale registrations (the trackers' cases, in JavaScript)", () => {
  test("an entry keeps its buffer alive: the address is not reused while registered", () => {
    let address = 0;
    (() => {
      const r = cache.acquire(new Uint8Array(1 << 16));
      address = r.address;
      cache.release(r);
    })();
    Bun.gc(true);
    const others = Array.from({ length: 64 }, () => new Uint8Array(1 << 16));
    const r = cache.acquire(others[0]!);
    expect(others.every((o) => cache.acquire(o).address !== address)).toBe(true);
    cache.release(r);
  });

  test("the cache references a buffer exactly while it is registered", () => {
    let weak: WeakRef<ArrayBuffer> | undefined;
    (() => {
      const buffer = new ArrayBuffer(8192);
      weak = new WeakRef(buffer);
      cache.release(cache.acquire(new Uint8Array(buffer, 100, 200)));
    })();
    Bun.gc(true);
    expect(weak!.deref()).toBeDefined(); // cached: held
    cache.flush();
    Bun.gc(true);
    expect(weak!.deref()).toBeUndefined(); // deregistered: free to go
  });

  test("transfer() of a cached buffer: invalidated and deregistered at the next lookup", () => {
    const buffer = new ArrayBuffer(8192);
    cache.release(cache.acquire(buffer));
    const moved = buffer.transfer();
    expect(code(() => cache.acquire(buffer))).toBe("DETACHED");
    expect(cache.stats()).toMatchObject({ invalidations: 1, entries: 0, registrations: 0 });
    expect(provider.registrations).toBe(0);
    // The new owner is another object: a miss, never the old registration.
    const r = cache.acquire(moved);
    expect(cache.stats().misses).toBe(2);
    cache.release(r);
  });

  test("transfer() of a cached buffer: dropped on the next eviction scan and by flush()", () => {
    const small = new RegistrationCache(provider, { maxEntries: 2 });
    try {
      const a = new ArrayBuffer(4096);
      const b = new ArrayBuffer(4096);
      small.release(small.acquire(b));
      small.release(small.acquire(a)); // a is the newest: LRU alone would evict b
      a.transfer();
      small.release(small.acquire(new ArrayBuffer(4096))); // needs room: the scan drops a, not b
      expect(small.stats()).toMatchObject({ invalidations: 1, evictions: 0, entries: 2 });
      small.release(small.acquire(b));
      expect(small.stats().hits).toBe(1);
      b.transfer();
      small.flush();
      expect(small.stats()).toMatchObject({ invalidations: 2, entries: 0, registrations: 0 });
    } finally {
      small.close();
    }
  });

  test("beyond 32 entries each eviction scan checks 32 in turn: every detached buffer goes within a few scans", () => {
    const big = new RegistrationCache(provider, { maxEntries: 100 });
    try {
      const buffers = Array.from({ length: 100 }, () => new ArrayBuffer(64));
      for (const b of buffers) big.release(big.acquire(b));
      for (const b of buffers.slice(90)) b.transfer(); // the newest ten: LRU alone would keep them
      let scans = 0;
      while (big.stats().invalidations < 10 && scans < 20) {
        big.release(big.acquire(new ArrayBuffer(64)));
        scans++;
      }
      expect(big.stats().invalidations).toBe(10);
      expect(scans).toBeLessThanOrEqual(Math.ceil(100 / 32) + 1);
      expect(provider.registrations).toBe(big.stats().registrations);
    } finally {
      big.close();
    }
  });

  test("a resizable ArrayBuffer is never cached (it could shrink under the registration): TypeError", () => {
    const buffer = new ArrayBuffer(3 * pageSize, { maxByteLength: 8 * pageSize });
    expect(code(() => cache.acquire(new Uint8Array(buffer, 0, 3 * pageSize)))).toBe("TypeError");
    expect(cache.stats()).toMatchObject({ entries: 0, misses: 0, registrations: 0 });
    expect(provider.registrations).toBe(0);
  });

  test("a region held across a transfer fails its use check with DETACHED", () => {
    const buffer = new ArrayBuffer(4096);
    const r = cache.acquire(buffer);
    buffer.transfer();
    expect(code(() => cache.assertUsable("write", r as never))).toBe("DETACHED");
    cache.release(r);
  });
});

describe("eviction", () => {
  test("LRU under maxEntries: the least recently released entry goes first", () => {
    const small = new RegistrationCache(provider, { maxEntries: 3 });
    try {
      const buffers = [0, 1, 2].map(() => new ArrayBuffer(4096));
      for (const b of buffers) small.release(small.acquire(b));
      small.release(small.acquire(buffers[0]!)); // 0 is now the newest; 1 the oldest
      small.release(small.acquire(new ArrayBuffer(4096)));
      expect(small.stats().evictions).toBe(1);
      small.release(small.acquire(buffers[0]!));
      small.release(small.acquire(buffers[2]!));
      expect(small.stats().hits).toBe(3);
      small.release(small.acquire(buffers[1]!));
      expect(small.stats().misses).toBe(5);
    } finally {
      small.close();
    }
  });

  test("a growing entry that is the oldest is kept; the next oldest goes", () => {
    const small = new RegistrationCache(provider, { maxBytes: 6 * pageSize });
    try {
      const growing = new SharedArrayBuffer(pageSize, { maxByteLength: 4 * pageSize });
      const other = new ArrayBuffer(2 * pageSize);
      small.release(small.acquire(growing));
      small.release(small.acquire(other)); // LRU: growing (oldest), other
      growing.grow(4 * pageSize); // 1 + 2 + 4 pages > 6: room needed
      const r = small.acquire(new Uint8Array(growing));
      expect(r.size).toBe(4 * pageSize);
      expect(small.stats()).toMatchObject({ evictions: 1, entries: 1, bytes: 4 * pageSize });
      small.release(r);
    } finally {
      small.close();
    }
  });

  test("under maxBytes", () => {
    const small = new RegistrationCache(provider, { maxBytes: 3 * 16_384 });
    try {
      for (let i = 0; i < 10; i++) small.release(small.acquire(new ArrayBuffer(16_384)));
      expect(small.stats()).toMatchObject({ entries: 3, bytes: 3 * 16_384, evictions: 7 });
      expect(code(() => small.acquire(new ArrayBuffer(4 * 16_384)))).toBe("CACHE_FULL");
      expect(small.stats()).toMatchObject({ entries: 3, registrations: 3 }); // refused before evicting
    } finally {
      small.close();
    }
  });

  test("an entry in use is never evicted; with everything in use, CACHE_FULL leaves the books intact", () => {
    const small = new RegistrationCache(provider, { maxEntries: 2 });
    try {
      const a = small.acquire(new ArrayBuffer(4096));
      const b = small.acquire(new ArrayBuffer(4096));
      const before = small.stats();
      expect(code(() => small.acquire(new ArrayBuffer(4096)))).toBe("CACHE_FULL");
      expect(small.stats()).toEqual(before);
      expect(provider.registrations).toBe(2);
      small.release(a);
      const c = small.acquire(new ArrayBuffer(4096)); // a, unused, goes
      expect(small.stats()).toMatchObject({ evictions: 1, entries: 2, inUse: 2 });
      expect(b.view.byteLength).toBe(4096);
      small.release(b);
      small.release(c);
    } finally {
      small.close();
    }
  });

  test("flush() deregisters every unused entry and keeps those in use", () => {
    const held = cache.acquire(new ArrayBuffer(4096));
    for (let i = 0; i < 5; i++) cache.release(cache.acquire(new ArrayBuffer(4096)));
    expect(cache.flush()).toBe(5);
    expect(cache.stats()).toMatchObject({ entries: 1, inUse: 1, registrations: 1 });
    cache.release(held);
  });
});

describe("locked memory follows the live entries (VmLck)", () => {
  test("acquire pins, eviction and flush unpin", () => {
    const size = 256 * pageSize;
    const before = vmLckKiB();
    const buffers = [0, 1, 2].map(() => new ArrayBuffer(size));
    for (const b of buffers) cache.release(cache.acquire(b));
    expect(vmLckKiB() - before).toBeGreaterThanOrEqual((3 * size) / 1024);
    cache.flush();
    expect(vmLckKiB()).toBe(before);
  });
});

describe("bad input gets typed errors and leaves nothing registered", () => {
  test("non-buffers, empty and detached buffers", () => {
    for (const bad of [null, undefined, 42, "bytes", {}, [1, 2], { byteLength: 4, buffer: new ArrayBuffer(4) },
      Object.create(ArrayBuffer.prototype), new Proxy(new Uint8Array(4), {})]) {
      expect(code(() => cache.acquire(bad as never))).toBe("TypeError");
    }
    expect(code(() => cache.acquire(new ArrayBuffer(0)))).toBe("RangeError");
    expect(code(() => cache.acquire(new Uint8Array(new ArrayBuffer(16), 8, 0)))).toBe("RangeError");
    const gone = new ArrayBuffer(16);
    gone.transfer();
    expect(code(() => cache.acquire(gone))).toBe("DETACHED");
    expect(cache.stats()).toMatchObject({ entries: 0, registrations: 0, misses: 0 });
    expect(provider.registrations).toBe(0);
  });

  test("a view that lies about its range (own properties): a RangeError or a region inside its buffer, never outside", () => {
    const buffer = new ArrayBuffer(4096);
    const honest = new Uint8Array(buffer, 0, 16);
    cache.release(cache.acquire(honest));
    const registrations = provider.registrations;
    for (const [name, value] of [["byteOffset", 1 << 20], ["byteOffset", NaN], ["byteOffset", 1.5], ["byteOffset", -8],
      ["byteLength", 1 << 20], ["byteLength", NaN], ["byteLength", 0.5], ["byteLength", Infinity]] as const) {
      const liar = new Uint8Array(buffer, 0, 16);
      Object.defineProperty(liar, name, { value });
      expect({ name, value, error: code(() => cache.acquire(liar)) }).toEqual({ name, value, error: "RangeError" });
    }
    // Lying about the buffer: whichever real buffer it names is the one registered, nothing else.
    const other = new ArrayBuffer(64);
    const liar = new Uint8Array(buffer, 0, 16);
    Object.defineProperty(liar, "buffer", { value: other });
    const r = cache.acquire(liar);
    expect(r.view.buffer).toBe(other);
    expect(r.size).toBe(16);
    cache.release(r);
    const fake = new Uint8Array(buffer, 0, 16);
    Object.defineProperty(fake, "buffer", { value: { byteLength: 16 } });
    expect(code(() => cache.acquire(fake))).toBe("TypeError");
    expect(provider.registrations).toBe(registrations + 1);
    expect(cache.stats().inUse).toBe(0);
  });

  test("DataViews: served, and a detached one gets DETACHED", () => {
    const buffer = new ArrayBuffer(4096);
    const view = new DataView(buffer, 100, 200);
    const r = cache.acquire(view);
    expect(r.address - r.baseAddress).toBe(100);
    expect(r.size).toBe(200);
    cache.release(r);
    cache.release(cache.acquire(view));
    expect(cache.stats()).toMatchObject({ hits: 1, misses: 1 });
    buffer.transfer();
    expect(code(() => cache.acquire(view))).toBe("DETACHED");
    expect(cache.stats()).toMatchObject({ invalidations: 1, registrations: 0 });
  });

  test("release: foreign, look-alike and proxied regions; release twice", () => {
    const other = new RegistrationCache(provider);
    const pool = new MemoryPool(provider, { small: { initialCount: 1 }, medium: { initialCount: 0 }, large: { initialCount: 0 }, huge: { initialCount: 0 } });
    try {
      const mine = cache.acquire(new ArrayBuffer(64));
      const theirs = other.acquire(new ArrayBuffer(64));
      const pooled = pool.getRegion(64);
      expect(code(() => cache.release(theirs))).toBe("FOREIGN_REGION");
      expect(code(() => cache.release(pooled))).toBe("FOREIGN_REGION");
      expect(code(() => cache.release({ ...mine } as never))).toBe("TypeError");
      expect(code(() => cache.release(new Proxy(mine, {}) as never))).toBe("TypeError");
      expect(code(() => cache.release(null as never))).toBe("TypeError");
      expect(cache.stats().inUse).toBe(1);
      cache.release(mine);
      expect(code(() => cache.release(mine))).toBe("DOUBLE_RELEASE");
      other.release(theirs);
      pool.releaseRegion(pooled);
    } finally {
      other.close();
      pool.close();
    }
  });

  test("a region in RMA flight is not released, nor its cache closed (BUSY)", () => {
    const r = cache.acquire(new ArrayBuffer(64)) as MemoryRegionImpl;
    beginOperation(r); // as an endpoint does at post
    expect(code(() => cache.release(r))).toBe("BUSY");
    expect(code(() => cache.close())).toBe("BUSY");
    expect(cache.closed).toBe(false);
    expect(provider.registrations).toBe(1);
    endOperation(r);
    cache.release(r);
  });

  test("options are checked", () => {
    expect(code(() => new RegistrationCache(provider, { maxEntries: 0 }))).toBe("RangeError");
    expect(code(() => new RegistrationCache(provider, { maxBytes: -1 }))).toBe("RangeError");
    expect(code(() => new RegistrationCache(provider, { maxEntries: 1.5 }))).toBe("RangeError");
    expect(code(() => new RegistrationCache({} as never))).toBe("TypeError");
    const closed = new HostProvider();
    closed.close();
    expect(code(() => new RegistrationCache(closed))).toBe("PROVIDER_CLOSED");
  });

  test("use after close(): typed errors; close deregisters everything, held regions included, and is idempotent", () => {
    const before = vmLckKiB();
    const held = cache.acquire(new ArrayBuffer(64 * pageSize));
    cache.release(cache.acquire(new ArrayBuffer(64 * pageSize)));
    cache.close();
    cache.close();
    expect(provider.registrations).toBe(0);
    expect(vmLckKiB()).toBe(before);
    expect(code(() => cache.acquire(new ArrayBuffer(64)))).toBe("CACHE_CLOSED");
    expect(code(() => cache.release(held))).toBe("CACHE_CLOSED");
    expect(code(() => cache.flush())).toBe("CACHE_CLOSED");
    expect(held.isCached).toBe(true);
    using disposable = new RegistrationCache(provider);
    disposable.release(disposable.acquire(new ArrayBuffer(64)));
  });

  test("close() tries every registration when the provider refuses one, then throws the first error", () => {
    const refusal = new Error("deregistration refused");
    let refused = 0;
    const refusing: RegionProvider = {
      name: "host", kind: "host", virtualAddressing: true,
      get closed() { return provider.closed; },
      register: (address, length, access) => provider.register(address, length, access),
      deregister: (registration) => {
        if (refused++ === 0) throw refusal;
        provider.deregister(registration);
      },
      close: () => {},
    };
    const flaky = new RegistrationCache(refusing);
    for (let buffer = 0; buffer < 3; buffer++) flaky.release(flaky.acquire(new ArrayBuffer(pageSize)));
    expect(() => flaky.close()).toThrow(refusal);
    expect(refused).toBe(3); // the refused one, then the two after it
    expect(provider.registrations).toBe(1); // only the refused registration is left
    expect(flaky.closed).toBe(true);
  });
});

describe("a cache never closed", () => {
  test("the garbage-collection backstop deregisters its registrations, and warns", async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on("warning", onWarning);
    const before = vmLckKiB();
    let weak: WeakRef<RegistrationCache> | undefined;
    (() => {
      const lost = new RegistrationCache(provider);
      weak = new WeakRef(lost);
      lost.release(lost.acquire(new ArrayBuffer(16 * pageSize)));
      lost.acquire(new ArrayBuffer(16 * pageSize)); // held, and lost with the cache
    })();
    expect(provider.registrations).toBe(2);
    for (let i = 0; i < 20 && provider.registrations > 0; i++) {
      Bun.gc(true);
      await Bun.sleep(10);
    }
    process.off("warning", onWarning);
    expect(weak!.deref()).toBeUndefined();
    expect(provider.registrations).toBe(0);
    expect(vmLckKiB()).toBe(before);
    expect(warnings.some((w) => w.includes("RegistrationCache was garbage-collected without close(); deregistered 2"))).toBe(true);
  });
});

describe("pool.userRegion", () => {
  const POOL = { small: { initialCount: 4 }, medium: { initialCount: 0 }, large: { initialCount: 0 }, huge: { initialCount: 0 } };

  test("cached, released with releaseRegion (or using), counted in stats()", () => {
    const pool = new MemoryPool(provider, POOL);
    try {
      const buffer = new ArrayBuffer(1 << 16);
      const r = pool.userRegion(new Uint8Array(buffer, 100, 1000));
      expect(r.isUser && r.isCached).toBe(true);
      const pinned = pool.stats().pinnedBytes;
      pool.releaseRegion(r);
      const again = pool.userRegion(new Uint8Array(buffer, 2000, 10));
      expect(again.remoteKey).toBe(r.remoteKey);
      (again as unknown as Disposable)[Symbol.dispose](); // a region's dispose releases it to the cache
      expect(pool.stats().cache).toMatchObject({ hits: 1, misses: 1, inUse: 0, entries: 1, bytes: 1 << 16 });
      expect(pool.stats().pinnedBytes).toBe(pinned);
      expect(pinned).toBeGreaterThanOrEqual(1 << 16);
      // registerUserRegion stays uncached.
      const raw = pool.registerUserRegion(buffer);
      expect(raw.isCached).toBe(false);
      expect(raw.remoteKey).not.toBe(r.remoteKey);
      pool.releaseRegion(raw);
    } finally {
      expect(pool.close().count).toBe(0);
    }
    expect(provider.registrations).toBe(0);
  });

  test("maxPinnedBytes: unused cached entries are evicted when the pool needs room; in-use ones are not", () => {
    const pool = new MemoryPool(provider, { ...POOL, small: { initialCount: 0 }, maxPinnedBytes: 4 * 65_536 });
    try {
      const held = pool.userRegion(new ArrayBuffer(65_536));
      for (let i = 0; i < 3; i++) pool.releaseRegion(pool.userRegion(new ArrayBuffer(65_536)));
      expect(pool.stats().pinnedBytes).toBe(4 * 65_536);
      // The large stack grows by one 64 KiB block: the cache gives back its oldest unused entry.
      const large = pool.getRegion(65_536);
      expect(pool.stats().cache).toMatchObject({ evictions: 1, entries: 3, inUse: 1 });
      expect(pool.stats().pinnedBytes).toBe(4 * 65_536);
      pool.releaseRegion(large);
      // A new cached buffer makes room the same way; once only the held entry is left, PINNED_LIMIT.
      pool.releaseRegion(pool.userRegion(new ArrayBuffer(65_536)));
      expect(code(() => pool.userRegion(new ArrayBuffer(4 * 65_536)))).toBe("PINNED_LIMIT");
      expect(held.view.byteLength).toBe(65_536);
      pool.releaseRegion(held);
    } finally {
      pool.close();
    }
    expect(provider.registrations).toBe(0);
  });

  test("close() reports cached regions still out and deregisters them", () => {
    const pool = new MemoryPool(provider, POOL);
    pool.userRegion(new ArrayBuffer(4096));
    pool.releaseRegion(pool.userRegion(new ArrayBuffer(4096)));
    const report = pool.close();
    expect(report.count).toBe(1);
    expect(report.regions[0]).toMatchObject({ kind: "user", size: 4096 });
    expect(provider.registrations).toBe(0);
    expect(code(() => pool.userRegion(new ArrayBuffer(4096)))).toBe("POOL_CLOSED");
  });
});
