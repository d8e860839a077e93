// RMA and registration against C, in the same run (issue 12).
//
// - RMA: for shm and tcp, one C passive target (bench/c/rma-peer.c) serves both the C initiator
//   and this process's Endpoint, alternately, round after round: 64 B write and read latency
//   (writeSync/readSync, the promise form, and writeSync with latency: true), message rate (64 B
//   writes, window 64, post form) and bandwidth at 64 KiB, 1 MiB and 4 MiB (window 64). Each
//   figure is recorded with its library/C ratio (the median of the rounds' ratios; the note
//   gives their range).
// - Registration at 4 KiB and 1 MiB: LibfabricProvider.register+deregister against bare bun:ffi
//   fi_mr_reg+fi_close in alternating batches in a process with one provider
//   (bench/registration-child.ts), and against C's loop in a single-threaded process and in one
//   with a second thread (bench/c/rma-peer.c mr); mitata rows of the three forms in this process.
// - The in-process pingpong of examples/rma-pingpong.ts (pooled vs per-message memory), full runs only.
// When the C program cannot be built the rows say why.
import { bench, group } from "mitata";
import { rmaPeer, type CProgram } from "../c/build.ts";
import { allCpus, onCpu, pinSelf, pinnable } from "../cpu.ts";
import { rmaPingPong, type Row } from "../../examples/rma-pingpong.ts";
import { libfabric } from "../../ffi/libfabric.ts";
import {
  Endpoint, LibfabricProvider, MemoryPool, RemoteRegion, type MemoryRegion, type PeerAddress,
} from "../../lib/index.ts";
import type { BenchContext, Cleanup, Suite } from "../context.ts";
import { median, spread } from "../stats.ts";
import { jsonLines, ReadyProcess } from "../peer-process.ts";
import { bareRegistration, REGISTRATION_ACCESS as ACCESS } from "../bare-registration.ts";

const SUITE = "rma";
const PROVIDERS = ["shm", "tcp"] as const;
const IP = new Set(["tcp", "udp", "sockets"]);
const WINDOW = 64;
export const RATIO_TABLE = "registration: cost / bare bun:ffi fi_mr_reg + fi_close (ratio of p50s)";

interface CReply { ok?: boolean; error?: string; usecPerOp?: number; seconds?: number; nsPerPair?: number; mbPerSec?: number }
interface TargetInfo { name: string; address: string; key: string; length: number }

/** A C passive target (rma-peer.c target), polling its completion queue until its stdin closes. */
class CTarget {
  private constructor(private readonly process: ReadyProcess<TargetInfo>, readonly info: TargetInfo) {}

  static async start(path: string, provider: string): Promise<CTarget> {
    const process = await ReadyProcess.start<TargetInfo>([...onCpu(1), path, "target", provider, ...(IP.has(provider) ? ["--node", "127.0.0.1"] : [])],
      "C target", (info) => typeof info.name === "string");
    return new CTarget(process, process.ready);
  }

  /** Runs the C initiator against this target. */
  async initiator(path: string, provider: string, args: string[]): Promise<CReply> {
    const lines = await jsonLines<CReply>([...onCpu(0), path, "initiator", provider, "--name", this.info.name, "--address", this.info.address, "--key", this.info.key,
      "--length", String(this.info.length), ...(IP.has(provider) ? ["--node", "127.0.0.1"] : []), ...args]);
    return typeof lines === "string" ? { error: lines } : lines[lines.length - 1]!;
  }

  async stop(): Promise<void> {
    await this.process.stop();
  }
}

/** This process's side: a provider, a pool with a 4 MiB source/sink region, an Endpoint. */
class LibrarySide {
  readonly provider: LibfabricProvider;
  readonly pool: MemoryPool;
  /** The one endpoint open while a form runs (replaced for the `latency: true` form). */
  endpoint: Endpoint;
  readonly local: MemoryRegion;
  readonly plainPool: MemoryPool;
  readonly plainLocal: MemoryRegion;
  peer: PeerAddress;
  readonly remote: RemoteRegion;
  private readonly targetName: Uint8Array;
  private readonly ids = new Array<number>(WINDOW).fill(0);

