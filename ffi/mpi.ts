// Open MPI through bun:ffi: the only module that knows MPI symbols, handle values and constants.
//
// - Handles: in Open MPI an MPI_Comm, MPI_Datatype, MPI_Info, MPI_Errhandler, ... is a pointer, and
//   the predefined ones (MPI_COMM_WORLD, MPI_BYTE, ...) are the addresses of exported globals
//   (`ompi_mpi_comm_world`, `ompi_mpi_byte`, ...). They are looked up once with dlsym.
// - MPICH and its derivatives pass handles as integers: detected (no `ompi_mpi_comm_world`) and
//   refused with AllocToolsError NOT_SUPPORTED, naming the library found.
// - The library is dlopen'ed RTLD_GLOBAL first: Open MPI's plug-ins (mca_*.so) resolve libmpi's
//   symbols globally.
// - Errors: every call that returns an MPI error code goes through `check`, which throws MpiError
//   with the function, the code, its class (MPI_Error_class) and MPI_Error_string's text. The world
//   communicator and every window get MPI_ERRORS_RETURN so that failures come back as codes.
// - Signals: MPI_Init installs SIGSEGV/SIGBUS handlers (opal_signal); Bun's engine needs its own to
//   stop a busy Worker, so they are saved before MPI_Init_thread and restored after it.
// - Lifetime: MPI is initialized once per process and can never be again once finalized. Users
//   (providers, jobs) acquire it; MPI_Finalize runs when the last one releases it, and only if this
//   library initialized MPI.
// - Exit: a process that exits with MPI still initialized by this library (a job or provider left
//   open) never hangs its job. Exiting with a code other than 0 (process.exit(n), an uncaught
//   exception) says so on stderr, naming the rank, and calls MPI_Abort, which ends every rank.
//   Exiting with 0 calls MPI_Finalize, which waits for every other rank to finalize too (a rank
//   that closed its job, or exits the same way): when they do not within
//   ALLOCTOOLS_MPI_EXIT_TIMEOUT_MS (they wait in a collective this rank left), the process says so
//   and ends itself with SIGALRM, and the launcher ends the job (exit-watchdog.ts).
import { dlopen, FFIType, CString, read, type Pointer } from "bun:ffi";
import { writeSync } from "node:fs";
import { AllocToolsError } from "../lib/errors.ts";
import { AllocToolsRangeError, LibraryLoadError } from "./errors.ts";
import { runExitCleanups } from "./exit-cleanups.ts";
import { boundedAtExit } from "./exit-watchdog.ts";
import * as libc from "./libc.ts";
import { LazyLibrary, type LibraryLocation, type LibraryStatus } from "./library-status.ts";

/** MPI's thread levels (mpi.h: an enum 0..3 in both Open MPI and MPICH). */
export const MPI_THREAD = { SINGLE: 0, FUNNELED: 1, SERIALIZED: 2, MULTIPLE: 3 } as const;
/** A thread level's name, e.g. "MPI_THREAD_MULTIPLE". */
export type ThreadLevelName = "MPI_THREAD_SINGLE" | "MPI_THREAD_FUNNELED" | "MPI_THREAD_SERIALIZED" | "MPI_THREAD_MULTIPLE";
/** The thread level names, by value (index = MPI_THREAD value). */
export const THREAD_LEVEL_NAMES = ["MPI_THREAD_SINGLE", "MPI_THREAD_FUNNELED", "MPI_THREAD_SERIALIZED", "MPI_THREAD_MULTIPLE"] as const satisfies readonly ThreadLevelName[];

/** Integer constants of Open MPI's mpi.h that this library uses (checked by test/mpi/constants.test.ts). */
export const MPI = {
  SUCCESS: 0,
  /** An assert argument of 0: nothing asserted (MPI_Win_lock_all). */
  NO_ASSERT: 0,
  /** MPI_Win_lock_all assert: no conflicting lock is held (not used: kept for the probe). */
  MODE_NOCHECK: 1,
  LOCK_SHARED: 2,
  ANY_SOURCE: -1,
  ANY_TAG: -1,
  MAX_ERROR_STRING: 256,
  MAX_LIBRARY_VERSION_STRING: 256,
  /** sizeof(MPI_Aint): displacements and sizes travel as 64-bit integers. */
  AINT_SIZE: 8,
  /** The attribute key of MPI_COMM_WORLD's largest tag (MPI_Comm_get_attr). */
  TAG_UB: 0,
  /** What MPI_Get_count answers when the count is not a whole number of elements. */
  UNDEFINED: -32766,
  /** sizeof(MPI_Request) and sizeof(MPI_Message): handles are pointers in Open MPI. */
  HANDLE_SIZE: 8,
} as const;

/**
 * MPI_Status in Open MPI 4.1 (`struct ompi_status_public_t`): the public fields' offsets and the
 * struct's size (checked by test/mpi/constants.test.ts). The count is read with MPI_Get_count, never
 * from the struct's private fields.
 */
export const MPI_STATUS = { size: 24, MPI_SOURCE: 0, MPI_TAG: 4, MPI_ERROR: 8 } as const;

