// A process killed with SIGKILL leaves its shm endpoints' files in /dev/shm, under libfabric's
// default names (pid:uid:index). A later process given the same pid (pids wrap, at 32768 by
// default) would fail fi_enable with EBUSY on the first of those names. Endpoint names its shm
// endpoints itself, so the stale files are no obstacle: a child process lays them out under its
// own pid before opening any endpoint, then opens two and writes between them.
import { expect, test } from "bun:test";
import { describeFabric, runBun } from "../helpers.ts";

describeFabric("shm endpoint names", () => {
  test("stale /dev/shm files under this pid's default names do not stop an Endpoint from opening", () => {
    const r = runBun(`
      import { writeFileSync, unlinkSync } from "node:fs";
      import { Endpoint, LibfabricProvider, MemoryPool } from "./lib/index.ts";
      const uid = process.getuid!();
      const stale = Array.from({ length: 16 }, (_, i) => "/dev/shm/" + process.pid + ":" + uid + ":" + i);
      for (const path of stale) writeFileSync(path, "left by a killed process");
      try {
        const provider = LibfabricProvider.open({ provider: "shm" });
        const a = new Endpoint(provider);
        const b = new Endpoint(provider);
        const pool = new MemoryPool(provider);
        const source = pool.getRegion(64);
        const target = pool.getRegion(64);
        source.view.fill(0x5a);
        await a.write(source, 64, a.insert(b.name), target.remote());
        console.log(JSON.stringify({ byte: target.view[63], names: [a.name, b.name].map((n) => new TextDecoder().decode(n)) }));
        a.close(); b.close(); pool.close(); provider.close();
      } finally {
        for (const path of stale) unlinkSync(path);
      }
    `);
    expect(r.stderr).not.toContain("EBUSY");
    expect(r.exitCode).toBe(0);
    const out = JSON.parse(r.stdout.trim()) as { byte: number; names: string[] };
    expect(out.byte).toBe(0x5a);
    expect(new Set(out.names).size).toBe(2);
  });
});
