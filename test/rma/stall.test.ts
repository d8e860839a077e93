// A target that only exposes memory keeps progressing after it has completed operations of its
// own (issue 12): an independent C initiator (bench/c/rma-peer.c) writes and reads it back, with
// pauses longer than the progress engine's busy window, over tcp, shm and udp.
import { afterEach, expect, test } from "bun:test";
import { describeCPeer, runCInitiator, startBunTarget, type BunTarget } from "./c-peer.ts";

const CASES = [
  { provider: "tcp", node: "127.0.0.1" },
  { provider: "shm" },
  { provider: "udp", node: "127.0.0.1" },
] as const;

let target: BunTarget | undefined;
afterEach(async () => {
  await target?.stop();
  target = undefined;
});

for (const c of CASES) {
  describeCPeer(`a progressing target keeps serving an independent C peer [${c.provider}]`, (peerPath) => {
    test("after its own write completed, the target serves 4 rounds of write + read-back, 120 ms apart", async () => {
      target = await startBunTarget(c.provider, "node" in c ? c.node : undefined);
      const t = target.info;
      expect(t.completed).toBe(1); // its own operation completed before the peer came
      const r = await runCInitiator(peerPath, c.provider, t,
        ["--test", "check", "--size", "4096", "--iterations", "4", "--pause-ms", "120", "--timeout-ms", "3000"]);
      expect(r.error).toBeUndefined();
      expect(r.ok).toBe(true);
      expect(r.iterations).toBe(4);
    }, 30_000);
  });
}
