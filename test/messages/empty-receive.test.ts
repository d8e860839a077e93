// receive() of a message of 0 bytes on every provider, each in a child process
// (empty-receive-child.ts): sockets dereferenced the iovec of the claim that follows the peek, and
// crashed the process when a 0-byte claim carried none.
import { expect, test } from "bun:test";
import { describeFabric } from "../helpers.ts";

describeFabric("receive() of a 0-byte message", () => {
  for (const provider of ["tcp", "shm", "udp", "sockets"]) {
    test(`[${provider}] a Message of length 0 in a region of the pool, posted first and late`, () => {
      const r = Bun.spawnSync([process.execPath, `${import.meta.dir}/empty-receive-child.ts`, provider], {
        stdout: "pipe", stderr: "pipe", timeout: 30_000, cwd: `${import.meta.dir}/../..`,
      });
      const line = r.stdout.toString().trim().split("\n").at(-1) ?? "";
      if (r.exitCode !== 0 || !line.startsWith("[")) throw new Error(`child exited ${r.exitCode} (signal ${r.signalCode ?? "none"}): ${r.stderr.toString().slice(-1500)}`);
      const message = { length: 0, tag: 3, viewLength: 0, fromPool: true };
      expect(JSON.parse(line)).toEqual([message, message]);
    }, 40_000);
  }
});
