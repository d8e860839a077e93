// What each kind of operation checks and fills before the engine posts it: RMA, remote atomics,
// sends, receives into given memory, and receives of unknown size. Every refusal throws here,
// before a slot is taken or anything is pinned or posted.
import { AllocToolsError, AllocToolsTypeError, AllocToolsRangeError } from "../errors.ts";
import { ANY_SOURCE, checkReceiveOptions, checkTag, type ReceiveOptions } from "./message.ts";
import { argument, Wait, type Operation } from "./operation.ts";
import type { AnyLocalMemory, OperationEngine } from "./operation-engine.ts";
import { notRemoteRegion, RemoteRegion } from "./remote-region.ts";
import type { OperationKind, RmaKind } from "./rma-errors.ts";

/** A write or read of `length` bytes between `local` and the start of `remote` on `peer`. */
export function beginRma<Peer extends number | bigint>(engine: OperationEngine<Peer>, kind: RmaKind, wait: Wait, local: AnyLocalMemory, length: number, peer: Peer, remote: RemoteRegion): Operation {
  const handle = checkRma(engine, kind, length, peer, remote);
  const op = engine.take(kind, wait, local, length, 1);
  aimAt(op, peer, remote, handle);
  engine.start(op);
  return op;
}

/** writeSync or readSync where the transport finishes it in one call (engine.runsNow): no slot, no wait. */
export function runRmaNow<Peer extends number | bigint>(engine: OperationEngine<Peer>, kind: RmaKind, local: AnyLocalMemory, length: number, peer: Peer, remote: RemoteRegion): void {
  const handle = checkRma(engine, kind, length, peer, remote);
  const immediate = engine.immediate!;
  const op = immediate.take(kind, local, length);
  aimAt(op, peer, remote, handle);
  immediate.run(op, engine.transportFailure);
}

/** The checks of a write or read, then the transport's; returns the remote handle. */
function checkRma<Peer extends number | bigint>(engine: OperationEngine<Peer>, kind: RmaKind, length: number, peer: Peer, remote: RemoteRegion): number {
  engine.assertOpen();
  if (!Number.isSafeInteger(length) || length <= 0 || !(remote instanceof RemoteRegion) || length > remote.length) throw rmaRefusal(kind, length, remote);
  return engine.transport.resolveRemote(kind, peer, remote, length);
}

/** Why checkRma refuses, built apart so that the check stays small enough to inline. */
function rmaRefusal(kind: RmaKind, length: number, remote: RemoteRegion): Error {
  if (!Number.isSafeInteger(length) || length <= 0) return new AllocToolsRangeError(`${kind} length must be a positive integer, got ${String(length)}`);
  if (!(remote instanceof RemoteRegion)) return notRemoteRegion(kind, remote);
  return new AllocToolsRangeError(`${kind} of ${length} bytes does not fit the remote region's ${remote.length} bytes (refused before posting)`);
}

/** A remote atomic on the aligned 64-bit word at the start of `remote` on `peer`. */
export function beginAtomic<Peer extends number | bigint>(engine: OperationEngine<Peer>, kind: "fetchAdd" | "compareSwap", wait: Wait, peer: Peer, remote: RemoteRegion, operand: number | bigint, compare: number | bigint): Operation {
  const handle = checkAtomic(engine, kind, peer, remote);
  const op = engine.takeAtomic(kind, wait, operand, compare);
  aimAt(op, peer, remote, handle);
  engine.start(op);
  return op;
}

/** fetchAddSync or compareSwapSync where the transport finishes it in one call (engine.runsNow); returns the value found. */
export function runAtomicNow<Peer extends number | bigint>(engine: OperationEngine<Peer>, kind: "fetchAdd" | "compareSwap", peer: Peer, remote: RemoteRegion, operand: number | bigint, compare: number | bigint): bigint {
  const handle = checkAtomic(engine, kind, peer, remote);
  const immediate = engine.immediate!;
  const op = immediate.takeAtomic(kind, operand, compare);
  aimAt(op, peer, remote, handle);
  immediate.run(op, engine.transportFailure);
  return immediate.value();
}

