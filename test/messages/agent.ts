// A messaging and atomics peer in its own Bun process, driven by JSON lines on stdin (the protocol
// of test/command-loop.ts). It opens a provider, a pool and an Endpoint (receive() takes from the
// pool), keeps progressing, and exposes one pooled region whose first words are a counter (offset
// 0), a lock (64) and a record (128) for other processes' atomics.
//
//   bun test/messages/agent.ts --provider tcp [--node 10.0.0.1] [--timeout 5000] [--interval 0]
//
// First line out: { ready, name, words, provider, injectSize, pid }, name and words in hex.
import { out, serveCommands } from "../command-loop.ts";
import {
  ANY_SOURCE, Endpoint, LibfabricProvider, MemoryPool, RemoteRegion, type MemoryRegion, type Message, type PeerAddress, type Received,
} from "../../lib/index.ts";
import { fillPattern, firstMismatch, fromHex, toHex } from "../rma/pattern.ts";
import { landed, landing, payload } from "./landing.ts";
import { injectSizeOf, MESSAGE_POOL } from "./message-pair.ts";

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? undefined : process.argv[i + 1];
}

const provider = LibfabricProvider.open({ provider: arg("provider") ?? "tcp", ...(arg("node") ? { node: arg("node") } : {}) });
const pool = new MemoryPool(provider, MESSAGE_POOL);
const endpoint = new Endpoint(provider, { timeoutMs: Number(arg("timeout") ?? 10_000), pool });
const interval = Number(arg("interval") ?? 1);
endpoint.startProgress(interval);
/** Counter at 0, lock at 64, record at 128: what other processes' atomics work on. */
const words: MemoryRegion = pool.getRegion(4096);
words.view.fill(0);
const counters = new BigUint64Array(words.view.buffer, words.view.byteOffset, 512);
const injectSize = injectSizeOf(provider);

const peers = new Map<string, PeerAddress>();
const peerOf = (name: string | undefined): PeerAddress | typeof ANY_SOURCE => (name === undefined || name === "any" ? ANY_SOURCE : peers.get(name)!);
const nameOf = (source: PeerAddress | number): string => (source === ANY_SOURCE ? "any" : String(source));

type Form = "promise" | "sync" | "post" | "receive" | "messages";
type Command = {
  seq: number; op: string; name?: string; peer?: string; sizes?: number[]; capacities?: number[]; tag?: number; ignore?: number;
  form?: Form; seedBase?: number; lateMs?: number; remote?: string; count?: number; window?: number; me?: number;
  /** Receives: the seed of a message is seedBase plus how many came from its source before it (several senders at once). */
  perSource?: boolean;
  /** serve: the peers (ids from insert) of the Workers, by Worker id; rounds. */
  peers?: string[]; rounds?: number;
};

/** What one received message was and held. */
interface Got { source: string; tag: number; length: number; mismatch: number; guard: number; error?: string }

async function sendAll(c: Command): Promise<object> {
  const peer = peers.get(c.peer!)!;
  const sizes = c.sizes!;
  const sources = sizes.map((size, i) => payload(pool, size, (c.seedBase ?? 0) + i));
  try {
    if (c.form === "post") {
      const ids = sizes.map((size, i) => endpoint.postSend(sources[i]!, size, peer, c.tag!));
      const done = new Set<number>();
      while (done.size < ids.length) {
        endpoint.poll();
        for (const id of ids) if (!done.has(id) && endpoint.completed(id)) done.add(id);
        if (done.size < ids.length) await Bun.sleep(0);
      }
    } else {
      for (const [i, size] of sizes.entries()) {
        if (c.form === "sync") endpoint.sendSync(sources[i]!, size, peer, c.tag!);
        else await endpoint.send(sources[i]!, size, peer, c.tag!);
      }
    }
    return { ok: true };
  } finally {
    for (const r of sources) pool.releaseRegion(r);
  }
}

