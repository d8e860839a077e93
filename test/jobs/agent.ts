// One rank of a job test: `mpirun -n N bun test/jobs/agent.ts <scenario>...` or the same under
// `srun --mpi=pmix`. Opens a Job (PMIx: no MPI library is loaded unless the "mpi" scenario asks
// for it), runs the scenarios in order, and writes this rank's checks and facts to
// $ALLOCTOOLS_MPI_RESULT_DIR/rank-<r>.json (test/mpi/run.ts reads them). A failed check never
// skips a collective: every rank makes the same calls whatever happens, so a failure is reported
// instead of a hang.
//
// Scenarios: basics (barriers, allgathers of different lengths), tcp, shm and ucx (exchangeNames
// then a ring of verified writes), strings (the names and regions crossing the job as strings),
// mpi (Job via "mpi": MpiEndpoint's names), throw:<rank>, exit:<rank>:<code> and stall:<rank> (that
// rank leaves, or stops answering, with its job open; the others wait in a barrier).
import { readFileSync, writeFileSync } from "node:fs";
import {
  Endpoint, Job, LibfabricProvider, MemoryPool, MpiEndpoint, MpiProvider, RemoteRegion, UcxEndpoint, UcxProvider,
  type MemoryRegion, type RegionProvider, type RmaEndpoint,
} from "../../lib/index.ts";

interface Check { name: string; ok: boolean; detail?: string }
const checks: Check[] = [];
const facts: Record<string, unknown> = {};

function check(name: string, ok: boolean, detail?: unknown): void {
  checks.push({ name, ok, ...(ok ? {} : { detail: typeof detail === "string" ? detail : JSON.stringify(detail, (_, v) => (typeof v === "bigint" ? String(v) : v)) }) });
}

const SLOT = 64;
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const stamp = (from: number, to: number, transport: string) => `${transport} from ${from} to ${to} pid ${process.pid}`;

const scenarioNames = process.argv.slice(2);
const via = scenarioNames.includes("mpi") ? "mpi" : undefined;
const job = await Job.open({ via, timeoutMs: Number(process.env.ALLOCTOOLS_TEST_JOB_TIMEOUT_MS ?? 30_000) });
const { rank, size } = job;
const next = (rank + 1) % size;
const previous = (rank + size - 1) % size;
facts.rank = rank;
facts.size = size;
facts.via = job.via;

/** The same bytes every rank can predict for rank `r`: r * 37 bytes (rank 0 gives none), byte i = (r + i) & 0xff. */
function pattern(r: number): Uint8Array {
  return Uint8Array.from({ length: r * 37 }, (_, i) => (r + i) & 0xff);
}

function basics(): Promise<void> | void {
  job.barrier();
  const all = job.allgather(pattern(rank));
  check("allgather gives one entry per rank", all.length === size, all.length);
  check("allgather of different lengths gives each rank's bytes", all.every((bytes, r) => Buffer.from(bytes).equals(Buffer.from(pattern(r)))),
    all.map((b) => b.length));
  const big = job.allgather(new Uint8Array(rank === 1 ? 256 * 1024 : 3).fill(rank + 1));
  check("a 256 KiB allgather beside 3-byte ones", big.every((b, r) => b.length === (r === 1 ? 256 * 1024 : 3) && b.every((x) => x === r + 1)),
    big.map((b) => b.length));
  return job.barrierAsync().then(() => job.barrierAsync(1)).then(() => check("barrierAsync (each turn, then every 1 ms)", true));
}

interface Transport {
  readonly provider: RegionProvider;
  readonly endpoint: RmaEndpoint<unknown> & { startProgress(intervalMs?: number): void; stopProgress(): void };
}

function openTransport(name: string): Transport {
  if (name === "ucx") {
    const provider = UcxProvider.open({ transports: "tcp" });
    return { provider, endpoint: new UcxEndpoint(provider, { timeoutMs: 15_000 }) as Transport["endpoint"] };
  }
  const provider = name === "tcp" ? LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" }) : LibfabricProvider.open({ provider: "shm" });
  return { provider, endpoint: new Endpoint(provider, { timeoutMs: 15_000 }) as unknown as Transport["endpoint"] };
}

/**
 * exchangeNames (or, with `asStrings`, an allgather of nameStrings inserted as strings), then
 * every rank writes a stamp into the next rank's pooled region, whose RemoteRegion crossed the job
 * as a string, and checks the previous rank's stamp in its own.
 */
