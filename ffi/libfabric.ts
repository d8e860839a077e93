// libfabric through bun:ffi. Exported symbols come from dlopen; the `static inline` calls of the
// headers (fi_domain, fi_mr_reg, fi_close, fi_endpoint, ...) are reached by reading the object's
// ops table and calling the function pointer with a CFunction, created once per pointer and cached.
// Pointers travel as numbers (user-space addresses fit in 53 bits); 64-bit values that must stay
// exact (keys, descriptors, fi_addr_t) travel as bigint.
import { dlopen, FFIType, read, ptr, CString, CFunction, toArrayBuffer, type Pointer } from "bun:ffi";
import { AllocToolsTypeError, FabricError, LibraryLoadError } from "./errors.ts";
import { L, FI, FI_API_VERSION, FI_MIN_LIBRARY_VERSION, FI_MAX_LIBRARY_MAJOR, layout } from "./layout.ts";
import * as libc from "./libc.ts";
import { SIGABRT, SIGHUP, SIGINT, SIGTERM } from "./signals.ts";
import { LazyLibrary, type LibraryLocation, type LibraryStatus } from "./library-status.ts";

const exported = {
  // uint32_t fi_version(void)
  fi_version: { args: [], returns: FFIType.u32 },
  // int fi_getinfo(uint32_t version, const char *node, const char *service, uint64_t flags,
  //                const struct fi_info *hints, struct fi_info **info)
  fi_getinfo: { args: [FFIType.u32, FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  // void fi_freeinfo(struct fi_info *info)
  fi_freeinfo: { args: [FFIType.ptr], returns: FFIType.void },
  // struct fi_info *fi_dupinfo(const struct fi_info *info)   (fi_allocinfo() is fi_dupinfo(NULL))
  fi_dupinfo: { args: [FFIType.ptr], returns: FFIType.ptr },
  // int fi_fabric(struct fi_fabric_attr *attr, struct fid_fabric **fabric, void *context)
  fi_fabric: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  // const char *fi_strerror(int errnum)
  fi_strerror: { args: [FFIType.i32], returns: FFIType.ptr },
  // char *fi_tostr(const void *data, enum fi_type datatype)
  fi_tostr: { args: [FFIType.ptr, FFIType.i32], returns: FFIType.ptr },
} as const;

type Signature = { readonly args: readonly FFIType[]; readonly returns: FFIType };

/** Signatures of the ops-table functions we call. */
const sig = {
  // int (*close)(struct fid *fid)
  close: { args: [FFIType.ptr], returns: FFIType.i32 },
  // int (*bind)(struct fid *fid, struct fid *bfid, uint64_t flags)
  bind: { args: [FFIType.ptr, FFIType.ptr, FFIType.u64], returns: FFIType.i32 },
  // int (*control)(struct fid *fid, int command, void *arg)
  control: { args: [FFIType.ptr, FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  // int (*domain)(struct fid_fabric *fabric, struct fi_info *info, struct fid_domain **dom, void *context)
  // int (*endpoint)(struct fid_domain *domain, struct fi_info *info, struct fid_ep **ep, void *context)
  // int (*cq_open)(struct fid_domain *domain, struct fi_cq_attr *attr, struct fid_cq **cq, void *context)
  // int (*av_open)(struct fid_domain *domain, struct fi_av_attr *attr, struct fid_av **av, void *context)
  open4: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  // int (*reg)(struct fid *fid, const void *buf, size_t len, uint64_t access, uint64_t offset,
  //            uint64_t requested_key, uint64_t flags, struct fid_mr **mr, void *context)
  mr_reg: {
    args: [FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.ptr, FFIType.ptr],
    returns: FFIType.i32,
  },
  // int (*regattr)(struct fid *fid, const struct fi_mr_attr *attr, uint64_t flags, struct fid_mr **mr)
  mr_regattr: { args: [FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
  // int (*setname)(fid_t fid, void *addr, size_t addrlen)
  setname: { args: [FFIType.ptr, FFIType.ptr, FFIType.u64], returns: FFIType.i32 },
  // int (*getname)(fid_t fid, void *addr, size_t *addrlen)
  getname: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  // int (*insert)(struct fid_av *av, const void *addr, size_t count, fi_addr_t *fi_addr, uint64_t flags, void *context)
  av_insert: { args: [FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.ptr, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
  // ssize_t (*read)(struct fid_ep *ep, void *buf, size_t len, void *desc, fi_addr_t src_addr,
  //                 uint64_t addr, uint64_t key, void *context)     (write has the same shape)
  // desc is opaque and may carry a full 64-bit value, so it is passed as u64. Callers pass u64
  // arguments as numbers where exact: a BigInt argument costs ~100 ns more per call.
  rma: {
    args: [FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.ptr],
    returns: FFIType.i64_fast,
  },
  // ssize_t (*send)(struct fid_ep *ep, const void *buf, size_t len, void *desc, fi_addr_t dest_addr,
  //                 uint64_t tag, void *context)                                      (fi_tsend)
  // ssize_t (*inject)(struct fid_ep *ep, const void *buf, size_t len, fi_addr_t dest_addr, uint64_t tag)
  tagged_inject: { args: [FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.u64, FFIType.u64], returns: FFIType.i64_fast },
  // ssize_t (*recv)(struct fid_ep *ep, void *buf, size_t len, void *desc, fi_addr_t src_addr,
  //                 uint64_t tag, uint64_t ignore, void *context)                     (fi_trecv)
  tagged_recv: {
    args: [FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.ptr],
    returns: FFIType.i64_fast,
  },
  // ssize_t (*sendmsg)(struct fid_ep *ep, const struct fi_msg_tagged *msg, uint64_t flags)  (recvmsg alike)
  tagged_msg: { args: [FFIType.ptr, FFIType.ptr, FFIType.u64], returns: FFIType.i64_fast },
  // ssize_t (*readfrom)(struct fid_cq *cq, void *buf, size_t count, fi_addr_t *src_addr)
  cq_readfrom: { args: [FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.ptr], returns: FFIType.i64_fast },
  // ssize_t (*cancel)(fid_t fid, void *context)      (fi_cancel; context is the operation id)
  cancel: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i64_fast },
  // ssize_t (*read)(struct fid_cq *cq, void *buf, size_t count)
  cq_read: { args: [FFIType.ptr, FFIType.ptr, FFIType.u64], returns: FFIType.i64_fast },
  // ssize_t (*readerr)(struct fid_cq *cq, struct fi_cq_err_entry *buf, uint64_t flags)
  cq_readerr: { args: [FFIType.ptr, FFIType.ptr, FFIType.u64], returns: FFIType.i64_fast },
  // const char *(*strerror)(struct fid_cq *cq, int prov_errno, const void *err_data, char *buf, size_t len)
  cq_strerror: { args: [FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.ptr, FFIType.u64], returns: FFIType.ptr },
  // ssize_t (*readwrite)(struct fid_ep *ep, const void *buf, size_t count, void *desc, void *result,
  //                      void *result_desc, fi_addr_t dest_addr, uint64_t addr, uint64_t key,
  //                      enum fi_datatype datatype, enum fi_op op, void *context)     (fi_fetch_atomic)
  atomic_readwrite: {
    args: [FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.u64, FFIType.ptr, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.u64,
      FFIType.i32, FFIType.i32, FFIType.ptr],
    returns: FFIType.i64_fast,
  },
  // ssize_t (*compwrite)(struct fid_ep *ep, const void *buf, size_t count, void *desc, const void *compare,
  //                      void *compare_desc, void *result, void *result_desc, fi_addr_t dest_addr,
  //                      uint64_t addr, uint64_t key, enum fi_datatype datatype, enum fi_op op,
  //                      void *context)                                                (fi_compare_atomic)
  atomic_compwrite: {
    args: [FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.u64, FFIType.ptr, FFIType.u64, FFIType.ptr, FFIType.u64, FFIType.u64,
      FFIType.u64, FFIType.u64, FFIType.i32, FFIType.i32, FFIType.ptr],
    returns: FFIType.i64_fast,
  },
  // int (*readwritevalid)(struct fid_ep *ep, enum fi_datatype datatype, enum fi_op op, size_t *count)
  // (compwritevalid alike: fi_fetch_atomicvalid, fi_compare_atomicvalid)
  atomic_valid: { args: [FFIType.ptr, FFIType.i32, FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
} as const satisfies Record<string, Signature>;

type SigName = keyof typeof sig;
// biome-ignore lint: the callable type of a CFunction depends on its signature.
type Callable = (...args: any[]) => any;

/** A domain's `fi_mr_reg` as a CFunction (see `Libfabric#mrRegFunction`); opaque outside this file. */
export type MrRegFunction = (domain: number, address: number, length: number, access: number, offset: number,
  requestedKey: bigint | number, flags: number, mr: BigUint64Array, context: null) => number;

/** fi_close(NULL) would read the ops table at address 0x10 and crash the process: an error instead. */
function nullFid(what: string): AllocToolsTypeError {
  return new AllocToolsTypeError(`fi_close of a NULL ${what}: there is no libfabric object to close (a handle that was never recorded)`);
}

/** Reads a pointer field as a number (0 for NULL). */
export function readPtr(at: number, offset: number): number {
  return read.ptr(at as Pointer, offset) as number;
}
export function readU64(at: number, offset: number): bigint {
  return read.u64(at as Pointer, offset);
}
export function readI32(at: number, offset: number): number {
  return read.i32(at as Pointer, offset);
}
export function readU32(at: number, offset: number): number {
  return read.u32(at as Pointer, offset);
}
export function readCString(at: number): string | null {
  return at === 0 ? null : new CString(at as Pointer).toString();
}

/** A DataView over `length` bytes of native memory at `at`, for writing C structs. */
export function nativeView(at: number, length: number): DataView {
  return new DataView(toArrayBuffer(at as Pointer, 0, length));
}

/** Where libfabric is looked for, and how to install it. */
export const LIBFABRIC_LOCATION: LibraryLocation = {
  name: "libfabric",
  names: ["libfabric.so.1", "libfabric.so"],
  variable: "ALLOCTOOLS_LIBFABRIC_PATH",
  install: "'apt-get install libfabric1' (Debian/Ubuntu) or 'dnf install libfabric'",
};
const DEFAULT_NAMES = LIBFABRIC_LOCATION.names;
/**
 * Signals whose handlers Bun's engine owns, and the ones that end a process (SIGINT, SIGTERM,
 * SIGABRT, SIGHUP): libfabric's dependencies must not keep them. libinfinipath's constructor
 * (PSM) catches SIGINT, SIGTERM and SIGABRT and exits with status 1, so a process ended by one of
 * them did not end by the signal.
 */
const ENGINE_SIGNALS = [libc.SIGSEGV, libc.SIGBUS, libc.SIGILL, SIGINT, SIGTERM, SIGABRT, SIGHUP];

/** A loaded libfabric: the exported functions plus typed access to the ops tables. */
export class Libfabric {
  /** The path that was loaded. */
  readonly path: string;
  /** `fi_version()` of the loaded library, as FI_VERSION(major, minor). */
  readonly version: number;
  /** The API version we ask for in fi_getinfo. */
  readonly apiVersion: number;
  private readonly sym: ReturnType<typeof dlopen<typeof exported>>["symbols"];
  private readonly close_: () => void;
  /** One CFunction per (signature, function pointer). */
  private readonly fns = new Map<SigName, Map<number, Callable>>();
  /** Scratch out-parameter for `struct fid_xxx **`: one 8-byte slot. */
  private readonly out = new BigUint64Array(1);
  /** The same slot as two 32-bit halves: read without making a BigInt. */
  private readonly outWords = new Uint32Array(this.out.buffer);
  /**
   * One-entry caches of the last fi_mr_reg and fi_close functions, keyed by the ops table they
   * were read from (`domain->mr`, `fid->ops`): providers' ops tables are constant structs, so a
   * table seen before needs one pointer read, not two. Registrations close through their own
   * entry, so closing endpoints or domains between them does not evict it.
   */
  private regTable = 0;
  private regFunction: Callable | null = null;
  private closeTable = 0;
  private closeFunction: Callable | null = null;
  private mrCloseTable = 0;
  private mrCloseFunction: Callable | null = null;

  private constructor(path: string, lib: ReturnType<typeof dlopen<typeof exported>>) {
    this.path = path;
    this.sym = lib.symbols;
    this.close_ = () => lib.close();
    this.version = this.sym.fi_version();
    this.apiVersion = Math.min(this.version, FI_API_VERSION);
  }

  /**
   * Loads libfabric: `$ALLOCTOOLS_LIBFABRIC_PATH` when set, else `libfabric.so.1`, then `libfabric.so`.
   * Throws LibraryLoadError saying what was tried and how to install it.
   */
  static load(path: string | undefined = process.env.ALLOCTOOLS_LIBFABRIC_PATH): Libfabric {
    const tried = path !== undefined && path !== "" ? [path] : DEFAULT_NAMES;
    const causes: unknown[] = [];
    for (const candidate of tried) {
      let lib: ReturnType<typeof dlopen<typeof exported>>;
      const restoreSignals = libc.preserveSignalHandlers(ENGINE_SIGNALS);
      try {
        lib = dlopen(candidate, exported);
      } catch (e) {
        causes.push(e);
        continue;
      } finally {
        restoreSignals();
      }
      const fabric = new Libfabric(candidate, lib);
      const v = fabric.version;
      if (v < FI_MIN_LIBRARY_VERSION || v >> 16 > FI_MAX_LIBRARY_MAJOR) {
        fabric.close_();
        throw new LibraryLoadError(
          `libfabric at ${candidate} is version ${versionString(v)}; alloctools' struct layouts are for ` +
            `${versionString(FI_MIN_LIBRARY_VERSION)} to ${FI_MAX_LIBRARY_MAJOR}.x`, tried);
      }
      return fabric;
    }
    const how = path ? `ALLOCTOOLS_LIBFABRIC_PATH=${path} could not be loaded` :
      `tried ${tried.join(", ")}`;
    throw new LibraryLoadError(
      `libfabric is not available (${how}). Install it with ${LIBFABRIC_LOCATION.install}, ` +
        `or point ALLOCTOOLS_LIBFABRIC_PATH at libfabric.so.1. ` +
        `Cause: ${causes.map((c) => (c instanceof Error ? c.message : String(c))).join("; ")}`,
      tried, { cause: causes[0] });
  }

  /** "1.17" */
  get versionString(): string {
    return versionString(this.version);
  }

  /** `fi_strerror(errno)` for a positive errno. */
  strerror(errno: number): string {
    return readCString((this.sym.fi_strerror(errno) as number | null) ?? 0) ?? `error ${errno}`;
  }

  /** Throws FabricError when `ret` is negative; returns it otherwise. */
  check(fn: string, ret: number, detail?: string): number {
    if (ret < 0) throw new FabricError(fn, -ret, this.strerror(-ret), detail);
    return ret;
  }

  /** The CFunction for `fp` with signature `name`, created on first use. */
  private fn(name: SigName, fp: number, what: string): Callable {
    let byPtr = this.fns.get(name);
    if (byPtr === undefined) this.fns.set(name, (byPtr = new Map()));
    let f = byPtr.get(fp);
    if (f === undefined) {
      if (fp === 0) throw new FabricError(what, FI.ENOSYS, this.strerror(FI.ENOSYS), "the provider leaves this operation NULL");
      const s = sig[name];
      f = CFunction({ ptr: fp as Pointer, args: [...s.args], returns: s.returns }) as unknown as Callable;
      byPtr.set(fp, f);
    }
    return f;
  }

  /** Function pointer at `table[slot]` where `table = *(obj + opsOffset)`. */
  private op(obj: number, opsOffset: number, slot: number): number {
    return readPtr(readPtr(obj, opsOffset), slot);
  }

  private outPtr(): number {
    return this.outWords[0]! + this.outWords[1]! * 0x1_0000_0000;
  }

  // ---- fi_info -------------------------------------------------------------------------------

  /** `fi_allocinfo()`: a zeroed fi_info with its attribute structs allocated. */
  allocInfo(): number {
    const p = (this.sym.fi_dupinfo(null) as number | null) ?? 0;
    if (p === 0) throw new FabricError("fi_allocinfo", 12, this.strerror(12));
    return p;
  }

  /** `fi_dupinfo(info)`: a private copy of one fi_info (and its attributes), to free with `freeInfo`. */
  dupInfo(info: number): number {
    const p = (this.sym.fi_dupinfo(info as Pointer) as number | null) ?? 0;
    if (p === 0) throw new FabricError("fi_dupinfo", 12, this.strerror(12));
    return p;
  }

  /** `fi_getinfo`: the list of matching fi_info, to free with `freeInfo`. */
  getInfo(hints: number, node: string | null, service: string | null, flags: bigint): number {
    const nodeC = node === null ? null : Buffer.from(node + "\0");
    const serviceC = service === null ? null : Buffer.from(service + "\0");
    const ret = this.sym.fi_getinfo(this.apiVersion, nodeC, serviceC, flags, hints as Pointer, this.out);
    this.check("fi_getinfo", ret, node ? `node ${node}` : undefined);
    return this.outPtr();
  }

  freeInfo(info: number): void {
    if (info !== 0) this.sym.fi_freeinfo(info as Pointer);
  }

  /** `fi_tostr(info, FI_TYPE_INFO)`: libfabric's own description of an fi_info. */
  infoToString(info: number): string {
    return readCString((this.sym.fi_tostr(info as Pointer, FI.TYPE_INFO) as number | null) ?? 0) ?? "";
  }

  // ---- fabric, domain, close ---------------------------------------------------------------------

  /** `fi_fabric(info->fabric_attr, &fabric, NULL)` */
  fabric(info: number): number {
    const attr = readPtr(info, L.fi_info.fabric_attr);
    this.check("fi_fabric", this.sym.fi_fabric(attr as Pointer, this.out, null));
    return this.outPtr();
  }

  /** `fi_domain(fabric, info, &domain, NULL)` */
  domain(fabric: number, info: number): number {
    const f = this.fn("open4", this.op(fabric, L.fid_fabric.ops, L.fi_ops_fabric.domain), "fi_domain");
    this.check("fi_domain", f(fabric, info, this.out, null));
    return this.outPtr();
  }

  /** `fi_close(fid)`; `what` names the object in the error. One pointer read while the ops table is the last one's. */
  close(fid: number, what = "fid"): void {
    if (fid === 0) throw nullFid(what);
    const table = readPtr(fid, L.fid.ops);
    let f = this.closeFunction;
    if (table !== this.closeTable || f === null) {
      f = this.closeFunction = this.fn("close", readPtr(table, L.fi_ops.close), "fi_close");
      this.closeTable = table;
    }
    const ret = f(fid) as number;
    if (ret !== 0) this.check("fi_close", ret, what);
  }

  /**
   * `fi_close(mr)` of a memory registration: `close` with a cache of its own (registrations come
   * and go between other closes). On success: one pointer read, one compare, the call.
   */
  closeMr(mr: number): void {
    if (mr === 0) throw nullFid("mr");
    const table = readPtr(mr, L.fid.ops);
    let f = this.mrCloseFunction;
    if (table !== this.mrCloseTable || f === null) {
      f = this.mrCloseFunction = this.fn("close", readPtr(table, L.fi_ops.close), "fi_close");
      this.mrCloseTable = table;
    }
    const ret = f(mr) as number;
    if (ret !== 0) this.check("fi_close", ret, "mr");
  }

  /** `fi_control(fid, command, arg)` */
  control(fid: number, command: number, arg: number | null = null): void {
    const f = this.fn("control", this.op(fid, L.fid.ops, L.fi_ops.control), "fi_control");
    this.check("fi_control", f(fid, command, arg));
  }

  /** `fi_mr_bind` / `fi_ep_bind` / any `fid->ops->bind`. */
  bind(fid: number, bfid: number, flags: number | bigint, fn = "fi_bind"): void {
    const f = this.fn("bind", this.op(fid, L.fid.ops, L.fi_ops.bind), fn);
    this.check(fn, f(fid, bfid, flags));
  }

  // ---- memory registration -----------------------------------------------------------------------

  /**
   * `fi_mr_reg(domain, buf, len, access, offset, requested_key, flags, &mr, NULL)`. On success: one
   * pointer read, one compare, the call; the error detail is built on failure only. Pass
   * `requestedKey` as a number where it is exact in a double (no BigInt made or converted per call).
   */
  mrReg(domain: number, address: number, length: number, access: number,
        offset: bigint | number, requestedKey: bigint | number, flags: number): number {
    const table = readPtr(domain, L.fid_domain.mr);
    let f = this.regFunction;
    if (table !== this.regTable || f === null) {
      f = this.regFunction = this.fn("mr_reg", readPtr(table, L.fi_ops_mr.reg), "fi_mr_reg");
      this.regTable = table;
    }
    const ret = f(domain, address, length, access, offset, requestedKey, flags, this.out, null) as number;
    if (ret !== 0) this.check("fi_mr_reg", ret, `${length} bytes at 0x${address.toString(16)}, requested key ${requestedKey}`);
    return this.outPtr();
  }

  /**
   * The `fi_mr_reg` function of `domain` (`domain->mr->reg`), resolved now: fi_domain sets a
   * domain's mr ops once, so a caller registering in one domain resolves it once and calls
   * {@link mrRegWith}. FabricError ENOSYS when the provider leaves it NULL.
   */
  mrRegFunction(domain: number): MrRegFunction {
    return this.fn("mr_reg", this.op(domain, L.fid_domain.mr, L.fi_ops_mr.reg), "fi_mr_reg") as MrRegFunction;
  }

  /**
   * `fi_mr_reg(domain, buf, len, access, 0, requested_key, 0, &mr, NULL)` through `reg`, the
   * domain's function from {@link mrRegFunction}: on success the call and nothing else.
   */
  mrRegWith(reg: MrRegFunction, domain: number, address: number, length: number, access: number, requestedKey: bigint | number): number {
    const ret = reg(domain, address, length, access, 0, requestedKey, 0, this.out, null);
    if (ret !== 0) this.check("fi_mr_reg", ret, `${length} bytes at 0x${address.toString(16)}, requested key ${requestedKey}`);
    return this.outPtr();
  }

  /** `fi_mr_regattr` with a single iovec; used where a provider needs attributes. */
  mrRegAttr(domain: number, address: number, length: number, access: number,
            offset: bigint, requestedKey: bigint, flags: number): number {
    const f = this.fn("mr_regattr", this.op(domain, L.fid_domain.mr, L.fi_ops_mr.regattr), "fi_mr_regattr");
    const iov = new BigUint64Array([BigInt(address), BigInt(length)]); // struct iovec { base, len }
    const attr = new BigUint64Array(12); // struct fi_mr_attr, zeroed (iface FI_HMEM_SYSTEM)
    attr[L.fi_mr_attr.mr_iov / 8] = BigInt(ptr(iov));
    attr[L.fi_mr_attr.iov_count / 8] = 1n;
    attr[L.fi_mr_attr.access / 8] = BigInt(access);
    attr[L.fi_mr_attr.offset / 8] = offset;
    attr[L.fi_mr_attr.requested_key / 8] = requestedKey;
    const ret = f(domain, attr, flags, this.out);
    this.check("fi_mr_regattr", ret, `${length} bytes at 0x${address.toString(16)}`);
    return this.outPtr();
  }

  /** `fi_mr_key(mr)`: the remote key, exact. */
  mrKey(mr: number): bigint {
    return readU64(mr, L.fid_mr.key);
  }

  /** `fi_mr_desc(mr)`: the local descriptor, exact (opaque: may be a full 64-bit value). */
  mrDesc(mr: number): bigint {
    return readU64(mr, L.fid_mr.mem_desc);
  }

  // ---- endpoints, queues, address vectors (RMA) --------------------------------------------------

  /** `fi_endpoint(domain, info, &ep, NULL)` */
  endpoint(domain: number, info: number): number {
    const f = this.fn("open4", this.op(domain, L.fid_domain.ops, L.fi_ops_domain.endpoint), "fi_endpoint");
    this.check("fi_endpoint", f(domain, info, this.out, null));
    return this.outPtr();
  }

  /** `fi_cq_open(domain, attr, &cq, NULL)` with FI_CQ_FORMAT_TAGGED and no wait object. */
  cqOpen(domain: number, size: number): number {
    const attr = new Uint8Array(layout.fi_cq_attr.size);
    const dv = new DataView(attr.buffer);
    dv.setBigUint64(L.fi_cq_attr.size, BigInt(size), true);
    dv.setInt32(L.fi_cq_attr.format, FI.CQ_FORMAT_TAGGED, true);
    dv.setInt32(L.fi_cq_attr.wait_obj, FI.WAIT_NONE, true);
    const f = this.fn("open4", this.op(domain, L.fid_domain.ops, L.fi_ops_domain.cq_open), "fi_cq_open");
    this.check("fi_cq_open", f(domain, attr, this.out, null));
    return this.outPtr();
  }

  /** `fi_av_open(domain, attr, &av, NULL)` with FI_AV_TABLE. */
  avOpen(domain: number, count: number): number {
    const attr = new Uint8Array(layout.fi_av_attr.size);
    const dv = new DataView(attr.buffer);
    dv.setInt32(L.fi_av_attr.type, FI.AV_TABLE, true);
    dv.setBigUint64(L.fi_av_attr.count, BigInt(count), true);
    const f = this.fn("open4", this.op(domain, L.fid_domain.ops, L.fi_ops_domain.av_open), "fi_av_open");
    this.check("fi_av_open", f(domain, attr, this.out, null));
    return this.outPtr();
  }

  /** `fi_enable(ep)` / `fi_mr_enable(mr)`: `control(fid, FI_ENABLE, NULL)`. */
  enable(fid: number, fn = "fi_enable"): void {
    const f = this.fn("control", this.op(fid, L.fid.ops, L.fi_ops.control), fn);
    this.check(fn, f(fid, FI.ENABLE, null));
  }

  /** `fi_setname(ep, name)`: the endpoint's address, before fi_enable (`name` as the provider takes it, NUL-terminated for shm). */
  setName(ep: number, name: Uint8Array): void {
    const f = this.fn("setname", this.op(ep, L.fid_ep.cm, L.fi_ops_cm.setname), "fi_setname");
    this.check("fi_setname", f(ep, name, name.length));
  }

  /** `fi_getname(ep)`: the endpoint's address bytes. */
  getName(ep: number): Uint8Array {
    const f = this.fn("getname", this.op(ep, L.fid_ep.cm, L.fi_ops_cm.getname), "fi_getname");
    let buf = new Uint8Array(64);
    const len = new BigUint64Array([BigInt(buf.length)]);
    let ret = f(ep, buf, len);
    if (ret === -FI.ETRUNC || Number(len[0]!) > buf.length) {
      buf = new Uint8Array(Number(len[0]!));
      ret = f(ep, buf, len);
    }
    this.check("fi_getname", ret);
    return buf.slice(0, Number(len[0]!));
  }

  /** `fi_av_insert(av, addr, 1, &fi_addr, 0, NULL)`: the peer's fi_addr_t. */
  avInsert(av: number, address: Uint8Array): bigint {
    const f = this.fn("av_insert", this.op(av, L.fid_av.ops, L.fi_ops_av.insert), "fi_av_insert");
    const out = new BigUint64Array(1);
    const ret = f(av, address, 1, out, 0, null);
    this.check("fi_av_insert", ret);
    if (ret !== 1) throw new FabricError("fi_av_insert", 22, this.strerror(22), "the address was not inserted");
    return out[0]!;
  }

  /**
   * The RMA and completion calls of one endpoint/CQ, resolved once so that each operation is a
   * plain call. Returned functions return the raw ssize_t.
   */
  rmaOps(ep: number, cq: number): RmaOps {
    const rma = readPtr(ep, L.fid_ep.rma);
    const cqOps = readPtr(cq, L.fid_cq.ops);
    const epOps = readPtr(ep, L.fid_ep.ops);
    return {
      cqReadFrom: this.fn("cq_readfrom", readPtr(cqOps, L.fi_ops_cq.readfrom), "fi_cq_readfrom"),
      cancel: this.fn("cancel", readPtr(epOps, L.fi_ops_ep.cancel), "fi_cancel"),
      read: this.fn("rma", readPtr(rma, L.fi_ops_rma.read), "fi_read"),
      write: this.fn("rma", readPtr(rma, L.fi_ops_rma.write), "fi_write"),
      cqRead: this.fn("cq_read", readPtr(cqOps, L.fi_ops_cq.read), "fi_cq_read"),
      cqReadErr: this.fn("cq_readerr", readPtr(cqOps, L.fi_ops_cq.readerr), "fi_cq_readerr"),
      cqStrError: this.fn("cq_strerror", readPtr(cqOps, L.fi_ops_cq.strerror), "fi_cq_strerror"),
    };
  }

  /**
   * The remote-atomic calls of `ep`, resolved once; null where the endpoint has no atomic ops
   * table or leaves fi_fetch_atomic or fi_compare_atomic NULL.
   */
  atomicOps(ep: number): AtomicOps | null {
    const table = readPtr(ep, L.fid_ep.atomic);
    if (table === 0) return null;
    const fetch = readPtr(table, L.fi_ops_atomic.readwrite);
    const compare = readPtr(table, L.fi_ops_atomic.compwrite);
    const fetchValid = readPtr(table, L.fi_ops_atomic.readwritevalid);
    const compareValid = readPtr(table, L.fi_ops_atomic.compwritevalid);
    if (fetch === 0 || compare === 0 || fetchValid === 0 || compareValid === 0) return null;
    const count = new BigUint64Array(1);
    const valid = (f: Callable) => (datatype: number, op: number): number => {
      count[0] = 0n;
      const ret = f(ep, datatype, op, count) as number;
      return ret < 0 ? ret : Number(count[0]!);
    };
    return {
      fetch: this.fn("atomic_readwrite", fetch, "fi_fetch_atomic"),
      compare: this.fn("atomic_compwrite", compare, "fi_compare_atomic"),
      fetchValid: valid(this.fn("atomic_valid", fetchValid, "fi_fetch_atomicvalid")),
      compareValid: valid(this.fn("atomic_valid", compareValid, "fi_compare_atomicvalid")),
    };
  }

  /** The tagged-message calls of `ep`, resolved once; null where the endpoint has no tagged ops table. */
  taggedOps(ep: number): TaggedOps | null {
    const tagged = readPtr(ep, L.fid_ep.tagged);
    if (tagged === 0) return null;
    return {
      tinject: this.fn("tagged_inject", readPtr(tagged, L.fi_ops_tagged.inject), "fi_tinject"),
      trecv: this.fn("tagged_recv", readPtr(tagged, L.fi_ops_tagged.recv), "fi_trecv"),
      tsendmsg: this.fn("tagged_msg", readPtr(tagged, L.fi_ops_tagged.sendmsg), "fi_tsendmsg"),
      trecvmsg: this.fn("tagged_msg", readPtr(tagged, L.fi_ops_tagged.recvmsg), "fi_trecvmsg"),
    };
  }
}

/** Resolved per-endpoint calls; see `Libfabric.rmaOps`. */
export interface RmaOps {
  /** (cq, buf, count, src_addr*) => ssize_t: fi_cq_readfrom. */
  readonly cqReadFrom: Callable;
  /** (ep, context) => ssize_t: fi_cancel of the operation posted with that context. */
  readonly cancel: Callable;
  /** (ep, buf, len, desc: bigint, fi_addr: bigint, addr: bigint, key: bigint, context) => ssize_t */
  readonly read: Callable;
  readonly write: Callable;
  /** (cq, buf, count) => ssize_t */
  readonly cqRead: Callable;
  /** (cq, errEntry, flags) => ssize_t */
  readonly cqReadErr: Callable;
  /** (cq, prov_errno, err_data, buf, len) => const char* */
  readonly cqStrError: Callable;
}

/** The tagged-message calls of one endpoint; see `Libfabric.taggedOps`. */
export interface TaggedOps {
  /** (ep, buf, len, dest_addr, tag) => ssize_t: fi_tinject, the buffer reusable on return, no completion. */
  readonly tinject: Callable;
  /** (ep, buf, len, desc, src_addr, tag, ignore, context) => ssize_t: fi_trecv. */
  readonly trecv: Callable;
  /** (ep, fi_msg_tagged*, flags) => ssize_t: fi_tsendmsg. */
  readonly tsendmsg: Callable;
  /** (ep, fi_msg_tagged*, flags) => ssize_t: fi_trecvmsg (FI_PEEK, FI_CLAIM). */
  readonly trecvmsg: Callable;
}

/** The remote-atomic calls of one endpoint; see `Libfabric.atomicOps`. */
export interface AtomicOps {
  /** (ep, buf, count, desc, result, result_desc, dest_addr, addr, key, datatype, op, context) => ssize_t: fi_fetch_atomic. */
  readonly fetch: Callable;
  /** (ep, buf, count, desc, compare, compare_desc, result, result_desc, dest_addr, addr, key, datatype, op, context) => ssize_t: fi_compare_atomic. */
  readonly compare: Callable;
  /** fi_fetch_atomicvalid(ep, datatype, op): the count of elements one call takes (> 0), or a negative fi errno. */
  fetchValid(datatype: number, op: number): number;
  /** fi_compare_atomicvalid(ep, datatype, op): as fetchValid. */
  compareValid(datatype: number, op: number): number;
}

export function versionString(v: number): string {
  return `${v >>> 16}.${v & 0xffff}`;
}

const library = new LazyLibrary(() => Libfabric.load(), (loaded) => loaded.versionString);

/** The process-wide libfabric, loaded on first use (dlopen once). Throws LibraryLoadError. */
export function libfabric(): Libfabric {
  return library.get();
}

/** Whether libfabric loads here; the reason when it does not. Never throws. */
export function libfabricStatus(): LibraryStatus {
  return library.status();
}

export { libc };
