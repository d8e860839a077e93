// What unexpected messages (sent before their receive is posted) cost the receiving process on
// UCX: another process (message-agent.ts) sends `--small` messages of 64 B, then `--large`
// messages of 4 MiB, each batch followed by a 1-byte marker; this process waits for the marker
// (every message before it has arrived: one sender, UCX keeps the order), reads its resident
// memory (VmRSS), then receives the batch late and reads it again.
//
//   bun test/ucx/unexpected-memory.ts [--transports tcp] [--net-devices lo] [--allocate true|false] [--small 10000] [--large 100]
//
// Prints one JSON line per batch: { transports, count, length, beforeKiB (VmRSS before the batch),
// heldKiB (growth while the messages wait), perMessageBytes, afterKiB (growth once all were
// received), received (intact) }.
import { readFileSync } from "node:fs";
import { MemoryPool, UcxEndpoint, UcxProvider } from "../../lib/index.ts";
import { AgentProcess } from "../rma/peers.ts";
import { firstMismatch, toHex } from "../rma/pattern.ts";

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? fallback : process.argv[i + 1]!;
}

const MiB = 1 << 20;
const transports = arg("transports", "tcp");
const netDevices = arg("net-devices", transports === "tcp" ? "lo" : "");
const allocate = arg("allocate", "");
const agentArgs = ["--transports", transports, ...(netDevices ? ["--net-devices", netDevices] : []), ...(allocate ? ["--allocate", allocate] : []), "--timeout", "600000"];

const rssKiB = (): number => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"))![1]);
const settle = async () => {
  Bun.gc(true);
  await Bun.sleep(50);
  Bun.gc(true);
};

const provider = UcxProvider.open({ transports, ...(netDevices ? { netDevices } : {}), ...(allocate ? { allocateBlocks: allocate === "true" } : {}) });
const pool = new MemoryPool(provider, { huge: { chunkSize: 4 * MiB + 4096, initialCount: 1 } });
const ep = new UcxEndpoint(provider, { timeoutMs: 600_000 });
const agent = await AgentProcess.start(agentArgs, undefined, 20_000, `${import.meta.dir}/message-agent.ts`);
await agent.request({ op: "insert", name: toHex(ep.name) });
const fromAgent = ep.insert(new Uint8Array(Buffer.from(agent.ready.name, "hex")));
const sink = pool.getRegion(4 * MiB);

/** One batch of `count` unexpected messages of `length` bytes, received late. */
async function batch(count: number, length: number, tag: number): Promise<object> {
  await settle();
  const before = rssKiB();
  const sending = agent.request({
    op: "send", peer: 0, tag, lengths: new Array<number>(count).fill(length), seeds: new Array<number>(count).fill(tag & 0xff), form: "promise", thenTag: tag + 1,
  }, 600_000);
  await ep.recv(sink, 1, fromAgent, tag + 1); // the marker: everything before it has arrived
  for (const until = performance.now() + 100; performance.now() < until;) ep.poll();
  await settle();
  const held = rssKiB() - before;
  let intact = 0;
  for (let i = 0; i < count; i++) {
    const got = ep.recvSync(sink, length, fromAgent, tag);
    if (got.length === length && firstMismatch(sink.view.subarray(0, length), tag & 0xff) === -1) intact++;
  }
  const sent = await sending;
  await settle();
  return {
    transports, count, length, beforeKiB: before, heldKiB: held, perMessageBytes: Math.round((held * 1024) / count), afterKiB: rssKiB() - before, received: intact,
    sendError: (sent as { error?: unknown }).error,
  };
}

try {
  for (const [count, length, tag] of [[Number(arg("small", "10000")), 64, 10], [Number(arg("large", "100")), 4 * MiB, 20]] as const) {
    console.log(JSON.stringify(await batch(count, length, tag)));
  }
} finally {
  await agent.stop();
  ep.close();
  pool.releaseRegion(sink);
  pool.close();
  provider.close();
}
