// Two Bun processes on this host, over each provider: names and RemoteRegion bytes are exchanged
// over the agents' stdin/stdout.
import { describeFabric } from "../helpers.ts";
import { AgentProcess } from "./peers.ts";
import { twoPeerTests } from "./two-peers.ts";

const CASES = [
  { provider: "tcp", node: "127.0.0.1", badKey: "RmaError" },
  { provider: "shm", badKey: "RmaTimeoutError" },
  { provider: "udp", node: "127.0.0.1", badKey: "RmaTimeoutError" },
  { provider: "sockets", node: "127.0.0.1", badKey: "RmaError" },
] as const;

for (const c of CASES) {
  describeFabric(`RMA between two processes [${c.provider}]`, () => {
    const args = ["--provider", c.provider, "--timeout", "1500", ...("node" in c ? ["--node", c.node] : [])];
    twoPeerTests({
      badKey: c.badKey,
      start: async () => {
        const [a, b] = await Promise.all([AgentProcess.start(args), AgentProcess.start(args)]);
        return { a, b };
      },
    });
  });
}
