// UCX against ucx_perftest, in the same run and in alternating rounds (ours, then perftest, then
// perftest first the next round) so that this 2-core VM's noise hits both sides alike:
// - writeSync at 64 B (put + flush: delivery-complete, a full round trip over tcp) against
//   `ucp_put_lat` (half the round trip of a put ping-pong), and against 2 × `ucp_put_lat`;
// - our put ping-pong at 64 B, measured the way `ucp_put_lat` is (each side postWrites a stamp
//   into the other's region, the other polls its memory for it; p50 of the per-iteration times,
//   halved), against `ucp_put_lat`;
// - windowed 1 MiB writes against `ucp_put_bw`: the same message size, window (32), warm-up and
//   number of messages; each side's bandwidth is all bytes over all the time including the last
//   flush, and the verdict is the median of the per-round ratios, with their spread.
// Over shared memory (UCX-allocated blocks and our own) and over tcp on loopback; each side is a
// target process on CPU 1 and an initiator on CPU 0, the target busy-polling (as perftest's does)
// and paused while perftest runs. Then pool get+release over UCX beside the same over libfabric
// (mitata benches; the pool suite has the libfabric ones).
//
// Run as a script (`bun bench/suites/ucx.ts --target ...`) this file is the target process: it
// exposes a pooled region, prints its worker address and RemoteRegion, busy-progresses, and takes
// commands as JSON lines on stdin (see runTarget).
import { bench, group, summary } from "mitata";
import { ucxStatus } from "../../ffi/ucx.ts";
import { MemoryPool, RemoteRegion, UcxEndpoint, UcxProvider, type MemoryPoolOptions, type MemoryRegion } from "../../lib/index.ts";
import type { BenchContext, Suite } from "../context.ts";
import { cellsPerOp } from "../jit.ts";
import { names as poolNames } from "./pool.ts";
import { allCpus, onCpu, pinSelf, pinnable } from "../cpu.ts";
import { median, spread } from "../stats.ts";

const SUITE = "ucx";
const MiB = 1 << 20;
/** The latency message and the bandwidth message. */
const SMALL = 64;
const LARGE = MiB;
/** Writes in flight in the bandwidth test: ucx_perftest's put_bw window (its default, passed as -O). */
const WINDOW = 32;
/** The ping-pong stamp: the last 4 bytes of the 64 B message (perftest stamps the message's end too). */
const STAMP_WORD = SMALL / 4 - 1;
/** The target busy-polls this long between yields to its event loop (where it reads commands). */
const BUSY_SLICE_MS = 5;
const POOL_TABLE = "pool get+release: over libfabric / over UCX (same pool code)";

/** One transport configuration measured on both sides. */
interface Case {
  label: string;
  transports: string;
  netDevices?: string;
  allocateBlocks: boolean;
  /** Target ratio (writeSync / perftest put_lat) the issue sets. */
  latencyTarget: number;
  /** Ping-pong iterations per round, ours and ucx_perftest's ucp_put_lat alike (a tenth in quick mode). Over tcp perftest's average is ~4× its p50 (stalls). */
  latencyIterations: number;
  /** 1 MiB messages per round, ours and ucx_perftest's ucp_put_bw alike (a fifth in quick mode), after a tenth as many to warm up. */
  bandwidthIterations: number;
}

const CASES: readonly Case[] = [
  { label: "shm (UCX-allocated blocks)", transports: "posix,cma", allocateBlocks: true, latencyTarget: 3, latencyIterations: 100_000, bandwidthIterations: 2000 },
  { label: "shm (own blocks)", transports: "posix,cma", allocateBlocks: false, latencyTarget: 3, latencyIterations: 20_000, bandwidthIterations: 400 },
  { label: "tcp", transports: "tcp", netDevices: "lo", allocateBlocks: false, latencyTarget: 1.3, latencyIterations: 5_000, bandwidthIterations: 100 },
];

/** A pool with only the huge class: one 1 MiB region to expose, one to send from. */
const ONE_MIB_POOL: MemoryPoolOptions = {
  small: { initialCount: 0 }, medium: { initialCount: 0 }, large: { initialCount: 0 }, huge: { chunkSize: MiB, initialCount: 2 },
};

