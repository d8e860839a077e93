// UCX (libucp) through bun:ffi: the one file that knows UCX's symbols, struct layouts and
// constants. Everything is polled from JS: no callback is ever handed to UCX.
//
// - `ucs_status_t` is a one-byte enum: every status return is declared i8.
// - `ucs_status_ptr_t` returns (put, get, flush, close, tag send and receive, atomics) are
//   declared i64_fast, and so is the message handle of a probe: 0 is "done now" (no message),
//   -100..-1 an error status, anything else a request to poll and free. As `ptr`, Bun would turn an
//   error pointer into a bigint near 2^64 that looks like a request.
// - Loading libucs replaces the SIGSEGV/SIGBUS/SIGILL/SIGFPE handlers Bun's engine relies on; they
//   are saved before the dlopen and put back right after (UCX does not install them again later).
// Struct offsets are x86-64/LP64, taken with offsetof against UCX 1.13's ucp.h; test/ucx/layout.test.ts
// compiles the same table against the installed headers and fails on any drift.
import { dlopen, FFIType, read, CString, ptr, type Pointer } from "bun:ffi";
import { LibraryLoadError } from "./errors.ts";
import type { LibraryLocation } from "./library-status.ts";
import * as libc from "./libc.ts";
import { checkWorkerAddress, mappedMemoryDomains, readWorkerAddress, type WorkerAddress } from "./ucx-address.ts";
import { SIGHUP } from "./signals.ts";

const symbols = {
  // void ucp_get_version(unsigned *major_version, unsigned *minor_version, unsigned *release_number)
  ucp_get_version: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.void },
  // const char *ucs_status_string(ucs_status_t status)
  ucs_status_string: { args: [FFIType.i8], returns: FFIType.ptr },
  // ucs_status_t ucp_config_read(const char *env_prefix, const char *filename, ucp_config_t **config_p)
  ucp_config_read: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i8 },
  // ucs_status_t ucp_config_modify(ucp_config_t *config, const char *name, const char *value)
  ucp_config_modify: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i8 },
  // void ucp_config_release(ucp_config_t *config)
  ucp_config_release: { args: [FFIType.ptr], returns: FFIType.void },
  // ucs_status_t ucp_init_version(unsigned api_major_version, unsigned api_minor_version,
  //                               const ucp_params_t *params, const ucp_config_t *config, ucp_context_h *context_p)
  ucp_init_version: { args: [FFIType.u32, FFIType.u32, FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i8 },
  // void ucp_cleanup(ucp_context_h context_p)
  ucp_cleanup: { args: [FFIType.ptr], returns: FFIType.void },
  // ucs_status_t ucp_worker_create(ucp_context_h context, const ucp_worker_params_t *params, ucp_worker_h *worker_p)
  ucp_worker_create: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i8 },
  // void ucp_worker_destroy(ucp_worker_h worker)
  ucp_worker_destroy: { args: [FFIType.ptr], returns: FFIType.void },
  // ucs_status_t ucp_worker_get_address(ucp_worker_h worker, ucp_address_t **address_p, size_t *address_length_p)
  ucp_worker_get_address: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i8 },
  // void ucp_worker_release_address(ucp_worker_h worker, ucp_address_t *address)
  ucp_worker_release_address: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.void },
  // unsigned ucp_worker_progress(ucp_worker_h worker)
  ucp_worker_progress: { args: [FFIType.ptr], returns: FFIType.u32 },
  // ucs_status_t ucp_mem_map(ucp_context_h context, const ucp_mem_map_params_t *params, ucp_mem_h *memh_p)
  ucp_mem_map: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i8 },
  // ucs_status_t ucp_mem_unmap(ucp_context_h context, ucp_mem_h memh)
  ucp_mem_unmap: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i8 },
  // ucs_status_t ucp_mem_query(const ucp_mem_h memh, ucp_mem_attr_t *attr)
  ucp_mem_query: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i8 },
  // ucs_status_t ucp_rkey_pack(ucp_context_h context, ucp_mem_h memh, void **rkey_buffer_p, size_t *size_p)
  ucp_rkey_pack: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i8 },
  // void ucp_rkey_buffer_release(void *rkey_buffer)
  ucp_rkey_buffer_release: { args: [FFIType.ptr], returns: FFIType.void },
  // ucs_status_t ucp_ep_create(ucp_worker_h worker, const ucp_ep_params_t *params, ucp_ep_h *ep_p)
  ucp_ep_create: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i8 },
  // ucs_status_ptr_t ucp_ep_close_nbx(ucp_ep_h ep, const ucp_request_param_t *param)
  ucp_ep_close_nbx: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i64_fast },
  // ucs_status_ptr_t ucp_ep_flush_nbx(ucp_ep_h ep, const ucp_request_param_t *param)
  ucp_ep_flush_nbx: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i64_fast },
  // ucs_status_t ucp_ep_rkey_unpack(ucp_ep_h ep, const void *rkey_buffer, ucp_rkey_h *rkey_p)
  ucp_ep_rkey_unpack: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i8 },
  // void ucp_rkey_destroy(ucp_rkey_h rkey)
  ucp_rkey_destroy: { args: [FFIType.ptr], returns: FFIType.void },
  // ucs_status_ptr_t ucp_put_nbx(ucp_ep_h ep, const void *buffer, size_t count, uint64_t remote_addr,
  //                              ucp_rkey_h rkey, const ucp_request_param_t *param)
  ucp_put_nbx: { args: [FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.u64, FFIType.ptr, FFIType.ptr], returns: FFIType.i64_fast },
  // ucs_status_ptr_t ucp_get_nbx(ucp_ep_h ep, void *buffer, size_t count, uint64_t remote_addr,
  //                              ucp_rkey_h rkey, const ucp_request_param_t *param)
  ucp_get_nbx: { args: [FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.u64, FFIType.ptr, FFIType.ptr], returns: FFIType.i64_fast },
  // ucs_status_t ucp_request_check_status(void *request)
  ucp_request_check_status: { args: [FFIType.ptr], returns: FFIType.i8 },
  // void ucp_request_cancel(ucp_worker_h worker, void *request)
  ucp_request_cancel: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.void },
  // void ucp_request_free(void *request)
  ucp_request_free: { args: [FFIType.ptr], returns: FFIType.void },
  // Tags (ucp_tag_t, a uint64_t) are declared i64: the same bits, and a tag whose signed value is
  // exact in a double passes as a number (no BigInt per call); see lib/ucx/ucx-messages.ts.
  // ucs_status_ptr_t ucp_tag_send_nbx(ucp_ep_h ep, const void *buffer, size_t count, ucp_tag_t tag,
  //                                   const ucp_request_param_t *param)
  ucp_tag_send_nbx: { args: [FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.i64, FFIType.ptr], returns: FFIType.i64_fast },
  // ucs_status_ptr_t ucp_tag_recv_nbx(ucp_worker_h worker, void *buffer, size_t count, ucp_tag_t tag,
  //                                   ucp_tag_t tag_mask, const ucp_request_param_t *param)
  ucp_tag_recv_nbx: { args: [FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.i64, FFIType.i64, FFIType.ptr], returns: FFIType.i64_fast },
  // ucp_tag_message_h ucp_tag_probe_nb(ucp_worker_h worker, ucp_tag_t tag, ucp_tag_t tag_mask, int remove,
  //                                    ucp_tag_recv_info_t *info)
  ucp_tag_probe_nb: { args: [FFIType.ptr, FFIType.i64, FFIType.i64, FFIType.i32, FFIType.ptr], returns: FFIType.i64_fast },
  // ucs_status_ptr_t ucp_tag_msg_recv_nbx(ucp_worker_h worker, void *buffer, size_t count,
  //                                       ucp_tag_message_h message, const ucp_request_param_t *param)
  ucp_tag_msg_recv_nbx: { args: [FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.ptr, FFIType.ptr], returns: FFIType.i64_fast },
  // ucs_status_t ucp_tag_recv_request_test(void *request, ucp_tag_recv_info_t *info)
  ucp_tag_recv_request_test: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i8 },
  // ucs_status_ptr_t ucp_atomic_op_nbx(ucp_ep_h ep, ucp_atomic_op_t opcode, const void *buffer, size_t count,
  //                                    uint64_t remote_addr, ucp_rkey_h rkey, const ucp_request_param_t *param)
  ucp_atomic_op_nbx: { args: [FFIType.ptr, FFIType.u32, FFIType.ptr, FFIType.u64, FFIType.u64, FFIType.ptr, FFIType.ptr], returns: FFIType.i64_fast },
} as const;

