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
