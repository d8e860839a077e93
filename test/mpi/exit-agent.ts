// One rank of the exit tests (test/mpi/exit.test.ts):
//   mpirun -n N bun test/mpi/exit-agent.ts <how> <leaving rank> <where the others wait>
// The leaving rank ends its process with the job still open, `how`: "exit-0" (process.exit(0)),
// "exit-3" (process.exit(3)), "throw" (an uncaught exception), "reject" (an unhandled rejection),
// "kill" (SIGKILL) or "hangup" (SIGHUP). The other ranks wait for it in `where`: "barrier",
// "barrier-async" or "allgather", which it never reaches.
// Jobs whose ranks all end normally: "end-open" (no rank closes its job: the exit hook finalizes),
// "close" (every rank closes), "mixed" (even ranks close their job, odd ones leave it open); with
// "provider" after it, each rank also opens an MpiProvider, a pool and an endpoint, which "close"
// closes and the others leave open on every rank (closing a provider is collective).
// With "shm" anywhere after the first argument, every rank first opens a libfabric shm endpoint
// (one /dev/shm file named after its pid) and prints "rank <r> pid <pid> shm <file>".
import { readdirSync } from "node:fs";
import { Endpoint, LibfabricProvider, MemoryPool, MpiEndpoint, MpiJob, MpiProvider } from "../../lib/index.ts";

const [how = "exit-0", leaverText = "1", where = "barrier"] = process.argv.slice(2);
const job = MpiJob.open();
const leaver = Number(leaverText);
if (process.argv.slice(3).includes("shm")) {
  new Endpoint(LibfabricProvider.open({ provider: "shm" })); // left open: the exit hooks close it
  const files = readdirSync("/dev/shm").filter((name) => name.startsWith(`${process.pid}:`));
  console.log(`rank ${job.rank} pid ${process.pid} shm ${files.join(",")}`);
}

function waitForEveryone(): Promise<void> | void {
  if (where === "barrier-async") return job.barrierAsync();
  if (where === "allgather") {
    job.allgather(new Uint8Array([job.rank]));
    return;
  }
  job.barrier();
}

function leave(): void {
  console.log(`rank ${job.rank} leaves: ${how}`);
  if (how === "exit-0") process.exit(0);
  if (how === "exit-3") process.exit(3);
  if (how === "throw") throw new Error(`thrown by rank ${job.rank}`);
  if (how === "reject") {
    void Promise.reject(new Error(`rejected by rank ${job.rank}`));
    return;
  }
  if (how === "kill") process.kill(process.pid, "SIGKILL");
  if (how === "hangup") process.kill(process.pid, "SIGHUP");
}

if (how === "end-open" || how === "close" || how === "mixed") {
  const withProvider = process.argv.includes("provider");
  const provider = withProvider ? MpiProvider.open() : null;
  const pool = provider === null ? null : new MemoryPool(provider);
  if (provider !== null) new MpiEndpoint(provider);
  pool?.getRegion(64);
  job.barrier();
  const closes = how === "close" || (how === "mixed" && job.rank % 2 === 0);
  if (how === "close") provider?.close();
  if (closes) job.close();
  console.log(`rank ${job.rank} ends normally (${closes ? "closed" : "job left open"})`);
} else {
  // Every rank is in the job before the leaver leaves.
  job.barrier();
  if (job.rank === leaver) {
    leave(); // "reject": Bun reports the rejection and the program ends here (exit event code 0, status 1)
  } else {
    await waitForEveryone();
    console.log(`rank ${job.rank} passed the wait: the leaver never left`);
  }
}
