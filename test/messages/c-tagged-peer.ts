// The C peer of the interop tests (test/messages/tagged-peer.c), built with cc at test time (as
// bench/c/build.ts builds the RMA peer) and driven one command line at a time. Without a compiler
// or libfabric-dev, the tests skip with the reason, and fail instead under
// ALLOCTOOLS_REQUIRE_LIBFABRIC=1 (CI has gcc and libfabric-dev).
import { describe, test } from "bun:test";
import { buildC } from "../../bench/c/build.ts";
import { describeFabric, fabric, REQUIRE_LIBFABRIC } from "../helpers.ts";

/** describe() for tests that need libfabric and the C peer; `body` gets the binary's path. */
export function describeTaggedPeer(name: string, body: (binary: string) => void): void {
  if (!fabric.available) {
    describeFabric(name, () => body(""));
    return;
  }
  const built = buildC("tagged-peer", ["-lfabric"], import.meta.dir);
  if ("path" in built) {
    describe(name, () => body(built.path));
  } else if (REQUIRE_LIBFABRIC) {
    describe(name, () => {
      test("the C peer is required (ALLOCTOOLS_REQUIRE_LIBFABRIC=1)", () => {
        throw new Error(`the C peer could not be built: ${built.missing}`);
      });
    });
  } else {
    console.warn(`[alloctools] skipped: ${name}: C peer not built: ${built.missing}`);
    describe.skip(name, () => body(""));
  }
}

/** One message as the C peer received it. */
export interface CGot { length: number; tag: number; source: number; mismatch: number; guard: number }

/** A running C peer. */
export class TaggedPeer {
  readonly name: Uint8Array;
  readonly injectSize: number;
  private readonly lines: AsyncIterator<string>;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(private readonly process: ReturnType<typeof Bun.spawn<"pipe", "pipe", "pipe">>, ready: { name: string; inject: number }, lines: AsyncIterator<string>) {
    this.name = new Uint8Array(Buffer.from(ready.name, "hex"));
    this.injectSize = ready.inject;
    this.lines = lines;
  }

  static async start(binary: string, provider: string, node?: string): Promise<TaggedPeer> {
    const process = Bun.spawn([binary, provider, ...(node ? ["--node", node] : [])], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    const lines = linesOf(process.stdout)[Symbol.asyncIterator]();
    const first = await deadline(lines.next(), 15_000, "C peer start");
    if (first.done) throw new Error(`C peer exited before it was ready: ${await new Response(process.stderr).text()}`);
    const ready = JSON.parse(first.value) as { name: string; inject: number; error?: string };
    if (ready.error) throw new Error(`C peer: ${ready.error}`);
    return new TaggedPeer(process, ready, lines);
  }

  /**
   * Writes one command line now (before the caller may block this thread in a sync form); resolves
   * with its JSON answer. The peer runs commands one after the other and answers in order.
   */
  command<T>(line: string, timeoutMs = 60_000): Promise<T> {
    this.process.stdin.write(`${line}\n`);
    this.process.stdin.flush();
    const answer = this.queue.then(async () => {
      const next = await deadline(this.lines.next(), timeoutMs, `C peer: ${line.slice(0, 40)}`);
      if (next.done) throw new Error(`C peer exited during: ${line.slice(0, 80)}`);
      const reply = JSON.parse(next.value) as T & { error?: string };
      if (reply.error) throw new Error(`C peer: ${reply.error}`);
      return reply as T;
    });
    this.queue = answer.catch(() => undefined);
    return answer;
  }

  async insert(name: Uint8Array): Promise<bigint> {
    return BigInt((await this.command<{ peer: number }>(`insert ${Buffer.from(name).toString("hex")}`)).peer);
  }

  /** Closes its stdin (it closes everything and exits 0); kills it if it does not. */
  async stop(): Promise<number> {
    this.process.stdin.end();
    const code = await Promise.race([this.process.exited, Bun.sleep(5000).then(() => null)]);
    if (code !== null) return code;
    this.process.kill(9);
    return this.process.exited;
  }
}

async function* linesOf(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const chunk of stream) {
    buffered += decoder.decode(chunk, { stream: true });
    for (let i = buffered.indexOf("\n"); i >= 0; i = buffered.indexOf("\n")) {
      yield buffered.slice(0, i);
      buffered = buffered.slice(i + 1);
    }
  }
}

function deadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms); });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}
