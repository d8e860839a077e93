// RMA latency and bandwidth between two endpoints, fabtests-style (fi_rma_pingpong, fi_rma_bw),
// with the local memory of each message either taken from a pool of pre-registered regions or
// registered for that message and deregistered after it.
//
//   bun examples/rma-pingpong.ts --provider tcp
//   bun examples/rma-pingpong.ts --provider shm --sizes 1,4k,1m --iterations 2000
//   bun examples/rma-pingpong.ts --provider shm --sync     (writeSync, and postWrite/poll/completed windows)
//
// The two endpoints live in this process, each on its own domain, and talk through libfabric
// exactly as two hosts would (names and RemoteRegions are exchanged as bytes). Writes complete with
// FI_DELIVERY_COMPLETE: a completion means the bytes are in the target's memory, so "usec/xfer"
// of pingpong is a delivered one-way transfer (the write and its acknowledgement), as fabtests
// report it: total time / (2 × iterations).
import {
  Endpoint, LibfabricProvider, MemoryPool, RemoteRegion, type HugePages, type MemoryPoolOptions, type MemoryRegion, type PeerAddress,
} from "alloctools";

export interface PingPongOptions {
  /** libfabric provider: tcp, shm, udp, sockets, verbs, ... */
  provider: string;
  /** Address to bind IP providers to; default 127.0.0.1 (none for shm). */
  node?: string;
  /** Message sizes in bytes. */
  sizes?: readonly number[];
  /** Iterations per size; default scaled to the size (fewer for big messages). */
  iterations?: number;
  /** Writes in flight in the bandwidth test. */
  window?: number;
  /** Short run (benchmarks' quick mode). */
  quick?: boolean;
  /** The pools' huge pages (MemoryPoolOptions.hugePages); the library's default when not given. */
  hugePages?: HugePages;
  /**
   * Wait on the calling thread instead of with promises: pingpong with writeSync, bandwidth with a
   * window of postWrite ids driven by poll() and completed().
   */
  sync?: boolean;
}

export type Memory = "pooled" | "per-message";

export interface Row {
  test: "pingpong" | "bandwidth";
  memory: Memory;
  bytes: number;
  iterations: number;
  seconds: number;
  /** Microseconds per transfer (pingpong: per one-way transfer). */
  usecPerXfer: number;
  /** Megabytes (10^6) per second. */
  mbPerSec: number;
}

export const DEFAULT_SIZES = [1, 64, 4096, 65_536, 1 << 20, 4 << 20] as const;
const IP_PROVIDERS = new Set(["tcp", "udp", "sockets", "net"]);

/** A pool whose huge class holds the largest message, with a region per in-flight write. */
function poolShape(maxBytes: number, window: number, hugePages: HugePages | undefined): MemoryPoolOptions {
  return {
    ...(hugePages !== undefined ? { hugePages } : {}),
    small: { chunkSize: 4096, initialCount: window },
    medium: { chunkSize: 65_536, initialCount: window },
    large: { chunkSize: 1 << 20, initialCount: Math.min(window, 8), growCount: 8 },
    huge: { chunkSize: Math.max(maxBytes, 2 << 20), initialCount: 2, growCount: 2 },
  };
}

/** One side: a domain, a pool, an endpoint and a region it exposes to the other side. */
class Side {
  readonly provider: LibfabricProvider;
  readonly pool: MemoryPool;
  readonly endpoint: Endpoint;
  readonly exposed: MemoryRegion;
  /** Unregistered memory for the per-message case (registered around each message). */
  readonly scratch: Uint8Array;

  constructor(o: PingPongOptions, maxBytes: number, window: number) {
    const node = o.node ?? (IP_PROVIDERS.has(o.provider) ? "127.0.0.1" : undefined);
    this.provider = LibfabricProvider.open({ provider: o.provider, ...(node ? { node } : {}) });
    this.pool = new MemoryPool(this.provider, poolShape(maxBytes, window, o.hugePages));
    this.endpoint = new Endpoint(this.provider, { timeoutMs: 30_000 });
    this.exposed = this.pool.getRegion(maxBytes);
    this.scratch = new Uint8Array(maxBytes * Math.min(window, 4));
  }

