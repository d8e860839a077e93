// A single-node Slurm for the tests, started from nothing and stopped afterwards: its own munged
// (a fresh key and socket in a temporary directory), slurmctld and slurmd in the foreground as
// children of this process, and a slurm.conf generated there (free ports, no cgroups:
// proctrack/linuxproc and task/none, MpiDefault=pmix). Nothing outside the directory is touched,
// so it runs beside a site's own Slurm or munge. Needs root (SlurmUser=root) and the packages
// slurmctld, slurmd, slurm-client and munge.
//
//   bun test/jobs/slurm.ts     # starts one, prints `export SLURM_CONF=...`, stops on Ctrl-C
//
// ALLOCTOOLS_REQUIRE_SLURM=1 (CI) turns "cannot run Slurm here" from a skip into a failure.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import type { Subprocess } from "bun";

const DAEMONS = ["munged", "slurmctld", "slurmd"] as const;
const CLIENTS = ["srun", "sinfo"] as const;
/** How long the node may take to come up (seconds since slurmctld started). */
const READY_TIMEOUT_MS = 30_000;

/** Whether this machine can run the test Slurm; the reason when it cannot. */
export const slurm: { available: true } | { available: false; reason: string } = (() => {
  const missing = [...DAEMONS, ...CLIENTS].filter((program) => Bun.which(program, { PATH: `${process.env.PATH}:/usr/sbin:/sbin` }) === null);
  if (missing.length > 0) {
    return { available: false, reason: `missing ${missing.join(", ")} (apt-get install slurmctld slurmd slurm-client munge)` } as const;
  }
  if (process.getuid?.() !== 0) return { available: false, reason: "the test Slurm runs its daemons as root (SlurmUser=root); run the tests as root" } as const;
  if (process.platform !== "linux") return { available: false, reason: "the test Slurm is for Linux" } as const;
  return { available: true } as const;
})();

/** CI sets ALLOCTOOLS_REQUIRE_SLURM=1: the Slurm tests must run, not skip. */
export const REQUIRE_SLURM = (() => {
  const v = process.env.ALLOCTOOLS_REQUIRE_SLURM;
  if (v === undefined || v === "" || v === "0") return false;
  if (v === "1") return true;
  throw new Error(`ALLOCTOOLS_REQUIRE_SLURM must be 1 or 0, got ${JSON.stringify(v)}`);
})();

/** One run of `srun`. */
export interface SrunResult {
  readonly exitCode: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
  readonly elapsedMs: number;
}

/** A running single-node Slurm. */
export interface SlurmCluster {
  /** The generated slurm.conf (export it as SLURM_CONF to use the cluster). */
  readonly conf: string;
  /** The environment for its clients: SLURM_CONF set. */
  readonly env: Record<string, string>;
  /** `srun <args...>` against this cluster, killed after `timeoutMs`. */
  srun(args: string[], options?: { env?: Record<string, string>; timeoutMs?: number; cwd?: string }): Promise<SrunResult>;
  /** Stops slurmd, then slurmctld, then munged (each waited for), and removes the directory. */
  stop(): Promise<void>;
}

