// A ring over an MPI job: every rank writes a stamped message into the next rank's pooled region,
// then reads it back, and checks what the previous rank wrote into its own.
//
//   mpirun -n 4 bun examples/mpi-ring.ts            # MPI one-sided (MpiProvider, MpiEndpoint)
//   mpirun -n 4 bun examples/mpi-ring.ts --tcp      # libfabric tcp, names exchanged by MpiJob
//   (as root, and with more ranks than cores: mpirun --allow-run-as-root --oversubscribe ...)
//
// Each rank prints one line: `rank <r>/<n> got "<stamp>" read back "<stamp>"`.
import {
  Endpoint, LibfabricProvider, MemoryPool, MpiEndpoint, MpiJob, MpiProvider, RemoteRegion,
  type RegionProvider, type RmaEndpoint,
} from "alloctools";

const MESSAGE_BYTES = 64;
const useTcp = process.argv.includes("--tcp");

// The job first: it keeps MPI initialized until the end, whichever transport carries the data.
const job = MpiJob.open();
const { rank, size } = job;
const next = (rank + 1) % size;
const previous = (rank + size - 1) % size;

// Collective: every rank opens its provider (MpiProvider creates the window over all ranks).
const provider: RegionProvider = useTcp ? LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" }) : MpiProvider.open();
const pool = new MemoryPool(provider);
const endpoint: RmaEndpoint<unknown> & { insert(name: Uint8Array): unknown } = useTcp
  ? (new Endpoint(provider as LibfabricProvider) as unknown as RmaEndpoint<unknown>)
  : new MpiEndpoint(provider as MpiProvider);

// Names and remote regions cross the job as bytes: no hand-written exchange. Every other rank is
// inserted (only the next one is written to; inserting all, or this rank too, works as well).
const names = job.exchangeNames(endpoint);
const peers = names.map((name, r) => (r === rank ? undefined : endpoint.insert(name)));
const nextPeer = peers[next];
const inbox = pool.getRegion(MESSAGE_BYTES);
inbox.view.fill(0);
const remotes = job.allgather(inbox.remote().toBytes()).map((bytes) => RemoteRegion.fromBytes(bytes));

const stamp = (from: number, to: number) => `from rank ${from} to rank ${to} at ${process.pid}`;
const outbox = pool.getRegion(MESSAGE_BYTES);
outbox.view.fill(0);
outbox.view.set(new TextEncoder().encode(stamp(rank, next)));

// A libfabric tcp target makes progress only when its event loop reads the queue: keep it turning.
if (useTcp) endpoint.startProgress(0);
await endpoint.write(outbox, MESSAGE_BYTES, nextPeer, remotes[next]!);
const back = pool.getRegion(MESSAGE_BYTES);
await endpoint.read(back, MESSAGE_BYTES, nextPeer, remotes[next]!);
await job.barrierAsync(); // every write has landed; the event loop keeps turning meanwhile

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes).replace(/\0+$/, "");
const got = text(inbox.view);
const readBack = text(back.view);
console.log(`rank ${rank}/${size} got "${got}" read back "${readBack}"`);
const ok = got.startsWith(`from rank ${previous} to rank ${rank}`) && readBack === stamp(rank, next);
await job.barrierAsync(); // nobody reads our memory any more

endpoint.stopProgress();
for (const region of [inbox, outbox, back]) pool.releaseRegion(region);
endpoint.close();
pool.close();
provider.close();
job.close();
if (!ok) process.exit(1);
