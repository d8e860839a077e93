// Tagged-message scenarios of test/mpi/messages-agent.ts: pairs of ranks (rank r and r ^ 1), or a
// server (rank 0) and clients, on MpiEndpoint. Each scenario makes the same collective calls on
// every rank, whatever its checks find.
import { AllocToolsError, ANY_SOURCE, ANY_TAG, MemoryPool, MpiEndpoint, RmaTimeoutError, type MemoryRegion, type Received } from "../../lib/index.ts";
import { fillPattern, patternMismatch, sequenceOf, writeSequence, type RankContext } from "./rank-context.ts";

const SEND_FORMS = ["sendSync", "send", "postSend"] as const;
const RECEIVE_FORMS = ["recvSync", "recv", "postRecv", "receive"] as const;
type SendForm = (typeof SEND_FORMS)[number];
type ReceiveForm = (typeof RECEIVE_FORMS)[number];

/** What any receive form got: its Received fields and the bytes. */
interface Got { readonly source: number; readonly tag: number; readonly length: number; readonly view: Uint8Array }

/** Sends `length` bytes of `region` with `form`, waiting until MPI let go of them. */
export async function sendWith(form: SendForm, endpoint: MpiEndpoint, region: MemoryRegion, length: number, peer: number, tag: number): Promise<void> {
  if (form === "sendSync") endpoint.sendSync(region, length, peer, tag);
  else if (form === "send") await endpoint.send(region, length, peer, tag);
  else {
    const id = endpoint.postSend(region, length, peer, tag);
    while (!endpoint.completed(id)) endpoint.poll();
  }
}

/** Receives with `form` into `region` (receive(): into a pooled region, released here after `use`). */
async function receiveWith(c: RankContext, form: ReceiveForm, region: MemoryRegion, source: number, tag: number, ignore: number,
  use: (got: Got) => void): Promise<void> {
  const endpoint = c.endpoint;
  const options = ignore === 0 ? undefined : { ignore };
  if (form === "receive") {
    const message = await endpoint.receive(source, tag, options);
    use({ source: message.source, tag: message.tag, length: message.length, view: message.view });
    message.release();
    return;
  }
  let received: Received<number>;
  if (form === "recvSync") received = endpoint.recvSync(region, region.size, source, tag, options);
  else if (form === "recv") received = await endpoint.recv(region, region.size, source, tag, options);
  else {
    const id = endpoint.postRecv(region, region.size, source, tag, options);
    let done: Received<number> | null;
    while ((done = endpoint.received(id)) === null) endpoint.poll();
    received = done;
  }
  use({ source: received.source, tag: received.tag, length: received.length, view: region.view.subarray(0, received.length) });
}

/** Checks a message against what was sent: source, tag, length and every byte. */
function checkGot(c: RankContext, name: string, got: Got, source: number, tag: number, length: number, seed: number): void {
  const mismatch = patternMismatch(got.view, 0, Math.min(length, got.view.length), seed);
  const ok = got.source === source && got.tag === tag && got.length === length && mismatch < 0;
  c.t.check(name, ok, { source: got.source, tag: got.tag, length: got.length, expected: { source, tag, length }, mismatch });
}

/**
 * Every send form against every receive form, both ways between partners, at 0, 1, 4096 (vader's
 * eager limit), 4097 and 4 MiB; then 64 MiB in two forms.
 */