async function receiveAll(c: Command): Promise<object> {
  const source = peerOf(c.peer);
  const capacities = c.capacities!;
  const options = c.ignore ? { ignore: c.ignore } : undefined;
  if (c.lateMs) await Bun.sleep(c.lateMs); // the messages arrive first: unexpected
  const seedOf = (i: number) => (c.seedBase ?? 0) + i;
  if (c.form === "receive" || c.form === "messages") {
    const got: Got[] = [];
    const take = (message: Message<PeerAddress>) => {
      got.push({ source: nameOf(message.source), tag: message.tag, length: message.length, mismatch: firstMismatch(message.view, seedOf(got.length)), guard: -1 });
      message.release();
    };
    if (c.form === "receive") {
      for (let i = 0; i < capacities.length; i++) take(await endpoint.receive(source, c.tag!, options));
    } else {
      for await (const message of endpoint.messages(c.tag!, options)) {
        take(message);
        if (got.length === capacities.length) break;
      }
    }
    return { got };
  }
  const sinks = capacities.map((capacity) => landing(pool, capacity));
  const fromSource = new Map<string, number>();
  const seedFor = (i: number, source: string) => {
    if (!c.perSource) return seedOf(i);
    const n = fromSource.get(source) ?? 0;
    fromSource.set(source, n + 1);
    return seedOf(n);
  };
  try {
    const got: Got[] = [];
    const record = (i: number, r: Received<PeerAddress> | null, error?: unknown) => {
      const length = r?.length ?? capacities[i]!;
      const check = landed(sinks[i]!, Math.min(length, capacities[i]!), seedFor(i, r ? nameOf(r.source) : ""), capacities[i]!);
      got.push({ source: r ? nameOf(r.source) : "", tag: r?.tag ?? -1, length: r ? length : -1, ...check,
        ...(error ? { error: `${(error as { code?: string }).code} ${(error as Error).message}` } : {}) });
    };
    if (c.form === "post") {
      const ids = sinks.map((sink, i) => endpoint.postRecv(sink, capacities[i]!, source, c.tag!, options));
      const results: (Received<PeerAddress> | null | Error)[] = ids.map(() => null);
      while (results.some((r) => r === null)) {
        endpoint.poll();
        for (const [i, id] of ids.entries()) {
          if (results[i] !== null) continue;
          try { results[i] = endpoint.received(id); } catch (e) { results[i] = e as Error; }
        }
        await Bun.sleep(0);
      }
      results.forEach((r, i) => (r instanceof Error ? record(i, null, r) : record(i, r)));
    } else {
      for (let i = 0; i < sinks.length; i++) {
        try {
          record(i, c.form === "sync" ? endpoint.recvSync(sinks[i]!, capacities[i]!, source, c.tag!, options) : await endpoint.recv(sinks[i]!, capacities[i]!, source, c.tag!, options));
        } catch (e) {
          record(i, null, e);
        }
      }
    }
    return { got };
  } finally {
    for (const r of sinks) pool.releaseRegion(r);
  }
}

/** `count` fetchAdd(1) on the remote counter, `window` at a time (post form), or one by one in `form`. */
async function fetchAdds(c: Command): Promise<object> {
  const peer = peers.get(c.peer!)!;
  const remote = RemoteRegion.fromBytes(fromHex(c.remote!)).subregion(0, 8);
  const values: number[] = [];
  const started = performance.now();
  if (c.form === "post") {
    const window: number[] = [];
    let posted = 0;
    while (values.length < c.count!) {
      while (posted < c.count! && window.length < c.window!) { window.push(endpoint.postFetchAdd(peer, remote, 1)); posted++; }
      endpoint.poll();
      for (let i = window.length - 1; i >= 0; i--) {
        const value = endpoint.fetched(window[i]!);
        if (value !== null) { values.push(Number(value)); window.splice(i, 1); }
      }
      await Bun.sleep(0);
    }
  } else {
    for (let i = 0; i < c.count!; i++) values.push(Number(c.form === "sync" ? endpoint.fetchAddSync(peer, remote, 1) : await endpoint.fetchAdd(peer, remote, 1)));
  }
  return { values, ms: performance.now() - started };
}

