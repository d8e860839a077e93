// The registration ratio of bench/suites/rma.ts, in a process of its own with one provider, as an
// application has: LibfabricProvider.register + deregister against the same two calls made bare
// through bun:ffi, in alternating batches (this machine's speed drifts between benchmarks run one
// after the other). With two providers in one process, every bun:ffi call site in the library sees
// two domains' functions and turns polymorphic, which no single-provider program pays.
//
//   bun bench/registration-child.ts <provider> <bytes> <batches>
//       Prints one JSON line: { bare, library } (median ns per register+deregister pair).
import { CFunction, FFIType, read, type Pointer } from "bun:ffi";
import { libfabric } from "../ffi/libfabric.ts";
import { L } from "../ffi/layout.ts";
import { LibfabricProvider, MemoryPool } from "../lib/index.ts";

const ACCESS = 0x100 | 0x200 | 0x1000 | 0x2000; // FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE
const PER_BATCH = 20_000;

const [providerName = "tcp", bytesText = "4096", batchesText = "41"] = process.argv.slice(2);
const bytes = Number(bytesText);
const batches = Number(batchesText);
const provider = LibfabricProvider.open({ provider: providerName, ...(providerName === "shm" ? {} : { node: "127.0.0.1" }) });
const pool = new MemoryPool(provider, { huge: { chunkSize: 1 << 20, initialCount: 1 } });
const region = pool.getRegion(1 << 20); // registered memory to register again: what a cache would
const address = region.address;
const fi = libfabric();
const domain = provider.handles.domain;

// Bare bun:ffi: the two CFunctions resolved once, a constant key (freed before reuse), nothing else.
const reg = CFunction({
  ptr: read.ptr(read.ptr(domain as Pointer, L.fid_domain.mr) as Pointer, L.fi_ops_mr.reg) as Pointer, returns: FFIType.i32,
  args: [FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.ptr, FFIType.ptr],
});
const probe = fi.mrReg(domain, address, 4096, ACCESS, 0n, 1n << 40n, 0);
const close = CFunction({ ptr: read.ptr(read.ptr(probe as Pointer, L.fid.ops) as Pointer, L.fi_ops.close) as Pointer, args: [FFIType.ptr], returns: FFIType.i32 });
fi.close(probe);
const out = new BigUint64Array(1);
const outWords = new Uint32Array(out.buffer);
const bareKey = 2 ** 40 + 1;

// Each loop written out, so that neither call site sees the other's function.
function bare(n: number): number {
  const start = Bun.nanoseconds();
  for (let i = 0; i < n; i++) {
    reg(domain, address, bytes, ACCESS, 0, bareKey, 0, out, null);
    close(outWords[0]! + outWords[1]! * 0x1_0000_0000);
  }
  return (Bun.nanoseconds() - start) / n;
}

function library(n: number): number {
  const start = Bun.nanoseconds();
  for (let i = 0; i < n; i++) provider.deregister(provider.register(address, bytes, ACCESS));
  return (Bun.nanoseconds() - start) / n;
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[(values.length - 1) >> 1]!;

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