type Symbols = ReturnType<typeof dlopen<typeof symbols>>["symbols"];

/** libuct, which libucp loads: only to try a remote key on its component before ucp_ep_rkey_unpack does. */
const uctSymbols = {
  // ucs_status_t uct_query_components(uct_component_h **components_p, unsigned *num_components_p)
  uct_query_components: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i8 },
  // void uct_release_component_list(uct_component_h *components)
  uct_release_component_list: { args: [FFIType.ptr], returns: FFIType.void },
  // ucs_status_t uct_component_query(uct_component_h component, uct_component_attr_t *component_attr)
  uct_component_query: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i8 },
  // ucs_status_t uct_rkey_unpack(uct_component_h component, const void *rkey_buffer, uct_rkey_bundle_t *rkey_ob)
  uct_rkey_unpack: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i8 },
  // ucs_status_t uct_rkey_release(uct_component_h component, const uct_rkey_bundle_t *rkey_ob)
  uct_rkey_release: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i8 },
} as const;

type UctSymbols = ReturnType<typeof dlopen<typeof uctSymbols>>["symbols"];

/** One C struct of ucp.h: its C name, size (where we allocate it) and the offsets of the fields we use. */
export interface UcxStructLayout {
  /** The C type name, e.g. `ucp_params_t`. */
  readonly cName: string;
  /** sizeof, where we allocate the struct. */
  readonly size: number;
  /** Byte offset of each field we read or write. */
  readonly fields: Readonly<Record<string, number>>;
}

