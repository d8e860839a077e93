// The independent C UCX peer (test/ucx/c-peer.c) from tests: built with cc against libucx-dev at
// test time, run as its own process, asked one command line at a time (one JSON line back each).
import { spawnSync, type Subprocess } from "bun";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Builds c-peer.c; the executable's path, or why it cannot be built here. */
export function buildCPeer(): { path: string } | { missing: string } {
  const cc = Bun.which("cc") ?? Bun.which("gcc");
  if (cc === null) return { missing: "no C compiler (cc)" };
  if (!existsSync("/usr/include/ucp/api/ucp.h")) return { missing: "no UCX headers (apt-get install libucx-dev)" };
  const path = join(mkdtempSync(join(tmpdir(), "alloctools-ucx-c-peer-")), "c-peer");
  const build = spawnSync([cc, "-O2", "-Wall", "-o", path, `${import.meta.dir}/c-peer.c`, "-lucp", "-lucs"], { stderr: "pipe" });
  if (build.exitCode !== 0) return { missing: `cc failed: ${build.stderr.toString()}` };
  return { path };
}

/** What the C peer answers: a JSON object per command. */
export type CReply = Record<string, unknown> & { status?: string };

/** One running C peer. */
export class CPeer {
  /** Its worker address and the sender id it computed for itself. */
  readonly address: Uint8Array;
  readonly id: number;
  private readonly lines: AsyncIterator<string>;

  private constructor(private readonly proc: Subprocess<"pipe", "pipe", "pipe">, lines: AsyncIterator<string>, first: { address: string; id: number }) {
    this.lines = lines;
    this.address = new Uint8Array(Buffer.from(first.address, "hex"));
    this.id = first.id;
  }

  static async start(path: string, transports: string, netDevices: string | undefined): Promise<CPeer> {
    const proc = Bun.spawn([path, transports, netDevices ?? "-"], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    const lines = jsonLines(proc.stdout);
    const first = await deadline(lines.next(), 15_000, "C peer start");
    if (first.done) throw new Error(`the C peer exited before it was ready (exit ${await proc.exited}): ${await new Response(proc.stderr).text()}`);
    return new CPeer(proc, lines, JSON.parse(first.value) as { address: string; id: number });
  }

  /**
   * Sends one command line (flushed to the pipe before this resolves) and gives the promise of its
   * reply, wrapped (an async function would wait for a promise it returns): a caller may then block
   * its own thread (a sync receive) while the C peer works.
   */
  async command(line: string, timeoutMs = 60_000): Promise<{ reply: Promise<CReply> }> {
    this.proc.stdin.write(`${line}\n`);
    await this.proc.stdin.flush();
    const reply = deadline(this.lines.next(), timeoutMs, `C peer: ${line.slice(0, 40)}`).then((next) => {
      if (next.done) throw new Error(`the C peer exited during ${line.slice(0, 40)}`);
      return JSON.parse(next.value) as CReply;
    });
    return { reply };
  }

  /** A command and its reply. */
  async ask(line: string, timeoutMs?: number): Promise<CReply> {
    return await (await this.command(line, timeoutMs)).reply;
  }

  /** Asks it to exit; kills it if it does not; its exit code. */
  async stop(): Promise<number | null> {
    try {
      this.proc.stdin.write("exit\n");
      await this.proc.stdin.flush();
      this.proc.stdin.end();
    } catch { /* gone already */ }
    const code = await Promise.race([this.proc.exited, Bun.sleep(5000).then(() => null)]);
    if (code === null) this.proc.kill(9);
    return code;
  }
}

async function* linesOf(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const chunk of stream) {
    buffered += decoder.decode(chunk, { stream: true });
    let at: number;
    while ((at = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, at);
      buffered = buffered.slice(at + 1);
      if (line.startsWith("{")) yield line; // UCX logs to stdout too
    }
  }
}

function jsonLines(stream: ReadableStream<Uint8Array>): AsyncIterator<string> {
  return linesOf(stream)[Symbol.asyncIterator]();
}

function deadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms); });
  return Promise.race([p, expired]).finally(() => clearTimeout(timer));
}
