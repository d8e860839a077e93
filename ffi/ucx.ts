// UCX (libucp) through bun:ffi: the one file that knows UCX's symbols, struct layouts and
// constants. Everything is polled from JS: no callback is ever handed to UCX.
//
// - `ucs_status_t` is a one-byte enum: every status return is declared i8.
// - `ucs_status_ptr_t` returns (put, get, flush, close) are declared i64_fast: 0 is "done now",
//   -100..-1 an error status, anything else a request to poll and free. As `ptr`, Bun would turn an
//   error pointer into a bigint near 2^64 that looks like a request.
// - Loading libucs replaces the SIGSEGV/SIGBUS/SIGILL/SIGFPE handlers Bun's engine relies on; they
//   are saved before the dlopen and put back right after (UCX does not install them again later).
// Struct offsets are x86-64/LP64, taken with offsetof against UCX 1.13's ucp.h; test/ucx/layout.test.ts
// compiles the same table against the installed headers and fails on any drift.
import { dlopen, FFIType, read, CString, ptr, type Pointer } from "bun:ffi";
import { LibraryLoadError } from "./errors.ts";
import * as libc from "./libc.ts";

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
} as const;

type Symbols = ReturnType<typeof dlopen<typeof symbols>>["symbols"];

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
    cName: "ucp_request_param_t", size: 72, fields: { op_attr_mask: 0, flags: 4, request: 8, cb: 16, datatype: 24, user_data: 32, memh: 64 },
  },
} as const satisfies Record<string, UcxStructLayout>;

const P = ucxLayout;

/** Constants of ucp.h and ucs/type/status.h (field masks are UCS_BIT(n)). */
export const UCX = {
  API_MAJOR: 1,
  API_MINOR: 13,
  PARAM_FIELD_FEATURES: 1,
  FEATURE_RMA: 2,
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
  OP_ATTR_FIELD_FLAGS: 0x10,
  OP_ATTR_FIELD_MEMH: 0x100,
  OK: 0,
  INPROGRESS: 1,
  ERR_NO_RESOURCE: -2,
  ERR_INVALID_PARAM: -5,
  ERR_UNREACHABLE: -6,
  ERR_NO_DEVICE: -14,
  ERR_CANCELED: -16,
  ERR_TIMED_OUT: -20,
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

const DEFAULT_NAMES = ["libucp.so.0", "libucp.so"];
/** Handlers Bun's engine owns and libucs's constructor replaces (SIGFPE = 8). */
const ENGINE_SIGNALS = [libc.SIGSEGV, libc.SIGBUS, libc.SIGILL, 8];
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
  /** One 8-byte out-parameter slot (`T **`, `size_t *`), read right after each call. */
  private readonly out = new BigUint64Array(2);
  private readonly outAddress = ptr(this.out);

  private constructor(path: string, raw: Symbols) {
    this.path = path;
    this.raw = raw;
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
      const restoreSignals = libc.preserveSignalHandlers(ENGINE_SIGNALS);
      let lib: ReturnType<typeof dlopen<typeof symbols>>;
      try {
        lib = dlopen(candidate, symbols);
      } catch (e) {
        causes.push(e);
        continue;
      } finally {
        restoreSignals();
      }
      return new Ucx(candidate, lib.symbols);
    }
    const how = path ? `ALLOCTOOLS_UCX_PATH=${path} could not be loaded` : `tried ${tried.join(", ")}`;
    throw new LibraryLoadError(
      `UCX is not available (${how}). Install it with 'apt-get install libucx0' (Debian/Ubuntu; ` +
        `ucx-utils adds ucx_info and ucx_perftest) or 'dnf install ucx', or point ALLOCTOOLS_UCX_PATH at libucp.so.0. ` +
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
   * with the RMA feature; returns the `ucp_context_h`.
   */
  init(settings: Readonly<Record<string, string>>): number {
    this.check("ucp_config_read", this.raw.ucp_config_read(null, null, this.outAddress));
    const config = this.outPointer();
    try {
      for (const [name, value] of Object.entries(settings)) {
        this.check("ucp_config_modify", this.raw.ucp_config_modify(config as Pointer, cString(name), cString(value)), `${name}=${value}`);
      }
      const params = new Uint8Array(P.ucp_params_t.size);
      const dv = new DataView(params.buffer);
      dv.setBigUint64(P.ucp_params_t.fields.field_mask, BigInt(UCX.PARAM_FIELD_FEATURES), true);
      dv.setBigUint64(P.ucp_params_t.fields.features, BigInt(UCX.FEATURE_RMA), true);
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

  /** `ucp_ep_create` to the worker whose address is `peerAddress`, error handling mode NONE. */
  epCreate(worker: number, peerAddress: Uint8Array): number {
    const params = new Uint8Array(P.ucp_ep_params_t.size);
    const dv = new DataView(params.buffer);
    const f = P.ucp_ep_params_t.fields;
    dv.setBigUint64(f.field_mask, BigInt(UCX.EP_PARAM_FIELD_REMOTE_ADDRESS | UCX.EP_PARAM_FIELD_ERR_HANDLING_MODE), true);
    dv.setBigUint64(f.address, BigInt(ptr(peerAddress)), true);
    dv.setUint32(f.err_mode, UCX.ERR_HANDLING_MODE_NONE, true);
    this.check("ucp_ep_create", this.raw.ucp_ep_create(worker as Pointer, params, this.outAddress), `peer address of ${peerAddress.length} bytes`);
    return this.outPointer();
  }

  /** `ucp_ep_rkey_unpack(ep, blob)`: the `ucp_rkey_h`. */
  rkeyUnpack(ep: number, blob: Uint8Array): number {
    this.check("ucp_ep_rkey_unpack", this.raw.ucp_ep_rkey_unpack(ep as Pointer, blob, this.outAddress), `a key blob of ${blob.length} bytes`);
    return this.outPointer();
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
 * `ucp_ep_rkey_unpack` reads garbage without bounds and can crash the process.
 */
export function rkeyBlobProblem(blob: Uint8Array): string {
  if (blob.length < 9) return `a packed rkey is at least 9 bytes, got ${blob.length}`;
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
