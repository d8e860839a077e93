// The contract between the operation engine (endpoint-engine.ts) and a transport. The engine owns
// everything every endpoint does the same way: operation slots and their ids, the three waiting
// forms, timeouts, pinning of local memory, statistics, progress, and close's order. A transport
// adapter supplies only what is its own: how to name and reach a peer, how to post an operation,
// how its completions are found, how it cancels and how it closes.
//
// | member | must | on failure |
// |---|---|---|
// | `name`, `nameKind` | this endpoint's address, the bytes a peer passes to its `insert()`; which kind of name it is (`nameString`'s prefix) | |
// | `finishesAbandoned` | true when an operation whose caller stopped waiting (timeout) still ends on its own (UCX cancels it; MPI completes every RMA operation): it keeps counting in `pendingCount`, and so keeps the progress engine turning, until it does. false where it may never end (libfabric: udp;ofi_rxd with a bad key) | |
// | `bind(engine)` | remember the engine: `poll` reports completions to it, and reads its `active` operations where the transport checks them one by one | |
// | `insert(name)` | add a peer by its name; return what `peer` is on this transport (`fi_addr_t`, index, rank) | typed error, nothing added (a name is checked before any native call sees it) |
// | `messaging` | "" where the transport has tagged messages; otherwise why not (send, recv and receive are then NOT_SUPPORTED with this text) | |
// | `atomics` | "" where the transport has remote atomics on 64-bit words; otherwise why not (fetchAdd and compareSwap are then NOT_SUPPORTED with this text) | |
// | atomics | a `fetchAdd` adds the word at `op.local` to the remote word; a `compareSwap` swaps in the word at `op.local` where the remote word equals the word at `op.local + 8`; both write the value found into `op.local + 16` before reporting the operation | |
// | `resolvePeer(kind, peer, tag, ignore)` | check a message's peer (a receive's may be ANY_SOURCE, -1) and any limit of the transport on its tag and mask | typed error; nothing taken |
// | `checkLocal(kind, region)` | accept local memory only if it is registered where the transport can use it (same domain, same context) | `AllocToolsError` `FOREIGN_REGION` |
// | `resolveRemote(kind, peer, remote, length)` | check the peer and the remote region for this transport; return the remote handle the post needs (a UCX rkey; 0 where none) | typed error; nothing posted, nothing taken |
// | `post(op)` | hand the operation (write, read, send, recv, receive) to the native library: `POSTED` (completion comes through `poll`), `DONE` (complete already, local memory no longer used), `RETRY` (pushed back: the engine posts it again, in order), `FAILED` (`op.error` set; the transport does not hold it) | |
// | `poll(now, progressPeers)` | one non-blocking progress turn: read completions and report each with `engine.complete(op, error)` once the transport no longer touches the operation's memory; return how many. `progressPeers`: the caller asked (poll(), progress()), so also progress what this endpoint's operations may wait for in this thread (UCX: the other workers) | throw only when the transport itself failed (the engine then fails every operation with it) |
// | receives | a `recv` sets `op.resultSource` (a peer of this endpoint, ANY_SOURCE when unknown), `op.resultTag` and `op.resultLength` before reporting it; a message longer than `op.length` is reported as AllocToolsError `TRUNCATED` naming both lengths. A `receive` (unknown size) first finds a matching message and claims it (so no other receive takes it), then asks `engine.bufferFor(op, length)` for memory and receives into `op.local`; when bufferFor answers false it receives 0 bytes (the message is dropped) and reports `op.failure` | |
// | `finishNow(op)` | optional: run a sync write, read, fetchAdd or compareSwap to its end inside the call: `DONE` (`op.failure` set if the transport found an error) or `FAILED` (`op.error` set), never `POSTED` or `RETRY`, without using `op.index`. Where a transport has it (MPI: the call and its `MPI_Win_flush`), the engine runs sync one-sided operations on one operation of its own, outside its table | |
// | `refresh(op)` | optional: advance one pending operation when its caller asks (`completed(id)`); UCX issues the flush a write waits for | |
// | `abandon(op)` | optional: the caller stopped waiting (timeout); the transport may cancel, and still reports the operation through `poll` when it lets go | never throws |
// | `quiesce()` | optional: close is about to drain; make what is in flight complete (MPI: `MPI_Win_flush_all`) | throw what failed (close goes on, and throws it at the end) |
// | `cancel(op)` | ask the transport to stop an operation in flight (close, an abort signal, a receive's deadline); it still reports it through `poll` when it lets go, with an error if it was cancelled (the engine replaces it with its reason) or as complete if it had matched or finished | never throws |
// | `describePeer(peer)` | optional: the peer as a person would find it (its name string, its rank), for timeout messages | |
// | `functionName(kind)` | the native function an operation of `kind` is posted with, for errors | |
// | `holdsOthers()` | whether an operation outside this endpoint may still use its memory (libfabric shm: an initiator in this process); close drains until it is false | |
// | `close()` | release the native objects, children first; return true when nothing native touches any operation's memory any more (false: the engine leaves what it still holds pinned for good) | throw what failed, after attempting everything |
import type { MemoryRegionImpl } from "../memory/region.ts";
import type { Operation } from "./operation.ts";
import type { RemoteRegion } from "./remote-region.ts";
import type { OperationKind } from "./rma-errors.ts";
import type { PeerNameKind } from "./peer-name.ts";

