// A UCX RMA peer in its own Bun process, driven by JSON lines on stdin like test/rma/agent.ts: it
// opens a UcxProvider, a pool and a UcxEndpoint, exposes the second huge region of a block and
// keeps its worker progressing (unless told not to), so a peer can read and write it while the
// test checks its memory.
//
//   bun test/ucx/agent.ts --transports tcp [--net-devices lo] [--allocate true|false] [--timeout 5000]
//
// First line out: { ready, name, remote, provider, virtualAddressing, exposedAddress, pid }.
import { out, serveCommands } from "../command-loop.ts";
import { MemoryPool, RemoteRegion, UcxEndpoint, UcxProvider, type MemoryRegion } from "../../lib/index.ts";
import { fillPattern, firstMismatch, firstNot, fromHex, RMA_POOL, SENTINEL, toHex } from "../rma/pattern.ts";

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? undefined : process.argv[i + 1];
}

const allocate = arg("allocate");
const provider = UcxProvider.open({
  transports: arg("transports") ?? "tcp",
  ...(arg("net-devices") ? { netDevices: arg("net-devices") } : {}),
  ...(allocate !== undefined ? { allocateBlocks: allocate === "true" } : {}),
});
const pool = new MemoryPool(provider, RMA_POOL);
const local: MemoryRegion = pool.getRegion(RMA_POOL.huge.chunkSize);
const exposed: MemoryRegion = pool.getRegion(RMA_POOL.huge.chunkSize);
const ep = new UcxEndpoint(provider, { timeoutMs: Number(arg("timeout") ?? 5000) });
ep.startProgress(0);
exposed.view.fill(SENTINEL);

const peers: number[] = [];

type Command = {
  seq: number; op: string; name?: string; peer?: number; remote?: string; offset?: number; length?: number;
  localOffset?: number; seed?: number; value?: number; form?: "promise" | "sync" | "post"; truncateBlob?: number;
};

async function transfer(c: Command): Promise<object> {
  let remote = RemoteRegion.fromBytes(fromHex(c.remote!));
  // truncateBlob forges a key blob cut short, to see that it is refused before UCX reads it.
  if (c.truncateBlob !== undefined) remote = new RemoteRegion(remote.address, 0n, remote.length, remote.keyBlob!.slice(0, c.truncateBlob));
  remote = remote.subregion(c.offset!);
  const at = local.pointer(c.localOffset!);
  const view = at.view(Math.min(c.length!, at.remaining));
  if (c.op === "write") fillPattern(view, c.seed!);
  else view.fill(0);
  const peer = peers[c.peer!]!;
  const t = performance.now();
  const form = c.form ?? "promise";
  try {
    if (form === "promise") {
      if (c.op === "write") await ep.write(at, c.length!, peer, remote);
      else await ep.read(at, c.length!, peer, remote);
    } else if (form === "sync") {
      if (c.op === "write") ep.writeSync(at, c.length!, peer, remote);
      else ep.readSync(at, c.length!, peer, remote);
    } else {
      const id = c.op === "write" ? ep.postWrite(at, c.length!, peer, remote) : ep.postRead(at, c.length!, peer, remote);
      while (!ep.completed(id)) {
        ep.poll();
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
  } catch (e) {
    const err = e as Error & { code?: string; errno?: number };
    return { error: { name: err.name, code: err.code, errno: err.errno, message: err.message } };
  }
  const ms = performance.now() - t;
  return c.op === "read" ? { ok: true, ms, mismatch: firstMismatch(view, c.seed!) } : { ok: true, ms };
}

async function handle(c: Command): Promise<object> {
  switch (c.op) {
    case "insert":
      peers.push(ep.insert(fromHex(c.name!)));
      return { peer: String(peers.length - 1) };
    case "write":
    case "read":
      return transfer(c);
    case "fill":
      fillPattern(exposed.view.subarray(c.offset!, c.offset! + c.length!), c.seed!);
      return { ok: true };
    case "clear":
      exposed.view.fill(c.value ?? SENTINEL);
      return { ok: true };
    case "check": {
      const v = exposed.view;
      const o = c.offset!;
      const n = c.length!;
      return {
        mismatch: firstMismatch(v.subarray(o, o + n), c.seed!),
        before: firstNot(v.subarray(0, o), SENTINEL),
        after: firstNot(v.subarray(o + n), SENTINEL),
      };
    }
    case "stopProgress":
      ep.stopProgress();
      return { ok: true };
    case "startProgress":
      ep.startProgress(0);
      return { ok: true };
    case "exit":
      ep.close();
      pool.releaseRegion(local);
      pool.releaseRegion(exposed);
      pool.close();
      provider.close();
      setTimeout(() => process.exit(0), 0);
      return { ok: true };
    default:
      return { error: { name: "TypeError", message: `unknown op ${c.op}` } };
  }
}

out({
  ready: true, name: toHex(ep.name), remote: toHex(exposed.remote().toBytes()), provider: provider.name,
  virtualAddressing: provider.virtualAddressing, exposedAddress: exposed.address, pid: process.pid,
});

serveCommands<Command>(handle, () => {
  ep.close();
  pool.close();
  provider.close();
});
