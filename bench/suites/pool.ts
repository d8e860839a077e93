// The headline: a pool get+release against raw registration of the same size through the same
// provider (host: mmap+mlock+munlock+munmap; libfabric: fi_mr_reg+fi_close), then the temporary
// path, growth, the allocator and the fancy pointer. After the run it checks that the hot path
// reached the optimizing JIT tiers, that it allocates nothing, and how each target fared.
import { bench, do_not_optimize, group, summary } from "mitata";
import {
  DEFAULT_ACCESS, DEFAULT_STACKS, HostProvider, LibfabricProvider, MemoryBlockAllocator, MemoryPool, MemoryPoolStack,
  MemoryRegionAllocator, MemoryRegionPointer, SIZE_CLASSES, type MemoryPoolOptions, type RegionProvider,
} from "../../lib/index.ts";
import { POOL_RATIO_TABLE, type BenchContext, type Suite } from "../context.ts";
import { cellsPerOp, compiles, tierShare } from "../jit.ts";

const SUITE = "pool";
const KiB = 1024;
const MiB = 1024 * KiB;

/** One size per class of DEFAULT_STACKS (small 1 KiB, medium 16 KiB, large 64 KiB, huge 1 MiB). */
export const SIZES = [
  { label: "64 B", bytes: 64 },
  { label: "4 KiB", bytes: 4 * KiB },
  { label: "64 KiB", bytes: 64 * KiB },
  { label: "1 MiB", bytes: MiB },
] as const;
/** Above the huge class: a temporary region, registered for one use. */
const TEMPORARY = { label: "2 MiB", bytes: 2 * MiB } as const;

const RATIO_TABLE = POOL_RATIO_TABLE;

/** A provider under test and what raw registration means on it. */
interface Subject {
  label: string;
  provider: RegionProvider;
  /** What "raw" costs on this provider, for the column heading. */
  raw: string;
}

// Names are the keys the summary, JSON, chart and README use: keep them stable.
export const names = {
  pool: (p: string, size: string) => `pool ${p} ${size}`,
  raw: (p: string, size: string) => `raw ${p} ${size}`,
  pin: (size: string) => `pin host ${size}`,
  temporary: (p: string) => `temporary ${p} ${TEMPORARY.label}`,
  rawTemporary: (p: string) => `raw ${p} ${TEMPORARY.label}`,
  allocatorSmall: "allocator allocate+deallocate Float64Array×8",
  allocatorPage: "allocator allocate+deallocate Uint8Array×4096",
  pointerAdd: "pointer add(8)",
  pointerAddress: "pointer .address + 8 (no pointer object)",
  pointerNumber: "pointer +p (toPrimitive number)",
  pointerString: "pointer `${p}` (toPrimitive string)",
};

/** A pool holding `count` regions of the class `bytes` falls in and nothing else: little pinned memory. */
function onlyClass(bytes: number, count: number, growCount?: number): MemoryPoolOptions {
  const o: MemoryPoolOptions = {};
  for (const name of SIZE_CLASSES) o[name] = { initialCount: 0 };
  const cls = SIZE_CLASSES.find((n) => bytes <= DEFAULT_STACKS[n].chunkSize);
  if (cls !== undefined) o[cls] = { initialCount: count, ...(growCount === undefined ? {} : { growCount }) };
  return o;
}

function openSubjects(ctx: BenchContext): Subject[] {
  const host = new HostProvider();
  const subjects: Subject[] = [{ label: "host", provider: host, raw: "mmap+mlock+munlock+munmap" }];
  ctx.provider({ suite: SUITE, label: "host", description: "built-in host provider: mlock'd memory, unique 64-bit keys, virtual addressing" });
  if (!ctx.fabric) return subjects;
  const wanted = [
    { label: "tcp", options: { provider: "tcp", node: "127.0.0.1" } },
    { label: "shm", options: { provider: "shm" } },
  ];
  for (const { label, options } of wanted) {
    try {
      const p = LibfabricProvider.open(options);
      const modes = p.info.mrModeNames.join("|") || "mr_mode 0";
      subjects.push({ label, provider: p, raw: "fi_mr_reg+fi_close" });
      ctx.provider({
        suite: SUITE, label,
        description: `libfabric ${p.info.version} provider ${p.name} (${modes}, ${p.virtualAddressing ? "virtual" : "offset"} addressing, ${p.info.keySize}-byte keys)`,
        info: { provider: p.info.provider, fabric: p.info.fabric, domain: p.info.domain, mrMode: p.info.mrMode, mrModeNames: p.info.mrModeNames, keySize: p.info.keySize, version: p.info.version },
      });
    } catch (e) {
      if (process.env.ALLOCTOOLS_REQUIRE_LIBFABRIC === "1") throw e;
      ctx.provider({ suite: SUITE, label, description: `not available, skipped: ${(e as Error).message}` });
    }
  }
  return subjects;
}

