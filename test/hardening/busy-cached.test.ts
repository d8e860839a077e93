// The BUSY rule covers every region a pool hands out, its cached user regions too (issue 21: the
// same class as defect 4): pool.close() while an RMA operation uses a region from pool.userRegion()
// closed the pool and only then threw BUSY from the cache's close. Now it refuses first, changing
// nothing, as for pooled, temporary and user regions.
import { expect, test } from "bun:test";
import { AllocToolsError, HostProvider, MemoryPool } from "../../lib/index.ts";
import { beginOperation, endOperation, type MemoryRegionImpl } from "../../lib/memory/region.ts";

test("close() while an RMA operation uses a cached user region: BUSY, the pool open and serving; closed once it ends", () => {
  const provider = new HostProvider();
  try {
    const pool = new MemoryPool(provider, { small: { chunkSize: 256, initialCount: 2 } });
    const buffer = new Uint8Array(8192);
    const cached = pool.userRegion(buffer) as MemoryRegionImpl;
    beginOperation(cached); // as an endpoint does while the transport may write into it
    let code: string | undefined;
    try {
      pool.close();
    } catch (e) {
      code = e instanceof AllocToolsError ? e.code : String(e);
    }
    expect(code).toBe("BUSY");
    expect(pool.closed).toBe(false);
    const region = pool.getRegion(100);
    pool.releaseRegion(region);
    expect(pool.stats().cache?.entries).toBe(1);
    endOperation(cached);
    pool.releaseRegion(cached);
    expect(pool.close().count).toBe(0);
    expect(pool.closed).toBe(true);
  } finally {
    provider.close();
  }
});