export async function forms(c: RankContext): Promise<void> {
  const partner = c.rank ^ 1;
  const even = c.rank % 2 === 0;
  let tag = 1000;
  let exchanged = 0;
  for (const size of [0, 1, 4096, 4097, 4 << 20]) {
    const out = c.pool.getRegion(Math.max(size, 1));
    const into = c.pool.getRegion(Math.max(size, 1));
    for (const sendForm of SEND_FORMS) {
      for (const receiveForm of RECEIVE_FORMS) {
        tag++;
        const name = `${sendForm} -> ${receiveForm}, ${size} bytes`;
        for (const sending of even ? [true, false] : [false, true]) {
          const seed = sending === even ? tag : tag + 7; // even's message, then odd's reply
          if (sending) {
            fillPattern(out.view, 0, size, seed);
            await sendWith(sendForm, c.endpoint, out, size, partner, tag);
          } else {
            await receiveWith(c, receiveForm, into, partner, tag, 0, (got) => checkGot(c, name, got, partner, tag, size, seed));
            exchanged++;
          }
        }
      }
    }
    c.pool.releaseRegion(out);
    c.pool.releaseRegion(into);
  }
  c.t.facts.formsExchanged = exchanged;
  await sixtyFourMebibytes(c, partner, even);
}

async function sixtyFourMebibytes(c: RankContext, partner: number, even: boolean): Promise<void> {
  const size = 64 << 20;
  const region = c.pool.getRegion(size);
  if (even) {
    fillPattern(region.view, 0, size, 64);
    c.endpoint.sendSync(region, size, partner, 64);
    fillPattern(region.view, 0, size, 65);
    await c.endpoint.send(region, size, partner, 65);
  } else {
    const received = c.endpoint.recvSync(region, size, partner, 64);
    checkGot(c, "64 MiB: sendSync -> recvSync", { ...received, view: region.view }, partner, 64, size, 64);
    const message = await c.endpoint.receive(partner, 65);
    checkGot(c, "64 MiB: send -> receive() into a pooled region of its size", message, partner, 65, size, 65);
    c.t.check("receive() took a region of the message's size", message.region.size >= size && message.view.length === size, message.region.size);
    message.release();
  }
  c.pool.releaseRegion(region);
}

/** ANY_SOURCE and ANY_TAG in every receive form: the Received names the partner and the tag it carried. */
export async function wildcards(c: RankContext): Promise<void> {
  const partner = c.rank ^ 1;
  const even = c.rank % 2 === 0;
  const out = c.pool.getRegion(256);
  const into = c.pool.getRegion(256);
  let tag = 3000;
  for (const receiveForm of RECEIVE_FORMS) {
    for (const [source, ignore, label] of [[ANY_SOURCE, 0, "ANY_SOURCE"], [partner, ANY_TAG, "ANY_TAG"], [ANY_SOURCE, ANY_TAG, "ANY_SOURCE and ANY_TAG"]] as const) {
      tag++;
      if (even) {
        fillPattern(out.view, 0, 100, tag);
        c.endpoint.sendSync(out, 100, partner, tag);
      } else {
        // A tag the receive does not name when it ignores tags: the message's own comes back.
        await receiveWith(c, receiveForm, into, source, ignore === ANY_TAG ? 7 : tag, ignore,
          (got) => checkGot(c, `${receiveForm} with ${label}: source ${partner}, tag ${tag}`, got, partner, tag, 100, tag));
      }
    }
  }
  c.pool.releaseRegion(out);
  c.pool.releaseRegion(into);
  c.job.barrier();
}

