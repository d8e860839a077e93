// A target that only exposes memory keeps progressing after it has completed operations of its
// own (issue 12): an independent C initiator (bench/c/rma-peer.c) writes and reads it back, with
// pauses longer than the progress engine's busy window, over tcp, shm and udp.
import { afterEach, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { describeCPeer, runCInitiator, type CTarget } from "./c-peer.ts";

const CASES = [
  { provider: "tcp", node: "127.0.0.1" },
  { provider: "shm" },
  { provider: "udp", node: "127.0.0.1" },
] as const;

let target: Subprocess<"pipe", "pipe", "pipe"> | undefined;
afterEach(async () => {
  target?.stdin.end();
  const exited = await Promise.race([target?.exited, Bun.sleep(5000).then(() => null)]);
  if (exited === null) target?.kill(9);
  target = undefined;
});

async function startTarget(provider: string, node?: string): Promise<CTarget & { completed: number }> {
  target = Bun.spawn([process.execPath, `${import.meta.dir}/stall-target.ts`, "--provider", provider, ...(node ? ["--node", node] : [])], {
    stdin: "pipe", stdout: "pipe", stderr: "pipe", cwd: `${import.meta.dir}/../..`,
  });
  const reader = target.stdout.getReader();
  let text = "";
  const deadline = Date.now() + 15_000;
  while (!text.includes("\n") && Date.now() < deadline) {
    const chunk = await Promise.race([reader.read(), Bun.sleep(15_000).then(() => null)]);
    if (chunk === null || chunk.done) break;
    text += new TextDecoder().decode(chunk.value);
  }
  reader.releaseLock();
  if (!text.includes("\n")) throw new Error(`stall target did not start: ${text} ${await new Response(target.stderr).text()}`);
  return { ...(JSON.parse(text.split("\n")[0]!) as CTarget & { completed: number }), ...(node ? { node } : {}) };
}

for (const c of CASES) {
  describeCPeer(`a progressing target keeps serving an independent C peer [${c.provider}]`, (peerPath) => {
    test("after its own write completed, the target serves 4 rounds of write + read-back, 120 ms apart", async () => {
      const t = await startTarget(c.provider, "node" in c ? c.node : undefined);
      expect(t.completed).toBe(1); // its own operation completed before the peer came
      const r = await runCInitiator(peerPath, c.provider, t,
        ["--test", "check", "--size", "4096", "--iterations", "4", "--pause-ms", "120", "--timeout-ms", "3000"]);
      expect(r.error).toBeUndefined();
      expect(r.ok).toBe(true);
      expect(r.iterations).toBe(4);
    }, 30_000);
  });
}
