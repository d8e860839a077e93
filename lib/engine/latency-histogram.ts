// Latencies of an endpoint's operations, by kind, in a fixed-size log histogram: recording one
// allocates nothing (a Math.log2 and an increment), and percentiles are read from the counts.
// Buckets are eighths of a power of two, so a percentile is within 9 % of the true value.
import type { OperationKind } from "./rma-errors.ts";

/** Latency percentiles of one kind of operation, in microseconds. */
export interface LatencySummary {
  /** Operations recorded. */
  readonly count: number;
  /** The median. */
  readonly p50: number;
  /** 90 % of the operations took at most this long. */
  readonly p90: number;
  /** 99 % of the operations took at most this long. */
  readonly p99: number;
  /** The largest latency recorded (exact). */
  readonly max: number;
}

const KINDS: readonly OperationKind[] = ["write", "read", "send", "recv", "receive", "fetchAdd", "compareSwap"];
/** Buckets per power of two. */
const PER_OCTAVE = 8;
/** Octaves from 1 ns to 2^40 ns (about 18 minutes). */
const OCTAVES = 40;
const BUCKETS = PER_OCTAVE * OCTAVES;

/** One histogram per kind of operation. */
export class LatencyHistogram {
  private readonly counts = new Uint32Array(KINDS.length * BUCKETS);
  private readonly totals = new Float64Array(KINDS.length);
  private readonly maxima = new Float64Array(KINDS.length);

  /** Records an operation of `kind` that took `milliseconds`. */
  record(kind: OperationKind, milliseconds: number): void {
    const k = kindIndex(kind);
    const nanoseconds = milliseconds * 1e6;
    const bucket = nanoseconds < 1 ? 0 : Math.min(BUCKETS - 1, Math.floor(Math.log2(nanoseconds) * PER_OCTAVE));
    this.counts[k * BUCKETS + bucket]!++;
    this.totals[k]!++;
    if (nanoseconds > this.maxima[k]!) this.maxima[k] = nanoseconds;
  }

  /** The percentiles of every kind that has operations recorded. */
  summary(): Partial<Record<OperationKind, LatencySummary>> {
    const result: Partial<Record<OperationKind, LatencySummary>> = {};
    for (let k = 0; k < KINDS.length; k++) {
      const count = this.totals[k]!;
      if (count === 0) continue;
      result[KINDS[k]!] = {
        count,
        p50: this.percentile(k, 0.5),
        p90: this.percentile(k, 0.9),
        p99: this.percentile(k, 0.99),
        max: this.maxima[k]! / 1000,
      };
    }
    return result;
  }

  /** The upper edge of the bucket where the `fraction`-th operation of kind `k` falls, in µs (at most the max). */
  private percentile(k: number, fraction: number): number {
    const wanted = Math.max(1, Math.ceil(this.totals[k]! * fraction));
    let seen = 0;
    for (let bucket = 0; bucket < BUCKETS; bucket++) {
      seen += this.counts[k * BUCKETS + bucket]!;
      if (seen >= wanted) return Math.min(2 ** ((bucket + 1) / PER_OCTAVE), this.maxima[k]!) / 1000;
    }
    return this.maxima[k]! / 1000;
  }
}

function kindIndex(kind: OperationKind): number {
  switch (kind) {
    case "write": return 0;
    case "read": return 1;
    case "send": return 2;
    case "recv": return 3;
    case "receive": return 4;
    case "fetchAdd": return 5;
    default: return 6;
  }
}
