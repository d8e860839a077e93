// Key blobs that pass the framing check but that UCX cannot unpack (issue 21, defect 1). UCX
// before 1.19 crashes in ucp_ep_rkey_unpack's own error path (it releases the key it failed to
// unpack: SIGSEGV at 0x8), so the endpoint tries each shared-memory key first. Two ways in, each
// run many times in child processes (a crash is a failed test, not a dead runner):
// - an honest remote() of a region whose pool closed, or whose process exited, before this
//   endpoint first used it;
// - a peer that garbles the key bytes.
// Every case ends in a UcxError naming ucp_ep_rkey_unpack with UCX's status and text, or in the
// right bytes; never in a signal.
import { afterAll, expect, test } from "bun:test";
import { rkeyBlobProblem } from "../../ffi/ucx.ts";
import { describeUcx, runBun } from "../helpers.ts";
import { AgentProcess } from "../rma/peers.ts";
import { UCX_AGENT } from "./two-peers.ts";

const SHARED_MEMORY = ["posix,cma", "sysv,cma"] as const;
const ROUNDS = 20;

/** A child's last line: the outcome of each round. */
function outcomes(r: { exitCode: number | null; stdout: string; stderr: string }): string[] {
  expect(r.stderr).not.toContain("Segmentation fault");
  expect(r.stderr).not.toContain("Assertion");
  expect(r.exitCode).toBe(0);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as string[];
}

/** Prelude of the in-process children: a provider, a local region, an endpoint inserted to itself. */
const SETUP = (transports: string) => `
import { MemoryPool, RemoteRegion, UcxEndpoint, UcxProvider } from "./lib/index.ts";
const provider = UcxProvider.open({ transports: ${JSON.stringify(transports)}, netDevices: "lo" });
const home = new MemoryPool(provider);
const local = home.getRegion(4096);
const outcome = (e) => e.name === "UcxError" ? [e.name, e.function, e.code, typeof e.status, e.description !== ""].join(" ") : e.name + " " + e.message;
const results = [];
`;