/** Requests MPI cannot express or this job cannot reach are refused before anything is taken. */
export async function refusals(c: RankContext): Promise<void> {
  const endpoint = c.endpoint;
  const region = c.pool.getRegion(64);
  const before = endpoint.stats();
  const notSupported = (e: unknown) => e instanceof AllocToolsError && e.code === "NOT_SUPPORTED" && e.message.includes("MPI_ANY_TAG");
  c.t.throws("recvSync with a mask other than 0 or ANY_TAG: NOT_SUPPORTED saying MPI has no tag masks",
    () => endpoint.recvSync(region, 64, ANY_SOURCE, 0x100, { ignore: 0xff }), notSupported);
  c.t.throws("postRecv with mask 1: NOT_SUPPORTED", () => endpoint.postRecv(region, 64, ANY_SOURCE, 0, { ignore: 1 }), notSupported);
  c.t.throws("recv with mask 0xffff0000: NOT_SUPPORTED (thrown, not a rejection)", () => endpoint.recv(region, 64, ANY_SOURCE, 0, { ignore: 0xffff_0000 }), notSupported);
  await c.t.rejects("receive() with a mask: rejects with NOT_SUPPORTED", () => endpoint.receive(ANY_SOURCE, 0, { ignore: 0xf }), notSupported);
  const upper = (e: unknown) => e instanceof RangeError && e.message.includes("MPI_TAG_UB (2147483647)");
  c.t.throws("sendSync with tag 2^31 (above MPI_TAG_UB): RangeError naming MPI_TAG_UB", () => endpoint.sendSync(region, 8, c.rank ^ 1, 2 ** 31), upper);
  c.t.throws("recvSync with tag 2^32 - 2: RangeError naming MPI_TAG_UB", () => endpoint.recvSync(region, 8, c.rank ^ 1, 2 ** 32 - 2), upper);
  c.t.throws("postSend to ANY_SOURCE: RangeError", () => endpoint.postSend(region, 8, ANY_SOURCE, 1), (e) => e instanceof RangeError);
  c.t.throws("sendSync to a rank outside the job: RangeError naming the ranks", () => endpoint.sendSync(region, 8, c.size, 1),
    (e) => e instanceof RangeError && e.message.includes(`rank ${c.size} is not in this job`));
  c.t.throws("recvSync from rank -2: RangeError", () => endpoint.recvSync(region, 8, -2, 1), (e) => e instanceof RangeError);
  const after = endpoint.stats();
  c.t.check("refusals posted nothing and pinned nothing", after.posted === before.posted && endpoint.inTransportCount === 0 &&
    (region as unknown as { inFlight: number }).inFlight === 0, { before, after });
  c.pool.releaseRegion(region);
  c.job.barrier();
}

/**
 * Messages longer than the receive, eager and rendezvous, in three forms: TRUNCATED naming both
 * lengths; nothing written around the receive (guard bytes), nor into it; the next message arrives
 * intact (the long one was consumed).
 */
export async function truncation(c: RankContext): Promise<void> {
  const partner = c.rank ^ 1;
  const even = c.rank % 2 === 0;
  const sizes = [100, 4097, 1 << 20];
  const forms = ["recvSync", "recv", "postRecv"] as const;
  const out = c.pool.getRegion(1 << 20);
  const window = c.pool.getRegion(3 * 64); // guard, receive, guard
  let tag = 4000;
  for (const size of sizes) {
    for (const form of forms) {
      tag++;
      if (!even) {
        fillPattern(out.view, 0, size, tag);
        c.endpoint.sendSync(out, size, partner, tag);
        fillPattern(out.view, 0, 32, tag + 1);
        c.endpoint.sendSync(out, 32, partner, tag);
        continue;
      }
      window.view.fill(0xee);
      const local = window.pointer(64);
      const truncated = (e: unknown) => e instanceof AllocToolsError && e.code === "TRUNCATED" &&
        e.message.includes(`${size} bytes`) && e.message.includes("64 bytes");
      const name = `${form}: a ${size}-byte message into 64 bytes is TRUNCATED naming both lengths`;
      if (form === "recvSync") c.t.throws(name, () => c.endpoint.recvSync(local, 64, partner, tag), truncated);
      else if (form === "recv") await c.t.rejects(name, () => c.endpoint.recv(local, 64, partner, tag), truncated);
      else {
        const id = c.endpoint.postRecv(local, 64, partner, tag);
        c.t.throws(name, () => { while (c.endpoint.received(id) === null) c.endpoint.poll(); }, truncated);
      }
      const untouched = window.view.every((b) => b === 0xee);
      c.t.check(`${form}, ${size} bytes: nothing written around or into the receive`, untouched);
      const next = c.endpoint.recvSync(local, 64, partner, tag);
      c.t.check(`${form}, ${size} bytes: the next message with that tag arrives intact`, next.length === 32 && patternMismatch(window.view, 64, 32, tag + 1) < 0);
    }
  }
  await poolRefusal(c, partner, even);
  c.pool.releaseRegion(out);
  c.pool.releaseRegion(window);
  c.job.barrier();
}

