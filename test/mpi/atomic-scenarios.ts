// Remote-atomic scenarios of test/mpi/messages-agent.ts on MpiEndpoint: a counter every rank adds
// to, a lock built on compareSwap, and bad input. The word lives on rank 0, which waits for the
// others in MPI_Barrier once its own work is done: Open MPI's vader performs an atomic in the
// target's process when that process makes MPI progress, and a blocking barrier progresses
// continuously (an event-loop wait, startProgress or barrierAsync, only once per turn).
import { toArrayBuffer, type Pointer } from "bun:ffi";
import { AllocToolsError, MpiEndpoint, MpiError, MpiProvider, MemoryPool, RemoteRegion, RmaTimeoutError, type MemoryRegion } from "../../lib/index.ts";
import type { RankContext } from "./rank-context.ts";

/** A region of `bytes` bytes on every rank, zeroed, and every rank's RemoteRegion of it. */
function sharedWords(c: RankContext, bytes: number): { region: MemoryRegion; remotes: RemoteRegion[] } {
  const region = c.pool.getRegion(bytes);
  region.view.fill(0);
  const remotes = c.job.allgather(region.remote().toBytes()).map((b) => RemoteRegion.fromBytes(b));
  return { region, remotes };
}

function words(region: MemoryRegion): BigUint64Array {
  return new BigUint64Array(region.view.buffer, region.view.byteOffset, region.view.byteLength / 8);
}

/**
 * Every rank adds 1 to rank 0's counter `perRank` times (half fetchAddSync, a quarter fetchAdd,
 * a quarter postFetchAdd eight at a time); the counter ends at size × perRank and every fetched
 * value is distinct: together they are 0 .. size × perRank - 1.
 */
export async function counter(c: RankContext): Promise<void> {
  const perRank = 10_000;
  const { region, remotes } = sharedWords(c, 8);
  const target = remotes[0]!;
  const fetched = new BigUint64Array(perRank);
  c.job.barrier();
  const started = performance.now();
  let n = 0;
  while (n < perRank / 2) fetched[n++] = c.endpoint.fetchAddSync(0, target, 1);
  while (n < (3 * perRank) / 4) fetched[n++] = await c.endpoint.fetchAdd(0, target, 1n);
  while (n < perRank) {
    const ids: number[] = [];
    for (let k = 0; k < 8 && n + ids.length < perRank; k++) ids.push(c.endpoint.postFetchAdd(0, target, 1));
    for (const id of ids) {
      let value: bigint | null;
      while ((value = c.endpoint.fetched(id)) === null) c.endpoint.poll();
      fetched[n++] = value;
    }
  }
  c.t.facts.counterMicrosecondsPerAdd = Math.round(((performance.now() - started) * 1000) / perRank);
  c.job.barrier();
  const all = c.job.allgather(new Uint8Array(fetched.buffer));
  if (c.rank === 0) {
    const total = c.size * perRank;
    const values = new Set<bigint>();
    for (const bytes of all) for (const value of new BigUint64Array(bytes.slice().buffer)) values.add(value);
    const inRange = [...values].every((value) => value < BigInt(total));
    c.t.check(`counter: ${c.size} ranks × ${perRank} fetchAdd(1) end at exactly ${total}`, words(region)[0] === BigInt(total), String(words(region)[0]));
    c.t.check("counter: every fetched value is distinct, and they are 0 .. total - 1", values.size === total && inRange, values.size);
  }
  c.job.barrier();
  c.pool.releaseRegion(region);
}

/**
 * A lock word and a record (count, owner) on rank 0; ranks 1.. take the lock with compareSwap
 * (0 -> rank) `acquisitions` times in all, read the record, add one, write it back, release
 * (rank -> 0). No update is lost: the count ends at `acquisitions`, and every release found the
 * lock still held by its releaser.
 */
export async function lock(c: RankContext): Promise<void> {
  const acquisitions = 10_000;
  const { region, remotes } = sharedWords(c, 32); // lock word, then count and owner
  const lockWord = remotes[0]!.subregion(0, 8);
  const record = remotes[0]!.subregion(16, 16);
  const workers = c.size - 1;
  const mine = c.rank === 0 ? 0 : Math.floor(acquisitions / workers) + (c.rank <= acquisitions % workers ? 1 : 0);
  c.job.barrier();
  const local = c.pool.getRegion(16);
  const me = BigInt(c.rank);
  let contended = 0;
  let brokenReleases = 0;
  const started = performance.now();
  for (let i = 0; i < mine; i++) {
    for (;;) {
      const found = i % 4 === 3 ? await c.endpoint.compareSwap(0, lockWord, 0n, me) : c.endpoint.compareSwapSync(0, lockWord, 0, me);
      if (found === 0n) break;
      contended++;
    }
    c.endpoint.readSync(local, 16, 0, record);
    const fields = words(local);
    fields[0] = fields[0]! + 1n;
    fields[1] = me;
    c.endpoint.writeSync(local, 16, 0, record);
    const id = c.endpoint.postCompareSwap(0, lockWord, me, 0n);
    let released: bigint | null;
    while ((released = c.endpoint.fetched(id)) === null) c.endpoint.poll();
    if (released !== me) brokenReleases++;
  }
  if (mine > 0) c.t.facts.lockMicrosecondsPerAcquisition = Math.round(((performance.now() - started) * 1000) / mine);
  c.t.facts.lockContended = contended;
  c.t.check("lock: every release found the lock held by its releaser", brokenReleases === 0, { brokenReleases });
  c.job.barrier();
  if (c.rank === 0) {
    const fields = words(region);
    c.t.check(`lock: ${acquisitions} acquisitions by ${workers} ranks, no lost update (count ${acquisitions}), lock free at the end`,
      fields[2] === BigInt(acquisitions) && fields[0] === 0n, { count: String(fields[2]), lock: String(fields[0]) });
  }
  c.job.barrier();
  c.pool.releaseRegion(local);
  c.pool.releaseRegion(region);
}

