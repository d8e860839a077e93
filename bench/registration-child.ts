// The registration ratio of bench/suites/rma.ts, in a process of its own with one provider, as an
// application has: LibfabricProvider.register + deregister against the same two calls made bare
// through bun:ffi, in alternating batches (this machine's speed drifts between benchmarks run one
// after the other). With two providers in one process, every bun:ffi call site in the library sees
// two domains' functions and turns polymorphic, which no single-provider program pays.
//
//   bun bench/registration-child.ts <provider> <bytes> <batches>
//       Prints one JSON line: { bare, library } (median ns per register+deregister pair).
import { LibfabricProvider, MemoryPool } from "../lib/index.ts";
import { bareRegistration, REGISTRATION_ACCESS as ACCESS } from "./bare-registration.ts";
import { median } from "./stats.ts";

const PER_BATCH = 20_000;

const [providerName = "tcp", bytesText = "4096", batchesText = "41"] = process.argv.slice(2);
const bytes = Number(bytesText);
const batches = Number(batchesText);
const provider = LibfabricProvider.open({ provider: providerName, ...(providerName === "shm" ? {} : { node: "127.0.0.1" }) });
const pool = new MemoryPool(provider, { huge: { chunkSize: 1 << 20, initialCount: 1 } });
const region = pool.getRegion(1 << 20); // registered memory to register again: what a cache would
const address = region.address;
const pair = bareRegistration(provider.handles.domain, address);

// Each loop written out, so that neither call site sees the other's function.
function bare(n: number): number {
  const start = Bun.nanoseconds();
  for (let i = 0; i < n; i++) pair(bytes);
  return (Bun.nanoseconds() - start) / n;
}

function library(n: number): number {
  const start = Bun.nanoseconds();
  for (let i = 0; i < n; i++) provider.deregister(provider.register(address, bytes, ACCESS));
  return (Bun.nanoseconds() - start) / n;
}

bare(PER_BATCH * 5); // warm up: reach the optimizing JIT
library(PER_BATCH * 5);
const bareTimes: number[] = [];
const libraryTimes: number[] = [];
for (let b = 0; b < batches; b++) {
  bareTimes.push(bare(PER_BATCH));
  libraryTimes.push(library(PER_BATCH));
}
pool.releaseRegion(region);
pool.close();
provider.close();
console.log(JSON.stringify({ bare: median(bareTimes), library: median(libraryTimes) }));
