// A Worker doing RMA over UCX on a shared pool: it attaches, makes its own UcxEndpoint over the
// attached pool's provider (a view of the owner's context), and writes and reads stamped payloads
// into other Workers' regions and another process's, from pooled, temporary and user regions.
// Every reply carries the request's `seq`.
import {
  AllocToolsError, MemoryPool, RemoteRegion, UcxEndpoint, UcxProvider, type MemoryRegion, type SharedPoolHandle,
  type UcxProviderHandle,
} from "../../lib/index.ts";
import { fillPattern, firstMismatch } from "../rma/pattern.ts";

declare const self: Worker;

/** One place this Worker writes to: a peer's region, of which this Worker owns `offset`..+`length`. */
export interface UcxTarget {
  /** Index into the names given with "peers". */
  peer: number;
  /** The region's RemoteRegion bytes. */
  remote: Uint8Array;
  offset: number;
  length: number;
  /** The seed of the final stamp written over the whole slice. */
  finalSeed: number;
}

export type UcxCommand =
  | { cmd: "open"; handle: SharedPoolHandle; inboxBytes: number; temporaryBytes: number; userBytes: number }
  | { cmd: "peers"; names: Uint8Array[] }
  | { cmd: "run"; targets: UcxTarget[]; ops: number; seed: number; maxLength: number; announce?: boolean }
  | { cmd: "inbox"; checks: { region: "pooled" | "temporary"; offset: number; length: number; seed: number }[] }
  | { cmd: "close" }
  | { cmd: "bad-handles"; closedProvider: UcxProviderHandle; closedPool: SharedPoolHandle; live: UcxProviderHandle }
  | { cmd: "endpoint-on-view" };

let pool: MemoryPool | null = null;
let endpoint: UcxEndpoint | null = null;
let peers: number[] = [];
let inbox: { pooled: MemoryRegion; temporary: MemoryRegion } | null = null;
/** Local memory of each kind: a pooled region, a temporary one and a user one. */
let locals: MemoryRegion[] = [];
let view: UcxProvider | null = null;

function code(f: () => unknown): string {
  try {
    f();
    return "no error";
  } catch (e) {
    return e instanceof AllocToolsError ? e.code : (e as Error).name;
  }
}

/**
 * `ops` writes, each read back into other local memory and compared: random lengths and offsets
 * inside this Worker's slice of each target, local memory of every kind, the three forms in turn.
 * Then the final stamp over each whole slice.
 */
async function run(m: Extract<UcxCommand, { cmd: "run" }>): Promise<{ writes: number; reads: number; errors: string[]; ms: number }> {
  const ep = endpoint!;
  const remotes = m.targets.map((t) => RemoteRegion.fromBytes(t.remote));
  const errors: string[] = [];
  let state = m.seed >>> 0 || 1;
  const random = () => (state = (Math.imul(state, 1664525) + 1013904223) >>> 0);
  let writes = 0;
  let reads = 0;
  const t0 = performance.now();
  for (let i = 0; i < m.ops && errors.length < 5; i++) {
    const t = i % m.targets.length;
    const target = m.targets[t]!;
    const length = 1 + (random() % Math.min(m.maxLength, target.length));
    const at = target.offset + (random() % (target.length - length + 1));
    const remote = remotes[t]!.subregion(at, length);
    const source = locals[i % locals.length]!;
    const sink = locals[(i + 1) % locals.length]!;
    // Source in the first half of its region, sink in the second half of its own: never overlapping.
    const sourceAt = source.pointer(random() % ((source.size >>> 1) - length + 1));
    const sinkHalf = sink.size >>> 1;
    const sinkAt = sink.pointer(sinkHalf + (random() % (sink.size - sinkHalf - length + 1)));
    const seed = (i * 7 + m.seed) & 0xff;
    fillPattern(sourceAt.view(length), seed);
    sinkAt.view(length).fill(0);
    const peer = peers[target.peer]!;
    const form = i % 3;
    if (form === 0) {
      await ep.write(sourceAt, length, peer, remote);
      await ep.read(sinkAt, length, peer, remote);
    } else if (form === 1) {
      ep.writeSync(sourceAt, length, peer, remote);
      ep.readSync(sinkAt, length, peer, remote);
    } else {
      const w = ep.postWrite(sourceAt, length, peer, remote);
      while (!ep.completed(w)) ep.poll();
      const r = ep.postRead(sinkAt, length, peer, remote);
      while (!ep.completed(r)) ep.poll();
      await Promise.resolve();
    }
    writes++;
    reads++;
    const mismatch = firstMismatch(sinkAt.view(length), seed);
    if (mismatch >= 0) errors.push(`op ${i}: ${length} B at ${at} of target ${t}, form ${form}: byte ${mismatch} differs`);
    if (m.announce && i === 10) postMessage({ seq: -1, running: true });
  }
  for (const [t, target] of m.targets.entries()) {
    const source = locals[t % locals.length]!;
    fillPattern(source.view.subarray(0, target.length), target.finalSeed);
    await ep.write(source, target.length, peers[target.peer]!, remotes[t]!.subregion(target.offset, target.length));
    writes++;
  }
  return { writes, reads, errors, ms: performance.now() - t0 };
}

