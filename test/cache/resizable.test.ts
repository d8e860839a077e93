// Issue 21 #3: the registration cache refuses resizable ArrayBuffers as registerUserRegion does.
// resize() can shrink such a buffer under its registration; the pages past the new length become
// inaccessible, and a cached read in flight (or a peer writing through the key) then crashes the
// process (SIGSEGV on tcp and shm, shown in a child). Every entry point of the cache refuses them
// with registerUserRegion's TypeError, before registering anything; a growable SharedArrayBuffer
// (it only grows) is cached at its length then. An own property cannot hide a resizable buffer.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  AllocToolsError, Endpoint, HostProvider, LibfabricProvider, MemoryPool, RegistrationCache,
  type LibfabricProviderOptions, type PeerAddress,
} from "../../lib/index.ts";
import { pageSize } from "../../ffi/libc.ts";
import { describeFabric, runBun } from "../helpers.ts";

function outcome(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return e instanceof AllocToolsError ? e.code : (e as Error).name;
  }
  return "accepted";
}

/** A resizable buffer, and the kinds of memory a caller can hand over from it. */
function resizableForms(): { buffer: ArrayBuffer; forms: ArrayBufferView[] } {
  const buffer = new ArrayBuffer(4 * pageSize, { maxByteLength: 16 * pageSize });
  return {
    buffer,
    forms: [new Uint8Array(buffer), new Uint8Array(buffer, 0, pageSize), new Float64Array(buffer, 8, 16), new DataView(buffer, 16, 64)],
  };
}

const MESSAGE = /resizable ArrayBuffer.*transferToFixedLength/;

describe("the registration cache refuses resizable ArrayBuffers", () => {
  const host = new HostProvider();
  afterAll(() => host.close());

  test("RegistrationCache.acquire: the buffer and every view of it, with registerUserRegion's TypeError; nothing registered", () => {
    using cache = new RegistrationCache(host);
    const { buffer, forms } = resizableForms();
    for (const memory of [buffer, ...forms]) {
      expect(() => cache.acquire(memory)).toThrow(MESSAGE);
      expect(outcome(() => cache.acquire(memory))).toBe("TypeError");
    }
    expect(cache.stats()).toMatchObject({ entries: 0, registrations: 0, registered: 0, inUse: 0, misses: 0 });
    expect(host.registrations).toBe(0);
    const fixed = cache.acquire(buffer.transferToFixedLength()); // what the message says to do
    expect(fixed.size).toBe(4 * pageSize);
    cache.release(fixed);
  });

  test("pool.userRegion: the same refusal; the pool's books are unchanged", () => {
    using pool = new MemoryPool(host, { small: { initialCount: 0 }, medium: { initialCount: 0 }, large: { initialCount: 0 }, huge: { initialCount: 0 } });
    const before = pool.stats();
    const { buffer, forms } = resizableForms();
    for (const memory of [buffer, ...forms]) {
      expect(() => pool.userRegion(memory)).toThrow(MESSAGE);
      expect(outcome(() => pool.userRegion(memory))).toBe("TypeError");
    }
    const after = pool.stats();
    expect(after.pinnedBytes).toBe(before.pinnedBytes);
    expect(after.registrations).toBe(before.registrations);
    expect(after.cache?.registrations ?? 0).toBe(0);
  });

  test("an own property cannot hide a resizable buffer (cache and registerUserRegion)", () => {
    using cache = new RegistrationCache(host);
    using pool = new MemoryPool(host, { small: { initialCount: 0 }, medium: { initialCount: 0 }, large: { initialCount: 0 }, huge: { initialCount: 0 } });
    const { buffer } = resizableForms();
    Object.defineProperty(buffer, "resizable", { value: false });
    Object.defineProperty(buffer, "maxByteLength", { value: buffer.byteLength });
    expect(outcome(() => cache.acquire(buffer))).toBe("TypeError");
    expect(outcome(() => pool.registerUserRegion(buffer))).toBe("TypeError");
    expect(outcome(() => pool.userRegion(new Uint8Array(buffer)))).toBe("TypeError");
    // Another kind's prototype: not a SharedArrayBuffer for all that; refused with our TypeError.
    const disguised = new ArrayBuffer(pageSize, { maxByteLength: 2 * pageSize });
    Object.setPrototypeOf(disguised, SharedArrayBuffer.prototype);
    expect(() => pool.registerUserRegion(disguised)).toThrow(/takes an ArrayBuffer, SharedArrayBuffer/);
    expect(() => cache.acquire(disguised)).toThrow(/takes an ArrayBuffer, SharedArrayBuffer/);
    expect(host.registrations).toBe(0);
  });

  test("a growable SharedArrayBuffer is cached at its length then; a wider view after grow() registers wider", () => {
    using cache = new RegistrationCache(host);
    const sab = new SharedArrayBuffer(2 * pageSize, { maxByteLength: 8 * pageSize });
    const tracking = new Uint8Array(sab); // length-tracking
    const first = cache.acquire(tracking);
    expect(first.size).toBe(2 * pageSize);
    cache.release(first);
    sab.grow(8 * pageSize);
    const old = cache.acquire(new Uint8Array(sab, 0, 2 * pageSize)); // a hit: inside the registration
    expect(cache.stats()).toMatchObject({ hits: 1, misses: 1 });
    expect(old.view.byteLength).toBe(2 * pageSize); // fixed: the region never tracks the buffer
    cache.release(old);
    const wider = cache.acquire(tracking); // now 8 pages: the registration grows
    expect(wider.size).toBe(8 * pageSize);
    expect(cache.stats()).toMatchObject({ misses: 2, registrations: 1 });
    cache.release(wider);
  });
});

