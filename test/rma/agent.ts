// An RMA peer in its own Bun process, driven by JSON lines on stdin; answers one JSON line per
// command on stdout. It opens a provider, a pool and an Endpoint, exposes a pooled sub-region (the
// second region of the huge class's block) and keeps progressing in the background, so a peer
// can read and write it while the test checks its memory through the region's zero-copy view.
//
//   bun test/rma/agent.ts --provider tcp [--node 10.0.0.1] [--mr-mode 0] [--timeout 5000]
//
// First line out: { ready, name, remote, provider, virtualAddressing, pid }, name and remote in hex.
import { out, serveCommands } from "../command-loop.ts";
import { Endpoint, LibfabricProvider, MemoryPool, RemoteRegion, type MemoryRegion } from "../../lib/index.ts";
import { fillPattern, firstMismatch, firstNot, fromHex, RMA_POOL, SENTINEL, toHex } from "./pattern.ts";

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? undefined : process.argv[i + 1];
}

const mrMode = arg("mr-mode");
const provider = LibfabricProvider.open({
  provider: arg("provider") ?? "tcp",
  ...(arg("node") ? { node: arg("node") } : {}),
  ...(mrMode !== undefined ? { mrMode: Number(mrMode) } : {}),
});
const pool = new MemoryPool(provider, RMA_POOL);
const local: MemoryRegion = pool.getRegion(RMA_POOL.huge.chunkSize); // first of the block: source/sink
const exposed: MemoryRegion = pool.getRegion(RMA_POOL.huge.chunkSize); // second: what peers touch
const ep = new Endpoint(provider, { timeoutMs: Number(arg("timeout") ?? 5000) });
ep.startProgress(Number(arg("interval") ?? 1)); // the library default: a light 1 ms poll
exposed.view.fill(SENTINEL);

const peers = new Map<string, bigint>();

type Command = {
  seq: number; op: string; name?: string; peer?: string; remote?: string; offset?: number; length?: number;
  localOffset?: number; seed?: number; value?: number; keyDelta?: number;
};

async function handle(c: Command): Promise<object> {
  switch (c.op) {
    case "insert": {
      const peer = ep.insert(fromHex(c.name!));
      peers.set(String(peer), peer);
      return { peer: String(peer) };
    }
    case "write":
    case "read": {
      let remote = RemoteRegion.fromBytes(fromHex(c.remote!));
      // keyDelta forges a wrong key, to see what the provider does with it.
      if (c.keyDelta) remote = new RemoteRegion(remote.address, remote.key + BigInt(c.keyDelta), remote.length);
      // From offset to the region's end: the Endpoint itself must refuse a length that does not fit.
      remote = remote.subregion(c.offset!);
      const at = local.pointer(c.localOffset!);
      const view = at.view(Math.min(c.length!, at.remaining));
      if (c.op === "write") fillPattern(view, c.seed!);
      else view.fill(0);
      const t = performance.now();
      try {
        if (c.op === "write") await ep.write(at, c.length!, peers.get(c.peer!)!, remote);
        else await ep.read(at, c.length!, peers.get(c.peer!)!, remote);
      } catch (e) {
        const err = e as Error & { code?: string; errno?: number };
        return { error: { name: err.name, code: err.code, errno: err.errno, message: err.message } };
      }
      const ms = performance.now() - t;
      return c.op === "read" ? { ok: true, ms, mismatch: firstMismatch(view, c.seed!) } : { ok: true, ms };
    }
    case "fill":
      fillPattern(exposed.view.subarray(c.offset!, c.offset! + c.length!), c.seed!);
      return { ok: true };
    case "clear":
      exposed.view.fill(c.value ?? SENTINEL);
      return { ok: true };
    case "check": {
      // The written range holds the pattern; the bytes around it still hold the sentinel.
      const v = exposed.view;
      const o = c.offset!;
      const n = c.length!;
      return {
        mismatch: firstMismatch(v.subarray(o, o + n), c.seed!),
        before: firstNot(v.subarray(0, o), SENTINEL),
        after: firstNot(v.subarray(o + n), SENTINEL),
      };
    }
    case "exit":
      ep.close();
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
