// Issue 21 #5: shm endpoints of different threads of one process are peers through each other's
// own mappings (libfabric's process-global name list), so an endpoint closed in one thread must not
// unmap what an endpoint of another thread still touches. Each round runs in a child process.
import { expect, test } from "bun:test";
import { describeFabric } from "../helpers.ts";

const ROUNDS = Number(process.env.ALLOCTOOLS_ACROSS_THREADS_ROUNDS ?? 4);
const CHILD = new URL("./shm-across-threads-child.ts", import.meta.url).pathname;

describeFabric("shm endpoints of two threads, one closing while the other is parked", () => {
  for (const mode of ["initiator-leaves", "target-leaves"] as const) {
    test(`${mode}: no signal, the parked thread progresses and closes everything; ${ROUNDS} rounds`, () => {
      for (let round = 0; round < ROUNDS; round++) {
        const run = Bun.spawnSync([process.execPath, CHILD, mode], { stdout: "pipe", stderr: "pipe", timeout: 30_000 });
        const stderr = run.stderr.toString();
        expect(stderr).not.toContain("Segmentation fault");
        expect(run.exitCode).toBe(0);
        const result = JSON.parse(run.stdout.toString().trim().split("\n").pop()!) as { outcome: string; closed: boolean };
        expect(result.closed).toBe(true);
        if (mode === "target-leaves") expect(result.outcome).toBe("RmaTimeoutError");
      }
    }, 120_000);
  }
});
