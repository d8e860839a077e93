// Issue 25 #1, progress by default: an endpoint progresses on the event loop from the moment it
// opens, so a target that never calls startProgress() serves its peers (over tcp a write needs the
// target's progress); the timer is unref'd, so a process with an idle endpoint still exits by
// itself; `progress: "manual"` opts out (the write then times out, naming what to check).
import { expect, test } from "bun:test";
import { Endpoint, LibfabricProvider, MemoryPool, RemoteRegion, RmaTimeoutError } from "../../lib/index.ts";
import { describeFabric } from "../helpers.ts";

const TARGET = new URL("./auto-progress-target.ts", import.meta.url).pathname;

async function writeTo(progress: "auto" | "manual"): Promise<{ outcome: unknown; written: number }> {
  const child = Bun.spawn([process.execPath, TARGET, progress], { stdout: "pipe", stderr: "inherit" });
  const reader = child.stdout.getReader();
  let text = "";
  const nextLine = async (): Promise<string> => {
    while (!text.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`target ended early: ${text}`);
      text += new TextDecoder().decode(value);
    }
    const line = text.slice(0, text.indexOf("\n"));
    text = text.slice(text.indexOf("\n") + 1);
    return line;
  };
  const { name, remote } = JSON.parse(await nextLine()) as { name: string; remote: string };
  const provider = LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" });
  const pool = new MemoryPool(provider);
  const endpoint = new Endpoint(provider, { timeoutMs: 1500 });
  const local = pool.getRegion(64);
  local.view.fill(7);
  let outcome: unknown = "done";
  try {
    endpoint.writeSync(local, 64, endpoint.insert(name), RemoteRegion.parse(remote));
  } catch (e) {
    outcome = e;
  }
  const { written } = JSON.parse(await nextLine()) as { written: number };
  await child.exited;
  endpoint.close();
  provider.close();
  return { outcome, written };
}

describeFabric("progress by default", () => {
  test("a tcp target that never asked for progress serves a peer's write", async () => {
    const { outcome, written } = await writeTo("auto");
    expect(outcome).toBe("done");
    expect(written).toBe(7);
  }, 30_000);

  test("progress: \"manual\" opts out: the write times out, and the error says what to check", async () => {
    const { outcome, written } = await writeTo("manual");
    expect(outcome).toBeInstanceOf(RmaTimeoutError);
    expect((outcome as Error).message).toContain("progress");
    expect(written).toBe(0);
  }, 30_000);

  test("a process whose only endpoint is idle exits by itself (the timer is unref'd)", async () => {
    const child = Bun.spawn([process.execPath, TARGET, "auto", "idle"], { stdout: "pipe", stderr: "pipe" });
    const started = performance.now();
    const code = await Promise.race([child.exited, Bun.sleep(10_000).then(() => "still running")]);
    if (code === "still running") child.kill();
    expect(code).toBe(0);
    expect(performance.now() - started).toBeLessThan(10_000);
  }, 30_000);
});
