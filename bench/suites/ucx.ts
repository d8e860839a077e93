// UCX against ucx_perftest, in the same run: writeSync latency at 64 B against `ucp_put_lat`, and
// windowed 1 MiB writes against `ucp_put_bw`, over shared memory (UCX-allocated blocks and our own)
// and over tcp on loopback, each side a target process on CPU 1 and an initiator on CPU 0. Then
// pool get+release over UCX beside the same over libfabric (mitata benches; the pool suite has the
// libfabric ones).
//
// Run as a script (`bun bench/suites/ucx.ts --target ...`) this file is the target process: it
// exposes a pooled region, prints its worker address and RemoteRegion, and progresses busily.
import { bench, group, summary } from "mitata";
import { ucxStatus } from "../../ffi/ucx.ts";
import { MemoryPool, RemoteRegion, UcxEndpoint, UcxProvider, type MemoryPoolOptions, type MemoryRegion } from "../../lib/index.ts";
import type { BenchContext, Suite } from "../context.ts";
import { cellsPerOp } from "../jit.ts";
import { names as poolNames } from "./pool.ts";

const SUITE = "ucx";
const MiB = 1 << 20;
/** The latency message and the bandwidth message. */
const SMALL = 64;
const LARGE = MiB;
/** Writes in flight in the bandwidth test (ucx_perftest's put_bw keeps its own window). */
const WINDOW = 16;
const POOL_TABLE = "pool get+release: over libfabric / over UCX (same pool code)";

/** One transport configuration measured on both sides. */
interface Case {
  label: string;
  transports: string;
  netDevices?: string;
  allocateBlocks: boolean;
  /** Target ratio (ours / perftest latency) the issue sets. */
  latencyTarget: number;
  /** ucx_perftest ucp_put_lat iterations (full run; a tenth in quick mode). Over tcp its average is ~100× its p50 (stalls). */
  latencyIterations: number;
  /** ucx_perftest ucp_put_bw iterations (full run; a fifth in quick mode). Over tcp each takes ~30 ms (it stalls in its flush). */
  bandwidthIterations: number;
}

const CASES: readonly Case[] = [
  { label: "shm (UCX-allocated blocks)", transports: "posix,cma", allocateBlocks: true, latencyTarget: 3, latencyIterations: 200_000, bandwidthIterations: 400 },
  { label: "shm (own blocks)", transports: "posix,cma", allocateBlocks: false, latencyTarget: 3, latencyIterations: 200_000, bandwidthIterations: 400 },
  { label: "tcp", transports: "tcp", netDevices: "lo", allocateBlocks: false, latencyTarget: 1.3, latencyIterations: 5_000, bandwidthIterations: 100 },
];

/** A pool with only the huge class: one 1 MiB region to expose, one to send from. */
const ONE_MIB_POOL: MemoryPoolOptions = {
  small: { initialCount: 0 }, medium: { initialCount: 0 }, large: { initialCount: 0 }, huge: { chunkSize: MiB, initialCount: 2 },
};

// ---- the target process -------------------------------------------------------------------------

async function runTarget(argv: string[]): Promise<void> {
  const arg = (name: string) => { const i = argv.indexOf(`--${name}`); return i < 0 ? undefined : argv[i + 1]; };
  const provider = UcxProvider.open({
    transports: arg("transports")!, allocateBlocks: arg("allocate") === "true",
    ...(arg("net-devices") ? { netDevices: arg("net-devices")! } : {}),
  });
  const pool = new MemoryPool(provider, ONE_MIB_POOL);
  const exposed = pool.getRegion(MiB);
  const ep = new UcxEndpoint(provider);
  ep.startProgress(0);
  process.stdout.write(`${JSON.stringify({ name: Buffer.from(ep.name).toString("hex"), remote: Buffer.from(exposed.remote().toBytes()).toString("hex") })}\n`);
  for await (const _ of Bun.stdin.stream()) { /* until the initiator closes stdin */ }
  ep.close();
  pool.releaseRegion(exposed);
  pool.close();
  provider.close();
  process.exit(0);
}

