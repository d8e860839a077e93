// A child process spoken to in JSON lines: commands on its stdin, one JSON line back on its stdout
// for each (lines that are not JSON objects are skipped). The messaging bench's peers, C and Bun.
import type { FileSink, Subprocess } from "bun";

export class JsonLinesChild {
  private readonly reader: { read(): Promise<{ value?: Uint8Array; done: boolean }> };
  private readonly decoder = new TextDecoder();
  private text = "";
  private stderrText = "";

  private constructor(readonly process: Subprocess<"pipe", "pipe", "pipe">, readonly what: string) {
    this.reader = (process.stdout as ReadableStream<Uint8Array>).getReader() as unknown as { read(): Promise<{ value?: Uint8Array; done: boolean }> };
    void (async () => {
      for await (const chunk of process.stderr as ReadableStream<Uint8Array>) this.stderrText = (this.stderrText + new TextDecoder().decode(chunk)).slice(-2000);
    })();
  }

  /** Starts `argv` (with `env` when given). */
  static start(argv: string[], what: string, env?: Record<string, string>): JsonLinesChild {
    const child = Bun.spawn(argv, { stdin: "pipe", stdout: "pipe", stderr: "pipe", ...(env ? { env } : {}) });
    return new JsonLinesChild(child, what);
  }

  /** Writes one command line. */
  send(command: unknown): void {
    const stdin = this.process.stdin as FileSink;
    stdin.write(`${JSON.stringify(command)}\n`);
    stdin.flush();
  }

  /** The next JSON line; throws after `timeoutMs`, at end of output, or when it is {"error"}. */
  async next<T>(timeoutMs: number, waitingFor: string): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const newline = this.text.indexOf("\n");
      if (newline >= 0) {
        const line = this.text.slice(0, newline).trim();
        this.text = this.text.slice(newline + 1);
        if (!line.startsWith("{")) continue;
        const value = JSON.parse(line) as T & { error?: string };
        if (typeof value.error === "string") throw new Error(`${this.what}: ${value.error}`);
        return value;
      }
      const left = deadline - Date.now();
      if (left <= 0) break;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<{ value?: Uint8Array; done: boolean }>((resolve) => { timer = setTimeout(() => resolve({ done: true, value: undefined }), left); });
      const { value, done } = await Promise.race([this.reader.read(), late]);
      clearTimeout(timer);
      if (done) break;
      this.text += this.decoder.decode(value, { stream: true });
    }
    throw new Error(`${this.what} did not answer ${waitingFor} within ${timeoutMs} ms${this.stderrText ? `: ${this.stderrText.trim().split("\n").slice(-3).join(" | ")}` : ""}`);
  }

  /** Sends `command` and waits for its answer. */
  async ask<T>(command: unknown, timeoutMs: number, waitingFor: string): Promise<T> {
    this.send(command);
    return this.next<T>(timeoutMs, waitingFor);
  }

  /** Closes stdin and waits up to 5 s for the exit, then kills it. */
  async stop(): Promise<void> {
    try { await (this.process.stdin as FileSink).end(); } catch { /* gone already */ }
    const code = await Promise.race([this.process.exited, Bun.sleep(5000).then(() => null)]);
    if (code === null) this.process.kill(9);
  }

  /** Waits for the exit (up to `timeoutMs`, then kills it); the exit code. */
  async exited(timeoutMs: number): Promise<number | null> {
    const code = await Promise.race([this.process.exited, Bun.sleep(timeoutMs).then(() => null)]);
    if (code === null) this.process.kill(9);
    return code;
  }
}