/** Starts a single-node Slurm in a fresh temporary directory; resolves once its node is idle. */
export async function startSlurm(): Promise<SlurmCluster> {
  if (!slurm.available) throw new Error(`cannot start the test Slurm: ${slurm.reason}`);
  const dir = mkdtempSync(join(tmpdir(), "alloctools-slurm-"));
  chmodSync(dir, 0o755); // munged wants its socket's directory searchable by all
  const children: Subprocess[] = [];
  const stop = async () => {
    for (const child of children.reverse()) await stopChild(child);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    children.push(startMunge(dir));
    await waitFor(() => munged(dir), 10_000, "munged to answer");
    const conf = writeConfig(dir, await freePorts(2));
    const env = { ...process.env, SLURM_CONF: conf } as Record<string, string>;
    children.push(spawnDaemon(dir, "slurmctld", ["-D", "-f", conf], env));
    children.push(spawnDaemon(dir, "slurmd", ["-D", "-f", conf], env));
    await waitFor(() => nodeIdle(env), READY_TIMEOUT_MS, "the node to be idle in sinfo", () => logTail(dir));
    return { conf, env, srun: (args, options) => srun(env, args, options), stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

function startMunge(dir: string): Subprocess {
  const key = join(dir, "munge.key");
  writeFileSync(key, randomBytes(1024), { mode: 0o600 });
  return spawnDaemon(dir, "munged", [
    "--foreground", "--force", `--key-file=${key}`, `--socket=${join(dir, "munge.socket")}`,
    `--pid-file=${join(dir, "munged.pid")}`, `--log-file=${join(dir, "munged.log")}`, `--seed-file=${join(dir, "munged.seed")}`,
  ], process.env as Record<string, string>);
}

function munged(dir: string): boolean {
  const encode = Bun.spawnSync(["munge", "-S", join(dir, "munge.socket"), "-n"], { stdout: "pipe", stderr: "pipe" });
  return encode.exitCode === 0 && encode.stdout.length > 0;
}

/** slurm.conf: the settings docs/jobs.md lists, with this host, its CPUs and memory, and free ports. */
function writeConfig(dir: string, [controllerPort, nodePort]: number[]): string {
  const host = hostname().split(".")[0]!;
  const memoryMiB = Math.floor(Number(/MemTotal:\s+(\d+)/.exec(readFileSync("/proc/meminfo", "utf8"))?.[1] ?? 1_048_576) / 1024);
  for (const sub of ["state", "spool", "tmp"]) mkdirSync(join(dir, sub));
  const lines = [
    "ClusterName=alloctools",
    `SlurmctldHost=${host}`,
    "AuthType=auth/munge",
    "CredType=cred/munge",
    `AuthInfo=socket=${join(dir, "munge.socket")}`,
    "SlurmUser=root",
    "SlurmdUser=root",
    `StateSaveLocation=${join(dir, "state")}`,
    `SlurmdSpoolDir=${join(dir, "spool")}`,
    // The PMIx plugin makes a directory per step under TmpFS (spmix_appdir_<uid>_<job>.<step>) and
    // leaves it behind when a step aborts; job ids restart at 1 with every test cluster, so a
    // shared /tmp would make a later cluster's step of the same id fail to launch.
    `TmpFS=${join(dir, "tmp")}`,
    `SlurmctldPidFile=${join(dir, "slurmctld.pid")}`,
    `SlurmdPidFile=${join(dir, "slurmd.pid")}`,
    `SlurmctldLogFile=${join(dir, "slurmctld.log")}`,
    `SlurmdLogFile=${join(dir, "slurmd.log")}`,
    `SlurmctldPort=${controllerPort}`,
    `SlurmdPort=${nodePort}`,
    "ProctrackType=proctrack/linuxproc",
    "TaskPlugin=task/none",
    "JobAcctGatherType=jobacct_gather/none",
    "SelectType=select/cons_tres",
    "SelectTypeParameters=CR_Core",
    "MpiDefault=pmix",
    "ReturnToService=2",
    // A task that exits non-zero ends its step (the others are killed), as sites usually set.
    "KillOnBadExit=1",
    // The node offers 8 CPUs whatever it has, so that `srun -n 4` runs on a 2-core machine.
    "SlurmdParameters=config_overrides",
    `NodeName=${host} CPUs=8 RealMemory=${memoryMiB} State=UNKNOWN`,
    `PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8`,
  ];
  const conf = join(dir, "slurm.conf");
  writeFileSync(conf, `${lines.join("\n")}\n`);
  return conf;
}

function spawnDaemon(dir: string, program: string, args: string[], env: Record<string, string>): Subprocess {
  const path = Bun.which(program, { PATH: `${process.env.PATH}:/usr/sbin:/sbin` })!;
  return Bun.spawn([path, ...args], { env, stdout: "ignore", stderr: Bun.file(join(dir, `${program}.err`)), stdin: "ignore" });
}

function nodeIdle(env: Record<string, string>): boolean {
  const r = Bun.spawnSync(["sinfo", "-h", "-o", "%T"], { env, stdout: "pipe", stderr: "pipe" });
  return r.exitCode === 0 && /^idle/m.test(r.stdout.toString());
}

async function srun(env: Record<string, string>, args: string[], options: { env?: Record<string, string>; timeoutMs?: number; cwd?: string } = {}): Promise<SrunResult> {
  const started = performance.now();
  const child = Bun.spawn(["srun", ...args], {
    env: { ...env, ...options.env }, cwd: options.cwd ?? `${import.meta.dir}/../..`, stdout: "pipe", stderr: "pipe",
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, options.timeoutMs ?? 90_000);
  const [stdout, stderr, exitCode] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  clearTimeout(timer);
  return { exitCode, stdout, stderr, timedOut, elapsedMs: performance.now() - started };
}

/** SIGTERM, then SIGKILL if it has not exited within 10 s. */
async function stopChild(child: Subprocess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const exited = await Promise.race([child.exited.then(() => true), Bun.sleep(10_000).then(() => false)]);
  if (!exited) {
    child.kill("SIGKILL");
    await child.exited;
  }
}

async function waitFor(ready: () => boolean, timeoutMs: number, what: string, diagnose?: () => string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!ready()) {
    if (performance.now() > deadline) throw new Error(`the test Slurm did not start: no ${what} within ${timeoutMs / 1000} s${diagnose ? `\n${diagnose()}` : ""}`);
    await Bun.sleep(200);
  }
}

function logTail(dir: string): string {
  return ["slurmctld.log", "slurmd.log", "slurmctld.err", "slurmd.err"].map((name) => {
    let text = "";
    try { text = readFileSync(join(dir, name), "utf8"); } catch { /* not written yet */ }
    return `--- ${name}\n${text.trim().split("\n").slice(-8).join("\n")}`;
  }).join("\n");
}

/** `n` TCP ports free right now on this host (bound, read, released). */
async function freePorts(n: number): Promise<number[]> {
  const listeners = Array.from({ length: n }, () => Bun.listen({ hostname: "0.0.0.0", port: 0, socket: { data() {} } }));
  const ports = listeners.map((l) => l.port);
  for (const l of listeners) l.stop(true);
  return ports;
}

if (import.meta.main) {
  const cluster = await startSlurm();
  console.log(`export SLURM_CONF=${cluster.conf}`);
  console.log("# Slurm is up (srun --mpi=pmix -n 4 bun examples/job-ring.ts); Ctrl-C stops it");
  const shutdown = async () => {
    await cluster.stop();
    process.exit(0);
  };
  process.on("SIGINT", shutdown);
  process.on("SIGTERM", shutdown);
  await new Promise(() => {});
}
