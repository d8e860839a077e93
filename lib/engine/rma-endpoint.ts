// The RMA interface every endpoint implements: the libfabric Endpoint, UcxEndpoint and
// MpiEndpoint. User code that takes an RmaEndpoint works over any transport.
//
// Three ways to wait for an operation, one contract:
// - promise:  `await ep.write(...)`; progress runs on the event loop.
// - sync:     `ep.writeSync(...)` posts, then polls this endpoint on the calling thread until the
//             operation completes; it throws where the promise would reject. No allocation on the
//             success path.
// - post:     `const id = ep.postWrite(...)`, then `ep.poll()` turns and `ep.completed(id)` asks.
//             An id is a number; it stays valid until `completed(id)` has returned true or thrown
//             (the operation's error), after which it is retired and may be reused. Asking about an
//             unknown or retired id throws RangeError. Windowed transfers need no promise per
//             operation.
// Every operation, whatever the form, fails with RmaTimeoutError once past the endpoint's
// `timeoutMs`, and keeps its local region pinned (`inFlight`) until the transport no longer
// touches it.
import type { MemoryRegionPointer } from "../memory/pointer.ts";
import type { MemoryRegion } from "../memory/region.ts";
import type { RemoteRegion } from "./remote-region.ts";
import type { OperationKind } from "./rma-errors.ts";
import type { LatencySummary } from "./latency-histogram.ts";

/** Where the data of an RMA operation comes from or goes to, locally. */
export type LocalMemory = MemoryRegion | MemoryRegionPointer;

/** Counters since the endpoint opened. */
export interface RmaEndpointStats {
  /** Operations accepted by the transport. */
  readonly posted: number;
  /** Posts the transport pushed back (full queue, connection in progress) and that were tried again. */
  readonly retried: number;
  /** Operations that completed successfully. */
  readonly completed: number;
  /** Error completions and refused posts. */
  readonly failed: number;
  /** Operations that did not complete within `timeoutMs`. */
  readonly timedOut: number;
  /** Bytes of completed writes (this endpoint's memory to peers'). */
  readonly bytesWritten: number;
  /** Bytes of completed reads (peers' memory to this endpoint's). */
  readonly bytesRead: number;
  /** Bytes of completed sends. */
  readonly bytesSent: number;
  /** Bytes of completed receives (what the messages held). */
  readonly bytesReceived: number;
  /**
   * Latency percentiles by kind of operation, from post to completion, in microseconds; only with
   * `options.latency: true` (and kinds with operations recorded).
   */
  readonly latency?: Partial<Record<OperationKind, LatencySummary>>;
}

/**
 * An endpoint that reads and writes peers' registered memory. `Peer` is what `insert()` returns:
 * an `fi_addr_t` (bigint) for libfabric, an index for UCX, a rank for MPI.
 */
export interface RmaEndpoint<Peer = unknown> extends Disposable {
  /** This endpoint's address: give these bytes to a peer for its `insert()`. */
  readonly name: Uint8Array;
  /** `name` as a URL-safe string (a kind prefix, a dot, base64url): `insert()` takes either. */
  readonly nameString: string;
  /** Whether close() was called. */
  readonly closed: boolean;
  /** Operations posted (or waiting to be) and not yet completed. */
  readonly pendingCount: number;
  /** Milliseconds an operation may take before it fails with RmaTimeoutError. */
  readonly timeoutMs: number;

  /** Adds a peer by its endpoint name (the bytes, or their `nameString`); use the result as `peer`. */
  insert(peerName: Uint8Array | string): Peer;

  /** Writes `length` bytes from `local` to the start of `remote` on `peer`; resolves once the data is in the target's memory. */
  write(local: LocalMemory, length: number, peer: Peer, remote: RemoteRegion): Promise<void>;
  /** Reads `length` bytes from the start of `remote` on `peer` into `local`. */
  read(local: LocalMemory, length: number, peer: Peer, remote: RemoteRegion): Promise<void>;

  /** write(), waiting on the calling thread; throws where the promise would reject. */
  writeSync(local: LocalMemory, length: number, peer: Peer, remote: RemoteRegion): void;
  /** read(), waiting on the calling thread; throws where the promise would reject. */
  readSync(local: LocalMemory, length: number, peer: Peer, remote: RemoteRegion): void;

  /** Posts a write and returns its operation id (see `completed`). */
  postWrite(local: LocalMemory, length: number, peer: Peer, remote: RemoteRegion): number;
  /** Posts a read and returns its operation id (see `completed`). */
  postRead(local: LocalMemory, length: number, peer: Peer, remote: RemoteRegion): number;
  /** One progress turn that never blocks; returns the number of completions read. */
  poll(): number;
  /** Whether operation `id` has completed; throws its error if it failed (then the id is retired). */
  completed(id: number): boolean;

  /** One progress turn; like poll(), and throws when the endpoint itself has failed. */
  progress(): number;
  /** Keeps this endpoint progressing on the event loop with nothing pending (a target that only exposes memory). */
  startProgress(intervalMs?: number): void;
  /** Stops what startProgress() started. */
  stopProgress(): void;

  /** Counters since the endpoint opened. */
  stats(): RmaEndpointStats;
  /** Ends operations in flight (drained or cancelled), then closes; idempotent. */
  close(): void;
}