/** Struct layouts of UCX 1.13 on LP64, checked by test/ucx/layout.test.ts. */
export const ucxLayout = {
  ucp_params_t: { cName: "ucp_params_t", size: 80, fields: { field_mask: 0, features: 8, mt_workers_shared: 48, name: 72 } },
  ucp_worker_params_t: { cName: "ucp_worker_params_t", size: 200, fields: { field_mask: 0, thread_mode: 8 } },
  ucp_mem_map_params_t: {
    cName: "ucp_mem_map_params_t", size: 40, fields: { field_mask: 0, address: 8, length: 16, flags: 24, prot: 28, memory_type: 32 },
  },
  ucp_mem_attr_t: { cName: "ucp_mem_attr_t", size: 32, fields: { field_mask: 0, address: 8, length: 16, mem_type: 24 } },
  ucp_ep_params_t: { cName: "ucp_ep_params_t", size: 104, fields: { field_mask: 0, address: 8, err_mode: 16, flags: 48 } },
  ucp_request_param_t: {
    cName: "ucp_request_param_t", size: 72,
    fields: { op_attr_mask: 0, flags: 4, request: 8, cb: 16, datatype: 24, user_data: 32, reply_buffer: 40, memory_type: 48, recv_info: 56, memh: 64 },
  },
  ucp_tag_recv_info_t: { cName: "ucp_tag_recv_info_t", size: 16, fields: { sender_tag: 0, length: 8 } },
  uct_component_attr_t: { cName: "uct_component_attr_t", size: 48, fields: { field_mask: 0, name: 8 } },
  uct_rkey_bundle_t: { cName: "uct_rkey_bundle_t", size: 24, fields: { rkey: 0, handle: 8, type: 16 } },
} as const satisfies Record<string, UcxStructLayout>;

const P = ucxLayout;

/** Constants of ucp.h and ucs/type/status.h (field masks are UCS_BIT(n)). */
export const UCX = {
  API_MAJOR: 1,
  API_MINOR: 13,
  PARAM_FIELD_FEATURES: 1,
  PARAM_FIELD_MT_WORKERS_SHARED: 0x20,
  FEATURE_TAG: 1,
  FEATURE_RMA: 2,
  FEATURE_AMO64: 8,
  WORKER_PARAM_FIELD_THREAD_MODE: 1,
  THREAD_MODE_SINGLE: 0,
  MEM_MAP_PARAM_FIELD_ADDRESS: 1,
  MEM_MAP_PARAM_FIELD_LENGTH: 2,
  MEM_MAP_PARAM_FIELD_FLAGS: 4,
  MEM_MAP_PARAM_FIELD_PROT: 8,
  MEM_MAP_ALLOCATE: 2,
  MEM_MAP_PROT_LOCAL_READ: 1,
  MEM_MAP_PROT_LOCAL_WRITE: 2,
  MEM_MAP_PROT_REMOTE_READ: 0x100,
  MEM_MAP_PROT_REMOTE_WRITE: 0x200,
  MEM_ATTR_FIELD_ADDRESS: 1,
  MEM_ATTR_FIELD_LENGTH: 2,
  EP_PARAM_FIELD_REMOTE_ADDRESS: 1,
  EP_PARAM_FIELD_ERR_HANDLING_MODE: 2,
  ERR_HANDLING_MODE_NONE: 0,
  EP_CLOSE_FLAG_FORCE: 1,
  OP_ATTR_FIELD_DATATYPE: 8,
  OP_ATTR_FIELD_FLAGS: 0x10,
  OP_ATTR_FIELD_REPLY_BUFFER: 0x20,
  OP_ATTR_FIELD_MEMORY_TYPE: 0x40,
  OP_ATTR_FIELD_RECV_INFO: 0x80,
  OP_ATTR_FIELD_MEMH: 0x100,
  OP_ATTR_FLAG_NO_IMM_CMPL: 0x10000,
  /** ucp_dt_make_contig(8): one 64-bit word, the datatype of a 64-bit atomic. */
  DATATYPE_CONTIG_8: 64,
  ATOMIC_OP_ADD: 0,
  ATOMIC_OP_CSWAP: 2,
  COMPONENT_ATTR_FIELD_NAME: 1,
  COMPONENT_NAME_MAX: 16,
  MEMORY_TYPE_HOST: 0,
  OK: 0,
  INPROGRESS: 1,
  ERR_NO_RESOURCE: -2,
  ERR_INVALID_PARAM: -5,
  ERR_UNREACHABLE: -6,
  ERR_INVALID_ADDR: -7,
  ERR_NOT_IMPLEMENTED: -8,
  ERR_MESSAGE_TRUNCATED: -9,
  ERR_NO_DEVICE: -14,
  ERR_CANCELED: -16,
  ERR_TIMED_OUT: -20,
  ERR_UNSUPPORTED: -22,
  ERR_LAST: -100,
} as const;

/** Names of ucs_status_t values (status.h), for `UcxError.code`. */
const STATUS_NAMES: Record<number, string> = {
  0: "UCS_OK", 1: "UCS_INPROGRESS", [-1]: "UCS_ERR_NO_MESSAGE", [-2]: "UCS_ERR_NO_RESOURCE", [-3]: "UCS_ERR_IO_ERROR",
  [-4]: "UCS_ERR_NO_MEMORY", [-5]: "UCS_ERR_INVALID_PARAM", [-6]: "UCS_ERR_UNREACHABLE", [-7]: "UCS_ERR_INVALID_ADDR",
  [-8]: "UCS_ERR_NOT_IMPLEMENTED", [-9]: "UCS_ERR_MESSAGE_TRUNCATED", [-10]: "UCS_ERR_NO_PROGRESS",
  [-11]: "UCS_ERR_BUFFER_TOO_SMALL", [-12]: "UCS_ERR_NO_ELEM", [-13]: "UCS_ERR_SOME_CONNECTS_FAILED",
  [-14]: "UCS_ERR_NO_DEVICE", [-15]: "UCS_ERR_BUSY", [-16]: "UCS_ERR_CANCELED", [-17]: "UCS_ERR_SHMEM_SEGMENT",
  [-18]: "UCS_ERR_ALREADY_EXISTS", [-19]: "UCS_ERR_OUT_OF_RANGE", [-20]: "UCS_ERR_TIMED_OUT",
  [-21]: "UCS_ERR_EXCEEDS_LIMIT", [-22]: "UCS_ERR_UNSUPPORTED", [-23]: "UCS_ERR_REJECTED",
  [-24]: "UCS_ERR_NOT_CONNECTED", [-25]: "UCS_ERR_CONNECTION_RESET", [-80]: "UCS_ERR_ENDPOINT_TIMEOUT",
};

