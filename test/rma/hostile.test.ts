// Hostile and careless callers of Endpoint (issue 10, items 2 and 3), each in a child process so
// that a crash is a failed test, not a dead runner:
// - closing either endpoint of a pair while a write or read is in flight, on shm and tcp;
// - forged local memory: a pointer at offset NaN or a negative offset, a forged region object, a
//   Proxy of a region; none may crash or touch the neighbouring region.
import { expect, test } from "bun:test";
import { describeFabric, runBun } from "../helpers.ts";
import { AgentProcess } from "./peers.ts";

const PROVIDERS = [
  { label: "shm", options: `{ provider: "shm" }` },
  { label: "tcp", options: `{ provider: "tcp", node: "127.0.0.1" }` },
] as const;

/** A pair of endpoints in one process, each on its own domain, with 4 MiB regions. */
const PAIR = (options: string) => `
import { Endpoint, LibfabricProvider, MemoryPool, RemoteRegion } from "./lib/index.ts";
const shape = { huge: { chunkSize: 4 << 20, initialCount: 2 } };
const providerA = LibfabricProvider.open(${options}), providerB = LibfabricProvider.open(${options});
const poolA = new MemoryPool(providerA, shape), poolB = new MemoryPool(providerB, shape);
const regionA = poolA.getRegion(4 << 20), regionB = poolB.getRegion(4 << 20);
const a = new Endpoint(providerA, { timeoutMs: 3000, spinMicroseconds: 0 });
const b = new Endpoint(providerB, { timeoutMs: 3000, spinMicroseconds: 0 });
const peer = a.insert(b.name);
b.insert(a.name);
a.writeSync(regionA, 1, peer, regionB.remote()); // connected
`;

for (const p of PROVIDERS) {
  describeFabric(`closing an endpoint with operations in flight [${p.label}]`, () => {
    for (const side of ["initiator", "target"] as const) {
      for (const kind of ["write", "read"] as const) {
        test(`the ${side} closes while a 4 MiB ${kind} is in flight: no crash, the operation ends, nothing stays pinned`, () => {
          const closing = side === "initiator" ? "a" : "b";
          const other = side === "initiator" ? "b" : "a";
          const r = runBun(`${PAIR(p.options)}
const outcomes = [];
const ops = [];
for (let i = 0; i < 4; i++) ops.push(a.${kind}(regionA, 4 << 20, peer, regionB.remote()).then(() => "done", (e) => e.code ?? e.name));
a.progress(); b.progress(); // the transfers are under way
${closing}.close();
// The other side goes on progressing: it must not touch what the closed side freed.
for (let i = 0; i < 50; i++) { try { ${other}.progress(); } catch {} await Bun.sleep(1); }
outcomes.push(...(await Promise.all(ops)));
// Towards a closed endpoint of this process, operations are refused, not sent into freed memory.
if (!a.closed) {
  try { a.${kind}(regionA, 64, peer, regionB.remote()); outcomes.push("accepted"); } catch (e) { outcomes.push("refused " + e.code); }
}
a.close(); b.close();
const pinned = regionA.inFlight;
poolA.close(); poolB.close(); providerA.close(); providerB.close();
console.log(JSON.stringify({ outcomes, pinned }));
`);
          expect(r.stderr).not.toContain("Segmentation fault");
          expect(r.exitCode).toBe(0);
          const result = JSON.parse(r.stdout.trim().split("\n").pop()!) as { outcomes: string[]; pinned: number };
          expect(result.pinned).toBe(0);
          // Each operation ended: completed, failed with its error, or ENDPOINT_CLOSED; none hung.
          expect(result.outcomes.slice(0, 4).every((o) => ["done", "ENDPOINT_CLOSED", "ECANCELED"].includes(o))).toBe(true);
          if (side === "target") expect(result.outcomes[4]).toBe("refused ENDPOINT_CLOSED");
        }, 30_000);
      }
    }
  });

  describeFabric(`forged local memory is refused before anything is posted [${p.label}]`, () => {
    test("pointer at offset NaN or negative, forged region, Proxy, subclass: typed errors, neighbour untouched", () => {
      const r = runBun(`${PAIR(p.options)}
import { MemoryRegionPointer } from "./lib/memory/pointer.ts";
import { MemoryRegionImpl } from "./lib/memory/region.ts";
// Two adjacent regions of one block: forged offsets below \`base\` would land in \`neighbour\`.
const second = poolA.getRegion(4 << 20);
const [neighbour, base] = second.address < regionA.address ? [second, regionA] : [regionA, second];
if (base.address - neighbour.address !== neighbour.size) throw new Error("the two regions are not adjacent");
neighbour.view.fill(0xa5);
regionB.view.fill(0x3c);
const results = {};
const attempt = (name, make) => {
  try {
    const local = make();
    a.readSync(local, 64, peer, regionB.remote());
    results[name] = "accepted";
  } catch (e) { results[name] = e.name; }
};
attempt("pointer constructed at NaN", () => new MemoryRegionPointer(base, NaN));
attempt("pointer constructed at -64", () => base.pointer(-64));
attempt("genuine pointer whose offset is set to NaN", () => { const q = base.pointer(8); q.offset = NaN; return q; });
attempt("genuine pointer whose offset is set to -64", () => { const q = base.pointer(8); q.offset = -64; return q; });
attempt("pointer look-alike at -64", () => Object.assign(Object.create(MemoryRegionPointer.prototype), { region: base, offset: -64, address: base.address - 64 }));
attempt("region look-alike", () => Object.assign(Object.create(MemoryRegionImpl.prototype), { address: base.address - 4096, size: 1 << 30, localKey: base.localKey, inUse: true, owner: null }));
attempt("plain object", () => ({ address: 0, size: 64, localKey: 0n }));
attempt("Proxy of a region", () => new Proxy(base, {}));
attempt("Proxy of a pointer", () => new Proxy(base.pointer(0), {}));
attempt("pointer into a forged region", () => { const q = base.pointer(0); q.region = new Proxy(base, {}); return q; });
attempt("null", () => null);
const untouched = neighbour.view.every((x) => x === 0xa5);
const stats = a.stats();
a.close(); b.close();
poolA.close(); poolB.close(); providerA.close(); providerB.close();
console.log(JSON.stringify({ results, untouched, posted: stats.posted, pinned: base.inFlight + neighbour.inFlight }));
`);
      expect(r.stderr).not.toContain("Segmentation fault");
      expect(r.exitCode).toBe(0);
      const out = JSON.parse(r.stdout.trim().split("\n").pop()!) as { results: Record<string, string>; untouched: boolean; posted: number; pinned: number };
      expect(out.results).toEqual({
        "pointer constructed at NaN": "RangeError",
        "pointer constructed at -64": "RangeError",
        "genuine pointer whose offset is set to NaN": expect.stringMatching(/RangeError|TypeError/),
        "genuine pointer whose offset is set to -64": expect.stringMatching(/RangeError|TypeError/),
        "pointer look-alike at -64": "TypeError",
        "region look-alike": "TypeError",
        "plain object": "TypeError",
        "Proxy of a region": "TypeError",
        "Proxy of a pointer": "TypeError",
        "pointer into a forged region": expect.stringMatching(/RangeError|TypeError/),
        "null": "TypeError",
      });
      expect(out.untouched).toBe(true);
      expect(out.posted).toBe(1); // the connecting write only
      expect(out.pinned).toBe(0);
    }, 30_000);
  });
}

