// Child of bad-names.test.ts: inserts fuzzed worker addresses into a UcxEndpoint and prints what
// each came to, one JSON line at the end. A crash or an abort here is the test's failure.
//
//   bun test/ucx/insert-fuzz-child.ts <transports> <seed> <configurations as JSON>
//
// The real addresses are those of live workers of this process, one per configuration.
//
// Every name the check refuses is inserted (it must be refused, with nothing created). A name the
// check accepts is inserted when the parts UCX connects with (the device and interface addresses
// of the transports this worker has) are those of a real address: other accepted names would have
// UCX open whatever segment or port their bytes name, which is the peer's to choose, not a fault.
import fc from "fast-check";
import { readWorkerAddress, type WorkerAddress } from "../../ffi/ucx-address.ts";
import { UcxEndpoint, UcxProvider } from "../../lib/index.ts";

const [transports, seedText, configurations] = process.argv.slice(2);
const seed = Number(seedText);
const live = (JSON.parse(configurations!) as Array<Parameters<typeof UcxProvider.open>[0]>).map((options) => {
  const provider = UcxProvider.open(options);
  return { provider, ep: new UcxEndpoint(provider) };
});
const real = live.map(({ ep }) => ep.name);
const provider = UcxProvider.open({ transports: transports!, netDevices: "lo" });
const own = readWorkerAddress(new UcxEndpoint(provider).name) as WorkerAddress;
const ownTransports = new Set(own.entries.map((entry) => entry.transportChecksum));

const realParts = new Set(real.flatMap((bytes) => {
  const read = readWorkerAddress(bytes);
  return typeof read === "string" ? [] : read.entries.map(partsKey);
}));

function partsKey(entry: WorkerAddress["entries"][number]): string {
  return `${entry.transportChecksum}:${Buffer.from(entry.deviceAddress).toString("hex")}:${Buffer.from(entry.interfaceAddress).toString("hex")}`;
}

/** Whether UCX would only connect with parts of real addresses. */
function connectsLikeARealAddress(name: Uint8Array): boolean {
  const read = readWorkerAddress(name);
  if (typeof read === "string") return true;
  return read.entries.every((entry) => !ownTransports.has(entry.transportChecksum) || realParts.has(partsKey(entry)));
}

const flip = fc.tuple(fc.constantFrom(...real), fc.nat(), fc.integer({ min: 0, max: 7 }))
  .map(([bytes, at, bit]) => { const b = bytes.slice(); b[at % b.length] = b[at % b.length]! ^ (1 << bit); return b; });
const flips = fc.tuple(fc.constantFrom(...real), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 2, maxLength: 6 }))
  .map(([bytes, changes]) => { const b = bytes.slice(); for (const [at, mask] of changes) b[at % b.length] = b[at % b.length]! ^ mask; return b; });
const truncations = real.flatMap((bytes) => Array.from({ length: bytes.length }, (_, n) => bytes.slice(0, n)));
const extensions = real.map((bytes) => Uint8Array.from([...bytes, 0]));
const names: Array<[string, Uint8Array]> = [
  ["0xff x 16", new Uint8Array(16).fill(0xff)],
  ["one byte 0", new Uint8Array(1)],
  ...real.map((bytes, i) => [`real ${i}`, bytes] as [string, Uint8Array]),
  ...truncations.filter((b) => b.length > 0).map((b) => ["truncated", b] as [string, Uint8Array]),
  ...extensions.map((b) => ["extended", b] as [string, Uint8Array]),
  ...fc.sample(flip, { seed, numRuns: 300 }).map((b) => ["bit flip", b] as [string, Uint8Array]),
  ...fc.sample(flips, { seed: seed + 1, numRuns: 150 }).map((b) => ["byte flips", b] as [string, Uint8Array]),
  ...fc.sample(fc.uint8Array({ minLength: 1, maxLength: 300 }), { seed: seed + 2, numRuns: 300 }).map((b) => ["random", b] as [string, Uint8Array]),
];

const outcomes: Record<string, number> = {};
const realOutcomes: string[] = [];
let ep = new UcxEndpoint(provider, { closeTimeoutMs: 50 });
let inserted = 0;
for (const [kind, name] of names) {
  if (!connectsLikeARealAddress(name)) {
    outcomes["accepted, not inserted"] = (outcomes["accepted, not inserted"] ?? 0) + 1;
    continue;
  }
  let outcome: string;
  try {
    ep.insert(name);
    outcome = "inserted";
    if (++inserted % 50 === 0) {
      ep.close();
      ep = new UcxEndpoint(provider, { closeTimeoutMs: 50 });
    }
  } catch (e) {
    const error = e as Error & { code?: string; function?: string };
    outcome = `${error.name} ${error.function ?? ""} ${error.code ?? ""}${error.message.includes("refused before ucp_ep_create") ? " refused" : ""}`;
  }
  if (kind.startsWith("real")) realOutcomes.push(outcome);
  const key = `${kind === "0xff x 16" || kind === "one byte 0" ? kind : kind.startsWith("real") ? "real" : "fuzzed"}: ${outcome}`;
  outcomes[key] = (outcomes[key] ?? 0) + 1;
}
ep.close();
provider.close();
for (const { provider: other, ep: otherEp } of live) {
  otherEp.close();
  other.close();
}
console.log(JSON.stringify({ outcomes, realOutcomes, total: names.length }));