/** The symbolic name of a ucs_status_t, e.g. `UCS_ERR_NO_DEVICE`. */
export function ucsStatusName(status: number): string {
  return STATUS_NAMES[status] ?? (status <= -40 && status >= -59 ? "UCS_ERR_LINK_FAILURE" :
    status <= -60 && status >= -89 ? "UCS_ERR_ENDPOINT_FAILURE" : `UCS_STATUS_${status}`);
}

/**
 * A UCX call failed. `status` is the `ucs_status_t` (negative), `code` its name, `description`
 * UCX's own text (`ucs_status_string`).
 */
export class UcxError extends Error {
  /** Always "UcxError". */
  override readonly name: string = "UcxError";
  /** The UCX function that failed, e.g. `ucp_init_version`. */
  readonly function: string;
  /** The ucs_status_t it returned, e.g. -14. */
  readonly status: number;
  /** The status's name, e.g. `UCS_ERR_NO_DEVICE`. */
  readonly code: string;
  /** `ucs_status_string(status)`. */
  readonly description: string;

  /**
   * The error for `status`, returned by `fn`.
   * @param fn The UCX function that failed.
   * @param status Its `ucs_status_t`.
   * @param description `ucs_status_string(status)`.
   * @param detail What was asked, appended to the message.
   */
  constructor(fn: string, status: number, description: string, detail?: string, options?: ErrorOptions) {
    super(`${fn} failed: ${description} (${ucsStatusName(status)}, ${status})${detail ? `: ${detail}` : ""}`, options);
    this.function = fn;
    this.status = status;
    this.code = ucsStatusName(status);
    this.description = description;
  }
}

/** Where UCX's libucp is looked for, and how to install it. */
export const UCX_LOCATION: LibraryLocation = {
  name: "UCX",
  names: ["libucp.so.0", "libucp.so"],
  variable: "ALLOCTOOLS_UCX_PATH",
  install: "'apt-get install libucx0' (Debian/Ubuntu; ucx-utils adds ucx_info and ucx_perftest) or 'dnf install ucx'",
};
const DEFAULT_NAMES = UCX_LOCATION.names;
/** libucp's own libuct (beside it when a path is given). */
const UCT_NAME = "libuct.so.0";
/**
 * Zero bytes after a key blob handed to UCX: a component reads its own key struct (posix: 24 bytes
 * and, without its procfs and shm_open flags, a directory string) whatever length the blob gives.
 */
const KEY_PADDING = 256;
/**
 * Handlers Bun's engine owns and libucs's constructor replaces (SIGFPE = 8). libucs also takes
 * SIGHUP for its debug signal (UCX_DEBUG_SIGNO, default SIGHUP: raise the log level, keep
 * running), so a process whose terminal or ssh session went away went on, logging every
 * operation: SIGHUP is kept as well unless UCX_DEBUG_SIGNO was asked for.
 */
const ENGINE_SIGNALS = [libc.SIGSEGV, libc.SIGBUS, libc.SIGILL, 8];
/**
 * Settings alloctools keeps whatever the environment says: in unified mode a worker address
 * leaves out the lengths of its parts, so a peer's address could not be checked before
 * ucp_ep_create (ucx-address.ts).
 */
const FIXED_SETTINGS: Readonly<Record<string, string>> = { UNIFIED_MODE: "n" };
const PROT_ALL = UCX.MEM_MAP_PROT_LOCAL_READ | UCX.MEM_MAP_PROT_LOCAL_WRITE | UCX.MEM_MAP_PROT_REMOTE_READ | UCX.MEM_MAP_PROT_REMOTE_WRITE;

/** A memory mapping: `ucp_mem_h` and the range UCX reports for it. */
export interface UcxMapping {
  /** The `ucp_mem_h`. */
  readonly memh: number;
  /** Start of the mapped range (UCX's choice with ALLOCATE). */
  readonly address: number;
  /** Length of the mapped range. */
  readonly length: number;
}

/**
 * A loaded libucp: typed wrappers for the calls the provider and the endpoint make, each turning a
 * failure into a UcxError. The raw symbols are exposed for the endpoint's hot path.
 */
export class Ucx {
  /** The path that was loaded. */
  readonly path: string;
  /** "1.13.1" */
  readonly version: string;
  /** The raw functions, for hot paths that check statuses themselves. */
  readonly raw: Symbols;
  // Typed arrays over ArrayBuffers of their own: their memory never moves, so an address taken once
  // stays valid (a small typed array's storage can move when JSC materializes its buffer).
  /** One 8-byte out-parameter slot (`T **`, `size_t *`), read right after each call. */
  private readonly out = new BigUint64Array(new ArrayBuffer(16));
  private readonly outAddress = ptr(this.out);
  private readonly uct: UctSymbols;
  /** Each live worker's own address, read: what peers' addresses are checked against. */
  private readonly ownAddresses = new Map<number, WorkerAddress>();
  /** Each live ep's peer memory domains whose keys map a segment here (md index → transport). */
  private readonly mappedDomains = new Map<number, ReadonlyMap<number, string>>();
  /** uct components by name ("posix", "sysv"), listed on first use. */
  private components: Map<string, number> | undefined;