async function handle(m: UcxCommand): Promise<object> {
  switch (m.cmd) {
    case "open": {
      pool = MemoryPool.attach(m.handle);
      // The attached pool's provider is a view of the owner's context: this Worker's own ucp_worker on it.
      endpoint = new UcxEndpoint(pool.provider as UcxProvider, { timeoutMs: 10_000 });
      endpoint.startProgress(0); // a target on emulated paths (tcp, our own memory on shm) must progress
      inbox = { pooled: pool.getRegion(m.inboxBytes), temporary: pool.getRegion(m.temporaryBytes) };
      locals = [pool.getRegion(m.inboxBytes), pool.getRegion(m.temporaryBytes), pool.registerUserRegion(new Uint8Array(m.userBytes))];
      return {
        name: endpoint.name, pooled: inbox.pooled.remote().toBytes(), temporary: inbox.temporary.remote().toBytes(),
        kinds: [...locals, inbox.temporary].map((r) => (r.isTemp ? "temporary" : r.isUser ? "user" : "pooled")),
        isView: (pool.provider as UcxProvider).isAttached,
      };
    }
    case "peers":
      peers = m.names.map((name) => endpoint!.insert(name));
      return { peers: peers.length };
    case "run":
      return run(m);
    case "inbox":
      return {
        mismatches: m.checks.map((c) => firstMismatch(inbox![c.region].view.subarray(c.offset, c.offset + c.length), c.seed)),
      };
    case "close": {
      endpoint?.close();
      for (const r of [...locals, inbox!.pooled, inbox!.temporary]) pool!.releaseRegion(r);
      const report = pool!.close();
      return { leaked: report.count };
    }
    case "bad-handles": {
      view = UcxProvider.attach(m.live);
      return {
        closedProvider: code(() => UcxProvider.attach(m.closedProvider)),
        otherProcess: code(() => UcxProvider.attach({ ...m.live, pid: m.live.pid + 100_000 })),
        forged: code(() => UcxProvider.attach({ ...m.live, state: new SharedArrayBuffer(64) })),
        closedPool: code(() => MemoryPool.attach(m.closedPool)),
      };
    }
    case "endpoint-on-view":
      return { closed: view!.closed, endpoint: code(() => new UcxEndpoint(view!)), register: code(() => view!.register(4096, 4096, 0)) };
  }
}

let chain = Promise.resolve();
self.onmessage = (event: MessageEvent<UcxCommand & { seq: number }>) => {
  const m = event.data;
  chain = chain.then(async () => {
    try {
      postMessage({ seq: m.seq, ok: true, ...(await handle(m)) });
    } catch (e) {
      postMessage({ seq: m.seq, ok: false, error: e instanceof Error ? `${e.name}: ${e.message}` : String(e), code: (e as AllocToolsError).code });
    }
  });
};