  constructor(providerName: string, target: TargetInfo) {
    this.provider = LibfabricProvider.open({ provider: providerName, ...(IP.has(providerName) ? { node: "127.0.0.1" } : {}) });
    this.pool = new MemoryPool(this.provider, { huge: { chunkSize: 4 << 20, initialCount: 1 } });
    this.local = this.pool.getRegion(4 << 20);
    // The same from a pool on plain 4 KiB pages (hugePages: false), beside the default's
    // transparent huge pages.
    this.plainPool = new MemoryPool(this.provider, { huge: { chunkSize: 4 << 20, initialCount: 1 }, hugePages: false });
    this.plainLocal = this.plainPool.getRegion(4 << 20);
    this.targetName = new Uint8Array(Buffer.from(target.name, "hex"));
    this.remote = new RemoteRegion(BigInt(target.address), BigInt(target.key), target.length);
    [this.endpoint, this.peer] = this.connect(false);
  }

  /** An endpoint (with `latency: true` or not) with the target inserted and connected before timing. */
  private connect(latency: boolean): [Endpoint, PeerAddress] {
    const endpoint = new Endpoint(this.provider, { timeoutMs: 30_000, latency });
    const peer = endpoint.insert(this.targetName);
    endpoint.writeSync(this.local, 1, peer, this.remote);
    return [endpoint, peer];
  }

  /**
   * µs per writeSync on an endpoint opened with `latency: true`, in place of the plain one: one
   * endpoint open while any form runs, since a sync wait polls every endpoint of the thread.
   */
  syncWithLatency(bytes: number, n: number): number {
    this.endpoint.close();
    [this.endpoint, this.peer] = this.connect(true);
    try {
      return this.sync("write", bytes, n);
    } finally {
      this.endpoint.close();
      [this.endpoint, this.peer] = this.connect(false);
    }
  }

  /** µs per operation, waiting on the calling thread. */
  sync(kind: "write" | "read", bytes: number, n: number): number {
    const { endpoint, local, peer, remote } = this;
    const t = performance.now();
    if (kind === "write") for (let i = 0; i < n; i++) endpoint.writeSync(local, bytes, peer, remote);
    else for (let i = 0; i < n; i++) endpoint.readSync(local, bytes, peer, remote);
    return ((performance.now() - t) * 1000) / n;
  }

  /** µs per operation, awaiting each promise. */
  async promise(kind: "write" | "read", bytes: number, n: number): Promise<number> {
    const { endpoint, local, peer, remote } = this;
    const t = performance.now();
    if (kind === "write") for (let i = 0; i < n; i++) await endpoint.write(local, bytes, peer, remote);
    else for (let i = 0; i < n; i++) await endpoint.read(local, bytes, peer, remote);
    return ((performance.now() - t) * 1000) / n;
  }

  /** Seconds for `n` writes of `bytes` from `local`, `WINDOW` in flight, with postWrite/poll/completed. */
  windowed(bytes: number, n: number, local: MemoryRegion = this.local): number {
    const { endpoint, peer, remote, ids } = this;
    let posted = 0;
    let done = 0;
    const t = performance.now();
    while (done < n) {
      while (posted < n && posted - done < WINDOW) ids[posted++ % WINDOW] = endpoint.postWrite(local, bytes, peer, remote);
      endpoint.poll();
      while (done < posted && endpoint.completed(ids[done % WINDOW]!)) done++;
    }
    return (performance.now() - t) / 1000;
  }

  close(): void {
    this.endpoint.close();
    this.plainPool.close();
    this.pool.close();
    this.provider.close();
  }
}

interface Measure {
  /** Figure name, e.g. "64 B write latency". */
  name: string;
  /** C initiator arguments. */
  c: string[];
  /** The C figure from its reply (smaller is better for "µs", larger for rates). */
  cValue(r: CReply): number;
  /** Library forms: label → value. */
  library: Record<string, (side: LibrarySide) => number | Promise<number>>;
  unit: "µs" | "k writes/s" | "MB/s";
}

/** writeSync on an endpoint opened with `latency: true` (issue 25 #6): beside plain writeSync, the histogram's cost. */
const LATENCY_ON_FORM = "writeSync, latency: true";

/** Bandwidth from a pool on plain pages: the kernel walks 512 times more pages per 2 MiB than on the default's huge pages. */
const PLAIN_PAGES_FORM = "postWrite/poll/completed, hugePages: false";

