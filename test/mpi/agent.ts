// One rank of an MPI test job: `mpirun -n N bun test/mpi/agent.ts <scenario>...`. Runs the
// scenarios in order, then reports (report()) this rank's checks (name, ok, detail) and the facts
// the driver (mpi.test.ts) asserts on. A failed check never stops the collectives: every
// rank makes the same MPI calls whatever happens, so a failure is reported instead of a hang.
import {
  AllocToolsError, Endpoint, LibfabricProvider, MemoryPool, MpiEndpoint, MpiError, MpiJob, MpiProvider, RemoteRegion,
  RmaTimeoutError, openProviderDescribed, type MemoryRegion,
} from "../../lib/index.ts";
import { toArrayBuffer, type Pointer } from "bun:ffi";
import { writeFileSync } from "node:fs";
import * as libc from "../../ffi/libc.ts";

interface Check { name: string; ok: boolean; detail?: string }
const checks: Check[] = [];
const facts: Record<string, unknown> = {};

function check(name: string, ok: boolean, detail?: unknown): void {
  checks.push({ name, ok, ...(ok ? {} : { detail: typeof detail === "string" ? detail : JSON.stringify(detail) }) });
}

/** Runs `f`, expecting it to throw something `accept` takes; records the outcome. */
function throws(name: string, f: () => unknown, accept: (e: unknown) => boolean): unknown {
  try {
    f();
  } catch (e) {
    check(name, accept(e), String(e));
    return e;
  }
  check(name, false, "did not throw");
  return undefined;
}

