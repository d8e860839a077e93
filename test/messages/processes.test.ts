// Tagged messages between Bun processes on this host, over tcp and shm: three agents
// (test/messages/agent.ts), names exchanged over their stdin/stdout.
import { describeFabric } from "../helpers.ts";
import { MessageAgent } from "./message-agents.ts";
import { processMessageTests } from "./process-tests.ts";

const CASES = [
  { provider: "tcp", args: ["--provider", "tcp", "--node", "127.0.0.1"] },
  { provider: "shm", args: ["--provider", "shm"] },
] as const;

for (const c of CASES) {
  describeFabric(`tagged messages between processes [${c.provider}]`, () => {
    processMessageTests({
      largest: 64 << 20,
      start: async () => {
        const [a, b, c2] = await Promise.all([MessageAgent.start([...c.args]), MessageAgent.start([...c.args]), MessageAgent.start([...c.args])]);
        return { a, b, c: c2 };
      },
    });
  });
}