const fromHex = (hex: string) => new Uint8Array(Buffer.from(hex, "hex"));
const toHex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

/** The stamp word of a region's first 64 bytes. */
const stampWords = (region: MemoryRegion) => new Uint32Array(region.view.buffer, region.view.byteOffset, SMALL / 4);

// ---- the ping-pong, both sides ----------------------------------------------------------------

/**
 * One side of the put ping-pong: for stamp base+1 … base+count, the initiator writes the stamp
 * into the peer's region and waits for the same stamp in its own; the responder waits first.
 * Waiting is poll() (progress, flushes issued, completions read) and a read of the own memory.
 * Returns each iteration's end time (Bun.nanoseconds()) in `ends` when given.
 */
function pingPong(ep: UcxEndpoint, source: MemoryRegion, own: MemoryRegion, peer: number, remote: RemoteRegion,
  base: number, count: number, initiator: boolean, ends: Float64Array | null): void {
  const outgoing = stampWords(source);
  const incoming = stampWords(own);
  const ids: number[] = [];
  const deadline = performance.now() + 60_000;
  let spins = 0;
  for (let i = 1; i <= count; i++) {
    const stamp = base + i;
    if (!initiator) {
      while (incoming[STAMP_WORD] !== stamp) {
        ep.poll();
        if (++spins % 4096 === 0 && performance.now() > deadline) throw new Error(`ping-pong: stamp ${stamp} did not arrive`);
      }
    }
    outgoing[STAMP_WORD] = stamp;
    ids.push(ep.postWrite(source, SMALL, peer, remote));
    if (initiator) {
      while (incoming[STAMP_WORD] !== stamp) {
        ep.poll();
        if (++spins % 4096 === 0 && performance.now() > deadline) throw new Error(`ping-pong: stamp ${stamp} did not come back`);
      }
      if (ends !== null) ends[i - 1] = Bun.nanoseconds();
    }
    retireCompleted(ep, ids);
  }
  while (ids.length > 0) {
    ep.poll();
    retireCompleted(ep, ids);
    if (performance.now() > deadline) throw new Error("ping-pong: the last writes did not complete");
  }
}

/** Retires the completed ids of `ids` (swap-remove: no allocation); throws a failed one's error. */
function retireCompleted(ep: UcxEndpoint, ids: number[]): void {
  for (let i = ids.length - 1; i >= 0; i--) {
    if (!ep.completed(ids[i]!)) continue;
    ids[i] = ids[ids.length - 1]!;
    ids.pop();
  }
}

// ---- the target process -------------------------------------------------------------------------

/**
 * The target: exposes a 1 MiB pooled region and busy-progresses (perftest's server spins on
 * ucp_worker_progress too), yielding to its event loop every BUSY_SLICE_MS for commands, one JSON
 * line each, answered with {"ok": op}:
 * - pause / resume: stop and restart busy progress (paused while ucx_perftest runs on this CPU);
 * - peer {name, remote}: insert the initiator and remember its region (for the ping-pong);
 * - pingpong {base, count}: answer `count` ping-pong stamps from base+1.
 * Exits when stdin closes.
 */