/** What `post` answers. */
export const Posted = {
  /** The transport holds it; `poll` reports it later. */
  POSTED: 0,
  /** Complete already: the transport no longer touches it. */
  DONE: 1,
  /** Pushed back for now (a full queue, a connection being made): post again later, in order. */
  RETRY: 2,
  /** Refused: `op.error` says why; the transport does not hold it. */
  FAILED: 3,
} as const;
export type Posted = (typeof Posted)[keyof typeof Posted];

/** What a transport's `poll` reports completions to: the engine. */
export interface CompletionSink {
  /** The operations the transport holds (posted, pushed back, or abandoned by their caller), in no order. */
  readonly active: readonly Operation[];
  /** Operations whose caller still waits. */
  readonly pendingCount: number;
  /** The operation a completion's id names, if the transport still holds it (else null: a stale id). */
  inTransport(id: number): Operation | null;
  /** The transport let go of `op` (success when `error` is null). Idempotent per operation; swap-removes it from `active`. */
  complete(op: Operation, error: unknown): void;
  /**
   * A `receive` found a message of `length` bytes (-1: its length is unknown, take the pool's
   * largest region): pins a pooled region as `op.local` (`op.length` its usable length); false
   * (and `op.failure`) when the pool refused.
   */
  bufferFor(op: Operation, length: number): boolean;
}

/** A transport adapter: see the table at the top of this file. `Peer` is what `insert` returns. */
export interface Transport<Peer> {
  readonly name: Uint8Array;
  readonly nameKind: PeerNameKind;
  readonly finishesAbandoned: boolean;
  readonly messaging: string;
  readonly atomics: string;
  bind(engine: CompletionSink): void;
  insert(peerName: Uint8Array): Peer;
  resolvePeer(kind: OperationKind, peer: Peer | -1, tag: number, ignore: number): void;
  checkLocal(kind: OperationKind, region: MemoryRegionImpl): void;
  resolveRemote(kind: OperationKind, peer: Peer, remote: RemoteRegion, length: number): number;
  post(op: Operation): Posted;
  finishNow?(op: Operation): Posted;
  poll(now: number, progressPeers: boolean): number;
  refresh?(op: Operation): void;
  abandon?(op: Operation): void;
  quiesce?(): void;
  cancel(op: Operation): void;
  functionName(kind: OperationKind): string;
  describePeer?(peer: number | bigint): string;
  holdsOthers(): boolean;
  close(): boolean;
}
