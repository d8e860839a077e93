// Starts and drives test/messages/agent.ts processes (through test/rma/peers.ts's AgentProcess:
// deadlines on every wait, optionally inside a network namespace), with the agent's replies typed.
import { AgentProcess } from "../rma/peers.ts";

const AGENT = `${import.meta.dir}/agent.ts`;

/** The agent's first line. */
export interface MessageReady {
  ready: true;
  /** Endpoint name, hex. */
  name: string;
  /** RemoteRegion bytes (hex) of the exposed words: counter at 0, lock at 64, record at 128. */
  words: string;
  provider: string;
  injectSize: number;
  pid: number;
}

/** One message as the agent received it. */
export interface Got { source: string; tag: number; length: number; mismatch: number; guard: number; error?: string }

export type MessageReply = {
  ok?: boolean; peer?: string; got?: Got[]; values?: number[]; ms?: number; spins?: number;
  counter?: string; lock?: string; record?: string; errors?: string[];
  error?: { name: string; code?: string; message: string };
};

/** A running agent. */
export class MessageAgent {
  private constructor(private readonly process: AgentProcess) {}

  static async start(args: string[], netns?: string): Promise<MessageAgent> {
    return new MessageAgent(await AgentProcess.start(args, netns, 20_000, AGENT));
  }

  get ready(): MessageReady {
    return this.process.ready as unknown as MessageReady;
  }

  async request(command: Record<string, unknown>, timeoutMs = 60_000): Promise<MessageReply> {
    const reply = (await this.process.request(command, timeoutMs)) as unknown as MessageReply;
    if (reply.error !== undefined && command.op !== "recv") throw new Error(`agent ${String(command.op)}: ${reply.error.name} ${reply.error.code ?? ""} ${reply.error.message}`);
    return reply;
  }

  /** Inserts `other` here; returns its peer id (as a string). */
  async insert(other: MessageAgent): Promise<string> {
    return (await this.request({ op: "insert", name: other.ready.name })).peer!;
  }

  stop(): Promise<number> {
    return this.process.stop();
  }
}
