// Heap cells a call leaves behind, counted by type (bun:jsc heapStats), for the tests that check a
// hot path allocates nothing but what it returns (as test/rma/forms.test.ts does for RMA).
import { fullGC, heapStats } from "bun:jsc";

/** Cells per call of `op` over `n` calls (after a warm-up), minus an empty loop's, and their types. */
export function cellsPerCall(op: () => void, n: number): { perCall: number; types: Record<string, number> } {
  for (let i = 0; i < n; i++) op();
  const delta = (f: () => void) => {
    fullGC();
    const before = heapStats().objectTypeCounts;
    for (let i = 0; i < n; i++) f();
    const after = heapStats().objectTypeCounts;
    const types: Record<string, number> = {};
    let total = 0;
    for (const [k, v] of Object.entries(after)) {
      const d = v - (before[k] ?? 0);
      if (d > 0) { types[k] = d; total += d; }
    }
    return { total, types };
  };
  const base = delta(() => {});
  const measured = delta(op);
  return { perCall: Math.max(0, measured.total - base.total) / n, types: measured.types };
}

/** The types that account for at least a tenth of a cell per call (the rest is the snapshots' own noise). */
export function perCallTypes(result: { types: Record<string, number> }, n: number): Record<string, number> {
  return Object.fromEntries(Object.entries(result.types).filter(([, count]) => count >= n / 10).map(([type, count]) => [type, Math.round((count / n) * 10) / 10]));
}
