// PMIx through bun:ffi: the one file that knows PMIx's symbols, struct layouts and constants. PMIx
// is what mpirun, prterun and `srun --mpi=pmix` serve to the processes they start, MPI or not.
//
// - Layouts are LP64, taken with offsetof against PMIx 4.2's pmix_common.h; test/jobs/layout.test.ts
//   compiles the same table (and the constants) against the installed libpmix-dev headers.
// - Errors: every call that returns a pmix_status_t other than PMIX_SUCCESS becomes a PmixError
//   with the function, the status, its name and PMIx_Error_string's text.
// - Singleton: PMIx_Init without a server returns PMIX_ERR_UNREACH (-25) but still names this
//   process (namespace "singleton.<host>.<pid>", rank 0) and serves local puts and gets. That is
//   reported as `singleton: true`, not as an error.
// - Keys are put once, committed, then fenced with PMIX_COLLECT_DATA before anyone gets them: a
//   PMIx_Get before the fence fails (open-mpi/ompi#6982, openpmix/openpmix#1427).
// - Nonblocking fences never run JavaScript off-thread. PMIx calls a fence's completion callback on
//   its own progress thread, so the callback handed to PMIx_Fence_nb is C (pmix-fence-done.c,
//   compiled once with bun:ffi's cc): it stores the status into a word of pinned memory, and the
//   event loop polls that word. No JSCallback is ever given to PMIx.
import { cc, CString, dlopen, FFIType, ptr, read, toArrayBuffer, type Pointer } from "bun:ffi";
import { AllocToolsError } from "../lib/errors.ts";
import { AllocToolsRangeError, LibraryLoadError } from "./errors.ts";
import * as libc from "./libc.ts";
import { LazyLibrary, type LibraryLocation, type LibraryStatus } from "./library-status.ts";

