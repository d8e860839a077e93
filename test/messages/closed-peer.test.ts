// Sends to a peer that closed, on tcp and shm, each in a child process (closed-peer-child.ts): an
// endpoint of this process that closed is refused before anything is posted (on shm the send
// wrote into the closed endpoint's unmapped region and crashed the process); to a peer process
// that exited, a send is lost (fi_tinject returns before anything is known), fails or times out,
// never hangs and never outlives close().
import { expect, test } from "bun:test";
import { describeFabric } from "../helpers.ts";

function runChild(provider: string, where: string): { outcomes: Record<string, string>; pinnedAfterSends: number } {
  const r = Bun.spawnSync([process.execPath, `${import.meta.dir}/closed-peer-child.ts`, provider, where], {
    stdout: "pipe", stderr: "pipe", timeout: 60_000, cwd: `${import.meta.dir}/../..`,
  });
  const line = r.stdout.toString().trim().split("\n").at(-1) ?? "";
  if (r.exitCode !== 0 || !line.startsWith("{")) throw new Error(`child exited ${r.exitCode} (signal ${r.signalCode ?? "none"}): ${r.stderr.toString().slice(-2000)}`);
  return JSON.parse(line);
}

for (const provider of ["tcp", "shm"]) {
  describeFabric(`a send to a closed peer [${provider}]`, () => {
    test("an endpoint of this process that closed: ENDPOINT_CLOSED before anything is posted, at every size", () => {
      const { outcomes, pinnedAfterSends } = runChild(provider, "local");
      expect(outcomes).toEqual({ 8: "AllocToolsError ENDPOINT_CLOSED", 5000: "AllocToolsError ENDPOINT_CLOSED", 100000: "AllocToolsError ENDPOINT_CLOSED" });
      expect(pinnedAfterSends).toBe(0);
    }, 60_000);

    test("a peer process that exited: a send is lost, fails or times out, never hangs; close() ends them", () => {
      const { outcomes } = runChild(provider, "remote");
      // An inject-sized send returns at once while the provider has not seen the peer go (the
      // message is lost); once it has, tcp;ofi_rxm answers -FI_EAGAIN while it tries to reconnect,
      // and the send is posted again until its timeout.
      expect(outcomes[8]).toMatch(/^(sent|RmaTimeoutError ETIMEDOUT)$/);
      for (const size of [5000, 100000]) expect(outcomes[size]).toMatch(/^(sent|RmaError ENOTCONN|RmaError ECONNRESET|RmaTimeoutError ETIMEDOUT)$/);
      expect(outcomes[100000]).not.toBe("sent"); // a rendezvous needs the receiver
    }, 60_000);
  });
}
