// A Worker doing RMA over a shared pool: it attaches, opens its own Endpoint over the pool's
// provider (a view of the owner's domain), exposes one pooled region, then writes stamped payloads
// into its targets (another process's region, another Worker's region) and reads each back into
// another pooled region to check it. Every local buffer is a region got from the shared pool.
import {
  Endpoint, LibfabricProvider, MemoryPool, RemoteRegion, type LibfabricProviderHandle, type MemoryRegion, type SharedPoolHandle,
} from "../../lib/index.ts";
import { fromHex, toHex } from "../rma/pattern.ts";

declare const self: Worker;

export interface RmaTarget {
  readonly name: string;
  readonly remote: string;
  /** Byte offset of this Worker's slots in the target region. */
  readonly offset: number;
}

export type RmaCommand =
  | { cmd: "open"; handle: SharedPoolHandle; id: number; exposeBytes: number }
  | { cmd: "run"; targets: RmaTarget[]; ops: number; payload: number; window: number }
  | { cmd: "check"; writers: { id: number; offset: number }[]; payload: number; window: number }
  | { cmd: "close" }
  | { cmd: "view"; provider: LibfabricProviderHandle }
  | { cmd: "after-close"; handle: SharedPoolHandle; provider: LibfabricProviderHandle };

let pool: MemoryPool;
let ep: Endpoint;
let exposed: MemoryRegion;
let id = 0;
let view: LibfabricProvider | null = null;

/** The code of what `f` throws ("none" if it does not). */
function codeOf(f: () => unknown): string {
  try {
    f();
    return "none";
  } catch (e) {
    return (e as { code?: string }).code ?? (e as Error).name;
  }
}

/** The payload of (writer, op): a stamp, then bytes derived from it; any other content fails. */
function stamp(view: Uint8Array, writer: number, op: number): void {
  const words = new DataView(view.buffer, view.byteOffset, view.byteLength);
  words.setUint32(0, writer, true);
  words.setUint32(4, op, true);
  for (let i = 8; i < view.length; i++) view[i] = (writer * 31 + op * 7 + i) & 0xff;
}

/** The (writer, op) a payload carries, or null if it is not a whole, intact payload. */
function readStamp(view: Uint8Array): { writer: number; op: number } | null {
  const words = new DataView(view.buffer, view.byteOffset, view.byteLength);
  const writer = words.getUint32(0, true);
  const op = words.getUint32(4, true);
  for (let i = 8; i < view.length; i++) if (view[i] !== ((writer * 31 + op * 7 + i) & 0xff)) return null;
  return { writer, op };
}

async function run(targets: RmaTarget[], ops: number, payload: number, window: number): Promise<{ writes: number; reads: number; errors: string[] }> {
  const peers = targets.map((t) => ({ peer: ep.insert(fromHex(t.name)), remote: RemoteRegion.fromBytes(fromHex(t.remote)), offset: t.offset }));
  const errors: string[] = [];
  let writes = 0;
  let reads = 0;
  const lane = async (w: number) => {
    for (let op = w; op < ops && errors.length < 5; op += window) {
      const target = peers[op % peers.length]!;
      const where = target.remote.subregion(target.offset + w * payload, payload);
      const source = pool.getRegion(payload);
      const sink = pool.getRegion(payload);
      try {
        stamp(source.view.subarray(0, payload), id, op);
        await ep.write(source, payload, target.peer, where);
        writes++;
        sink.view.fill(0, 0, payload);
        await ep.read(sink, payload, target.peer, where);
        reads++;
        const got = readStamp(sink.view.subarray(0, payload));
        if (got === null || got.writer !== id || got.op !== op) errors.push(`worker ${id} op ${op}: read back ${JSON.stringify(got)}`);
      } catch (e) {
        errors.push(`worker ${id} op ${op}: ${(e as Error).name}: ${(e as Error).message}`);
      } finally {
        pool.releaseRegion(source);
        pool.releaseRegion(sink);
      }
    }
  };
  // This Worker's own temporary and user regions are local memory for its endpoint too.
  const temporary = pool.getRegion(pool.stats().stacks.huge.chunkSize + 1);
  const user = pool.registerUserRegion(new Uint8Array(4 * payload));
  try {
    const target = peers[0]!;
    const where = target.remote.subregion(target.offset, payload);
    for (const [source, sink] of [[temporary, user], [user, temporary]] as const) {
      stamp(source.view.subarray(0, payload), id, 1 << 30);
      await ep.write(source, payload, target.peer, where);
      sink.view.fill(0, 0, payload);
      await ep.read(sink, payload, target.peer, where);
      const got = readStamp(sink.view.subarray(0, payload));
      if (got === null || got.writer !== id || got.op !== 1 << 30) errors.push(`worker ${id}: temporary/user region round trip read ${JSON.stringify(got)}`);
    }
  } catch (e) {
    errors.push(`worker ${id}: temporary/user region: ${(e as Error).name}: ${(e as Error).message}`);
  } finally {
    pool.releaseRegion(temporary);
    pool.releaseRegion(user);
  }
  await Promise.all(Array.from({ length: window }, (_, w) => lane(w)));
  return { writes, reads, errors };
}

self.onmessage = async (event: MessageEvent<RmaCommand>) => {
  const m = event.data;
  try {
    switch (m.cmd) {
      case "open": {
        id = m.id;
        pool = MemoryPool.attach(m.handle);
        ep = new Endpoint(pool.provider as LibfabricProvider, { timeoutMs: 15_000 });
        ep.startProgress(1); // other Workers write into this one's region
        exposed = pool.getRegion(m.exposeBytes);
        exposed.view.fill(0);
        postMessage({ ok: true, name: toHex(ep.name), remote: toHex(exposed.remote().toBytes()), index: pool.indexOf(exposed),
          providerClass: pool.provider.constructor.name, sameDomain: (pool.provider as LibfabricProvider).handles.domain });
        break;
      }
      case "run": {
        const t = performance.now();
        const r = await run(m.targets, m.ops, m.payload, m.window);
        postMessage({ ok: true, ...r, ms: performance.now() - t, stats: ep.stats() });
        break;
      }
      case "check": {
        // What the writers left in this Worker's region: whole payloads of the right writer, or zeros.
        const errors: string[] = [];
        for (const w of m.writers) {
          for (let lane = 0; lane < m.window; lane++) {
            const view = exposed.view.subarray(w.offset + lane * m.payload, w.offset + (lane + 1) * m.payload);
            if (view.every((b) => b === 0)) continue;
            const got = readStamp(view);
            if (got === null || got.writer !== w.id) errors.push(`worker ${id}: slot of writer ${w.id} lane ${lane} holds ${JSON.stringify(got)}`);
          }
        }
        postMessage({ ok: true, errors });
        break;
      }
      case "view": {
        view = LibfabricProvider.attach(m.provider);
        postMessage({ ok: true });
        break;
      }
      case "after-close": {
        // The owner closed pool and provider: everything here must fail with a typed error.
        postMessage({
          ok: true, endpointOverView: codeOf(() => new Endpoint(view!)), attachPool: codeOf(() => MemoryPool.attach(m.handle)),
          attachProvider: codeOf(() => LibfabricProvider.attach(m.provider)),
        });
        break;
      }
      case "close": {
        ep.close();
        pool.releaseRegion(exposed);
        const report = pool.close();
        postMessage({ ok: true, leaked: report.count });
        break;
      }
    }
  } catch (e) {
    postMessage({ ok: false, error: `${(e as Error).name}: ${(e as Error).message}`, code: (e as { code?: string }).code });
  }
};
