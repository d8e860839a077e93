// Heap cells a call leaves behind, counted by type (bun:jsc heapStats), for the tests that check a
// hot path allocates nothing but what it returns (RMA forms, messages, atomics, every transport).
//
// The engine's own bookkeeping is not counted: structures, property tables and code blocks are
// made when code is compiled or a shape is first seen, not per call, and in a long test run (the
// whole suite in one process) the JIT makes some while a measurement runs.
import { fullGC, heapStats } from "bun:jsc";

/** Cell types of the JavaScript engine's own metadata. */
const ENGINE_METADATA = /^(Structure|StructureChain|PropertyTable|.*CodeBlock|.*Executable|SymbolTable|JSLexicalEnvironment|Program|.*Cache.*)$/;

/** Cells per call of `op` over `n` calls (after a warm-up), by type, net of an empty loop's. */
export function cellsPerCall(op: () => void, n: number): { perCall: number; types: Record<string, number> } {
  for (let i = 0; i < n; i++) op();
  const delta = (f: () => void) => {
    fullGC();
    const before = heapStats().objectTypeCounts;
    for (let i = 0; i < n; i++) f();
    const after = heapStats().objectTypeCounts;
    const types: Record<string, number> = {};
    for (const [k, v] of Object.entries(after)) {
      const d = v - (before[k] ?? 0);
      if (d > 0 && !ENGINE_METADATA.test(k)) types[k] = d;
    }
    return types;
  };
  const base = delta(() => {});
  const measured = delta(op);
  const types: Record<string, number> = {};
  let total = 0;
  for (const [k, v] of Object.entries(measured)) {
    const net = v - (base[k] ?? 0);
    if (net > 0) { types[k] = net; total += net; }
  }
  return { perCall: total / n, types };
}

/** The types that account for at least a tenth of a cell per call (the rest is the snapshots' own noise). */
export function perCallTypes(result: { types: Record<string, number> }, n: number): Record<string, number> {
  return Object.fromEntries(Object.entries(result.types).filter(([, count]) => count >= n / 10).map(([type, count]) => [type, Math.round((count / n) * 10) / 10]));
}
