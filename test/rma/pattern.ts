// Test data for RMA: a byte pattern that differs per seed and per position, so a shifted, truncated
// or stale transfer never matches by accident, and a sentinel for the bytes around it.

export const SENTINEL = 0xa5;

/** The pattern byte at index i for a seed. Never equal to SENTINEL for long runs. */
function patternByte(seed: number, i: number): number {
  return (i * 131 + seed * 17 + (i >>> 8) * 7 + 1) & 0xff;
}

/** Fills `view` with the pattern of `seed`. */
export function fillPattern(view: Uint8Array, seed: number): void {
  for (let i = 0; i < view.length; i++) view[i] = patternByte(seed, i);
}

/** Index of the first byte of `view` that is not the pattern of `seed`, or -1. */
export function firstMismatch(view: Uint8Array, seed: number): number {
  for (let i = 0; i < view.length; i++) if (view[i] !== patternByte(seed, i)) return i;
  return -1;
}

/** Index of the first byte of `view` that is not `value`, or -1. */
export function firstNot(view: Uint8Array, value: number): number {
  for (let i = 0; i < view.length; i++) if (view[i] !== value) return i;
  return -1;
}

/** Sizes from 1 B to 4 MiB, with odd ones in between. */
export const SIZES = [1, 3, 255, 4097, 65_537, (1 << 20) + 1, 4 << 20] as const;
/** Odd offsets inside the pooled regions, local and remote. */
export const LOCAL_OFFSET = 13;
export const REMOTE_OFFSET = 7;

/** Pool shape for RMA tests: the huge class holds 4 MiB at an odd offset, two regions per block. */
export const RMA_POOL = {
  small: { chunkSize: 4096, initialCount: 2 },
  medium: { chunkSize: 65_536 + 4096, initialCount: 1 },
  large: { chunkSize: 1 << 20, initialCount: 1 },
  huge: { chunkSize: (4 << 20) + 4096, initialCount: 2 },
} as const;

export const toHex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
export const fromHex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "hex"));
