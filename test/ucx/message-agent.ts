// A UCX messaging and atomics peer in its own Bun process, driven by JSON lines on stdin like
// agent.ts: a UcxProvider, a pool, a UcxEndpoint with that pool (for receive()), progressing on
// the event loop, and a counter page whose RemoteRegion it reports, for other peers' atomics.
//
//   bun test/ucx/message-agent.ts --transports tcp [--net-devices lo] [--allocate true|false] [--timeout 5000]
//
// First line out: { ready, name, counter, provider, pid }. Message payloads are fillPattern(seed).
import { out, serveCommands } from "../command-loop.ts";
import { ANY_SOURCE, MemoryPool, RemoteRegion, UcxEndpoint, UcxProvider, type MemoryRegion, type Received } from "../../lib/index.ts";
import { fillPattern, firstMismatch, fromHex, toHex } from "../rma/pattern.ts";
import { seedOf } from "../workers/message-seeds.ts";

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? undefined : process.argv[i + 1];
}

const MiB = 1 << 20;
/** Sends in flight at once in the promise form. */
const WINDOW = 1024;
const allocate = arg("allocate");
const provider = UcxProvider.open({
  transports: arg("transports") ?? "tcp",
  ...(arg("net-devices") ? { netDevices: arg("net-devices") } : {}),
  ...(allocate !== undefined ? { allocateBlocks: allocate === "true" } : {}),
});
const pool = new MemoryPool(provider, {
  small: { chunkSize: 4096, initialCount: 4 }, medium: { chunkSize: 65_536, initialCount: 2 },
  large: { chunkSize: MiB, initialCount: 2 }, huge: { chunkSize: 4 * MiB + 4096, initialCount: 2 },
});
const ep = new UcxEndpoint(provider, { timeoutMs: Number(arg("timeout") ?? 10_000), pool });
ep.startProgress(0);
const counter: MemoryRegion = pool.getRegion(4096);
const words = new BigUint64Array(counter.view.buffer, counter.view.byteOffset, 512);
const peers: number[] = [];

type Form = "promise" | "sync" | "post";
type Command = {
  seq: number; op: string; name?: string; peer?: number; tag?: number; ignore?: number; lengths?: number[]; seeds?: number[];
  capacity?: number; form?: Form; remote?: string; offset?: number; count?: number; value?: number; me?: number; index?: number;
  bySource?: boolean; thenTag?: number;
};

/** A region of at least `length` bytes (pooled, or temporary above 4 MiB); the caller releases it. */
const regionOf = (length: number) => pool.getRegion(Math.max(length, 1));
const peerOf = (c: Command) => (c.peer === -1 ? ANY_SOURCE : peers[c.peer!]!);
const errorOf = (e: unknown) => {
  const err = e as Error & { code?: string };
  return { error: { name: err.name, code: err.code, message: err.message } };
};

/**
 * Sends one message per length, each from its own region with fillPattern(seeds[i]); all posted
 * before any is waited for. With `thenTag`, a 1-byte message with that tag follows them (a marker
 * a receiver can wait for while the others are still unreceived).
 */
async function send(c: Command): Promise<object> {
  const lengths = c.lengths!;
  const regions = lengths.map((length, i) => {
    const r = regionOf(length);
    fillPattern(r.view.subarray(0, length), c.seeds![i]!);
    return r;
  });
  const t = performance.now();
  try {
    const peer = peers[c.peer!]!;
    if (c.form === "sync") {
      for (const [i, length] of lengths.entries()) ep.sendSync(regions[i]!, length, peer, c.tag!);
    } else if (c.form === "post") {
      const ids = lengths.map((length, i) => ep.postSend(regions[i]!, length, peer, c.tag!));
      for (const id of ids) while (!ep.completed(id)) { ep.poll(); await Promise.resolve(); }
    } else {
      // In windows: sends beyond maxPending (4096 here) in flight at once would be refused (BUSY).
      const sends: Promise<void>[] = [];
      for (const [i, length] of lengths.entries()) {
        if (sends.length === WINDOW) await Promise.all(sends.splice(0));
        sends.push(ep.send(regions[i]!, length, peer, c.tag!));
      }
      if (c.thenTag !== undefined) sends.push(ep.send(counter, 1, peer, c.thenTag));
      await Promise.all(sends);
    }
    return { ok: true, ms: performance.now() - t };
  } catch (e) {
    return errorOf(e);
  } finally {
    for (const r of regions) if (r.inFlight === 0) pool.releaseRegion(r);
  }
}