async function ring(name: string, asStrings: boolean): Promise<void> {
  const { provider, endpoint } = openTransport(name);
  const pool = new MemoryPool(provider);
  const label = `${name}${asStrings ? " (strings)" : ""}`;
  let peers: unknown[];
  if (asStrings) {
    const names = job.allgather(encoder.encode(endpoint.nameString)).map((bytes) => decoder.decode(bytes));
    check(`${label}: names are URL-safe strings`, names.every((n) => /^(fi|ucx)\.[A-Za-z0-9_-]+$/.test(n)), names.map((n) => n.slice(0, 12)));
    peers = names.map((text) => endpoint.insert(text));
  } else {
    peers = job.exchangeNames(endpoint);
  }
  check(`${label}: one peer per rank`, peers.length === size, peers.length);
  const inbox = pool.getRegion(SLOT);
  inbox.view.fill(0);
  const texts = job.allgather(encoder.encode(inbox.remote().subregion(0, SLOT).toString())).map((bytes) => decoder.decode(bytes));
  const remotes = texts.map((text) => RemoteRegion.parse(text));
  check(`${label}: RemoteRegion strings parse to version ${name === "ucx" ? 2 : 1}`, remotes.every((r) => r.version === (name === "ucx" ? 2 : 1) && r.length === SLOT));
  const outbox = pool.getRegion(SLOT);
  outbox.view.fill(0);
  outbox.view.set(encoder.encode(stamp(rank, next, label)));
  endpoint.startProgress(0); // a tcp target progresses only while its event loop turns
  try {
    try {
      await endpoint.write(outbox, SLOT, peers[next], remotes[next]!);
      check(`${label}: write to the next rank completed`, true);
    } catch (e) {
      check(`${label}: write to the next rank completed`, false, String(e));
    }
    await job.barrierAsync(); // every write has landed
    const got = readText(inbox);
    check(`${label}: the previous rank's stamp arrived`, got.startsWith(stamp(previous, rank, label).replace(/ pid \d+$/, "")), got);
    facts[`${label} received`] = got;
    await job.barrierAsync(); // nobody writes to us any more
  } finally {
    endpoint.stopProgress();
    endpoint.close();
  }
  for (const region of [inbox, outbox]) pool.releaseRegion(region);
  check(`${label}: pool closes with nothing leaked`, pool.close().count === 0);
  provider.close();
}

function readText(region: MemoryRegion): string {
  return decoder.decode(region.view.subarray(0, SLOT)).replace(/\0+$/, "");
}

/** Job via "mpi": MpiEndpoint's names exchanged and inserted; its nameString round trip. */
function mpiNames(): void {
  const provider = MpiProvider.open();
  const endpoint = new MpiEndpoint(provider);
  const peers = job.exchangeNames(endpoint);
  check("mpi: exchangeNames gives every rank", peers.every((p, r) => p === r), peers);
  check("mpi: nameString is mpi. + base64url and inserts as this rank", /^mpi\.[A-Za-z0-9_-]+$/.test(endpoint.nameString) &&
    endpoint.insert(endpoint.nameString) === rank, endpoint.nameString);
  endpoint.close();
  provider.close();
}

/** Whether an MPI library is mapped into this process. */
function mpiLoaded(): boolean {
  return /libmpi\.so/.test(readFileSync("/proc/self/maps", "utf8"));
}

/** throw:<rank>, exit:<rank>:<code>, stall:<rank>: that rank leaves (or stops answering) with its job open. */
async function leaveEarly(argument: string): Promise<void> {
  const [how, who, code] = argument.split(":");
  if (Number(who) !== rank) return;
  report();
  if (how === "throw") throw new Error(`rank ${rank} throws on purpose`);
  if (how === "exit") process.exit(Number(code));
  await Bun.sleep(120_000); // stall: alive, never at the barrier (the others' timeout ends the job)
}

function report(): void {
  facts.mpiLoaded = mpiLoaded();
  const json = JSON.stringify({ rank, checks, facts });
  const dir = process.env.ALLOCTOOLS_MPI_RESULT_DIR;
  if (dir) writeFileSync(`${dir}/rank-${rank}.json`, json);
  else console.log(`RESULT ${json}`);
}

for (const name of scenarioNames) {
  if (/^(throw|exit|stall):/.test(name)) {
    await leaveEarly(name);
    job.barrier(); // the others wait here for the rank that left
    continue;
  }
  try {
    if (name === "basics") await basics();
    else if (name === "tcp" || name === "ucx") await ring(name, false);
    else if (name === "shm") await ring(name, true);
    else if (name === "strings") await ring("tcp", true);
    else if (name === "mpi") mpiNames();
    else throw new Error(`unknown scenario ${name}`);
  } catch (e) {
    check(`${name} ran`, false, e instanceof Error ? `${e.name}: ${e.message}` : String(e));
  }
}
report();
job.close();
// A failed scenario may leave a timer or a progress loop behind: leave all the same.
process.exit(checks.every((c) => c.ok) ? 0 : 1);
