// What libfabricStatus() and mpiStatus() answer: whether a system library loads here (ucxStatus()'s
// UcxStatus has the same shape).

/** Whether a system library loads in this process (`libfabricStatus()`, `mpiStatus()`; `ucxStatus()` gives the same shape). */
export type LibraryStatus = LibraryAvailable | LibraryUnavailable;

/** The library loaded. */
export interface LibraryAvailable {
  /** Always true. */
  readonly available: true;
  /**
   * The version the library reports: libfabric "1.17", MPI the first line of
   * `MPI_Get_library_version` ("Open MPI v4.1.4, ...").
   */
  readonly version: string;
  /** The path it was loaded from. */
  readonly path: string;
}

/** The library did not load. */
export interface LibraryUnavailable {
  /** Always false. */
  readonly available: false;
  /** Why not: the load error's message, naming the paths tried and how to install the library. */
  readonly reason: string;
}

/**
 * Where a system library is looked for and how to install it: one source for the loader's error
 * and for `alloctools doctor`.
 */
export interface LibraryLocation {
  /** The library as people name it: "libfabric", "UCX", "Open MPI", "PMIx". */
  readonly name: string;
  /** The names given to dlopen, in order, when the variable is not set. */
  readonly names: readonly string[];
  /** The environment variable that names the library's path instead, e.g. "ALLOCTOOLS_LIBFABRIC_PATH". */
  readonly variable: string;
  /** How to install it: "'apt-get install libfabric1' (Debian/Ubuntu) or 'dnf install libfabric'". */
  readonly install: string;
}
