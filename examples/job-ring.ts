// A ring over whatever started this program: every rank writes a stamped message into its right
// neighbour's pooled region, over libfabric tcp and then over UCX, and checks the stamp its left
// neighbour wrote into its own. Job.open() finds its peers (PMIx under a launcher; alone, the
// program is a job of one process and its own neighbour), and no MPI library is loaded.
//
//   bun examples/job-ring.ts                        # alone
//   mpirun -n 4 bun examples/job-ring.ts            # Open MPI (as root, or with more ranks than
//                                                   #   cores: --allow-run-as-root --oversubscribe)
//   srun --mpi=pmix -n 4 bun examples/job-ring.ts   # Slurm
//
// Each rank prints `rank <r>/<n> via <via>: tcp got "<stamp>", ucx got "<stamp>"`, and exits with
// 1 when a stamp is not its left neighbour's.
import {
  Endpoint, Job, LibfabricProvider, MemoryPool, RemoteRegion, UcxEndpoint, UcxProvider, type RegionProvider, type RmaEndpoint,
} from "alloctools";

const MESSAGE_BYTES = 64;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

using job = await Job.open();
const { rank, size } = job;
const right = (rank + 1) % size;
const left = (rank + size - 1) % size;
const stamp = (from: number, to: number, transport: string) => `${transport} from rank ${from} to rank ${to}`;

/** One turn of the ring over `endpoint`; returns what the left neighbour wrote into this rank's region. */
async function ring<Peer>(transport: string, provider: RegionProvider, endpoint: RmaEndpoint<Peer>): Promise<string> {
  const pool = new MemoryPool(provider);
  const peers = job.exchangeNames(endpoint); // every rank's peer, by rank
  const inbox = pool.getRegion(MESSAGE_BYTES);
  inbox.view.fill(0);
  // Remote regions cross the job as strings ("rr." + base64url), as they would through argv or a file.
  const mine = inbox.remote().subregion(0, MESSAGE_BYTES).toString();
  const remotes = job.allgather(encoder.encode(mine)).map((bytes) => RemoteRegion.parse(decoder.decode(bytes)));
  const outbox = pool.getRegion(MESSAGE_BYTES);
  outbox.view.fill(0);
  outbox.view.set(encoder.encode(stamp(rank, right, transport)));

  endpoint.startProgress(0); // a libfabric tcp target progresses only while its event loop turns
  await endpoint.write(outbox, MESSAGE_BYTES, peers[right]!, remotes[right]!);
  await job.barrierAsync(); // every rank's write has landed; the event loop keeps turning meanwhile
  const got = decoder.decode(inbox.view).replace(/\0+$/, "");
  await job.barrierAsync(); // nobody writes into this rank's memory any more
  endpoint.stopProgress();

  for (const region of [inbox, outbox]) pool.releaseRegion(region);
  endpoint.close();
  pool.close();
  provider.close();
  return got;
}

const tcpProvider = LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" });
const tcp = await ring("tcp", tcpProvider, new Endpoint(tcpProvider));
const ucxProvider = UcxProvider.open({ transports: "tcp" });
const ucx = await ring("ucx", ucxProvider, new UcxEndpoint(ucxProvider));

console.log(`rank ${rank}/${size} via ${job.via}: tcp got "${tcp}", ucx got "${ucx}"`);
if (tcp !== stamp(left, rank, "tcp") || ucx !== stamp(left, rank, "ucx")) process.exitCode = 1;