function measures(quick: boolean): Measure[] {
  const lat = quick ? 2000 : 20_000;
  const rate = quick ? 10_000 : 100_000;
  // 2 GiB a round (~0.1 s on shm): shorter windows read the machine's noise more than the transfer.
  const volume = (quick ? 64 : 2048) * 2 ** 20;
  const list: Measure[] = [];
  for (const kind of ["write", "read"] as const) {
    list.push({
      name: `64 B ${kind} latency`, unit: "µs", c: ["--test", `lat-${kind}`, "--size", "64", "--iterations", String(lat)],
      cValue: (r) => r.usecPerOp!,
      library: {
        [`${kind}Sync`]: (s) => s.sync(kind, 64, lat),
        [`${kind} (promise)`]: (s) => s.promise(kind, 64, lat),
        ...(kind === "write" ? { [LATENCY_ON_FORM]: (s: LibrarySide) => s.syncWithLatency(64, lat) } : {}),
      },
    });
  }
  list.push({
    name: `message rate, 64 B writes, window ${WINDOW}`, unit: "k writes/s",
    c: ["--test", "rate", "--size", "64", "--iterations", String(rate), "--window", String(WINDOW)],
    cValue: (r) => rate / r.seconds! / 1000,
    library: { "postWrite/poll/completed": (s) => rate / s.windowed(64, rate) / 1000 },
  });
  for (const bytes of [64 << 10, 1 << 20, 4 << 20]) {
    const n = Math.max(WINDOW, Math.floor(volume / bytes));
    list.push({
      name: `bandwidth ${bytes >= 1 << 20 ? `${bytes >> 20} MiB` : `${bytes >> 10} KiB`}, window ${WINDOW}`, unit: "MB/s",
      c: ["--test", "bw", "--size", String(bytes), "--iterations", String(n), "--window", String(WINDOW)],
      cValue: (r) => r.mbPerSec!,
      library: {
        "postWrite/poll/completed": (s) => (bytes * n) / s.windowed(bytes, n) / 1e6,
        [PLAIN_PAGES_FORM]: (s) => (bytes * n) / s.windowed(bytes, n, s.plainLocal) / 1e6,
      },
    });
  }
  return list;
}

/** Library cost relative to C: time ratio for latencies, inverse rate ratio for rates. */
function costRatio(unit: Measure["unit"], library: number, c: number): number {
  return unit === "µs" ? library / c : c / library;
}

async function compareWithC(ctx: BenchContext, path: string, provider: string, lines: string[]): Promise<void> {
  const target = await CTarget.start(path, provider);
  let side: LibrarySide | undefined;
  // The busy-polling target on CPU 1, both initiators (C's and this whole process) on CPU 0.
  pinSelf("0");
  try {
    side = new LibrarySide(provider, target.info);
    ctx.provider({
      suite: SUITE, label: `${provider} vs C`,
      description: `${side.provider.name}: the C initiator and Endpoint take turns against one C passive target (bench/c/rma-peer.c); ` +
        (pinnable ? "target on CPU 1, initiators on CPU 0" : "not pinned (no taskset or one CPU)"),
    });
    const rounds = ctx.quick ? 1 : 5;
    for (const m of measures(ctx.quick)) {
      const cValues: number[] = [];
      const libValues: Record<string, number[]> = {};
      const ratios: Record<string, number[]> = {};
      for (let round = 0; round < rounds; round++) {
        const reply = await target.initiator(path, provider, m.c);
        if (!reply.ok) throw new Error(`C initiator (${m.name}): ${reply.error}`);
        const c = m.cValue(reply);
        cValues.push(c);
        for (const [label, run] of Object.entries(m.library)) {
          // A collection left over from the last form would otherwise run on the other core, beside
          // the busy-polling target, inside the timed loop.
          Bun.gc(true);
          const v = await run(side);
          (libValues[label] ??= []).push(v);
          (ratios[label] ??= []).push(costRatio(m.unit, v, c));
        }
      }
      const cMedian = median(cValues);
      ctx.record({ suite: SUITE, name: `${provider} ${m.name}: C`, value: cMedian, unit: m.unit, note: `median of ${rounds}` });
      for (const label of Object.keys(m.library)) {
        const r = ratios[label]!;
        const v = median(libValues[label]!);
        const ratio = median(r);
        const range = `${spread(r)}×`;
        ctx.record({ suite: SUITE, name: `${provider} ${m.name}: ${label}`, value: v, unit: m.unit, note: `median of ${rounds}` });
        ctx.record({ suite: SUITE, name: `${provider} ${m.name}: ${label} / C`, value: ratio, unit: "× C's cost", note: `rounds ${range}` });
        lines.push(`| ${provider} | ${m.name} | ${label} | ${fmt(v)} ${m.unit} | ${fmt(cMedian)} ${m.unit} | ${ratio.toFixed(2)}× (${range}) |`);
      }
    }
  } finally {
    pinSelf(allCpus());
    side?.close();
    await target.stop();
  }
}

