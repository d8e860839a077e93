// A transport adapter with no fabric behind it, for the engine's logic: the test decides what each
// post answers and when the "transport" lets go of an operation. Local memory is real (a host
// pool's regions), so the engine's pinning is the real pinning.
import { toArrayBuffer, type Pointer } from "bun:ffi";
import { EndpointEngine } from "../../lib/engine/endpoint-engine.ts";
import { checkEngineOptions, type EngineOptions } from "../../lib/engine/engine-options.ts";
import type { Operation } from "../../lib/engine/operation.ts";
import { RemoteRegion } from "../../lib/engine/remote-region.ts";
import type { OperationKind } from "../../lib/engine/rma-errors.ts";
import { Posted, type CompletionSink, type Transport } from "../../lib/engine/transport.ts";
import type { HostProvider } from "../../lib/index.ts";

/** Peers of the fake transport are small integers handed out by insert(). */
export class FakeTransport implements Transport<number> {
  readonly name = new Uint8Array([0xfa, 0x4e]);
  readonly nameKind = "libfabric" as const;
  finishesAbandoned = false;
  messaging = "";
  atomics = "";
  engine!: CompletionSink;
  /** What the next posts answer, first first; POSTED once empty. */
  readonly answers: Posted[] = [];
  /** Ids in the order they were handed to the transport (reposts included). */
  readonly postedIds: number[] = [];
  /** Completions the next poll delivers: [id, error]. */
  readonly deliveries: Array<[number, unknown]> = [];
  /** Ids close asked to cancel, and ids given up on by their caller. */
  readonly cancelled: number[] = [];
  readonly abandoned: number[] = [];
  /** Deliver every posted operation at the next poll (a transport that is simply fast). */
  completeAll = false;
  /** What close() answers: whether nothing native holds memory any more. */
  releasesOnClose = true;
  /** Thrown by the next poll (a failed completion queue). */
  pollFailure: unknown = null;
  polls = 0;
  closes = 0;
  private peers = 0;

  resolvePeer(kind: OperationKind, peer: number): void {
    if (peer !== -1 && peer >= this.peers) throw new RangeError(`${kind}: peer ${peer} was not inserted`);
  }

  bind(engine: CompletionSink): void {
    this.engine = engine;
  }

  insert(): number {
    return this.peers++;
  }

  checkLocal(): void {}

  resolveRemote(kind: OperationKind, peer: number): number {
    if (peer >= this.peers) throw new RangeError(`${kind}: peer ${peer} was not inserted`);
    return 0;
  }

  post(op: Operation): Posted {
    const answer = this.answers.shift() ?? Posted.POSTED;
    if (answer === Posted.FAILED) op.error = new Error(`fake_${op.kind} refused`);
    if (answer !== Posted.RETRY) this.postedIds.push(op.id);
    return answer;
  }

  poll(): number {
    this.polls++;
    if (this.pollFailure !== null) {
      const failure = this.pollFailure;
      this.pollFailure = null;
      throw failure;
    }
    if (this.completeAll) for (const op of this.engine.active) if (!op.queued) this.deliveries.push([op.id, null]);
    let completed = 0;
    for (const [id, error] of this.deliveries.splice(0)) {
      const op = this.engine.inTransport(id);
      if (op === null) continue;
      this.engine.complete(op, error);
      completed++;
    }
    return completed;
  }

  abandon(op: Operation): void {
    this.abandoned.push(op.id);
  }

  cancel(op: Operation): void {
    this.cancelled.push(op.id);
  }

  functionName(kind: OperationKind): string {
    return `fake_${kind}`;
  }

  holdsOthers(): boolean {
    return false;
  }

  close(): boolean {
    this.closes++;
    return this.releasesOnClose;
  }

  /** Lets go of operation `id` at the next poll, with `error` (null: success). */
  deliver(id: number, error: unknown = null): void {
    this.deliveries.push([id, error]);
  }

  /** A receive (recv, or a receive() once given its memory) gets a message: its result, then its completion at the next poll. */
  deliverMessage(id: number, source: number, tag: number, length: number): void {
    const op = this.engine.inTransport(id)!;
    op.resultSource = source;
    op.resultTag = tag;
    op.resultLength = length;
    this.deliver(id);
  }

  /** A receive() finds a message of `length` bytes: the engine's memory for it; false when the pool refused. */
  found(id: number, length: number): boolean {
    return this.engine.bufferFor(this.engine.inTransport(id)!, length);
  }

  /** An atomic's target answers: `value` is what it found (written where the transport writes it). */
  deliverFetched(id: number, value: bigint): void {
    const op = this.engine.inTransport(id)!;
    new BigUint64Array(toArrayBuffer(op.local as Pointer, 16, 8))[0] = value;
    this.deliver(id);
  }

  /** The operand and compare words the engine wrote for atomic `id`. */
  operands(id: number): [bigint, bigint] {
    const op = this.engine.inTransport(id)!;
    const words = new BigUint64Array(toArrayBuffer(op.local as Pointer, 0, 16));
    return [words[0]!, words[1]!];
  }
}

/** An endpoint over the fake transport, on a host provider (its pools give the local memory). */
export class FakeEndpoint extends EndpointEngine<number> {
  readonly fake: FakeTransport;

  constructor(provider: HostProvider, options: EngineOptions = {}, fake = new FakeTransport()) {
    super(fake, checkEngineOptions(options, "FakeEndpoint", [], { maxPending: 1 << 16, spinMicroseconds: 0 }, provider), provider);
    this.fake = fake;
  }

  /** The remote side of an operation: any RemoteRegion will do, nothing is moved. */
  static target(length = 1 << 20): RemoteRegion {
    return new RemoteRegion(0x1000n, 7n, length);
  }
}

/**
 * A fake transport that also finishes sync one-sided operations in one call (`finishNow`, as MPI's
 * put and flush do): each answers the next of `nowAnswers` (DONE once empty), a read fills its
 * local bytes with `readByte`, an atomic finds `atomicFinds`.
 */
export class FinishingTransport extends FakeTransport {
  readonly nowAnswers: Posted[] = [];
  /** What finishNow saw: kind, length, peer, remote address, and the atomic's operand and compare words. */
  readonly finished: Array<{ kind: OperationKind; length: number; peer: number | bigint; remoteAddress: number | bigint; operand?: bigint; compare?: bigint }> = [];
  /** An error the next DONE carries in op.failure (found while the transport held the operation). */
  failure: unknown = null;
  readByte = 0xab;
  atomicFinds = 0n;

  finishNow(op: Operation): Posted {
    const answer = this.nowAnswers.shift() ?? Posted.DONE;
    const seen: (typeof this.finished)[number] = { kind: op.kind, length: op.length, peer: op.peer, remoteAddress: op.remoteAddress };
    if (op.kind === "fetchAdd" || op.kind === "compareSwap") {
      const words = new BigUint64Array(toArrayBuffer(op.local as Pointer, 0, 24));
      seen.operand = words[0]!;
      seen.compare = words[1]!;
      words[2] = this.atomicFinds;
    } else if (op.kind === "read") {
      new Uint8Array(toArrayBuffer(op.local as Pointer, 0, op.length)).fill(this.readByte);
    }
    this.finished.push(seen);
    if (answer === Posted.FAILED) op.error = new Error(`fake_${op.kind} refused at once`);
    if (answer === Posted.DONE && this.failure !== null) {
      op.failure = this.failure;
      this.failure = null;
    }
    return answer;
  }
}