/**
 * Refusals before posting (misaligned, short, another window's key, a rank outside the job,
 * compareSwap on the own rank, values outside 64 bits), wrapping arithmetic, MPI errors on a
 * detached word, a closed endpoint, a timed-out atomic whose completion comes late, and a target
 * that stalls (the atomic waits for it: bounded by MPI, not by timeoutMs).
 */
export async function atomicBadInput(c: RankContext): Promise<void> {
  const partner = c.rank ^ 1;
  const { region, remotes } = sharedWords(c, 64);
  const word = remotes[partner]!.subregion(0, 8);
  const endpoint = c.endpoint;
  const other = MpiProvider.open(); // a second window: its keys are not this endpoint's
  const otherPool = new MemoryPool(other);
  const otherRegion = otherPool.getRegion(8);
  const otherRemote = RemoteRegion.fromBytes(c.job.allgather(otherRegion.remote().toBytes())[partner]!);
  const statsBefore = endpoint.stats();
  const range = (text: string) => (e: unknown) => e instanceof RangeError && e.message.includes(text);
  c.t.throws("fetchAddSync on a misaligned word: RangeError", () => endpoint.fetchAddSync(partner, remotes[partner]!.subregion(4, 8), 1), range("not a multiple of 8"));
  c.t.throws("compareSwapSync on a 4-byte region: RangeError", () => endpoint.compareSwapSync(partner, remotes[partner]!.subregion(0, 4), 0, 1), range("fewer than 8"));
  c.t.throws("postFetchAdd with another window's key: RangeError", () => endpoint.postFetchAdd(partner, otherRemote, 1), range("window"));
  c.t.throws("fetchAddSync to a rank outside the job: RangeError", () => endpoint.fetchAddSync(c.size, word, 1), range("not in this job"));
  c.t.throws("compareSwapSync on the own rank's word: NOT_SUPPORTED naming the Open MPI crash", () => endpoint.compareSwapSync(c.rank, remotes[c.rank]!, 0, 1),
    (e) => e instanceof AllocToolsError && e.code === "NOT_SUPPORTED" && e.message.includes("MPI_Compare_and_swap"));
  c.t.throws("fetchAddSync of 2^64: RangeError", () => endpoint.fetchAddSync(partner, word, 1n << 64n), (e) => e instanceof RangeError);
  c.t.throws("fetchAddSync of 1.5: RangeError", () => endpoint.fetchAddSync(partner, word, 1.5), (e) => e instanceof RangeError);
  c.t.check("refusals posted nothing", endpoint.stats().posted === statsBefore.posted && endpoint.inTransportCount === 0, endpoint.stats());
  c.job.barrier();
  // Wrapping: +5, -1 (a number), then -(5) as 2^64 - 5 (a bigint) leaves 0; 0 - 1 reads back as 2^64 - 1.
  const values = [endpoint.fetchAddSync(partner, word, 5), endpoint.fetchAddSync(partner, word, -1), endpoint.fetchAddSync(partner, word, (1n << 64n) - 4n),
    endpoint.fetchAddSync(partner, word, -1n), endpoint.fetchAddSync(partner, word, 1)];
  c.t.check("fetchAdd wraps modulo 2^64 (negative values subtract)", values.join() === [0n, 5n, 4n, 0n, (1n << 64n) - 1n].join(), values.map(String));
  c.t.check("compareSwap swaps when it finds the expected value, not otherwise",
    endpoint.compareSwapSync(partner, word, 1, 9) === 0n && endpoint.compareSwapSync(partner, word, 0, 9) === 0n && endpoint.compareSwapSync(partner, word, 0, 7) === 9n);
  c.job.barrier();
  await detachedWord(c, partner);
  await lateCompletion(c, partner, word);
  await stalledTarget(c, partner, word);
  const closed = new MpiEndpoint(c.provider);
  closed.close();
  c.t.throws("a closed endpoint refuses atomics: ENDPOINT_CLOSED", () => closed.fetchAddSync(partner, word, 1), (e) => e instanceof AllocToolsError && e.code === "ENDPOINT_CLOSED");
  c.job.barrier();
  otherPool.releaseRegion(otherRegion);
  otherPool.close();
  c.job.barrier();
  other.close();
  c.pool.releaseRegion(region);
}

