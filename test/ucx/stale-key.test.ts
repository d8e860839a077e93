// UCX keys are not access control: a peer holding the key of a region whose pool has closed can
// still write to its address, and over emulated RMA the target's own UCX does the store. The pool
// keeps a UCX provider's freed blocks mapped over fresh zero pages (keepsFreedMemoryMapped), so
// the write lands in nothing instead of killing the target (it was a SIGSEGV). In a child process.
import { expect, test } from "bun:test";
import { describeUcx } from "../helpers.ts";

const CHILD = new URL("./stale-key-child.ts", import.meta.url).pathname;

describeUcx("a write through a closed pool's key", () => {
  for (const transports of ["tcp", "posix,cma"]) {
    test(`[${transports}] the target lives: the block's range stayed mapped, the write lands in zero pages`, () => {
      const run = Bun.spawnSync([process.execPath, CHILD, transports], { stdout: "pipe", stderr: "pipe", timeout: 30_000 });
      expect(run.stderr.toString()).not.toContain("Segmentation fault");
      expect(run.exitCode).toBe(0);
      const result = JSON.parse(run.stdout.toString().trim().split("\n").pop()!) as { mapped: boolean; outcome: string };
      expect(result).toEqual({ mapped: true, outcome: "wrote" });
    }, 60_000);
  }
});