function fmt(v: number): string {
  return v >= 100 ? Math.round(v).toLocaleString("en-US") : v.toPrecision(3);
}

// ---- registration ----------------------------------------------------------------------------------

const REG_SIZES = [["4 KiB", 4096], ["1 MiB", 1 << 20]] as const;
const regName = (what: string, provider: string, size: string) => `${provider} ${size}: ${what}`;

function registrationBenches(ctx: BenchContext, provider: string, c: CProgram, cleanups: Cleanup[]): void {
  const p = LibfabricProvider.open({ provider, ...(IP.has(provider) ? { node: "127.0.0.1" } : {}) });
  const pool = new MemoryPool(p, { huge: { chunkSize: 1 << 20, initialCount: 1 } });
  const region = pool.getRegion(1 << 20); // registered memory to register again: what a cache would
  const address = region.address;
  const fi = libfabric();
  const domain = p.handles.domain;
  const bare = bareRegistration(domain, address);
  let key = 2 ** 41;
  for (const [label, bytes] of REG_SIZES) {
    group(`registration ${provider} ${label}`, () => {
      bench(regName("bare bun:ffi fi_mr_reg + fi_close", provider, label), () => bare(bytes));
      bench(regName("Libfabric.mrReg + close", provider, label), () => {
        fi.close(fi.mrReg(domain, address, bytes, ACCESS, 0, key++, 0));
      });
      bench(regName("LibfabricProvider.register + deregister", provider, label), () => {
        p.deregister(p.register(address, bytes, ACCESS));
      });
    });
    const onProvider = alternatingRegistration(ctx, provider, label, bytes);
    const bareName = regName("bare bun:ffi fi_mr_reg + fi_close", provider, label);
    for (const what of ["Libfabric.mrReg + close", "LibfabricProvider.register + deregister"]) {
      ctx.compare({ table: RATIO_TABLE, row: `${provider} ${label}`, column: what, baseline: regName(what, provider, label), candidate: bareName });
    }
    // C's loop, run now, in a single-threaded process and with an idle second thread (glibc drops
    // its single-threaded fast paths then, as in any Bun process).
    if ("path" in c) {
      for (const threads of [1, 2]) cRegistration(ctx, c.path, provider, label, bytes, threads, onProvider);
    }
  }
  cleanups.push(() => {
    pool.releaseRegion(region);
    pool.close();
    p.close();
  });
}

/**
 * register+deregister against the bare pair in alternating batches, in a process of its own with
 * this one provider (bench/registration-child.ts): the median batch of each, their ratio, and the
 * issue's verdict for tcp 4 KiB.
 */
/** ns per register+deregister pair in a process with one provider: bare bun:ffi and the library. */
interface OneProvider { bare: number; library: number }

function alternatingRegistration(ctx: BenchContext, provider: string, label: string, bytes: number): OneProvider | null {
  const batches = ctx.quick ? 5 : 41;
  const child = Bun.spawnSync([process.execPath, new URL("../registration-child.ts", import.meta.url).pathname, provider, String(bytes), String(batches)],
    { stdout: "pipe", stderr: "pipe" });
  const name = `${provider} ${label}: LibfabricProvider.register + deregister / bare bun:ffi, alternating batches, one provider`;
  let reply: { bare?: number; library?: number } = {};
  try { reply = JSON.parse(child.stdout.toString().trim()); } catch { /* reported below */ }
  if (reply.bare === undefined || reply.library === undefined) {
    ctx.record({ suite: SUITE, name, value: NaN, unit: "×", note: `failed (exit ${child.exitCode}): ${child.stderr.toString().trim().slice(0, 200)}` });
    return null;
  }
  const ratio = reply.library / reply.bare;
  const verdict = provider === "tcp" && label === "4 KiB" ? `; ${ratio <= 1.2 ? "meets" : "MISSES"} target ≤ 1.2×` : "";
  ctx.record({
    suite: SUITE, name, value: ratio, unit: "×",
    note: `median batch ${reply.library.toFixed(0)} / ${reply.bare.toFixed(0)} ns, ${batches} batches of 20000 each, in a process with this provider only${verdict}`,
  });
  return { bare: reply.bare, library: reply.library };
}

