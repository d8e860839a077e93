// A send to a peer that closed, in a child process (it crashed the process on shm before sends
// checked for it): `bun closed-peer-child.ts <tcp|shm> <local|remote>`. "local": the peer is an
// endpoint of this process that closed; "remote": it is an endpoint of another process that exited.
// Prints one JSON line: per size, how the send ended.
import { Endpoint, LibfabricProvider, MemoryPool, ANY_SOURCE } from "../../lib/index.ts";
import { SHM, TCP } from "./message-pair.ts";

const c = process.argv[2] === "shm" ? SHM : TCP;
const where = process.argv[3] ?? "local";
/** Inject-sized, eager, and rendezvous. */
const SIZES = [8, 5000, 100_000];

const provider = LibfabricProvider.open(c.options);
const pool = new MemoryPool(provider);
const endpoint = new Endpoint(provider, { timeoutMs: 1000, pool });
const source = pool.getRegion(100_000);

async function peerThatCloses(): Promise<bigint> {
  if (where === "local") {
    const otherProvider = LibfabricProvider.open(c.options);
    const otherPool = new MemoryPool(otherProvider);
    const other = new Endpoint(otherProvider, { pool: otherPool });
    const peer = endpoint.insert(other.name);
    other.insert(endpoint.name);
    const sink = otherPool.getRegion(64);
    const received = other.recv(sink, 64, ANY_SOURCE, 1);
    await endpoint.send(source, 8, peer, 1); // connected first: what follows is a send to a peer that was there
    await received;
    other.close();
    otherPool.close();
    otherProvider.close();
    return peer;
  }
  const child = Bun.spawn([process.execPath, "-e", `
    import { Endpoint, LibfabricProvider, MemoryPool, ANY_SOURCE } from "./lib/index.ts";
    const provider = LibfabricProvider.open(${JSON.stringify(c.options)});
    const pool = new MemoryPool(provider);
    const ep = new Endpoint(provider, { pool });
    console.log(Buffer.from(ep.name).toString("hex"));
    const region = pool.getRegion(64);
    await ep.recv(region, 64, ANY_SOURCE, 1);
    ep.close(); pool.close(); provider.close();
  `], { cwd: `${import.meta.dir}/../..`, stdout: "pipe", stderr: "inherit" });
  const reader = child.stdout.getReader();
  const line = new TextDecoder().decode((await reader.read()).value);
  const peer = endpoint.insert(new Uint8Array(Buffer.from(line.trim(), "hex")));
  await endpoint.send(source, 8, peer, 1);
  await child.exited;
  return peer;
}

const peer = await peerThatCloses();
const outcomes: Record<string, string> = {};
for (const size of SIZES) {
  try {
    await endpoint.send(source, size, peer, 2);
    outcomes[size] = "sent";
  } catch (e) {
    const error = e as Error & { code?: string };
    outcomes[size] = `${error.name} ${error.code ?? ""}`.trim();
  }
}
const pinnedAfterSends = endpoint.inTransportCount;
endpoint.close();
pool.releaseRegion(source);
pool.close();
provider.close();
console.log(JSON.stringify({ outcomes, pinnedAfterSends }));
