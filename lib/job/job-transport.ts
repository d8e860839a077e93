// What a Job needs from the way it joined (PMIx, MPI, or nothing for a job of one process): rank,
// size and the three collectives. Job checks arguments and state; a transport only moves bytes.

/** The collectives of one way of joining a job. */
export interface JobTransport {
  /** This process's rank, 0 .. size - 1. */
  readonly rank: number;
  /** Processes in the job. */
  readonly size: number;
  /** Words for messages: the launcher and namespace, e.g. "PMIx namespace slurm.pmix.12.0". */
  readonly description: string;
  /** Returns once every rank has called it (blocks the calling thread). */
  barrier(): void;
  /** Resolves once every rank has called it; the event loop keeps turning meanwhile. */
  barrierAsync(intervalMs: number): Promise<void>;
  /** Every rank's bytes, indexed by rank (lengths may differ). */
  allgather(bytes: Uint8Array): Uint8Array[];
  /** Leaves the job; called once. */
  close(): void;
}

/** Waits `intervalMs` (0: the next event-loop turn) without blocking the event loop. */
export function nextTurn(intervalMs: number): Promise<void> {
  return new Promise<void>((resolve) => (intervalMs === 0 ? setImmediate(resolve) : setTimeout(resolve, intervalMs)));
}
