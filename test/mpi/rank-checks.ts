// The checks one rank of an MPI test job records and reports (test/mpi/run.ts reads the reports):
// a failed check never throws, so every rank still makes the same MPI calls and the job does not
// hang on a rank that gave up.
import { writeFileSync } from "node:fs";

interface Check { name: string; ok: boolean; detail?: string }

/** This rank's checks and facts, written to a file at the end. */
export class RankChecks {
  readonly checks: Check[] = [];
  readonly facts: Record<string, unknown> = {};

  constructor(readonly rank: number) {}

  check(name: string, ok: boolean, detail?: unknown): void {
    this.checks.push({ name, ok, ...(ok ? {} : { detail: typeof detail === "string" ? detail : safeJson(detail) }) });
  }

  /** Runs `f`, expecting it to throw something `accept` takes; returns what was thrown. */
  throws(name: string, f: () => unknown, accept: (e: unknown) => boolean): unknown {
    try {
      f();
    } catch (e) {
      this.check(name, accept(e), String(e));
      return e;
    }
    this.check(name, false, "did not throw");
    return undefined;
  }

  /** Awaits `p`, expecting it to reject with something `accept` takes; returns the reason. */
  async rejects(name: string, p: () => Promise<unknown>, accept: (e: unknown) => boolean): Promise<unknown> {
    try {
      await p();
      this.check(name, false, "did not reject");
    } catch (e) {
      this.check(name, accept(e), String(e));
      return e;
    }
    return undefined;
  }

  /**
   * Writes this rank's result to ALLOCTOOLS_MPI_RESULT_DIR/rank-<rank>.json when test/mpi/run.ts
   * set it (mpirun may split a long stdout line), else prints a RESULT line.
   */
  report(): void {
    const json = JSON.stringify({ rank: this.rank, checks: this.checks, facts: this.facts });
    const dir = process.env.ALLOCTOOLS_MPI_RESULT_DIR;
    if (dir) writeFileSync(`${dir}/rank-${this.rank}.json`, json);
    else console.log(`RESULT ${json}`);
  }
}

function safeJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === "bigint" ? `${v}n` : v));
}
