// A Worker exchanging tagged messages and doing remote atomics over UCX on a shared pool: it
// attaches, makes its own UcxEndpoint over the attached pool's provider (a view of the owner's
// context) with that pool for receive(), sends to the other Workers and another process, and
// receives theirs through receive(), whose regions come from the shared pool. Every reply
// carries the request's `seq`.
// Payloads follow message-seeds.ts.
import { ANY_SOURCE, MemoryPool, RemoteRegion, UcxEndpoint, UcxProvider, type MemoryRegion, type SharedPoolHandle } from "../../lib/index.ts";
import { fillPattern, firstMismatch } from "../rma/pattern.ts";
import { seedOf } from "./message-seeds.ts";

declare const self: Worker;

export type MessageCommand =
  | { cmd: "open"; handle: SharedPoolHandle }
  | { cmd: "peers"; names: Uint8Array[]; position: number }
  | { cmd: "exchange"; tag: number; sizes: number[]; to: number[]; expected: number }
  | { cmd: "counter" }
  | { cmd: "fetchAdd"; peer: number; remote: Uint8Array; count: number }
  | { cmd: "close" };

let pool: MemoryPool | null = null;
let endpoint: UcxEndpoint | null = null;
/** Peer index by position in the names list, and back. */
let peers: number[] = [];
const positions = new Map<number, number>();
let counter: MemoryRegion | null = null;

/**
 * Sends `sizes` to each position in `to` (all posted at once, each from a pooled region), and
 * receives `expected` messages from any source through receive(): each checked against its
 * sender's pattern, in order per sender.
 */
async function exchange(m: Extract<MessageCommand, { cmd: "exchange" }>, me: number): Promise<object> {
  const ep = endpoint!;
  const sources: MemoryRegion[] = [];
  const sends: Promise<void>[] = [];
  for (const position of m.to) {
    for (const [i, size] of m.sizes.entries()) {
      const region = pool!.getRegion(Math.max(size, 1));
      fillPattern(region.view.subarray(0, size), seedOf(me, i));
      sources.push(region);
      sends.push(ep.send(region, size, peers[position]!, m.tag));
    }
  }
  const received: Array<{ from: number; length: number; mismatch: number; sharedIndex: boolean }> = [];
  const count = new Map<number, number>();
  for (let n = 0; n < m.expected; n++) {
    using message = await ep.receive(ANY_SOURCE, m.tag);
    const from = positions.get(message.source) ?? -1;
    const i = count.get(from) ?? 0;
    count.set(from, i + 1);
    // A pooled region of the shared pool has an index there (a temporary one, above the largest class, would not).
    received.push({ from, length: message.length, mismatch: firstMismatch(message.view, seedOf(from, i)), sharedIndex: pool!.indexOf(message.region) >= 0 });
  }
  await Promise.all(sends);
  for (const region of sources) pool!.releaseRegion(region);
  return { received, sharedStats: pool!.stats().regionsInUse };
}

let position = -1;

async function handle(m: MessageCommand): Promise<object> {
  switch (m.cmd) {
    case "open": {
      pool = MemoryPool.attach(m.handle);
      endpoint = new UcxEndpoint(pool.provider as UcxProvider, { timeoutMs: 60_000, pool });
      endpoint.startProgress(0); // messages to this Worker and atomics on its memory need it to progress
      counter = pool.getRegion(64);
      new BigUint64Array(counter.view.buffer, counter.view.byteOffset, 1)[0] = 0n;
      return { name: endpoint.name, counter: counter.remote().toBytes(), isView: (pool.provider as UcxProvider).isAttached };
    }
    case "peers":
      position = m.position;
      peers = m.names.map((name) => endpoint!.insert(name));
      peers.forEach((peer, at) => { if (!positions.has(peer)) positions.set(peer, at); });
      return { peers: peers.length };
    case "exchange":
      return exchange(m, position);
    case "counter":
      return { value: String(new BigUint64Array(counter!.view.buffer, counter!.view.byteOffset, 1)[0]) };
    case "fetchAdd": {
      const remote = RemoteRegion.fromBytes(m.remote);
      const fetched: number[] = [];
      const peer = peers[m.peer]!;
      for (let i = 0; i < m.count; i++) fetched.push(Number(i % 4 === 3 ? await endpoint!.fetchAdd(peer, remote, 1n) : endpoint!.fetchAddSync(peer, remote, 1n)));
      return { fetched };
    }
    case "close": {
      endpoint?.close();
      if (counter !== null) pool!.releaseRegion(counter);
      const report = pool!.close();
      return { leaked: report.count };
    }
  }
}

let chain = Promise.resolve();
self.onmessage = (event: MessageEvent<MessageCommand & { seq: number }>) => {
  const m = event.data;
  chain = chain.then(async () => {
    try {
      postMessage({ seq: m.seq, ok: true, ...(await handle(m)) });
    } catch (e) {
      postMessage({ seq: m.seq, ok: false, error: e instanceof Error ? `${e.name}: ${e.message}` : String(e), code: (e as { code?: string }).code });
    }
  });
};
