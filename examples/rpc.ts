// Request and response over tagged messages: a server that answers "sum these numbers" for its
// clients, and a client that keeps `--window` requests in flight and checks every answer.
//
//   bun rpc.ts                                       # libfabric tcp; starts its own server process
//   bun rpc.ts --transport ucx-shm --requests 10000 --window 16
//   mpirun -n 4 bun rpc.ts --transport tcp           # rank 0 serves ranks 1, 2 and 3
//   mpirun -n 2 bun rpc.ts --transport mpi           # MpiEndpoint: MPI_Isend and matched probes
//   (as root, or with more ranks than cores: mpirun --allow-run-as-root --oversubscribe ...)
//
// Transports: tcp and shm (libfabric), ucx-tcp and ucx-shm (UCX), mpi (Open MPI, under mpirun).
// The server takes requests of any size with `endpoint.messages(REQUEST)`: each arrives with no copy
// in a region of the endpoint's pool, sized to the message (on libfabric shm, the pool's largest:
// docs/messaging.md), and goes back to the pool when the loop turns. It answers each to
// `message.source`. A client posts the receive of a reply before it
// sends the request, under a tag that only this request's reply carries, so the transport hands
// each reply to its caller whatever the order the replies come in.
//
// Alone, the program starts a copy of itself as the server and reads the server's endpoint name
// from the copy's first line of output: the one string that crosses outside the fabric. The client
// introduces itself in its first request (HELLO, carrying its name), which the server inserts: a
// message's source is usable for a reply only once its sender is inserted. Under a launcher,
// Job.open() exchanges every name first ({ via: "mpi" } for --transport mpi) and no client
// needs to introduce itself.
//
// Wire format (little-endian; a C client or server can follow it):
//   request, tag 1:          u32 request id, u32 operation, then the operands:
//                            HELLO (1) the client's endpoint nameString in UTF-8;
//                            SUM (2) float64 numbers; BYE (3) none
//   reply, tag 65536 + (request id mod 65536), 16 bytes:
//                            u32 request id, u32 status (0 ok, 1 unknown operation, 2 malformed),
//                            float64 result (SUM: the numbers added in order; otherwise 0)
// A client sends BYE last; its reply says every request of this client was answered. The server
// stops after the BYE of every client.
//
// The last line of each client is `rpc ok: <n> requests answered and verified over <transport>`;
// any failure throws, and the process exits with 1.
//
// This file imports only "alloctools", so it can be copied into a project that installed the package.
import { parseArgs } from "node:util";
import {
  ANY_SOURCE, Endpoint, Job, LibfabricProvider, MemoryPool, MpiEndpoint, MpiProvider, UcxEndpoint, UcxProvider,
  type AnyEndpoint, type Message, type RegionProvider,
} from "alloctools";

const TRANSPORTS = ["tcp", "shm", "ucx-tcp", "ucx-shm", "mpi"] as const;
type TransportName = (typeof TRANSPORTS)[number];

const REQUEST = 1;
const REPLY_TAGS = 65_536;
const replyTag = (id: number) => REPLY_TAGS + (id % 65_536);

const HELLO = 1;
const SUM = 2;
const BYE = 3;
const OK = 0;
const UNKNOWN_OPERATION = 1;
const MALFORMED = 2;

const HEADER_BYTES = 8;
const REPLY_BYTES = 16;
/** How many numbers request i sums: from one number (8 B) to 8191 (64 KiB with the header), past every transport's eager limit. */
const NUMBER_COUNTS = [1, 8, 64, 512, 8191];
/** Generous: a loaded machine may start the peer slowly. */
const TIMEOUT_MS = 30_000;

type Peer = number | bigint;

