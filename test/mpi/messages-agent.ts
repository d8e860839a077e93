// One rank of an MPI messaging test job: `mpirun -n N bun test/mpi/messages-agent.ts <scenario>...`.
// Opens the job, a provider, a pool and an MpiEndpoint over them, runs the scenarios in order
// (message-scenarios.ts, atomic-scenarios.ts, cost-scenarios.ts, interop-scenarios.ts), closes, and
// reports its checks and facts (rank-checks.ts). A scenario that throws reports and ends the job
// at once: another rank may be waiting for this one in a collective.
import { MpiJob } from "../../lib/index.ts";
import { atomicBadInput, counter, lock } from "./atomic-scenarios.ts";
import { allocation, unexpectedMemory } from "./cost-scenarios.ts";
import { cPeer } from "./interop-scenarios.ts";
import { abortRace, forms, ordering, refusals, server, toSelf, truncation, wildcards } from "./message-scenarios.ts";
import { RankChecks } from "./rank-checks.ts";
import { closeContext, openContext, type RankContext } from "./rank-context.ts";

const scenarios: Record<string, (c: RankContext) => Promise<void>> = {
  forms, wildcards, refusals, truncation, ordering, "abort-race": abortRace, server, "to-self": toSelf,
  counter, lock, "atomic-bad-input": atomicBadInput, allocation, "unexpected-memory": unexpectedMemory, "c-peer": cPeer,
};

const job = MpiJob.open();
const t = new RankChecks(job.rank);
t.facts.size = job.size;
const context = openContext(job, t);
for (const name of process.argv.slice(2)) {
  const scenario = scenarios[name];
  if (scenario === undefined) throw new Error(`unknown scenario ${name}; known: ${Object.keys(scenarios).join(", ")}`);
  const started = performance.now();
  try {
    await scenario(context);
  } catch (e) {
    t.check(`${name} ran to the end`, false, e instanceof Error ? `${e.stack}` : String(e));
    t.report();
    process.exit(1);
  }
  t.facts[`${name}Ms`] = Math.round(performance.now() - started);
}
closeContext(context);
job.close();
t.report();
