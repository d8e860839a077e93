// A Worker with its own registration cache: it attaches to a shared pool, registers its own
// buffers through pool.userRegion (a miss, then a hit each), and posts back the keys and books.
import { MemoryPool, type SharedPoolHandle } from "../../lib/index.ts";

declare const self: Worker;

export interface CacheWorkerRequest {
  handle: SharedPoolHandle;
  buffers: number;
  bytes: number;
}

export interface CacheWorkerReply {
  ok: boolean;
  error?: string;
  keys?: string[];
  hitKeysMatch?: boolean;
  bytesSeen?: boolean;
  stats?: { hits: number; misses: number; entries: number; inUse: number } | null;
  leaks?: number;
}

self.onmessage = (event: MessageEvent<CacheWorkerRequest>) => {
  const { handle, buffers, bytes } = event.data;
  try {
    const pool = MemoryPool.attach(handle);
    const keys: string[] = [];
    let hitKeysMatch = true;
    let bytesSeen = true;
    for (let i = 0; i < buffers; i++) {
      const buffer = new Uint8Array(bytes).fill(i + 1);
      const miss = pool.userRegion(buffer);
      keys.push(String(miss.remoteKey));
      pool.releaseRegion(miss);
      const hit = pool.userRegion(buffer.subarray(10, 20));
      hitKeysMatch &&= hit.remoteKey === miss.remoteKey;
      bytesSeen &&= hit.view[0] === i + 1;
      pool.releaseRegion(hit);
    }
    const cache = pool.stats().cache;
    const report = pool.close();
    const reply: CacheWorkerReply = {
      ok: true, keys, hitKeysMatch, bytesSeen, leaks: report.count,
      stats: cache === null ? null : { hits: cache.hits, misses: cache.misses, entries: cache.entries, inUse: cache.inUse },
    };
    self.postMessage(reply);
  } catch (e) {
    self.postMessage({ ok: false, error: (e as Error)?.stack ?? String(e) } satisfies CacheWorkerReply);
  }
};
