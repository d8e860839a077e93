// The library side of the atomics bench: each form timed alone, operation by operation, on one
// 64-bit word of a target, each waited for before the next, exactly as the C programs of bench/c/
// (fabric-atomics.c, ucx-atomics.c, mpi-atomics.c) time theirs; one JSON line per form, in the C
// programs' format (bench/c/latency-samples.h): {ok, operation, iterations, p50, mean, p99}, ns.
import type { EndpointEngine, RemoteRegion } from "../../lib/index.ts";

/** The forms measured, by the name each JSON line carries. */
export const FORMS = ["fetchAddSync", "compareSwapSync", "postFetchAdd+fetched"] as const;
export type Form = (typeof FORMS)[number];

/** One form's figures, or the C side's for its operation (same shape). */
export interface Latency {
  ok: true;
  operation: string;
  iterations: number;
  p50: number;
  mean: number;
  p99: number;
}

/** One operation of `form`; returns the value found. */
function once<Peer extends number | bigint>(endpoint: EndpointEngine<Peer>, form: Form, peer: Peer, word: RemoteRegion, found: bigint): bigint {
  if (form === "fetchAddSync") return endpoint.fetchAddSync(peer, word, 1n);
  // Expects what the last one found, swaps in one more: it succeeds with one initiator, as C's does.
  if (form === "compareSwapSync") return endpoint.compareSwapSync(peer, word, found, found + 1n);
  const id = endpoint.postFetchAdd(peer, word, 1n);
  for (;;) {
    const value = endpoint.fetched(id);
    if (value !== null) return value;
    endpoint.poll();
  }
}

/** `warmup` then `iterations` operations of `form`, each timed with Bun.nanoseconds(). */
export function measure<Peer extends number | bigint>(endpoint: EndpointEngine<Peer>, form: Form, peer: Peer,
  word: RemoteRegion, iterations: number, warmup: number): Latency {
  const samples = new Float64Array(iterations);
  let found = endpoint.fetchAddSync(peer, word, 0n);
  for (let i = -warmup; i < iterations; i++) {
    const start = Bun.nanoseconds();
    found = once(endpoint, form, peer, word, found);
    if (i >= 0) samples[i] = Bun.nanoseconds() - start;
  }
  samples.sort();
  let sum = 0;
  for (const s of samples) sum += s;
  return { ok: true, operation: form, iterations, p50: samples[iterations >> 1]!, mean: sum / iterations, p99: samples[Math.floor(iterations * 0.99)]! };
}

/**
 * Every form of `forms` warmed up first (`warmup` operations each: the first form timed would
 * otherwise carry the others' JIT compilation), then each measured after `warmup` more; one JSON
 * line each on stdout.
 */
export function measureAll<Peer extends number | bigint>(endpoint: EndpointEngine<Peer>, forms: readonly Form[], peer: Peer,
  word: RemoteRegion, iterations: number, warmup: number): void {
  for (const form of forms) measure(endpoint, form, peer, word, Math.max(1, warmup), 0);
  for (const form of forms) {
    Bun.gc(true); // no collection left over from the last form inside this one's loop
    console.log(JSON.stringify(measure(endpoint, form, peer, word, iterations, warmup)));
  }
}

/** Parses a comma-separated list of forms; throws naming the known ones. */
export function parseForms(text: string): Form[] {
  const forms = text.split(",");
  for (const f of forms) if (!(FORMS as readonly string[]).includes(f)) throw new Error(`unknown form ${f}: one of ${FORMS.join(", ")}`);
  return forms as Form[];
}
