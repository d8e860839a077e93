// Peer processes of the suites that measure against C or another process in the same run (rma,
// mpi, atomics): a target that prints one JSON line when ready and serves until its stdin closes,
// a run-to-the-end command whose JSON lines are its result, and a 2-rank mpirun job. A peer that
// cannot start or answer is an Error (or a string) saying why, for a row to report, never a hang.
import type { FileSink, Subprocess } from "bun";

/** A running target process and the JSON line it printed when it was ready. */
export class ReadyProcess<Ready> {
  private constructor(readonly proc: Subprocess<"pipe", "pipe", "pipe">, readonly ready: Ready) {}

  /**
   * Spawns `command` and waits up to `timeoutMs` for its first line, a JSON object; throws (after
   * killing it) when there is none, when it says {"error"}, or when `isReady` refuses it.
   */
  static async start<Ready>(command: string[], what: string, isReady: (line: Ready) => boolean, timeoutMs = 30_000,
    env?: Record<string, string>): Promise<ReadyProcess<Ready>> {
    const proc = Bun.spawn(command, { stdin: "pipe", stdout: "pipe", stderr: "pipe", ...(env ? { env } : {}) });
    const reader = proc.stdout.getReader();
    let text = "";
    const deadline = Date.now() + timeoutMs;
    while (!text.includes("\n") && Date.now() < deadline) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<null>((resolve) => { timer = setTimeout(() => resolve(null), deadline - Date.now()); });
      const chunk = await Promise.race([reader.read(), late]);
      clearTimeout(timer);
      if (chunk === null || chunk.done) break;
      text += new TextDecoder().decode(chunk.value);
    }
    reader.releaseLock();
    let ready: (Ready & { error?: string }) | null = null;
    try { ready = JSON.parse(text.split("\n")[0] || "null"); } catch { /* reported below */ }
    if (ready === null || ready.error !== undefined || !isReady(ready)) {
      proc.kill(9);
      const stderr = await Promise.race([new Response(proc.stderr).text(), Bun.sleep(1000).then(() => "")]);
      const output = (text.trim() || stderr.trim()).slice(0, 300) || "no output";
      throw new Error(`${what} did not start: ${ready?.error ?? output}`);
    }
    return new ReadyProcess(proc, ready);
  }

  /** Closes its stdin (after a line, for targets that poll for one) and waits 5 s before killing it. */
  async stop(): Promise<void> {
    const stdin = this.proc.stdin as FileSink;
    try {
      stdin.write("x\n");
      await stdin.end();
    } catch { /* already gone */ }
    const code = await Promise.race([this.proc.exited, Bun.sleep(5000).then(() => null)]);
    if (code === null) this.proc.kill(9);
  }
}

/** The JSON-object lines a command printed, run to its end (killed after `timeoutMs`); or why there are none. */
export async function jsonLines<T>(command: string[], timeoutMs = 120_000, env?: Record<string, string>): Promise<T[] | string> {
  const proc = Bun.spawn(command, { stdout: "pipe", stderr: "pipe", ...(env ? { env } : {}) });
  const timer = setTimeout(() => proc.kill(9), timeoutMs);
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  await proc.exited;
  clearTimeout(timer);
  const lines: T[] = [];
  for (const line of out.split("\n")) {
    if (!line.startsWith("{")) continue;
    try { lines.push(JSON.parse(line) as T); } catch { /* a torn line: not a result */ }
  }
  const failed = lines.find((l) => (l as { error?: string }).error !== undefined) as { error?: string } | undefined;
  if (failed !== undefined) return failed.error!;
  if (proc.exitCode !== 0 || lines.length === 0) {
    return `exit ${proc.exitCode ?? proc.signalCode}: ${(err.trim() || out.trim()).split("\n").slice(0, 3).join(" / ").slice(0, 300)}`;
  }
  return lines;
}

/** `mpirun --oversubscribe -n 2 <command>` (as root with --allow-run-as-root): its JSON lines, or why there are none. */
export function mpirunTwoRanks<T>(mpirun: string, command: string[], timeoutMs = 120_000): T[] | string {
  const args = [mpirun, "--oversubscribe", "-n", "2"];
  if (process.getuid?.() === 0) args.splice(1, 0, "--allow-run-as-root");
  const r = Bun.spawnSync([...args, ...command], { stdout: "pipe", stderr: "pipe", timeout: timeoutMs });
  const lines: T[] = [];
  for (const line of r.stdout.toString().split("\n")) {
    if (!line.startsWith("{")) continue;
    try { lines.push(JSON.parse(line) as T); } catch { /* a torn line: not a result */ }
  }
  if (r.exitCode !== 0 || lines.length === 0) return `exit ${r.exitCode}: ${r.stderr.toString().trim().split("\n").slice(0, 3).join(" / ")}`;
  return lines;
}