/** Receives `count` messages into regions of `capacity` bytes in `form`; each result with the mismatch against its expected seed. */
async function recv(c: Command): Promise<object> {
  const count = c.count ?? 1;
  const regions = Array.from({ length: count }, () => regionOf(c.capacity!));
  const options = { ignore: c.ignore ?? 0 };
  const results: object[] = [];
  const report = (i: number, got: Received<number>, view: Uint8Array) =>
    results.push({ source: got.source, tag: got.tag, length: got.length, mismatch: c.seeds ? firstMismatch(view.subarray(0, got.length), c.seeds[i]!) : -1 });
  try {
    if (c.form === "sync") {
      for (let i = 0; i < count; i++) report(i, ep.recvSync(regions[i]!, c.capacity!, peerOf(c), c.tag!, options), regions[i]!.view);
    } else if (c.form === "post") {
      const ids = regions.map((r) => ep.postRecv(r, c.capacity!, peerOf(c), c.tag!, options));
      for (const [i, id] of ids.entries()) {
        let got: Received<number> | null;
        while ((got = ep.received(id)) === null) { ep.poll(); await Promise.resolve(); }
        report(i, got, regions[i]!.view);
      }
    } else {
      const all = await Promise.all(regions.map((r) => ep.recv(r, c.capacity!, peerOf(c), c.tag!, options)));
      all.forEach((got, i) => report(i, got, regions[i]!.view));
    }
    return { ok: true, results };
  } catch (e) {
    return { ...errorOf(e), results };
  } finally {
    for (const r of regions) if (r.inFlight === 0) pool.releaseRegion(r);
  }
}

/**
 * `count` messages of unknown size through receive(), one after the other, each checked against
 * `seeds[i]`, or with `bySource` against message-seeds.ts's seed of its source (a peer index here
 * is the sender's position) and its order from that source.
 */
async function receive(c: Command): Promise<object> {
  const results: object[] = [];
  const fromSource = new Map<number, number>();
  const seedFor = (source: number, i: number) => {
    if (!c.bySource) return c.seeds?.[i];
    const nth = fromSource.get(source) ?? 0;
    fromSource.set(source, nth + 1);
    return seedOf(source, nth);
  };
  try {
    for (let i = 0; i < (c.count ?? 1); i++) {
      using message = await ep.receive(peerOf(c), c.tag!, { ignore: c.ignore ?? 0 });
      const seed = seedFor(message.source, i);
      results.push({ source: message.source, tag: message.tag, length: message.length, regionSize: message.region.size,
        mismatch: seed !== undefined ? firstMismatch(message.view, seed) : -1 });
    }
    return { ok: true, results, regionsInUse: pool.stats().regionsInUse };
  } catch (e) {
    return { ...errorOf(e), results };
  }
}

/** `count` fetchAdds of `value` on word `index` of a peer's counter page, in `form`; the values fetched, as strings. */
async function fetchAdds(c: Command): Promise<object> {
  const remote = RemoteRegion.fromBytes(fromHex(c.remote!)).subregion(8 * (c.index ?? 0), 8);
  const peer = peers[c.peer!]!;
  const value = BigInt(c.value ?? 1);
  const fetched: string[] = [];
  const t = performance.now();
  try {
    for (let i = 0; i < c.count!; i++) {
      let found: bigint;
      if (c.form === "sync") found = ep.fetchAddSync(peer, remote, value);
      else if (c.form === "post") {
        const id = ep.postFetchAdd(peer, remote, value);
        let got: bigint | null;
        while ((got = ep.fetched(id)) === null) ep.poll();
        found = got;
      } else found = await ep.fetchAdd(peer, remote, value);
      fetched.push(found.toString());
    }
    return { ok: true, fetched, ms: performance.now() - t };
  } catch (e) {
    return { ...errorOf(e), fetched, inTransport: ep.inTransportCount };
  }
}

