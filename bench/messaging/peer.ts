// One side of the library's messaging pair for the messaging bench: a process with a provider, a
// pool, one 4 MiB region and an endpoint, over libfabric or UCX, driven by JSON lines on stdin and
// answering each with one JSON line on stdout. The suite starts two, the responder on CPU 1 and
// the initiator on CPU 0, as it starts the C pairs.
//
//   bun bench/messaging/peer.ts libfabric <provider> [--node N]
//   bun bench/messaging/peer.ts ucx <UCX_TLS> [--net-devices D]
//
// Prints {"name": "<hex>"} once open, then takes:
//   {"op":"connect","name":hex}  (initiator) inserts the responder, sends it this endpoint's name (tag HELLO)
//   {"op":"accept"}              (responder) receives the initiator's name from any source and inserts it
//   {"op":"lat","form":"sync"|"promise","size","iterations","warmup","initiator"}
//   {"op":"window","size","window","iterations","warmup","initiator"}
//   {"op":"cells","size","iterations","initiator"}  heap cells per sendSync+recvSync pair (the responder answers twice as many)
// and answers {"ok": op, ...result}; {"error": "..."} when a command failed. Exits when stdin closes.
import {
  Endpoint, LibfabricProvider, MemoryPool, UcxEndpoint, UcxProvider, type AnyEndpoint, type MemoryRegion, type RegionProvider,
} from "../../lib/index.ts";
import { ANY_SOURCE } from "../../lib/index.ts";
import { cellsPerPair, HELLO_TAG, latency, pingPongSync, windowed, type LoopSide } from "./loops.ts";

const REGION_BYTES = 4 << 20;

interface Command {
  op: string;
  name?: string;
  form?: "sync" | "promise";
  size?: number;
  window?: number;
  iterations?: number;
  warmup?: number;
  initiator?: boolean;
}

/** Provider and endpoint for `argv`: libfabric <provider> [--node N], or ucx <UCX_TLS> [--net-devices D]. */
function open(argv: string[]): { provider: RegionProvider & { close(): void }; endpoint: AnyEndpoint } {
  const option = (name: string) => { const i = argv.indexOf(`--${name}`); return i < 0 ? undefined : argv[i + 1]; };
  const [transport, what] = argv;
  if (transport === "libfabric") {
    const node = option("node");
    const provider = LibfabricProvider.open({ provider: what!, ...(node ? { node } : {}) });
    return { provider, endpoint: new Endpoint(provider, { timeoutMs: 60_000 }) };
  }
  if (transport === "ucx") {
    const netDevices = option("net-devices");
    const provider = UcxProvider.open({ transports: what!, ...(netDevices ? { netDevices } : {}) });
    return { provider, endpoint: new UcxEndpoint(provider, { timeoutMs: 60_000 }) };
  }
  throw new Error(`unknown transport ${String(transport)} (libfabric or ucx)`);
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");
const say = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);

async function main(argv: string[]): Promise<void> {
  const { provider, endpoint } = open(argv);
  const pool = new MemoryPool(provider, { small: { initialCount: 0 }, medium: { initialCount: 0 }, large: { initialCount: 0 }, huge: { chunkSize: REGION_BYTES, initialCount: 1 } });
  const region: MemoryRegion = pool.getRegion(REGION_BYTES);
  let side: LoopSide | null = null;
  say({ name: hex(endpoint.name) });

  const run = async (command: Command): Promise<Record<string, unknown>> => {
    const initiator = command.initiator === true;
    const connected = () => { if (side === null) throw new Error(`${command.op} before connect/accept`); return side; };
    // A full collection first: a concurrent one would share this process's CPU with the loop.
    Bun.gc(true);
    switch (command.op) {
      case "connect": {
        const peer = endpoint.insert(new Uint8Array(Buffer.from(command.name!, "hex")));
        region.view.set(endpoint.name);
        endpoint.sendSync(region, endpoint.name.length, peer, HELLO_TAG);
        side = { endpoint, peer, region };
        return {};
      }
      case "accept": {
        const hello = await endpoint.recv(region, 4096, ANY_SOURCE, HELLO_TAG);
        const peer = endpoint.insert(region.view.slice(0, hello.length));
        side = { endpoint, peer, region };
        return {};
      }
      case "lat":
        return { ...(await latency(connected(), command.form!, command.size!, command.iterations!, command.warmup!, initiator)) };
      case "window":
        return { ...windowed(connected(), command.size!, command.window!, command.iterations!, command.warmup!, initiator) };
      case "cells":
        if (initiator) return cellsPerPair(connected(), command.size!, command.iterations!);
        for (let i = 0; i < 2 * command.iterations!; i++) pingPongSync(connected(), command.size!, false);
        return {};
      default:
        throw new Error(`unknown command ${command.op}`);
    }
  };

  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of Bun.stdin.stream()) {
    text += decoder.decode(chunk, { stream: true });
    for (let newline = text.indexOf("\n"); newline >= 0; newline = text.indexOf("\n")) {
      const line = text.slice(0, newline).trim();
      text = text.slice(newline + 1);
      if (line === "") continue;
      const command = JSON.parse(line) as Command;
      try {
        say({ ok: command.op, ...(await run(command)) });
      } catch (e) {
        say({ error: `${command.op}: ${(e as Error).message}` });
      }
    }
  }
  endpoint.close();
  pool.releaseRegion(region);
  pool.close();
  provider.close();
}

await main(process.argv.slice(2));