  /** Local memory for one message of `bytes`: a pooled region, or the scratch buffer registered now. */
  take(memory: Memory, bytes: number, slot: number): MemoryRegion {
    if (memory === "pooled") return this.pool.getRegion(bytes);
    const at = (slot % 4) * bytes;
    return this.pool.registerUserRegion(this.scratch.subarray(at, at + bytes));
  }

  give(region: MemoryRegion): void {
    this.pool.releaseRegion(region); // pooled: back on its stack; per message: deregistered
  }

  close(): void {
    this.endpoint.close();
    this.pool.close();
    this.provider.close();
  }
}

function iterationsFor(bytes: number, o: PingPongOptions): number {
  if (o.iterations !== undefined) return o.iterations;
  const base = o.quick ? 200 : 2000;
  const byVolume = Math.floor((o.quick ? 16 : 256) * 2 ** 20 / bytes);
  return Math.max(o.quick ? 5 : 20, Math.min(base, byVolume));
}

/**
 * `total` writes from A to B with `window` in flight, without promises: postWrite returns an id,
 * poll() turns both endpoints (B is in this process and must progress too), completed(id) asks.
 */
function windowed(a: Side, b: Side, memory: Memory, bytes: number, total: number, window: number, toB: PeerAddress, atB: RemoteRegion): void {
  const ids: number[] = new Array(window).fill(0);
  const regions: MemoryRegion[] = new Array(window);
  let posted = 0;
  let done = 0;
  while (done < total) {
    while (posted < total && posted - done < window) {
      const slot = posted % window;
      regions[slot] = a.take(memory, bytes, slot);
      ids[slot] = a.endpoint.postWrite(regions[slot]!, bytes, toB, atB);
      posted++;
    }
    a.endpoint.poll();
    b.endpoint.poll();
    while (done < posted && a.endpoint.completed(ids[done % window]!)) {
      a.give(regions[done % window]!);
      done++;
    }
  }
}

/** Runs both tests for every size and memory kind; calls `onRow` as rows come. */
export async function rmaPingPong(o: PingPongOptions, onRow: (row: Row) => void = () => {}): Promise<{ rows: Row[]; description: string }> {
  const sizes = o.sizes ?? DEFAULT_SIZES;
  const window = o.window ?? 16;
  const maxBytes = Math.max(...sizes);
  const a = new Side(o, maxBytes, window);
  let b: Side | undefined;
  const rows: Row[] = [];
  try {
    b = new Side(o, maxBytes, window);
    // What would cross the network between hosts: endpoint names and RemoteRegion bytes.
    const toB: PeerAddress = a.endpoint.insert(b.endpoint.name);
    const toA: PeerAddress = b.endpoint.insert(a.endpoint.name);
    const atB = RemoteRegion.fromBytes(b.exposed.remote().toBytes());
    const atA = RemoteRegion.fromBytes(a.exposed.remote().toBytes());
    await a.endpoint.write(a.exposed, 1, toB, atB); // connect before timing
    await b.endpoint.write(b.exposed, 1, toA, atA);
    const description = `${a.provider.name} (${a.provider.virtualAddressing ? "virtual" : "offset"} addressing, writes ${a.endpoint.writeCompletion}, ` +
      `${o.sync ? "writeSync / postWrite+poll+completed" : "promises"})`;

    for (const bytes of sizes) {
      for (const memory of ["pooled", "per-message"] as const) {
        // Pingpong: A writes B, then B writes A; each waits for its delivery.
        const n = iterationsFor(bytes, o);
        let t = 0;
        for (let i = -1; i < n; i++) {
          if (i === 0) t = performance.now(); // round -1 warms up, untimed
          const ra = a.take(memory, bytes, 0);
          if (o.sync) a.endpoint.writeSync(ra, bytes, toB, atB);
          else await a.endpoint.write(ra, bytes, toB, atB);
          a.give(ra);
          const rb = b.take(memory, bytes, 0);
          if (o.sync) b.endpoint.writeSync(rb, bytes, toA, atA);
          else await b.endpoint.write(rb, bytes, toA, atA);
          b.give(rb);
        }
        let s = (performance.now() - t) / 1000;
        const ping: Row = { test: "pingpong", memory, bytes, iterations: n, seconds: s, usecPerXfer: (s * 1e6) / (2 * n), mbPerSec: (2 * n * bytes) / s / 1e6 };
        rows.push(ping);
        onRow(ping);

        // Bandwidth: A keeps `window` writes to B in flight.
        const m = Math.max(n, window);
        let started = 0;
        const lane = async (slot: number, total: number) => {
          while (started < total) {
            started++;
            const r = a.take(memory, bytes, slot);
            await a.endpoint.write(r, bytes, toB, atB);
            a.give(r);
          }
        };
        const lanes = Math.min(window, m);
        // One untimed window first, so that the pool has grown to `window` regions of this size.
        if (o.sync) windowed(a, b, memory, bytes, lanes, lanes, toB, atB);
        else await Promise.all(Array.from({ length: lanes }, (_, k) => lane(k, lanes)));
        started = 0;
        t = performance.now();
        if (o.sync) windowed(a, b, memory, bytes, m, lanes, toB, atB);
        else await Promise.all(Array.from({ length: lanes }, (_, k) => lane(k, m)));
        s = (performance.now() - t) / 1000;
        const bw: Row = { test: "bandwidth", memory, bytes, iterations: m, seconds: s, usecPerXfer: (s * 1e6) / m, mbPerSec: (m * bytes) / s / 1e6 };
        rows.push(bw);
        onRow(bw);
      }
    }
    return { rows, description };
  } finally {
    b?.close();
    a.close();
  }
}

