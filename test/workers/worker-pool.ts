// A Worker that attaches to a shared pool and does what the test asks: a stress loop that stamps
// each region it holds, holding regions, releasing regions got elsewhere. It posts results back.
import { AllocToolsError, MemoryPool, type MemoryRegion, type SharedPoolHandle } from "../../lib/index.ts";

declare const self: Worker;

export type Command =
  | {
    cmd: "stress"; handle: SharedPoolHandle; id: number; pairs: number; maxHold: number; sizes: readonly number[];
    /** Start together: each Worker counts itself in word 0 and waits for `parties`. */
    barrier?: SharedArrayBuffer; parties?: number;
  }
  | { cmd: "hold"; handle: SharedPoolHandle; sizes: readonly number[] }
  | { cmd: "release"; indices: readonly number[] }
  | { cmd: "describe"; indices: readonly number[] }
  | { cmd: "unpooled"; handle: SharedPoolHandle; temporaryBytes: number; keep: boolean; userBytes?: number }
  | { cmd: "close" }
  | { cmd: "torture"; handle: SharedPoolHandle; seed: number; ops: number; sizes: readonly number[]; temporaryBytes: number };

export interface RegionInfo {
  index: number;
  address: number;
  size: number;
  remoteKey: bigint;
  remoteAddress: bigint;
  firstByte: number;
}

let pool: MemoryPool | null = null;

function info(r: MemoryRegion): RegionInfo {
  return { index: pool!.indexOf(r), address: r.address, size: r.size, remoteKey: r.remoteKey, remoteAddress: r.remoteAddress, firstByte: r.view[0]! };
}

/**
 * Gets and releases `pairs` regions of every size class, holding up to `maxHold` at once. While it
 * holds a region, its first int32 carries this Worker's id (claimed with a CAS: a region handed to
 * two Workers at once fails it) and its last byte too; both are checked before the release.
 */
function stress(p: MemoryPool, id: number, pairs: number, maxHold: number, sizes: readonly number[]): { errors: string[]; gets: number } {
  const errors: string[] = [];
  const markers = new Map<MemoryRegion, Int32Array>();
  const held: MemoryRegion[] = [];
  let seed = id * 2654435761;
  let gets = 0;
  const release = (r: MemoryRegion) => {
    const m = markers.get(r)!;
    if (Atomics.load(m, 0) !== id || r.view[r.size - 1] !== (id & 0xff)) {
      errors.push(`worker ${id}: stamp of region at 0x${r.address.toString(16)} is ${Atomics.load(m, 0)}/${r.view[r.size - 1]} before release`);
    }
    Atomics.store(m, 0, 0);
    p.releaseRegion(r);
  };
  for (let i = 0; i < pairs; i++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const cls = (seed >>> 20) & 3; // random: a Worker may hold several regions of one class
    const low = cls === 0 ? 1 : sizes[cls - 1]! + 1;
    const bytes = low + (seed % (sizes[cls]! - low + 1));
    const r = p.getRegion(bytes);
    gets++;
    let m = markers.get(r);
    if (m === undefined) markers.set(r, (m = new Int32Array(r.view.buffer, r.view.byteOffset, 1)));
    const was = Atomics.compareExchange(m, 0, 0, id);
    if (was !== 0) errors.push(`worker ${id}: region at 0x${r.address.toString(16)} still held by worker ${was}`);
    r.view[r.size - 1] = id & 0xff;
    held.push(r);
    const keep = 1 + ((seed >>> 8) % maxHold);
    while (held.length > keep) release(held.shift()!);
    if (errors.length > 10) break;
  }
  while (held.length > 0) release(held.shift()!);
  return { errors, gets };
}

/**
 * Random gets and releases of every class, temporary and user regions, held a while: what a
 * Worker of the torture test does until it is terminated (or, after `ops` operations, closes).
 */
function torture(p: MemoryPool, seed: number, ops: number, sizes: readonly number[], temporaryBytes: number): number {
  const held: MemoryRegion[] = [];
  let state = seed >>> 0 || 1;
  const random = () => (state = (Math.imul(state, 1664525) + 1013904223) >>> 0);
  let gets = 0;
  for (let i = 0; i < ops; i++) {
    const roll = random() % 100;
    try {
      if (roll < 4) held.push(p.getRegion(temporaryBytes + (random() % 4096)));
      else if (roll < 8) held.push(p.registerUserRegion(new Uint8Array(1024 + (random() % 8192))));
      else held.push(p.getRegion(1 + (random() % sizes[random() % sizes.length]!)));
      gets++;
    } catch (e) {
      if (!(e instanceof AllocToolsError) || e.code !== "PINNED_LIMIT") throw e;
    }
    const keep = random() % 6;
    while (held.length > keep) p.releaseRegion(held.splice(random() % held.length, 1)[0]!);
  }
  return gets;
}

const holding = new Map<number, MemoryRegion>();

self.onmessage = (event: MessageEvent<Command>) => {
  const m = event.data;
  try {
    switch (m.cmd) {
      case "stress": {
        pool = MemoryPool.attach(m.handle);
        if (m.barrier !== undefined) {
          const b = new Int32Array(m.barrier);
          Atomics.add(b, 0, 1);
          Atomics.notify(b, 0);
          for (let n; (n = Atomics.load(b, 0)) < m.parties!;) Atomics.wait(b, 0, n, 100);
        }
        const t = performance.now();
        const r = stress(pool, m.id, m.pairs, m.maxHold, m.sizes);
        const ms = performance.now() - t;
        const report = pool.close();
        postMessage({ ok: true, ...r, ms, leaked: report.count });
        break;
      }
      case "hold": {
        pool = MemoryPool.attach(m.handle);
        const got = m.sizes.map((n) => pool!.getRegion(n));
        got.forEach((r, k) => { r.view[0] = 100 + k; holding.set(info(r).index, r); });
        postMessage({ ok: true, regions: got.map(info) });
        break;
      }
      case "release": {
        const errors: string[] = [];
        for (const i of m.indices) {
          try { pool!.releaseRegion(pool!.region(i)); } catch (e) { errors.push(e instanceof AllocToolsError ? e.code : String(e)); }
        }
        postMessage({ ok: true, errors });
        break;
      }
      case "describe": {
        postMessage({ ok: true, regions: m.indices.map((i) => info(pool!.region(i))) });
        break;
      }
      case "unpooled": {
        // A temporary and a user region made in this Worker: registered here, keys from the shared counter.
        pool ??= MemoryPool.attach(m.handle);
        const t = pool.getRegion(m.temporaryBytes);
        const u = pool.registerUserRegion(new Uint8Array(m.userBytes ?? 1000));
        const out = { temporary: info(t), user: info(u), isTemp: t.isTemp, isUser: u.isUser };
        if (!m.keep) {
          pool.releaseRegion(t);
          pool.releaseRegion(u);
        }
        postMessage({ ok: true, ...out });
        break;
      }
      case "torture": {
        pool = MemoryPool.attach(m.handle);
        postMessage({ ok: true, at: "attached" });
        const gets = torture(pool, m.seed, m.ops, m.sizes, m.temporaryBytes);
        const report = pool.close();
        postMessage({ ok: true, at: "done", gets, leaked: report.count });
        break;
      }
      case "close": {
        const report = pool?.close();
        postMessage({ ok: true, leaked: report?.count ?? 0 });
        break;
      }
    }
  } catch (e) {
    postMessage({ ok: false, error: e instanceof Error ? `${e.name}: ${e.message}` : String(e), code: (e as AllocToolsError).code });
  }
};
