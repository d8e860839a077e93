// Job: the processes of one program started together, whatever started them. `Job.open()` joins
// through PMIx when a PMIx server is there (mpirun, prterun, `srun --mpi=pmix`), through MPI when
// asked ({ via: "mpi" }: MpiJob), and otherwise is a job of one process. Every way gives the same
// rank, size, barrier, allgather and exchangeNames, so a program runs unchanged alone, under mpirun
// and under srun.
//
// - Collectives: every rank makes the same calls in the same order. barrier() and allgather()
//   block the calling thread; barrierAsync() keeps the event loop turning (a libfabric tcp target
//   progresses only then).
// - Through PMIx, no MPI library is loaded; every collective is bounded by `timeoutMs`, and a
//   rank that exits with its job open ends the whole job, naming itself (exit-guard.ts).
// - exchangeNames(endpoint) allgathers the endpoints' names and inserts every one (this rank's
//   own included): the result is the peer of each rank, indexed by rank.
import { AllocToolsError, AllocToolsRangeError, AllocToolsTypeError, LibraryLoadError } from "../errors.ts";
import { checkProgressInterval } from "../engine/progress.ts";
import { inspectCustom, oneLine } from "../inspect.ts";
import { checkKnownKeys, type KnownKeys } from "../options.ts";
import { MpiEndpoint } from "../mpi/mpi-endpoint.ts";
import { detectLauncher, HOW_TO_LAUNCH, type Launcher } from "./launcher.ts";
import type { JobTransport } from "./job-transport.ts";
import { MpiTransport } from "./mpi-transport.ts";
import { PmixTransport } from "./pmix-transport.ts";
import { SingletonTransport } from "./singleton-transport.ts";

/** How a job was joined: a PMIx server, MPI (MpiJob), or none (a job of one process). */
export type JobVia = "pmix" | "mpi" | "singleton";

/** Options of `Job.open()`; unknown keys are refused. */
export interface JobOptions {
  /**
   * Forces one way of joining; a way that is not available here is an AllocToolsError
   * JOB_UNAVAILABLE saying what is missing and how to launch. Default: "pmix" when a PMIx server
   * is there (PMIX_NAMESPACE or PMIX_SERVER_URI* set), else "singleton". "mpi" is never picked
   * unless asked.
   */
  via?: JobVia;
  /**
   * Milliseconds a PMIx collective (barrier, barrierAsync, allgather, exchangeNames) may wait for
   * the other ranks before it fails with PmixError PMIX_ERR_TIMEOUT; 0 waits for ever. Default
   * 300 000 (5 minutes). PMIx counts whole seconds (rounded up). MPI collectives have no timeout.
   */
  timeoutMs?: number;
}

/** What exchangeNames takes: an endpoint with a name and an insert (Endpoint, UcxEndpoint, MpiEndpoint). */
export interface NamedEndpoint<Peer> {
  /** This endpoint's name. */
  readonly name: Uint8Array;
  /** Adds a peer by its name. */
  insert(peerName: Uint8Array): Peer;
}

const OPTION_KEYS: KnownKeys<JobOptions> = { via: true, timeoutMs: true };
const VIAS: readonly JobVia[] = ["pmix", "mpi", "singleton"];
const DEFAULT_TIMEOUT_MS = 300_000;

/**
 * The job this process is a rank of (see the file header).
 *
 * Lifetime: `await Job.open()` joins; `close()` (or `using`) leaves, idempotent. Through PMIx, a
 * process that exits with the job still open, or with a non-zero code (an uncaught error
 * included, even one that `using` closed the job on the way out), ends the whole job with an
 * error naming this rank; PMIx_Finalize runs at the clean exit. Through MPI, the job keeps MPI
 * initialized (close it after MPI providers).
 *
 * Hot path: none of it. Collectives allocate their results; use them to set a job up.
 */
export class Job implements Disposable {
  /** This process's rank, 0 .. size - 1. */
  readonly rank: number;
  /** Processes in the job (1 for a singleton). */
  readonly size: number;
  /** How the job was joined. */
  readonly via: JobVia;
  private readonly transport: JobTransport;
  private closed_ = false;

  private constructor(via: JobVia, transport: JobTransport) {
    this.via = via;
    this.transport = transport;
    this.rank = transport.rank;
    this.size = transport.size;
  }

  /**
   * Joins the job: through PMIx when a PMIx server is there, else as a job of one process, or
   * the way `options.via` forces. Throws AllocToolsError JOB_UNAVAILABLE (no launcher, no
   * libpmix, no Open MPI: the message says what is missing and how to launch), TypeError or
   * RangeError for bad options, and what MpiJob.open() throws for other MPI failures.
   */
  static async open(options: JobOptions = {}): Promise<Job> {
    const { via: forced, timeoutMs } = checkOptions(options);
    const launcher = detectLauncher();
    const via = forced ?? (launcher.pmixServer ? "pmix" : "singleton");
    if (forced === undefined && via === "singleton" && launcher.tasks > 1) {
      throw new AllocToolsError("JOB_UNAVAILABLE",
        `${launcher.name ?? "the launcher"} started ${launcher.tasks} processes but set up no PMIx server, so each would be a job of ` +
          `its own: ${HOW_TO_LAUNCH}; or open the job with { via: "mpi" } under an MPI launcher, or { via: "singleton" } on purpose`);
    }
    if (via === "pmix") return new Job(via, joinPmix(launcher, timeoutMs, forced !== undefined));
    if (via === "mpi") return new Job(via, joinMpi());
    return new Job(via, new SingletonTransport());
  }

  /** Whether close() was called. */
  get closed(): boolean {
    return this.closed_;
  }

  /** One line for console.log. */
  [inspectCustom](): string {
    return oneLine("Job", { via: this.via, rank: this.rank, size: this.size, closed: this.closed_ });
  }

