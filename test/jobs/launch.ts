// Runs a launcher (mpirun, srun) for the job tests in a process group of its own, so that a
// deadline kills the launcher and every rank it started, and collects the ranks' reports
// (test/jobs/agent.ts writes one file per rank into $ALLOCTOOLS_MPI_RESULT_DIR).
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AgentResult } from "../mpi/run.ts";

const ROOT = join(import.meta.dir, "..", "..");

/** What one launch gave. */
export interface Launch {
  readonly exitCode: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
  readonly elapsedMs: number;
  /** The agents' reports, by rank. */
  readonly results: AgentResult[];
}

/** `argv` in `cwd` (the repository root by default) with `env` added; the whole process group is killed after `timeoutMs`. */
export async function launch(argv: string[], env: Record<string, string> = {}, timeoutMs = 90_000, cwd = ROOT): Promise<Launch> {
  const reports = mkdtempSync(join(tmpdir(), "alloctools-jobs-"));
  const started = performance.now();
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd, env: { ...process.env, ...env, ALLOCTOOLS_MPI_RESULT_DIR: reports }, detached: true, stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try { process.kill(-child.pid!, "SIGKILL"); } catch { /* already gone */ }
  }, timeoutMs);
  const exitCode = await new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  clearTimeout(timer);
  try { process.kill(-child.pid!, "SIGKILL"); } catch { /* the group has ended */ }
  const results = readdirSync(reports).map((name) => JSON.parse(readFileSync(join(reports, name), "utf8")) as AgentResult);
  rmSync(reports, { recursive: true, force: true });
  results.sort((a, b) => a.rank - b.rank);
  return { exitCode, stdout, stderr, timedOut, elapsedMs: performance.now() - started, results };
}

/** `mpirun -n <ranks>` with --oversubscribe (and --allow-run-as-root as root), then `command`. */
export function mpirunArgv(mpirun: string, ranks: number, command: string[]): string[] {
  return [mpirun, ...(process.getuid?.() === 0 ? ["--allow-run-as-root"] : []), "--oversubscribe", "-n", String(ranks), ...command];
}

/** The agents' failed checks as "rank r: name: detail" lines (empty when all passed). */
export function failedChecks(run: Launch): string[] {
  return run.results.flatMap((r) => r.checks.filter((c) => !c.ok).map((c) => `rank ${r.rank}: ${c.name}: ${c.detail ?? ""}`));
}

/** Exit code, timing and the start of stderr, for assertion messages. */
export function summary(run: Launch): string {
  return `exit ${run.exitCode}${run.timedOut ? " (timed out)" : ""} after ${Math.round(run.elapsedMs)} ms\n` +
    `${run.stderr.split("\n").slice(0, 30).join("\n")}\n${run.stdout.split("\n").slice(0, 10).join("\n")}`;
}
