// The message tests that agents in separate processes run, whatever separates them (nothing but
// the process, or network namespaces), over tcp and shm: A and C send to B. Every pairing of forms, the sizes
// around the thresholds posted first and late, truncation, ANY_SOURCE with two sending processes,
// directed receives, and order per (pair, tag) across eager and rendezvous.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { RXM_EAGER_LIMIT } from "./message-pair.ts";
import type { Got, MessageAgent } from "./message-agents.ts";

const MiB = 1 << 20;

export interface ProcessSetup {
  /** Starts senders A and C and receiver B. */
  start(): Promise<{ a: MessageAgent; b: MessageAgent; c: MessageAgent }>;
  /** The largest message tried. */
  largest: number;
}

/** A message that arrived whole, in order, from `source`. */
const intact = (source: string, tag: number, length: number): Got => ({ source, tag, length, mismatch: -1, guard: -1 });

export function processMessageTests(setup: ProcessSetup): void {
  let a: MessageAgent;
  let b: MessageAgent;
  let c: MessageAgent;
  /** B as A's and C's peer; A and C as B's. */
  let bAtA: string;
  let bAtC: string;
  let aAtB: string;
  let cAtB: string;

  beforeAll(async () => {
    ({ a, b, c } = await setup.start());
    [bAtA, bAtC, aAtB, cAtB] = await Promise.all([a.insert(b), c.insert(b), b.insert(a), b.insert(c)]);
  }, 60_000);
  afterAll(async () => {
    const codes = await Promise.all([a?.stop(), b?.stop(), c?.stop()]);
    expect(codes).toEqual([0, 0, 0]);
  }, 30_000);

  /** A sends `sizes` with `tag` while B receives them (B's receive command goes first unless `lateMs`). */
  async function exchange(sizes: number[], tag: number, sendForm: string, receiveForm: string, options: { capacities?: number[]; lateMs?: number; seedBase?: number } = {}) {
    const received = b.request({ op: "recv", peer: aAtB, capacities: options.capacities ?? sizes, tag, form: receiveForm, seedBase: options.seedBase ?? tag, lateMs: options.lateMs });
    const sent = a.request({ op: "send", peer: bAtA, sizes, tag, form: sendForm, seedBase: options.seedBase ?? tag });
    const [got] = await Promise.all([received, sent]);
    return got.got!;
  }

  test("every pairing of forms moves the bytes across processes (promise, sync, post; receive() and messages())", async () => {
    const inject = a.ready.injectSize;
    const sizes = [1, inject + 1, RXM_EAGER_LIMIT + 1, 200_000];
    const pairings = [["promise", "promise"], ["sync", "sync"], ["post", "post"], ["sync", "promise"], ["promise", "receive"], ["post", "messages"]] as const;
    for (const [i, [sendForm, receiveForm]] of pairings.entries()) {
      const tag = 100 + i;
      const got = await exchange(sizes, tag, sendForm, receiveForm);
      expect({ pairing: `${sendForm} → ${receiveForm}`, got }).toEqual({ pairing: `${sendForm} → ${receiveForm}`, got: sizes.map((size) => intact(aAtB, tag, size)) });
    }
  }, 120_000);

  test("sizes around the thresholds, up to the largest, receives posted first and late (the messages waiting unexpected)", async () => {
    const inject = a.ready.injectSize;
    const sizes = [...new Set([0, 1, inject, inject + 1, RXM_EAGER_LIMIT, RXM_EAGER_LIMIT + 1, 4 * MiB, setup.largest])].sort((x, y) => x - y);
    for (const lateMs of [0, 300]) {
      const got = await exchange(sizes, 110 + lateMs, "post", "promise", { lateMs });
      expect(got).toEqual(sizes.map((size) => intact(aAtB, 110 + lateMs, size)));
    }
  }, 120_000);

  test("truncation across processes: TRUNCATED naming both lengths, the receive's bytes exact, nothing past them", async () => {
    const sizes = [2, RXM_EAGER_LIMIT + 1, 4 * MiB];
    const capacities = [1, 100, RXM_EAGER_LIMIT + 1];
    for (const lateMs of [0, 300]) {
      const got = await exchange(sizes, 120, "promise", "promise", { capacities, lateMs });
      expect(got.map((g) => [g.mismatch, g.guard, g.error?.startsWith("TRUNCATED")])).toEqual(sizes.map(() => [-1, -1, true]));
      got.forEach((g, i) => expect(g.error).toContain(`${sizes[i]} bytes`));
      got.forEach((g, i) => expect(g.error).toContain(`${capacities[i]} bytes`));
    }
  }, 60_000);

  test("ANY_SOURCE with two sending processes: every message once, each sender's in its order; a directed receive skips the other's waiting message", async () => {
    const tag = 130;
    const sizes = [100, RXM_EAGER_LIMIT + 1, 100, 300_000];
    const received = b.request({ op: "recv", peer: "any", capacities: [...sizes, ...sizes].map(() => 300_000), tag, form: "post", seedBase: 0, perSource: true });
    await Promise.all([
      a.request({ op: "send", peer: bAtA, sizes, tag, form: "promise", seedBase: 0 }),
      c.request({ op: "send", peer: bAtC, sizes, tag, form: "promise", seedBase: 0 }),
    ]);
    const got = (await received).got!;
    expect(got.every((g) => g.mismatch === -1 && g.guard === -1)).toBe(true);
    expect(got.filter((g) => g.source === aAtB).map((g) => g.length)).toEqual(sizes);
    expect(got.filter((g) => g.source === cAtB).map((g) => g.length)).toEqual(sizes);
    // Both wait unexpected; B asks for C's first.
    await a.request({ op: "send", peer: bAtA, sizes: [64], tag: 131, form: "promise", seedBase: 1 });
    await c.request({ op: "send", peer: bAtC, sizes: [64], tag: 131, form: "promise", seedBase: 2 });
    const fromC = await b.request({ op: "recv", peer: cAtB, capacities: [64], tag: 131, form: "promise", seedBase: 2, lateMs: 200 });
    const fromA = await b.request({ op: "recv", peer: aAtB, capacities: [64], tag: 131, form: "promise", seedBase: 1 });
    expect([fromC.got, fromA.got]).toEqual([[intact(cAtB, 131, 64)], [intact(aAtB, 131, 64)]]);
  }, 60_000);

  test("order per (pair, tag) across inject, eager, SAR and rendezvous sizes, receives posted first and late", async () => {
    const inject = a.ready.injectSize;
    const sizes = [1, RXM_EAGER_LIMIT, RXM_EAGER_LIMIT + 1, 2 * MiB, inject, 200_000, 0, RXM_EAGER_LIMIT + 1, 1, 2 * MiB, inject + 1, 5];
    for (const lateMs of [0, 300]) {
      const got = await exchange(sizes, 140, "post", "post", { capacities: sizes.map(() => 2 * MiB), lateMs });
      expect(got).toEqual(sizes.map((size) => intact(aAtB, 140, size)));
    }
  }, 60_000);
}
