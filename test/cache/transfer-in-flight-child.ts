// Child of transfer-in-flight.test.ts: RMA operations through an Endpoint's registration cache,
// on plain buffers the caller transfers away while the operation is in flight. Then the old memory
// is given a chance to be reused (Bun.gc, new buffers of the same size), and the operation is
// driven to its end. Prints one JSON line: how each operation ended, whether any buffer the caller
// did not ask for received the bytes read (a stray write), and whether a write reported success
// with other bytes at its target.
//
// argv: provider (tcp | shm), operation (read | write), how (transfer: transfer(), dropped, GC;
// resize: transfer(2x), which frees the old memory at once), iterations.
import { ptr } from "bun:ffi";
import { AllocToolsError, Endpoint, LibfabricProvider, MemoryPool, RegistrationCache, type LibfabricProviderOptions } from "../../lib/index.ts";
import { fillPattern, firstMismatch } from "../rma/pattern.ts";

const [providerName = "tcp", operation = "read", how = "transfer", iterationsArg = "50"] = process.argv.slice(2);
const iterations = Number(iterationsArg);
const SIZE = 65_536;
const SEED = 29;
if (!["tcp", "shm"].includes(providerName) || !["read", "write"].includes(operation) || !["transfer", "resize"].includes(how)) {
  throw new Error(`usage: transfer-in-flight-child.ts tcp|shm read|write transfer|resize iterations; got ${process.argv.slice(2).join(" ")}`);
}
const options: LibfabricProviderOptions = providerName === "tcp" ? { provider: "tcp", node: "127.0.0.1" } : { provider: "shm" };

const local = LibfabricProvider.open(options);
const remote = LibfabricProvider.open(options);
const cache = new RegistrationCache(local);
const pool = new MemoryPool(remote, { small: { initialCount: 0 }, medium: { initialCount: 0 }, large: { initialCount: 1 }, huge: { initialCount: 0 } });
const near = new Endpoint(local, { cache, timeoutMs: 5000 });
const far = new Endpoint(remote, { timeoutMs: 5000 });
const toFar = near.insert(far.name);
far.insert(near.name);
const target = pool.getRegion(SIZE);
fillPattern(target.view.subarray(0, SIZE), SEED);
const targetRemote = target.remote();

const outcomes: Record<string, number> = {};
let strayWrites = 0;
/** Writes that reported success although the target did not get the bytes written. */
let silentlyWrong = 0;
let reused = 0;

/** Buffers of SIZE bytes made now; those that start at `address` are the old memory reused. */
function buffersAt(address: number): ArrayBuffer[] {
  const found: ArrayBuffer[] = [];
  const made: ArrayBuffer[] = [];
  for (let i = 0; i < 64; i++) {
    const b = new ArrayBuffer(SIZE);
    made.push(b);
    if (ptr(b) === address) found.push(b);
  }
  return found;
}

for (let i = 0; i < iterations; i++) {
  let buffer: ArrayBuffer | null = new ArrayBuffer(SIZE);
  const view = new Uint8Array(buffer);
  if (operation === "write") fillPattern(view, SEED + 1);
  const address = ptr(buffer);
  const id = operation === "read" ? near.postRead(view, SIZE, toFar, targetRemote) : near.postWrite(view, SIZE, toFar, targetRemote);
  // The caller moves the memory away while the transport holds it.
  buffer.transfer(how === "resize" ? SIZE * 2 : undefined); // the new buffer is dropped at once
  buffer = null;
  Bun.gc(true);
  const strangers = buffersAt(address);
  if (strangers.length > 0) reused++;
  let outcome = "ok";
  try {
    while (!near.completed(id)) {
      near.poll();
      far.poll();
    }
  } catch (e) {
    outcome = e instanceof AllocToolsError ? e.code : (e as Error).name;
  }
  outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
  if (operation === "read") {
    for (const stranger of strangers) if (firstMismatch(new Uint8Array(stranger), SEED) === -1) strayWrites++;
  }
  if (operation === "write") {
    if (outcome === "ok" && firstMismatch(target.view.subarray(0, SIZE), SEED + 1) !== -1) silentlyWrong++;
    fillPattern(target.view.subarray(0, SIZE), SEED);
  }
}

near.close();
far.close();
cache.close();
pool.releaseRegion(target);
pool.close();
local.close();
remote.close();
console.log(JSON.stringify({ provider: providerName, operation, how, iterations, outcomes, reused, strayWrites, silentlyWrong }));
