// Each Worker has its own cache (its buffers are its own objects); the keys its registrations get
// stay unique in the domain across Workers, because the provider's key counter is shared.
import { describe, expect, test } from "bun:test";
import { HostProvider, LibfabricProvider, MemoryPool, SIZE_CLASSES, type RegionProvider } from "../../lib/index.ts";
import { describeFabric } from "../helpers.ts";
import type { CacheWorkerReply, CacheWorkerRequest } from "./cache-worker.ts";

const EMPTY = Object.fromEntries(SIZE_CLASSES.map((n) => [n, { initialCount: 0 }]));
const BUFFERS = 20;

function runWorker(request: CacheWorkerRequest): Promise<CacheWorkerReply> {
  const worker = new Worker(new URL("./cache-worker.ts", import.meta.url));
  return new Promise<CacheWorkerReply>((resolve, reject) => {
    worker.onmessage = (e: MessageEvent<CacheWorkerReply>) => resolve(e.data);
    worker.onerror = (e) => reject(new Error(e.message));
    worker.postMessage(request);
  }).finally(() => worker.terminate());
}

async function workersKeepKeysApart(provider: RegionProvider): Promise<void> {
  const pool = new MemoryPool(provider, EMPTY);
  try {
    const handle = pool.share();
    // This thread caches buffers too, while two Workers do.
    const mine = Array.from({ length: BUFFERS }, () => new Uint8Array(4096));
    const replies = Promise.all([0, 1].map(() => runWorker({ handle, buffers: BUFFERS, bytes: 4096 })));
    const ownKeys = mine.map((b) => {
      const r = pool.userRegion(b);
      pool.releaseRegion(r);
      return String(r.remoteKey);
    });
    const [a, b] = await replies;
    for (const reply of [a!, b!]) {
      expect(reply.error).toBeUndefined();
      expect(reply.ok).toBe(true);
      expect(reply.hitKeysMatch).toBe(true);
      expect(reply.bytesSeen).toBe(true);
      expect(reply.stats).toEqual({ hits: BUFFERS, misses: BUFFERS, entries: BUFFERS, inUse: 0 });
      expect(reply.leaks).toBe(0);
    }
    const all = [...ownKeys, ...a!.keys!, ...b!.keys!];
    expect(new Set(all).size).toBe(3 * BUFFERS);
    // This thread's cache saw only its own buffers.
    expect(pool.stats().cache).toMatchObject({ misses: BUFFERS, entries: BUFFERS, hits: 0 });
  } finally {
    expect(pool.close().count).toBe(0);
  }
}

describe("RegistrationCache in Workers [host]", () => {
  test("a cache per Worker; keys unique across Workers", async () => {
    const host = new HostProvider();
    try {
      await workersKeepKeysApart(host);
    } finally {
      host.close();
    }
  });
});

describeFabric("RegistrationCache in Workers [tcp]", () => {
  test("a cache per Worker; keys unique in the domain across Workers", async () => {
    const tcp = LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" });
    try {
      await workersKeepKeysApart(tcp);
    } finally {
      tcp.close();
    }
  });
});
