// Errors of RMA operations. Both are FabricErrors, so code that already handles libfabric failures
// handles these; the subclasses say what the operation was and why it ended.
import { FabricError } from "../../ffi/errors.ts";

/** The kind of a one-sided operation. */
export type RmaKind = "read" | "write";

/** The kind of any operation of an endpoint: RMA, messages, atomics. */
export type OperationKind = RmaKind | "send" | "recv" | "receive" | "fetchAdd" | "compareSwap";

/** What an operation was, for error messages and for code that retries. */
export interface RmaOperation {
  /** Read or write (or, for an endpoint's other operations, their kind). */
  readonly kind: OperationKind;
  /** Bytes asked for. */
  readonly length: number;
  /** The remote address as posted (virtual or offset, per the target's provider). */
  readonly remoteAddress: bigint;
  /** The remote key as posted. */
  readonly key: bigint;
  /** A message's tag (sends and receives; their remote address and key are 0). */
  readonly tag?: number;
}

/** What an operation was, in words: "64 bytes at remote 0x1000 key 7", "send of 64 bytes, tag 5". */
export function describeOperation(operation: RmaOperation): string {
  if (operation.tag !== undefined) return `${operation.kind} of ${operation.length} bytes, tag ${operation.tag}`;
  return `${operation.length} bytes at remote 0x${operation.remoteAddress.toString(16)} key ${operation.key}`;
}

/**
 * An RMA operation ended with an error completion (fi_cq_read gave -FI_EAVAIL; fi_cq_readerr said
 * why). `errno` is the entry's `err`, `providerErrno` its `prov_errno`, and `providerMessage` the
 * provider's own text from fi_cq_strerror.
 */
export class RmaError extends FabricError {
  /** `"RmaError"`. */
  override readonly name: string = "RmaError";
  /** What was posted. */
  readonly operation: RmaOperation;
  /** The completion entry's `prov_errno`: the provider's own error number. */
  readonly providerErrno: number;
  /** The provider's text for it (`fi_cq_strerror`). */
  readonly providerMessage: string;

  /**
   * Made by Endpoint from an error completion.
   * @param operation What was posted.
   * @param errno The entry's `err` (positive).
   * @param description `fi_strerror(errno)`.
   * @param providerErrno The entry's `prov_errno`.
   * @param providerMessage `fi_cq_strerror` of it.
   * @param fn The libfabric call that posted the operation (`fi_write`, `fi_read` when not given).
   */
  constructor(operation: RmaOperation, errno: number, description: string, providerErrno: number, providerMessage: string, fn = `fi_${operation.kind}`) {
    super(fn, errno, description,
      `${describeOperation(operation)}; provider: ${providerMessage} (prov_errno ${providerErrno})`);
    this.operation = operation;
    this.providerErrno = providerErrno;
    this.providerMessage = providerMessage;
  }
}

/**
 * An RMA operation did not complete within its timeout (errno ETIMEDOUT). Some providers never
 * complete an operation with a bad key (udp;ofi_rxd), or lose it with the connection: this is what
 * the caller sees instead of a hang. The operation may still be posted: do not reuse its local
 * memory for another transfer until the endpoint is closed.
 */
export class RmaTimeoutError extends FabricError {
  /** `"RmaTimeoutError"`. */
  override readonly name: string = "RmaTimeoutError";
  /** What was posted. */
  readonly operation: RmaOperation;
  /** The timeout that passed, in milliseconds. */
  readonly timeoutMs: number;

  /**
   * Made by an endpoint when an operation's timeout passes.
   * @param operation What was posted.
   * @param timeoutMs The timeout that passed.
   * @param fn The transport's function that posted it (`fi_write` and `fi_read` when not given).
   * @param hint What to check, appended to the message (the peer, the transport).
   */
  constructor(operation: RmaOperation, timeoutMs: number, fn = `fi_${operation.kind}`, hint = "") {
    super(fn, 110, "Operation timed out",
      `no completion within ${timeoutMs} ms for ${describeOperation(operation)}${hint === "" ? "" : `; ${hint}`}`);
    this.operation = operation;
    this.timeoutMs = timeoutMs;
  }
}