  private constructor(path: string, raw: Symbols, uct: UctSymbols) {
    this.path = path;
    this.raw = raw;
    this.uct = uct;
    const v = new Uint32Array(3);
    raw.ucp_get_version(v, v.subarray(1), v.subarray(2));
    this.version = `${v[0]}.${v[1]}.${v[2]}`;
    if (v[0] !== UCX.API_MAJOR || v[1]! < UCX.API_MINOR) {
      throw new LibraryLoadError(`UCX at ${path} is version ${this.version}; alloctools' struct layouts are for ${UCX.API_MAJOR}.${UCX.API_MINOR} and later 1.x`, [path]);
    }
  }

  /**
   * Loads libucp: `$ALLOCTOOLS_UCX_PATH` when set, else `libucp.so.0`, then `libucp.so`. Throws
   * LibraryLoadError saying what was tried and how to install UCX.
   */
  static load(path: string | undefined = process.env.ALLOCTOOLS_UCX_PATH): Ucx {
    const tried = path !== undefined && path !== "" ? [path] : DEFAULT_NAMES;
    const causes: unknown[] = [];
    for (const candidate of tried) {
      const restoreSignals = libc.preserveSignalHandlers(process.env.UCX_DEBUG_SIGNO ? ENGINE_SIGNALS : [...ENGINE_SIGNALS, SIGHUP]);
      let lib: ReturnType<typeof dlopen<typeof symbols>>;
      let uct: ReturnType<typeof dlopen<typeof uctSymbols>>;
      try {
        lib = dlopen(candidate, symbols);
        uct = dlopen(candidate.includes("/") ? `${candidate.slice(0, candidate.lastIndexOf("/"))}/${UCT_NAME}` : UCT_NAME, uctSymbols);
      } catch (e) {
        causes.push(e);
        continue;
      } finally {
        restoreSignals();
      }
      return new Ucx(candidate, lib.symbols, uct.symbols);
    }
    const how = path ? `ALLOCTOOLS_UCX_PATH=${path} could not be loaded` : `tried ${tried.join(", ")}`;
    throw new LibraryLoadError(
      `UCX is not available (${how}). Install it with ${UCX_LOCATION.install}, ` +
        `or point ALLOCTOOLS_UCX_PATH at libucp.so.0. ` +
        `Cause: ${causes.map((c) => (c instanceof Error ? c.message : String(c))).join("; ")}`,
      tried, { cause: causes[0] });
  }

  /** `ucs_status_string(status)`. */
  statusString(status: number): string {
    const p = (this.raw.ucs_status_string(status) as number | null) ?? 0;
    return p === 0 ? `status ${status}` : new CString(p as Pointer).toString();
  }

  /** The one error path: a UcxError for `status` from `fn`. */
  error(fn: string, status: number, detail?: string): UcxError {
    return new UcxError(fn, status, this.statusString(status), detail);
  }

  /** Throws a UcxError unless `status` is UCS_OK. */
  check(fn: string, status: number, detail?: string): void {
    if (status !== UCX.OK) throw this.error(fn, status, detail);
  }

  private outPointer(): number {
    return Number(this.out[0]);
  }

  // ---- context -----------------------------------------------------------------------------------

  /**
   * `ucp_config_read` + `ucp_config_modify` of each entry ("TLS" → "tcp", ...) + `ucp_init_version`
   * with `features` (UCP_FEATURE_* bits: RMA, TAG, AMO64) and, with `workersShared`,
   * `mt_workers_shared` (workers in several threads use the context at once: a Worker's endpoint
   * has a ucp_worker of its own on it); returns the `ucp_context_h`.
   */
  init(settings: Readonly<Record<string, string>>, workersShared: boolean = true, features: number = UCX.FEATURE_RMA): number {
    this.check("ucp_config_read", this.raw.ucp_config_read(null, null, this.outAddress));
    const config = this.outPointer();
    try {
      for (const [name, value] of Object.entries({ ...settings, ...FIXED_SETTINGS })) {
        this.check("ucp_config_modify", this.raw.ucp_config_modify(config as Pointer, cString(name), cString(value)), `${name}=${value}`);
      }
      const params = new Uint8Array(P.ucp_params_t.size);
      const dv = new DataView(params.buffer);
      dv.setBigUint64(P.ucp_params_t.fields.field_mask, BigInt(UCX.PARAM_FIELD_FEATURES | UCX.PARAM_FIELD_MT_WORKERS_SHARED), true);
      dv.setBigUint64(P.ucp_params_t.fields.features, BigInt(features), true);
      dv.setInt32(P.ucp_params_t.fields.mt_workers_shared, workersShared ? 1 : 0, true);
      const status = this.raw.ucp_init_version(UCX.API_MAJOR, UCX.API_MINOR, params, config as Pointer, this.outAddress);
      this.check("ucp_init_version", status, describeSettings(settings));
      return this.outPointer();
    } finally {
      this.raw.ucp_config_release(config as Pointer);
    }
  }

