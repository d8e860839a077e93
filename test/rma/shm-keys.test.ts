// What a key protects on shm (libfabric 1.17), confirmed with an independent C peer against a Bun
// target: an initiator that does not ask for FI_DELIVERY_COMPLETE takes shm's CMA fast path
// (process_vm_writev/readv), which never checks the key, so a wrong key still writes and reads the
// target's memory. With FI_DELIVERY_COMPLETE (what Endpoint asks for) the same wrong key never
// completes. docs/rma.md and the README say so; this test keeps them honest.
import { afterEach, expect, test } from "bun:test";
import { describeCPeer, runCInitiator, startBunTarget, type BunTarget } from "./c-peer.ts";

let target: BunTarget | undefined;
afterEach(async () => {
  await target?.stop();
  target = undefined;
});

describeCPeer("shm: a key is no protection against a peer that skips delivery-complete", (peerPath) => {
  test("a C peer without FI_DELIVERY_COMPLETE writes and reads back through a wrong key", async () => {
    target = await startBunTarget("shm");
    const wrongKey = { ...target.info, key: String(BigInt(target.info.key) + 1000n) };
    const r = await runCInitiator(peerPath, "shm", wrongKey,
      ["--test", "check", "--size", "4096", "--iterations", "2", "--no-delivery-complete", "--timeout-ms", "2000"]);
    expect(r.error).toBeUndefined();
    expect(r.ok).toBe(true); // the pattern written through the wrong key was read back through it
  }, 30_000);

  test("the same wrong key with FI_DELIVERY_COMPLETE never completes", async () => {
    target = await startBunTarget("shm");
    const wrongKey = { ...target.info, key: String(BigInt(target.info.key) + 1000n) };
    const r = await runCInitiator(peerPath, "shm", wrongKey, ["--test", "check", "--size", "4096", "--iterations", "1", "--timeout-ms", "1000"]);
    expect(r.error).toMatch(/timed out/);
  }, 30_000);
});