/** A word the target detached: MpiError from MPI, in each call, and the endpoint still works. */
async function detachedWord(c: RankContext, partner: number): Promise<void> {
  const temporary = c.pool.getRegion(4 << 20); // its own attachment
  const detached = RemoteRegion.fromBytes(c.job.allgather(temporary.remote().toBytes())[partner]!).subregion(0, 8);
  c.job.barrier();
  c.pool.releaseRegion(temporary); // MPI_Win_detach
  c.job.barrier();
  const mpiError = (fn: string) => (e: unknown) => e instanceof MpiError && e.function === fn && e.code === "MPI_ERR_RMA_RANGE";
  c.t.throws("fetchAddSync on a detached word: MpiError MPI_ERR_RMA_RANGE from MPI_Fetch_and_op", () => c.endpoint.fetchAddSync(partner, detached, 1), mpiError("MPI_Fetch_and_op"));
  c.t.throws("compareSwapSync on a detached word: MpiError from MPI_Compare_and_swap", () => c.endpoint.compareSwapSync(partner, detached, 0, 1), mpiError("MPI_Compare_and_swap"));
  await c.t.rejects("fetchAdd on a detached word rejects: MpiError from MPI_Rget_accumulate", () => c.endpoint.fetchAdd(partner, detached, 1), mpiError("MPI_Rget_accumulate"));
  c.t.check("nothing stays in transport after MPI errors", c.endpoint.inTransportCount === 0, c.endpoint.inTransportCount);
  c.job.barrier();
}

/**
 * A fetchAdd whose MPI_Test says "not yet" past timeoutMs (MPI_Test is wrapped: over vader the
 * request is done at once): the caller gets RmaTimeoutError, MPI still holds the operation (its
 * cell stays its own), and when MPI lets go the add has happened exactly once.
 */
async function lateCompletion(c: RankContext, partner: number, word: RemoteRegion): Promise<void> {
  const stalled = new MpiEndpoint(c.provider, { timeoutMs: 20 });
  const transport = (stalled as unknown as { transport: { test: (request: number, flag: number, status: null) => number } }).transport;
  const realTest = transport.test;
  let stall = true;
  transport.test = (request, flag, status) => {
    const code = realTest(request, flag, status);
    if (stall) new Int32Array(toArrayBuffer(flag as unknown as Pointer, 0, 4))[0] = 0;
    return code;
  };
  const before = c.endpoint.fetchAddSync(partner, word, 0);
  const id = stalled.postFetchAdd(partner, word, 10);
  await c.t.rejects("fetchAdd past timeoutMs rejects with RmaTimeoutError (MPI_Fetch_and_op)", () => stalled.fetchAdd(partner, word, 100),
    (e) => e instanceof RmaTimeoutError && e.timeoutMs === 20 && e.operation.kind === "fetchAdd" && e.function === "MPI_Fetch_and_op");
  await Bun.sleep(30);
  stalled.poll();
  c.t.throws("fetched(id) of a postFetchAdd past timeoutMs throws RmaTimeoutError, and retires the id", () => stalled.fetched(id), (e) => e instanceof RmaTimeoutError);
  c.t.check("the timed-out atomics stay in transport until MPI lets go", stalled.inTransportCount === 2 && stalled.pendingCount === 2, stalled.inTransportCount);
  stall = false;
  stalled.poll();
  c.t.check("once MPI lets go they leave", stalled.inTransportCount === 0);
  const after = stalled.fetchAddSync(partner, word, 0);
  c.t.check("each late atomic added exactly once, and the slots' cells give the next atomic its own value", after === before + 110n, [String(before), String(after)]);
  stalled.close();
  c.job.barrier();
}

/**
 * The odd rank stops calling MPI for 600 ms (a busy loop): an atomic on its word waits for it,
 * whatever timeoutMs says (bounded by MPI), and completes with the right value.
 */
async function stalledTarget(c: RankContext, partner: number, word: RemoteRegion): Promise<void> {
  const quick = new MpiEndpoint(c.provider, { timeoutMs: 100 });
  const before = c.rank % 2 === 0 ? quick.fetchAddSync(partner, word, 0) : 0n;
  c.job.barrier();
  if (c.rank % 2 === 1) {
    const end = performance.now() + 600;
    while (performance.now() < end); // no MPI call: vader's emulated atomics wait
  } else {
    const spin = performance.now() + 50;
    while (performance.now() < spin); // the partner is in its loop by now
    const started = performance.now();
    const value = quick.fetchAddSync(partner, word, 1);
    const waited = performance.now() - started;
    c.t.facts.atomicAgainstStalledTargetMs = Math.round(waited);
    c.t.check("an atomic on a target that does not call MPI waits for it (past timeoutMs) and is exact", value === before && waited > 200,
      { waited, value: String(value), before: String(before) });
  }
  c.job.barrier();
  quick.close();
}
