// The Bun side of a job with a C rank that knows only MPI and docs/messaging.md
// (test/mpi/c/messages-rank.c, the last rank):
// `mpirun -x OMPI_MCA_osc_rdma_max_attach=4096 -n 2 bun test/mpi/messages-agent.ts c-peer : -n 1 messages-rank`.
// The collective calls are the C rank's: the osc_rdma_max_attach allgather and
// MPI_Win_create_dynamic (MpiProvider.open), three MPI_Barrier, and MPI_Win_free
// (MpiProvider.close); nothing else is collective.
//
// 1. Rank 0 and the C rank exchange messages: rank 0 sends with every send form, the C rank takes
//    each with MPI_Recv(MPI_ANY_TAG), checks the bytes, and answers with MPI_Send on tag + 1, which
//    rank 0 takes with every receive form (exact source and tag, ANY_SOURCE, ANY_TAG; posted before
//    or after the answer arrives). Tag 1 (empty) ends it.
// 2. A counter on rank 0: rank 1 (fetchAdd in three forms) and the C rank (MPI_Fetch_and_op, and
//    reads with MPI_NO_OP) each add 1 to it 10^4 times, interleaved; both send rank 0 the values
//    they fetched, which must be distinct and cover 0 .. 2×10^4 - 1.
import { ANY_SOURCE, ANY_TAG, RemoteRegion, type MemoryRegion } from "../../lib/index.ts";
import { fillPattern, patternMismatch, type RankContext } from "./rank-context.ts";
import { sendWith } from "./message-scenarios.ts";

/** Tags of the protocol with the C rank (test/mpi/c/messages-rank.c uses the same numbers). */
const END_TAG = 1;
const ADDRESS_TAG = 2;
const REGION_TAG = 3;
const VALUES_TAG = 4;
const FIRST_ROUND_TAG = 100;
/** Fetch-adds per adding rank. */
export const ADDS = 10_000;

export async function cPeer(c: RankContext): Promise<void> {
  if (c.rank === 0) await talkToC(c);
  if (c.rank === 0) await counterOwner(c);
  else await counterAdder(c);
}

/** Every send form against the C rank's MPI_Recv, every receive form against its MPI_Send. */
async function talkToC(c: RankContext): Promise<void> {
  const peer = c.size - 1;
  const out = c.pool.getRegion(4 << 20);
  const into = c.pool.getRegion(4 << 20);
  let tag = FIRST_ROUND_TAG;
  let rounds = 0;
  for (const size of [0, 1, 5000, 4 << 20]) {
    for (const sendForm of ["sendSync", "send", "postSend"] as const) {
      for (const receiveForm of ["recvSync", "recv", "postRecv", "receive"] as const) {
        const variant = rounds % 3; // 0: exact source and tag, 1: ANY_SOURCE, 2: ANY_TAG
        const source = variant === 1 ? ANY_SOURCE : peer;
        const options = variant === 2 ? { ignore: ANY_TAG } : undefined;
        const answerTag = tag + 1;
        // Receives other than recvSync are posted before the send: the answer finds them waiting.
        const early = receiveForm === "recv" ? c.endpoint.recv(into, into.size, source, answerTag, options)
          : receiveForm === "receive" ? c.endpoint.receive(source, answerTag, options)
            : receiveForm === "postRecv" ? c.endpoint.postRecv(into, into.size, source, answerTag, options) : null;
        fillPattern(out.view, 0, size, tag);
        await sendWith(sendForm, c.endpoint, out, size, peer, tag);
        const got = await answer(c, receiveForm, early, into, source, answerTag, options);
        const name = `C peer: ${sendForm} of ${size} bytes, its answer by ${receiveForm}${variant === 1 ? " (ANY_SOURCE)" : variant === 2 ? " (ANY_TAG)" : ""}`;
        c.t.check(name, got.source === peer && got.tag === answerTag && got.length === size && patternMismatch(got.view, 0, size, answerTag) < 0,
          { source: got.source, tag: got.tag, length: got.length });
        got.done();
        tag += 2;
        rounds++;
      }
    }
  }
  c.endpoint.sendSync(out, 0, peer, END_TAG);
  c.t.facts.cPeerRounds = rounds;
  c.pool.releaseRegion(out);
  c.pool.releaseRegion(into);
}

