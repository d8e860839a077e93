// What unexpected messages cost the receiving process: a sender (this process) sends `count`
// messages of `size` bytes to a receiver (a child process, this file with --receiver) that keeps
// progressing but has no receive posted; the receiver's RSS is read before, while they wait, and
// after it has received them all with receives posted late, one after the other into one region.
//
//   bun test/messages/unexpected-memory.ts --provider tcp [--count 10000 --size 64] [--count 100 --size 4194304]
//
// With no --count/--size it measures the two cases of docs/messaging.md: 10^4 × 64 B and 100 × 4 MiB.
// Prints one JSON line per case (kB and ms), then a table.
import { readFileSync } from "node:fs";
import { ANY_SOURCE, Endpoint, LibfabricProvider, MemoryPool, type LibfabricProviderOptions } from "../../lib/index.ts";
import { fillPattern, firstMismatch } from "../rma/pattern.ts";

function args(name: string): string[] {
  const values: string[] = [];
  for (let i = 0; i < process.argv.length - 1; i++) if (process.argv[i] === `--${name}`) values.push(process.argv[i + 1]!);
  return values;
}

const providerName = args("provider")[0] ?? "tcp";
const options: LibfabricProviderOptions = providerName === "shm" ? { provider: "shm" } : { provider: providerName, node: "127.0.0.1" };

/** The pattern every message carries (its first 4 KiB are checked). */
const SEED = 7;

/** VmRSS of this process, kB. */
function rssKiB(): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"))![1]);
}

/** The receiver: answers "name", "rss", and "receive <count> <size>" (late, sequential, checked). */
async function receiver(): Promise<void> {
  const provider = LibfabricProvider.open(options);
  const pool = new MemoryPool(provider, { small: { initialCount: 4 }, huge: { chunkSize: (4 << 20) + 4096, initialCount: 1 } });
  const endpoint = new Endpoint(provider, { timeoutMs: 60_000, pool });
  endpoint.startProgress(1); // progressing, as a server would: the messages arrive and wait
  const sink = pool.getRegion((4 << 20) + 4096);
  const reply = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);
  reply({ name: Buffer.from(endpoint.name).toString("hex") });
  for await (const line of console) {
    const [command, a, b] = line.trim().split(" ");
    if (command === "rss") {
      Bun.gc(true);
      reply({ rss: rssKiB() });
    } else if (command === "receive") {
      const [count, size] = [Number(a), Number(b)];
      const started = performance.now();
      let wrong = 0;
      for (let i = 0; i < count; i++) {
        const got = await endpoint.recv(sink, size, ANY_SOURCE, 9);
        if (got.length !== size || firstMismatch(sink.view.subarray(0, Math.min(size, 4096)), SEED) !== -1) wrong++;
      }
      const ms = performance.now() - started;
      Bun.gc(true);
      reply({ rss: rssKiB(), ms, wrong });
    } else if (command === "exit") {
      break;
    }
  }
  endpoint.close();
  pool.releaseRegion(sink);
  pool.close();
  provider.close();
  process.exit(0);
}

/**
 * One case, from the sender's side: RSS of the receiver before, while `count` messages wait, after
 * they were received; and how many sends were still pending at the sender while they waited.
 */
async function measure(count: number, size: number): Promise<Record<string, number | string>> {
  const child = Bun.spawn([process.execPath, import.meta.path, "--receiver", "--provider", providerName], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
  const lines = (async function* () {
    let buffered = "";
    for await (const chunk of child.stdout) {
      buffered += new TextDecoder().decode(chunk);
      for (let i = buffered.indexOf("\n"); i >= 0; i = buffered.indexOf("\n")) { yield buffered.slice(0, i); buffered = buffered.slice(i + 1); }
    }
  })();
  const ask = async (line: string | null) => {
    if (line !== null) { child.stdin.write(`${line}\n`); child.stdin.flush(); }
    return JSON.parse((await lines.next()).value!) as { name?: string; rss?: number; ms?: number; wrong?: number };
  };
  const provider = LibfabricProvider.open(options);
  const pool = new MemoryPool(provider, { small: { initialCount: 4 }, huge: { chunkSize: (4 << 20) + 4096, initialCount: 1 } });
  const endpoint = new Endpoint(provider, { timeoutMs: 120_000, pool, maxPending: 1 << 16 });
  try {
    const peer = endpoint.insert(new Uint8Array(Buffer.from((await ask(null)).name!, "hex")));
    // Warm up: one message received, so connection and first buffers are in the baseline.
    const warm = pool.getRegion(size);
    fillPattern(warm.view.subarray(0, Math.min(size, 4096)), SEED);
    const warmReceived = ask("receive 1 " + size);
    await endpoint.send(warm, size, peer, 9);
    await warmReceived;
    const before = (await ask("rss")).rss!;
    // Every message is the same pattern, sent from one region (a send only reads it).
    const source = warm;
    const ids: number[] = [];
    for (let i = 0; i < count; i++) {
      ids.push(endpoint.postSend(source, size, peer, 9));
      if (i % 64 === 63) { endpoint.poll(); await Bun.sleep(0); }
    }
    // Let them arrive (eager ones complete here; rendezvous ones wait for their receives).
    const settle = performance.now() + 2000;
    while (performance.now() < settle) { endpoint.poll(); await Bun.sleep(1); }
    const waiting = (await ask("rss")).rss!;
    // Sends still pending at the sender now: pushed back (the receiver's queue full) or rendezvous.
    const senderPending = endpoint.pendingCount;
    const received = ask(`receive ${count} ${size}`);
    const done = new Set<number>();
    while (done.size < ids.length) {
      endpoint.poll();
      for (const id of ids) if (!done.has(id) && endpoint.completed(id)) done.add(id);
      await Bun.sleep(0);
    }
    const after = await received;
    return { provider: provider.name, count, size, beforeKiB: before, waitingKiB: waiting, heldKiB: waiting - before, perMessageBytes: Math.round(((waiting - before) * 1024) / count), senderPending, afterKiB: after.rss!, receiveMs: Math.round(after.ms!), wrong: after.wrong! };
  } finally {
    child.stdin.write("exit\n");
    child.stdin.flush();
    await child.exited;
    endpoint.close();
    pool.close();
    provider.close();
  }
}

if (process.argv.includes("--receiver")) {
  await receiver();
} else {
  const counts = args("count").map(Number);
  const sizes = args("size").map(Number);
  const cases = counts.length > 0 ? counts.map((count, i) => [count, sizes[i] ?? 64] as const) : ([[10_000, 64], [100, 4 << 20]] as const);
  const rows = [];
  for (const [count, size] of cases) {
    const row = await measure(count, size);
    console.log(JSON.stringify(row));
    rows.push(row);
  }
  console.table(rows);
}
