// Issue 25 #2, teardown that explains itself: the owner's provider.close() with a Worker's endpoint
// still open on its domain. A terminated Worker's endpoint is closed by the owner (its thread is
// gone); a running Worker's gets one error naming the Worker and what to do (libfabric said
// EBUSY for the domain, then again for the fabric), and a later close() finishes. Each case runs in
// a child process.
import { expect, test } from "bun:test";
import { describeFabric } from "../helpers.ts";

const CHILD = new URL("./teardown-child.ts", import.meta.url).pathname;

function run(mode: string, provider: string): Record<string, string> {
  const child = Bun.spawnSync([process.execPath, CHILD, mode, provider], { stdout: "pipe", stderr: "pipe", timeout: 30_000 });
  expect(child.stderr.toString()).not.toContain("Segmentation fault");
  expect(child.exitCode).toBe(0);
  return JSON.parse(child.stdout.toString().trim().split("\n").pop()!) as Record<string, string>;
}

describeFabric("provider.close() with a Worker's endpoint still open", () => {
  for (const provider of ["tcp", "shm"]) {
    test(`[${provider}] a terminated Worker's endpoint is closed by the owner: the provider closes without an error`, () => {
      const result = run("terminated", provider);
      expect(result.worker).toBe("endpoint open");
      expect(result.firstClose).toBe("closed");
    }, 60_000);

    test(`[${provider}] a running Worker's endpoint: one BUSY error naming the Worker and what to do, then a second close finishes`, () => {
      const result = run("running", provider);
      expect(result.firstClose).toContain("BUSY");
      expect(result.firstClose).toContain("Worker threadId");
      expect(result.firstClose).toContain("endpoint.close()");
      expect(result.firstClose).not.toContain("EBUSY");
      expect(result.workerClosed).toBe("endpoint closed");
      expect(result.secondClose).toBe("closed");
    }, 60_000);
  }
});