async function runTarget(argv: string[]): Promise<void> {
  const arg = (name: string) => { const i = argv.indexOf(`--${name}`); return i < 0 ? undefined : argv[i + 1]; };
  const provider = UcxProvider.open({
    transports: arg("transports")!, allocateBlocks: arg("allocate") === "true",
    ...(arg("net-devices") ? { netDevices: arg("net-devices")! } : {}),
  });
  const pool = new MemoryPool(provider, ONE_MIB_POOL);
  const exposed = pool.getRegion(MiB);
  const source = pool.getRegion(MiB);
  const ep = new UcxEndpoint(provider, { timeoutMs: 30_000 });
  const say = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
  say({ name: toHex(ep.name), remote: toHex(exposed.remote().toBytes()) });
  let busy = true;
  let open = true;
  let initiator = -1;
  let initiatorRegion: RemoteRegion | null = null;
  const handle = (command: { op: string; name?: string; remote?: string; base?: number; count?: number }) => {
    try {
      if (command.op === "pause") busy = false;
      else if (command.op === "resume") busy = true;
      else if (command.op === "peer") {
        initiator = ep.insert(fromHex(command.name!));
        initiatorRegion = RemoteRegion.fromBytes(fromHex(command.remote!));
      } else if (command.op === "pingpong") {
        pingPong(ep, source, exposed, initiator, initiatorRegion!, command.base!, command.count!, false, null);
      } else throw new Error(`unknown command ${command.op}`);
      say({ ok: command.op });
    } catch (e) {
      say({ error: `${command.op}: ${(e as Error).message}` });
    }
  };
  void (async () => {
    const decoder = new TextDecoder();
    let text = "";
    for await (const chunk of Bun.stdin.stream()) {
      text += decoder.decode(chunk, { stream: true });
      for (let nl = text.indexOf("\n"); nl >= 0; nl = text.indexOf("\n")) {
        const line = text.slice(0, nl);
        text = text.slice(nl + 1);
        if (line.trim() !== "") handle(JSON.parse(line));
      }
    }
    open = false;
  })();
  while (open) {
    if (busy) {
      const end = performance.now() + BUSY_SLICE_MS;
      while (performance.now() < end) ep.progress();
      await new Promise((resolve) => setImmediate(resolve));
    } else {
      ep.progress();
      await Bun.sleep(1);
    }
  }
  ep.close();
  pool.releaseRegion(exposed);
  pool.releaseRegion(source);
  pool.close();
  provider.close();
  process.exit(0);
}

if (import.meta.main && process.argv.includes("--target")) await runTarget(process.argv);

// ---- helpers --------------------------------------------------------------------------------------

function uxEnv(c: Case): Record<string, string> {
  return { ...process.env as Record<string, string>, UCX_TLS: c.transports, ...(c.netDevices ? { UCX_NET_DEVICES: c.netDevices } : {}) };
}


/** What `ucx_perftest` reports on its `Final:` line. */
interface PerftestResult {
  /** 50th percentile latency (µs; for put_bw the per-message overhead). */
  p50Usec: number;
  /** Overall average latency (µs). */
  averageUsec: number;
  /** Overall average bandwidth (all bytes over all the time, the last flush included) in MB/s of 2^20 bytes. */
  bandwidthMBs: number;
}

/** Runs a ucx_perftest server (CPU 1) and client (CPU 0) on loopback; throws with their output on failure. */
async function perftest(c: Case, test: "ucp_put_lat" | "ucp_put_bw", size: number, iterations: number, warmup: number): Promise<PerftestResult> {
  const port = String(20_000 + Math.floor(Math.random() * 30_000));
  const env = uxEnv(c);
  const server = Bun.spawn([...onCpu(1), "ucx_perftest", "-p", port], { env, stdout: "pipe", stderr: "pipe" });
  try {
    await Bun.sleep(300);
    const window = test === "ucp_put_bw" ? ["-O", String(WINDOW)] : [];
    const client = Bun.spawn([...onCpu(0), "ucx_perftest", "127.0.0.1", "-p", port, "-t", test, "-s", String(size), "-n", String(iterations), "-w", String(warmup), ...window],
      { env, stdout: "pipe", stderr: "pipe" });
    const timer = setTimeout(() => client.kill(9), 60_000);
    const [out, err, code] = await Promise.all([new Response(client.stdout).text(), new Response(client.stderr).text(), client.exited]);
    clearTimeout(timer);
    const line = out.split("\n").find((l) => l.startsWith("Final:"));
    if (code !== 0 || line === undefined) throw new Error(`ucx_perftest ${test} exited ${code}: ${(out + err).trim().split("\n").slice(-3).join(" | ")}`);
    // Final: iterations, typical (p50) latency, average and overall latency, average and overall bandwidth, message rates.
    // The "average" columns cover only the last report interval (1 s); the overall ones cover the whole run, as ours do.
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    return { p50Usec: f[1]!, averageUsec: f[3]!, bandwidthMBs: f[5]! };
  } finally {
    server.kill();
    await server.exited;
  }
}