if (import.meta.main && process.argv.includes("--target")) await runTarget(process.argv);

// ---- helpers --------------------------------------------------------------------------------------

const taskset = Bun.which("taskset");
const pinnable = taskset !== null && navigator.hardwareConcurrency >= 2;
/** argv prefix that runs a command on `cpu` where taskset exists. */
const onCpu = (cpu: number) => (pinnable ? [taskset!, "-c", String(cpu)] : []);

/** Pins this process (all its threads) to `cpus`, e.g. "0" or "0-1"; a no-op without taskset. */
function pinSelf(cpus: string): void {
  if (pinnable) Bun.spawnSync([taskset!, "-a", "-p", "-c", cpus, String(process.pid)], { stdout: "ignore", stderr: "ignore" });
}

function uxEnv(c: Case): Record<string, string> {
  return { ...process.env as Record<string, string>, UCX_TLS: c.transports, ...(c.netDevices ? { UCX_NET_DEVICES: c.netDevices } : {}) };
}

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)]!; };

/** What `ucx_perftest` reports on its `Final:` line. */
interface PerftestResult {
  /** 50th percentile latency (µs; for put_bw the per-message overhead). */
  p50Usec: number;
  averageUsec: number;
  /** Average bandwidth in MB/s as ucx_perftest counts them (2^20 bytes). */
  bandwidthMBs: number;
}

/** Runs a ucx_perftest server (CPU 1) and client (CPU 0) on loopback; throws with their output on failure. */
async function perftest(c: Case, test: "ucp_put_lat" | "ucp_put_bw", size: number, iterations: number): Promise<PerftestResult> {
  const port = String(20_000 + Math.floor(Math.random() * 30_000));
  const env = uxEnv(c);
  const server = Bun.spawn([...onCpu(1), "ucx_perftest", "-p", port], { env, stdout: "pipe", stderr: "pipe" });
  try {
    await Bun.sleep(300);
    const client = Bun.spawn([...onCpu(0), "ucx_perftest", "127.0.0.1", "-p", port, "-t", test, "-s", String(size), "-n", String(iterations), "-w", String(Math.min(iterations / 10, 1000))],
      { env, stdout: "pipe", stderr: "pipe" });
    const timer = setTimeout(() => client.kill(9), 60_000);
    const [out, err, code] = await Promise.all([new Response(client.stdout).text(), new Response(client.stderr).text(), client.exited]);
    clearTimeout(timer);
    const line = out.split("\n").find((l) => l.startsWith("Final:"));
    if (code !== 0 || line === undefined) throw new Error(`ucx_perftest ${test} exited ${code}: ${(out + err).trim().split("\n").slice(-3).join(" | ")}`);
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    return { p50Usec: f[1]!, averageUsec: f[2]!, bandwidthMBs: f[4]! };
  } finally {
    server.kill();
    await server.exited;
  }
}

