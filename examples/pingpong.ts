// Tagged-message ping-pong between two processes, measured as osu_latency and fi_pingpong measure
// it: one side sends `--size` bytes with tag PING, the other sends them back with tag PONG, and
// each round's time over two is the half round trip (one-way latency). Prints its p50 and mean.
//
//   bun pingpong.ts                                  # libfabric tcp; starts its own peer process
//   bun pingpong.ts --transport shm --size 4k --iterations 10000 --warmup 100
//   bun pingpong.ts --promises                       # send/recv instead of sendSync/recvSync
//   mpirun -n 2 bun pingpong.ts --transport ucx-tcp  # the two ranks of a job (names through PMIx)
//   mpirun -n 2 bun pingpong.ts --transport mpi      # MpiEndpoint: MPI_Isend and matched probes
//   (as root, or with more ranks than cores: mpirun --allow-run-as-root --oversubscribe ...)
//
// Transports: tcp and shm (libfabric), ucx-tcp and ucx-shm (UCX), mpi (Open MPI, under mpirun).
// Alone, the program starts a copy of itself as the server and reads the server's endpoint name
// from the copy's first line of output: the one string that crosses outside the fabric. The client
// then sends its own name as its first message (HELLO), so that the server can insert it and answer.
// Under a launcher, Job.open() exchanges the names instead ({ via: "mpi" } for --transport mpi,
// whose peers are MPI ranks). Across hosts, open tcp with `node` set to this host's address.
//
// Every round carries a different byte pattern, and the client checks that what came back is what
// it sent. The last line is `pingpong ok: <n> round trips of <size> B over <transport> (<form>)`;
// any failure throws, and the process exits with 1.
//
// This file imports only "alloctools", so it can be copied into a project that installed the package.
import { parseArgs } from "node:util";
import {
  ANY_SOURCE, Endpoint, Job, LibfabricProvider, MemoryPool, MpiEndpoint, MpiProvider, UcxEndpoint, UcxProvider,
  type AnyEndpoint, type MemoryRegion, type Received, type RegionProvider,
} from "alloctools";

const TRANSPORTS = ["tcp", "shm", "ucx-tcp", "ucx-shm", "mpi"] as const;
type TransportName = (typeof TRANSPORTS)[number];

// Tags: the rounds, and the client's introduction.
const PING = 1;
const PONG = 2;
const HELLO = 3;
/** Generous: a loaded machine may start the peer slowly. */
const TIMEOUT_MS = 30_000;

type Peer = number | bigint;

interface Options {
  readonly transport: TransportName;
  readonly size: number;
  readonly iterations: number;
  readonly warmup: number;
  readonly promises: boolean;
  /** This process is the server a client started (internal: see runWithOwnServer). */
  readonly server: boolean;
}

/** A provider, a pool over it and an endpoint that receives messages of unknown size into that pool. */
interface Opened {
  readonly provider: RegionProvider;
  readonly pool: MemoryPool;
  readonly endpoint: AnyEndpoint;
}

function openTransport(transport: TransportName): Opened {
  if (transport === "tcp" || transport === "shm") {
    const provider = LibfabricProvider.open(transport === "tcp" ? { provider: "tcp", node: "127.0.0.1" } : { provider: "shm" });
    const pool = new MemoryPool(provider);
    return { provider, pool, endpoint: new Endpoint(provider, { pool, timeoutMs: TIMEOUT_MS }) };
  }
  if (transport === "ucx-tcp" || transport === "ucx-shm") {
    const provider = UcxProvider.open({ transports: transport === "ucx-tcp" ? "tcp" : "posix,cma" });
    const pool = new MemoryPool(provider);
    return { provider, pool, endpoint: new UcxEndpoint(provider, { pool, timeoutMs: TIMEOUT_MS }) };
  }
  const provider = MpiProvider.open(); // collective: every rank opens it
  const pool = new MemoryPool(provider);
  return { provider, pool, endpoint: new MpiEndpoint(provider, { pool, timeoutMs: TIMEOUT_MS }) };
}

function closeTransport({ provider, pool, endpoint }: Opened): void {
  endpoint.close();
  pool.close();
  provider.close();
}

// ---- the rounds -------------------------------------------------------------------------------

