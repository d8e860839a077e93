// Issue 21 #7: a plain buffer transferred away while an Endpoint { cache } operation on it is in
// flight. Nothing reachable from JavaScript keeps a buffer's memory where it is across transfer()
// (read-staging.ts says what was tried), so before the fix the transport wrote the read's bytes
// into whatever reused that memory: a freshly allocated, unrelated buffer; and a write sent that
// buffer's bytes to the target and reported success. Now a read lands in the cache's staging
// memory and reaches the caller's view only if its buffer is still there; either operation whose
// buffer was detached in flight fails with AllocToolsError DETACHED.
//
// Each case runs in a child (a stray write can crash): 200 operations, each transferred away in
// flight (transfer(), or transfer(2x) which frees the memory at once), then Bun.gc(true) and 64
// new buffers of the same size, some of which land on the old memory; then the operation ends.
import { afterAll, beforeAll, expect, test } from "bun:test";
import {
  AllocToolsError, Endpoint, LibfabricProvider, MemoryPool, RegistrationCache, type LibfabricProviderOptions, type MemoryRegion, type PeerAddress,
} from "../../lib/index.ts";
import { describeFabric } from "../helpers.ts";

const ITERATIONS = 200;
/** A child takes 1-3 s alone; this machine runs other test suites at the same time. */
const CHILD_TIMEOUT_MS = 60_000;
const NO_BLOCKS = { small: { initialCount: 0 }, medium: { initialCount: 0 }, large: { initialCount: 0 }, huge: { initialCount: 0 } };

interface ChildReport {
  outcomes: Record<string, number>;
  /** Iterations in which a new buffer was allocated on the transferred memory. */
  reused: number;
  /** New, unrelated buffers that received the read's bytes. */
  strayWrites: number;
  /** Writes that reported success although the target did not get the bytes written. */
  silentlyWrong: number;
}

function runChild(provider: string, operation: string, how: string): ChildReport {
  const r = Bun.spawnSync([process.execPath, `${import.meta.dir}/transfer-in-flight-child.ts`, provider, operation, how, String(ITERATIONS)], {
    stdout: "pipe", stderr: "pipe",
  });
  if (r.exitCode !== 0) throw new Error(`child exited with ${r.exitCode} (signal ${r.signalCode ?? "none"}): ${r.stderr.toString()}`);
  return JSON.parse(r.stdout.toString().trim().split("\n").at(-1)!) as ChildReport;
}

for (const provider of ["tcp", "shm"]) {
  describeFabric(`a buffer transferred under an in-flight Endpoint { cache } operation [${provider}]`, () => {
    for (const how of ["transfer", "resize"]) {
      const moved = how === "transfer" ? "transfer(), then GC" : "transfer(2x), which frees the memory at once";
      test(`read, ${moved}: no unrelated buffer ever receives the bytes; every read fails with DETACHED`, () => {
        const report = runChild(provider, "read", how);
        expect(report.reused).toBeGreaterThan(0); // the old memory did go to new buffers
        expect(report.strayWrites).toBe(0);
        expect(report.outcomes).toEqual({ DETACHED: ITERATIONS });
      }, CHILD_TIMEOUT_MS);
      test(`write, ${moved}: never a success with other bytes at the target; every write fails with DETACHED`, () => {
        const report = runChild(provider, "write", how);
        expect(report.reused).toBeGreaterThan(0);
        expect(report.silentlyWrong).toBe(0);
        expect(report.outcomes).toEqual({ DETACHED: ITERATIONS });
      }, CHILD_TIMEOUT_MS);
    }
  });
}

// A user region the caller registered (registerUserRegion, cache.acquire, pool.userRegion) is the
// caller's memory, handed to peers too: the library cannot stage it. Its buffer transferred while
// an operation uses it still must not end in a success: the operation fails with DETACHED.
// (The moved buffer is kept here, so its memory is not reused and nothing can land elsewhere.)
for (const options of [{ provider: "tcp", node: "127.0.0.1" }, { provider: "shm" }] as LibfabricProviderOptions[]) {
  describeFabric(`a user region's buffer transferred under an in-flight operation [${options.provider}]`, () => {
    let local: LibfabricProvider;
    let remote: LibfabricProvider;
    let cache: RegistrationCache;
    let localPool: MemoryPool;
    let pool: MemoryPool;
    let near: Endpoint;
    let far: Endpoint;
    let toFar: PeerAddress;

    beforeAll(() => {
      local = LibfabricProvider.open(options);
      remote = LibfabricProvider.open(options);
      cache = new RegistrationCache(local);
      localPool = new MemoryPool(local, NO_BLOCKS);
      pool = new MemoryPool(remote, NO_BLOCKS);
      near = new Endpoint(local, { timeoutMs: 5000 });
      far = new Endpoint(remote, { timeoutMs: 5000 });
      toFar = near.insert(far.name);
      far.insert(near.name);
    });
    afterAll(() => {
      near.close();
      far.close();
      cache.close();
      localPool.close();
      pool.close();
      local.close();
      remote.close();
    });

    const registrations: [string, (buffer: ArrayBuffer) => MemoryRegion, (region: MemoryRegion) => void][] = [
      ["registerUserRegion", (b) => localPool.registerUserRegion(b), (r) => expect(() => localPool.releaseRegion(r)).toThrow(/no memory any more/)],
      ["cache.acquire", (b) => cache.acquire(b), (r) => cache.release(r)],
      ["pool.userRegion", (b) => localPool.userRegion(b), (r) => localPool.releaseRegion(r)],
    ];
    for (const [how, register, release] of registrations) {
      for (const kind of ["read", "write"] as const) {
        test(`${how}, ${kind}: the operation fails with DETACHED instead of succeeding`, () => {
          const target = pool.getRegion(65_536);
          const buffer = new ArrayBuffer(65_536);
          const region = register(buffer);
          const id = kind === "read" ? near.postRead(region, 65_536, toFar, target.remote()) : near.postWrite(region, 65_536, toFar, target.remote());
          const moved = buffer.transfer(); // held: the memory is not reused
          let error: unknown;
          try {
            while (!near.completed(id)) { near.poll(); far.poll(); }
          } catch (e) {
            error = e;
          }
          expect((error as AllocToolsError).code).toBe("DETACHED");
          expect(moved.byteLength).toBe(65_536);
          release(region);
          pool.releaseRegion(target);
        });
      }
    }
  });
}