/** Error class names of mpi.h (MPI_ERR_*), by value; the number is always kept as well. */
export const MPI_ERROR_CLASS_NAMES: Readonly<Record<number, string>> = {
  0: "MPI_SUCCESS", 1: "MPI_ERR_BUFFER", 2: "MPI_ERR_COUNT", 3: "MPI_ERR_TYPE", 4: "MPI_ERR_TAG",
  5: "MPI_ERR_COMM", 6: "MPI_ERR_RANK", 7: "MPI_ERR_REQUEST", 8: "MPI_ERR_ROOT", 9: "MPI_ERR_GROUP",
  10: "MPI_ERR_OP", 11: "MPI_ERR_TOPOLOGY", 12: "MPI_ERR_DIMS", 13: "MPI_ERR_ARG", 14: "MPI_ERR_UNKNOWN",
  15: "MPI_ERR_TRUNCATE", 16: "MPI_ERR_OTHER", 17: "MPI_ERR_INTERN", 18: "MPI_ERR_IN_STATUS",
  19: "MPI_ERR_PENDING", 24: "MPI_ERR_BASE", 26: "MPI_ERR_DISP", 39: "MPI_ERR_NO_MEM",
  46: "MPI_ERR_RMA_CONFLICT", 47: "MPI_ERR_RMA_SYNC", 52: "MPI_ERR_UNSUPPORTED_OPERATION",
  53: "MPI_ERR_WIN", 68: "MPI_ERR_RMA_RANGE", 69: "MPI_ERR_RMA_ATTACH", 70: "MPI_ERR_RMA_FLAVOR",
  71: "MPI_ERR_RMA_SHARED",
};

/**
 * The exported globals whose addresses are Open MPI's predefined handles:
 * `#define MPI_COMM_WORLD OMPI_PREDEFINED_GLOBAL(MPI_Comm, ompi_mpi_comm_world)`, and so on.
 */
export const HANDLE_SYMBOLS = {
  COMM_WORLD: "ompi_mpi_comm_world",
  BYTE: "ompi_mpi_byte",
  INT: "ompi_mpi_int",
  INFO_NULL: "ompi_mpi_info_null",
  ERRORS_RETURN: "ompi_mpi_errors_return",
  OP_NULL: "ompi_mpi_op_null",
  UINT64_T: "ompi_mpi_uint64_t",
  SUM: "ompi_mpi_op_sum",
} as const;
/** Names of the predefined handles this library uses. */
export type HandleName = keyof typeof HANDLE_SYMBOLS;