/**
 * receive() of a message its endpoint's pool cannot hold (maxPinnedBytes): it fails with the
 * pool's error, the message is dropped whole (nothing left behind), the next one arrives.
 */
async function poolRefusal(c: RankContext, partner: number, even: boolean): Promise<void> {
  const size = 8 << 20;
  if (!even) {
    const out = c.pool.getRegion(size);
    fillPattern(out.view, 0, size, 1);
    c.endpoint.sendSync(out, size, partner, 4100);
    fillPattern(out.view, 0, 100, 2);
    c.endpoint.sendSync(out, 100, partner, 4100);
    c.pool.releaseRegion(out);
    return;
  }
  const small = new MemoryPool(c.provider, { maxPinnedBytes: 8 << 20 }); // its initial regions take 3.75 MiB of it
  const limited = new MpiEndpoint(c.provider, { pool: small });
  await c.t.rejects("receive() of 8 MiB into a pool capped at 8 MiB pinned rejects with the pool's PINNED_LIMIT", () => limited.receive(partner, 4100),
    (e) => e instanceof AllocToolsError && e.code === "PINNED_LIMIT");
  const next = await limited.receive(partner, 4100);
  c.t.check("... the refused message was dropped whole: the next one arrives intact", next.length === 100 && patternMismatch(next.view, 0, 100, 2) < 0, next.length);
  next.release();
  limited.close();
  c.t.check("... and the capped pool has nothing out", small.close().count === 0);
}

/**
 * Order per (pair, tag) across the eager/rendezvous boundary, with the receives posted late (every
 * message unexpected) and posted early (every receive waiting): two tags interleaved by the sender,
 * received one tag after the other.
 */
export async function ordering(c: RankContext): Promise<void> {
  const partner = c.rank ^ 1;
  const even = c.rank % 2 === 0;
  const count = 30;
  const largest = 256 << 10;
  const sizeOf = (i: number) => [64, 8192, largest][i % 3]!;
  const out = c.pool.getRegion(count * 2 * largest);
  const into = c.pool.getRegion(largest);
  const tags = [5001, 5002];
  // Late: every message sent before any receive is posted.
  if (even) {
    const ids: number[] = [];
    for (let i = 0; i < count; i++) {
      for (const [k, tag] of tags.entries()) {
        const slot = out.pointer((2 * i + k) * largest);
        const view = slot.view(sizeOf(i));
        fillPattern(view, 0, sizeOf(i), i + k);
        writeSequence(view, i);
        ids.push(c.endpoint.postSend(slot, sizeOf(i), partner, tag));
      }
    }
    c.job.barrier(); // MPI progresses the rendezvous sends while the barrier waits
    for (const id of ids) while (!c.endpoint.completed(id)) c.endpoint.poll();
  } else {
    c.job.barrier();
    for (const [k, tag] of [...tags.entries()].reverse()) {
      const sequences: number[] = [];
      for (let i = 0; i < count; i++) {
        const got = c.endpoint.recvSync(into, into.size, partner, tag);
        sequences.push(sequenceOf(into.view.subarray(0, got.length)));
        c.t.check(`late receive ${i} of tag ${tag}: ${sizeOf(i)} bytes, intact`, got.length === sizeOf(i) && patternMismatch(into.view, 4, got.length - 4, i + k + 4) < 0);
      }
      c.t.check(`unexpected messages of tag ${tag} arrive in the order sent, across eager and rendezvous sizes`, sequences.every((s, i) => s === i), sequences);
    }
  }
  // Early: every receive posted before the first message is sent.
  if (even) {
    c.job.barrier();
    for (let i = 0; i < count; i++) {
      const view = out.view.subarray(0, sizeOf(i));
      writeSequence(view, 100 + i);
      c.endpoint.sendSync(out, sizeOf(i), partner, 5003);
    }
  } else {
    const slots = Array.from({ length: count }, () => c.pool.getRegion(largest));
    const ids = slots.map((slot) => c.endpoint.postRecv(slot, slot.size, partner, 5003));
    c.job.barrier();
    const got = ids.map((id, i) => {
      let received: Received<number> | null;
      while ((received = c.endpoint.received(id)) === null) c.endpoint.poll();
      return received.length === sizeOf(i) ? sequenceOf(slots[i]!.view) : -1;
    });
    c.t.check("receives posted early take the messages in the order sent", got.every((s, i) => s === 100 + i), got);
    for (const slot of slots) c.pool.releaseRegion(slot);
  }
  c.pool.releaseRegion(out);
  c.pool.releaseRegion(into);
  c.job.barrier();
}