/** The checks of a remote atomic, then the transport's; returns the remote handle. */
function checkAtomic<Peer extends number | bigint>(engine: OperationEngine<Peer>, kind: "fetchAdd" | "compareSwap", peer: Peer, remote: RemoteRegion): number {
  engine.assertOpen();
  const reason = engine.transport.atomics;
  if (reason !== "") throw new AllocToolsError("NOT_SUPPORTED", `${kind}: ${reason}`);
  if (!(remote instanceof RemoteRegion)) throw notRemoteRegion(kind, remote);
  if (remote.length < 8) throw new AllocToolsRangeError(`${kind} works on a 64-bit word: the remote region has ${remote.length} bytes, fewer than 8`);
  const address = remote.addressArgument; // a number when exact: no bigint made per operation
  if (typeof address === "number" ? address % 8 !== 0 : (address & 7n) !== 0n) throw new AllocToolsRangeError(`${kind} works on an aligned 64-bit word: remote address 0x${remote.address.toString(16)} is not a multiple of 8`);
  return engine.transport.resolveRemote(kind, peer, remote, 8);
}

/** A send of `length` bytes (0 allowed) of `local` to `peer` with `tag`. */
export function beginSend<Peer extends number | bigint>(engine: OperationEngine<Peer>, wait: Wait, local: AnyLocalMemory, length: number, peer: Peer, tag: number): Operation {
  engine.assertMessaging("send");
  checkTag("send", tag);
  if ((peer as number) === ANY_SOURCE) throw new AllocToolsRangeError("send needs a peer: ANY_SOURCE is for receives");
  engine.transport.resolvePeer("send", peer, tag, 0);
  const op = engine.take("send", wait, local, length, 0);
  match(op, peer, tag, 0);
  engine.start(op);
  return op;
}

/** A receive into at most `length` bytes of `local`. An aborted signal throws its reason, having taken nothing. */
export function beginRecv<Peer extends number | bigint>(engine: OperationEngine<Peer>, wait: Wait, local: AnyLocalMemory, length: number, source: Peer | typeof ANY_SOURCE, tag: number, options: ReceiveOptions | undefined): Operation {
  engine.assertMessaging("recv");
  const ignore = checkMatch(engine, "recv", source, tag, options);
  const signal = options?.signal ?? null;
  if (signal !== null && signal.aborted) throw signal.reason;
  const op = engine.take("recv", wait, local, length, 0);
  match(op, source, tag, ignore);
  if (signal !== null) engine.watch(op, signal);
  engine.start(op);
  return op;
}

/**
 * A receive of a message of unknown size: the transport finds a matching message first, then asks
 * the engine's bufferFor() for memory of its length from the pool. No deadline: an abort signal or
 * close ends it.
 */
export function beginReceive<Peer extends number | bigint>(engine: OperationEngine<Peer>, source: Peer | typeof ANY_SOURCE, tag: number, options: ReceiveOptions | undefined): Operation {
  engine.assertMessaging("receive");
  if (engine.pool === null) throw new AllocToolsTypeError("receive() takes its memory from the endpoint's pool: open the endpoint with options.pool (a MemoryPool over its provider)");
  const ignore = checkMatch(engine, "receive", source, tag, options);
  const signal = options?.signal ?? null;
  if (signal !== null && signal.aborted) throw signal.reason;
  const op = engine.takeWithoutMemory("receive", Wait.Promise, Infinity);
  match(op, source, tag, ignore);
  if (signal !== null) engine.watch(op, signal);
  engine.start(op);
  return op;
}

/** The source, tag and mask of a receive, checked by the engine's rules and the transport's; returns the mask. */
function checkMatch<Peer extends number | bigint>(engine: OperationEngine<Peer>, kind: OperationKind, source: Peer | typeof ANY_SOURCE, tag: number, options: ReceiveOptions | undefined): number {
  const ignore = checkReceiveOptions(kind, tag, options);
  engine.transport.resolvePeer(kind, source, tag, ignore);
  return ignore;
}

/** A message's peer (or a receive's source, ANY_SOURCE included), tag and mask, as the transport posts them. */
function match(op: Operation, peer: number | bigint, tag: number, ignore: number): void {
  op.peer = typeof peer === "bigint" ? argument(peer) : peer;
  op.tag = tag;
  op.ignore = ignore;
}

/** A one-sided operation's target, as the transport posts it. */
function aimAt(op: Operation, peer: number | bigint, remote: RemoteRegion, handle: number): void {
  op.peer = typeof peer === "bigint" ? argument(peer) : peer;
  op.remoteAddress = remote.addressArgument;
  op.key = remote.keyArgument;
  op.remoteHandle = handle;
}