function registerHeadline(ctx: BenchContext, t: Subject): void {
  const blocks = new MemoryBlockAllocator();
  // One group per size, each a mitata summary: its header names provider, size and what raw means.
  for (const size of SIZES) {
    const n = size.bytes;
    group(`${t.label} ${size.label}: pool get+release vs raw ${t.raw}`, () => {
      summary(() => {
        bench(names.pool(t.label, size.label), function* () {
          const pool = new MemoryPool(t.provider, onlyClass(n, 1));
          yield () => pool.releaseRegion(pool.getRegion(n));
          pool.close();
        });
        if (t.provider instanceof HostProvider) {
          // Raw on the host: what a pool saves is mapping, pinning and unmapping (MemoryBlockAllocator).
          bench(names.raw(t.label, size.label), function* () {
            yield () => blocks.allocate(n).free();
          });
          // And pinning alone (mlock+munlock of mapped memory): the host provider's register.
          const host = t.provider;
          bench(names.pin(size.label), function* () {
            const block = blocks.allocate(n, { lock: false });
            yield () => host.deregister(host.register(block.address, n, DEFAULT_ACCESS));
            block.free();
          });
        } else {
          const p = t.provider;
          bench(names.raw(t.label, size.label), function* () {
            const block = blocks.allocate(n);
            yield () => p.deregister(p.register(block.address, n, DEFAULT_ACCESS));
            block.free();
          });
        }
      });
    });
    ctx.compare({ table: RATIO_TABLE, row: size.label, column: `${t.label} (${t.raw})`, baseline: names.raw(t.label, size.label), candidate: names.pool(t.label, size.label) });
    if (t.provider instanceof HostProvider) {
      ctx.compare({ table: RATIO_TABLE, row: size.label, column: "host (mlock+munlock only)", baseline: names.pin(size.label), candidate: names.pool(t.label, size.label) });
    }
  }
  // Above the huge class the pool registers a temporary region: no better than raw, by design.
  group(`${t.label} ${TEMPORARY.label}: temporary region (above the huge class) vs raw ${t.raw}`, () => {
    summary(() => {
      const n = TEMPORARY.bytes;
      bench(names.temporary(t.label), function* () {
        const pool = new MemoryPool(t.provider, onlyClass(n, 0));
        yield () => pool.releaseRegion(pool.getRegion(n));
        pool.close();
      });
      if (t.provider instanceof HostProvider) {
        bench(names.rawTemporary(t.label), function* () {
          yield () => blocks.allocate(n).free();
        });
      } else {
        const p = t.provider;
        bench(names.rawTemporary(t.label), function* () {
          const block = blocks.allocate(n);
          yield () => p.deregister(p.register(block.address, n, DEFAULT_ACCESS));
          block.free();
        });
      }
    });
  });
  ctx.compare({ table: RATIO_TABLE, row: `${TEMPORARY.label} (temporary region)`, column: `${t.label} (${t.raw})`, baseline: names.rawTemporary(t.label), candidate: names.temporary(t.label) });
}

/** A get that grows its stack: one block mapped, pinned and registered, and its regions made. */
function measureGrowth(ctx: BenchContext, t: Subject): void {
  const cases = [
    { cls: "small", bytes: 64, growCount: 1, reps: 100 },
    { cls: "small", bytes: 64, growCount: DEFAULT_STACKS.small.growCount, reps: 40 },
    { cls: "huge", bytes: MiB, growCount: 1, reps: 30 },
  ] as const;
  for (const c of cases) {
    const reps = ctx.quick ? 3 : c.reps;
    const times: number[] = [];
    for (let i = 0; i < reps; i++) {
      // A fresh empty pool per growth keeps the pinned total at one block.
      const pool = new MemoryPool(t.provider, onlyClass(c.bytes, 0, c.growCount));
      const t0 = Bun.nanoseconds();
      const region = pool.getRegion(c.bytes);
      times.push(Bun.nanoseconds() - t0);
      pool.releaseRegion(region);
      pool.close();
    }
    times.sort((a, b) => a - b);
    const p50 = times[Math.floor((times.length - 1) * 0.5)]!;
    const p99 = times[Math.floor((times.length - 1) * 0.99)]!;
    const chunk = DEFAULT_STACKS[c.cls].chunkSize;
    ctx.record({
      suite: SUITE, name: `growth ${t.label}: get that adds ${c.growCount} × ${chunk >= MiB ? `${chunk / MiB} MiB` : `${chunk / KiB} KiB`} (${c.cls})`,
      value: p50, unit: "ns", note: `p50 of ${reps}; p99 ${(p99 / 1e3).toFixed(1)} µs; one mmap+mlock+register per growth`,
    });
  }
}

