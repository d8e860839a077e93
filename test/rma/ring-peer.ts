// One rank of a ring of Bun processes (test/rma/ring.test.ts): every rank is initiator and target,
// writing stamped messages into the next rank's pooled region while the previous rank writes into
// its own. Speaks the agent protocol of peers.ts (first line { ready, name, remote }, then one JSON
// reply per command, matched by seq) and keeps progressing with startProgress() throughout.
//
//   bun test/rma/ring-peer.ts --provider tcp --node 127.0.0.1 [--interval 1] [--timeout 2000]
import { out, serveCommands } from "../command-loop.ts";
import { Endpoint, LibfabricProvider, MemoryPool, RemoteRegion, type PeerAddress } from "../../lib/index.ts";
import { fillPattern, firstMismatch, fromHex, toHex } from "./pattern.ts";

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? undefined : process.argv[i + 1];
}

/** Bytes of one stamped message; message i lands at offset i * MESSAGE_BYTES of the inbox. */
const MESSAGE_BYTES = 64;
/** Messages per form (promise, then sync), so the inbox holds twice this many. */
const MAX_MESSAGES = 32;

const provider = LibfabricProvider.open({ provider: arg("provider") ?? "tcp", ...(arg("node") ? { node: arg("node") } : {}) });
const pool = new MemoryPool(provider, { small: { chunkSize: 2 * MAX_MESSAGES * MESSAGE_BYTES, initialCount: 3 } });
const outbox = pool.getRegion(2 * MAX_MESSAGES * MESSAGE_BYTES);
const inbox = pool.getRegion(2 * MAX_MESSAGES * MESSAGE_BYTES);
inbox.view.fill(0);
const endpoint = new Endpoint(provider, { timeoutMs: Number(arg("timeout") ?? 2000) });
endpoint.startProgress(Number(arg("interval") ?? 1));

/** The stamp of message `index` from `rank`: a pattern seed no other (rank, message) shares. */
const seedOf = (rank: number, index: number) => rank * 1000 + index;

type Command = { seq: number; op: string; rank?: number; names?: string[]; remotes?: string[]; messages?: number; insertSelf?: boolean };

/** Inserts every rank (its own name too when asked), then writes and reads back `messages` per form; stops at the first failure. */
async function ring(c: Command): Promise<object> {
  const rank = c.rank!;
  const size = c.names!.length;
  const next = (rank + 1) % size;
  const peers: (PeerAddress | undefined)[] = c.names!.map((name, r) => (r === rank && !c.insertSelf ? undefined : endpoint.insert(fromHex(name))));
  const nextPeer = peers[next]!;
  const remote = RemoteRegion.fromBytes(fromHex(c.remotes![next]!));
  const failures: string[] = [];
  for (let index = 0; index < 2 * c.messages!; index++) {
    const sync = index >= c.messages!;
    const offset = index * MESSAGE_BYTES;
    const message = outbox.pointer(offset);
    const readBack = outbox.pointer(offset).view(MESSAGE_BYTES);
    fillPattern(readBack, seedOf(rank, index));
    try {
      if (sync) endpoint.writeSync(message, MESSAGE_BYTES, nextPeer, remote.subregion(offset));
      else await endpoint.write(message, MESSAGE_BYTES, nextPeer, remote.subregion(offset));
      readBack.fill(0);
      if (sync) endpoint.readSync(message, MESSAGE_BYTES, nextPeer, remote.subregion(offset));
      else await endpoint.read(message, MESSAGE_BYTES, nextPeer, remote.subregion(offset));
      if (firstMismatch(readBack, seedOf(rank, index)) >= 0) failures.push(`message ${index}: read back differs`);
    } catch (e) {
      failures.push(`message ${index} (${sync ? "sync" : "promise"}): ${(e as Error).name}: ${(e as Error).message}`);
      break; // one lost write is the finding; the rest would each wait out the timeout
    }
  }
  return { ok: failures.length === 0, failures };
}

/** The inbox holds every message of the previous rank. */
function check(c: Command): object {
  const size = c.names!.length;
  const previous = (c.rank! + size - 1) % size;
  const wrong: number[] = [];
  for (let index = 0; index < 2 * c.messages!; index++) {
    const view = inbox.view.subarray(index * MESSAGE_BYTES, (index + 1) * MESSAGE_BYTES);
    if (firstMismatch(view, seedOf(previous, index)) >= 0) wrong.push(index);
  }
  return { ok: wrong.length === 0, wrong };
}

function close(): void {
  endpoint.close();
  pool.close();
  provider.close();
}

out({ ready: true, name: toHex(endpoint.name), remote: toHex(inbox.remote().toBytes()), pid: process.pid });

serveCommands<Command>(async (c) => {
  if (c.op === "ring") return await ring(c);
  if (c.op === "check") return check(c);
  if (c.op === "exit") {
    close();
    setTimeout(() => process.exit(0), 0);
    return { ok: true };
  }
  return { error: { name: "TypeError", message: `unknown op ${c.op}` } };
}, close);
