// Run in a child process by handle-tamper.test.ts (a tampered native handle could crash): a shared
// pool's handle with one field changed at a time, every field of it and of its provider handle,
// must be refused by MemoryPool.attach with a typed error (a `code`), and leave the pool as it was:
// the owner's regions untouched, its books clean, no slot taken (issue 21, defect 8).
//
//   bun test/workers/handle-tamper-child.ts <host|tcp|ucx-tcp> <runs> <seed>
import fc from "fast-check";
import { HostProvider, LibfabricProvider, MemoryPool, UcxProvider, type RegionProvider, type SharedPoolHandle } from "../../lib/index.ts";

const [label = "host", runsArg = "200", seedArg = "1"] = process.argv.slice(2);

function open(): RegionProvider {
  if (label === "tcp") return LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" });
  if (label === "ucx-tcp") return UcxProvider.open({ transports: "tcp" });
  return new HostProvider();
}

/** Every field of `value` as a path (objects and arrays included, not only their leaves). */
function fieldPaths(value: unknown, path: (string | number)[] = []): (string | number)[][] {
  if (value === null || typeof value !== "object" || value instanceof SharedArrayBuffer) return [path];
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v] as const) : Object.entries(value);
  return [...(path.length > 0 ? [path] : []), ...entries.flatMap(([key, v]) => fieldPaths(v, [...path, key]))];
}

function get(value: unknown, path: (string | number)[]): unknown {
  return path.reduce<unknown>((v, key) => (v as Record<string | number, unknown>)[key], value);
}

/** A structured clone of `handle` with the field at `path` set to `replacement`. */
function tampered(handle: SharedPoolHandle, path: (string | number)[], replacement: unknown): SharedPoolHandle {
  const copy = structuredClone(handle) as unknown as Record<string | number, unknown>;
  const parent = get(copy, path.slice(0, -1)) as Record<string | number, unknown>;
  parent[path.at(-1)!] = replacement;
  return copy as unknown as SharedPoolHandle;
}

/** Another value for a field: near the original (a chunk size halved or doubled), or of another type. */
function replacementFor(original: unknown): fc.Arbitrary<unknown> {
  const others = fc.oneof(
    fc.integer(), fc.double(), fc.string(), fc.boolean(), fc.bigInt(), fc.constant(null), fc.constant(undefined),
    fc.constant({}), fc.constant([]), fc.constant(Number.NaN), fc.constant(Infinity), fc.constant(-0),
  );
  if (typeof original === "number") {
    return fc.oneof(
      fc.constantFrom(original / 2, original * 2, original + 1, original - 1, -original, original + 4096),
      fc.integer({ min: 0, max: 1 << 20 }), others,
    );
  }
  if (typeof original === "bigint") return fc.oneof(fc.constantFrom(original + 1n, original * 2n, 0n), others);
  if (typeof original === "string") return fc.oneof(fc.constantFrom(`${original}x`, original.slice(1), ""), others);
  // A SharedArrayBuffer of another size (one of the same size cannot be told from the original: see the README).
  if (original instanceof SharedArrayBuffer) return fc.oneof(fc.constant(new SharedArrayBuffer(original.byteLength + 64)), fc.constant(new ArrayBuffer(original.byteLength)), others);
  return others;
}

function sameValue(a: unknown, b: unknown): boolean {
  return a === b || Object.is(a, b);
}

const provider = open();
const pool = new MemoryPool(provider, {
  small: { chunkSize: 1024, initialCount: 8, growCount: 8, maxRegions: 64 },
  medium: { chunkSize: 4096, initialCount: 2, growCount: 2, maxRegions: 16 },
});
const handle = pool.share({ maxWorkers: 3, cacheSize: 4, maxUnpooledRegions: 8 });
const held = Array.from({ length: 6 }, (_, k) => {
  const r = pool.getRegion(1000);
  r.view.fill(k + 1);
  return r;
});
const paths = fieldPaths(handle);
const failures: string[] = [];
const refusals = new Map<string, number>();
let tried = 0;

function attempt(path: (string | number)[], replacement: unknown): void {
  tried++;
  const name = path.join(".");
  let outcome: string;
  try {
    const attached = MemoryPool.attach(tampered(handle, path, replacement));
    // What a Worker would do next: write into the regions it gets (over the owner's, with a wrong layout).
    const got = [attached.getRegion(1000), attached.getRegion(1000)];
    for (const r of got) r.view.fill(0xee);
    attached.close();
    outcome = "attached";
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    outcome = typeof code === "string" ? code : `untyped ${(e as Error).name}: ${(e as Error).message}`;
  }
  refusals.set(outcome, (refusals.get(outcome) ?? 0) + 1);
  const problems = pool.audit().problems;
  const intact = held.every((r, k) => r.view.every((b) => b === k + 1));
  if (outcome === "attached" || outcome.startsWith("untyped") || problems.length > 0 || !intact) {
    failures.push(`${name} = ${String(replacement)} (${typeof replacement}): ${outcome}; audit ${JSON.stringify(problems)}; owner's bytes ${intact ? "intact" : "changed"}`);
  }
}

// The issue's own cases first, then every field with generated values.
attempt(["layout", "stacks", 0, "chunkSize"], 512);
attempt(["layout", "stacks", 0, "chunkSize"], 2048);
const property = fc.check(fc.property(
  fc.nat(paths.length - 1).chain((i) => fc.tuple(fc.constant(paths[i]!), replacementFor(get(handle, paths[i]!)))),
  ([path, replacement]) => {
    fc.pre(!sameValue(get(handle, path), replacement));
    attempt(path, replacement);
    return failures.length === 0;
  },
), { numRuns: Number(runsArg), seed: Number(seedArg) });
if (property.failed && failures.length === 0) failures.push(`property: ${String(property.errorInstance ?? property.counterexample)}`);
// Each field once more with a value of another type: no field left untried.
for (const path of paths) attempt(path, typeof get(handle, path) === "string" ? 7 : "tampered");

// No slot was taken by a refused attach: maxWorkers 3 (the owner and two) still admits two.
const first = MemoryPool.attach(handle);
const second = MemoryPool.attach(handle);
const got = second.getRegion(1000);
const served = got.size;
second.releaseRegion(got);
second.close();
first.close();
for (const r of held) pool.releaseRegion(r);
const report = pool.close();
provider.close();
console.log(JSON.stringify({ tried, fields: paths.length, failures: failures.slice(0, 20), refusals: Object.fromEntries(refusals), served, leaked: report.count }));
