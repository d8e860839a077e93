// The C anchors of the messaging bench that are not ours to write: fi_pingpong (libfabric-bin) and
// ucx_perftest (ucx-utils), each a server on CPU 1 and a client on CPU 0 on loopback, and the
// mpirun jobs (2 ranks) of the MPI case, ours and the C reference's alike.
import { onCpu } from "../cpu.ts";
import type { LatencyResult, WindowResult } from "./loops.ts";

/** A random control port, so that a run never meets a port a previous run left in TIME_WAIT. */
const port = () => String(20_000 + Math.floor(Math.random() * 30_000));

/** Runs a server then a client (the server's control socket needs a moment); the client's stdout. */
async function serverAndClient(server: string[], client: string[], env: Record<string, string> | undefined, timeoutMs: number): Promise<string> {
  const serverProcess = Bun.spawn([...onCpu(1), ...server], { stdout: "pipe", stderr: "pipe", ...(env ? { env } : {}) });
  try {
    await Bun.sleep(300);
    const clientProcess = Bun.spawn([...onCpu(0), ...client], { stdout: "pipe", stderr: "pipe", ...(env ? { env } : {}) });
    const timer = setTimeout(() => clientProcess.kill(9), timeoutMs);
    const [out, err, code] = await Promise.all([new Response(clientProcess.stdout).text(), new Response(clientProcess.stderr).text(), clientProcess.exited]);
    clearTimeout(timer);
    if (code !== 0) throw new Error(`${client[0]} exited ${code}: ${(out + err).trim().split("\n").slice(-3).join(" | ")}`);
    return out;
  } finally {
    const exited = await Promise.race([serverProcess.exited, Bun.sleep(3000).then(() => null)]);
    if (exited === null) serverProcess.kill(9);
  }
}

/**
 * `fi_pingpong -p <provider> -e rdm -m tagged -S 64 -I <iterations>`: its usec/xfer is the whole
 * run's time over 2 × iterations, the mean half round trip (it reports no percentile).
 */
export async function fiPingpong(provider: string, bytes: number, iterations: number, timeoutMs: number): Promise<{ meanNs: number }> {
  const controlPort = port();
  const common = ["fi_pingpong", "-p", provider, "-e", "rdm", "-m", "tagged", "-S", String(bytes), "-I", String(iterations)];
  const out = await serverAndClient([...common, "-B", controlPort], [...common, "-P", controlPort, "127.0.0.1"], undefined, timeoutMs);
  // bytes #sent #ack total time MB/sec usec/xfer Mxfers/sec
  const line = out.split("\n").find((l) => new RegExp(`^${bytes}\\s`).test(l.trim()));
  const usecPerTransfer = Number(line?.trim().split(/\s+/)[6]);
  if (!Number.isFinite(usecPerTransfer)) throw new Error(`fi_pingpong printed no result line: ${out.trim().split("\n").slice(-2).join(" | ")}`);
  return { meanNs: usecPerTransfer * 1000 };
}

/** What ucx_perftest's `Final:` line says, in our units. */
export interface PerftestFigures {
  /** tag_lat: the typical (p50) and overall mean half round trip, ns. */
  medianNs: number;
  meanNs: number;
  /** tag_bw: overall bandwidth in MB of 1e6 bytes (perftest prints 2^20) and overall message rate. */
  mbPerSec: number;
  messagesPerSec: number;
}

/** `ucx_perftest -t <test> -s <bytes> -n <iterations> -w <warmup> [-O <window>]` with UCX_TLS (and UCX_NET_DEVICES). */
export async function ucxPerftest(test: "tag_lat" | "tag_bw", env: Record<string, string>, bytes: number, iterations: number, warmup: number,
  window: number | null, timeoutMs: number): Promise<PerftestFigures> {
  const controlPort = port();
  const out = await serverAndClient(["ucx_perftest", "-p", controlPort],
    ["ucx_perftest", "127.0.0.1", "-p", controlPort, "-t", test, "-s", String(bytes), "-n", String(iterations), "-w", String(warmup),
      ...(window === null ? [] : ["-O", String(window)])], env, timeoutMs);
  const line = out.split("\n").find((l) => l.startsWith("Final:"));
  if (line === undefined) throw new Error(`ucx_perftest ${test} printed no Final: line: ${out.trim().split("\n").slice(-2).join(" | ")}`);
  // Final: iterations, typical latency, average and overall latency (µs), average and overall bandwidth (MB/s of 2^20), average and overall message rate.
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  return { medianNs: f[1]! * 1000, meanNs: f[3]! * 1000, mbPerSec: f[5]! * 1.048576, messagesPerSec: f[7]! };
}

/** One test's line of an MPI job (bench/c/mpi-messages.c or bench/messaging/mpi-rank.ts). */
export type MpiLine = { test: string; bytes: number; perPair?: number; types?: Record<string, number> } & Partial<LatencyResult> & Partial<WindowResult>;

/** `mpirun -n 2 <command>` as bench/suites/mpi.ts runs it; rank 0's JSON lines, or throws why there are none. */
export async function mpiJob(mpirun: string, command: string[], timeoutMs: number): Promise<MpiLine[]> {
  const args = [mpirun, "--oversubscribe", "-n", "2"];
  if (process.getuid?.() === 0) args.splice(1, 0, "--allow-run-as-root");
  const job = Bun.spawn([...args, ...command], { stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => job.kill(9), timeoutMs);
  const [out, err, code] = await Promise.all([new Response(job.stdout).text(), new Response(job.stderr).text(), job.exited]);
  clearTimeout(timer);
  const lines = out.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as MpiLine & { error?: string });
  const failed = lines.find((l) => typeof l.error === "string");
  if (failed) throw new Error(failed.error);
  if (code !== 0) throw new Error(`mpirun exited ${code}: ${(err || out).trim().split("\n").slice(0, 3).join(" / ")}`);
  return lines;
}
