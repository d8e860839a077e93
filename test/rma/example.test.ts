// The README's RMA example runs as shown and reports sane rows.
import { expect, test } from "bun:test";
import { describeFabric } from "../helpers.ts";

describeFabric("examples/rma-pingpong.ts", () => {
  for (const [provider, mode] of [["tcp", ""], ["shm", ""], ["tcp", "--sync"], ["shm", "--sync"]] as const) {
    test(`runs over ${provider} ${mode} and reports pingpong and bandwidth for pooled and per-message memory`, () => {
      const r = Bun.spawnSync([process.execPath, "examples/rma-pingpong.ts", "--provider", provider, "--sizes", "1,4k,1m", "--iterations", "10", "--json", ...(mode ? [mode] : [])], {
        cwd: `${import.meta.dir}/../..`, stdout: "pipe", stderr: "pipe",
      });
      expect(r.stderr.toString()).toBe("");
      expect(r.exitCode).toBe(0);
      const out = JSON.parse(r.stdout.toString()) as { provider: string; rows: { test: string; memory: string; bytes: number; usecPerXfer: number; mbPerSec: number }[] };
      expect(out.provider).toContain("FI_DELIVERY_COMPLETE");
      expect(out.provider).toContain(mode ? "writeSync" : "promises");
      expect(out.rows.length).toBe(3 * 2 * 2);
      for (const row of out.rows) {
        expect(row.usecPerXfer).toBeGreaterThan(0);
        expect(row.mbPerSec).toBeGreaterThan(0);
      }
      expect(new Set(out.rows.map((x) => `${x.test} ${x.memory}`)).size).toBe(4);
    }, 60_000);
  }
});
