// Issue 10 #1 with a real Endpoint (tcp, one process): a read in flight pins its local region.
// Closing the pool or releasing a temporary region refuses with BUSY until the read completes, and
// a pool dropped during the read is not collected under it. Needs the endpoint's side of the
// pinning (beginOperation/endOperation around each operation). In a child: the failure it guards
// against is a SIGSEGV.
import { expect, test } from "bun:test";
import { describeFabric, runBun } from "../helpers.ts";

describeFabric("a real read in flight pins its local memory [tcp]", () => {
  test("close() and the release of a temporary region refuse with BUSY while the read is pending; both work after", () => {
    const r = runBun(`
      import { Endpoint, LibfabricProvider, MemoryPool } from "./lib/index.ts";
      const small = { small: { chunkSize: 256, initialCount: 1 }, medium: { chunkSize: 4096, initialCount: 1 },
        large: { chunkSize: 65536, initialCount: 1 }, huge: { chunkSize: 1 << 20, initialCount: 1 } };
      const code = (f) => { try { f(); return "none"; } catch (e) { return e.code ?? e.name; } };
      const [pa, pb] = [0, 1].map(() => LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" }));
      const [poolA, poolB] = [pa, pb].map((p) => new MemoryPool(p, small));
      const [a, b] = [pa, pb].map((p) => new Endpoint(p, { timeoutMs: 10000 }));
      const peer = a.insert(b.name);
      b.insert(a.name);
      const target = poolB.getRegion(2 << 20); // a temporary region on the target side
      target.view.fill(7);
      const local = poolA.getRegion(2 << 20); // and one as local memory
      const read = a.read(local, 2 << 20, peer, target.remote());
      const during = { inFlight: local.inFlight, close: code(() => poolA.close()), release: code(() => poolA.releaseRegion(local)) };
      await read;
      const after = { inFlight: local.inFlight, byte: local.view[(2 << 20) - 1], release: code(() => poolA.releaseRegion(local)) };
      const leaks = poolA.close().count;
      for (const p of [pa, pb]) p.close();
      console.log(JSON.stringify({ during, after, leaks }));
    `);
    expect(r.exitCode).toBe(0);
    const out = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
    expect(out.during).toEqual({ inFlight: 1, close: "BUSY", release: "BUSY" });
    expect(out.after).toEqual({ inFlight: 0, byte: 7, release: "none" });
    expect(out.leaks).toBe(0);
  });

  test("a pool dropped while a read into it is pending is not collected; the read completes into mapped memory", () => {
    const r = runBun(`
      import { Endpoint, LibfabricProvider, MemoryPool } from "./lib/index.ts";
      const warnings = [];
      process.on("warning", (w) => warnings.push(w.message));
      const [pa, pb] = [0, 1].map(() => LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" }));
      const poolB = new MemoryPool(pb);
      const [a, b] = [pa, pb].map((p) => new Endpoint(p, { timeoutMs: 10000 }));
      const peer = a.insert(b.name);
      b.insert(a.name);
      const target = poolB.getRegion(1 << 20);
      target.view.fill(3);
      // Only the pending operation references the pool now (through its region); a second read
      // from another pool takes the endpoint's scratch reference to the last local region.
      const read = (() => { const pool = new MemoryPool(pa); return a.read(pool.getRegion(1 << 20), 1 << 20, peer, target.remote()); })();
      const other = new MemoryPool(pa);
      const second = a.read(other.getRegion(64), 64, peer, target.remote().subregion(0, 64));
      for (let i = 0; i < 5; i++) Bun.gc(true);
      await Promise.all([read, second]);
      console.log(JSON.stringify({ collectedDuringRead: warnings.length }));
    `);
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout.trim().split("\n").at(-1)!)).toEqual({ collectedDuringRead: 0 });
  });
});
