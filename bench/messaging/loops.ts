// The library's side of the messaging benchmark: the same loops as the C references
// (bench/c/tagged-pair.c, ucx-tagged-pair.c, mpi-messages.c), over any endpoint, for either role. Memory is
// one pooled region reused by every message (its registration warm); nothing is allocated per
// iteration but what the API returns (the Received of a receive).
import type { AnyEndpoint, MemoryRegion } from "../../lib/index.ts";
import { cellsPerCall } from "../../test/heap-cells.ts";

/** Tags of the loops (the C references use the same). */
export const HELLO_TAG = 1;
export const DATA_TAG = 7;
export const ACK_TAG = 8;
/** The ack of a window: osu_bw's 4 bytes. */
export const ACK_BYTES = 4;

type Peer = number | bigint;

/** What one side needs: its endpoint, the peer, the region every message uses. */
export interface LoopSide {
  readonly endpoint: AnyEndpoint;
  readonly peer: Peer;
  readonly region: MemoryRegion;
}

/** Half round trips of a ping-pong, ns: p50, mean and p99 of the timed iterations. */
export interface LatencyResult {
  medianNs: number;
  meanNs: number;
  p99Ns: number;
  iterations: number;
}

/** A window test's result: osu_bw's bandwidth (MB of 1e6 bytes) and the message rate. */
export interface WindowResult {
  seconds: number;
  mbPerSec: number;
  messagesPerSec: number;
}

/**
 * One sendSync + recvSync ping-pong iteration of the initiator (send, then receive the answer), or
 * of the responder (receive, then answer): the order of the C loop.
 */
export function pingPongSync(side: LoopSide, size: number, initiator: boolean): void {
  const { endpoint, peer, region } = side;
  if (initiator) {
    endpoint.sendSync(region, size, peer, DATA_TAG);
    endpoint.recvSync(region, size, peer, DATA_TAG);
  } else {
    endpoint.recvSync(region, size, peer, DATA_TAG);
    endpoint.sendSync(region, size, peer, DATA_TAG);
  }
}

/** The same with the promise forms, each awaited. */
export async function pingPongPromise(side: LoopSide, size: number, initiator: boolean): Promise<void> {
  const { endpoint, peer, region } = side;
  if (initiator) {
    await endpoint.send(region, size, peer, DATA_TAG);
    await endpoint.recv(region, size, peer, DATA_TAG);
  } else {
    await endpoint.recv(region, size, peer, DATA_TAG);
    await endpoint.send(region, size, peer, DATA_TAG);
  }
}

/** Half round trips of `iterations` timed ping-pongs after `warmup` untimed ones (the initiator's figure). */
export async function latency(side: LoopSide, form: "sync" | "promise", size: number, iterations: number, warmup: number, initiator: boolean): Promise<LatencyResult> {
  const samples = new Float64Array(iterations);
  if (form === "sync") {
    for (let i = 0; i < warmup; i++) pingPongSync(side, size, initiator);
    for (let i = 0; i < iterations; i++) {
      const start = Bun.nanoseconds();
      pingPongSync(side, size, initiator);
      samples[i] = Bun.nanoseconds() - start;
    }
  } else {
    for (let i = 0; i < warmup; i++) await pingPongPromise(side, size, initiator);
    for (let i = 0; i < iterations; i++) {
      const start = Bun.nanoseconds();
      await pingPongPromise(side, size, initiator);
      samples[i] = Bun.nanoseconds() - start;
    }
  }
  return halfRoundTrips(samples);
}

/** p50, mean and p99 of round-trip samples, halved. */
export function halfRoundTrips(samples: Float64Array): LatencyResult {
  let sum = 0;
  for (const s of samples) sum += s;
  samples.sort();
  const n = samples.length;
  return { medianNs: samples[(n - 1) >> 1]! / 2, meanNs: sum / n / 2, p99Ns: samples[Math.floor(n * 0.99)]! / 2, iterations: n };
}

/**
 * One osu_bw iteration: the initiator posts `window` sends of `size` bytes from the one region,
 * polls until all completed, then receives the 4-byte ack; the responder posts `window` receives
 * into the one region, polls until all received, then sends the ack.
 */
export function windowRound(side: LoopSide, size: number, window: number, initiator: boolean, ids: Int32Array): void {
  const { endpoint, peer, region } = side;
  if (initiator) {
    for (let i = 0; i < window; i++) ids[i] = endpoint.postSend(region, size, peer, DATA_TAG);
    let done = 0;
    while (done < window) {
      endpoint.poll();
      while (done < window && endpoint.completed(ids[done]!)) done++;
    }
    endpoint.recvSync(region, ACK_BYTES, peer, ACK_TAG);
  } else {
    for (let i = 0; i < window; i++) ids[i] = endpoint.postRecv(region, size, peer, DATA_TAG);
    let done = 0;
    while (done < window) {
      endpoint.poll();
      while (done < window && endpoint.received(ids[done]!) !== null) done++;
    }
    endpoint.sendSync(region, ACK_BYTES, peer, ACK_TAG);
  }
}

/** `iterations` timed window rounds after `warmup` untimed ones. */
export function windowed(side: LoopSide, size: number, window: number, iterations: number, warmup: number, initiator: boolean): WindowResult {
  const ids = new Int32Array(window);
  for (let i = 0; i < warmup; i++) windowRound(side, size, window, initiator, ids);
  const start = Bun.nanoseconds();
  for (let i = 0; i < iterations; i++) windowRound(side, size, window, initiator, ids);
  const seconds = (Bun.nanoseconds() - start) / 1e9;
  const messages = iterations * window;
  return { seconds, mbPerSec: (messages * size) / seconds / 1e6, messagesPerSec: messages / seconds };
}

/**
 * Heap cells per sendSync + recvSync pair of the initiator, net of an empty loop (the responder
 * answers 2 × `iterations` ping-pongs: the warm-up and the measured ones).
 */
export function cellsPerPair(side: LoopSide, size: number, iterations: number): { perPair: number; types: Record<string, number> } {
  const result = cellsPerCall(() => pingPongSync(side, size, true), iterations);
  return { perPair: result.perCall, types: result.types };
}
