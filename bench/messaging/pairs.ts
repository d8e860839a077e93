// The process pairs the messaging bench times, each a responder on CPU 1 and an initiator on CPU 0
// (bench/cpu.ts): the library's (two bench/messaging/peer.ts processes, kept for every round so
// that their JIT stays warm) and the C reference's (bench/c/tagged-pair.c, a fresh pair per round of tests).
import { onCpu } from "../cpu.ts";
import { JsonLinesChild } from "./child-process.ts";

const PEER = new URL("./peer.ts", import.meta.url).pathname;

/** Two bench/messaging/peer.ts processes connected to each other. */
export class LibraryPair {
  private constructor(private readonly responder: JsonLinesChild, private readonly initiator: JsonLinesChild) {}

  /** Starts and connects a pair; `args` are peer.ts's (e.g. ["libfabric", "tcp", "--node", "127.0.0.1"]). */
  static async start(args: string[], env?: Record<string, string>): Promise<LibraryPair> {
    const responder = JsonLinesChild.start([...onCpu(1), process.execPath, PEER, ...args], "the library's responder", env);
    const initiator = JsonLinesChild.start([...onCpu(0), process.execPath, PEER, ...args], "the library's initiator", env);
    const pair = new LibraryPair(responder, initiator);
    try {
      const { name } = await responder.next<{ name: string }>(30_000, "its name");
      await initiator.next<{ name: string }>(30_000, "its name");
      responder.send({ op: "accept" });
      await initiator.ask({ op: "connect", name }, 30_000, "connect");
      await responder.next(30_000, "accept");
    } catch (e) {
      await pair.stop();
      throw e;
    }
    return pair;
  }

  /** Runs `command` on both sides (the responder's part first); the initiator's answer. */
  async run<T>(command: Record<string, unknown>, timeoutMs = 300_000): Promise<T> {
    this.responder.send({ ...command, initiator: false });
    const answer = await this.initiator.ask<T>({ ...command, initiator: true }, timeoutMs, String(command.op));
    await this.responder.next(timeoutMs, String(command.op));
    return answer;
  }

  async stop(): Promise<void> {
    await Promise.all([this.initiator.stop(), this.responder.stop()]);
  }
}

/** What bench/c/tagged-pair.c's initiator prints for each test. */
export interface CPairReply {
  test: "lat" | "window";
  bytes: number;
  medianNs?: number;
  meanNs?: number;
  p99Ns?: number;
  seconds?: number;
  mbPerSec?: number;
  messagesPerSec?: number;
}

/**
 * Runs a C pair through `tests` (tagged-pair.c's groups: lat S I W, window S N I W), all with one
 * pair of processes: `binary responder|initiator <provider> <options> <tests>`; the initiator's
 * replies, one per test.
 */
export async function runCPair(binary: string, provider: string, options: string[], tests: string[][], timeoutMs = 300_000): Promise<CPairReply[]> {
  const argv = (role: string, extra: string[]) => [binary, role, provider, ...options, ...extra, ...tests.flat()];
  const responder = JsonLinesChild.start([...onCpu(1), ...argv("responder", [])], `C responder (${provider})`);
  try {
    const { name } = await responder.next<{ name: string }>(30_000, "its name");
    const initiator = JsonLinesChild.start([...onCpu(0), ...argv("initiator", ["--name", name])], `C initiator (${provider})`);
    try {
      const replies: CPairReply[] = [];
      for (const test of tests) replies.push(await initiator.next<CPairReply>(timeoutMs, test.join(" ")));
      await responder.next(30_000, "its end");
      return replies;
    } finally {
      await initiator.exited(5000);
    }
  } finally {
    await responder.exited(5000);
  }
}