/**
 * Aborting a receive while its message may be arriving: each receive either completes with its
 * message or rejects with the signal's reason, once; no message is lost or taken twice (the ones
 * whose receive was aborted are received afterwards). Deadlines and close end receives the same way.
 */
export async function abortRace(c: RankContext): Promise<void> {
  const partner = c.rank ^ 1;
  const even = c.rank % 2 === 0;
  const rounds = 300;
  const firstTag = 6000; // round r's message has tag 6000 + r: only its own receive can take it
  const region = c.pool.getRegion(64);
  const spin = (microseconds: number) => { const end = performance.now() + microseconds / 1000; while (performance.now() < end); };
  // Rounds 0-19: the abort surely comes first (the message is sent 3 ms later); 20-39: the message
  // surely matched (the receiver progresses for 3 ms first); then random delays on both sides.
  const plan = (round: number) => round < 20 ? { sendAfter: 3000, abortAfter: 0, progress: false }
    : round < 40 ? { sendAfter: 0, abortAfter: 3000, progress: true }
    : { sendAfter: Math.random() * 150, abortAfter: Math.random() * 150, progress: false };
  const outcomes = { completed: 0, aborted: 0, settledTwice: 0, wrongReason: 0, wrongMessage: 0 };
  const abortedRounds: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const { sendAfter, abortAfter, progress } = plan(round);
    c.job.barrier();
    if (!even) {
      spin(sendAfter);
      writeSequence(region.view, round);
      c.endpoint.sendSync(region, 8, partner, firstTag + round);
      continue;
    }
    const controller = new AbortController();
    const reason = new Error(`abort ${round}`);
    let settled = 0;
    const outcome = c.endpoint.recv(region, 64, partner, firstTag + round, { signal: controller.signal }).then(
      (received) => { settled++; outcomes.completed++; if (received.length !== 8 || sequenceOf(region.view) !== round) outcomes.wrongMessage++; },
      (e) => { settled++; outcomes.aborted++; abortedRounds.push(round); if (e !== reason) outcomes.wrongReason++; });
    if (progress) { const end = performance.now() + abortAfter / 1000; while (performance.now() < end) c.endpoint.poll(); } else spin(abortAfter);
    controller.abort(reason);
    await outcome;
    await Bun.sleep(0);
    if (settled !== 1) outcomes.settledTwice++;
  }
  c.job.barrier();
  if (even) {
    // The messages whose receive was aborted are still there, each once.
    let stillThere = 0;
    for (const round of abortedRounds) {
      const got = c.endpoint.recvSync(region, 64, partner, firstTag + round);
      if (got.length === 8 && sequenceOf(region.view) === round) stillThere++;
    }
    c.t.check("abort race: every receive settled once, aborted ones with the signal's reason, completed ones with their own message",
      outcomes.settledTwice === 0 && outcomes.wrongReason === 0 && outcomes.wrongMessage === 0, outcomes);
    c.t.check("abort race: both outcomes happened (aborted before the match, completed after it)", outcomes.completed >= 20 && outcomes.aborted >= 20, outcomes);
    c.t.check("abort race: the message of every aborted receive was not consumed: a later receive gets it", stillThere === abortedRounds.length,
      { stillThere, aborted: abortedRounds.length });
    c.t.facts.abortRace = outcomes;
    const controller = new AbortController();
    const last = c.endpoint.recv(region, 64, partner, 0, { signal: controller.signal, ignore: ANY_TAG });
    await Bun.sleep(50);
    const nothingLeft = new Error("nothing left");
    controller.abort(nothingLeft);
    await c.t.rejects("abort race: no message is left over (a last receive of any tag finds none and is aborted)", () => last, (e) => e === nothingLeft);
  }
  c.job.barrier();
  if (even) await deadlinesAndClose(c, region, partner);
  c.job.barrier();
  if (!even) {
    writeSequence(region.view, 77);
    c.endpoint.sendSync(region, 8, partner, 6901); // after the deadline passed: the next receive takes it
  }
  c.job.barrier();
  if (even) {
    const got = c.endpoint.recvSync(region, 64, partner, 6901);
    c.t.check("a receive that timed out consumed nothing: the message sent after it is received", got.length === 8 && sequenceOf(region.view) === 77);
  }
  c.pool.releaseRegion(region);
  c.job.barrier();
}