  /** Returns once every rank has called barrier() (PMIx_Fence, MPI_Barrier). Blocks the calling thread. */
  barrier(): void {
    this.assertOpen();
    this.transport.barrier();
  }

  /**
   * Resolves once every rank has called barrierAsync() (PMIx_Fence_nb, MPI_Ibarrier), testing for
   * completion on the event loop: the barrier to use while endpoints need progress. `intervalMs`
   * 0 tests on every event-loop turn; above 0, every `intervalMs`. It matches only another rank's
   * barrierAsync(), not its barrier() (MPI; through PMIx either matches either).
   */
  async barrierAsync(intervalMs: number = 0): Promise<void> {
    this.assertOpen();
    checkProgressInterval(intervalMs);
    await this.transport.barrierAsync(intervalMs);
  }

  /** Every rank's `bytes`, indexed by rank (this rank's own included); lengths may differ. */
  allgather(bytes: Uint8Array): Uint8Array[] {
    this.assertOpen();
    if (!(bytes instanceof Uint8Array)) throw new AllocToolsTypeError(`allgather takes a Uint8Array, got ${describe(bytes)}`);
    return this.transport.allgather(bytes);
  }

  /**
   * Every rank's endpoint name, allgathered and inserted into `endpoint`: the peer of each rank,
   * indexed by rank (this rank's own included). For Endpoint, UcxEndpoint, and MpiEndpoint in a
   * job opened with { via: "mpi" } (its peers are MPI ranks). Every rank passes the same kind of
   * endpoint.
   */
  exchangeNames<Peer>(endpoint: NamedEndpoint<Peer>): Peer[] {
    this.assertOpen();
    if (endpoint === null || typeof endpoint !== "object" || !(endpoint.name instanceof Uint8Array) || typeof endpoint.insert !== "function") {
      throw new AllocToolsTypeError("exchangeNames takes an endpoint (Endpoint, UcxEndpoint or MpiEndpoint)");
    }
    if (endpoint instanceof MpiEndpoint && this.via !== "mpi") {
      throw new AllocToolsError("NOT_SUPPORTED",
        `an MpiEndpoint's peers are MPI ranks: exchange its names in a job opened with { via: "mpi" } (this one is via ${this.via})`);
    }
    return this.transport.allgather(endpoint.name).map((name) => endpoint.insert(name));
  }

  /** Leaves the job: no more collectives (PMIx: PMIx_Finalize at the process's clean exit; MPI: MpiJob.close()). Idempotent. */
  close(): void {
    if (this.closed_) return;
    this.closed_ = true;
    this.transport.close();
  }

  /** close(). */
  [Symbol.dispose](): void {
    this.close();
  }

  private assertOpen(): void {
    if (this.closed_) throw new AllocToolsError("JOB_CLOSED", `the job (rank ${this.rank} of ${this.size}, via ${this.via}) was closed`);
  }
}

/** PMIx_Init against the launcher's server; every way it can fail is JOB_UNAVAILABLE with its cause. */
function joinPmix(launcher: Launcher, timeoutMs: number, forced: boolean): JobTransport {
  const otherwise = forced ? "" : `; or open the job with { via: "mpi" } under mpirun`;
  if (!launcher.pmixServer) {
    throw new AllocToolsError("JOB_UNAVAILABLE",
      `{ via: "pmix" } found no PMIx server to join: neither PMIX_NAMESPACE nor a PMIX_SERVER_URI* variable is set. ${HOW_TO_LAUNCH}`);
  }
  let transport: PmixTransport | null;
  try {
    transport = PmixTransport.join(timeoutMs, launcher.name ?? "a PMIx launcher");
  } catch (e) {
    const what = e instanceof LibraryLoadError ? "joining through PMIx needs libpmix" : "PMIx_Init could not join the launcher's PMIx server";
    throw new AllocToolsError("JOB_UNAVAILABLE", `${what}: ${(e as Error).message}${otherwise}`, { cause: e });
  }
  if (transport === null) {
    throw new AllocToolsError("JOB_UNAVAILABLE",
      `PMIx_Init reached no PMIx server although the environment names one (${launcher.name ?? "PMIX_* variables"}): ` +
        `a stale environment, or a launcher that has exited. ${HOW_TO_LAUNCH}`);
  }
  return transport;
}

/** MpiJob.open(); a missing Open MPI is JOB_UNAVAILABLE with its cause. */
function joinMpi(): JobTransport {
  try {
    return MpiTransport.open();
  } catch (e) {
    if (!(e instanceof LibraryLoadError)) throw e;
    throw new AllocToolsError("JOB_UNAVAILABLE",
      `{ via: "mpi" } needs Open MPI: ${e.message}. Launch the ranks with 'mpirun -n 4 bun app.ts'`, { cause: e });
  }
}

function checkOptions(options: JobOptions): { via: JobVia | undefined; timeoutMs: number } {
  if (options === null || typeof options !== "object") throw new AllocToolsTypeError("Job.open options must be an object");
  checkKnownKeys(options, OPTION_KEYS, "Job.open options");
  const via = options.via;
  if (via !== undefined && !VIAS.includes(via)) {
    throw new AllocToolsTypeError(`options.via must be one of ${VIAS.map((v) => `"${v}"`).join(", ")}, got ${describe(via)}`);
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (typeof timeoutMs !== "number" || !Number.isSafeInteger(timeoutMs) || timeoutMs < 0) {
    throw new AllocToolsRangeError(`options.timeoutMs must be an integer >= 0 (0: no timeout), got ${describe(timeoutMs)}`);
  }
  return { via, timeoutMs };
}

function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (value === null || typeof value !== "object") return String(value);
  return value.constructor?.name ?? "an object";
}
