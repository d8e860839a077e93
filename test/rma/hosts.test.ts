// Two "hosts": network namespaces made for this run and joined by a veth pair (10.231.0.1 and
// 10.231.0.2, inside the namespaces only), one agent in each, over tcp, udp and sockets bound to
// the namespaces' addresses. shm is in the list too: it never touches the network, and the two
// namespaces still share this host's /dev/shm and process space, so it works across them (that
// shows a network namespace does not get in its way, not that shm crosses hosts: it cannot).
// Needs root and iproute2; CI runs as root.
import { afterAll, beforeAll, describe, test } from "bun:test";
import { describeFabric } from "../helpers.ts";
import { AgentProcess, NamespacePair } from "./peers.ts";
import { twoPeerTests } from "./two-peers.ts";

const CASES = [
  { provider: "tcp", badKey: "RmaError", bind: true },
  { provider: "shm", badKey: "RmaTimeoutError", bind: false },
  { provider: "udp", badKey: "RmaTimeoutError", bind: true },
  { provider: "sockets", badKey: "RmaError", bind: true },
] as const;

const unavailable = NamespacePair.unavailable();
const required = process.env.ALLOCTOOLS_REQUIRE_NETNS === "1";

if (unavailable && !required) {
  console.warn(`[alloctools] skipping RMA between namespaces: ${unavailable}`);
  describe.skip("RMA between two network namespaces", () => { test("needs root and ip", () => {}); });
} else {
  describeFabric("RMA between two network namespaces", () => {
    const pair = new NamespacePair();
    beforeAll(() => {
      if (unavailable) throw new Error(`ALLOCTOOLS_REQUIRE_NETNS=1 but: ${unavailable}`);
      pair.destroy(); // left over from a crashed run with the same pid
      pair.create();
    });
    afterAll(() => pair.destroy());

    for (const c of CASES) {
      describe(c.provider, () => {
        twoPeerTests({
          badKey: c.badKey,
          ...(c.bind ? { wireBytes: () => pair.receivedByB() } : {}),
          start: async () => {
            const args = ["--provider", c.provider, "--timeout", "1500"];
            const [a, b] = await Promise.all([
              AgentProcess.start([...args, ...(c.bind ? ["--node", pair.addressA] : [])], pair.a),
              AgentProcess.start([...args, ...(c.bind ? ["--node", pair.addressB] : [])], pair.b),
            ]);
            return { a, b };
          },
        });
      });
    }
  });
}