interface Options {
  readonly transport: TransportName;
  readonly requests: number;
  readonly window: number;
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

// ---- the server -------------------------------------------------------------------------------

/** Answers requests until `clients` clients have said BYE. */
async function serve({ endpoint, pool }: Opened, clients: number): Promise<void> {
  const reply = pool.getRegion(REPLY_BYTES);
  const replyFields = new DataView(reply.view.buffer, reply.view.byteOffset, REPLY_BYTES);
  let remaining = clients;
  for await (using request of endpoint.messages(REQUEST)) { // `using`: the region goes back to the pool
    if (request.length < HEADER_BYTES) {
      console.error(`rpc server: dropped a request of ${request.length} bytes, shorter than its header`);
      continue;
    }
    const fields = new DataView(request.view.buffer, request.view.byteOffset, request.length);
    const id = fields.getUint32(0, true);
    const operation = fields.getUint32(4, true);
    const to = operation === HELLO ? endpoint.insert(new TextDecoder().decode(request.view.subarray(HEADER_BYTES))) : request.source;
    if (to === ANY_SOURCE) {
      console.error(`rpc server: dropped request ${id} from a client that has not introduced itself (HELLO)`);
      continue;
    }
    const [status, result] = answer(operation, request);
    replyFields.setUint32(0, id, true);
    replyFields.setUint32(4, status, true);
    replyFields.setFloat64(8, result, true);
    await endpoint.send(reply, REPLY_BYTES, to, replyTag(id));
    if (operation === BYE && --remaining === 0) break;
  }
  pool.releaseRegion(reply);
}

/** The status and result of one request. */
function answer(operation: number, request: Message): [status: number, result: number] {
  if (operation === HELLO || operation === BYE) return [OK, 0];
  if (operation !== SUM) return [UNKNOWN_OPERATION, 0];
  const operandBytes = request.length - HEADER_BYTES;
  if (operandBytes % 8 !== 0) return [MALFORMED, 0];
  const operands = new DataView(request.view.buffer, request.view.byteOffset + HEADER_BYTES, operandBytes);
  let sum = 0;
  for (let at = 0; at < operandBytes; at += 8) sum += operands.getFloat64(at, true);
  return [OK, sum];
}

// ---- a client ---------------------------------------------------------------------------------

/** A client's view of the server. */
class Connection {
  private readonly endpoint: AnyEndpoint;
  private readonly pool: MemoryPool;
  private readonly server: Peer;
  private nextId = 0;

  constructor(endpoint: AnyEndpoint, pool: MemoryPool, server: Peer) {
    this.endpoint = endpoint;
    this.pool = pool;
    this.server = server;
  }

