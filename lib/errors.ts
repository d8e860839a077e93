// The library's own errors. Failures that come from C are SystemError (libc) and FabricError
// (libfabric), defined beside the FFI layer, as are the argument errors (AllocToolsTypeError,
// AllocToolsRangeError: the FFI layer throws them too, and it does not import lib/).
export {
  SystemError, FabricError, LibraryLoadError, AllocToolsTypeError, AllocToolsRangeError, errnoName,
  type TypeErrorCode, type RangeErrorCode,
} from "../ffi/errors.ts";

/** What went wrong, for code that branches on it. */
export type AllocToolsErrorCode =
  | "POOL_CLOSED"        // the pool (or provider) was closed
  | "DOUBLE_RELEASE"     // the region is not out: released twice, or never got
  | "FOREIGN_REGION"     // the region belongs to another pool
  | "PINNED_LIMIT"       // maxPinnedBytes would be exceeded
  | "KEYS_EXHAUSTED"     // the provider's key space is used up
  | "HUGE_PAGES"         // huge pages were required but the system has none free
  | "PROVIDER_CLOSED"    // the provider was closed
  | "ENDPOINT_CLOSED"    // the RMA endpoint was closed (operations after close, or pending at close)
  | "BUSY"               // RMA operations in flight still use the memory (release, close)
  | "NOT_SUPPORTED"      // the provider needs something this library does not do
  | "SETTING_MISMATCH"   // the ranks of a job disagree on a setting they must share (MPI's osc_rdma_max_attach)
  | "DETACHED"           // the buffer was detached (transfer(), a transfer list): its memory left the region
  | "CACHE_FULL"         // a registration cache's limits are reached with every entry in use
  | "CACHE_CLOSED"       // the registration cache was closed
  | "JOB_CLOSED"         // the job (Job or MpiJob) was closed
  | "JOB_UNAVAILABLE"    // Job.open could not join the way asked (no launcher, no PMIx or MPI library)
  | "TRUNCATED";         // a message was longer than the receive's memory (nothing written past it)

/**
 * A state or limit error of the pool, its regions or its providers: branch on `code`. Thrown
 * before anything changes (the pool, provider or endpoint stays as it was).
 */
export class AllocToolsError extends Error {
  /** `"AllocToolsError"`. */
  override readonly name = "AllocToolsError";
  /** What went wrong; see {@link AllocToolsErrorCode}. */
  readonly code: AllocToolsErrorCode;
  /**
   * An error with a code, thrown by the library (exported for `instanceof`).
   * @param code What went wrong.
   * @param message What was asked and what is available.
   * @param options `cause`.
   */
  constructor(code: AllocToolsErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}
