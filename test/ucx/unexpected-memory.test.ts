// The unexpected-message measurement of docs/messaging.md (test/ucx/unexpected-memory.ts) runs, on
// fewer messages: every unexpected message, eager and rendezvous, is received intact once its
// receive is posted late, and the script reports the receiver's memory for each batch.
import { expect, setDefaultTimeout, test } from "bun:test";
import { describeUcx } from "../helpers.ts";

setDefaultTimeout(120_000);

describeUcx("UCX unexpected-message memory (the measurement script, fewer messages)", () => {
  for (const args of [["--transports", "tcp"], ["--transports", "posix,cma", "--allocate", "true"]]) {
    test(`${args.join(" ")}: 2000 x 64 B and 4 x 4 MiB sent before any receive all arrive; the held memory is reported`, async () => {
      const run = Bun.spawn([process.execPath, `${import.meta.dir}/unexpected-memory.ts`, ...args, "--small", "2000", "--large", "4"], { stdout: "pipe", stderr: "pipe" });
      const [stdout, stderr, code] = await Promise.all([new Response(run.stdout).text(), new Response(run.stderr).text(), run.exited]);
      expect({ code, stderr: code === 0 ? "" : stderr }).toEqual({ code: 0, stderr: "" });
      const lines = stdout.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as { count: number; length: number; received: number; heldKiB: number; sendError?: unknown });
      expect(lines.map((l) => [l.count, l.length, l.received, l.sendError, typeof l.heldKiB])).toEqual([[2000, 64, 2000, undefined, "number"], [4, 4 << 20, 4, undefined, "number"]]);
    });
  }
});