  /** Sends one request and returns its reply's status and result; throws when the reply is not this request's. */
  async call(operation: number, operandBytes: number, writeOperands: (operands: DataView) => void): Promise<[status: number, result: number]> {
    const id = this.nextId++;
    const request = this.pool.getRegion(HEADER_BYTES + operandBytes);
    const fields = new DataView(request.view.buffer, request.view.byteOffset, HEADER_BYTES + operandBytes);
    fields.setUint32(0, id, true);
    fields.setUint32(4, operation, true);
    writeOperands(new DataView(request.view.buffer, request.view.byteOffset + HEADER_BYTES, operandBytes));
    const reply = this.pool.getRegion(REPLY_BYTES);
    // Posted before the request leaves: the reply can never arrive ahead of its receive.
    const replied = this.endpoint.recv(reply, REPLY_BYTES, this.server, replyTag(id));
    await this.endpoint.send(request, HEADER_BYTES + operandBytes, this.server, REQUEST);
    this.pool.releaseRegion(request);
    const received = await replied;
    const replyFields = new DataView(reply.view.buffer, reply.view.byteOffset, REPLY_BYTES);
    const answered = replyFields.getUint32(0, true);
    const status = replyFields.getUint32(4, true);
    const result = replyFields.getFloat64(8, true);
    this.pool.releaseRegion(reply);
    if (received.length !== REPLY_BYTES || answered !== id) {
      throw new Error(`the reply under tag ${replyTag(id)} (${received.length} bytes) answers request ${answered}, not ${id}`);
    }
    return [status, result];
  }
}

/** `requests` sums, `window` at a time; returns each request's round trip in microseconds. */
async function sumRequests(connection: Connection, o: Options): Promise<Float64Array> {
  const roundTrips = new Float64Array(o.requests);
  let next = 0;
  const lane = async () => {
    while (next < o.requests) {
      const index = next++;
      const count = NUMBER_COUNTS[index % NUMBER_COUNTS.length]!;
      const number = (j: number) => index + j / 8; // exact in float64, so both sides add the same values
      const began = performance.now();
      const [status, result] = await connection.call(SUM, count * 8, (operands) => {
        for (let j = 0; j < count; j++) operands.setFloat64(j * 8, number(j), true);
      });
      roundTrips[index] = (performance.now() - began) * 1000;
      let expected = 0;
      for (let j = 0; j < count; j++) expected += number(j);
      if (status !== OK || result !== expected) throw new Error(`request ${index}: status ${status}, sum ${result}, expected ${expected}`);
    }
  };
  await Promise.all(Array.from({ length: o.window }, lane));
  return roundTrips;
}

async function goodbye(connection: Connection): Promise<void> {
  const [status] = await connection.call(BYE, 0, () => {});
  if (status !== OK) throw new Error(`BYE: status ${status}`);
}

// ---- processes: a job, or this process and the server it starts ---------------------------------
//
// The end: once a client has the reply to its BYE, nothing of it or for it is still on its way and
// both sides may close. Over UCX tcp the order shows on stderr: an endpoint that closes well after
// its peer's may find the connection gone, and UCX logs "error during flush". So the ranks of a job
// close together, after a barrier; a client that started its own server closes first, then ends
// the server's stdin, the server's cue to close.

/** Rank 0 serves; every other rank is a client. Every rank inserted every name. */
async function runInJob(job: Job, o: Options): Promise<void> {
  const opened = openTransport(o.transport);
  const peers = job.exchangeNames(opened.endpoint);
  if (job.rank === 0) {
    await serve(opened, job.size - 1);
    await job.barrierAsync();
  } else {
    const connection = new Connection(opened.endpoint, opened.pool, peers[0]!);
    const roundTrips = await sumRequests(connection, o);
    await goodbye(connection);
    await job.barrierAsync();
    report(roundTrips, opened.provider.name, o, `rank ${job.rank} of a job of ${job.size} via ${job.via}, rank 0 serving`);
  }
  closeTransport(opened); // collective for MPI: every rank closes its provider
  job.close();
}

/** The client: starts the server, learns its name, introduces itself, sends its requests. */
async function runWithOwnServer(o: Options): Promise<void> {
  const opened = openTransport(o.transport);
  const { endpoint, pool } = opened;
  const child = Bun.spawn([process.execPath, import.meta.path, ...process.argv.slice(2), "--server"], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
  process.on("exit", () => child.kill()); // a client that fails takes its server with it
  const connection = new Connection(endpoint, pool, endpoint.insert(await firstLine(child.stdout, "the server")));
  const name = new TextEncoder().encode(endpoint.nameString);
  const [status] = await connection.call(HELLO, name.length, (operands) => new Uint8Array(operands.buffer, operands.byteOffset, name.length).set(name));
  if (status !== OK) throw new Error(`HELLO: status ${status}`);
  const roundTrips = await sumRequests(connection, o);
  await goodbye(connection);
  const providerName = opened.provider.name;
  closeTransport(opened);
  await child.stdin.end(); // the server's cue to close
  const exitCode = await child.exited;
  if (exitCode !== 0) throw new Error(`the server exited with ${exitCode}`);
  report(roundTrips, providerName, o, "this process and the server it started");
}

/** The server a client started: prints its name, serves that one client, closes when told. */
async function serveClient(o: Options): Promise<void> {
  const opened = openTransport(o.transport);
  console.log(opened.endpoint.nameString);
  await serve(opened, 1);
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

// ---- output and options -----------------------------------------------------------------------

function report(roundTrips: Float64Array, providerName: string, o: Options, processes: string): void {
  const sorted = roundTrips.slice().sort();
  const p50 = sorted.length === 0 ? 0 : sorted[Math.floor((sorted.length - 1) / 2)]!;
  const mean = sorted.reduce((sum, x) => sum + x, 0) / Math.max(sorted.length, 1);
  console.log(`# alloctools rpc over ${o.transport} (${providerName}), ${processes}`);
  console.log(`# ${o.requests} sums of ${NUMBER_COUNTS.join(", ")} numbers in turn, ${o.window} in flight; a request's round trip:`);
  console.log(`# p50 ${p50.toFixed(1)} usec, mean ${mean.toFixed(1)} usec`);
  console.log(`rpc ok: ${o.requests} requests answered and verified over ${o.transport}`);
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      transport: { type: "string", default: "tcp" },
      requests: { type: "string", default: "1000" },
      window: { type: "string", default: "8" },
      server: { type: "boolean", default: false },
    },
  });
  const transport = values.transport as TransportName;
  if (!TRANSPORTS.includes(transport)) throw new Error(`--transport is one of ${TRANSPORTS.join(", ")}, not ${values.transport}`);
  const window = wholeNumber("--window", values.window);
  if (window < 1) throw new Error("--window is at least 1");
  return { transport, requests: wholeNumber("--requests", values.requests), window, server: values.server };
}

function wholeNumber(name: string, text: string): number {
  if (!/^\d+$/.test(text)) throw new Error(`${name} takes a whole number, not ${JSON.stringify(text)}`);
  return Number(text);
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
    if (options.transport === "mpi") throw new Error("--transport mpi runs under a launcher: mpirun -n 2 bun rpc.ts --transport mpi");
    await runWithOwnServer(options);
  }
}
