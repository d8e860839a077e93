// Drives agent.ts processes from a test: spawn (optionally inside a network namespace), send
// commands, await answers. Every wait has a deadline, so a stuck peer fails the test, never hangs it.
import { spawnSync, type Subprocess } from "bun";

const AGENT = `${import.meta.dir}/agent.ts`;

export interface Ready {
  ready: true; name: string; remote: string; provider: string; virtualAddressing: boolean; exposedAddress: number; pid: number;
}

export type Reply = {
  seq: number; ok?: boolean; ms?: number; peer?: string; mismatch?: number; before?: number; after?: number;
  error?: { name: string; code?: string; errno?: number; message: string };
};

export class AgentProcess {
  readonly ready: Ready;
  private seq = 0;
  private readonly waiting = new Map<number, (r: Reply) => void>();
  private stderr = "";

  private constructor(private readonly proc: Subprocess<"pipe", "pipe", "pipe">, ready: Ready, lines: AsyncIterator<string>) {
    this.ready = ready;
    void (async () => {
      for (;;) {
        const next = await lines.next();
        if (next.done) break;
        if (!next.value.startsWith("{")) continue; // UCX logs its errors to stdout
        const r = JSON.parse(next.value) as Reply;
        this.waiting.get(r.seq)?.(r);
        this.waiting.delete(r.seq);
      }
    })();
  }

  /** Starts an agent; `netns` runs it inside that network namespace (`ip netns exec`); `script` another agent (UCX's). */
  static async start(args: string[], netns?: string, timeoutMs = 15_000, script = AGENT): Promise<AgentProcess> {
    const cmd = [process.execPath, script, ...args];
    const proc = Bun.spawn(netns ? ["ip", "netns", "exec", netns, ...cmd] : cmd, {
      stdin: "pipe", stdout: "pipe", stderr: "pipe", cwd: `${import.meta.dir}/../..`,
    });
    const lines = readLines(proc.stdout);
    const errText = new Response(proc.stderr).text();
    const first = await withTimeout(lines.next(), timeoutMs, "agent start");
    if (first.done) throw new Error(`agent exited before it was ready (exit ${await proc.exited}): ${await errText}`);
    const agent = new AgentProcess(proc, JSON.parse(first.value) as Ready, lines);
    void errText.then((t) => { agent.stderr = t; });
    return agent;
  }

  request(command: Record<string, unknown>, timeoutMs = 20_000): Promise<Reply> {
    const seq = ++this.seq;
    const p = new Promise<Reply>((resolve) => this.waiting.set(seq, resolve));
    this.proc.stdin.write(`${JSON.stringify({ seq, ...command })}\n`);
    this.proc.stdin.flush();
    return withTimeout(p, timeoutMs, `agent ${command.op}`, () => this.stderr);
  }

  /** Asks the agent to close everything and exit; kills it if it does not within a few seconds. */
  async stop(): Promise<number> {
    try {
      await this.request({ op: "exit" }, 5_000);
    } catch { /* killed below */ }
    const code = await Promise.race([this.proc.exited, Bun.sleep(5_000).then(() => null)]);
    if (code === null) {
      this.proc.kill(9);
      return await this.proc.exited;
    }
    return code;
  }
}

async function* linesOf(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buf = "";
  for await (const chunk of stream) {
    buf += decoder.decode(chunk, { stream: true });
    let i: number;
    while ((i = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, i);
      buf = buf.slice(i + 1);
    }
  }
}

function readLines(stream: ReadableStream<Uint8Array>): AsyncIterator<string> {
  return linesOf(stream)[Symbol.asyncIterator]();
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string, detail?: () => string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms ${detail?.() ?? ""}`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** Two network namespaces joined by a veth pair: `a` at 10.231.0.1, `b` at 10.231.0.2. */
export class NamespacePair {
  readonly a: string;
  readonly b: string;
  readonly addressA = "10.231.0.1";
  readonly addressB = "10.231.0.2";
  private readonly vethA: string;
  private readonly vethB: string;

  constructor(tag: string = String(process.pid)) {
    // Unique per run (several developers share this machine); veth names fit IFNAMSIZ (15).
    this.a = `alloct-a-${tag}`;
    this.b = `alloct-b-${tag}`;
    this.vethA = `atva${tag}`.slice(0, 15);
    this.vethB = `atvb${tag}`.slice(0, 15);
  }

  /** Why namespaces cannot be made here, or "" when they can. */
  static unavailable(): string {
    if (process.getuid?.() !== 0) return "not root (ip netns needs CAP_SYS_ADMIN)";
    if (!Bun.which("ip")) return "no ip command (apt-get install iproute2)";
    return "";
  }

  create(): void {
    const ip = (...args: string[]) => run(["ip", ...args]);
    ip("netns", "add", this.a);
    ip("netns", "add", this.b);
    // The veth pair is created inside namespace a: nothing touches the host's interfaces.
    ip("-n", this.a, "link", "add", this.vethA, "type", "veth", "peer", "name", this.vethB, "netns", this.b);
    ip("-n", this.a, "addr", "add", `${this.addressA}/24`, "dev", this.vethA);
    ip("-n", this.b, "addr", "add", `${this.addressB}/24`, "dev", this.vethB);
    for (const [ns, dev] of [[this.a, this.vethA], [this.b, this.vethB]] as const) {
      ip("-n", ns, "link", "set", "lo", "up");
      ip("-n", ns, "link", "set", dev, "up");
    }
  }

  /** Bytes received on b's end of the veth: what crossed between the "hosts". */
  receivedByB(): number {
    const r = spawnSync(["ip", "-n", this.b, "-j", "-s", "link", "show", "dev", this.vethB], { stdout: "pipe", stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`ip link show failed: ${r.stderr.toString()}`);
    const [link] = JSON.parse(r.stdout.toString()) as { stats64: { rx: { bytes: number } } }[];
    return link!.stats64.rx.bytes;
  }

  /** Deleting a namespace deletes its end of the veth, and with it the pair. */
  destroy(): void {
    for (const ns of [this.a, this.b]) spawnSync(["ip", "netns", "delete", ns], { stderr: "pipe" });
  }
}

function run(cmd: string[]): void {
  const r = spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed (${r.exitCode}): ${r.stderr.toString()}`);
}