for (const p of PROVIDERS) {
  describeFabric(`an operation in flight keeps its region and pool alive [${p.label}]`, () => {
    test("a 4 MiB read into a pool nobody references survives garbage collection and lands", () => {
      const r = runBun(`
import { Endpoint, LibfabricProvider, MemoryPool } from "./lib/index.ts";
const providerA = LibfabricProvider.open(${p.options}), providerB = LibfabricProvider.open(${p.options});
const poolB = new MemoryPool(providerB, { huge: { chunkSize: 4 << 20, initialCount: 1 } });
const regionB = poolB.getRegion(4 << 20);
regionB.view.fill(0x5a);
const a = new Endpoint(providerA, { timeoutMs: 5000, spinMicroseconds: 0 });
const b = new Endpoint(providerB, { timeoutMs: 5000, spinMicroseconds: 0 });
const peer = a.insert(b.name);
b.insert(a.name);
// The pool and its region are reachable from nothing but the operation once this returns.
function post() {
  const pool = new MemoryPool(providerA, { huge: { chunkSize: 4 << 20, initialCount: 1 } });
  const region = pool.getRegion(4 << 20);
  const sink = new WeakRef(region);
  return { id: a.postRead(region, 4 << 20, peer, regionB.remote()), sink };
}
const { id, sink } = post();
for (let i = 0; i < 3; i++) { Bun.gc(true); await Bun.sleep(5); }
const deadline = performance.now() + 5000;
while (!a.completed(id) && performance.now() < deadline) { a.poll(); b.poll(); }
const region = sink.deref();
const landed = region !== undefined && region.view.every((x) => x === 0x5a);
console.log(JSON.stringify({ alive: region !== undefined, landed, pinned: region?.inFlight }));
a.close(); b.close();
`);
      expect(r.stderr).not.toContain("Segmentation fault");
      expect(r.exitCode).toBe(0);
      expect(JSON.parse(r.stdout.trim().split("\n").pop()!)).toEqual({ alive: true, landed: true, pinned: 0 });
    }, 30_000);
  });
}

for (const p of [{ label: "shm", args: ["--provider", "shm"] }, { label: "tcp", args: ["--provider", "tcp", "--node", "127.0.0.1"] }]) {
  describeFabric(`a target process closes while a peer process writes into it [${p.label}]`, () => {
    test("the initiator's 4 MiB write ends (done or typed error), and both processes exit cleanly", async () => {
      const args = [...p.args, "--timeout", "2000"];
      const [a, b] = await Promise.all([AgentProcess.start(args), AgentProcess.start(args)]);
      const peer = (await a.request({ op: "insert", name: b.ready.name })).peer!;
      await b.request({ op: "insert", name: a.ready.name });
      const connected = await a.request({ op: "write", peer, remote: b.ready.remote, offset: 0, length: 1, localOffset: 0, seed: 1 });
      expect(connected.ok).toBe(true);
      const writing = a.request({ op: "write", peer, remote: b.ready.remote, offset: 0, length: 4 << 20, localOffset: 0, seed: 2 });
      const bExit = await b.stop(); // closes endpoint, pool and provider while the write may be in flight
      const reply = await writing;
      expect(reply.ok === true || ["RmaError", "RmaTimeoutError", "FabricError"].includes(reply.error?.name ?? "")).toBe(true);
      expect(await a.stop()).toBe(0);
      expect(bExit).toBe(0);
    }, 30_000);
  });
}
