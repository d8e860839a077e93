// Sync one-sided operations where the transport finishes them in one call (transport.finishNow:
// MPI's put or get, then its MPI_Win_flush). Nothing can run between that call and its end, so
// such an operation needs no slot, id, deadline, active list or wait: it runs on the one operation
// here, never in the engine's table, with an atomic cell of its own. The engine uses it for
// writeSync, readSync, fetchAddSync and compareSwapSync while nothing pushed back waits before them.
import type { RegistrationCache } from "../cache/registration-cache.ts";
import { endOperation, type MemoryRegionImpl } from "../memory/region.ts";
import { AtomicScratch } from "./atomic-scratch.ts";
import { afterLocalUse, type LocalMemoryPins } from "./local-memory.ts";
import { Operation, Outcome, Wait } from "./operation.ts";
import type { OperationCounters } from "./operation-counters.ts";
import type { AnyLocalMemory } from "./operation-engine.ts";
import type { OperationKind } from "./rma-errors.ts";
import { Posted, type Transport } from "./transport.ts";

export class ImmediateOperation<Peer extends number | bigint> {
  private readonly op = new Operation(0);
  private readonly cell = new AtomicScratch();

  constructor(
    private readonly transport: Transport<Peer>,
    private readonly localMemory: LocalMemoryPins,
    private readonly cache: RegistrationCache | null,
    private readonly counts: OperationCounters,
  ) {}

  /** The operation for a sync write or read, its local memory resolved and pinned (as the table's take does). */
  take(kind: OperationKind, local: AnyLocalMemory, length: number): Operation {
    const range = this.localMemory.pin(kind, local, length, 1);
    return this.fill(kind, range.region, range.address, length, range.cached ? this.cache : null);
  }

  /** The operation for a sync atomic, its cell holding the operand and the value to compare with. */
  takeAtomic(kind: OperationKind, operand: number | bigint, compare: number | bigint): Operation {
    this.cell.fill(0, operand, compare);
    return this.fill(kind, null, this.cell.address(0), 8, null);
  }

  /**
   * Runs the operation to its end (transport.finishNow), unpins its memory, counts it; throws its
   * error. `failure` is the transport's own failure, if it has failed (then nothing is called).
   */
  run(op: Operation, failure: unknown): void {
    let error = failure;
    if (error === null) {
      let finished: Posted;
      try {
        finished = this.transport.finishNow!(op);
      } catch (e) {
        op.error = e; // a JavaScript failure around the call: the transport does not hold the operation
        finished = Posted.FAILED;
      }
      if (finished === Posted.DONE) {
        this.counts.posted++;
        error = op.failure;
      } else if (finished === Posted.FAILED) {
        error = op.error;
      } else {
        // The transport holds it after all: its memory stays pinned rather than be unpinned under it.
        throw new Error(`${this.transport.functionName(op.kind)}: finishNow did not finish a sync ${op.kind}`);
      }
    }
    const region = op.region;
    if (region !== null) {
      op.region = null;
      endOperation(region);
      error = afterLocalUse(op, op.cache, region, error);
      op.cache = null;
    }
    op.outcome = error === null ? Outcome.Done : Outcome.Failed;
    if (error !== null) {
      this.counts.failed++;
      throw error;
    }
    this.counts.complete(op);
  }

  /** The value the last atomic found at the target. */
  value(): bigint {
    return this.cell.result(0);
  }

  private fill(kind: OperationKind, region: MemoryRegionImpl | null, local: number, length: number, cache: RegistrationCache | null): Operation {
    const op = this.op;
    op.begin(kind, Wait.Sync, region, local, length);
    op.cache = cache;
    return op;
  }
}