  /** `ucp_cleanup(context)` */
  cleanup(context: number): void {
    this.raw.ucp_cleanup(context as Pointer);
  }

  // ---- memory ------------------------------------------------------------------------------------

  /**
   * `ucp_mem_map` of [address, address + length) for local and remote read and write; with
   * `allocate`, UCX allocates `length` bytes itself (address 0) and the result says where.
   */
  memMap(context: number, address: number, length: number, allocate: boolean, prot: number = PROT_ALL): UcxMapping {
    const params = new Uint8Array(P.ucp_mem_map_params_t.size);
    const dv = new DataView(params.buffer);
    const f = P.ucp_mem_map_params_t.fields;
    dv.setBigUint64(f.field_mask, BigInt(UCX.MEM_MAP_PARAM_FIELD_ADDRESS | UCX.MEM_MAP_PARAM_FIELD_LENGTH |
      UCX.MEM_MAP_PARAM_FIELD_FLAGS | UCX.MEM_MAP_PARAM_FIELD_PROT), true);
    dv.setBigUint64(f.address, BigInt(allocate ? 0 : address), true);
    dv.setBigUint64(f.length, BigInt(length), true);
    dv.setUint32(f.flags, allocate ? UCX.MEM_MAP_ALLOCATE : 0, true);
    dv.setUint32(f.prot, prot, true);
    const status = this.raw.ucp_mem_map(context as Pointer, params, this.outAddress);
    this.check("ucp_mem_map", status, allocate ? `allocating ${length} bytes` : `${length} bytes at 0x${address.toString(16)}`);
    const memh = this.outPointer();
    if (!allocate) return { memh, address, length };
    try {
      return { memh, ...this.memQuery(memh) };
    } catch (e) {
      this.raw.ucp_mem_unmap(context as Pointer, memh as Pointer);
      throw e;
    }
  }

  /** `ucp_mem_query(memh)`: the address and length UCX mapped. */
  memQuery(memh: number): { address: number; length: number } {
    const attr = new BigUint64Array(P.ucp_mem_attr_t.size / 8);
    attr[0] = BigInt(UCX.MEM_ATTR_FIELD_ADDRESS | UCX.MEM_ATTR_FIELD_LENGTH);
    this.check("ucp_mem_query", this.raw.ucp_mem_query(memh as Pointer, attr));
    return { address: Number(attr[P.ucp_mem_attr_t.fields.address / 8]), length: Number(attr[P.ucp_mem_attr_t.fields.length / 8]) };
  }

  /** `ucp_mem_unmap(context, memh)` */
  memUnmap(context: number, memh: number): void {
    this.check("ucp_mem_unmap", this.raw.ucp_mem_unmap(context as Pointer, memh as Pointer));
  }

  /** `ucp_rkey_pack`: a copy of the packed remote key; UCX's buffer is released. */
  rkeyPack(context: number, memh: number): Uint8Array {
    const sizeSlot = new BigUint64Array(1);
    this.check("ucp_rkey_pack", this.raw.ucp_rkey_pack(context as Pointer, memh as Pointer, this.outAddress, sizeSlot));
    const buffer = this.outPointer();
    try {
      return copyBytes(buffer, Number(sizeSlot[0]));
    } finally {
      this.raw.ucp_rkey_buffer_release(buffer as Pointer);
    }
  }

  // ---- workers and endpoints --------------------------------------------------------------------

  /** `ucp_worker_create` in UCS_THREAD_MODE_SINGLE (one JS thread uses it). */
  workerCreate(context: number): number {
    const params = new Uint8Array(P.ucp_worker_params_t.size);
    const dv = new DataView(params.buffer);
    dv.setBigUint64(P.ucp_worker_params_t.fields.field_mask, BigInt(UCX.WORKER_PARAM_FIELD_THREAD_MODE), true);
    dv.setUint32(P.ucp_worker_params_t.fields.thread_mode, UCX.THREAD_MODE_SINGLE, true);
    this.check("ucp_worker_create", this.raw.ucp_worker_create(context as Pointer, params, this.outAddress));
    return this.outPointer();
  }

  /** `ucp_worker_destroy(worker)` */
  workerDestroy(worker: number): void {
    this.ownAddresses.delete(worker);
    this.raw.ucp_worker_destroy(worker as Pointer);
  }

  /** `ucp_worker_get_address`: a copy of the worker's address bytes. */
  workerAddress(worker: number): Uint8Array {
    const lengthSlot = new BigUint64Array(1);
    this.check("ucp_worker_get_address", this.raw.ucp_worker_get_address(worker as Pointer, this.outAddress, lengthSlot));
    const address = this.outPointer();
    try {
      return copyBytes(address, Number(lengthSlot[0]));
    } finally {
      this.raw.ucp_worker_release_address(worker as Pointer, address as Pointer);
    }
  }