const symbols = {
  // pmix_status_t PMIx_Init(pmix_proc_t *proc, pmix_info_t info[], size_t ninfo)
  PMIx_Init: { args: [FFIType.ptr, FFIType.ptr, FFIType.u64], returns: FFIType.i32 },
  // pmix_status_t PMIx_Finalize(const pmix_info_t info[], size_t ninfo)
  PMIx_Finalize: { args: [FFIType.ptr, FFIType.u64], returns: FFIType.i32 },
  // pmix_status_t PMIx_Abort(int status, const char msg[], pmix_proc_t procs[], size_t nprocs)
  PMIx_Abort: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr, FFIType.u64], returns: FFIType.i32 },
  // pmix_status_t PMIx_Put(pmix_scope_t scope, const pmix_key_t key, pmix_value_t *val)   (pmix_scope_t: uint8_t)
  PMIx_Put: { args: [FFIType.u8, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  // pmix_status_t PMIx_Commit(void)
  PMIx_Commit: { args: [], returns: FFIType.i32 },
  // pmix_status_t PMIx_Fence(const pmix_proc_t procs[], size_t nprocs, const pmix_info_t info[], size_t ninfo)
  PMIx_Fence: { args: [FFIType.ptr, FFIType.u64, FFIType.ptr, FFIType.u64], returns: FFIType.i32 },
  // pmix_status_t PMIx_Fence_nb(const pmix_proc_t procs[], size_t nprocs, const pmix_info_t info[], size_t ninfo,
  //                             pmix_op_cbfunc_t cbfunc, void *cbdata)
  PMIx_Fence_nb: { args: [FFIType.ptr, FFIType.u64, FFIType.ptr, FFIType.u64, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  // pmix_status_t PMIx_Get(const pmix_proc_t *proc, const pmix_key_t key, const pmix_info_t info[], size_t ninfo,
  //                        pmix_value_t **val)
  PMIx_Get: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
  // void PMIx_Value_destruct(pmix_value_t *val)
  PMIx_Value_destruct: { args: [FFIType.ptr], returns: FFIType.void },
  // const char *PMIx_Error_string(pmix_status_t status)
  PMIx_Error_string: { args: [FFIType.i32], returns: FFIType.ptr },
  // const char *PMIx_Get_version(void)
  PMIx_Get_version: { args: [], returns: FFIType.ptr },
} as const;

type Symbols = ReturnType<typeof dlopen<typeof symbols>>["symbols"];

/** One C struct of pmix_common.h: its C name, size and the offsets of the fields we use. */
export interface PmixStructLayout {
  /** The C type name, e.g. `pmix_proc_t`. */
  readonly cName: string;
  /** sizeof. */
  readonly size: number;
  /** Byte offset of each field we read or write (nested members written as C designators). */
  readonly fields: Readonly<Record<string, number>>;
}

/** Struct layouts of PMIx 4.2 on LP64, checked by test/jobs/layout.test.ts. */
export const pmixLayout = {
  pmix_proc_t: { cName: "pmix_proc_t", size: 260, fields: { nspace: 0, rank: 256 } },
  pmix_byte_object_t: { cName: "pmix_byte_object_t", size: 16, fields: { bytes: 0, size: 8 } },
  pmix_value_t: {
    cName: "pmix_value_t", size: 32,
    fields: { type: 0, data: 8, "data.flag": 8, "data.integer": 8, "data.uint32": 8, "data.bo.bytes": 8, "data.bo.size": 16 },
  },
  pmix_info_t: { cName: "pmix_info_t", size: 552, fields: { key: 0, flags: 512, value: 520, "value.data": 528 } },
} as const satisfies Record<string, PmixStructLayout>;

/** Constants of pmix_common.h that this library uses (checked by test/jobs/layout.test.ts). */
export const PMIX = {
  SUCCESS: 0,
  ERR_TYPE_MISMATCH: -18,
  ERR_TIMEOUT: -24,
  ERR_UNREACH: -25,
  ERR_BAD_PARAM: -27,
  ERR_NOT_FOUND: -46,
  ERR_PARTIAL_SUCCESS: -52,
  ERR_LOST_CONNECTION: -61,
  /** A nonblocking call finished before it returned: its callback will not run. */
  OPERATION_SUCCEEDED: -157,
  /** pmix_scope_t: the value is seen by every process of the job, on any node. */
  GLOBAL: 3,
  /** pmix_data_type_t values. */
  BOOL: 1,
  INT: 6,
  UINT32: 14,
  BYTE_OBJECT: 27,
  /** pmix_rank_t meaning "every rank of the namespace". */
  RANK_WILDCARD: 0xffff_fffe,
  /** Longest namespace and key, without their terminating NUL. */
  MAX_NSLEN: 255,
  MAX_KEYLEN: 511,
} as const;

/** Attribute keys (pmix_common.h's PMIX_* string macros) this library passes or reads. */
export const PMIX_ATTRIBUTES = {
  /** PMIX_COLLECT_DATA (bool): the fence brings every process's committed data along. */
  COLLECT_DATA: "pmix.collect",
  /** PMIX_JOB_SIZE (uint32): processes in the job. */
  JOB_SIZE: "pmix.job.size",
  /** PMIX_TIMEOUT (int, seconds): how long a fence or get may take before PMIX_ERR_TIMEOUT. */
  TIMEOUT: "pmix.timeout",
} as const;

/** Names of the statuses this library meets (pmix_common.h); the number is always kept as well. */
const STATUS_NAMES: Readonly<Record<number, string>> = {
  0: "PMIX_SUCCESS", [-1]: "PMIX_ERROR", [-8]: "PMIX_ERR_PROC_REQUESTED_ABORT", [-11]: "PMIX_ERR_EXISTS",
  [-15]: "PMIX_ERR_WOULD_BLOCK", [-18]: "PMIX_ERR_TYPE_MISMATCH", [-23]: "PMIX_ERR_NO_PERMISSIONS",
  [-24]: "PMIX_ERR_TIMEOUT", [-25]: "PMIX_ERR_UNREACH", [-27]: "PMIX_ERR_BAD_PARAM", [-28]: "PMIX_ERR_RESOURCE_BUSY",
  [-29]: "PMIX_ERR_OUT_OF_RESOURCE", [-31]: "PMIX_ERR_INIT", [-32]: "PMIX_ERR_NOMEM", [-46]: "PMIX_ERR_NOT_FOUND",
  [-47]: "PMIX_ERR_NOT_SUPPORTED", [-49]: "PMIX_ERR_COMM_FAILURE", [-52]: "PMIX_ERR_PARTIAL_SUCCESS",
  [-53]: "PMIX_ERR_DUPLICATE_KEY", [-61]: "PMIX_ERR_LOST_CONNECTION", [-156]: "PMIX_OPERATION_IN_PROGRESS",
  [-157]: "PMIX_OPERATION_SUCCEEDED", [-158]: "PMIX_ERR_INVALID_OPERATION", [-200]: "PMIX_ERR_PROC_TERM_WO_SYNC",
};

/** The symbolic name of a pmix_status_t, e.g. `PMIX_ERR_TIMEOUT`, or `PMIX_STATUS_<n>` when unknown. */
export function pmixStatusName(status: number): string {
  return STATUS_NAMES[status] ?? `PMIX_STATUS_${status}`;
}

/** A PMIx call returned a status other than PMIX_SUCCESS. */
export class PmixError extends Error {
  /** Always `"PmixError"`. */
  override readonly name: string = "PmixError";
  /** The PMIx function that failed, e.g. `PMIx_Fence`. */
  readonly function: string;
  /** The pmix_status_t it returned, e.g. -24. */
  readonly status: number;
  /** The status's name, e.g. `PMIX_ERR_TIMEOUT`. */
  readonly code: string;
  /** `PMIx_Error_string(status)`, e.g. "TIMEOUT". */
  readonly description: string;

  /**
   * Made by the PMIx bindings on a failed call; exported so that code can test `instanceof PmixError`.
   * @param fn The PMIx function that failed.
   * @param status The status it returned.
   * @param description `PMIx_Error_string(status)`.
   * @param detail What was asked (key, rank, timeout), appended to the message.
   */
  constructor(fn: string, status: number, description: string, detail?: string) {
    super(`${fn} failed: ${description} (${pmixStatusName(status)}, ${status})${detail ? `: ${detail}` : ""}`);
    this.function = fn;
    this.status = status;
    this.code = pmixStatusName(status);
    this.description = description;
  }
}

/** Where libpmix is looked for, and how to install it. */
export const PMIX_LOCATION: LibraryLocation = {
  name: "PMIx",
  names: ["libpmix.so.2", "libpmix.so"],
  variable: "ALLOCTOOLS_PMIX_PATH",
  install: "'apt-get install libpmix2' (Debian/Ubuntu) or 'dnf install pmix'",
};
const DEFAULT_NAMES = PMIX_LOCATION.names;
const PROC = pmixLayout.pmix_proc_t;
const VALUE = pmixLayout.pmix_value_t;
const INFO = pmixLayout.pmix_info_t;
const SINGLETON_PREFIX = "singleton.";

function cString(s: string): Buffer {
  return Buffer.from(`${s}\0`);
}

/** A key as PMIx takes it: at most PMIX_MAX_KEYLEN bytes, NUL-terminated. */
function keyBytes(key: string): Buffer {
  const bytes = cString(key);
  if (bytes.length - 1 > PMIX.MAX_KEYLEN || key.includes("\0")) throw new AllocToolsRangeError(`PMIx key ${JSON.stringify(key)} is not a C string of at most ${PMIX.MAX_KEYLEN} bytes`);
  return bytes;
}

/** A loaded libpmix: the calls a job's bootstrap makes. */
export class PmixLibrary {
  /** The path that was loaded. */
  readonly path: string;
  /** `PMIx_Get_version`, e.g. "OpenPMIx 4.2.2rc2". */
  readonly version: string;
  /** @internal */
  readonly fn: Symbols;

  private constructor(path: string, fn: Symbols) {
    this.path = path;
    this.fn = fn;
    const text = fn.PMIx_Get_version() as Pointer | null;
    this.version = text === null ? "unknown PMIx" : new CString(text).toString().replace(/\s*\(.*$/, "");
  }

  /**
   * Loads libpmix: `$ALLOCTOOLS_PMIX_PATH` when set, else `libpmix.so.2`, then `libpmix.so`.
   * Throws LibraryLoadError saying what was tried and how to install PMIx.
   */
  static load(path: string | undefined = process.env.ALLOCTOOLS_PMIX_PATH): PmixLibrary {
    const tried = path !== undefined && path !== "" ? [path] : DEFAULT_NAMES;
    const causes: unknown[] = [];
    for (const candidate of tried) {
      try {
        return new PmixLibrary(candidate, dlopen(candidate, symbols).symbols);
      } catch (e) {
        causes.push(e);
      }
    }
    const how = path ? `ALLOCTOOLS_PMIX_PATH=${path} could not be loaded` : `tried ${tried.join(", ")}`;
    throw new LibraryLoadError(
      `PMIx is not available (${how}). Install it with ${PMIX_LOCATION.install}, ` +
        `or point ALLOCTOOLS_PMIX_PATH at libpmix.so.2. ` +
        `Cause: ${causes.map((c) => (c instanceof Error ? c.message : String(c))).join("; ")}`,
      tried, { cause: causes[0] });
  }

  /** `PMIx_Error_string(status)`. */
  errorString(status: number): string {
    const text = this.fn.PMIx_Error_string(status) as Pointer | null;
    return text === null ? `PMIx status ${status}` : new CString(text).toString();
  }

  /** The PmixError for `status` returned by `fn`. */
  error(fn: string, status: number, detail?: string): PmixError {
    return new PmixError(fn, status, this.errorString(status), detail);
  }

  /**
   * `PMIx_Init`: connects to the launcher's PMIx server and names this process. Without a server
   * PMIx answers PMIX_ERR_UNREACH with a singleton namespace: that is `singleton: true` (finalize
   * it like any other client). Any other failure throws PmixError.
   */
  init(): PmixClient {
    const proc = new Uint8Array(PROC.size);
    const status = this.fn.PMIx_Init(proc, null, 0);
    const nspace = Buffer.from(proc.subarray(PROC.fields.nspace, PROC.fields.nspace + PMIX.MAX_NSLEN + 1)).toString("latin1").replace(/\0.*$/s, "");
    const rank = new DataView(proc.buffer).getUint32(PROC.fields.rank, true);
    const singleton = status === PMIX.ERR_UNREACH && nspace.startsWith(SINGLETON_PREFIX);
    if (status !== PMIX.SUCCESS && !singleton) throw this.error("PMIx_Init", status, "no PMIx client could be made for this process");
    return new PmixClient(this, proc, nspace, rank, singleton);
  }
}

/** The PMIx client of this process once PMIx_Init succeeded: puts, fences, gets, abort, finalize. */
export class PmixClient {
  /** The job's namespace, e.g. "slurm.pmix.12.0", or "singleton.<host>.<pid>". */
  readonly nspace: string;
  /** This process's rank in the namespace. */
  readonly rank: number;
  /** PMIx_Init found no server: this process is a job of its own. */
  readonly singleton: boolean;
  private readonly pmix: PmixLibrary;
  /** A pmix_proc_t of this namespace whose rank is rewritten per get. */
  private readonly peer: Uint8Array;
  private readonly peerView: DataView;
  private readonly valueOut = new BigUint64Array(1);
  private readonly putValue = new Uint8Array(VALUE.size);
  private readonly putView = new DataView(this.putValue.buffer);
  private finalized = false;

  /** @internal Made by PmixLibrary.init(). */
  constructor(pmix: PmixLibrary, proc: Uint8Array, nspace: string, rank: number, singleton: boolean) {
    this.pmix = pmix;
    this.nspace = nspace;
    this.rank = rank;
    this.singleton = singleton;
    this.peer = proc.slice();
    this.peerView = new DataView(this.peer.buffer);
  }

  /** Whether finalize() ran. */
  get closed(): boolean {
    return this.finalized;
  }

  /** `PMIx_Get(<nspace, wildcard>, PMIX_JOB_SIZE)`: processes in the job. */
  jobSize(): number {
    const value = this.getValue(PMIX.RANK_WILDCARD, PMIX_ATTRIBUTES.JOB_SIZE, 0);
    try {
      const type = read.u16(value as Pointer, VALUE.fields.type);
      if (type !== PMIX.UINT32) throw this.pmix.error("PMIx_Get", PMIX.ERR_TYPE_MISMATCH, `${PMIX_ATTRIBUTES.JOB_SIZE} is of type ${type}, not PMIX_UINT32`);
      return read.u32(value as Pointer, VALUE.fields["data.uint32"]);
    } finally {
      this.releaseValue(value);
    }
  }

  /** `PMIx_Put(PMIX_GLOBAL, key, <PMIX_BYTE_OBJECT of bytes>)`: PMIx copies the bytes. */
  put(key: string, bytes: Uint8Array): void {
    const keyText = keyBytes(key);
    const value = this.putValue;
    value.fill(0);
    this.putView.setUint16(VALUE.fields.type, PMIX.BYTE_OBJECT, true);
    this.putView.setBigUint64(VALUE.fields["data.bo.size"], BigInt(bytes.length), true);
    // Last before the call, so that nothing runs between taking the address and PMIx copying the
    // bytes. A zero-length object has no bytes pointer (ptr() of an empty view would fail).
    this.putView.setBigUint64(VALUE.fields["data.bo.bytes"], bytes.length === 0 ? 0n : BigInt(ptr(bytes)), true);
    const status = this.pmix.fn.PMIx_Put(PMIX.GLOBAL, keyText, value);
    if (status !== PMIX.SUCCESS) throw this.pmix.error("PMIx_Put", status, `key ${key}, ${bytes.length} bytes`);
  }

  /** `PMIx_Commit`: hands what was put to the local server. */
  commit(): void {
    const status = this.pmix.fn.PMIx_Commit();
    if (status !== PMIX.SUCCESS) throw this.pmix.error("PMIx_Commit", status);
  }

  /**
   * `PMIx_Fence(NULL, 0, info)` over the whole namespace: with `collect`, PMIX_COLLECT_DATA (every
   * process's committed data comes along); `timeoutSeconds` > 0 adds PMIX_TIMEOUT. Blocks the
   * calling thread. Throws PmixError (PMIX_ERR_TIMEOUT, or PMIX_ERR_PARTIAL_SUCCESS when a process
   * of the job ended).
   */
  fence(collect: boolean, timeoutSeconds: number, detail: string): void {
    const info = fenceInfo(collect, timeoutSeconds);
    const status = this.pmix.fn.PMIx_Fence(null, 0, info.bytes, info.count);
    if (status !== PMIX.SUCCESS) throw this.pmix.error("PMIx_Fence", status, detail);
  }

  /**
   * `PMIx_Fence_nb` with the C completion callback (see the file header): poll the result with
   * `PendingFence.poll()`. Throws PmixError when PMIx refuses to start it, AllocToolsError
   * NOT_SUPPORTED when bun:ffi's cc cannot build the callback.
   */
  startFence(collect: boolean, timeoutSeconds: number, detail: string): PendingFence {
    const info = fenceInfo(collect, timeoutSeconds);
    const slot = fenceSlots.take(info.bytes);
    const status = this.pmix.fn.PMIx_Fence_nb(null, 0, info.bytes, info.count, fenceDoneCallback(), fenceSlots.address(slot));
    if (status === PMIX.OPERATION_SUCCEEDED) {
      fenceSlots.give(slot);
      return new PendingFence(this.pmix, -1, PMIX.SUCCESS, detail);
    }
    if (status !== PMIX.SUCCESS) {
      fenceSlots.give(slot);
      throw this.pmix.error("PMIx_Fence_nb", status, detail);
    }
    return new PendingFence(this.pmix, slot, PENDING, detail);
  }

  /**
   * `PMIx_Get(<nspace, rank>, key)` of a PMIX_BYTE_OBJECT: a copy of its bytes. `timeoutSeconds`
   * > 0 adds PMIX_TIMEOUT. Throws PmixError (PMIX_ERR_NOT_FOUND when the rank never put the key
   * before the last collecting fence; PMIX_ERR_TYPE_MISMATCH for a value of another type).
   */
  getBytes(rank: number, key: string, timeoutSeconds: number): Uint8Array {
    const value = this.getValue(rank, key, timeoutSeconds);
    try {
      const type = read.u16(value as Pointer, VALUE.fields.type);
      if (type !== PMIX.BYTE_OBJECT) {
        throw this.pmix.error("PMIx_Get", PMIX.ERR_TYPE_MISMATCH, `rank ${rank}'s ${key} is of type ${type}, not PMIX_BYTE_OBJECT (${PMIX.BYTE_OBJECT})`);
      }
      const bytes = Number(read.u64(value as Pointer, VALUE.fields["data.bo.size"]));
      const at = read.ptr(value as Pointer, VALUE.fields["data.bo.bytes"]);
      if (bytes === 0 || at === 0) return new Uint8Array(0);
      return new Uint8Array(toArrayBuffer(at as Pointer, 0, bytes)).slice();
    } finally {
      this.releaseValue(value);
    }
  }

  /**
   * `PMIx_Abort(status, message, NULL, 0)`: asks the launcher to end every process of the job.
   * Returns PMIx's status (never throws: it is called on the way out).
   */
  abort(status: number, message: string): number {
    return this.pmix.fn.PMIx_Abort(status, cString(message), null, 0);
  }

  /** `PMIx_Finalize(NULL, 0)` (no barrier); idempotent. Throws PmixError. */
  finalize(): void {
    if (this.finalized) return;
    this.finalized = true;
    const status = this.pmix.fn.PMIx_Finalize(null, 0);
    if (status !== PMIX.SUCCESS) throw this.pmix.error("PMIx_Finalize", status);
  }

  private getValue(rank: number, key: string, timeoutSeconds: number): number {
    this.peerView.setUint32(PROC.fields.rank, rank, true);
    const info = timeoutSeconds > 0 ? timeoutInfo(timeoutSeconds) : null;
    const status = this.pmix.fn.PMIx_Get(this.peer, keyBytes(key), info, info === null ? 0 : 1, this.valueOut);
    if (status !== PMIX.SUCCESS) {
      const who = rank === PMIX.RANK_WILDCARD ? "the job" : `rank ${rank}`;
      throw this.pmix.error("PMIx_Get", status, `${who}'s ${key} in namespace ${this.nspace}`);
    }
    return Number(this.valueOut[0]);
  }

  /** PMIX_VALUE_RELEASE: PMIx_Value_destruct, then free() of the value PMIx_Get allocated. */
  private releaseValue(value: number): void {
    this.pmix.fn.PMIx_Value_destruct(value as Pointer);
    libc.free(value);
  }
}

/** The pending-marker of a fence slot: no pmix_status_t has this value. */
const PENDING = 0x7fff_ffff;

/**
 * The completion words of nonblocking fences, handed out one per fence. They live in native memory
 * (calloc, never freed: PMIx's thread may store into a slot long after its fence was given up on),
 * not in a JS typed array: JSC may move a small typed array's storage after ptr() was taken
 * (making its ArrayBuffer does, and it happened to these words inside a job), which left PMIx
 * storing into memory nobody read.
 */
class FenceSlots {
  private static readonly COUNT = 256;
  private readonly base = libc.calloc(FenceSlots.COUNT * Int32Array.BYTES_PER_ELEMENT);
  readonly words = new Int32Array(toArrayBuffer(this.base as Pointer, 0, FenceSlots.COUNT * Int32Array.BYTES_PER_ELEMENT));
  private readonly free: number[] = [];
  /** Each fence's pmix_info_t array, referenced until the fence completes. */
  private readonly infos: (Uint8Array | null)[] = new Array(FenceSlots.COUNT).fill(null);

  constructor() {
    for (let slot = FenceSlots.COUNT - 1; slot >= 0; slot--) this.free.push(slot);
  }

  take(info: Uint8Array | null): number {
    const slot = this.free.pop();
    if (slot === undefined) throw new AllocToolsError("BUSY", `${FenceSlots.COUNT} nonblocking PMIx fences are already in flight`);
    Atomics.store(this.words, slot, PENDING);
    this.infos[slot] = info;
    return slot;
  }

  give(slot: number): void {
    this.infos[slot] = null;
    this.free.push(slot);
  }

  address(slot: number): Pointer {
    return (this.base + slot * Int32Array.BYTES_PER_ELEMENT) as Pointer;
  }
}

const fenceSlots = new FenceSlots();

/** A nonblocking fence in flight: poll() until it gives a status. */
export class PendingFence {
  private readonly pmix: PmixLibrary;
  private slot: number;
  private status: number;
  private readonly detail: string;

  /** @internal Made by PmixClient.startFence(). */
  constructor(pmix: PmixLibrary, slot: number, status: number, detail: string) {
    this.pmix = pmix;
    this.slot = slot;
    this.status = status;
    this.detail = detail;
  }

  /**
   * True once the fence completed successfully, false while it is in flight; throws PmixError
   * when it completed with an error.
   */
  poll(): boolean {
    if (this.status === PENDING) {
      const status = Atomics.load(fenceSlots.words, this.slot);
      if (status === PENDING) return false;
      this.status = status;
      fenceSlots.give(this.slot);
      this.slot = -1;
    }
    if (this.status !== PMIX.SUCCESS) throw this.pmix.error("PMIx_Fence_nb", this.status, this.detail);
    return true;
  }

  /**
   * Gives up waiting: the slot is never reused (PMIx may still store into it), so an abandoned
   * fence costs one word for the life of the process.
   */
  abandon(): void {
    this.slot = -1;
    this.status = PMIX.ERR_TIMEOUT;
  }
}

/** The compiled callback: kept referenced for the life of the process (PMIx may call it any time). */
let fenceDoneLibrary: ReturnType<typeof cc> | undefined;
let fenceDonePointer = 0;

/** The C completion callback (pmix-fence-done.c), compiled with bun:ffi's cc at first use. */
function fenceDoneCallback(): Pointer {
  if (fenceDoneLibrary === undefined) {
    try {
      fenceDoneLibrary = cc({
        source: `${import.meta.dir}/pmix-fence-done.c`,
        symbols: { alloctools_pmix_fence_done: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.void } },
      });
    } catch (e) {
      throw new AllocToolsError("NOT_SUPPORTED",
        "a nonblocking PMIx fence needs its completion callback compiled by bun:ffi's cc (TinyCC), which failed here: " +
          `${e instanceof Error ? e.message : String(e)}. Use the blocking barrier() instead.`, { cause: e });
    }
    // A cc symbol carries its native address as `ptr` (not in bun:ffi's types).
    fenceDonePointer = Number((fenceDoneLibrary.symbols.alloctools_pmix_fence_done as unknown as { ptr: number }).ptr);
  }
  return fenceDonePointer as Pointer;
}

/** A pmix_info_t array for a fence: PMIX_COLLECT_DATA when collecting, PMIX_TIMEOUT when > 0. */
function fenceInfo(collect: boolean, timeoutSeconds: number): { bytes: Uint8Array | null; count: number } {
  const count = (collect ? 1 : 0) + (timeoutSeconds > 0 ? 1 : 0);
  if (count === 0) return { bytes: null, count: 0 };
  const bytes = new Uint8Array(count * INFO.size);
  let at = 0;
  if (collect) {
    writeInfoKey(bytes, at, PMIX_ATTRIBUTES.COLLECT_DATA, PMIX.BOOL);
    bytes[at + INFO.fields["value.data"]] = 1;
    at += INFO.size;
  }
  if (timeoutSeconds > 0) writeTimeout(bytes, at, timeoutSeconds);
  return { bytes, count };
}

/** A one-entry pmix_info_t array: PMIX_TIMEOUT. */
function timeoutInfo(timeoutSeconds: number): Uint8Array {
  const bytes = new Uint8Array(INFO.size);
  writeTimeout(bytes, 0, timeoutSeconds);
  return bytes;
}

function writeTimeout(bytes: Uint8Array, at: number, timeoutSeconds: number): void {
  writeInfoKey(bytes, at, PMIX_ATTRIBUTES.TIMEOUT, PMIX.INT);
  new DataView(bytes.buffer).setInt32(at + INFO.fields["value.data"], Math.min(Math.ceil(timeoutSeconds), 0x7fff_ffff), true);
}

function writeInfoKey(bytes: Uint8Array, at: number, key: string, type: number): void {
  bytes.set(keyBytes(key), at + INFO.fields.key);
  new DataView(bytes.buffer).setUint16(at + INFO.fields.value + VALUE.fields.type, type, true);
}

const library = new LazyLibrary(() => PmixLibrary.load(), (loaded) => loaded.version);

/** The process-wide libpmix, loaded on first use (dlopen once). Throws LibraryLoadError. */
export function pmixLibrary(): PmixLibrary {
  return library.get();
}

/** Whether libpmix loads here; the reason when it does not. Never throws, never calls PMIx_Init. */
export function pmixStatus(): LibraryStatus {
  return library.status();
}