for (const options of [{ provider: "tcp", node: "127.0.0.1" }, { provider: "shm" }] as LibfabricProviderOptions[]) {
  describeFabric(`Endpoint { cache } refuses resizable views before posting [${options.provider}]`, () => {
    let local: LibfabricProvider;
    let remote: LibfabricProvider;
    let cache: RegistrationCache;
    let pool: MemoryPool;
    let near: Endpoint;
    let far: Endpoint;
    let toFar: PeerAddress;

    beforeAll(() => {
      local = LibfabricProvider.open(options);
      remote = LibfabricProvider.open(options);
      cache = new RegistrationCache(local);
      pool = new MemoryPool(remote);
      near = new Endpoint(local, { cache, timeoutMs: 3000 });
      far = new Endpoint(remote, { timeoutMs: 3000 });
      toFar = near.insert(far.name);
      far.insert(near.name);
    });
    afterAll(() => {
      near.close();
      far.close();
      cache.close();
      pool.close();
      local.close();
      remote.close();
    });

    test("every form of read and write: TypeError, nothing posted, nothing registered", () => {
      const target = pool.getRegion(pageSize);
      const posted = near.stats().posted;
      const { forms } = resizableForms();
      for (const view of forms) {
        const n = Math.min(view.byteLength, 64);
        for (const post of [
          () => near.read(view, n, toFar, target.remote()), () => near.write(view, n, toFar, target.remote()),
          () => near.readSync(view, n, toFar, target.remote()), () => near.writeSync(view, n, toFar, target.remote()),
          () => near.postRead(view, n, toFar, target.remote()), () => near.postWrite(view, n, toFar, target.remote()),
        ]) {
          expect(post).toThrow(MESSAGE);
        }
      }
      expect(near.stats().posted).toBe(posted);
      expect(cache.stats()).toMatchObject({ entries: 0, registrations: 0, inUse: 0 });
      pool.releaseRegion(target);
    });
  });

  describeFabric(`a resizable buffer shrunk under a cached read [${options.provider}]`, () => {
    // Before the refusal: the read was posted into the buffer's pages, resize(0) made them
    // inaccessible, and the transport's copy crashed the process (exit 139). Now: refused.
    test("in a child, 10 times: the read is refused with the TypeError, the process lives", () => {
      const r = runBun(`
        import { Endpoint, LibfabricProvider, MemoryPool, RegistrationCache } from "./lib/index.ts";
        const options = ${JSON.stringify(options)};
        const local = LibfabricProvider.open(options);
        const remote = LibfabricProvider.open(options);
        const cache = new RegistrationCache(local);
        const pool = new MemoryPool(remote);
        const near = new Endpoint(local, { cache, timeoutMs: 3000 });
        const far = new Endpoint(remote, { timeoutMs: 3000 });
        const toFar = near.insert(far.name);
        far.insert(near.name);
        const SIZE = 8 << 20;
        const source = pool.getRegion(SIZE);
        source.view.fill(7);
        const outcomes = [];
        for (let i = 0; i < 10; i++) {
          const buffer = new ArrayBuffer(SIZE, { maxByteLength: SIZE });
          try {
            const reading = near.read(new Uint8Array(buffer, 0, SIZE), SIZE, toFar, source.remote());
            buffer.resize(0); // the pages under the registration go away
            await reading;
            outcomes.push("read");
          } catch (e) {
            outcomes.push(e.name); // AllocToolsTypeError's name is TypeError
          }
        }
        near.close(); far.close(); cache.close(); pool.releaseRegion(source); pool.close(); local.close(); remote.close();
        console.log(JSON.stringify(outcomes));
      `);
      expect(r.exitCode).toBe(0);
      expect(JSON.parse(r.stdout.trim().split("\n").at(-1)!)).toEqual(Array(10).fill("TypeError"));
    }, 60_000); // a child: seconds under this machine's load
  });
}