/** Deadlines (RmaTimeoutError, nothing consumed), an already-aborted signal, and close with receives waiting. */
async function deadlinesAndClose(c: RankContext, region: MemoryRegion, partner: number): Promise<void> {
  const timed = new MpiEndpoint(c.provider, { timeoutMs: 30, pool: c.pool });
  await c.t.rejects("recv past timeoutMs rejects with RmaTimeoutError (MPI_Improbe)", () => timed.recv(region, 64, partner, 6901),
    (e) => e instanceof RmaTimeoutError && e.function === "MPI_Improbe" && e.operation.kind === "recv");
  c.t.throws("recvSync past timeoutMs throws RmaTimeoutError", () => timed.recvSync(region, 64, partner, 6901), (e) => e instanceof RmaTimeoutError);
  const reason = new Error("already aborted");
  c.t.throws("recvSync with an aborted signal throws its reason, taking nothing", () => timed.recvSync(region, 64, partner, 6901, { signal: AbortSignal.abort(reason) }), (e) => e === reason);
  const pending = timed.postRecv(region, 64, ANY_SOURCE, 6999);
  const receiving = timed.receive(ANY_SOURCE, 6998);
  const served: string[] = [];
  const server = (async () => { for await (const message of timed.messages(6997)) { served.push(String(message.tag)); message.release(); } served.push("ended"); })();
  await Bun.sleep(5);
  timed.close();
  c.t.throws("close: a waiting postRecv fails with ENDPOINT_CLOSED", () => timed.received(pending), (e) => e instanceof AllocToolsError && e.code === "ENDPOINT_CLOSED");
  await c.t.rejects("close: a waiting receive() rejects with ENDPOINT_CLOSED", () => receiving, (e) => e instanceof AllocToolsError && e.code === "ENDPOINT_CLOSED");
  await server;
  c.t.check("close: messages() ends", served.join() === "ended", served);
  c.t.check("close: nothing stays pinned", (region as unknown as { inFlight: number }).inFlight === 0, (region as unknown as { inFlight: number }).inFlight);
}

/**
 * A server (rank 0) reads requests from every other rank with messages() (ANY_SOURCE) and replies
 * to each message's source; every client gets its replies in order, and the server saw each
 * client's requests in order.
 */
