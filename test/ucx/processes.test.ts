// Two Bun processes on this host over UCX, on tcp (loopback) and on shared memory with
// UCX-allocated blocks and with our own blocks: worker addresses and RemoteRegion bytes cross over
// the agents' stdin/stdout.
import { describeUcx } from "../helpers.ts";
import { AgentProcess } from "../rma/peers.ts";
import { UCX_AGENT, ucxTwoPeerTests } from "./two-peers.ts";

const CASES = [
  { label: "tcp", args: ["--transports", "tcp", "--net-devices", "lo"], oneSided: false },
  { label: "shm, UCX-allocated blocks", args: ["--transports", "posix,cma", "--allocate", "true"], oneSided: true },
  { label: "shm, own blocks", args: ["--transports", "sysv,cma", "--allocate", "false"], oneSided: false },
] as const;

for (const c of CASES) {
  describeUcx(`UCX RMA between two processes [${c.label}]`, () => {
    const args = [...c.args, "--timeout", "1500"];
    ucxTwoPeerTests({
      oneSided: c.oneSided,
      start: async () => {
        const [a, b] = await Promise.all([AgentProcess.start(args, undefined, 15_000, UCX_AGENT), AgentProcess.start(args, undefined, 15_000, UCX_AGENT)]);
        return { a, b };
      },
    });
  });
}
