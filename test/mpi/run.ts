// Runs a command under mpirun for the MPI tests: --oversubscribe (2 cores, up to 4 ranks), plus
// --allow-run-as-root when root (CI), with a deadline after which the whole job is killed.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { mpi } from "../helpers.ts";

/** What one mpirun run gave: exit code, output, and the reports of test/mpi/agent.ts by rank. */
export interface MpiRun {
  readonly exitCode: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
  readonly results: AgentResult[];
}

/** One rank's report (see agent.ts). */
export interface AgentResult {
  readonly rank: number;
  readonly checks: { name: string; ok: boolean; detail?: string }[];
  readonly facts: Record<string, unknown>;
}

const ROOT = `${import.meta.dir}/../..`;

/** One program of a job that runs several (mpirun's app contexts, separated by ":"). */
export interface AppContext {
  readonly ranks: number;
  readonly command: string[];
}

/** `mpirun -n <ranks> <command...>` from the repository root. */
export function mpirun(ranks: number, command: string[], extraEnv: Record<string, string> = {}, timeoutMs = 90_000): Promise<MpiRun> {
  return mpirunApps([{ ranks, command }], extraEnv, timeoutMs);
}

/**
 * `mpirun -n <ranks> <command...> : -n <ranks> <command...>`: ranks are numbered in the order of
 * the contexts. `extraEnv` reaches every rank (mpirun's -x applies to the context it is given in).
 */
export async function mpirunApps(apps: readonly AppContext[], extraEnv: Record<string, string> = {}, timeoutMs = 90_000): Promise<MpiRun> {
  if (!mpi.available) throw new Error(`mpirun is not available: ${mpi.reason}`);
  // Each rank writes its report to a file here: mpirun may split a long stdout line with another rank's output.
  const reports = mkdtempSync(`${tmpdir()}/alloctools-mpi-`);
  const env = { ...extraEnv, ALLOCTOOLS_MPI_RESULT_DIR: reports };
  const args = [mpi.mpirun, "--oversubscribe"];
  if (process.getuid?.() === 0) args.push("--allow-run-as-root");
  apps.forEach(({ ranks, command }, i) => {
    if (i > 0) args.push(":");
    args.push("-n", String(ranks));
    for (const name of Object.keys(env)) args.push("-x", name);
    args.push(...command);
  });
  const child = Bun.spawn(args, {
    cwd: ROOT,
    env: { ...process.env, ...env } as Record<string, string>,
    stdout: "pipe",
    stderr: "pipe",
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGTERM");
  }, timeoutMs);
  const [stdout, stderr, exitCode] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  clearTimeout(timer);
  const results = readdirSync(reports).map((name) => JSON.parse(readFileSync(`${reports}/${name}`, "utf8")) as AgentResult);
  rmSync(reports, { recursive: true, force: true });
  results.sort((a, b) => a.rank - b.rank);
  return { exitCode, stdout, stderr, timedOut, results };
}

/** The agent's checks that failed, as "rank r: name: detail" lines (empty when all passed). */
export function failures(run: MpiRun): string[] {
  return run.results.flatMap((r) => r.checks.filter((c) => !c.ok).map((c) => `rank ${r.rank}: ${c.name}: ${c.detail ?? ""}`));
}

/** stderr without the noise of Open MPI's help aggregation, for assertion messages. */
export function brief(run: MpiRun): string {
  return `exit ${run.exitCode}${run.timedOut ? " (timed out)" : ""}\n${run.stderr.split("\n").slice(0, 40).join("\n")}`;
}