// One symbol table; every argument annotated with its C type. Handles (MPI_Comm, MPI_Win,
// MPI_Datatype, MPI_Info, MPI_Errhandler, MPI_Request) are pointers in Open MPI.
const symbols = {
  // int MPI_Init_thread(int *argc, char ***argv, int required, int *provided)
  MPI_Init_thread: { args: [FFIType.ptr, FFIType.ptr, FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  // int MPI_Initialized(int *flag)
  MPI_Initialized: { args: [FFIType.ptr], returns: FFIType.i32 },
  // int MPI_Finalized(int *flag)
  MPI_Finalized: { args: [FFIType.ptr], returns: FFIType.i32 },
  // int MPI_Query_thread(int *provided)
  MPI_Query_thread: { args: [FFIType.ptr], returns: FFIType.i32 },
  // int MPI_Finalize(void)
  MPI_Finalize: { args: [], returns: FFIType.i32 },
  // int MPI_Abort(MPI_Comm comm, int errorcode)
  MPI_Abort: { args: [FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
  // int MPI_Get_library_version(char *version, int *resultlen)
  MPI_Get_library_version: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  // int MPI_Error_string(int errorcode, char *string, int *resultlen)
  MPI_Error_string: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  // int MPI_Error_class(int errorcode, int *errorclass)
  MPI_Error_class: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  // int MPI_Comm_rank(MPI_Comm comm, int *rank)
  MPI_Comm_rank: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  // int MPI_Comm_size(MPI_Comm comm, int *size)
  MPI_Comm_size: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  // int MPI_Comm_set_errhandler(MPI_Comm comm, MPI_Errhandler errhandler)
  MPI_Comm_set_errhandler: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  // int MPI_Barrier(MPI_Comm comm)
  MPI_Barrier: { args: [FFIType.ptr], returns: FFIType.i32 },
  // int MPI_Allgather(const void *sendbuf, int sendcount, MPI_Datatype sendtype,
  //                   void *recvbuf, int recvcount, MPI_Datatype recvtype, MPI_Comm comm)
  MPI_Allgather: { args: [FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  // int MPI_Allgatherv(const void *sendbuf, int sendcount, MPI_Datatype sendtype, void *recvbuf,
  //                    const int recvcounts[], const int displs[], MPI_Datatype recvtype, MPI_Comm comm)
  MPI_Allgatherv: {
    args: [FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr],
    returns: FFIType.i32,
  },
  // int MPI_Ibarrier(MPI_Comm comm, MPI_Request *request)
  MPI_Ibarrier: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  // int MPI_Test(MPI_Request *request, int *flag, MPI_Status *status)   (MPI_STATUS_IGNORE is NULL)
  MPI_Test: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  // int MPI_Iprobe(int source, int tag, MPI_Comm comm, int *flag, MPI_Status *status)
  MPI_Iprobe: { args: [FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  // int MPI_T_init_thread(int required, int *provided)
  MPI_T_init_thread: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  // int MPI_T_finalize(void)
  MPI_T_finalize: { args: [], returns: FFIType.i32 },
  // int MPI_T_cvar_get_index(const char *name, int *cvar_index)
  MPI_T_cvar_get_index: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  // int MPI_T_cvar_handle_alloc(int cvar_index, void *obj_handle, MPI_T_cvar_handle *handle, int *count)
  MPI_T_cvar_handle_alloc: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  // int MPI_T_cvar_read(MPI_T_cvar_handle handle, void *buf)
  MPI_T_cvar_read: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  // int MPI_T_cvar_handle_free(MPI_T_cvar_handle *handle)
  MPI_T_cvar_handle_free: { args: [FFIType.ptr], returns: FFIType.i32 },
  // int MPI_Win_create_dynamic(MPI_Info info, MPI_Comm comm, MPI_Win *win)
  MPI_Win_create_dynamic: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  // int MPI_Win_set_errhandler(MPI_Win win, MPI_Errhandler errhandler)
  MPI_Win_set_errhandler: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  // int MPI_Win_free(MPI_Win *win)
  MPI_Win_free: { args: [FFIType.ptr], returns: FFIType.i32 },
  // int MPI_Win_attach(MPI_Win win, void *base, MPI_Aint size)
  MPI_Win_attach: { args: [FFIType.ptr, FFIType.ptr, FFIType.i64], returns: FFIType.i32 },
  // int MPI_Win_detach(MPI_Win win, const void *base)
  MPI_Win_detach: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  // int MPI_Win_lock_all(int assert, MPI_Win win)
  MPI_Win_lock_all: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  // int MPI_Win_unlock_all(MPI_Win win)
  MPI_Win_unlock_all: { args: [FFIType.ptr], returns: FFIType.i32 },
  // int MPI_Win_flush(int rank, MPI_Win win)
  MPI_Win_flush: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  // int MPI_Win_flush_all(MPI_Win win)
  MPI_Win_flush_all: { args: [FFIType.ptr], returns: FFIType.i32 },
  // int MPI_Get_address(const void *location, MPI_Aint *address)
  MPI_Get_address: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  // int MPI_Put(const void *origin_addr, int origin_count, MPI_Datatype origin_datatype, int target_rank,
  //             MPI_Aint target_disp, int target_count, MPI_Datatype target_datatype, MPI_Win win)
  MPI_Put: {
    args: [FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.i64, FFIType.i32, FFIType.ptr, FFIType.ptr],
    returns: FFIType.i32,
  },
  // int MPI_Get(void *origin_addr, int origin_count, MPI_Datatype origin_datatype, int target_rank,
  //             MPI_Aint target_disp, int target_count, MPI_Datatype target_datatype, MPI_Win win)
  MPI_Get: {
    args: [FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.i64, FFIType.i32, FFIType.ptr, FFIType.ptr],
    returns: FFIType.i32,
  },
  // int MPI_Rput(const void *origin_addr, int origin_count, MPI_Datatype origin_datatype, int target_rank,
  //              MPI_Aint target_disp, int target_count, MPI_Datatype target_datatype, MPI_Win win,
  //              MPI_Request *request)
  MPI_Rput: {
    args: [FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.i64, FFIType.i32, FFIType.ptr, FFIType.ptr, FFIType.ptr],
    returns: FFIType.i32,
  },
  // int MPI_Rget(void *origin_addr, int origin_count, MPI_Datatype origin_datatype, int target_rank,
  //              MPI_Aint target_disp, int target_count, MPI_Datatype target_datatype, MPI_Win win,
  //              MPI_Request *request)
  MPI_Rget: {
    args: [FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.i64, FFIType.i32, FFIType.ptr, FFIType.ptr, FFIType.ptr],
    returns: FFIType.i32,
  },
  // ---- tagged messages and atomics (MpiEndpoint's transport) ----
  // int MPI_Comm_get_attr(MPI_Comm comm, int comm_keyval, void *attribute_val, int *flag)
  MPI_Comm_get_attr: { args: [FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  // int MPI_Isend(const void *buf, int count, MPI_Datatype datatype, int dest, int tag, MPI_Comm comm,
  //               MPI_Request *request)
  MPI_Isend: { args: [FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  // int MPI_Improbe(int source, int tag, MPI_Comm comm, int *flag, MPI_Message *message, MPI_Status *status)
  MPI_Improbe: { args: [FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  // int MPI_Imrecv(void *buf, int count, MPI_Datatype type, MPI_Message *message, MPI_Request *request)
  MPI_Imrecv: { args: [FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  // int MPI_Get_count(const MPI_Status *status, MPI_Datatype datatype, int *count)
  MPI_Get_count: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  // int MPI_Fetch_and_op(const void *origin_addr, void *result_addr, MPI_Datatype datatype, int target_rank,
  //                      MPI_Aint target_disp, MPI_Op op, MPI_Win win)
  MPI_Fetch_and_op: {
    args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.i32, FFIType.i64, FFIType.ptr, FFIType.ptr],
    returns: FFIType.i32,
  },
  // int MPI_Compare_and_swap(const void *origin_addr, const void *compare_addr, void *result_addr,
  //                          MPI_Datatype datatype, int target_rank, MPI_Aint target_disp, MPI_Win win)
  MPI_Compare_and_swap: {
    args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.i32, FFIType.i64, FFIType.ptr],
    returns: FFIType.i32,
  },
  // int MPI_Rget_accumulate(const void *origin_addr, int origin_count, MPI_Datatype origin_datatype,
  //                         void *result_addr, int result_count, MPI_Datatype result_datatype, int target_rank,
  //                         MPI_Aint target_disp, int target_count, MPI_Datatype target_datatype, MPI_Op op,
  //                         MPI_Win win, MPI_Request *request)
  MPI_Rget_accumulate: {
    args: [
      FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.i32,
      FFIType.i64, FFIType.i32, FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr,
    ],
    returns: FFIType.i32,
  },
} as const;

// libc's dynamic loader: dlopen with RTLD_GLOBAL, dlsym for data symbols, setenv for MCA defaults.
const loader = dlopen(process.platform === "darwin" ? "libc.dylib" : "libc.so.6", {
  // void *dlopen(const char *filename, int flags)
  dlopen: { args: [FFIType.ptr, FFIType.i32], returns: FFIType.ptr },
  // void *dlsym(void *handle, const char *symbol)
  dlsym: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.ptr },
  // char *dlerror(void)
  dlerror: { args: [], returns: FFIType.ptr },
  // int setenv(const char *name, const char *value, int overwrite)
  setenv: { args: [FFIType.ptr, FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
}).symbols;
const RTLD_NOW = 2;
const RTLD_GLOBAL = 0x100;

type Symbols = ReturnType<typeof dlopen<typeof symbols>>["symbols"];

/** An MPI call returned an error code. */
export class MpiError extends Error {
  /** Always `"MpiError"`. */
  override readonly name: string = "MpiError";
  /** The MPI function that failed, e.g. `MPI_Put`. */
  readonly function: string;
  /** The error code the call returned. */
  readonly errorCode: number;
  /** Its class (`MPI_Error_class`), e.g. 68 for MPI_ERR_RMA_RANGE. */
  readonly errorClass: number;
  /** The class's name, e.g. `MPI_ERR_RMA_RANGE` (`MPI_ERR_<n>` when unknown). */
  readonly code: string;
  /** `MPI_Error_string(errorCode)`. */
  readonly description: string;

  /**
   * Made by the MPI bindings on a failed call; exported so that code can test `instanceof MpiError`.
   * @param fn The MPI function that failed.
   * @param errorCode The code it returned.
   * @param errorClass `MPI_Error_class(errorCode)`.
   * @param description `MPI_Error_string(errorCode)`.
   * @param detail What was asked (rank, bytes, address), appended to the message.
   */
  constructor(fn: string, errorCode: number, errorClass: number, description: string, detail?: string) {
    const code = MPI_ERROR_CLASS_NAMES[errorClass] ?? `MPI_ERR_${errorClass}`;
    super(`${fn} failed: ${description} (${code}, error code ${errorCode})${detail ? `: ${detail}` : ""}`);
    this.function = fn;
    this.errorCode = errorCode;
    this.errorClass = errorClass;
    this.code = code;
    this.description = description;
  }
}

/** Where Open MPI's libmpi is looked for, and how to install it. */
export const MPI_LOCATION: LibraryLocation = {
  name: "Open MPI",
  names: ["libmpi.so.40", "libmpi.so"],
  variable: "ALLOCTOOLS_MPI_PATH",
  install: "'apt-get install openmpi-bin libopenmpi-dev' (Debian/Ubuntu) or 'dnf install openmpi'",
};
const DEFAULT_NAMES = MPI_LOCATION.names;
/** Signals whose handlers Bun's engine owns; MPI_Init must not keep them. */
const ENGINE_SIGNALS = [libc.SIGSEGV, libc.SIGBUS, libc.SIGILL];
/**
 * MCA defaults set (with setenv, never overriding the user's) before MPI_Init: osc/rdma allows 64
 * attachments per dynamic window by default, and every pool block is one.
 */
const MCA_DEFAULTS: Readonly<Record<string, string>> = { OMPI_MCA_osc_rdma_max_attach: "4096" };
/** How long MPI_Finalize may wait for the other ranks at exit (see the file header); 0: no bound. */
export const EXIT_TIMEOUT_VARIABLE = "ALLOCTOOLS_MPI_EXIT_TIMEOUT_MS";
const DEFAULT_EXIT_TIMEOUT_MS = 30_000;

/** ALLOCTOOLS_MPI_EXIT_TIMEOUT_MS as milliseconds; RangeError for anything but a whole number >= 0. */
export function exitTimeoutMs(value: string | undefined = process.env[EXIT_TIMEOUT_VARIABLE]): number {
  if (value === undefined || value === "") return DEFAULT_EXIT_TIMEOUT_MS;
  if (!/^\d{1,10}$/.test(value.trim())) {
    throw new AllocToolsRangeError(`${EXIT_TIMEOUT_VARIABLE} must be a whole number of milliseconds (0: MPI_Finalize at exit waits for ever), got ${JSON.stringify(value)}`);
  }
  return Number(value.trim());
}

function cString(s: string): Buffer {
  return Buffer.from(`${s}\0`);
}

/** A loaded Open MPI: its functions, predefined handles and the process-wide init state. */
export class MpiLibrary {
  /** The path that was loaded. */
  readonly path: string;
  /** `MPI_Get_library_version`, e.g. "Open MPI v4.1.4, package: Debian OpenMPI, ...". */
  readonly version: string;
  /** Predefined handles (addresses of Open MPI's globals). */
  readonly handles: Readonly<Record<HandleName, number>>;
  private readonly fn: Symbols;
  private readonly intOut = new Int32Array(2);
  private readonly text = new Uint8Array(MPI.MAX_ERROR_STRING + 1);
  private users = 0;
  private initializedByUs = false;
  private providedLevel = -1;
  private exitHook = false;
  private exitTimeout = DEFAULT_EXIT_TIMEOUT_MS;

  private constructor(path: string, fn: Symbols, handles: Record<HandleName, number>, version: string) {
    this.path = path;
    this.fn = fn;
    this.handles = handles;
    this.version = version;
  }

  /**
   * Loads Open MPI: `$ALLOCTOOLS_MPI_PATH` when set, else `libmpi.so.40`, then `libmpi.so`.
   * Throws LibraryLoadError with an install hint, or AllocToolsError NOT_SUPPORTED for an MPI that
   * is not Open MPI (MPICH passes handles as integers).
   */
  static load(path: string | undefined = process.env.ALLOCTOOLS_MPI_PATH): MpiLibrary {
    const tried = path !== undefined && path !== "" ? [path] : DEFAULT_NAMES;
    const causes: string[] = [];
    for (const candidate of tried) {
      const handle = (loader.dlopen(cString(candidate), RTLD_NOW | RTLD_GLOBAL) as number | null) ?? 0;
      if (handle === 0) {
        causes.push(new CString(loader.dlerror() as Pointer).toString());
        continue;
      }
      const lookup = (name: string): number => (loader.dlsym(handle as Pointer, cString(name)) as number | null) ?? 0;
      if (lookup("MPI_Init_thread") === 0) {
        causes.push(`${candidate} has no MPI_Init_thread: not an MPI library`);
        continue;
      }
      if (lookup(HANDLE_SYMBOLS.COMM_WORLD) === 0) {
        // Before the whole symbol table: only what MPI-3 lets us call before MPI_Init.
        const probe = dlopen(candidate, { MPI_Get_library_version: symbols.MPI_Get_library_version });
        const version = libraryVersion(probe.symbols);
        probe.close();
        throw new AllocToolsError("NOT_SUPPORTED",
          `${candidate} is not Open MPI (${version.split("\n")[0]}): alloctools reaches MPI's predefined handles as ` +
            `Open MPI's exported globals, and MPICH-family libraries pass handles as integers. Install Open MPI ` +
            `('apt-get install openmpi-bin libopenmpi-dev') or point ALLOCTOOLS_MPI_PATH at its libmpi.so.40.`);
      }
      const fn = dlopen(candidate, symbols).symbols;
      const version = libraryVersion(fn);
      const handles = {} as Record<HandleName, number>;
      for (const [name, symbol] of Object.entries(HANDLE_SYMBOLS) as [HandleName, string][]) {
        const address = lookup(symbol);
        if (address === 0) throw new LibraryLoadError(`${candidate} lacks Open MPI's ${symbol} (MPI_${name})`, tried);
        handles[name] = address;
      }
      return new MpiLibrary(candidate, fn, handles, version);
    }
    const how = path ? `ALLOCTOOLS_MPI_PATH=${path} could not be loaded` : `tried ${tried.join(", ")}`;
    throw new LibraryLoadError(
      `MPI is not available (${how}). Install Open MPI with ${MPI_LOCATION.install}, ` +
        `or point ALLOCTOOLS_MPI_PATH at libmpi.so.40. Cause: ${causes.join("; ")}`,
      tried);
  }

  /** `MPI_Error_string(code)`. */
  errorString(code: number): string {
    const length = this.intOut.subarray(0, 1);
    if (this.fn.MPI_Error_string(code, this.text, length) !== MPI.SUCCESS) return `MPI error code ${code}`;
    return Buffer.from(this.text.subarray(0, length[0]!)).toString("latin1");
  }

  /** `MPI_Error_class(code)`; the code itself when the class cannot be read. */
  errorClass(code: number): number {
    const out = this.intOut.subarray(0, 1);
    return this.fn.MPI_Error_class(code, out) === MPI.SUCCESS ? out[0]! : code;
  }

  /** Throws MpiError for a return code other than MPI_SUCCESS; the one error path of MPI calls. */
  check(fn: string, code: number, detail?: string): void {
    if (code !== MPI.SUCCESS) throw this.error(fn, code, detail);
  }

  /** The MpiError for `code` returned by `fn`. */
  error(fn: string, code: number, detail?: string): MpiError {
    return new MpiError(fn, code, this.errorClass(code), this.errorString(code), detail);
  }

  /** Whether MPI_Init has run in this process (by anyone). */
  get initialized(): boolean {
    const out = this.intOut.subarray(0, 1);
    this.check("MPI_Initialized", this.fn.MPI_Initialized(out));
    return out[0] !== 0;
  }

  /** Whether MPI_Finalize has run in this process. */
  get finalized(): boolean {
    const out = this.intOut.subarray(0, 1);
    this.check("MPI_Finalized", this.fn.MPI_Finalized(out));
    return out[0] !== 0;
  }

  /** The thread level MPI granted (MPI_Query_thread); -1 before acquire(). */
  get threadLevel(): number {
    return this.providedLevel;
  }

  /** Whether this library called MPI_Init_thread (and so will call MPI_Finalize). */
  get ownsInit(): boolean {
    return this.initializedByUs;
  }

  /** Users holding MPI initialized (providers, jobs). */
  get userCount(): number {
    return this.users;
  }

  /**
   * Takes one use of MPI, initializing it on the first (MPI_Init_thread asking for
   * MPI_THREAD_MULTIPLE, Bun's signal handlers kept). Returns the thread level granted. Throws
   * AllocToolsError NOT_SUPPORTED once MPI has been finalized: it cannot be initialized again.
   */
  acquire(): number {
    if (this.finalized) {
      throw new AllocToolsError("NOT_SUPPORTED", "MPI was finalized in this process and cannot be initialized again " +
        "(keep an MpiJob open while providers come and go)");
    }
    if (!this.initialized) {
      this.exitTimeout = exitTimeoutMs(); // checked before anything changes
      for (const [name, value] of Object.entries(MCA_DEFAULTS)) loader.setenv(cString(name), cString(value), 0);
      const provided = this.intOut.subarray(0, 1);
      const restoreSignals = libc.preserveSignalHandlers(ENGINE_SIGNALS);
      let code: number;
      try {
        code = this.fn.MPI_Init_thread(null, null, MPI_THREAD.MULTIPLE, provided);
      } finally {
        restoreSignals();
      }
      this.check("MPI_Init_thread", code, "asking for MPI_THREAD_MULTIPLE");
      this.initializedByUs = true;
      this.check("MPI_Comm_set_errhandler", this.fn.MPI_Comm_set_errhandler(this.handles.COMM_WORLD as Pointer, this.handles.ERRORS_RETURN as Pointer));
      this.installExitHook();
    }
    if (this.providedLevel < 0) {
      const level = this.intOut.subarray(0, 1);
      this.check("MPI_Query_thread", this.fn.MPI_Query_thread(level));
      this.providedLevel = level[0]!;
    }
    this.users++;
    return this.providedLevel;
  }

  /** Gives back one use; the last one finalizes MPI if this library initialized it. */
  release(): void {
    if (this.users === 0) return;
    this.users--;
    if (this.users === 0 && this.initializedByUs && !this.finalized) this.check("MPI_Finalize", this.fn.MPI_Finalize());
  }

  /**
   * At process exit with MPI initialized by this library and not finalized (a job or provider left
   * open): MPI_Finalize, bounded, after a clean exit; MPI_Abort after any other (see the file
   * header). Launchers fail a job whose processes exit without either.
   */
  private installExitHook(): void {
    if (this.exitHook) return;
    this.exitHook = true;
    process.on("exit", (code) => {
      try {
        if (this.initializedByUs && !this.finalized) this.endAtExit(code);
      } catch { /* exiting anyway */ }
    });
  }

  private endAtExit(code: number): void {
    runExitCleanups(); // both ways below may end the process before the other exit listeners run
    const { rank, size } = this.rankAndSize();
    const who = `alloctools: rank ${rank} of ${size} (pid ${process.pid})`;
    if (code !== 0) {
      say(`${who} exited with code ${code} while its MPI job was open: MPI_Abort ends the job`);
      this.fn.MPI_Abort(this.handles.COMM_WORLD as Pointer, code);
      return;
    }
    const bound = this.exitTimeout;
    boundedAtExit(bound, `${who} exited with its MPI job open, and MPI_Finalize did not return within ${bound} ms: ` +
      `the other ranks are not finalizing (they wait in a collective this rank left, or still work). Ending this rank ` +
      `with SIGALRM so that the launcher ends the job. Close the job on every rank (MpiJob.close()), or raise ` +
      `${EXIT_TIMEOUT_VARIABLE}.`, () => this.fn.MPI_Finalize());
  }

  /** `MPI_Comm_rank` and `MPI_Comm_size` of MPI_COMM_WORLD. */
  rankAndSize(): { rank: number; size: number } {
    const out = this.intOut;
    const world = this.handles.COMM_WORLD as Pointer;
    this.check("MPI_Comm_rank", this.fn.MPI_Comm_rank(world, out.subarray(0, 1)));
    this.check("MPI_Comm_size", this.fn.MPI_Comm_size(world, out.subarray(1, 2)));
    return { rank: out[0]!, size: out[1]! };
  }

  // ---- collectives over MPI_COMM_WORLD ---------------------------------------------------------

  /** `MPI_Barrier(MPI_COMM_WORLD)` */
  barrier(): void {
    this.check("MPI_Barrier", this.fn.MPI_Barrier(this.handles.COMM_WORLD as Pointer));
  }

  /** `MPI_Ibarrier(MPI_COMM_WORLD, request)`; `request` is one MPI_Request slot. */
  startBarrier(request: BigUint64Array): void {
    this.check("MPI_Ibarrier", this.fn.MPI_Ibarrier(this.handles.COMM_WORLD as Pointer, request));
  }

  /** `MPI_Test(request, &flag, MPI_STATUS_IGNORE)`: whether the request has completed. */
  testRequest(request: BigUint64Array): boolean {
    const flag = this.intOut.subarray(0, 1);
    this.check("MPI_Test", this.fn.MPI_Test(request, flag, null));
    return flag[0] !== 0;
  }

  /** `MPI_Allgather` of one int per rank into `all`. */
  allgatherInt(mine: Int32Array, all: Int32Array): void {
    const int = this.handles.INT as Pointer;
    this.check("MPI_Allgather", this.fn.MPI_Allgather(mine, 1, int, all, 1, int, this.handles.COMM_WORLD as Pointer));
  }

  /** `MPI_Allgatherv` of `sendLength` bytes per rank (MPI_BYTE). */
  allgatherBytes(send: Uint8Array, sendLength: number, received: Uint8Array, lengths: Int32Array, displacements: Int32Array): void {
    const byte = this.handles.BYTE as Pointer;
    this.check("MPI_Allgatherv", this.fn.MPI_Allgatherv(send, sendLength, byte, received, lengths, displacements, byte,
      this.handles.COMM_WORLD as Pointer));
  }

  /** `MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, flag, MPI_STATUS_IGNORE)`: lets MPI progress; never throws. */
  nudge(flag: number): void {
    this.fn.MPI_Iprobe(MPI.ANY_SOURCE, MPI.ANY_TAG, this.handles.COMM_WORLD as Pointer, flag as Pointer, null);
  }

  /**
   * An integer MPI_T control variable (an MCA parameter of Open MPI, e.g. "osc_rdma_max_attach"):
   * the value this process uses, wherever it was set (environment, mpirun --mca, parameter
   * files); null when MPI_T has no such variable or cannot read it. Values above 2^31 - 1 read as
   * 2^31 - 1 (they travel as C ints).
   */
  integerControlVariable(name: string): number | null {
    const provided = new Int32Array(1);
    if (this.fn.MPI_T_init_thread(MPI_THREAD.SINGLE, provided) !== MPI.SUCCESS) return null;
    try {
      const index = new Int32Array(1);
      const handle = new BigUint64Array(1);
      const count = new Int32Array(1);
      if (this.fn.MPI_T_cvar_get_index(cString(name), index) !== MPI.SUCCESS) return null;
      if (this.fn.MPI_T_cvar_handle_alloc(index[0]!, null, handle, count) !== MPI.SUCCESS) return null;
      // Wide enough for any integer variable (int, unsigned, long, ...); little-endian.
      const value = new BigUint64Array(1);
      const read = this.fn.MPI_T_cvar_read(Number(handle[0]) as Pointer, value);
      this.fn.MPI_T_cvar_handle_free(handle);
      if (read !== MPI.SUCCESS || count[0] !== 1) return null;
      return Number(value[0]! > 0x7fff_ffffn ? 0x7fff_ffffn : value[0]!);
    } finally {
      this.fn.MPI_T_finalize();
    }
  }

  // ---- windows ---------------------------------------------------------------------------------

  /**
   * `MPI_Win_create_dynamic(MPI_INFO_NULL, MPI_COMM_WORLD, &win)` (collective), then
   * MPI_ERRORS_RETURN on it. Returns the `MPI_Win`.
   */
  createDynamicWindow(): number {
    const out = new BigUint64Array(1);
    const code = this.fn.MPI_Win_create_dynamic(this.handles.INFO_NULL as Pointer, this.handles.COMM_WORLD as Pointer, out);
    if (code !== MPI.SUCCESS) {
      const alone = this.rankAndSize().size === 1;
      throw this.error("MPI_Win_create_dynamic", code, alone
        ? "a job of one process (no mpirun, or -n 1) gets no RMA window from Open MPI's osc/rdma without an RDMA network: run under mpirun -n 2 or more"
        : "Open MPI's osc/rdma found no transport with one-sided put/get to every rank; on one host that is the vader " +
          "BTL's single-copy mechanism (CMA: needs ptrace permission, in a container --cap-add SYS_PTRACE; " +
          "btl_vader_single_copy_mechanism=none leaves no window)");
    }
    const window = Number(out[0]);
    const set = this.fn.MPI_Win_set_errhandler(window as Pointer, this.handles.ERRORS_RETURN as Pointer);
    if (set !== MPI.SUCCESS) {
      this.fn.MPI_Win_free(out);
      throw this.error("MPI_Win_set_errhandler", set);
    }
    return window;
  }

  /** `MPI_Win_free(&win)` (collective). */
  freeWindow(window: number): void {
    this.check("MPI_Win_free", this.fn.MPI_Win_free(new BigUint64Array([BigInt(window)])));
  }

  /** `MPI_Win_lock_all(0, win)`: a passive-target epoch to every rank, no assertion. */
  lockAll(window: number): void {
    this.check("MPI_Win_lock_all", this.fn.MPI_Win_lock_all(MPI.NO_ASSERT, window as Pointer));
  }

  /** `MPI_Win_unlock_all(win)` */
  unlockAll(window: number): void {
    this.check("MPI_Win_unlock_all", this.fn.MPI_Win_unlock_all(window as Pointer));
  }

  /** `MPI_Win_flush_all(win)`: every operation of this rank on the window is complete. */
  flushAll(window: number, detail?: string): void {
    this.check("MPI_Win_flush_all", this.fn.MPI_Win_flush_all(window as Pointer), detail);
  }

  /** `MPI_Win_attach(win, address, length)` */
  attach(window: number, address: number, length: number, detail?: string): void {
    this.check("MPI_Win_attach", this.fn.MPI_Win_attach(window as Pointer, address as Pointer, length), detail);
  }

  /** `MPI_Win_detach(win, address)` */
  detach(window: number, address: number): void {
    this.check("MPI_Win_detach", this.fn.MPI_Win_detach(window as Pointer, address as Pointer), `0x${address.toString(16)}`);
  }

  /** `MPI_Get_address(address, out)`, into a one-slot array (no allocation). */
  getAddress(address: number, out: BigInt64Array): bigint {
    this.check("MPI_Get_address", this.fn.MPI_Get_address(address as Pointer, out));
    return BigInt.asUintN(64, out[0]!);
  }

  /**
   * The RMA calls of one window, for MpiEndpoint's hot path: raw functions that return the MPI
   * error code (pass it to `error()`), and MPI_BYTE.
   */
  rmaOps(): MpiRmaOps {
    const fn = this.fn;
    return {
      byte: this.handles.BYTE,
      put: fn.MPI_Put, get: fn.MPI_Get, rput: fn.MPI_Rput, rget: fn.MPI_Rget, flush: fn.MPI_Win_flush, test: fn.MPI_Test,
    };
  }

  /** The calls of tagged messages on MPI_COMM_WORLD, for MpiEndpoint's hot path (raw: pass a failed code to `error()`). */
  messageOps(): MpiMessageOps {
    const fn = this.fn;
    return {
      byte: this.handles.BYTE, world: this.handles.COMM_WORLD,
      isend: fn.MPI_Isend, improbe: fn.MPI_Improbe, imrecv: fn.MPI_Imrecv, getCount: fn.MPI_Get_count, test: fn.MPI_Test,
    };
  }

  /** Remote atomics on 64-bit unsigned words, for MpiEndpoint's hot path (raw: pass a failed code to `error()`). */
  atomicOps(): MpiAtomicOps {
    const fn = this.fn;
    return {
      uint64: this.handles.UINT64_T, sum: this.handles.SUM,
      fetchAndOp: fn.MPI_Fetch_and_op, compareAndSwap: fn.MPI_Compare_and_swap, rgetAccumulate: fn.MPI_Rget_accumulate,
    };
  }

  /**
   * MPI_COMM_WORLD's MPI_TAG_UB attribute: the largest tag a message may carry (at least 32767 by
   * the standard; 2^31 - 1 with Open MPI 4.1's ob1 pml, measured here; other pmls may give less).
   */
  tagUpperBound(): number {
    const value = new BigUint64Array(1); // MPI stores a pointer to the int here
    const flag = this.intOut.subarray(0, 1);
    this.check("MPI_Comm_get_attr", this.fn.MPI_Comm_get_attr(this.handles.COMM_WORLD as Pointer, MPI.TAG_UB, value, flag), "MPI_TAG_UB");
    if (flag[0] === 0 || value[0] === 0n) throw new AllocToolsError("NOT_SUPPORTED", "MPI_COMM_WORLD has no MPI_TAG_UB attribute");
    return read.i32(Number(value[0]) as Pointer, 0);
  }
}

/** Raw calls of tagged messages on MPI_COMM_WORLD (see MpiLibrary.messageOps); each returns an MPI error code. */
export interface MpiMessageOps {
  /** The MPI_BYTE handle. */
  readonly byte: number;
  /** The MPI_COMM_WORLD handle. */
  readonly world: number;
  /** MPI_Isend(buf, count, MPI_BYTE, rank, tag, MPI_COMM_WORLD, &request) */
  readonly isend: Symbols["MPI_Isend"];
  /** MPI_Improbe(source, tag, MPI_COMM_WORLD, &flag, &message, &status) */
  readonly improbe: Symbols["MPI_Improbe"];
  /** MPI_Imrecv(buf, count, MPI_BYTE, &message, &request) */
  readonly imrecv: Symbols["MPI_Imrecv"];
  /** MPI_Get_count(&status, MPI_BYTE, &count) */
  readonly getCount: Symbols["MPI_Get_count"];
  /** MPI_Test(&request, &flag, &status) */
  readonly test: Symbols["MPI_Test"];
}

/** Raw remote atomics on a window (see MpiLibrary.atomicOps); each returns an MPI error code. */
export interface MpiAtomicOps {
  /** The MPI_UINT64_T handle. */
  readonly uint64: number;
  /** The MPI_SUM handle. */
  readonly sum: number;
  /** MPI_Fetch_and_op(&operand, &result, MPI_UINT64_T, rank, displacement, MPI_SUM, win) */
  readonly fetchAndOp: Symbols["MPI_Fetch_and_op"];
  /** MPI_Compare_and_swap(&desired, &expected, &result, MPI_UINT64_T, rank, displacement, win) */
  readonly compareAndSwap: Symbols["MPI_Compare_and_swap"];
  /** MPI_Rget_accumulate(&operand, 1, MPI_UINT64_T, &result, 1, MPI_UINT64_T, rank, displacement, 1, MPI_UINT64_T, MPI_SUM, win, &request) */
  readonly rgetAccumulate: Symbols["MPI_Rget_accumulate"];
}

/** Raw RMA calls (see MpiLibrary.rmaOps); each returns an MPI error code. */
export interface MpiRmaOps {
  /** The MPI_BYTE handle. */
  readonly byte: number;
  /** MPI_Put(origin, count, MPI_BYTE, rank, displacement, count, MPI_BYTE, win) */
  readonly put: Symbols["MPI_Put"];
  /** MPI_Get(origin, count, MPI_BYTE, rank, displacement, count, MPI_BYTE, win) */
  readonly get: Symbols["MPI_Get"];
  /** MPI_Rput(..., win, &request) */
  readonly rput: Symbols["MPI_Rput"];
  /** MPI_Rget(..., win, &request) */
  readonly rget: Symbols["MPI_Rget"];
  /** MPI_Win_flush(rank, win) */
  readonly flush: Symbols["MPI_Win_flush"];
  /** MPI_Test(&request, &flag, MPI_STATUS_IGNORE) */
  readonly test: Symbols["MPI_Test"];
}

/** One line to stderr, synchronously (the process is exiting). */
function say(line: string): void {
  try {
    writeSync(2, `${line}\n`);
  } catch { /* stderr closed */ }
}

function libraryVersion(fn: Pick<Symbols, "MPI_Get_library_version">): string {
  const text = new Uint8Array(MPI.MAX_LIBRARY_VERSION_STRING + 1);
  const length = new Int32Array(1);
  if (fn.MPI_Get_library_version(text, length) !== MPI.SUCCESS) return "unknown MPI library";
  return Buffer.from(text.subarray(0, length[0]!)).toString("latin1").replace(/\0+$/, "").trim();
}

const library = new LazyLibrary(() => MpiLibrary.load(), (loaded) => loaded.version.split("\n")[0]!);

/** The process-wide MPI library, loaded on first use. Throws LibraryLoadError or AllocToolsError NOT_SUPPORTED. */
export function mpiLibrary(): MpiLibrary {
  return library.get();
}

/** Whether Open MPI loads here; the reason when it does not. Never throws, never initializes MPI. */
export function mpiStatus(): LibraryStatus {
  return library.status();
}
