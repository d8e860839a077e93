// The C reference peer (bench/c/rma-peer.c) from tests: built with cc at test time, run as an
// independent libfabric process. Without a compiler or headers, tests that need it skip with the
// reason, and fail instead under ALLOCTOOLS_REQUIRE_LIBFABRIC=1 (CI has gcc and libfabric-dev).
import { describe, test } from "bun:test";
import { rmaPeer } from "../../bench/c/build.ts";
import { describeFabric, fabric, REQUIRE_LIBFABRIC } from "../helpers.ts";

/** What the C initiator prints on success. */
export interface CResult {
  ok?: true;
  error?: string;
  test?: string;
  iterations?: number;
  usecPerOp?: number;
}

/** describe() for tests that need libfabric and the C peer. */
export function describeCPeer(name: string, body: (peerPath: string) => void): void {
  if (!fabric.available) {
    describeFabric(name, () => body(""));
    return;
  }
  const peer = rmaPeer();
  if ("path" in peer) {
    describe(name, () => body(peer.path));
  } else if (REQUIRE_LIBFABRIC) {
    describe(name, () => {
      test("the C peer is required (ALLOCTOOLS_REQUIRE_LIBFABRIC=1)", () => {
        throw new Error(`the C peer could not be built: ${peer.missing}`);
      });
    });
  } else {
    console.warn(`[alloctools] skipped: ${name}: C peer not built: ${peer.missing}`);
    describe.skip(name, () => body(""));
  }
}

/** The target a C initiator is pointed at. */
export interface CTarget {
  name: string;
  address: string;
  key: string;
  length: number;
  node?: string;
}

/** Runs the C initiator against `target`; resolves with its JSON line (killed after `timeoutMs`). */
export async function runCInitiator(peerPath: string, provider: string, target: CTarget, options: string[], timeoutMs = 20_000): Promise<CResult> {
  const args = [peerPath, "initiator", provider, "--name", target.name, "--address", target.address, "--key", target.key,
    "--length", String(target.length), ...(target.node ? ["--node", target.node] : []), ...options];
  const proc = Bun.spawn(args, { stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill(9), timeoutMs);
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  const line = out.trim().split("\n").pop() ?? "";
  try {
    return JSON.parse(line) as CResult;
  } catch {
    return { error: `C initiator exited ${code} without a result: ${out}${err}` };
  }
}

/** A Bun target process (stall-target.ts): an Endpoint with startProgress() exposing a pooled region. */
export interface BunTarget {
  readonly info: CTarget & { completed: number };
  stop(): Promise<void>;
}

/** Starts test/rma/stall-target.ts and reads its ready line. */
export async function startBunTarget(provider: string, node?: string): Promise<BunTarget> {
  const proc = Bun.spawn([process.execPath, `${import.meta.dir}/stall-target.ts`, "--provider", provider, ...(node ? ["--node", node] : [])], {
    stdin: "pipe", stdout: "pipe", stderr: "pipe", cwd: `${import.meta.dir}/../..`,
  });
  const stop = async () => {
    proc.stdin.end();
    const exited = await Promise.race([proc.exited, Bun.sleep(5000).then(() => null)]);
    if (exited === null) proc.kill(9);
  };
  const reader = proc.stdout.getReader();
  let text = "";
  const deadline = Date.now() + 15_000;
  while (!text.includes("\n") && Date.now() < deadline) {
    const chunk = await Promise.race([reader.read(), Bun.sleep(15_000).then(() => null)]);
    if (chunk === null || chunk.done) break;
    text += new TextDecoder().decode(chunk.value);
  }
  reader.releaseLock();
  if (!text.includes("\n")) {
    await stop();
    throw new Error(`target did not start: ${text} ${await new Response(proc.stderr).text()}`);
  }
  const info = { ...(JSON.parse(text.split("\n")[0]!) as CTarget & { completed: number }), ...(node ? { node } : {}) };
  return { info, stop };
}