test("rkeyBlobProblem: framing, and host memory only", () => {
  const posix = Uint8Array.from([3, 0, 0, 0, 0, 0, 0, 0, 0, 24, ...new Array(24).fill(1), 0]);
  expect(rkeyBlobProblem(posix)).toBe("");
  expect(rkeyBlobProblem(posix.subarray(0, 8))).toBe("a packed rkey is at least 9 bytes, got 8");
  expect(rkeyBlobProblem(posix.subarray(0, 34))).toMatch(/names memory domain 1 but ends at byte 34/);
  expect(rkeyBlobProblem(posix.subarray(0, 20))).toMatch(/memory domain 0's key runs past/);
  const cuda = posix.slice();
  cuda[8] = 1;
  expect(rkeyBlobProblem(cuda)).toBe("the rkey is for memory type 1; alloctools exchanges host memory (type 0) only");
});

for (const transports of SHARED_MEMORY) {
  describeUcx(`a key blob UCX cannot unpack [${transports}]`, () => {
    test(`an honest remote() of a region whose pool closed before first use: UcxError, never a signal (${ROUNDS} rounds)`, () => {
      const r = runBun(`${SETUP(transports)}
for (let round = 0; round < ${ROUNDS}; round++) {
  const pool = new MemoryPool(provider);
  const region = pool.getRegion(4096);
  const remote = region.remote();
  const ep = new UcxEndpoint(provider, { timeoutMs: 3000, closeTimeoutMs: 100 });
  const peer = ep.insert(ep.name);
  pool.releaseRegion(region);
  pool.close();
  for (const kind of ["writeSync", "readSync"]) {
    try { ep[kind](local, 64, peer, remote); results.push(kind + " completed"); } catch (e) { results.push(kind + " " + outcome(e)); }
  }
  // The endpoint keeps working with a live region.
  const live = home.getRegion(4096);
  try { ep.writeSync(local, 64, peer, live.remote()); results.push("live completed"); } catch (e) { results.push("live " + outcome(e)); }
  home.releaseRegion(live);
  ep.close();
}
console.log(JSON.stringify(results));
`);
      const all = outcomes(r);
      expect(all.length).toBe(ROUNDS * 3);
      for (let round = 0; round < ROUNDS; round++) {
        expect(all.slice(round * 3, round * 3 + 3)).toEqual([
          "writeSync UcxError ucp_ep_rkey_unpack UCS_ERR_SHMEM_SEGMENT number true",
          "readSync UcxError ucp_ep_rkey_unpack UCS_ERR_SHMEM_SEGMENT number true",
          "live completed",
        ]);
      }
      expect(r.stdout).not.toContain("failed to unpack remote key"); // UCX logs to stdout: it never got there
    }, 60_000);

    test(`a peer's garbled key bytes: UcxError or the right bytes, never a signal (${ROUNDS} rounds each)`, () => {
      // Garbles that name no segment (a pid above pid_max, a shmid never handed out, no open flags),
      // and md maps that drop or add memory domains; never the key's address (keys are not access
      // control: a key for another address reaches it).
      const r = runBun(`${SETUP(transports)}
const target = home.getRegion(4096);
const good = target.remote();
const posix = ${JSON.stringify(transports)}.startsWith("posix");
const garbles = {
  segmentGone: (b) => { b[13] |= posix ? 0x20 : 0x40; }, // posix: a pid above pid_max; sysv: a shmid never handed out
  badSegmentId: (b) => { if (posix) b[17] &= 0x3f; else b.fill(0xff, 10, 14); }, // posix: neither procfs nor shm_open; sysv: shmid -1
  dropShared: (b) => { b[0] = 0x02; b.copyWithin(9, 9 + 1 + b[9]); },
  addUnknownDomain: (b) => { b[2] |= 0x01; },
};
for (let round = 0; round < ${ROUNDS}; round++) {
  for (const [name, garble] of Object.entries(garbles)) {
    let blob = good.keyBlob.slice();
    garble(blob);
    if (name === "dropShared") blob = blob.subarray(0, blob.length - (1 + good.keyBlob[9]));
    if (name === "addUnknownDomain") blob = Uint8Array.from([...blob, 0]);
    const ep = new UcxEndpoint(provider, { timeoutMs: 3000, closeTimeoutMs: 100 });
    const peer = ep.insert(ep.name);
    target.view.fill(0);
    local.view.fill(round + 1);
    try {
      ep.writeSync(local, 64, peer, new RemoteRegion(good.address, 0n, good.length, blob));
      results.push(name + (target.view.subarray(0, 64).every((x) => x === round + 1) && target.view[64] === 0 ? " right bytes" : " WRONG BYTES"));
    } catch (e) { results.push(name + " " + outcome(e)); }
    ep.close();
  }
}
console.log(JSON.stringify(results));
`);
      const all = outcomes(r);
      expect(all.length).toBe(ROUNDS * 4);
      const distinct = [...new Set(all)].sort();
      expect(distinct).toEqual([
        "addUnknownDomain right bytes",
        "badSegmentId UcxError ucp_ep_rkey_unpack UCS_ERR_SHMEM_SEGMENT number true",
        "dropShared right bytes",
        "segmentGone UcxError ucp_ep_rkey_unpack UCS_ERR_SHMEM_SEGMENT number true",
      ]);
    }, 60_000);
  });
}

for (const transports of [...SHARED_MEMORY, "tcp"] as const) {
  describeUcx(`key blobs of every length [${transports}]`, () => {
    test("random blobs of 1 to 300 bytes and random framed ones: refused before UCX reads them, or the right bytes; never a signal", () => {
      // On shared memory blobs naming the memory domain whose keys map segments (md 0) are left
      // out: a random segment id may name a live segment of another process (the garbles above
      // cover that domain with ids that name none).
      const r = runBun(`${SETUP(transports)}
import fc from "fast-check";
const target = home.getRegion(4096);
const good = target.remote();
const shared = ${JSON.stringify(transports)} !== "tcp";
// Random bytes of every length 1..300, and framed blobs: a map of up to 3 of the 64 domains, the
// host memory type, and keys of random lengths and bytes.
const random = Array.from({ length: 300 }, (_, i) => fc.sample(fc.uint8Array({ minLength: i + 1, maxLength: i + 1 }), { seed: 21 + i, numRuns: 1 })[0]);
const framed = fc.sample(fc.array(fc.tuple(fc.integer({ min: 0, max: 63 }), fc.uint8Array({ maxLength: 40 })), { maxLength: 3 }), { seed: 22, numRuns: 300 }).map((keys) => {
  const map = new Uint8Array(9);
  const byDomain = new Map(keys);
  for (const md of byDomain.keys()) map[md >> 3] |= 1 << (md & 7);
  const ordered = [...byDomain.entries()].sort((x, y) => x[0] - y[0]);
  return Uint8Array.from([...map, ...ordered.flatMap(([, key]) => [key.length, ...key])]);
});
const ep = new UcxEndpoint(provider, { timeoutMs: 3000, closeTimeoutMs: 100 });
const peer = ep.insert(ep.name);
for (const blob of [...random, ...framed]) {
  if (shared && (blob[0] & 1) !== 0) continue;
  target.view.fill(0);
  local.view.fill(7);
  try {
    ep.writeSync(local, 64, peer, new RemoteRegion(good.address, 0n, good.length, blob));
    results.push(target.view.subarray(0, 64).every((x) => x === 7) && target.view[64] === 0 ? "right bytes" : "WRONG BYTES");
  } catch (e) { results.push(outcome(e)); }
}
ep.close();
console.log(JSON.stringify(results));
`);
      const all = outcomes(r);
      expect(all.length).toBeGreaterThan(400);
      const distinct = [...new Set(all)].sort();
      expect(distinct).toEqual(["UcxError ucp_ep_rkey_unpack UCS_ERR_INVALID_PARAM number true", "right bytes"]);
      expect(all.filter((o) => o === "right bytes").length).toBeGreaterThan(100);
    }, 60_000);
  });
}

describeUcx("a key blob of a process that exited before first use", () => {
  const agents: AgentProcess[] = [];
  afterAll(async () => {
    await Promise.all(agents.map((agent) => agent.stop()));
  }, 30_000);

  for (const transports of [...SHARED_MEMORY, "tcp"] as const) {
    test(`[${transports}] the initiator gets a typed error and stays up, 3 times`, async () => {
      const args = ["--transports", transports, "--net-devices", "lo", "--timeout", "3000"];
      for (let round = 0; round < 3; round++) {
        const [a, b] = await Promise.all([AgentProcess.start(args, undefined, 15_000, UCX_AGENT), AgentProcess.start(args, undefined, 15_000, UCX_AGENT)]);
        agents.push(a);
        expect((await a.request({ op: "insert", name: b.ready.name })).peer).toBe("0");
        expect(await b.stop()).toBe(0);
        const w = await a.request({ op: "write", peer: 0, remote: b.ready.remote, offset: 0, length: 64, localOffset: 0, seed: 1 });
        expect(w.ok).toBeUndefined();
        if (transports === "tcp") {
          // No key to map on tcp: the write itself fails (the peer is gone) or times out.
          expect(["UcxError", "RmaTimeoutError"]).toContain(w.error?.name ?? "none");
        } else {
          expect(w.error?.name).toBe("UcxError");
          expect(w.error?.code).toBe("UCS_ERR_SHMEM_SEGMENT");
          expect(w.error?.message).toStartWith("ucp_ep_rkey_unpack failed: Shared memory error");
        }
        agents.pop();
        expect(await a.stop()).toBe(0);
      }
    }, 60_000);
  }
});