async function rejects(name: string, p: () => Promise<unknown>, accept: (e: unknown) => boolean): Promise<void> {
  try {
    await p();
    check(name, false, "did not reject");
  } catch (e) {
    check(name, accept(e), String(e));
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const SLOT = 64;

/** The stamped message `from` writes to `to` in round `round`. */
function stamp(from: number, to: number, round: number, salt: number): string {
  return `from ${from} to ${to} round ${round} salt ${salt}`.padEnd(SLOT - 1, ".");
}

function writeText(region: MemoryRegion, offset: number, text: string): void {
  region.view.fill(0, offset, offset + SLOT);
  region.view.set(encoder.encode(text), offset);
}

function readText(region: MemoryRegion, offset: number): string {
  return decoder.decode(region.view.subarray(offset, offset + SLOT)).replace(/\0+$/, "");
}

const handlersBefore = [libc.SIGSEGV, libc.SIGBUS, libc.SIGILL].map((s) => libc.signalHandler(s).toString(16));
const job = MpiJob.open();
facts.handlersBefore = handlersBefore;
const { rank, size } = job;
const next = (rank + 1) % size;
const previous = (rank + size - 1) % size;
facts.rank = rank;
facts.size = size;
facts.threadLevel = job.threadLevel;
facts.launched = job.launched;

/** Every rank writes a stamped message into the next rank's pooled region and reads it back, in the three forms. */
async function ring(): Promise<void> {
  const opened = openProviderDescribed({ provider: "mpi" });
  const provider = opened.provider as MpiProvider;
  facts.description = opened.description;
  facts.providerThreadLevel = provider.threadLevel;
  const pool = new MemoryPool(provider);
  const endpoint = new MpiEndpoint(provider);
  const names = job.exchangeNames(endpoint);
  const peers = names.map((name) => endpoint.insert(name));
  check("insert(name) of every rank is that rank", peers.every((p, r) => p === r), peers);
  const inbox = pool.getRegion(3 * SLOT);
  inbox.view.fill(0);
  const remotes = job.allgather(inbox.remote().toBytes()).map((bytes) => RemoteRegion.fromBytes(bytes));
  check("remote address is MPI_Get_address of the region", remotes[rank]!.address === provider.remoteAddress(inbox.address));
  check("remote key names the window", remotes.every((r) => r.key >> 32n === BigInt(provider.windowNumber)), remotes.map(String));
  const outbox = pool.getRegion(SLOT);
  const back = pool.getRegion(SLOT);
  const salt = Number(process.env.ALLOCTOOLS_TEST_SALT ?? 7);

  // sync
  writeText(outbox, 0, stamp(rank, next, 0, salt));
  endpoint.writeSync(outbox, SLOT, peers[next]!, remotes[next]!.subregion(0, SLOT));
  endpoint.readSync(back, SLOT, peers[next]!, remotes[next]!.subregion(0, SLOT));
  check("readSync returns what writeSync wrote", readText(back, 0) === stamp(rank, next, 0, salt), readText(back, 0));
  // promise
  writeText(outbox, 0, stamp(rank, next, 1, salt));
  await endpoint.write(outbox, SLOT, peers[next]!, remotes[next]!.subregion(SLOT, SLOT));
  back.view.fill(0);
  await endpoint.read(back, SLOT, peers[next]!, remotes[next]!.subregion(SLOT, SLOT));
  check("read() returns what write() wrote", readText(back, 0) === stamp(rank, next, 1, salt), readText(back, 0));
  // post
  writeText(outbox, 0, stamp(rank, next, 2, salt));
  const id = endpoint.postWrite(outbox.pointer(0), SLOT, peers[next]!, remotes[next]!.subregion(2 * SLOT, SLOT));
  check("a posted write pins its local region", outbox instanceof Object && (outbox as unknown as { inFlight: number }).inFlight === 1);
  while (!endpoint.completed(id)) endpoint.poll();
  check("the region is unpinned when the write completed", (outbox as unknown as { inFlight: number }).inFlight === 0);
  throws("a retired id is a RangeError", () => endpoint.completed(id), (e) => e instanceof RangeError);
  job.barrier();
  const received = [0, 1, 2].map((round) => readText(inbox, round * SLOT));
  const expected = [0, 1, 2].map((round) => stamp(previous, rank, round, salt));
  check("the previous rank's stamped messages arrived, in all three forms", received.join("|") === expected.join("|"), received);
  facts.ringReceived = received[0];
  const stats = endpoint.stats();
  check("stats count 5 operations, all completed", stats.posted === 5 && stats.completed === 5 && stats.failed === 0, stats);
  job.barrier();
  for (const r of [inbox, outbox, back]) pool.releaseRegion(r);
  endpoint.close();
  check("pool closes with nothing leaked", pool.close().count === 0);
  provider.close();
}

/** Every rank writes its stamp into slot `rank` of every rank's region (post form, all at once), then reads every slot back. */
async function allToAll(): Promise<void> {
  const provider = MpiProvider.open();
  const pool = new MemoryPool(provider);
  const endpoint = new MpiEndpoint(provider);
  const table = pool.getRegion(size * SLOT);
  table.view.fill(0);
  const remotes = job.allgather(table.remote().toBytes()).map((bytes) => RemoteRegion.fromBytes(bytes));
  const outbox = pool.getRegion(size * SLOT);
  const ids: number[] = [];
  for (let target = 0; target < size; target++) {
    writeText(outbox, target * SLOT, stamp(rank, target, 9, size));
    ids.push(endpoint.postWrite(outbox.pointer(target * SLOT), SLOT, target, remotes[target]!.subregion(rank * SLOT, SLOT)));
  }
  let done = 0;
  const finished = new Set<number>();
  while (done < ids.length) {
    endpoint.poll();
    for (const id of ids) if (!finished.has(id) && endpoint.completed(id)) { finished.add(id); done++; }
  }
  job.barrier();
  const got = Array.from({ length: size }, (_, from) => readText(table, from * SLOT));
  check("all-to-all: every rank's stamp is in its slot", got.every((text, from) => text === stamp(from, rank, 9, size)), got);
  // Read every slot of every rank back with promises, all in flight together.
  const readBack = pool.getRegion(size * size * SLOT);
  await Promise.all(Array.from({ length: size * size }, (_, i) => {
    const target = Math.floor(i / size);
    const slot = i % size;
    return endpoint.read(readBack.pointer(i * SLOT), SLOT, target, remotes[target]!.subregion(slot * SLOT, SLOT));
  }));
  const all = Array.from({ length: size * size }, (_, i) => readText(readBack, i * SLOT));
  check("all-to-all: reading every slot of every rank gives the stamps", all.every((text, i) => text === stamp(i % size, Math.floor(i / size), 9, size)), all);
  facts.allToAllCells = all.length;
  job.barrier();
  for (const r of [table, outbox, readBack]) pool.releaseRegion(r);
  endpoint.close();
  pool.close();
  provider.close();
}

/** Bad input and closed or detached things: typed errors, and the endpoint still works afterwards. */
async function badInput(): Promise<void> {
  const provider = MpiProvider.open();
  const other = MpiProvider.open(); // a second window: its keys are not this endpoint's
  const pool = new MemoryPool(provider);
  const otherPool = new MemoryPool(other);
  const endpoint = new MpiEndpoint(provider);
  const region = pool.getRegion(SLOT);
  const remote = job.allgather(region.remote().toBytes()).map((bytes) => RemoteRegion.fromBytes(bytes))[next]!;
  const otherRegion = otherPool.getRegion(SLOT);
  const otherRemote = job.allgather(otherRegion.remote().toBytes()).map((bytes) => RemoteRegion.fromBytes(bytes))[next]!;

  throws("unknown rank (size) is a RangeError naming the ranks", () => endpoint.writeSync(region, SLOT, size, remote),
    (e) => e instanceof RangeError && e.message.includes(`rank ${size} is not in this job`));
  throws("negative rank is a RangeError", () => endpoint.postRead(region, SLOT, -1, remote), (e) => e instanceof RangeError);
  throws("a fractional rank is a RangeError", () => endpoint.readSync(region, SLOT, 0.5, remote), (e) => e instanceof RangeError);
  throws("insert of a rank outside the job is a RangeError", () => endpoint.insert(MpiEndpoint.nameOf(size + 3)),
    (e) => e instanceof RangeError && e.message.includes(`rank ${size + 3}`));
  throws("insert of a libfabric-style name is a RangeError", () => endpoint.insert(new Uint8Array(16)), (e) => e instanceof RangeError);
  throws("a key of another window is a RangeError", () => endpoint.writeSync(region, SLOT, next, otherRemote),
    (e) => e instanceof RangeError && e.message.includes("window"));
  throws("more than the remote region is a RangeError", () => endpoint.writeSync(region, SLOT, next, remote.subregion(0, 8)),
    (e) => e instanceof RangeError);
  throws("a look-alike region is a TypeError", () => endpoint.writeSync({ ...region } as MemoryRegion, SLOT, next, remote),
    (e) => e instanceof TypeError);
  endpoint.writeSync(region, SLOT, next, remote);
  check("the endpoint still works after bad input", endpoint.stats().failed === 0, endpoint.stats());

  // A region the target detached (a temporary region released): MPI_ERR_RMA_RANGE, and nothing breaks.
  const temporary = pool.getRegion(4 << 20);
  check("a region above the huge class is temporary (its own attachment)", temporary.flags.isTemp);
  const detached = job.allgather(temporary.remote().toBytes()).map((bytes) => RemoteRegion.fromBytes(bytes))[next]!;
  job.barrier();
  pool.releaseRegion(temporary); // MPI_Win_detach
  job.barrier();
  throws("writeSync to a detached region is MpiError MPI_ERR_RMA_RANGE", () => endpoint.writeSync(region, SLOT, next, detached),
    (e) => e instanceof MpiError && e.code === "MPI_ERR_RMA_RANGE" && e.function === "MPI_Put" && e.description.length > 0);
  throws("readSync from a detached region is MpiError MPI_ERR_RMA_RANGE", () => endpoint.readSync(region, SLOT, next, detached),
    (e) => e instanceof MpiError && e.code === "MPI_ERR_RMA_RANGE" && e.function === "MPI_Get");
  await rejects("write() to a detached region rejects with MpiError", () => endpoint.write(region, SLOT, next, detached),
    (e) => e instanceof MpiError && e.errorClass === 68);
  check("the region is not left pinned by failed operations", (region as unknown as { inFlight: number }).inFlight === 0);
  endpoint.writeSync(region, SLOT, next, remote);
  check("the endpoint still works after MPI errors", true);
  job.barrier();

  // Timeouts: over shared memory MPI completes these requests at once, so the endpoint's MPI_Test
  // is wrapped to report "not yet" while `stall` is set (the real request still runs and completes).
  const stalled = new MpiEndpoint(provider, { timeoutMs: 20 });
  const internals = (stalled as unknown as { transport: { test: (request: number, flag: number, status: null) => number } }).transport;
  const realTest = internals.test;
  let stall = true;
  internals.test = (request, flag, status) => {
    const code = realTest(request, flag, status);
    if (stall) new Int32Array(toArrayBuffer(flag as unknown as Pointer, 0, 4))[0] = 0;
    return code;
  };
  const pinned = (r: MemoryRegion) => (r as unknown as { inFlight: number }).inFlight;
  const started = performance.now();
  await rejects("a write past timeoutMs rejects with RmaTimeoutError", () => stalled.write(region, SLOT, next, remote),
    (e) => e instanceof RmaTimeoutError && e.timeoutMs === 20 && e.operation.kind === "write" && e.function === "MPI_Put");
  check("... after about timeoutMs", performance.now() - started >= 19, performance.now() - started);
  const id = stalled.postRead(region, SLOT, next, remote);
  await Bun.sleep(30);
  stalled.poll();
  throws("completed(id) of a read past timeoutMs throws RmaTimeoutError", () => stalled.completed(id), (e) => e instanceof RmaTimeoutError);
  throws("... and retires the id", () => stalled.completed(id), (e) => e instanceof RangeError);
  check("timed-out operations keep the region pinned while MPI holds them", pinned(region) === 2 && stalled.pendingCount === 2,
    { inFlight: pinned(region), pending: stalled.pendingCount });
  check("stats count two timeouts", stalled.stats().timedOut === 2, stalled.stats());
  stall = false;
  stalled.poll();
  check("once MPI lets go, the region is unpinned", pinned(region) === 0 && stalled.pendingCount === 0, pinned(region));
  stalled.writeSync(region, SLOT, next, remote);
  stalled.close();
  job.barrier();

  // Straddling an attached range: refused, and the provider keeps what it had.
  const span = libc.mmap(4 * libc.pageSize);
  const first = provider.register(span, 2 * libc.pageSize, 0);
  const ranges = provider.attachedRanges;
  throws("a range straddling an attached one is refused with NOT_SUPPORTED", () => provider.register(span + libc.pageSize, 2 * libc.pageSize, 0),
    (e) => e instanceof AllocToolsError && e.code === "NOT_SUPPORTED" && e.message.includes("straddles"));
  const inside = provider.register(span + 64, 128, 0);
  check("a range inside an attached one shares it, with its own key", provider.attachedRanges === ranges && inside.remoteKey !== first.remoteKey);
  provider.deregister(first);
  check("the shared attachment stays while a registration uses it", provider.attachedRanges === ranges);
  provider.deregister(inside);
  check("and goes with the last one", provider.attachedRanges === ranges - 1);
  libc.munmap(span, 4 * libc.pageSize);

  const drained = endpoint.postWrite(region, SLOT, next, remote);
  const drainedPromise = endpoint.write(region, SLOT, next, remote);
  endpoint.close();
  await drainedPromise;
  check("close() drains what is in flight: completed(id) answers after close, the region is unpinned",
    endpoint.completed(drained) && pinned(region) === 0, pinned(region));
  job.barrier(); // every rank is done writing into the others' regions before any releases one
  throws("a closed endpoint refuses operations: ENDPOINT_CLOSED", () => endpoint.writeSync(region, SLOT, next, remote),
    (e) => e instanceof AllocToolsError && e.code === "ENDPOINT_CLOSED");
  const survivor = new MpiEndpoint(provider);
  pool.releaseRegion(region);
  otherPool.releaseRegion(otherRegion);
  pool.close();
  otherPool.close();
  job.barrier();
  provider.close();
  check("closing the provider closes its endpoints", survivor.closed);
  throws("a closed provider refuses registration: PROVIDER_CLOSED", () => provider.register(libc.pageSize * 1024, 64, 0),
    (e) => e instanceof AllocToolsError && e.code === "PROVIDER_CLOSED");
  throws("a closed provider refuses new endpoints: PROVIDER_CLOSED", () => new MpiEndpoint(provider),
    (e) => e instanceof AllocToolsError && e.code === "PROVIDER_CLOSED");
  throws("new MemoryPool over a closed provider: PROVIDER_CLOSED", () => new MemoryPool(provider),
    (e) => e instanceof AllocToolsError && e.code === "PROVIDER_CLOSED");
  provider.close(); // idempotent
  other.close();
}

/**
 * provider.close() with an operation in flight (posted, never polled): the endpoint closes first
 * (it drains the operation), then the pool, so nothing is BUSY and the pool is closed, not left
 * serving regions of blocks detached from the window. The write aims at this rank's own region, so
 * no other rank's close order matters here.
 */
async function closeOrder(): Promise<void> {
  const provider = MpiProvider.open();
  const pool = new MemoryPool(provider); // adopted before the endpoint: closed after it all the same
  const endpoint = new MpiEndpoint(provider);
  const target = pool.getRegion(SLOT);
  const source = pool.getRegion(SLOT);
  writeText(source, 0, stamp(rank, rank, 11, 0));
  const id = endpoint.postWrite(source, SLOT, rank, target.remote());
  const pinned = (r: MemoryRegion) => (r as unknown as { inFlight: number }).inFlight;
  check("close-order: the posted write pins its region", pinned(source) === 1, pinned(source));
  job.barrier();
  let closeError: unknown = null;
  try {
    provider.close();
  } catch (e) {
    closeError = e;
  }
  check("close-order: provider.close() with an operation in flight does not throw", closeError === null, String(closeError));
  check("close-order: the endpoint is closed", endpoint.closed);
  check("close-order: the pool is closed, not left serving", pool.closed, { closed: pool.closed });
  check("close-order: the operation was drained, not failed", endpoint.completed(id) === true);
  check("close-order: its region is unpinned", pinned(source) === 0, pinned(source));
  check("close-order: nothing stays attached to the freed window", provider.attachedRanges === 0 && provider.registrations === 0,
    { ranges: provider.attachedRanges, registrations: provider.registrations });
  throws("close-order: the pool refuses use: POOL_CLOSED or PROVIDER_CLOSED", () => pool.getRegion(SLOT),
    (e) => e instanceof AllocToolsError && (e.code === "POOL_CLOSED" || e.code === "PROVIDER_CLOSED"));
  facts.closeOrder = true;
}

/**
 * A job with C ranks (test/mpi/c/settings-rank.c) or Bun ranks started with another
 * osc_rdma_max_attach: MpiProvider.open() either refuses on every rank (the ranks disagree) or
 * opens, and then every rank writes its stamp into slot <rank> of every other rank's page and reads
 * it back, and the C ranks write theirs into each Bun rank's page (see settings-rank.c for the
 * collectives both sides make, in order).
 */
async function cPeer(): Promise<void> {
  let provider: MpiProvider;
  try {
    provider = MpiProvider.open();
  } catch (e) {
    const error = e as { name?: string; code?: string; message?: string };
    facts.settingsRefusal = { name: error.name, code: error.code, message: error.message };
    return;
  }
  facts.settingsRefusal = null;
  const pool = new MemoryPool(provider);
  const endpoint = new MpiEndpoint(provider);
  const page = pool.getRegion(size * SLOT);
  page.view.fill(0);
  const mine = new Uint8Array(8);
  new DataView(mine.buffer).setBigUint64(0, BigInt(page.address), true);
  const addresses = job.allgather(mine).map((bytes) => new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  const key = (BigInt(provider.windowNumber) << 32n) | 1n; // any key of this window: MPI addresses by rank and address
  const outbox = pool.getRegion(SLOT);
  const back = pool.getRegion(SLOT);
  const readBack: string[] = [];
  for (let target = 0; target < size; target++) {
    if (target === rank) continue;
    const slot = new RemoteRegion(addresses[target]! + BigInt(rank * SLOT), key, SLOT);
    writeText(outbox, 0, stamp(rank, target, 6, 0));
    endpoint.writeSync(outbox, SLOT, target, slot);
    back.view.fill(0);
    endpoint.readSync(back, SLOT, target, slot);
    readBack.push(readText(back, 0));
  }
  check("c-peer: every rank's page took this rank's stamp and gives it back",
    readBack.every((text) => text.startsWith(`from ${rank} to `)), readBack);
  job.barrier(); // the C ranks now write into this rank's page
  job.barrier();
  facts.received = Array.from({ length: size }, (_, from) => (from === rank ? "" : readText(page, from * SLOT)));
  for (const r of [page, outbox, back]) pool.releaseRegion(r);
  provider.close();
}

/** exchangeNames feeding libfabric tcp endpoints: a libfabric job with no hand-written exchange. */
async function libfabricNames(): Promise<void> {
  const provider = LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" });
  const pool = new MemoryPool(provider);
  const endpoint = new Endpoint(provider);
  const names = job.exchangeNames(endpoint);
  check("exchangeNames: this rank's own name at its rank", Buffer.from(names[rank]!).equals(Buffer.from(endpoint.name)));
  const peers = names.map((name, r) => (r === rank ? -1n : endpoint.insert(name)));
  const inbox = pool.getRegion(SLOT);
  inbox.view.fill(0);
  const remotes = job.allgather(inbox.remote().toBytes()).map((bytes) => RemoteRegion.fromBytes(bytes));
  const outbox = pool.getRegion(SLOT);
  writeText(outbox, 0, stamp(rank, next, 5, 0));
  endpoint.startProgress(0); // the tcp target makes progress only when its queue is read
  await endpoint.write(outbox, SLOT, peers[next]!, remotes[next]!);
  await job.barrierAsync();
  check("libfabric tcp: the previous rank's stamp arrived through names from exchangeNames", readText(inbox, 0) === stamp(previous, rank, 5, 0),
    readText(inbox, 0));
  const back = pool.getRegion(SLOT);
  await endpoint.read(back, SLOT, peers[next]!, remotes[next]!);
  check("libfabric tcp: reading it back", readText(back, 0) === stamp(rank, next, 5, 0), readText(back, 0));
  await job.barrierAsync();
  endpoint.stopProgress();
  for (const r of [inbox, outbox, back]) pool.releaseRegion(r);
  endpoint.close();
  pool.close();
  provider.close();
  facts.libfabricNames = true;
}

/** allgather with lengths that differ per rank (and an empty one). */
function allgatherLengths(): void {
  const mine = new Uint8Array(rank * 3).fill(rank + 1);
  const all = job.allgather(mine);
  check("allgather: every rank's bytes, each with its own length", all.length === size &&
    all.every((bytes, r) => bytes.length === r * 3 && bytes.every((b) => b === r + 1)), all.map((b) => b.length));
}

/** Open MPI installs SIGSEGV/SIGBUS handlers in MPI_Init: a busy Worker must still be terminable. */
async function signals(): Promise<void> {
  const handlers = [libc.SIGSEGV, libc.SIGBUS, libc.SIGILL].map((s) => libc.signalHandler(s).toString(16));
  check("MPI_Init left Bun's SIGSEGV/SIGBUS/SIGILL handlers in place", handlers.join() === handlersBefore.join(), { handlersBefore, handlers });
  const src = URL.createObjectURL(new Blob(["postMessage(0); let x = 0; for (;;) x = (x + 1) | 0;"]));
  for (let i = 0; i < 2; i++) {
    const worker = new Worker(src);
    await new Promise((resolve) => (worker.onmessage = resolve));
    await Bun.sleep(20);
    const closed = new Promise((resolve) => worker.addEventListener("close", resolve));
    worker.terminate();
    await closed;
  }
  check("a busy Worker terminates after MPI_Init", true);
}

const scenarios: Record<string, () => unknown> = {
  ring, "all-to-all": allToAll, "bad-input": badInput, "close-order": closeOrder, "c-peer": cPeer, "libfabric-names": libfabricNames, allgather: allgatherLengths, signals,
};
// "leave-open": the job is not closed, so MPI_Finalize must come from ffi/mpi.ts's exit hook
// (mpirun fails a job whose ranks exit without it).
const leaveOpen = process.argv.includes("leave-open");
for (const name of process.argv.slice(2).filter((a) => a !== "leave-open")) {
  const scenario = scenarios[name];
  if (scenario === undefined) throw new Error(`unknown scenario ${name}; known: ${Object.keys(scenarios).join(", ")}`);
  try {
    await scenario();
  } catch (e) {
    check(`${name} ran to the end`, false, e instanceof Error ? `${e.stack}` : String(e));
    // Another rank may wait in a collective this one will not reach: end the job now.
    report();
    process.exit(1);
  }
}
if (!leaveOpen) job.close();
report();

/**
 * This rank's result: into ALLOCTOOLS_MPI_RESULT_DIR/rank-<rank>.json when test/mpi/run.ts set it
 * (mpirun may split a long stdout line and put another rank's output inside), else as a RESULT line.
 */
function report(): void {
  const json = JSON.stringify({ rank, checks, facts });
  const dir = process.env.ALLOCTOOLS_MPI_RESULT_DIR;
  if (dir) writeFileSync(`${dir}/rank-${rank}.json`, json);
  else console.log(`RESULT ${json}`);
}
