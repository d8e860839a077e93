// The pinned bytes of a shared pool, one count for every Worker together (maxPinnedBytes binds
// them all), and its peak: two 64-bit words of the shared memory, changed with a CAS. Only
// growths, temporary and user regions change it: 64-bit atomics cost nothing that matters there.
import { AllocToolsError } from "../errors.ts";
import type { SharedLayout } from "./shared-layout.ts";

export class SharedPinnedBytes {
  private readonly longs: BigUint64Array;
  /** Uint64 word of the count; the peak follows it. */
  private readonly at: number;

  constructor(longs: BigUint64Array, layout: SharedLayout) {
    this.longs = longs;
    this.at = layout.pinned / 8;
  }

  /** Adds `bytes` to the shared pinned count unless that passes `limit`; returns whether it did. */
  reserve(bytes: number, limit: number): boolean {
    const at = this.at;
    for (;;) {
      const now = Atomics.load(this.longs, at);
      const next = Number(now) + bytes;
      if (bytes > 0 && next > limit) return false;
      if (Atomics.compareExchange(this.longs, at, now, BigInt(Math.max(0, next))) === now) {
        for (;;) {
          const peak = Atomics.load(this.longs, at + 1);
          if (Number(peak) >= next || Atomics.compareExchange(this.longs, at + 1, peak, BigInt(next)) === peak) return true;
        }
      }
    }
  }

  /** Adds `bytes` under `limit` (maxPinnedBytes), or throws AllocToolsError PINNED_LIMIT naming `what`. */
  claim(bytes: number, limit: number, what: string): void {
    if (this.reserve(bytes, limit)) return;
    throw new AllocToolsError("PINNED_LIMIT",
      `${what} needs ${bytes} more pinned bytes; ${this.bytes} of maxPinnedBytes ${limit} are in use (all Workers)`);
  }

  /** Adds `delta` bytes (negative: gives them back), with no limit. */
  add(delta: number): void {
    this.reserve(delta, Infinity);
  }

  get bytes(): number {
    return Number(Atomics.load(this.longs, this.at));
  }

  get peakBytes(): number {
    return Number(Atomics.load(this.longs, this.at + 1));
  }

  reset(): void {
    Atomics.store(this.longs, this.at, 0n);
  }
}
