// The library's own errors. Failures that come from C are SystemError (libc) and FabricError
// (libfabric), defined beside the FFI layer; bad arguments are TypeError/RangeError.
export { SystemError, FabricError, LibraryLoadError, errnoName } from "../ffi/errors.ts";

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
  | "DETACHED"           // the region's memory left its view: a caller transferred (detached) its buffer
  | "NOT_SUPPORTED";     // the provider needs something this library does not do

/** A state or limit error of the pool, its regions or its providers. */
export class AllocToolsError extends Error {
  override readonly name = "AllocToolsError";
  readonly code: AllocToolsErrorCode;
  constructor(code: AllocToolsErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}
