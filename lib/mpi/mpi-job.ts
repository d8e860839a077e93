// MpiJob: the job an `mpirun -n N bun app.ts` process belongs to: its rank, the number of ranks, a
// barrier, an allgather of byte strings of any length, and exchangeNames(endpoint), which gives
// every rank every other rank's endpoint name for any RmaEndpoint (libfabric, UCX, MPI), so a job
// needs no hand-written address exchange.
//
// - Outside mpirun, MpiJob.open() is rank 0 of 1: Open MPI initializes as a singleton. (A window
//   needs two ranks here, so MpiProvider is refused in a singleton; MpiJob works.)
// - Collectives block the calling thread (the event loop does not turn meanwhile); every rank must
//   make the same calls in the same order, as with any MPI collective.
// - The job keeps MPI initialized: close the job last (after providers), and MPI_Finalize runs when
//   the last user closes. A job open across tests lets providers come and go (MPI cannot be
//   initialized twice in a process).
import { mpiLibrary, THREAD_LEVEL_NAMES, type MpiLibrary, type ThreadLevelName } from "../../ffi/mpi.ts";
import { AllocToolsError, AllocToolsTypeError, AllocToolsRangeError } from "../errors.ts";
import { checkProgressInterval } from "../engine/progress.ts";

/** The largest allgather total: MPI counts and displacements are C ints. */
const MAX_TOTAL_BYTES = 0x7fff_ffff;

/**
 * The MPI job this process is a rank of: rank, size, barrier, allgather and `exchangeNames` (see
 * the file header).
 *
 * Lifetime: `MpiJob.open()` joins (initializing MPI if nothing has yet); `close()` (or `using`)
 * leaves, idempotent; MPI_Finalize runs when the last user of MPI (jobs and providers) closes, and
 * MPI cannot be initialized again in the process. Close the job after the providers.
 *
 * Hot path: none of it. Every collective blocks the calling thread and allocates its results; use
 * it to set a job up, not per message.
 */
export class MpiJob implements Disposable {
  /** This process's rank in MPI_COMM_WORLD, 0 .. size - 1. */
  readonly rank: number;
  /** Ranks in the job (1 outside mpirun). */
  readonly size: number;
  /** The thread level MPI granted (MPI_THREAD_MULTIPLE asked for). */
  readonly threadLevel: ThreadLevelName;
  private readonly mpi: MpiLibrary;
  private closed_ = false;

  private constructor(mpi: MpiLibrary, level: number) {
    this.mpi = mpi;
    this.threadLevel = THREAD_LEVEL_NAMES[level] ?? "MPI_THREAD_SINGLE";
    const { rank, size } = mpi.rankAndSize();
    this.rank = rank;
    this.size = size;
  }

  /**
   * Joins the job: initializes MPI (MPI_Init_thread) unless a provider or another job already did.
   * Outside mpirun this is rank 0 of 1. Throws LibraryLoadError (no Open MPI), AllocToolsError
   * NOT_SUPPORTED (not Open MPI, or MPI already finalized) or MpiError.
   */
  static open(): MpiJob {
    const mpi = mpiLibrary();
    return new MpiJob(mpi, mpi.acquire());
  }

  /** Whether close() was called. */
  get closed(): boolean {
    return this.closed_;
  }

  /** Whether this process runs under mpirun (or srun) rather than as a singleton. */
  get launched(): boolean {
    return process.env.OMPI_COMM_WORLD_SIZE !== undefined || process.env.PMIX_RANK !== undefined;
  }

  /** MPI_Barrier over the job. */
  barrier(): void {
    this.assertOpen();
    this.mpi.barrier();
  }

  /**
   * MPI_Ibarrier, then MPI_Test on the event loop: the barrier to use while endpoints need progress
   * (a libfabric tcp target reads its completion queue only when the event loop turns).
   * `intervalMs` 0 tests on every event-loop turn; above 0 it tests every `intervalMs` and leaves the
   * core to others (a target that only exposes memory to one-sided operations). A nonblocking
   * barrier matches only a nonblocking one: every rank calls barrierAsync() where one does.
   */
  async barrierAsync(intervalMs: number = 0): Promise<void> {
    this.assertOpen();
    checkProgressInterval(intervalMs);
    const request = new BigUint64Array(1);
    this.mpi.startBarrier(request);
    for (;;) {
      if (this.mpi.testRequest(request)) return;
      await new Promise<void>((resolve) => (intervalMs === 0 ? setImmediate(resolve) : setTimeout(resolve, intervalMs)));
    }
  }

  /**
   * Every rank's `bytes`, indexed by rank (this rank's own included). Lengths may differ: they are
   * allgathered first, then the bytes with MPI_Allgatherv. The results are views into one buffer.
   */
  allgather(bytes: Uint8Array): Uint8Array[] {
    this.assertOpen();
    if (!(bytes instanceof Uint8Array)) throw new AllocToolsTypeError("allgather takes a Uint8Array");
    if (bytes.length > MAX_TOTAL_BYTES) throw new AllocToolsRangeError(`allgather of ${bytes.length} bytes is above MPI's int count limit`);
    const lengths = new Int32Array(this.size);
    this.mpi.allgatherInt(new Int32Array([bytes.length]), lengths);
    const displacements = new Int32Array(this.size);
    let total = 0;
    for (let r = 0; r < this.size; r++) {
      displacements[r] = total;
      total += lengths[r]!;
      if (total > MAX_TOTAL_BYTES) throw new AllocToolsRangeError(`allgather of ${total}+ bytes in all is above MPI's int displacement limit`);
    }
    // MPI reads and writes through these pointers: never hand it an empty buffer's null pointer.
    const received = new Uint8Array(Math.max(total, 1));
    const send = bytes.length > 0 ? bytes : new Uint8Array(1);
    this.mpi.allgatherBytes(send, bytes.length, received, lengths, displacements);
    const out: Uint8Array[] = [];
    for (let r = 0; r < this.size; r++) out.push(received.subarray(displacements[r]!, displacements[r]! + lengths[r]!));
    return out;
  }

  /**
   * Every rank's endpoint name, indexed by rank, for any endpoint with a `name` (libfabric
   * Endpoint, UcxEndpoint, MpiEndpoint). Pass each to `endpoint.insert()` to reach that rank.
   */
  exchangeNames(endpoint: { readonly name: Uint8Array }): Uint8Array[] {
    if (endpoint === null || typeof endpoint !== "object" || !(endpoint.name instanceof Uint8Array)) {
      throw new AllocToolsTypeError("exchangeNames takes an endpoint (an object with a Uint8Array name)");
    }
    return this.allgather(endpoint.name);
  }

  /** Leaves the job: MPI_Finalize when this was the last user of MPI and alloctools initialized it. Idempotent. */
  close(): void {
    if (this.closed_) return;
    this.closed_ = true;
    this.mpi.release();
  }

  /** close(). */
  [Symbol.dispose](): void {
    this.close();
  }

  private assertOpen(): void {
    if (this.closed_) throw new AllocToolsError("JOB_CLOSED", "the MPI job was closed");
  }
}
