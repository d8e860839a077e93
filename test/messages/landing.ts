// Where a test message lands and how it is checked: a receive's memory is a pooled region with a
// guard after it, filled with a sentinel, so a message that writes one byte too many is seen.
import type { MemoryPool, MemoryRegion } from "../../lib/index.ts";
import { fillPattern, firstMismatch, firstNot, SENTINEL } from "../rma/pattern.ts";

/** Bytes after a receive's memory that must stay untouched. */
export const GUARD_BYTES = 4096;

/** A region for a receive of `capacity` bytes, sentinel-filled through its guard. */
export function landing(pool: MemoryPool, capacity: number): MemoryRegion {
  const region = pool.getRegion(capacity + GUARD_BYTES);
  region.view.fill(SENTINEL, 0, capacity + GUARD_BYTES);
  return region;
}

/** A region holding `length` bytes of the pattern of `seed`. */
export function payload(pool: MemoryPool, length: number, seed: number): MemoryRegion {
  const region = pool.getRegion(Math.max(length, 1));
  fillPattern(region.view.subarray(0, length), seed);
  return region;
}

/** What a landing region holds: the first byte that is not the pattern (-1: none), the first guard byte touched (-1: none). */
export function landed(region: MemoryRegion, length: number, seed: number, capacity: number = length): { mismatch: number; guard: number } {
  return {
    mismatch: firstMismatch(region.view.subarray(0, length), seed),
    guard: firstNot(region.view.subarray(length, capacity + GUARD_BYTES), SENTINEL),
  };
}

/** The expected result of `landed` for a message that arrived whole and alone. */
export const INTACT = { mismatch: -1, guard: -1 } as const;
