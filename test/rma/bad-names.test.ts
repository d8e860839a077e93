// Peer names are checked before fi_av_insert (issue 21, "same class elsewhere"): libfabric reads a
// name by the provider's address format, not by its length. tcp, udp and sockets read a 16-byte
// sockaddr_in from an 8-byte name; shm reads a string up to its NUL, past the end of a name with
// none. Each name is laid out against an unmapped page, so that a read past its end is a SIGSEGV
// (before the check, the child crashed); every run is a child process.
import { expect, test } from "bun:test";
import { describeFabric, runBun } from "../helpers.ts";

const PROVIDERS = [
  { label: "tcp", options: `{ provider: "tcp", node: "127.0.0.1" }` },
  { label: "udp", options: `{ provider: "udp", node: "127.0.0.1" }` },
  { label: "sockets", options: `{ provider: "sockets", node: "127.0.0.1" }` },
  { label: "shm", options: `{ provider: "shm" }` },
] as const;
const SEED = Number(process.env.ALLOCTOOLS_FUZZ_SEED ?? 21);

/** A child that inserts names laid out right before an unmapped page and prints each outcome. */
const CHILD = (options: string, names: string) => `
import { toArrayBuffer } from "bun:ffi";
import fc from "fast-check";
import * as libc from "./ffi/libc.ts";
import { Endpoint, LibfabricProvider, MemoryPool } from "./lib/index.ts";
const provider = LibfabricProvider.open(${options});
// udp and sockets have 128 address-vector slots: a fresh endpoint takes over every 100 inserts.
let a = new Endpoint(provider, { timeoutMs: 3000, avCount: 128 });
let inserted = 0;
const b = new Endpoint(provider, { timeoutMs: 3000 });
const own = a.name;
const page = libc.pageSize;
const base = libc.mmap(2 * page);
libc.munmap(base + page, page);
/** The bytes, copied so that their last byte is the last of a mapped page. */
const atPageEnd = (bytes) => {
  const view = new Uint8Array(toArrayBuffer(base + page - bytes.length, 0, bytes.length));
  view.set(bytes);
  return view;
};
const outcomes = {};
const insert = (kind, bytes) => {
  let outcome;
  try {
    a.insert(atPageEnd(bytes));
    outcome = "inserted";
    if (++inserted % 100 === 0) { a.close(); a = new Endpoint(provider, { timeoutMs: 3000, avCount: 128 }); }
  }
  catch (e) { outcome = e.name + " " + (e.code ?? "") + (e.message.includes("refused before fi_av_insert") ? " refused" : ""); }
  outcomes[kind + ": " + outcome] = (outcomes[kind + ": " + outcome] ?? 0) + 1;
};
${names}
// The real peer still inserts, and a write to it lands.
const pool = new MemoryPool(provider);
const source = pool.getRegion(64), target = pool.getRegion(64);
source.view.fill(0x5a);
await a.write(source, 64, a.insert(atPageEnd(b.name)), target.remote());
const landed = target.view[63] === 0x5a;
a.close(); b.close(); pool.close(); provider.close();
console.log(JSON.stringify({ outcomes, landed }));
`;

/** Names every provider must refuse or insert without reading past them. */
const FUZZED = `
insert("half", own.slice(0, own.length >> 1));
insert("all but one", own.slice(0, own.length - 1));
insert("two bytes AF_INET6", new Uint8Array([10, 0]));
insert("64 x 'A', no NUL", new Uint8Array(64).fill(0x41));
insert("0xff x 16", new Uint8Array(16).fill(0xff));
insert("one more byte", Uint8Array.from([...own, 0x41]));
for (let n = 1; n < own.length; n++) insert("truncated", own.slice(0, n));
for (const bytes of fc.sample(fc.uint8Array({ minLength: 1, maxLength: 64 }), { seed: ${SEED}, numRuns: 300 })) insert("random", bytes);
for (const [at, mask] of fc.sample(fc.tuple(fc.nat({ max: own.length - 1 }), fc.integer({ min: 1, max: 255 })), { seed: ${SEED + 1}, numRuns: 300 })) {
  const bytes = own.slice();
  bytes[at] ^= mask;
  // A flipped socket address may name any host: only the family and port bytes are flipped on
  // socket providers, so that nothing is ever sent off this machine (nothing is sent by insert anyway).
  if (own[0] === 2 && at >= 4) continue;
  insert("flipped", bytes);
}
`;

for (const p of PROVIDERS) {
  describeFabric(`Endpoint.insert of names libfabric would read past [${p.label}]`, () => {
    test("refused before fi_av_insert with FabricError EINVAL; fuzzed names never crash; the real name still inserts", () => {
      const r = runBun(CHILD(p.options, FUZZED));
      expect(r.stderr).not.toContain("Segmentation fault");
      expect(r.exitCode).toBe(0);
      const { outcomes, landed } = JSON.parse(r.stdout.trim().split("\n").pop()!) as { outcomes: Record<string, number>; landed: boolean };
      expect(landed).toBe(true);
      for (const kind of ["half", "all but one", "two bytes AF_INET6", "64 x 'A', no NUL", "0xff x 16", "one more byte"]) {
        expect({ kind, outcome: outcomes[`${kind}: FabricError EINVAL refused`] }).toEqual({ kind, outcome: 1 });
      }
      expect(Object.keys(outcomes).filter((k) => k.startsWith("truncated:"))).toEqual(["truncated: FabricError EINVAL refused"]);
      for (const outcome of Object.keys(outcomes)) expect(outcome).toMatch(/: inserted$|: FabricError EINVAL( refused)?$/);
    }, 60_000);
  });
}
