// The contract between bench/index.ts and the suite files in bench/suites/*.ts.
// A suite default-exports { name, setup(ctx) }; setup registers mitata benches (bench, group,
// summary from "mitata") and may return a cleanup function, called after the run.

/** A figure measured outside mitata (throughput, growth cost, JIT tier, ...). */
export interface Figure {
  suite: string;
  name: string;
  value: number;
  unit: string;
  note?: string;
}

/** The statistics of one mitata benchmark, in nanoseconds per iteration. */
export interface BenchStats {
  readonly p50: number;
  readonly p99: number;
  readonly avg: number;
  readonly min: number;
  readonly max: number;
  /** Iterations measured. */
  readonly ticks: number;
}

/**
 * A cell of a ratio table: baseline p50 / candidate p50, both bench names. Tables are printed
 * with `row` down and `column` across, e.g. size class by provider.
 */
export interface Comparison {
  table: string;
  row: string;
  column: string;
  baseline: string;
  candidate: string;
}

/** A provider a suite measured, for the report header and the JSON. */
export interface ProviderUse {
  suite: string;
  label: string;
  description: string;
  info?: Record<string, unknown>;
}

/** The headline ratio table (pool suite); bench/chart.ts draws it and prints it for the README. */
export const POOL_RATIO_TABLE = "raw registration / pool get+release, by size and provider";

export interface BenchContext {
  /** `--quick`: CI smoke run; keep custom measurements short. */
  readonly quick: boolean;
  /** libfabric loaded on this machine. */
  readonly fabric: boolean;
  /** A figure measured outside mitata; goes into the summary and the JSON. */
  record(figure: Figure): void;
  /** Declares a ratio-table cell, computed after the run. */
  compare(comparison: Comparison): void;
  /** Says which provider a suite used (printed before the run, kept in the JSON). */
  provider(use: ProviderUse): void;
  /** A benchmark's statistics by name; undefined before the run ends (use it in cleanup). */
  result(bench: string): BenchStats | undefined;
}

export type Cleanup = () => void;

export interface Suite {
  name: string;
  setup(ctx: BenchContext): void | Cleanup | Promise<void | Cleanup>;
}