/** Our side: a target process on CPU 1, this process (pinned to CPU 0 meanwhile) as initiator. */
async function measureOurs(c: Case, quick: boolean): Promise<{ writeSyncNs: number; bandwidthMBs: number }> {
  const target = Bun.spawn([...onCpu(1), process.execPath, import.meta.path, "--target", "--transports", c.transports, "--allocate", String(c.allocateBlocks),
    ...(c.netDevices ? ["--net-devices", c.netDevices] : [])], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  const provider = UcxProvider.open({ transports: c.transports, allocateBlocks: c.allocateBlocks, ...(c.netDevices ? { netDevices: c.netDevices } : {}) });
  const pool = new MemoryPool(provider, ONE_MIB_POOL);
  const source = pool.getRegion(MiB);
  const ep = new UcxEndpoint(provider, { timeoutMs: 30_000 });
  pinSelf("0");
  try {
    const hello = await firstJsonLine(target.stdout, 15_000);
    const peer = ep.insert(new Uint8Array(Buffer.from(hello.name, "hex")));
    const remote = RemoteRegion.fromBytes(new Uint8Array(Buffer.from(hello.remote, "hex")));
    // Latency: batches of writeSync timed together (~1 ms each); the p50 of the per-write means.
    // Over tcp some writes stall for milliseconds (ucx_perftest's own average is ~100× its p50): a short warm-up in quick mode.
    for (let i = 0; i < (quick ? 50 : 2000); i++) ep.writeSync(source, SMALL, peer, remote);
    const probe = quick ? 50 : 200;
    let t0 = Bun.nanoseconds();
    for (let i = 0; i < probe; i++) ep.writeSync(source, SMALL, peer, remote);
    const batch = Math.max(1, Math.round(1e6 / ((Bun.nanoseconds() - t0) / probe)));
    const means: number[] = [];
    for (let b = 0; b < (quick ? 10 : 60); b++) {
      t0 = Bun.nanoseconds();
      for (let i = 0; i < batch; i++) ep.writeSync(source, SMALL, peer, remote);
      means.push((Bun.nanoseconds() - t0) / batch);
    }
    // Bandwidth: 1 MiB writes, WINDOW in flight: a put each, flushed together by poll().
    const writes = quick ? 32 : 512;
    windowedWrites(ep, source, peer, remote, quick ? WINDOW : WINDOW * 2); // the first touches of the target's pages
    t0 = Bun.nanoseconds();
    windowedWrites(ep, source, peer, remote, writes);
    const seconds = (Bun.nanoseconds() - t0) / 1e9;
    return { writeSyncNs: median(means), bandwidthMBs: (writes * LARGE) / MiB / seconds };
  } finally {
    pinSelf(`0-${navigator.hardwareConcurrency - 1}`);
    ep.close();
    pool.releaseRegion(source);
    pool.close();
    provider.close();
    target.stdin.end();
    const exited = await Promise.race([target.exited, Bun.sleep(5000).then(() => null)]);
    if (exited === null) target.kill(9);
  }
}

/** `count` writes of LARGE bytes with WINDOW of them posted at a time (post form). */
function windowedWrites(ep: UcxEndpoint, source: MemoryRegion, peer: number, remote: RemoteRegion, count: number): void {
  const ids: number[] = [];
  let posted = 0;
  let done = 0;
  while (done < count) {
    while (posted < count && ids.length < WINDOW) { ids.push(ep.postWrite(source, LARGE, peer, remote)); posted++; }
    ep.poll();
    for (let i = ids.length - 1; i >= 0; i--) if (ep.completed(ids[i]!)) { ids.splice(i, 1); done++; }
  }
}

async function firstJsonLine(stream: ReadableStream<Uint8Array>, timeoutMs: number): Promise<{ name: string; remote: string }> {
  const reader = stream.getReader();
  const deadline = Date.now() + timeoutMs;
  let text = "";
  try {
    while (Date.now() < deadline) {
      const { value, done } = await Promise.race([reader.read(), Bun.sleep(deadline - Date.now()).then(() => ({ value: undefined, done: true }))]);
      if (done) break;
      text += new TextDecoder().decode(value);
      const line = text.split("\n").find((l) => l.startsWith("{") && l.endsWith("}"));
      if (line) return JSON.parse(line);
    }
  } finally {
    reader.releaseLock();
  }
  throw new Error(`the UCX target process did not say hello within ${timeoutMs} ms: ${text.slice(0, 300)}`);
}

// ---- the suite --------------------------------------------------------------------------------------

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
    const rounds = ctx.quick ? 1 : 3;
    /** ucx_perftest's figures per UCX_TLS: it always uses UCX-allocated memory, so own-block rows compare with them too. */
    const perftestBy = new Map<string, { latNs: number; bandwidth: number }>();
    for (const c of CASES) {
      ctx.provider({ suite: SUITE, label: c.label, description: `UCX ${status.version}, UCX_TLS=${c.transports}${c.netDevices ? `, UCX_NET_DEVICES=${c.netDevices}` : ""}, ${c.allocateBlocks ? "UCX-allocated" : "own mmap'd"} blocks; target process on CPU 1${pinnable ? "" : " (not pinned: no taskset or one CPU)"}` });
      const ours: { writeSyncNs: number; bandwidthMBs: number }[] = [];
      const lat: PerftestResult[] = [];
      const bw: PerftestResult[] = [];
      const reuse = perftestBy.has(c.transports);
      let perftestMissing = perftestPath === null ? "ucx_perftest is not installed (apt-get install ucx-utils)" : "";
      // Interleaved rounds: this VM's noise hits both sides alike.
      for (let r = 0; r < rounds; r++) {
        try {
          ours.push(await measureOurs(c, ctx.quick));
        } catch (e) {
          if (process.env.ALLOCTOOLS_REQUIRE_UCX === "1") throw e;
          ctx.provider({ suite: SUITE, label: c.label, description: `not measured: ${(e as Error).message}` });
          break;
        }
        if (perftestMissing !== "" || reuse) continue;
        try {
          lat.push(await perftest(c, "ucp_put_lat", SMALL, ctx.quick ? c.latencyIterations / 10 : c.latencyIterations));
          bw.push(await perftest(c, "ucp_put_bw", LARGE, ctx.quick ? c.bandwidthIterations / 5 : c.bandwidthIterations));
        } catch (e) {
          perftestMissing = (e as Error).message;
        }
      }
      if (ours.length === 0) continue;
      const writeSyncNs = median(ours.map((o) => o.writeSyncNs));
      const bandwidth = median(ours.map((o) => o.bandwidthMBs));
      ctx.record({ suite: SUITE, name: `${c.label}: writeSync ${SMALL} B latency`, value: writeSyncNs, unit: "ns", note: `put, then its flush; median of ${ours.length} round(s), each the p50 of ~1 ms batches` });
      ctx.record({ suite: SUITE, name: `${c.label}: write bandwidth ${LARGE >> 20} MiB`, value: bandwidth, unit: "MB/s", note: `window ${WINDOW}: a put each, one flush per peer and poll() covering the puts posted before it; MB = 2^20 bytes as ucx_perftest counts` });
      if (lat.length > 0) {
        const measured = { latNs: median(lat.map((l) => l.p50Usec)) * 1000, bandwidth: median(bw.map((b) => b.bandwidthMBs)) };
        perftestBy.set(c.transports, measured);
        ctx.record({ suite: SUITE, name: `${c.label}: ucx_perftest ucp_put_lat ${SMALL} B p50`, value: measured.latNs, unit: "ns", note: `half round trip of a put ping-pong; median of ${lat.length} run(s)` });
        ctx.record({ suite: SUITE, name: `${c.label}: ucx_perftest ucp_put_bw ${LARGE >> 20} MiB`, value: measured.bandwidth, unit: "MB/s", note: `median of ${bw.length} run(s)` });
      }
      const perf = perftestBy.get(c.transports);
      if (perf === undefined) {
        ctx.provider({ suite: SUITE, label: c.label, description: `ucx_perftest rows missing: ${perftestMissing || "no ucx_perftest run succeeded"}` });
        continue;
      }
      const against = reuse ? " (ucx_perftest's own row above: it always uses UCX-allocated memory)" : "";
      const latencyRatio = writeSyncNs / perf.latNs;
      const bandwidthRatio = bandwidth / perf.bandwidth;
      ctx.record({ suite: SUITE, name: `${c.label}: writeSync / ucp_put_lat`, value: latencyRatio, unit: "×",
        note: `target ≤ ${c.latencyTarget}×: ${latencyRatio <= c.latencyTarget ? "met" : "NOT met"}${against}${c.transports === "tcp" ? "; writeSync waits for a flush (a round trip), put_lat is half of one" : ""}` });
      ctx.record({ suite: SUITE, name: `${c.label}: bandwidth / ucp_put_bw`, value: bandwidthRatio, unit: "×", note: `target ≥ 0.9×: ${bandwidthRatio >= 0.9 ? "met" : "NOT met"}${against}` });
    }
    measureAllocation(ctx);
    const providers = registerPoolBenches(ctx);
    return () => { for (const p of providers) p.close(); };
  },
};

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
