// What every scenario of test/mpi/messages-agent.ts works with: the job, one provider (its window),
// a pool over it, an endpoint that takes receive() memory from the pool, and the rank's checks.
// Plus the byte patterns messages carry, so a receiver can tell every byte came from the sender.
import { readFileSync } from "node:fs";
import { MemoryPool, MpiEndpoint, MpiJob, MpiProvider, type MemoryRegion } from "../../lib/index.ts";
import type { RankChecks } from "./rank-checks.ts";

export interface RankContext {
  readonly job: MpiJob;
  readonly provider: MpiProvider;
  readonly pool: MemoryPool;
  readonly endpoint: MpiEndpoint;
  readonly rank: number;
  readonly size: number;
  readonly t: RankChecks;
}

/** Opens provider, pool and endpoint (collective: MPI_Win_create_dynamic). */
export function openContext(job: MpiJob, t: RankChecks): RankContext {
  const provider = MpiProvider.open();
  const pool = new MemoryPool(provider);
  const endpoint = new MpiEndpoint(provider, { pool });
  return { job, provider, pool, endpoint, rank: job.rank, size: job.size, t };
}

/** Closes what openContext opened (collective: MPI_Win_free). */
export function closeContext(context: RankContext): void {
  context.endpoint.close();
  const leaked = context.pool.close();
  context.t.check("the pool closes with no region left out", leaked.count === 0, leaked);
  context.provider.close();
}

/** Period of the pattern: a prime, so a shifted or repeated chunk does not match. */
const PERIOD = 251;
const templates = new Map<number, Uint8Array>();

/** Byte i of the pattern of `seed`: (seed + i) mod 251. */
function template(seed: number): Uint8Array {
  let bytes = templates.get(seed % PERIOD);
  if (bytes === undefined) {
    bytes = new Uint8Array(PERIOD * 256);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (seed + i) % PERIOD;
    templates.set(seed % PERIOD, bytes);
  }
  return bytes;
}

/** Fills `length` bytes of `view` from `offset` with the pattern of `seed`. */
export function fillPattern(view: Uint8Array, offset: number, length: number, seed: number): void {
  const bytes = template(seed);
  for (let at = 0; at < length; at += bytes.length) view.set(bytes.subarray(0, Math.min(bytes.length, length - at)), offset + at);
}

/** The first index where `view` (from `offset`, `length` bytes) differs from the pattern of `seed`, or -1. */
export function patternMismatch(view: Uint8Array, offset: number, length: number, seed: number): number {
  const bytes = template(seed);
  for (let at = 0; at < length; at += bytes.length) {
    const chunk = Math.min(bytes.length, length - at);
    const got = view.subarray(offset + at, offset + at + chunk);
    if (!Buffer.from(got.buffer, got.byteOffset, chunk).equals(Buffer.from(bytes.buffer, 0, chunk))) {
      for (let i = 0; i < chunk; i++) if (got[i] !== bytes[i]) return at + i;
    }
  }
  return -1;
}

/** A region of `length` bytes (at least 1) filled with the pattern of `seed`. */
export function patterned(pool: MemoryPool, length: number, seed: number): MemoryRegion {
  const region = pool.getRegion(Math.max(length, 1));
  fillPattern(region.view, 0, length, seed);
  return region;
}

/** Reads a u32 sequence number from the first 4 bytes (0 when shorter). */
export function sequenceOf(view: Uint8Array): number {
  return view.length >= 4 ? new DataView(view.buffer, view.byteOffset, 4).getUint32(0, true) : 0;
}

/** Writes a u32 sequence number into the first 4 bytes. */
export function writeSequence(view: Uint8Array, sequence: number): void {
  new DataView(view.buffer, view.byteOffset, 4).setUint32(0, sequence, true);
}

/** Resident set size of this process in KiB (VmRSS). */
export function rssKiB(): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
  return match ? Number(match[1]) : -1;
}
