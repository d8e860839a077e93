// A target process for the stall test: an Endpoint with startProgress() that has completed an
// operation of its own (a write to a second endpoint of this process), then only exposes memory.
// Prints { ready, name, address, key, length } (name in hex) and serves until stdin closes.
//
//   bun test/rma/stall-target.ts --provider tcp [--node 127.0.0.1]
import { Endpoint, LibfabricProvider, MemoryPool, RemoteRegion } from "../../lib/index.ts";
import { RMA_POOL, toHex } from "./pattern.ts";

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? undefined : process.argv[i + 1];
}

const node = arg("node");
const open = () => LibfabricProvider.open({ provider: arg("provider") ?? "tcp", ...(node ? { node } : {}) });
const provider = open();
const pool = new MemoryPool(provider, RMA_POOL);
const exposed = pool.getRegion(64 * 1024);
const endpoint = new Endpoint(provider, { timeoutMs: 5000 });
endpoint.startProgress(1);

// An operation of the target's own, completed before any peer shows up.
const otherProvider = open();
const otherPool = new MemoryPool(otherProvider, RMA_POOL);
const otherRegion = otherPool.getRegion(4096);
const other = new Endpoint(otherProvider, { timeoutMs: 5000 });
const peer = endpoint.insert(other.name);
await endpoint.write(exposed, 64, peer, RemoteRegion.fromBytes(otherRegion.remote().toBytes()));
other.close();
otherPool.close();
otherProvider.close();

const remote = exposed.remote();
process.stdout.write(`${JSON.stringify({
  ready: true, name: toHex(endpoint.name), address: String(remote.address), key: String(remote.key), length: remote.length,
  completed: endpoint.stats().completed,
})}\n`);

process.stdin.on("data", () => {}).on("end", () => {
  endpoint.close();
  pool.close();
  provider.close();
  process.exit(0);
});