/**
 * `count` acquisitions of a compareSwap lock (word 0 of the peer's page, holder `me`), each
 * incrementing the record (word 1) by a plain RMA read and write: only the lock keeps it exact.
 */
async function lockRun(c: Command): Promise<object> {
  const page = RemoteRegion.fromBytes(fromHex(c.remote!));
  const lock = page.subregion(0, 8);
  const record = page.subregion(8, 8);
  const peer = peers[c.peer!]!;
  const me = BigInt(c.me!);
  const local = pool.getRegion(64);
  const view = new BigUint64Array(local.view.buffer, local.view.byteOffset, 1);
  let spins = 0;
  try {
    for (let i = 0; i < c.count!; i++) {
      for (let backoff = 1; ep.compareSwapSync(peer, lock, 0, me) !== 0n; backoff = Math.min(backoff * 2, 256)) {
        // Taken: back off (polling only) before asking again, so that waiters do not flood the target.
        spins++;
        const until = performance.now() + backoff / 1000;
        while (performance.now() < until) ep.poll();
        if (spins % 64 === 0) await Promise.resolve(); // let this process's own progress run
      }
      ep.readSync(local, 8, peer, record);
      view[0]! += 1n;
      ep.writeSync(local, 8, peer, record);
      const released = ep.compareSwapSync(peer, lock, me, 0);
      if (released !== me) return { error: { name: "LockError", message: `the lock held ${released}, not ${me}` } };
    }
    return { ok: true, spins };
  } catch (e) {
    return errorOf(e);
  } finally {
    pool.releaseRegion(local);
  }
}

async function handle(c: Command): Promise<object> {
  switch (c.op) {
    case "insert":
      peers.push(ep.insert(fromHex(c.name!)));
      return { peer: peers.length - 1 };
    case "send":
      return send(c);
    case "recv":
      return recv(c);
    case "receive":
      return receive(c);
    case "fetchAdd":
      return fetchAdds(c);
    case "lock":
      return lockRun(c);
    case "localAdd": {
      // The target's own CPU atomics on a counter word, yielding now and then so that this
      // process's progress (and the peers' emulated atomics) runs in between.
      const signed = new BigInt64Array(words.buffer, words.byteOffset, words.length);
      for (let i = 0; i < c.count!; i++) {
        Atomics.add(signed, c.index ?? 0, 1n);
        if (i % 64 === 63) await new Promise((resolve) => setImmediate(resolve));
      }
      return { ok: true };
    }
    case "counter":
      return { words: Array.from(words.subarray(0, 4), String) };
    case "resetCounter":
      words.fill(0n);
      return { ok: true };
    case "pending":
      return { pending: ep.pendingCount, inTransport: ep.inTransportCount };
    case "stopProgress":
      ep.stopProgress();
      return { ok: true };
    case "startProgress":
      ep.startProgress(0);
      return { ok: true };
    case "closeEndpoint":
      ep.close();
      return { ok: true };
    case "exit":
      if (!ep.closed) ep.close();
      if (counter.inUse) pool.releaseRegion(counter);
      pool.close();
      provider.close();
      setTimeout(() => process.exit(0), 0);
      return { ok: true };
    default:
      return { error: { name: "TypeError", message: `unknown op ${c.op}` } };
  }
}

out({ ready: true, name: toHex(ep.name), counter: toHex(counter.remote().toBytes()), provider: provider.name, pid: process.pid });

serveCommands<Command>(handle, () => {
  if (!ep.closed) ep.close();
  pool.close();
  provider.close();
});