/** Reads JSON lines from a child's stdout. */
class LineReader {
  private readonly reader: { read(): Promise<{ value?: Uint8Array; done: boolean }>; releaseLock(): void };
  private readonly decoder = new TextDecoder();
  private text = "";
  constructor(stream: ReadableStream<Uint8Array>) {
    this.reader = stream.getReader();
  }

  /** The next JSON line; throws after `timeoutMs` or at end of stream. */
  async next<T>(timeoutMs: number, what: string): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const nl = this.text.indexOf("\n");
      if (nl >= 0) {
        const line = this.text.slice(0, nl).trim();
        this.text = this.text.slice(nl + 1);
        if (line.startsWith("{")) return JSON.parse(line) as T;
        continue;
      }
      const left = deadline - Date.now();
      if (left <= 0) break;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<{ value?: Uint8Array; done: boolean }>((resolve) => { timer = setTimeout(() => resolve({ done: true }), left); });
      const { value, done } = await Promise.race([this.reader.read(), late]);
      clearTimeout(timer);
      if (done) break;
      this.text += this.decoder.decode(value, { stream: true });
    }
    throw new Error(`the UCX target process did not answer ${what} within ${timeoutMs} ms: ${this.text.slice(0, 300)}`);
  }

  release(): void {
    this.reader.releaseLock();
  }
}

/** One round of our side. */
interface OurRound {
  /** p50 of ~1 ms batches of writeSync, per write. */
  writeSyncNs: number;
  /** p50 of the ping-pong's per-iteration times, halved (perftest's "typical" put_lat). */
  pingPongNs: number;
  bandwidthMBs: number;
}

/**
 * Our side of a case: a target process on CPU 1 (busy-polling), this process as initiator with its
 * own exposed region for the ping-pong. Rounds are measured with this process pinned to CPU 0.
 */
class OurSide {
  private readonly provider: UcxProvider;
  private readonly pool: MemoryPool;
  private readonly source: MemoryRegion;
  private readonly own: MemoryRegion;
  private readonly ep: UcxEndpoint;
  private readonly target: ReturnType<typeof Bun.spawn> & { stdin: import("bun").FileSink; stdout: ReadableStream<Uint8Array> };
  private readonly lines: LineReader;
  private peer = -1;
  private remote: RemoteRegion | null = null;
  /** The next ping-pong's stamps start above this (stamps never repeat within a session). */
  private stampBase = 0;
  private readonly ids: number[] = [];

