// MpiEndpoint: the engine's RMA, remote atomics and tagged messages (lib/engine/endpoint-engine.ts)
// over an MpiProvider's window and MPI_COMM_WORLD; what MPI does (windows, displacements, ranks,
// flushes, probes) is its transport's: mpi-transport.ts and mpi-messages.ts.
import { EndpointEngine } from "../engine/endpoint-engine.ts";
import { checkEngineOptions, type EngineOptions } from "../engine/engine-options.ts";
import type { MpiProvider } from "./mpi-provider.ts";
import { mpiEndpointName, MpiTransport, type MpiRank } from "./mpi-transport.ts";

export type { MpiRank } from "./mpi-transport.ts";

/** Options of an MpiEndpoint (maxPending defaults to 256 here). */
export type MpiEndpointOptions = EngineOptions;

/**
 * RMA and remote atomics over an MpiProvider's dynamic window, tagged messages on MPI_COMM_WORLD;
 * peers are ranks. Sync forms are MPI_Put/MPI_Get and MPI_Win_flush; the post and promise forms
 * MPI_Rput/MPI_Rget tested on each progress turn. fetchAdd is MPI_Fetch_and_op (sync) or
 * MPI_Rget_accumulate, compareSwap MPI_Compare_and_swap, each followed by MPI_Win_flush. Messages
 * are MPI_Isend and matched probes (MPI_Improbe, MPI_Imrecv of the message's exact length): a tag is
 * an MPI tag (at most MPI_TAG_UB), `ignore` is 0 or ANY_TAG. docs/messaging.md has the wire format.
 *
 * Lifetime: `new MpiEndpoint(provider)`, then `close()` (or `using`), which flushes and drains what
 * is in flight; the provider closes its endpoints first when it closes.
 *
 * Hot path: the post forms (`postWrite`, `postRead`, `completed`, `poll`, `progress`) make no new
 * object per call on success (operation slots and MPI_Request memory are preallocated, up to
 * `maxPending`). The sync forms make none either but block in MPI_Win_flush; `write`/`read`
 * allocate their Promise.
 */
export class MpiEndpoint extends EndpointEngine<MpiRank> {
  /** The provider whose window this endpoint reads and writes. */
  readonly provider: MpiProvider;
  /** This process's rank. */
  readonly rank: number;
  /** Ranks in the job. */
  readonly size: number;

  /**
   * An endpoint on `provider`'s window with `maxPending` (default 256) operation slots and their
   * native MPI_Request memory. Throws TypeError when `options` is not an object or has an unknown
   * key, RangeError for an option that is not an integer in range, AllocToolsError
   * PROVIDER_CLOSED when the provider is closed.
   */
  constructor(provider: MpiProvider, options: MpiEndpointOptions = {}) {
    const settings = checkEngineOptions(options, "MpiEndpoint", [], { maxPending: 256, spinMicroseconds: 20 }, provider);
    provider.assertOpen();
    super(new MpiTransport(provider, settings.maxPending), settings, provider);
    this.provider = provider;
    this.rank = provider.rank;
    this.size = provider.size;
  }

  /** The endpoint name of `rank`: "ATMP" + rank (u32 LE). */
  static nameOf(rank: number): Uint8Array {
    return mpiEndpointName(rank);
  }
}