/** Half round trips in microseconds, one per timed round. */
async function clientRounds(endpoint: AnyEndpoint, pool: MemoryPool, server: Peer, o: Options): Promise<Float64Array> {
  const outbox = pool.getRegion(Math.max(o.size, 1));
  const inbox = pool.getRegion(Math.max(o.size, 1));
  // Byte i of round r is (r + i) mod 256: a window into this ramp, so no round repeats the last.
  const ramp = Uint8Array.from({ length: o.size + 256 }, (_, i) => i & 0xff);
  const halfRoundTrips = new Float64Array(o.iterations);
  for (let round = -o.warmup; round < o.iterations; round++) {
    const start = (round + o.warmup) % 256;
    outbox.view.set(ramp.subarray(start, start + o.size));
    const began = performance.now();
    let got: Received<Peer>;
    if (o.promises) {
      await endpoint.send(outbox, o.size, server, PING);
      got = await endpoint.recv(inbox, o.size, server, PONG);
    } else {
      endpoint.sendSync(outbox, o.size, server, PING);
      got = endpoint.recvSync(inbox, o.size, server, PONG);
    }
    const ended = performance.now();
    if (round >= 0) halfRoundTrips[round] = ((ended - began) * 1000) / 2;
    if (got.length !== o.size) throw new Error(`round ${round}: the pong has ${got.length} bytes, not ${o.size}`);
    if (!sameBytes(inbox, outbox, o.size)) throw new Error(`round ${round}: the pong's bytes are not the ping's`);
  }
  pool.releaseRegion(outbox);
  pool.releaseRegion(inbox);
  return halfRoundTrips;
}

/** Sends back every ping, from the memory it landed in. */
async function serverRounds(endpoint: AnyEndpoint, pool: MemoryPool, client: Peer, o: Options): Promise<void> {
  const inbox = pool.getRegion(Math.max(o.size, 1));
  for (let round = -o.warmup; round < o.iterations; round++) {
    if (o.promises) {
      const got = await endpoint.recv(inbox, o.size, client, PING);
      await endpoint.send(inbox, got.length, client, PONG);
    } else {
      const got = endpoint.recvSync(inbox, o.size, client, PING);
      endpoint.sendSync(inbox, got.length, client, PONG);
    }
  }
  pool.releaseRegion(inbox);
}

function sameBytes(a: MemoryRegion, b: MemoryRegion, length: number): boolean {
  return Buffer.from(a.view.buffer, a.view.byteOffset, length).equals(b.view.subarray(0, length));
}

/** Sends `bytes` to `peer` with `tag` from a pooled region. */
async function sendBytes(endpoint: AnyEndpoint, pool: MemoryPool, peer: Peer, tag: number, bytes: Uint8Array): Promise<void> {
  const region = pool.getRegion(Math.max(bytes.length, 1));
  region.view.set(bytes);
  await endpoint.send(region, bytes.length, peer, tag);
  pool.releaseRegion(region);
}

// ---- two processes: a job, or this process and the server it starts ----------------------------
//
// The end: once the client has every pong, nothing of either side is still on its way and both
// may close. Over UCX tcp the order shows on stderr: an endpoint that closes well after its peer's
// may find the connection gone, and UCX logs "error during flush". So the ranks of a job close
// together, after a barrier; a client that started its own server closes first, then ends the
// server's stdin, the server's cue to close.

/** Ranks 0 (client) and 1 (server) of a job of two; every rank inserted every name. */
async function runInJob(job: Job, o: Options): Promise<void> {
  if (job.size !== 2) throw new Error(`pingpong runs on 2 ranks, not ${job.size}: mpirun -n 2 bun pingpong.ts`);
  const opened = openTransport(o.transport);
  const { endpoint, pool } = opened;
  const peers = job.exchangeNames(endpoint);
  const other = peers[1 - job.rank]!;
  if (job.rank === 0) {
    const halfRoundTrips = await clientRounds(endpoint, pool, other, o);
    await job.barrierAsync();
    report(halfRoundTrips, opened.provider.name, o, `2 ranks of a job via ${job.via}`);
  } else {
    await serverRounds(endpoint, pool, other, o);
    await job.barrierAsync();
  }
  closeTransport(opened); // collective for MPI: both ranks close their provider
  job.close();
}

