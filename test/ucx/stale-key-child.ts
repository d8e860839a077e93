// A write through the key of a region whose pool closed, while this process (the target) lives:
// over tcp UCX emulates the put with an active message, and the target's own UCX stores to the
// address it is given. Prints whether the range stayed mapped and how the write ended.
import { readFileSync } from "node:fs";
import { MemoryPool, UcxEndpoint, UcxProvider } from "../../lib/index.ts";

const provider = UcxProvider.open({ transports: process.argv[2] ?? "tcp", netDevices: "lo", allocateBlocks: false });
const local = new MemoryPool(provider);
const source = local.getRegion(4096);
const pool = new MemoryPool(provider);
const region = pool.getRegion(4096);
const remote = region.remote();
const endpoint = new UcxEndpoint(provider, { timeoutMs: 2000 });
const peer = endpoint.insert(endpoint.name);
pool.releaseRegion(region);
pool.close();
const mapped = readFileSync("/proc/self/maps", "utf8").split("\n").some((line) => {
  if (line === "") return false;
  const [start, end] = line.split(" ")[0]!.split("-").map((hex) => BigInt(`0x${hex}`));
  return start! <= remote.address && remote.address < end!;
});
let outcome = "wrote";
try {
  endpoint.writeSync(source, 64, peer, remote);
} catch (e) {
  outcome = (e as Error).name;
}
endpoint.close();
local.releaseRegion(source);
local.close();
provider.close();
console.log(JSON.stringify({ mapped, outcome }));