function registerAllocatorAndPointer(host: RegionProvider): void {
  group("allocator and fancy pointer (host pool)", () => {
    bench(names.allocatorSmall, function* () {
      const pool = new MemoryPool(host, onlyClass(64, 1));
      const a = new MemoryRegionAllocator(pool, Float64Array);
      yield () => a.deallocate(a.allocate(8));
      pool.close();
    });
    bench(names.allocatorPage, function* () {
      const pool = new MemoryPool(host, onlyClass(4096, 1));
      const a = new MemoryRegionAllocator(pool, Uint8Array);
      yield () => a.deallocate(a.allocate(4096));
      pool.close();
    });
    bench(names.pointerAdd, function* () {
      const pool = new MemoryPool(host, onlyClass(4096, 1));
      const p = pool.getRegion(4096).pointer(0);
      yield () => do_not_optimize(p.add(8));
      pool.close();
    });
    // For scale: address arithmetic without a new pointer object.
    bench(names.pointerAddress, function* () {
      const pool = new MemoryPool(host, onlyClass(4096, 1));
      const p = pool.getRegion(4096).pointer(0);
      yield () => do_not_optimize(p.address + 8);
      pool.close();
    });
    bench(names.pointerNumber, function* () {
      const pool = new MemoryPool(host, onlyClass(4096, 1));
      const p = pool.getRegion(4096).pointer(16);
      yield () => do_not_optimize(+p);
      pool.close();
    });
    bench(names.pointerString, function* () {
      const pool = new MemoryPool(host, onlyClass(4096, 1));
      const p = pool.getRegion(4096).pointer(16);
      yield () => do_not_optimize(`${p}`);
      pool.close();
    });
  });
}

/** After the run: JIT tiers and heap allocations of the hot paths, recorded as figures. */
function checkHotPath(ctx: BenchContext): void {
  const host = new HostProvider();
  const pool = new MemoryPool(host, { small: { initialCount: 1 }, medium: { initialCount: 1 }, large: { initialCount: 1 }, huge: { initialCount: 1 } });
  const allocator = new MemoryRegionAllocator(pool, Float64Array);
  const pointer = pool.getRegion(4096).pointer(0);
  let sink: unknown;
  const ops: { name: string; op: () => void }[] = [
    { name: "pool get+release 64 B", op: () => pool.releaseRegion(pool.getRegion(64)) },
    { name: "pool get+release 1 MiB", op: () => pool.releaseRegion(pool.getRegion(MiB)) },
    { name: "allocator allocate+deallocate", op: () => allocator.deallocate(allocator.allocate(8)) },
    { name: "pointer add(8)", op: () => { sink = pointer.add(8); } },
    { name: "pointer +p", op: () => { sink = +pointer; } },
    // Positive control: shows the allocation check sees one cell per call when there is one.
    { name: "control: new Uint8Array(64)", op: () => { sink = new Uint8Array(64); } },
  ];
  const ms = ctx.quick ? 40 : 300;
  for (const { name, op } of ops) {
    if (!name.startsWith("control")) {
      const t = tierShare(op, ms);
      const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
      ctx.record({
        suite: SUITE, name: `JIT tier: ${name}`, value: (t.ftl + t.dfg) * 100, unit: "% samples in DFG/FTL",
        note: `FTL ${pct(t.ftl)}, DFG ${pct(t.dfg)}, Baseline ${pct(t.baseline)}, LLInt ${pct(t.llint)} of ${t.samples} samples` +
          (t.inlined.length > 0 ? `; inlined: ${t.inlined.join(", ")}` : ""),
      });
    }
    const a = cellsPerOp(op);
    const types = Object.entries(a.types).map(([k, v]) => `${k} ${v}`).join(", ");
    ctx.record({ suite: SUITE, name: `heap cells per call: ${name}`, value: a.perOp, unit: "cells", note: types ? `new cells: ${types}` : "nothing allocated" });
  }
  do_not_optimize(sink);
  const methods: [string, (...args: never[]) => unknown][] = [
    ["MemoryPool#getRegion", MemoryPool.prototype.getRegion],
    ["MemoryPool#releaseRegion", MemoryPool.prototype.releaseRegion],
    ["MemoryPoolStack#pop", MemoryPoolStack.prototype.pop],
    ["MemoryPoolStack#push", MemoryPoolStack.prototype.push],
    ["MemoryRegionAllocator#allocate", MemoryRegionAllocator.prototype.allocate],
    ["MemoryRegionAllocator#deallocate", MemoryRegionAllocator.prototype.deallocate],
    ["MemoryRegionPointer#add", MemoryRegionPointer.prototype.add],
  ];
  for (const [name, f] of methods) {
    const c = compiles(f);
    ctx.record({
      suite: SUITE, name: `numberOfDFGCompiles ${name}`, value: c.dfgCompiles, unit: "",
      note: `${c.dfgCompiles >= 1 ? "has DFG/FTL code of its own" : "no optimized code of its own: it runs inlined into optimized callers (see the JIT tier figures)"}; reoptimizationRetryCount ${c.reoptimizations}`,
    });
  }
  pool.close();
  host.close();
}