/** The client: starts the server, learns its name, introduces itself, plays the rounds. */
async function runWithOwnServer(o: Options): Promise<void> {
  const opened = openTransport(o.transport);
  const { endpoint, pool } = opened;
  const child = Bun.spawn([process.execPath, import.meta.path, ...process.argv.slice(2), "--server"], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
  process.on("exit", () => child.kill()); // a client that fails takes its server with it
  const server = endpoint.insert(await firstLine(child.stdout, "the server"));
  await sendBytes(endpoint, pool, server, HELLO, new TextEncoder().encode(endpoint.nameString));
  const halfRoundTrips = await clientRounds(endpoint, pool, server, o);
  const providerName = opened.provider.name;
  closeTransport(opened);
  await child.stdin.end(); // the server's cue to close
  const exitCode = await child.exited;
  if (exitCode !== 0) throw new Error(`the server exited with ${exitCode}`);
  report(halfRoundTrips, providerName, o, "this process and the server it started");
}

/** The server a client started: prints its name, inserts the client that introduces itself, echoes. */
async function serveClient(o: Options): Promise<void> {
  const opened = openTransport(o.transport);
  const { endpoint, pool } = opened;
  console.log(endpoint.nameString);
  // The client is not inserted yet, so its first message names no usable source: it carries the name.
  const hello = await endpoint.receive(ANY_SOURCE, HELLO);
  const client = endpoint.insert(new TextDecoder().decode(hello.view));
  hello.release();
  await serverRounds(endpoint, pool, client, o);
  await Bun.stdin.text(); // until the client has closed its endpoint and our stdin
  closeTransport(opened);
}

async function firstLine(stream: ReadableStream<Uint8Array>, who: string): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of stream) {
    text += decoder.decode(chunk, { stream: true });
    const end = text.indexOf("\n");
    if (end >= 0) return text.slice(0, end);
  }
  throw new Error(`${who} exited before printing its endpoint name`);
}

// ---- output -----------------------------------------------------------------------------------

function report(halfRoundTrips: Float64Array, providerName: string, o: Options, processes: string): void {
  const form = o.promises ? "send/recv" : "sendSync/recvSync";
  const sorted = halfRoundTrips.slice().sort();
  const p50 = sorted.length === 0 ? 0 : sorted[Math.floor((sorted.length - 1) / 2)]!;
  const mean = sorted.reduce((sum, x) => sum + x, 0) / Math.max(sorted.length, 1);
  console.log(`# alloctools pingpong over ${o.transport} (${providerName}), ${form}, ${processes}`);
  console.log("# half round trip (one-way latency), as osu_latency and fi_pingpong report it");
  console.log(`${"# bytes".padEnd(10)}${"iterations".padStart(12)}${"p50 usec".padStart(12)}${"mean usec".padStart(12)}`);
  console.log(`${String(o.size).padEnd(10)}${String(o.iterations).padStart(12)}${p50.toFixed(2).padStart(12)}${mean.toFixed(2).padStart(12)}`);
  console.log(`pingpong ok: ${o.iterations} round trips of ${o.size} B over ${o.transport} (${form})`);
}

// ---- options ----------------------------------------------------------------------------------

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      transport: { type: "string", default: "tcp" },
      size: { type: "string", default: "64" },
      iterations: { type: "string", default: "1000" },
      warmup: { type: "string", default: "10" },
      promises: { type: "boolean", default: false },
      server: { type: "boolean", default: false },
    },
  });
  const transport = values.transport as TransportName;
  if (!TRANSPORTS.includes(transport)) throw new Error(`--transport is one of ${TRANSPORTS.join(", ")}, not ${values.transport}`);
  return {
    transport,
    size: wholeNumber("--size", values.size),
    iterations: wholeNumber("--iterations", values.iterations),
    warmup: wholeNumber("--warmup", values.warmup),
    promises: values.promises,
    server: values.server,
  };
}

/** "64", "4k", "1m": a whole number, with k = 1024 and m = 1024². */
function wholeNumber(name: string, text: string): number {
  const match = /^(\d+)([km]?)$/i.exec(text);
  if (match === null) throw new Error(`${name} takes a whole number (4k and 1m allowed), not ${JSON.stringify(text)}`);
  return Number(match[1]) * (match[2] === "" ? 1 : match[2]!.toLowerCase() === "k" ? 1024 : 1024 * 1024);
}

const options = parseOptions();
if (options.server) {
  await serveClient(options);
} else {
  const job = await Job.open(options.transport === "mpi" ? { via: "mpi" } : {});
  if (job.size > 1) {
    await runInJob(job, options);
  } else {
    job.close();
    if (options.transport === "mpi") throw new Error("--transport mpi runs under a launcher: mpirun -n 2 bun pingpong.ts --transport mpi");
    await runWithOwnServer(options);
  }
}