/**
 * `count` acquisitions of a compareSwap lock (the word at 64 of the remote region): swap 0 for
 * `me`, read the record (at 128), write it back plus one, release by swapping `me` for 0.
 */
async function lockedIncrements(c: Command): Promise<object> {
  const peer = peers.get(c.peer!)!;
  const remote = RemoteRegion.fromBytes(fromHex(c.remote!));
  const lock = remote.subregion(64, 8);
  const record = remote.subregion(128, 8);
  const local = pool.getRegion(64);
  const value = new BigUint64Array(local.view.buffer, local.view.byteOffset, 1);
  const me = BigInt(c.me!);
  let spins = 0;
  try {
    for (let i = 0; i < c.count!; i++) {
      for (let failed = 0; endpoint.compareSwapSync(peer, lock, 0n, me) !== 0n; failed++) {
        spins++;
        await Bun.sleep(failed < 2 ? 0 : 1); // back off: the holder needs the target's attention (and a core)
      }
      endpoint.readSync(local, 8, peer, record);
      value[0] = value[0]! + 1n;
      endpoint.writeSync(local, 8, peer, record);
      const held = endpoint.compareSwapSync(peer, lock, me, 0n);
      if (held !== me) return { error: { name: "Error", message: `acquisition ${i}: the lock held ${held}, not ${me}, at release` } };
    }
    return { ok: true, spins };
  } finally {
    pool.releaseRegion(local);
  }
}

/**
 * The agent's side of test/messages/message-worker.ts's ring, for every Worker at once: per
 * round, a message from Worker i (tag 400 + i), then one back to it (tag 500 + i).
 */
async function serveWorkers(c: Command): Promise<object> {
  const sizes = c.sizes!;
  const largest = Math.max(...sizes);
  const errors: string[] = [];
  await Promise.all(c.peers!.map(async (name, worker) => {
    const peer = peers.get(name)!;
    const sink = landing(pool, largest);
    const source = pool.getRegion(largest);
    try {
      for (let round = 0; round < c.rounds! && errors.length < 5; round++) {
        const size = sizes[round % sizes.length]!;
        const got = await endpoint.recv(sink, largest, peer, 400 + worker);
        if (got.length !== size || landed(sink, size, 7000 + worker * 100 + round).mismatch !== -1) errors.push(`from worker ${worker}, round ${round}: ${got.length} bytes, wrong`);
        fillPattern(source.view.subarray(0, size), 9000 + worker * 100 + round);
        await endpoint.send(source, size, peer, 500 + worker);
      }
    } catch (e) {
      errors.push(`worker ${worker}: ${(e as Error).name}: ${(e as Error).message}`);
    } finally {
      pool.releaseRegion(sink);
      pool.releaseRegion(source);
    }
  }));
  return { errors };
}

async function handle(c: Command): Promise<object> {
  switch (c.op) {
    case "insert": {
      const peer = endpoint.insert(fromHex(c.name!));
      peers.set(String(peer), peer);
      return { peer: String(peer) };
    }
    case "send": return sendAll(c);
    case "recv": return receiveAll(c);
    case "fetchAdd": return fetchAdds(c);
    case "serve": return serveWorkers(c);
    case "lock": return lockedIncrements(c);
    case "words": return { counter: String(counters[0]), lock: String(counters[8]), record: String(counters[16]) };
    case "exit":
      endpoint.close();
      pool.releaseRegion(words);
      pool.close();
      provider.close();
      setTimeout(() => process.exit(0), 0);
      return { ok: true };
    default:
      return { error: { name: "TypeError", message: `unknown op ${c.op}` } };
  }
}

out({ ready: true, name: toHex(endpoint.name), words: toHex(words.remote().toBytes()), provider: provider.name, injectSize, pid: process.pid });

serveCommands<Command>(handle, () => {
  endpoint.close();
  pool.close();
  provider.close();
});