// ---- command line ---------------------------------------------------------------------------------

const USAGE = `usage: bun examples/rma-pingpong.ts [--provider tcp] [--node 127.0.0.1] [--sizes 1,64,4k,64k,1m,4m]
                                   [--iterations N] [--window 16] [--huge-pages transparent|try|true|false] [--sync] [--quick] [--json]
  --sync   wait on the calling thread: writeSync pingpong, postWrite/poll/completed windows (no promises)`;

function parseSize(s: string): number {
  const m = /^(\d+)([kKmM]?)$/.exec(s.trim());
  if (!m) throw new Error(`bad size ${s}`);
  const unit = m[2]!.toLowerCase();
  return Number(m[1]) * (unit === "k" ? 1024 : unit === "m" ? 1 << 20 : 1);
}

function parseArgs(argv: string[]): PingPongOptions & { json: boolean } {
  const o: PingPongOptions & { json: boolean } = { provider: "tcp", json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === "--provider") o.provider = value();
    else if (a === "--node") o.node = value();
    else if (a === "--sizes") o.sizes = value().split(",").map(parseSize);
    else if (a === "--iterations") o.iterations = Number(value());
    else if (a === "--window") o.window = Number(value());
    else if (a === "--quick") o.quick = true;
    else if (a === "--sync") o.sync = true;
    else if (a === "--huge-pages") { const v = value(); o.hugePages = v === "try" || v === "transparent" ? v : v === "true" || v === "yes"; }
    else if (a === "--json") o.json = true;
    else if (a === "--help" || a === "-h") { console.log(USAGE); process.exit(0); }
    else throw new Error(`unknown argument ${a}\n${USAGE}`);
  }
  return o;
}

function pad(s: string | number, n: number): string {
  return String(s).padStart(n);
}

function formatBytes(n: number): string {
  return n >= 1 << 20 && n % (1 << 20) === 0 ? `${n >> 20}m` : n >= 1024 && n % 1024 === 0 ? `${n >> 10}k` : String(n);
}

if (import.meta.main) {
  let o: ReturnType<typeof parseArgs>;
  try {
    o = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error((e as Error).message);
    process.exit(2);
  }
  if (!o.json) {
    console.log(`${pad("test", 9)} ${pad("memory", 11)} ${pad("bytes", 6)} ${pad("iters", 6)} ${pad("time", 8)} ${pad("MB/sec", 9)} ${pad("usec/xfer", 10)}`);
  }
  const { rows, description } = await rmaPingPong(o, (r) => {
    if (o.json) return;
    console.log(`${pad(r.test, 9)} ${pad(r.memory, 11)} ${pad(formatBytes(r.bytes), 6)} ${pad(r.iterations, 6)} ${pad(`${r.seconds.toFixed(2)}s`, 8)} ` +
      `${pad(r.mbPerSec.toFixed(2), 9)} ${pad(r.usecPerXfer.toFixed(2), 10)}`);
  });
  if (o.json) console.log(JSON.stringify({ provider: description, rows }, null, 2));
  else console.log(`# ${description}; pingpong usec/xfer is one delivered one-way transfer (fabtests' convention)`);
}