  /**
   * `ucp_ep_create` to the worker whose address is `peerAddress`, error handling mode NONE. The
   * address is checked first against this worker's own (ucx-address.ts): UCX trusts every byte
   * and aborts or reads out of bounds on a bad one; a refusal is UcxError UCS_ERR_INVALID_ADDR
   * saying what is wrong, and nothing is created.
   */
  epCreate(worker: number, peerAddress: Uint8Array): number {
    const own = this.ownAddress(worker);
    const peer = checkWorkerAddress(peerAddress, own);
    if (typeof peer === "string") {
      throw this.error("ucp_ep_create", UCX.ERR_INVALID_ADDR, `refused before ucp_ep_create: the peer's worker address of ${peerAddress.length} bytes cannot be used: ${peer}`);
    }
    const params = new Uint8Array(P.ucp_ep_params_t.size);
    const dv = new DataView(params.buffer);
    const f = P.ucp_ep_params_t.fields;
    dv.setBigUint64(f.field_mask, BigInt(UCX.EP_PARAM_FIELD_REMOTE_ADDRESS | UCX.EP_PARAM_FIELD_ERR_HANDLING_MODE), true);
    dv.setBigUint64(f.address, BigInt(ptr(peerAddress)), true);
    dv.setUint32(f.err_mode, UCX.ERR_HANDLING_MODE_NONE, true);
    this.check("ucp_ep_create", this.raw.ucp_ep_create(worker as Pointer, params, this.outAddress), `peer address of ${peerAddress.length} bytes`);
    const ep = this.outPointer();
    this.mappedDomains.set(ep, mappedMemoryDomains(peer, own));
    return ep;
  }

  /** The worker's own address, read once (ucp_worker_get_address). */
  private ownAddress(worker: number): WorkerAddress {
    let own = this.ownAddresses.get(worker);
    if (own === undefined) {
      const read = readWorkerAddress(this.workerAddress(worker));
      if (typeof read === "string") {
        throw this.error("ucp_worker_get_address", UCX.ERR_INVALID_ADDR, `this worker's own address is not in UCX 1.13's format (${read}): peers' addresses cannot be checked`);
      }
      this.ownAddresses.set(worker, own = read);
    }
    return own;
  }

  /**
   * `ucp_ep_rkey_unpack(ep, blob)`: the `ucp_rkey_h`. The blob (framing-checked by the caller) goes
   * to UCX zero-padded, and each key in it that maps a segment here (posix, sysv) is first
   * unpacked on its own component: UCX before 1.19 crashes in ucp_ep_rkey_unpack's error path
   * (it releases the key it failed to unpack), so a key whose segment is gone (its pool closed, its
   * process exited) or that names none must be refused before. The trial mappings are held until
   * UCX has unpacked the blob (a sysv segment then cannot go in between).
   */
  rkeyUnpack(ep: number, blob: Uint8Array): number {
    const padded = new Uint8Array(blob.length + KEY_PADDING);
    padded.set(blob);
    const trials = this.tryMappedKeys(ep, padded, blob.length);
    try {
      this.check("ucp_ep_rkey_unpack", this.raw.ucp_ep_rkey_unpack(ep as Pointer, padded, this.outAddress), `a key blob of ${blob.length} bytes`);
      return this.outPointer();
    } finally {
      this.releaseTrials(trials);
    }
  }

  /**
   * Unpacks each key of `padded` (a blob of `length` bytes) whose memory domain maps a segment
   * here on its uct component (uct_rkey_unpack); returns the trials to release, or releases them
   * and throws UcxError with the component's status when one fails.
   */
  private tryMappedKeys(ep: number, padded: Uint8Array, length: number): Array<{ component: number; bundle: BigUint64Array }> {
    const domains = this.mappedDomains.get(ep);
    const trials: Array<{ component: number; bundle: BigUint64Array }> = [];
    if (domains === undefined || domains.size === 0) return trials;
    for (const [mdIndex, keyAt] of keyOffsets(padded, length)) {
      const transport = domains.get(mdIndex);
      const component = transport === undefined ? 0 : this.component(transport);
      if (component === 0) continue;
      const bundle = new BigUint64Array(P.uct_rkey_bundle_t.size / 8);
      const status = this.uct.uct_rkey_unpack(component as Pointer, padded.subarray(keyAt), bundle);
      if (status !== UCX.OK) {
        this.releaseTrials(trials);
        throw this.error("ucp_ep_rkey_unpack", status, `refused before unpacking: the key of the peer's memory domain ${mdIndex} (${transport}) ` +
          `does not map here (its region's pool closed or its process exited, or the key is not one UCX made)`);
      }
      trials.push({ component, bundle });
    }
    return trials;
  }

  private releaseTrials(trials: ReadonlyArray<{ component: number; bundle: BigUint64Array }>): void {
    for (const { component, bundle } of trials) this.uct.uct_rkey_release(component as Pointer, bundle);
  }

  /**
   * The names of this UCX's uct components ("self", "tcp", "sysv", "posix", "cma", "ib", ...): the
   * transport families it was built with, whether or not a device is there for them.
   */
  componentNames(): string[] {
    this.components ??= this.listComponents();
    return [...this.components.keys()];
  }

  /** The uct component named `name` ("posix"), 0 when this UCX has none. */
  private component(name: string): number {
    this.components ??= this.listComponents();
    return this.components.get(name) ?? 0;
  }

