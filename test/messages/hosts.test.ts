// Tagged messages between two "hosts": network namespaces made for this run and joined by a veth
// pair (test/rma/peers.ts NamespacePair), over tcp bound to the namespaces' addresses. Senders A
// and C in one namespace, receiver B in the other. Needs root and iproute2; CI runs as root.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { describeFabric } from "../helpers.ts";
import { NamespacePair } from "../rma/peers.ts";
import { MessageAgent } from "./message-agents.ts";
import { processMessageTests } from "./process-tests.ts";

const unavailable = NamespacePair.unavailable();
const required = process.env.ALLOCTOOLS_REQUIRE_NETNS === "1";

if (unavailable && !required) {
  console.warn(`[alloctools] skipping messages between namespaces: ${unavailable}`);
  describe.skip("tagged messages between two network namespaces", () => { test("needs root and ip", () => {}); });
} else {
  describeFabric("tagged messages between two network namespaces [tcp]", () => {
    // Its own pair of namespaces (the RMA tests make theirs): a tag of its own keeps the names apart.
    const pair = new NamespacePair(`m${process.pid}`);
    let wireBefore = 0;
    beforeAll(() => {
      if (unavailable) throw new Error(`ALLOCTOOLS_REQUIRE_NETNS=1 but: ${unavailable}`);
      pair.destroy();
      pair.create();
      wireBefore = pair.receivedByB();
    }, 30_000);
    afterAll(() => {
      // The messages really crossed the link between the namespaces: 64 MiB twice, at least.
      const crossed = pair.receivedByB() - wireBefore;
      pair.destroy();
      expect(crossed).toBeGreaterThan(2 * (64 << 20));
    });

    processMessageTests({
      largest: 64 << 20,
      start: async () => {
        const args = ["--provider", "tcp"];
        const [a, c, b] = await Promise.all([
          MessageAgent.start([...args, "--node", pair.addressA], pair.a),
          MessageAgent.start([...args, "--node", pair.addressA], pair.a),
          MessageAgent.start([...args, "--node", pair.addressB], pair.b),
        ]);
        return { a, b, c };
      },
    });
  });
}
