// Two "hosts" for UCX: network namespaces joined by a veth pair (see test/rma/peers.ts), one agent
// in each, over tcp restricted to the veth (UCX_NET_DEVICES), so every byte crosses the link; and
// over shared memory, which the namespaces do not separate (that shows a network namespace does
// not get in its way, not that shared memory crosses hosts: it cannot). Needs root and iproute2.
import { afterAll, beforeAll, describe, test } from "bun:test";
import { spawnSync } from "bun";
import { describeUcx } from "../helpers.ts";
import { AgentProcess, NamespacePair } from "../rma/peers.ts";
import { UCX_AGENT, ucxTwoPeerTests } from "./two-peers.ts";

const unavailable = NamespacePair.unavailable();
const required = process.env.ALLOCTOOLS_REQUIRE_NETNS === "1";

/** The veth end inside namespace `ns` (its only veth) and whether its carrier is up. */
function vethIn(ns: string): { name: string; running: boolean } {
  const r = spawnSync(["ip", "-n", ns, "-j", "link", "show", "type", "veth"], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`ip link show in ${ns} failed: ${r.stderr.toString()}`);
  const [link] = JSON.parse(r.stdout.toString()) as { ifname: string; operstate: string }[];
  if (!link) throw new Error(`no veth in namespace ${ns}`);
  return { name: link.ifname, running: link.operstate === "UP" };
}

/** UCX's tcp transport lists only interfaces whose operational state is up (it lags the link by ~0.3 s): wait for both. */
async function waitForCarrier(pair: NamespacePair): Promise<void> {
  const deadline = performance.now() + 5000;
  while (!(vethIn(pair.a).running && vethIn(pair.b).running)) {
    if (performance.now() > deadline) throw new Error("the veth pair's carrier did not come up within 5 s");
    await Bun.sleep(20);
  }
}

if (unavailable && !required) {
  console.warn(`[alloctools] skipping UCX RMA between namespaces: ${unavailable}`);
  describe.skip("UCX RMA between two network namespaces", () => { test("needs root and ip", () => {}); });
} else {
  describeUcx("UCX RMA between two network namespaces", () => {
    const pair = new NamespacePair(`u${process.pid}`);
    beforeAll(async () => {
      if (unavailable) throw new Error(`ALLOCTOOLS_REQUIRE_NETNS=1 but: ${unavailable}`);
      pair.destroy();
      pair.create();
      await waitForCarrier(pair);
    });
    afterAll(() => pair.destroy());

    describe("tcp over the veth", () => {
      ucxTwoPeerTests({
        oneSided: false,
        wireBytes: () => pair.receivedByB(),
        start: async () => {
          const args = ["--transports", "tcp", "--timeout", "1500"];
          const [a, b] = await Promise.all([
            AgentProcess.start([...args, "--net-devices", vethIn(pair.a).name], pair.a, 15_000, UCX_AGENT),
            AgentProcess.start([...args, "--net-devices", vethIn(pair.b).name], pair.b, 15_000, UCX_AGENT),
          ]);
          return { a, b };
        },
      });
    });

    describe("shared memory, UCX-allocated blocks", () => {
      ucxTwoPeerTests({
        oneSided: true,
        start: async () => {
          const args = ["--transports", "posix,cma", "--allocate", "true", "--timeout", "1500"];
          const [a, b] = await Promise.all([
            AgentProcess.start(args, pair.a, 15_000, UCX_AGENT),
            AgentProcess.start(args, pair.b, 15_000, UCX_AGENT),
          ]);
          return { a, b };
        },
      });
    });
  });
}
