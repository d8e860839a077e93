// The measurement of docs/messaging.md (test/messages/unexpected-memory.ts) in small: it runs,
// every late receive gets its message intact, and it reports what it measured. The figures in the
// docs come from the full run (10^4 × 64 B, 100 × 4 MiB).
import { expect, test } from "bun:test";
import { describeFabric } from "../helpers.ts";

describeFabric("unexpected-message memory, measured small", () => {
  for (const provider of ["tcp", "shm"]) {
    test(`[${provider}] 500 × 64 B and 3 × 4 MiB wait unexpected, then late receives get them all`, () => {
      const r = Bun.spawnSync([process.execPath, `${import.meta.dir}/unexpected-memory.ts`, "--provider", provider, "--count", "500", "--size", "64", "--count", "3", "--size", String(4 << 20)], {
        stdout: "pipe", stderr: "pipe", timeout: 90_000, cwd: `${import.meta.dir}/../..`,
      });
      expect(r.exitCode).toBe(0);
      const rows = r.stdout.toString().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, number>);
      expect(rows.map((row) => [row.count, row.size, row.wrong])).toEqual([[500, 64, 0], [3, 4 << 20, 0]]);
      for (const row of rows) for (const field of ["beforeKiB", "waitingKiB", "afterKiB", "receiveMs", "senderPending"]) expect(Number.isFinite(row[field])).toBe(true);
    }, 100_000);
  }
});