interface Answer { source: number; tag: number; length: number; view: Uint8Array; done(): void }

/** The C rank's answer, by the receive form posted (or now, for recvSync). */
async function answer(c: RankContext, form: string, early: unknown, into: MemoryRegion, source: number, tag: number,
  options: { ignore: number } | undefined): Promise<Answer> {
  const plain = (r: { source: number; tag: number; length: number }): Answer => ({ ...r, view: into.view.subarray(0, r.length), done: () => {} });
  if (form === "recvSync") return plain(c.endpoint.recvSync(into, into.size, source, tag, options));
  if (form === "postRecv") {
    let received;
    while ((received = c.endpoint.received(early as number)) === null) c.endpoint.poll();
    return plain(received);
  }
  if (form === "recv") return plain(await (early as Promise<{ source: number; tag: number; length: number }>));
  const message = await (early as ReturnType<typeof c.endpoint.receive>);
  return { source: message.source, tag: message.tag, length: message.length, view: message.view, done: () => message.release() };
}

/** Rank 0: the counter's owner; hands out its address, progresses while the others add, checks the values. */
async function counterOwner(c: RankContext): Promise<void> {
  const peer = c.size - 1;
  const counter = c.pool.getRegion(8);
  counter.view.fill(0);
  const remote = counter.remote();
  const scratch = c.pool.getRegion(ADDS * 8);
  new BigUint64Array(scratch.view.buffer, scratch.view.byteOffset, 1)[0] = remote.address;
  c.endpoint.sendSync(scratch, 8, peer, ADDRESS_TAG); // the C rank's target displacement: the address itself
  scratch.view.set(remote.toBytes());
  c.endpoint.sendSync(scratch, 32, 1, REGION_TAG);
  c.endpoint.startProgress(0);
  c.job.barrier(); // 1: adding starts
  const values = new Set<bigint>();
  for (const from of [1, peer]) {
    const got = await c.endpoint.recv(scratch, ADDS * 8, from, VALUES_TAG);
    c.t.check(`rank ${from} sent its ${ADDS} fetched values`, got.length === ADDS * 8, got.length);
    for (const value of new BigUint64Array(scratch.view.buffer, scratch.view.byteOffset, ADDS)) values.add(value);
  }
  c.job.barrier(); // 2: the C rank reads the final value after this
  const total = BigInt(2 * ADDS);
  const final = new BigUint64Array(counter.view.buffer, counter.view.byteOffset, 1)[0]!;
  c.t.check(`C peer interleaved: the counter is exactly ${total}`, final === total, String(final));
  c.t.check("C peer interleaved: all fetched values (ours and the C rank's) distinct, 0 .. total - 1",
    values.size === 2 * ADDS && [...values].every((v) => v < total), values.size);
  c.job.barrier(); // 3
  c.endpoint.stopProgress();
  c.pool.releaseRegion(scratch);
  c.pool.releaseRegion(counter);
}

/** Rank 1: adds 1 to rank 0's counter ADDS times in the three forms, interleaved with the C rank's. */
async function counterAdder(c: RankContext): Promise<void> {
  const scratch = c.pool.getRegion(ADDS * 8);
  c.endpoint.recvSync(scratch, 32, 0, REGION_TAG);
  const target = RemoteRegion.fromBytes(scratch.view.slice(0, 32));
  const values = new BigUint64Array(scratch.view.buffer, scratch.view.byteOffset, ADDS);
  c.job.barrier(); // 1
  for (let i = 0; i < ADDS; i++) {
    if (i % 3 === 0) values[i] = c.endpoint.fetchAddSync(0, target, 1);
    else if (i % 3 === 1) values[i] = await c.endpoint.fetchAdd(0, target, 1);
    else {
      const id = c.endpoint.postFetchAdd(0, target, 1);
      let value: bigint | null;
      while ((value = c.endpoint.fetched(id)) === null) c.endpoint.poll();
      values[i] = value;
    }
  }
  c.endpoint.sendSync(scratch, ADDS * 8, 0, VALUES_TAG);
  c.job.barrier(); // 2
  c.job.barrier(); // 3
  c.pool.releaseRegion(scratch);
}