  private listComponents(): Map<string, number> {
    const count = new Uint32Array(1);
    this.check("uct_query_components", this.uct.uct_query_components(this.outAddress, count));
    const list = this.outPointer();
    const components = new Map<string, number>();
    try {
      const attr = new Uint8Array(P.uct_component_attr_t.size);
      const dv = new DataView(attr.buffer);
      for (let i = 0; i < count[0]!; i++) {
        const component = Number(read.u64(list as Pointer, i * 8));
        dv.setBigUint64(P.uct_component_attr_t.fields.field_mask, BigInt(UCX.COMPONENT_ATTR_FIELD_NAME), true);
        this.check("uct_component_query", this.uct.uct_component_query(component as Pointer, attr));
        const name = attr.subarray(P.uct_component_attr_t.fields.name, P.uct_component_attr_t.fields.name + UCX.COMPONENT_NAME_MAX);
        const end = name.indexOf(0);
        components.set(Buffer.from(name.subarray(0, end < 0 ? name.length : end)).toString("latin1"), component);
      }
    } finally {
      this.uct.uct_release_component_list(list as Pointer);
    }
    return components;
  }

  /** `ucp_rkey_destroy(rkey)` */
  rkeyDestroy(rkey: number): void {
    this.raw.ucp_rkey_destroy(rkey as Pointer);
  }

  /**
   * `ucp_ep_close_nbx`, `force` with UCP_EP_CLOSE_FLAG_FORCE: the status pointer (0 done, negative
   * an error status, else a request to poll).
   */
  epClose(ep: number, force: boolean): number {
    this.mappedDomains.delete(ep);
    const params = new Uint32Array(P.ucp_request_param_t.size / 4);
    params[P.ucp_request_param_t.fields.op_attr_mask / 4] = UCX.OP_ATTR_FIELD_FLAGS;
    params[P.ucp_request_param_t.fields.flags / 4] = force ? UCX.EP_CLOSE_FLAG_FORCE : 0;
    return this.raw.ucp_ep_close_nbx(ep as Pointer, params) as number;
  }
}

/**
 * Why `blob` cannot be a packed rkey, or "" when its framing holds: a u64 map of memory domains, a
 * memory-type byte, then for each domain in the map a length byte and that many bytes, all inside
 * the blob (trailing bytes are allowed for later UCX versions). Checked before every unpack:
 * `ucp_ep_rkey_unpack` reads garbage without bounds and can crash the process. The memory type
 * must be host memory (0), the only kind alloctools registers: UCX indexes tables by it (its
 * names when it logs, per-type thresholds) without a bound.
 */
export function rkeyBlobProblem(blob: Uint8Array): string {
  if (blob.length < 9) return `a packed rkey is at least 9 bytes, got ${blob.length}`;
  if (blob[8] !== UCX.MEMORY_TYPE_HOST) return `the rkey is for memory type ${blob[8]}; alloctools exchanges host memory (type ${UCX.MEMORY_TYPE_HOST}) only`;
  let at = 9;
  for (let byte = 0; byte < 8; byte++) {
    for (let bit = 0; bit < 8; bit++) {
      if ((blob[byte]! & (1 << bit)) === 0) continue;
      if (at >= blob.length) return `the rkey names memory domain ${byte * 8 + bit} but ends at byte ${blob.length} (truncated?)`;
      at += 1 + blob[at]!;
      if (at > blob.length) return `memory domain ${byte * 8 + bit}'s key runs past the rkey's ${blob.length} bytes (truncated?)`;
    }
  }
  return "";
}

/** [md index, offset of its key] of each memory domain in a framing-checked rkey blob of `length` bytes. */
function keyOffsets(blob: Uint8Array, length: number): Array<[number, number]> {
  const offsets: Array<[number, number]> = [];
  let at = 9;
  for (let md = 0; md < 64 && at < length; md++) {
    if ((blob[md >> 3]! & (1 << (md & 7))) === 0) continue;
    offsets.push([md, at + 1]);
    at += 1 + blob[at]!;
  }
  return offsets;
}

/** Whether a status pointer (declared i64_fast) is an error status. */
export function isStatusError(statusPointer: number): boolean {
  return statusPointer < 0 && statusPointer >= UCX.ERR_LAST;
}

function cString(s: string): Buffer {
  return Buffer.from(`${s}\0`);
}

function describeSettings(settings: Readonly<Record<string, string>>): string {
  const entries = Object.entries(settings);
  return entries.length === 0 ? "UCX defaults" : entries.map(([k, v]) => `UCX_${k}=${v}`).join(" ");
}

/** A JS copy of `length` bytes at native `address` (short-lived UCX buffers). */
function copyBytes(address: number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = read.u8(address as Pointer, i);
  return bytes;
}

let loaded: Ucx | undefined;
let loadError: LibraryLoadError | undefined;

/** The process-wide libucp, loaded on first use (dlopen once). Throws LibraryLoadError. */
export function ucx(): Ucx {
  if (loaded) return loaded;
  if (loadError) throw loadError;
  try {
    return (loaded = Ucx.load());
  } catch (e) {
    if (e instanceof LibraryLoadError) loadError = e;
    throw e;
  }
}

/** What `ucxStatus()` answers: the loaded library, or why it does not load. */
export type UcxStatus =
  | {
    /** UCX loads. */
    available: true;
    /** Its version, "1.13.1". */
    version: string;
    /** The path that was loaded. */
    path: string;
  }
  | {
    /** UCX does not load. */
    available: false;
    /** Why, with the install hint. */
    reason: string;
  };

/** Whether UCX loads here; the reason when it does not. Never throws. */
export function ucxStatus(): UcxStatus {
  try {
    const u = ucx();
    return { available: true, version: u.version, path: u.path };
  } catch (e) {
    return { available: false, reason: e instanceof Error ? e.message : String(e) };
  }
}
