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

/**
 * A system library loaded on first use, once per thread (dlopen once); a failure to load is kept
 * and thrown again, and `status()` says either way without throwing.
 */
export class LazyLibrary<Library extends { readonly path: string }> {
  private loaded: Library | null = null;
  private failure: Error | null = null;

  /**
   * @param load Loads the library (throws LibraryLoadError, or another typed error kept as well).
   * @param versionOf The version `status()` reports for the loaded library.
   */
  constructor(private readonly load: () => Library, private readonly versionOf: (library: Library) => string) {}

  /** The library, loaded now if it was not. Throws what loading threw (the first time and after). */
  get(): Library {
    if (this.loaded !== null) return this.loaded;
    if (this.failure !== null) throw this.failure;
    try {
      this.loaded = this.load();
      return this.loaded;
    } catch (e) {
      if (e instanceof Error) this.failure = e;
      throw e;
    }
  }

  /** Whether the library loads here; the reason when it does not. Never throws. */
  status(): LibraryStatus {
    try {
      const library = this.get();
      return { available: true, version: this.versionOf(library), path: library.path };
    } catch (e) {
      return { available: false, reason: e instanceof Error ? e.message : String(e) };
    }
  }
}
