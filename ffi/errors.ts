// Typed errors for failures that come out of C: libc (errno) and libfabric (negative return codes).
// Both carry the C function's name, the positive errno and the library's own text for it.

/** Names for the errno values that this library meets; the number is always kept as well. */
const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM", 2: "ENOENT", 4: "EINTR", 5: "EIO", 9: "EBADF", 11: "EAGAIN", 12: "ENOMEM",
  13: "EACCES", 14: "EFAULT", 16: "EBUSY", 17: "EEXIST", 19: "ENODEV", 22: "EINVAL",
  24: "EMFILE", 28: "ENOSPC", 38: "ENOSYS", 61: "ENODATA", 95: "EOPNOTSUPP", 107: "ENOTCONN",
  110: "ETIMEDOUT", 111: "ECONNREFUSED", 125: "ECANCELED",
  // libfabric's own codes (rdma/fi_errno.h)
  256: "FI_EOTHER", 257: "FI_ETOOSMALL", 258: "FI_EOPBADSTATE", 259: "FI_EAVAIL",
  260: "FI_EBADFLAGS", 261: "FI_ENOEQ", 262: "FI_EDOMAIN", 263: "FI_ENOCQ", 264: "FI_ECRC",
  265: "FI_ETRUNC", 266: "FI_ENOKEY", 267: "FI_ENOAV", 268: "FI_EOVERRUN", 269: "FI_ENORX",
};

/** The symbolic name of an errno value, e.g. `ENOMEM`, or `E<n>` when unknown. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `E${errno}`;
}

/** A libc call failed. `errno` is the value of `errno` right after the call. */
export class SystemError extends Error {
  /** `"SystemError"`. */
  override readonly name = "SystemError";
  /** The C function that failed, e.g. `mlock`. */
  readonly function: string;
  /** The positive errno value. */
  readonly errno: number;
  /** The symbolic errno name, e.g. `ENOMEM`. */
  readonly code: string;
  /** `strerror(errno)`. */
  readonly description: string;

  /**
   * Made by the FFI layer right after the failing call, with `errno` read then.
   * @param fn The C function, e.g. `mlock`.
   * @param errno The positive errno.
   * @param description `strerror(errno)`.
   * @param detail What was asked (sizes, limits), appended to the message.
   * @param options `cause`.
   */
  constructor(fn: string, errno: number, description: string, detail?: string, options?: ErrorOptions) {
    super(`${fn} failed: ${description} (${errnoName(errno)}, errno ${errno})${detail ? `: ${detail}` : ""}`, options);
    this.function = fn;
    this.errno = errno;
    this.code = errnoName(errno);
    this.description = description;
  }
}

/** A libfabric call returned a negative code. `errno` is its absolute value. */
export class FabricError extends Error {
  // string, not the literal: subclasses (RmaError, RmaTimeoutError) name themselves.
  /** `"FabricError"`, or the subclass's name. */
  override readonly name: string = "FabricError";
  /** The libfabric function that failed, e.g. `fi_mr_reg`. */
  readonly function: string;
  /** The positive error number (`-ret`), e.g. 266 for FI_ENOKEY. */
  readonly errno: number;
  /** The symbolic name, e.g. `FI_ENOKEY`. */
  readonly code: string;
  /** `fi_strerror(errno)`. */
  readonly description: string;

  /**
   * Made by the FFI layer from a negative libfabric return code.
   * @param fn The libfabric function, e.g. `fi_getinfo`.
   * @param errno The positive error number (`-ret`).
   * @param description `fi_strerror(errno)`.
   * @param detail What was asked and what is available, appended to the message.
   * @param options `cause`.
   */
  constructor(fn: string, errno: number, description: string, detail?: string, options?: ErrorOptions) {
    super(`${fn} failed: ${description} (${errnoName(errno)}, ${errno})${detail ? `: ${detail}` : ""}`, options);
    this.function = fn;
    this.errno = errno;
    this.code = errnoName(errno);
    this.description = description;
  }

  /** True for -FI_ENOSYS / -FI_ENODATA / -FI_EOPNOTSUPP: the provider does not support the request. */
  get notSupported(): boolean {
    return this.errno === 38 || this.errno === 61 || this.errno === 95;
  }
}

/** libfabric could not be loaded (not installed, wrong path, or an unsupported version). */
export class LibraryLoadError extends Error {
  /** `"LibraryLoadError"`. */
  override readonly name = "LibraryLoadError";
  /** Always `"LIBRARY_LOAD"`, for code that branches on `error.code` across every alloctools error. */
  readonly code = "LIBRARY_LOAD";
  /** The paths that were tried, in order. */
  readonly tried: readonly string[];
  /**
   * Made by the loader; exported so that code can test `instanceof LibraryLoadError`.
   * @param message What was tried and how to install the library.
   * @param tried The paths given to `dlopen`, in order.
   * @param options `cause`: the first `dlopen` failure.
   */
  constructor(message: string, tried: readonly string[], options?: ErrorOptions) {
    super(message, options);
    this.tried = tried;
  }
}

/** The `code` of an {@link AllocToolsTypeError}. */
export type TypeErrorCode =
  | "INVALID_ARGUMENT" // an argument or option of the wrong type
  | "UNKNOWN_OPTION";  // an options object with a key this library does not know (a typo, usually)

/** The `code` of an {@link AllocToolsRangeError}. */
export type RangeErrorCode = "OUT_OF_RANGE"; // a number outside what the call accepts

/**
 * A bad argument: the wrong type, or an unknown option key. It is a `TypeError` (so
 * `instanceof TypeError` holds) that also carries a `code`. Thrown before anything changes.
 */
export class AllocToolsTypeError extends TypeError {
  /** `"INVALID_ARGUMENT"` unless the constructor was given another code. */
  readonly code: TypeErrorCode;
  /**
   * Constructed like `new TypeError(message)`.
   * @param message Names what was asked and what is accepted.
   * @param options `cause`, and `code` (default `"INVALID_ARGUMENT"`).
   */
  constructor(message: string, options?: ErrorOptions & { code?: TypeErrorCode }) {
    super(message, options);
    this.code = options?.code ?? "INVALID_ARGUMENT";
  }
}

/**
 * A number out of range: a size, count, offset or length the call cannot take. It is a
 * `RangeError` (so `instanceof RangeError` holds) that also carries a `code`. Thrown before
 * anything changes.
 */
export class AllocToolsRangeError extends RangeError {
  /** Always `"OUT_OF_RANGE"`. */
  readonly code: RangeErrorCode;
  /**
   * Constructed like `new RangeError(message)`.
   * @param message Names the value given and the range accepted.
   * @param options `cause`.
   */
  constructor(message: string, options?: ErrorOptions & { code?: RangeErrorCode }) {
    super(message, options);
    this.code = options?.code ?? "OUT_OF_RANGE";
  }
}