const cProcess = (threads: number) => threads === 1 ? "C, single-threaded process" : `C, process with ${threads} threads`;

/** Runs C's registration loop once; the library's rows are divided by it once mitata has run them. */
function cRegistration(ctx: BenchContext, path: string, provider: string, label: string, bytes: number, threads: number, onProvider: OneProvider | null): void {
  const r = Bun.spawnSync([path, "mr", provider, ...(IP.has(provider) ? ["--node", "127.0.0.1"] : []), "--size", String(bytes),
    "--iterations", ctx.quick ? "20000" : "200000", "--threads", String(threads)], { stdout: "pipe" });
  const reply = JSON.parse(r.stdout.toString().trim() || "{}") as CReply;
  const name = `${provider} ${label}: C fi_mr_reg + fi_close (${cProcess(threads)})`;
  if (!reply.ok) {
    ctx.record({ suite: SUITE, name, value: NaN, unit: "ns", note: `failed: ${reply.error}` });
    return;
  }
  ctx.record({ suite: SUITE, name, value: reply.nsPerPair!, unit: "ns" });
  if (onProvider === null) return;
  // Both from processes with one provider each, as an application has: the C loop and our child.
  for (const [what, ns] of [["bare bun:ffi fi_mr_reg + fi_close", onProvider.bare], ["LibfabricProvider.register + deregister", onProvider.library]] as const) {
    const ratio = ns / reply.nsPerPair!;
    const target = what.startsWith("Libfabric") && threads > 1 ? `; ${ratio <= 2 ? "meets" : "MISSES"} target ≤ 2× C` : "";
    ctx.record({
      suite: SUITE, name: `${provider} ${label}: ${what} / ${cProcess(threads)}`, value: ratio, unit: "× C's cost",
      note: `median batch with one provider (${ns.toFixed(0)} ns) / C's mean${target}`,
    });
  }
}

// ---- suite -----------------------------------------------------------------------------------------

function label(r: Row): string {
  const size = r.bytes >= 1 << 20 ? `${r.bytes >> 20} MiB` : r.bytes >= 1024 ? `${r.bytes >> 10} KiB` : `${r.bytes} B`;
  return `${r.test} ${size} ${r.memory}`;
}

const suite: Suite = {
  name: SUITE,
  async setup(ctx: BenchContext) {
    if (!ctx.fabric) {
      ctx.provider({ suite: SUITE, label: "rma", description: "libfabric not available: RMA suite skipped" });
      return;
    }
    const c = rmaPeer();
    const lines: string[] = [];
    const cleanups: Cleanup[] = [];
    for (const provider of PROVIDERS) {
      if ("missing" in c) {
        ctx.provider({ suite: SUITE, label: `${provider} vs C`, description: `C reference not built: ${c.missing}` });
      } else {
        try {
          await compareWithC(ctx, c.path, provider, lines);
        } catch (e) {
          if (process.env.ALLOCTOOLS_REQUIRE_LIBFABRIC === "1") throw e;
          ctx.provider({ suite: SUITE, label: `${provider} vs C`, description: `not measured: ${(e as Error).message}` });
        }
      }
      registrationBenches(ctx, provider, c, cleanups);
      if (!ctx.quick) {
        const result = await rmaPingPong({ provider, sizes: [64, 65_536, 1 << 20], window: 16 });
        for (const r of result.rows) {
          const name = `${provider} in one process: ${label(r)}`;
          if (r.test === "pingpong") ctx.record({ suite: SUITE, name: `${name} latency`, value: r.usecPerXfer * 1000, unit: "ns", note: `${r.iterations} transfers` });
          else ctx.record({ suite: SUITE, name: `${name} bandwidth`, value: r.mbPerSec, unit: "MB/s", note: `window 16, ${r.iterations} writes` });
        }
      }
    }
    return () => {
      for (const f of cleanups) f();
      if (lines.length > 0) {
        console.log("\n== RMA: alloctools Endpoint vs C, same target, same run (cost ratio: > 1 means slower than C)\n");
        console.log("| provider | figure | library form | library | C | library / C (rounds) |");
        console.log("|---|---|---|---|---|---|");
        for (const l of lines) console.log(l);
      }
    };
  },
};
export default suite;