function checkTargets(ctx: BenchContext, subjects: Subject[]): void {
  const p50 = (name: string) => ctx.result(name)?.p50;
  const verdict = (ok: boolean | undefined, goal: string) => `target ${goal}: ${ok === undefined ? "not measured" : ok ? "met" : "MISSED"}`;
  for (const t of subjects) {
    const pairs = SIZES.map((s) => ({ s, v: p50(names.pool(t.label, s.label)) }));
    const measured = pairs.filter((x) => x.v !== undefined) as { s: (typeof SIZES)[number]; v: number }[];
    if (measured.length === 0) continue;
    const worst = measured.reduce((a, b) => (b.v > a.v ? b : a));
    ctx.record({
      suite: SUITE, name: `target: get+release p50, slowest class (${t.label})`, value: worst.v, unit: "ns",
      note: `${verdict(worst.v <= 20, "≤ 20 ns every class")}; slowest is ${worst.s.label}; ${measured.map((x) => `${x.s.label} ${x.v.toFixed(1)}`).join(", ")} ns`,
    });
  }
  const ratios = (label: string) => SIZES.map((s) => {
    const raw = p50(names.raw(label, s.label));
    const pool = p50(names.pool(label, s.label));
    return raw !== undefined && pool !== undefined ? raw / pool : undefined;
  }).filter((r): r is number => r !== undefined);
  const tcp = ratios("tcp");
  if (tcp.length > 0) {
    const min = Math.min(...tcp);
    ctx.record({ suite: SUITE, name: "target: pool vs raw tcp registration, smallest ratio", value: min, unit: "×", note: verdict(min >= 20, "≥ 20×") });
  }
  const rawMiB = p50(names.raw("host", "1 MiB"));
  const poolMiB = p50(names.pool("host", "1 MiB"));
  if (rawMiB !== undefined && poolMiB !== undefined) {
    const pin = p50(names.pin("1 MiB"));
    ctx.record({
      suite: SUITE, name: "target: pool vs pinning 1 MiB on host", value: rawMiB / poolMiB, unit: "×",
      note: `${verdict(rawMiB / poolMiB >= 1000, "≥ 1000×")}${pin !== undefined ? `; against mlock+munlock alone ${Math.round(pin / poolMiB).toLocaleString("en-US")}×` : ""}`,
    });
  }
  const alloc = [p50(names.allocatorSmall), p50(names.allocatorPage)].filter((x): x is number => x !== undefined);
  if (alloc.length > 0) {
    const max = Math.max(...alloc);
    ctx.record({ suite: SUITE, name: "target: allocator allocate+deallocate p50", value: max, unit: "ns", note: verdict(max <= 30, "≤ 30 ns") });
  }
  const add = p50(names.pointerAdd);
  if (add !== undefined) ctx.record({ suite: SUITE, name: "target: pointer add p50", value: add, unit: "ns", note: verdict(add <= 10, "≤ 10 ns") });
}

const suite: Suite = {
  name: SUITE,
  setup(ctx) {
    const subjects = openSubjects(ctx);
    for (const t of subjects) registerHeadline(ctx, t);
    registerAllocatorAndPointer(subjects[0]!.provider);
    for (const t of subjects) measureGrowth(ctx, t);
    return () => {
      checkTargets(ctx, subjects);
      checkHotPath(ctx);
      for (const t of subjects) t.provider.close();
    };
  },
};
export default suite;