  constructor(private readonly c: Case, private readonly quick: boolean) {
    this.target = Bun.spawn([...onCpu(1), process.execPath, import.meta.path, "--target", "--transports", c.transports, "--allocate", String(c.allocateBlocks),
      ...(c.netDevices ? ["--net-devices", c.netDevices] : [])], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
    this.lines = new LineReader(this.target.stdout);
    this.provider = UcxProvider.open({ transports: c.transports, allocateBlocks: c.allocateBlocks, ...(c.netDevices ? { netDevices: c.netDevices } : {}) });
    this.pool = new MemoryPool(this.provider, ONE_MIB_POOL);
    this.source = this.pool.getRegion(MiB);
    this.own = this.pool.getRegion(MiB);
    this.ep = new UcxEndpoint(this.provider, { timeoutMs: 30_000 });
  }

  /** Connects both ways, then warms up: first touches, rkey unpack, the JIT (before pinning, its threads finish). */
  async start(): Promise<void> {
    const hello = await this.lines.next<{ name: string; remote: string }>(15_000, "hello");
    this.peer = this.ep.insert(fromHex(hello.name));
    this.remote = RemoteRegion.fromBytes(fromHex(hello.remote));
    await this.command({ op: "peer", name: toHex(this.ep.name), remote: toHex(this.own.remote().toBytes()) });
    const end = performance.now() + (this.quick ? 30 : 200);
    while (performance.now() < end) this.ep.writeSync(this.source, SMALL, this.peer, this.remote);
    this.windowedWrites(this.quick ? WINDOW : 4 * WINDOW);
    await this.pingPong(this.quick ? 200 : 2000);
  }

  /**
   * One round: bandwidth, writeSync latency, ping-pong (target busy-polling), each after a full
   * collection (a concurrent GC thread would share CPU 0 with the measurement).
   */
  async round(): Promise<OurRound> {
    await this.command({ op: "resume" });
    pinSelf("0");
    try {
      const count = this.quick ? this.c.bandwidthIterations / 5 : this.c.bandwidthIterations;
      Bun.gc(true);
      this.windowedWrites(count / 10); // as perftest's -w
      const t0 = Bun.nanoseconds();
      this.windowedWrites(count);
      const seconds = (Bun.nanoseconds() - t0) / 1e9;
      Bun.gc(true);
      const writeSyncNs = this.writeSyncLatency();
      Bun.gc(true);
      const pingPongNs = await this.pingPong(this.quick ? this.c.latencyIterations / 10 : this.c.latencyIterations);
      return { writeSyncNs, pingPongNs, bandwidthMBs: (count * LARGE) / MiB / seconds };
    } finally {
      pinSelf(allCpus());
      await this.command({ op: "pause" });
    }
  }

  async close(): Promise<void> {
    try {
      this.lines.release();
      this.ep.close();
      this.pool.releaseRegion(this.source);
      this.pool.releaseRegion(this.own);
      this.pool.close();
      this.provider.close();
    } finally {
      this.target.stdin.end();
      const exited = await Promise.race([this.target.exited, Bun.sleep(5000).then(() => null)]);
      if (exited === null) this.target.kill(9);
    }
  }

  /** writeSync batches of ~1 ms timed together; the p50 of the per-write means. */
  private writeSyncLatency(): number {
    const { ep, source, peer } = this;
    const remote = this.remote!;
    const probe = this.quick ? 50 : 200;
    let t0 = Bun.nanoseconds();
    for (let i = 0; i < probe; i++) ep.writeSync(source, SMALL, peer, remote);
    const batch = Math.max(1, Math.round(1e6 / ((Bun.nanoseconds() - t0) / probe)));
    const means: number[] = [];
    for (let b = 0; b < (this.quick ? 10 : 60); b++) {
      t0 = Bun.nanoseconds();
      for (let i = 0; i < batch; i++) ep.writeSync(source, SMALL, peer, remote);
      means.push((Bun.nanoseconds() - t0) / batch);
    }
    return median(means);
  }

  /** `count` ping-pong iterations after a tenth as many to warm up; p50 of the iteration times, halved (ns). */
  private async pingPong(count: number): Promise<number> {
    const warmup = Math.ceil(count / 10);
    const base = this.stampBase;
    this.stampBase += warmup + count;
    const answer = this.lines.next<{ ok?: string; error?: string }>(120_000, "pingpong");
    this.target.stdin.write(`${JSON.stringify({ op: "pingpong", base, count: warmup + count })}\n`);
    this.target.stdin.flush();
    const ends = new Float64Array(warmup + count);
    pingPong(this.ep, this.source, this.own, this.peer, this.remote!, base, warmup + count, true, ends);
    // The target's last writes complete once this side has progressed their acks (tcp): keep progressing until it answers.
    this.ep.startProgress(0);
    const reply = await answer.finally(() => this.ep.stopProgress());
    if (reply.ok !== "pingpong") throw new Error(`the UCX target process failed: ${reply.error}`);
    const times: number[] = [];
    for (let i = warmup; i < ends.length; i++) times.push(ends[i]! - ends[i - 1]!);
    return median(times) / 2;
  }

  /** `count` writes of LARGE bytes, WINDOW of them posted at a time (post form: a put each, a flush per poll()). */
  private windowedWrites(count: number): void {
    const { ep, source, peer, ids } = this;
    const remote = this.remote!;
    let posted = 0;
    let done = 0;
    while (done < count) {
      while (posted < count && ids.length < WINDOW) { ids.push(ep.postWrite(source, LARGE, peer, remote)); posted++; }
      ep.poll();
      const before = ids.length;
      retireCompleted(ep, ids);
      done += before - ids.length;
    }
  }

  private async command(command: Record<string, unknown>): Promise<void> {
    this.target.stdin.write(`${JSON.stringify(command)}\n`);
    this.target.stdin.flush();
    const reply = await this.lines.next<{ ok?: string; error?: string }>(15_000, String(command.op));
    if (reply.ok !== command.op) throw new Error(`the UCX target process failed: ${reply.error ?? JSON.stringify(reply)}`);
  }
}

// ---- the suite --------------------------------------------------------------------------------------

/** ucx_perftest's medians for one UCX_TLS (it always uses UCX-allocated memory: own-block rows compare with them too). */
interface PerftestMedians {
  latNs: number;
  bandwidth: number;
  rounds: number;
}

const suite: Suite = {
  name: SUITE,
  async setup(ctx: BenchContext) {
    const status = ucxStatus();
    if (!status.available) {
      if (process.env.ALLOCTOOLS_REQUIRE_UCX === "1") throw new Error(`ALLOCTOOLS_REQUIRE_UCX=1 but UCX is not available: ${status.reason}`);
      ctx.provider({ suite: SUITE, label: "ucx", description: `UCX not available, suite skipped: ${status.reason}` });
      return;
    }
    const perftestPath = Bun.which("ucx_perftest");
    const rounds = ctx.quick ? 1 : 7;
    const perftestBy = new Map<string, PerftestMedians>();
    for (const c of CASES) {
      ctx.provider({ suite: SUITE, label: c.label, description: `UCX ${status.version}, UCX_TLS=${c.transports}${c.netDevices ? `, UCX_NET_DEVICES=${c.netDevices}` : ""}, ${c.allocateBlocks ? "UCX-allocated" : "own mmap'd"} blocks; target process on CPU 1, initiator on CPU 0${pinnable ? "" : " (not pinned: no taskset or one CPU)"}` });
      const reuse = perftestBy.get(c.transports);
      let perftestMissing = perftestPath === null ? "ucx_perftest is not installed (apt-get install ucx-utils)" : "";
      const ours: OurRound[] = [];
      const lat: PerftestResult[] = [];
      const bw: PerftestResult[] = [];
      /** Per-round bandwidth ratios: ours over the perftest run next to it (or perftest's median when reused). */
      const bandwidthRatios: number[] = [];
      let side: OurSide | null = null;
      try {
        side = new OurSide(c, ctx.quick);
        await side.start();
        for (let r = 0; r < rounds; r++) {
          // Alternate which side goes first, so a drift within the run favours neither.
          const runPerftest = async () => {
            if (perftestMissing !== "" || reuse !== undefined) return;
            try {
              const latIterations = ctx.quick ? c.latencyIterations / 10 : c.latencyIterations;
              const bwIterations = ctx.quick ? c.bandwidthIterations / 5 : c.bandwidthIterations;
              lat.push(await perftest(c, "ucp_put_lat", SMALL, latIterations, Math.ceil(latIterations / 10)));
              bw.push(await perftest(c, "ucp_put_bw", LARGE, bwIterations, Math.ceil(bwIterations / 10)));
            } catch (e) {
              perftestMissing = (e as Error).message;
            }
          };
          if (r % 2 === 1) await runPerftest();
          ours.push(await side.round());
          if (r % 2 === 0) await runPerftest();
          const theirs = reuse !== undefined ? reuse.bandwidth : bw.length === r + 1 ? bw[r]!.bandwidthMBs : undefined;
          if (theirs !== undefined) bandwidthRatios.push(ours[r]!.bandwidthMBs / theirs);
        }
      } catch (e) {
        if (process.env.ALLOCTOOLS_REQUIRE_UCX === "1") throw e;
        ctx.provider({ suite: SUITE, label: c.label, description: `not measured: ${(e as Error).message}` });
      } finally {
        await side?.close();
      }
      if (ours.length === 0) continue;
      recordCase(ctx, c, ours, lat, bw, bandwidthRatios, reuse, perftestBy, perftestMissing);
    }
    measureAllocation(ctx);
    const providers = registerPoolBenches(ctx);
    return () => { for (const p of providers) p.close(); };
  },
};

/** The rows of one case: each side's medians, then the ratios with their verdicts and spreads. */
function recordCase(ctx: BenchContext, c: Case, ours: OurRound[], lat: PerftestResult[], bw: PerftestResult[], bandwidthRatios: number[],
  reuse: PerftestMedians | undefined, perftestBy: Map<string, PerftestMedians>, perftestMissing: string): void {
  const n = ours.length;
  const writeSyncNs = median(ours.map((o) => o.writeSyncNs));
  const pingPongNs = median(ours.map((o) => o.pingPongNs));
  const bandwidth = median(ours.map((o) => o.bandwidthMBs));
  const busy = "target process busy-polling on CPU 1, initiator on CPU 0";
  ctx.record({ suite: SUITE, name: `${c.label}: writeSync ${SMALL} B latency`, value: writeSyncNs, unit: "ns",
    note: `put + flush, delivery-complete (${c.transports === "tcp" ? "a full round trip: the put out, the target's ack back" : "the flush"}); median of ${n} round(s) (${spread(ours.map((o) => o.writeSyncNs / 1000), 2)} µs), each the p50 of ~1 ms batches; ${busy}` });
  ctx.record({ suite: SUITE, name: `${c.label}: put ping-pong ${SMALL} B half round trip p50`, value: pingPongNs, unit: "ns",
    note: `measured as ucp_put_lat is: each side postWrites a stamp into the other's region, the other polls its memory (and poll()s) for it; p50 of the iteration times, halved; median of ${n} round(s) (${spread(ours.map((o) => o.pingPongNs / 1000), 2)} µs)` });
  ctx.record({ suite: SUITE, name: `${c.label}: write bandwidth ${LARGE >> 20} MiB`, value: bandwidth, unit: "MB/s",
    note: `${c.bandwidthIterations} writes per round (a fifth in quick mode) after a tenth as many, window ${WINDOW} (postWrite, one flush per poll()), all bytes over all the time including the last flush; MB = 2^20 bytes as ucx_perftest counts; median of ${n} round(s) (${spread(ours.map((o) => o.bandwidthMBs), 0)})` });
  let perf = reuse;
  if (perf === undefined && lat.length > 0 && bw.length > 0) {
    perf = { latNs: median(lat.map((l) => l.p50Usec)) * 1000, bandwidth: median(bw.map((b) => b.bandwidthMBs)), rounds: lat.length };
    perftestBy.set(c.transports, perf);
    ctx.record({ suite: SUITE, name: `${c.label}: ucx_perftest ucp_put_lat ${SMALL} B p50`, value: perf.latNs, unit: "ns",
      note: `half the round trip of a put ping-pong (each side puts, the other polls its memory; no flush per put), p50; ${c.latencyIterations} iterations per round; median of ${lat.length} round(s) (${spread(lat.map((l) => l.p50Usec), 2)} µs)` });
    ctx.record({ suite: SUITE, name: `${c.label}: ucx_perftest ucp_put_bw ${LARGE >> 20} MiB`, value: perf.bandwidth, unit: "MB/s",
      note: `its "overall" bandwidth: the same message count, -w and -O ${WINDOW} as ours, one flush at the end; median of ${bw.length} round(s) (${spread(bw.map((b) => b.bandwidthMBs), 0)})` });
  }
  if (perf === undefined) {
    ctx.provider({ suite: SUITE, label: c.label, description: `ucx_perftest rows missing: ${perftestMissing || "no ucx_perftest run succeeded"}` });
    return;
  }
  const against = reuse ? " (ucx_perftest's row above: it always uses UCX-allocated memory)" : "";
  const latencyRatio = writeSyncNs / perf.latNs;
  ctx.record({ suite: SUITE, name: `${c.label}: writeSync / ucp_put_lat`, value: latencyRatio, unit: "×",
    note: `target ≤ ${c.latencyTarget}×: ${latencyRatio <= c.latencyTarget ? "met" : "NOT met"}${against}; writeSync is delivery-complete (put + flush${c.transports === "tcp" ? ", a full round trip" : ""}), put_lat is half a ping-pong round trip` });
  const roundTripRatio = writeSyncNs / (2 * perf.latNs);
  ctx.record({ suite: SUITE, name: `${c.label}: writeSync / (2 × ucp_put_lat)`, value: roundTripRatio, unit: "×",
    note: `like with like: a full round trip on each side (writeSync: put out, ack back; 2 × put_lat: a put each way)${against}` });
  const pingPongRatio = pingPongNs / perf.latNs;
  ctx.record({ suite: SUITE, name: `${c.label}: put ping-pong / ucp_put_lat`, value: pingPongRatio, unit: "×",
    note: `like with like: both half a ping-pong round trip, p50, each side polling its memory${against}` });
  const bandwidthRatio = median(bandwidthRatios);
  ctx.record({ suite: SUITE, name: `${c.label}: bandwidth / ucp_put_bw`, value: bandwidthRatio, unit: "×",
    note: `target ≥ 0.9×: ${bandwidthRatio >= 0.9 ? "met" : "NOT met"}${against}; median of ${bandwidthRatios.length} per-round ratio(s) (${spread(bandwidthRatios, 2)}), ours and perftest's in alternating order, same size, window, warm-up and message count` });
}

/** Heap cells the three forms allocate per operation (the standard: none on the success path). */
function measureAllocation(ctx: BenchContext): void {
  const provider = UcxProvider.open({ transports: "posix,cma" });
  const pool = new MemoryPool(provider, ONE_MIB_POOL);
  const a = new UcxEndpoint(provider);
  const b = new UcxEndpoint(provider);
  const source = pool.getRegion(SMALL);
  const target = pool.getRegion(SMALL);
  try {
    const peer = a.insert(b.name);
    const remote = target.remote();
    const forms = {
      writeSync: () => a.writeSync(source, SMALL, peer, remote),
      readSync: () => a.readSync(source, SMALL, peer, remote),
      "postWrite+poll+completed": () => { const id = a.postWrite(source, SMALL, peer, remote); while (!a.completed(id)) a.poll(); },
    };
    for (const [form, op] of Object.entries(forms)) {
      for (let i = 0; i < 20_000; i++) op(); // optimized before counting
      const cells = cellsPerOp(op);
      const types = Object.entries(cells.types).map(([t, n]) => `${t} ${n}`).join(", ");
      ctx.record({ suite: SUITE, name: `heap cells per ${form} ${SMALL} B (shm, one process)`, value: cells.perOp, unit: "cells", note: types || "nothing allocated" });
    }
  } finally {
    a.close();
    b.close();
    pool.releaseRegion(source);
    pool.releaseRegion(target);
    pool.close();
    provider.close();
  }
}

/** Pool get+release through a UCX provider: the same pool code as over libfabric (pool suite). */
function registerPoolBenches(ctx: BenchContext): UcxProvider[] {
  const opened: UcxProvider[] = [];
  const sizes = [{ label: "64 B", bytes: 64 }, { label: "1 MiB", bytes: MiB }] as const;
  const subjects = [
    { label: "ucx tcp", options: { transports: "tcp" }, libfabric: "tcp" },
    { label: "ucx shm", options: { transports: "posix,cma" }, libfabric: "shm" },
  ] as const;
  for (const s of subjects) {
    let provider: UcxProvider;
    try {
      provider = UcxProvider.open(s.options);
    } catch (e) {
      ctx.provider({ suite: SUITE, label: s.label, description: `not available, pool benches skipped: ${(e as Error).message}` });
      continue;
    }
    opened.push(provider);
    ctx.provider({ suite: SUITE, label: s.label, description: `pool over UCX ${provider.info.version} ${provider.name}${provider.info.allocateBlocks ? ", UCX-allocated blocks" : ""}` });
    group(`${s.label}: pool get+release`, () => {
      summary(() => {
        for (const size of sizes) {
          bench(`pool ${s.label} ${size.label}`, function* () {
            const pool = new MemoryPool(provider, size.bytes <= 1024 ? { small: { initialCount: 1 }, medium: { initialCount: 0 }, large: { initialCount: 0 }, huge: { initialCount: 0 } }
              : { small: { initialCount: 0 }, medium: { initialCount: 0 }, large: { initialCount: 0 }, huge: { initialCount: 1 } });
            yield () => pool.releaseRegion(pool.getRegion(size.bytes));
            pool.close();
          });
          ctx.compare({ table: POOL_TABLE, row: size.label, column: `libfabric ${s.libfabric} / ${s.label}`, baseline: poolNames.pool(s.libfabric, size.label), candidate: `pool ${s.label} ${size.label}` });
        }
      });
    });
  }
  return opened;
}

export default suite;