export async function server(c: RankContext): Promise<void> {
  const perClient = 200;
  const request = 7000;
  const reply = 7001;
  if (c.rank === 0) {
    const seen = new Map<number, number[]>();
    const controller = new AbortController();
    const out = c.pool.getRegion(256);
    let total = 0;
    for await (const message of c.endpoint.messages(request, { signal: controller.signal })) {
      const sequence = sequenceOf(message.view);
      const list = seen.get(message.source) ?? [];
      list.push(sequence);
      seen.set(message.source, list);
      out.view.set(message.view);
      message.release();
      c.endpoint.sendSync(out, message.length, message.source, reply);
      if (++total === perClient * (c.size - 1)) controller.abort();
    }
    c.pool.releaseRegion(out);
    const inOrder = [...seen.values()].every((list) => list.length === perClient && list.every((s, i) => s === i));
    c.t.check("server: messages() took every client's requests, each client's in order", seen.size === c.size - 1 && inOrder,
      [...seen.entries()].map(([source, list]) => [source, list.length]));
  } else {
    const out = c.pool.getRegion(256);
    const into = c.pool.getRegion(256);
    let ok = true;
    for (let i = 0; i < perClient; i++) {
      const length = 4 + (i % 200);
      fillPattern(out.view, 0, length, c.rank + i);
      writeSequence(out.view, i);
      const id = c.endpoint.postRecv(into, 256, 0, reply);
      await c.endpoint.send(out, length, 0, request);
      let got: Received<number> | null;
      while ((got = c.endpoint.received(id)) === null) c.endpoint.poll(); // the post form is driven by poll()
      ok &&= got.source === 0 && got.length === length && sequenceOf(into.view) === i && patternMismatch(into.view, 4, length - 4, c.rank + i + 4) < 0;
    }
    c.t.check("client: every reply came back intact, in order", ok);
    c.pool.releaseRegion(out);
    c.pool.releaseRegion(into);
  }
  c.job.barrier();
}

/**
 * A rank's messages to itself (MPI's self path), eager and rendezvous, with the receive posted
 * first or a receive() after; a sendSync of a rendezvous message to itself with no receive posted
 * times out (MPI_Send would block for ever) and the message is still there for a later receive.
 */
export async function toSelf(c: RankContext): Promise<void> {
  const out = c.pool.getRegion(4 << 20);
  const into = c.pool.getRegion(4 << 20);
  for (const size of [10, 4 << 20]) {
    fillPattern(out.view, 0, size, size % 251);
    const id = c.endpoint.postRecv(into, into.size, c.rank, 9001);
    c.endpoint.sendSync(out, size, c.rank, 9001);
    let got: Received<number> | null;
    while ((got = c.endpoint.received(id)) === null) c.endpoint.poll();
    checkGot(c, `to itself, ${size} bytes: postRecv, then sendSync`, { ...got, view: into.view }, c.rank, 9001, size, size % 251);
    const sent = c.endpoint.send(out, size, c.rank, 9002);
    const message = await c.endpoint.receive(c.rank, 9002);
    await sent;
    checkGot(c, `to itself, ${size} bytes: send, then receive()`, message, c.rank, 9002, size, size % 251);
    message.release();
  }
  const quick = new MpiEndpoint(c.provider, { timeoutMs: 100 });
  c.t.throws("sendSync of 4 MiB to itself with no receive posted: RmaTimeoutError (MPI_Isend), not a hang", () => quick.sendSync(out, 4 << 20, c.rank, 9003),
    (e) => e instanceof RmaTimeoutError && e.function === "MPI_Isend");
  c.t.check("... the timed-out send stays in transport", quick.inTransportCount === 1);
  const late = c.endpoint.recvSync(into, into.size, c.rank, 9003);
  quick.poll();
  c.t.check("... a later receive gets the message, and the send then leaves", late.length === 4 << 20 && quick.inTransportCount === 0, quick.inTransportCount);
  quick.close();
  c.pool.releaseRegion(out);
  c.pool.releaseRegion(into);
  c.job.barrier();
}
