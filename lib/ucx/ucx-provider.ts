// A RegionProvider over a UCX context (ucp_init with the RMA, TAG and, unless `atomics: false`,
// AMO64 features: one-sided operations, tagged messages and 64-bit remote atomics). Registration is ucp_mem_map
// of the pool's blocks; the local key is the memory handle, the remote key the packed rkey (a blob,
// RemoteRegion version 2), the remote address the virtual address.
//
// On shared memory UCX is one-sided only for memory it allocated itself (UCP_MEM_MAP_ALLOCATE):
// a peer maps the segment and stores into it. Over our own mmap'd blocks every transport here
// emulates RMA with active messages, which needs the target to progress and is many times slower.
// So where the transports include shared memory the provider supplies the pool's blocks itself
// (allocateBlock); `allocateBlocks: false` measures the other way.
//
// Workers: the context is created with mt_workers_shared, so `share()` hands a Worker the context
// itself; `UcxProvider.attach(handle)` there is a view on which `new UcxEndpoint(view)` creates the
// Worker's own ucp_worker. Memory handles belong to the context, so every registration (pooled,
// temporary, user; whichever thread made it) is valid local memory for every Worker's worker, and
// its packed rkey works for peers. What the threads agree on (users keeping the context, the owner's
// close, the allocated blocks) lives in shared memory: lib/ucx/ucx-shared-context.ts.
import { UcxError, UCX, ucx, type Ucx } from "../../ffi/ucx.ts";
import * as libc from "../../ffi/libc.ts";
import { AllocToolsError, AllocToolsTypeError, AllocToolsRangeError } from "../errors.ts";
import { Access, type ProvidedBlock, type ProviderHandle, type RegionProvider, type Registration } from "../memory/provider.ts";
import { registerProviderAttach } from "../memory/provider-attach.ts";
import { closeChildren, type ProviderChild } from "../memory/provider-child.ts";
import { UcxSharedContext } from "./ucx-shared-context.ts";

/** Options of `UcxProvider.open`. */
export interface UcxProviderOptions {
  /**
   * UCX transports for this context (its UCX_TLS): "tcp", "posix,cma", "sysv,cma", "shm", "all", ...
   * Default: $UCX_TLS, else UCX's own choice.
   */
  transports?: string;
  /** Network devices (UCX_NET_DEVICES), e.g. "lo" or "eth0". Default: UCX's choice (all). */
  netDevices?: string;
  /**
   * Supply the pool's blocks as UCX-allocated memory (UCP_MEM_MAP_ALLOCATE). Default: true when
   * the transports may include shared memory (posix, sysv, shm, sm, all, or none given), false
   * otherwise (over tcp it costs more than it gives).
   */
  allocateBlocks?: boolean;
  /**
   * Further UCX settings, by name without the UCX_ prefix, e.g. `{ RNDV_THRESH: "8k" }`.
   * UNIFIED_MODE is always "n": its worker addresses leave out the lengths a peer's address is
   * checked by before ucp_ep_create.
   */
  settings?: Readonly<Record<string, string>>;
  /**
   * Open the context for workers in several threads (`mt_workers_shared`), so that `share()`
   * works and Workers make endpoints on it. Default true; false: `share()` (and `pool.share()`)
   * is NOT_SUPPORTED.
   */
  threadShared?: boolean;
  /**
   * Open the context with 64-bit remote atomics (UCP_FEATURE_AMO64), for UcxEndpoint's fetchAdd
   * and compareSwap. Default true; false: they are AllocToolsError NOT_SUPPORTED.
   */
  atomics?: boolean;
}

/** What the opened context is. */
export interface UcxInfo {
  /** The UCX library version, "1.13.1". */
  readonly version: string;
  /** The transports asked for (UCX_TLS), or "default". */
  readonly transports: string;
  /** The network devices asked for, or "default". */
  readonly netDevices: string;
  /** Whether pool blocks are UCX-allocated. */
  readonly allocateBlocks: boolean;
  /** Whether the context was opened for workers in several threads (`mt_workers_shared`): what share() needs. */
  readonly threadShared: boolean;
  /** Whether the context has 64-bit remote atomics (UCP_FEATURE_AMO64): `atomics` as opened. */
  readonly atomics: boolean;
}

/**
 * What `UcxProvider#share()` returns: the context's native handle (valid in every thread of this
 * process), what was opened, and the shared state of the context's users and allocated blocks.
 */
export interface UcxProviderHandle extends ProviderHandle {
  /** Always "alloctools.UcxProvider". */
  readonly kind: "alloctools.UcxProvider";
  /** What the owner opened. */
  readonly info: UcxInfo;
  /** The `ucp_context_h`. */
  readonly context: number;
  /** The context's shared state (lib/ucx/ucx-shared-context.ts). */
  readonly state: SharedArrayBuffer;
}

const HANDLE_KIND = "alloctools.UcxProvider";

/** What makes a UcxProvider a view of another thread's context (module-private: only attach() makes one). */
class UcxView {
  constructor(readonly handle: UcxProviderHandle, readonly shared: UcxSharedContext) {}
}

/** Transport names that reach shared memory (UCX_TLS aliases included). */
const SHARED_MEMORY_TRANSPORTS = /(^|[,^])\s*(posix|sysv|shm|sm|all|xpmem|knem)\s*(,|$)/;
/** What a UCX_TLS value may contain: names, commas, a leading ^ (exclude), aliases with ":". */
const TRANSPORTS_SYNTAX = /^\^?[A-Za-z0-9_:]+(,[A-Za-z0-9_:]+)*$/;
/** Transport names UCX 1.13 knows, for the message when none of the asked ones has a device. */
const KNOWN_TRANSPORTS = "all, tcp, posix, sysv, cma, knem, xpmem, shm, sm, self, rc, rc_x, ud, ud_x, dc_x, ib, cuda, rocm";

/** A UCX registration: the memory handle is both `handle` and the local key. */
interface UcxRegistration extends Registration {
  readonly remoteKeyBytes: Uint8Array;
  /** Whether the provider allocated the memory (a ProvidedBlock's registration). */
  readonly allocated: boolean;
}

/**
 * Registers pool memory with a UCX context (see the file header). The owner opens the context;
 * `attach(share())` in a Worker gives a view of it: the same context, registrations and blocks,
 * endpoints of the Worker's own.
 */
export class UcxProvider implements RegionProvider {
  /** Always "ucx". */
  readonly kind = "ucx";
  /** UCX addresses remote memory by virtual address. */
  readonly virtualAddressing = true;
  /**
   * UCX keys are not access control: over emulated RMA (tcp, and shared memory with our own blocks)
   * the target's UCX writes wherever a peer's put says, so freed blocks stay mapped (zero pages).
   */
  readonly keepsFreedMemoryMapped = true;
  /** What was opened. */
  readonly info: UcxInfo;
  /** @internal The `ucp_context_h`, for UcxEndpoint. */
  readonly context: number;
  /** @internal The loaded library. */
  readonly ucx: Ucx;
  /** Whether this is a Worker's view (UcxProvider.attach) of another thread's context. */
  readonly isAttached: boolean;
  /** Users of the context, the owner's close and the allocated blocks, shared with every view. */
  readonly #shared: UcxSharedContext;
  /** Live registrations made through this object (a view keeps none: the shared pool releases each once). */
  private readonly live = new Set<UcxRegistration>();
  private readonly children = new Set<ProviderChild>();
  private closed_ = false;

  private constructor(library: Ucx, context: number, info: UcxInfo, shared: UcxSharedContext, isAttached: boolean) {
    this.ucx = library;
    this.context = context;
    this.info = info;
    this.#shared = shared;
    this.isAttached = isAttached;
  }

  /**
   * Opens a UCX context for RMA, shareable with Workers (`mt_workers_shared`). Throws
   * LibraryLoadError when UCX is missing, TypeError for bad options, UcxError when UCX refuses
   * (UCS_ERR_NO_DEVICE for transports with no device here).
   */
  static open(options: UcxProviderOptions = {}): UcxProvider {
    checkOptions(options);
    const library = ucx();
    const transports = options.transports ?? nonEmpty(process.env.UCX_TLS);
    const settings: Record<string, string> = { ...options.settings };
    if (transports !== undefined) settings.TLS = transports;
    if (options.netDevices !== undefined) settings.NET_DEVICES = options.netDevices;
    let context: number;
    try {
      const features = UCX.FEATURE_RMA | UCX.FEATURE_TAG | (options.atomics === false ? 0 : UCX.FEATURE_AMO64);
      context = library.init(settings, options.threadShared ?? true, features);
    } catch (e) {
      if (e instanceof UcxError && e.status === UCX.ERR_NO_DEVICE && transports !== undefined) {
        throw new UcxError(e.function, e.status, e.description,
          `no device for transports "${transports}"${options.netDevices ? ` on devices "${options.netDevices}"` : ""}; ` +
            `UCX knows ${KNOWN_TRANSPORTS} (ucx_info -d lists what this host has)`, { cause: e });
      }
      throw e;
    }
    const allocateBlocks = options.allocateBlocks ?? (transports === undefined || SHARED_MEMORY_TRANSPORTS.test(transports));
    return new UcxProvider(library, context, {
      version: library.version,
      transports: transports ?? "default",
      netDevices: options.netDevices ?? "default",
      allocateBlocks,
      threadShared: options.threadShared ?? true,
      atomics: options.atomics !== false,
    }, new UcxSharedContext(), false);
  }

  /**
   * A handle for Workers of this process (plain data and a SharedArrayBuffer: post it, or let
   * `pool.share()` carry it). `UcxProvider.attach(handle)` there gives a view over the same context.
   * Throws AllocToolsError PROVIDER_CLOSED when closed, NOT_SUPPORTED when opened with
   * `threadShared: false`.
   */
  share(): UcxProviderHandle {
    this.assertOpen();
    if (!this.info.threadShared) {
      throw new AllocToolsError("NOT_SUPPORTED",
        `provider ${this.name} was opened with threadShared: false; sharing it with Workers needs a context opened for workers in several threads (mt_workers_shared)`);
    }
    return { kind: HANDLE_KIND, pid: process.pid, name: this.name, info: this.info, context: this.context, state: this.#shared.buffer };
  }

  /**
   * A view, in this Worker, of the provider `handle` came from: the same UCX context, so
   * `new UcxEndpoint(view)` creates this Worker's own ucp_worker on it and every registration of
   * the context is valid local memory there. The view keeps no list of registrations (the shared
   * pool releases each once) and its close() closes only its own endpoints; the context stays the
   * owner's (cleaned up when the owner has closed and the last endpoint or block, in any thread,
   * is gone). Throws AllocToolsError NOT_SUPPORTED for a handle from another process,
   * PROVIDER_CLOSED when the owner closed the provider, TypeError for anything else.
   */
  static attach(handle: UcxProviderHandle): UcxProvider {
    if (handle === null || typeof handle !== "object" || handle.kind !== HANDLE_KIND || !(handle.state instanceof SharedArrayBuffer)
        || !UcxSharedContext.fits(handle.state) || typeof handle.context !== "number" || typeof handle.info?.transports !== "string") {
      throw new AllocToolsTypeError("UcxProvider.attach takes the handle a UcxProvider's share() returned");
    }
    if (handle.pid !== process.pid) {
      throw new AllocToolsError("NOT_SUPPORTED",
        `the provider handle comes from process ${handle.pid}; its UCX context exists only there (this is process ${process.pid}): open a provider in this process`);
    }
    const view = new UcxView(handle, new UcxSharedContext(handle.state));
    if (view.shared.closed || view.shared.cleanedUp) throw new AllocToolsError("PROVIDER_CLOSED", `provider ${handle.name} is closed (its owner closed it)`);
    return new UcxProvider(ucx(), handle.context, handle.info, view.shared, true);
  }

  /** Whether `other` registers in the same UCX context as this provider (a view of it, or the owner). */
  sharesContextWith(other: unknown): boolean {
    return other instanceof UcxProvider && other.context === this.context;
  }

  /** "ucx(tcp)", "ucx(posix,cma)", "ucx(default)". */
  get name(): string {
    return `ucx(${this.info.transports})`;
  }

  /** Whether close() was called (on a view: also once the owner closed). */
  get closed(): boolean {
    return this.closed_ || (this.isAttached && this.#shared.closed);
  }

  /** Live registrations made through this object (mapped blocks, allocated ones included; a view counts none). */
  get registrations(): number {
    return this.live.size;
  }

  /**
   * @internal Users keeping the context: the owner until its close, and every endpoint,
   * registration and allocated block of every thread; -1 once cleaned up.
   */
  get contextUsers(): number {
    return this.#shared.users;
  }

  /**
   * `ucp_mem_map` of [address, address + length) and `ucp_rkey_pack` of it.
   * Throws AllocToolsError PROVIDER_CLOSED, UcxError when UCX refuses.
   */
  register(address: number, length: number, access: number): Registration {
    this.assertOpen();
    // Each mapping keeps the context: ucp_cleanup with a memory handle still mapped aborts the
    // process (a shared pool left open past its provider's close leaks the context instead).
    if (!this.#shared.retain()) throw this.closedError();
    try {
      const mapping = this.ucx.memMap(this.context, address, length, false, protectionOf(access));
      return this.track(mapping.memh, address, length, false);
    } catch (e) {
      this.releaseContext();
      throw e;
    }
  }

  /**
   * Releases one registration (`ucp_mem_unmap`). For an allocated block's registration it does
   * nothing: freeing the block unmaps, and with it frees, the memory. A view unmaps what it is
   * given (the shared pool releases each registration once, whichever thread made it); the
   * registration's hold on the context goes with it.
   */
  deregister(registration: Registration): void {
    const reg = registration as UcxRegistration;
    if (!this.isAttached) {
      if (!this.live.has(reg) || reg.allocated) return;
      this.live.delete(reg);
    } else if (this.#shared.hasBlock(reg.address)) {
      return;
    }
    try {
      this.ucx.memUnmap(this.context, reg.handle);
    } finally {
      this.releaseContext();
    }
  }

  /**
   * A pool block allocated by UCX (UCP_MEM_MAP_ALLOCATE), mlock'd and kept out of forked children,
   * or undefined when `allocateBlocks` is off (or the context's table of such blocks is full). Its
   * release() unmaps it; so does `freeProvidedBlock(address)` from any thread. The context stays
   * until every such block is freed, even past close().
   */
  allocateBlock(length: number): ProvidedBlock | undefined {
    this.assertOpen();
    if (!this.info.allocateBlocks) return undefined;
    if (!Number.isSafeInteger(length) || length <= 0) throw new AllocToolsRangeError(`block length must be a positive integer, got ${length}`);
    if (!this.#shared.retain()) throw this.closedError();
    let reg: UcxRegistration;
    try {
      const mapping = this.ucx.memMap(this.context, 0, length, true);
      try {
        libc.mlock(mapping.address, mapping.length);
        libc.madvise(mapping.address, mapping.length, libc.MADV_DONTFORK);
        reg = this.track(mapping.memh, mapping.address, mapping.length, true);
      } catch (e) {
        try { libc.munlock(mapping.address, mapping.length); } catch { /* was not locked */ }
        this.ucx.memUnmap(this.context, mapping.memh);
        throw e;
      }
      if (!this.#shared.addBlock({ address: reg.address, length: reg.length, memh: reg.handle })) {
        this.live.delete(reg);
        libc.munlock(reg.address, reg.length);
        this.ucx.memUnmap(this.context, reg.handle);
        this.releaseContext();
        return undefined; // the pool maps and registers the block itself
      }
    } catch (e) {
      this.releaseContext();
      throw e;
    }
    return {
      address: reg.address,
      length: reg.length,
      locked: true,
      registration: reg,
      release: () => { this.freeProvidedBlock(reg.address); },
    };
  }

  /**
   * Frees the block allocateBlock supplied at `address`, from any thread of this process (a
   * shared pool's owner frees the blocks its Workers grew): munlock, then `ucp_mem_unmap`, which
   * frees the memory. Returns false when no such block starts there (the pool unmaps its own
   * memory), or it was freed already; each block is freed once, whoever asks.
   */
  freeProvidedBlock(address: number): boolean {
    const record = this.#shared.takeBlock(address);
    if (record === null) return false;
    for (const reg of this.live) {
      if (reg.allocated && reg.address === address) {
        this.live.delete(reg);
        break;
      }
    }
    try {
      libc.munlock(record.address, record.length);
      this.ucx.memUnmap(this.context, record.memh);
    } finally {
      this.releaseContext();
    }
    return true;
  }

  /**
   * A registration read back from a shared pool's table (address, length, memory handle; no key
   * blob) made whole in this thread: its rkey is packed again from the memory handle, which is
   * valid in every thread of the context. Throws PROVIDER_CLOSED once the context is gone.
   */
  restoreRegistration(registration: Registration): Registration {
    if (!this.#shared.retain()) throw this.closedError();
    try {
      const remoteKeyBytes = this.ucx.rkeyPack(this.context, registration.handle);
      const reg: UcxRegistration = {
        address: registration.address, length: registration.length, handle: registration.handle, localKey: BigInt(registration.handle),
        remoteKey: 0n, remoteKeyBytes, allocated: this.#shared.hasBlock(registration.address),
      };
      return reg;
    } finally {
      this.releaseContext();
    }
  }

  /** @internal Objects made on this context (endpoints, pools) that must close before it. */
  adopt(child: ProviderChild): void {
    this.children.add(child);
  }

  /** @internal The child closed itself. */
  disown(child: ProviderChild): void {
    this.children.delete(child);
  }

  /**
   * @internal An endpoint keeps the context alive until its ucp_worker is destroyed, in whichever
   * thread: PROVIDER_CLOSED when the provider (or its owner) is closed.
   */
  retainContext(): void {
    if (this.closed || !this.#shared.retain()) throw this.closedError();
  }

  /** @internal What retainContext() took; the last user, in any thread, cleans the context up. */
  releaseContext(): void {
    if (this.#shared.release()) this.ucx.cleanup(this.context);
  }

  /**
   * Closes endpoints (and pools) made on this object first. The owner then unmaps the
   * registrations of memory the provider did not allocate and gives up its hold on the context:
   * blocks UCX allocated stay mapped until their pool frees them (the pool's views over them must
   * not dangle), and endpoints of Workers keep working until they close; the last of them cleans
   * the context up. A view closes only its own endpoints. Idempotent.
   */
  close(): void {
    if (this.closed_) return;
    this.closed_ = true;
    const errors: unknown[] = [];
    const attempt = (f: () => void) => { try { f(); } catch (e) { errors.push(e); } };
    // Children first: a shared pool closing with its provider attaches a view here to free what
    // Workers registered, so the shared state says "closed" only after them.
    closeChildren(this.children, attempt);
    if (!this.isAttached) {
      this.#shared.markClosed();
      for (const reg of [...this.live]) {
        if (reg.allocated) continue;
        this.live.delete(reg);
        attempt(() => this.ucx.memUnmap(this.context, reg.handle));
        this.releaseContext();
      }
      this.releaseContext();
    }
    if (errors.length > 0) throw errors.length === 1 ? errors[0] : new AggregateError(errors, `closing provider ${this.name}`);
  }

  /** Same as close(). */
  [Symbol.dispose](): void {
    this.close();
  }

  private track(memh: number, address: number, length: number, allocated: boolean): UcxRegistration {
    let remoteKeyBytes: Uint8Array;
    try {
      remoteKeyBytes = this.ucx.rkeyPack(this.context, memh);
    } catch (e) {
      if (!allocated) this.ucx.memUnmap(this.context, memh);
      throw e;
    }
    const reg: UcxRegistration = { address, length, handle: memh, localKey: BigInt(memh), remoteKey: 0n, remoteKeyBytes, allocated };
    if (!this.isAttached || allocated) this.live.add(reg);
    return reg;
  }

  private closedError(): AllocToolsError {
    return new AllocToolsError("PROVIDER_CLOSED", `provider ${this.name} is closed${this.isAttached && this.#shared.closed ? " (its owner closed it)" : ""}`);
  }

  private assertOpen(): void {
    if (this.closed) throw this.closedError();
  }
}

/** UCP_MEM_MAP_PROT_* for the Access flags of a registration: local always, remote as asked. */
function protectionOf(access: number): number {
  let prot = UCX.MEM_MAP_PROT_LOCAL_READ | UCX.MEM_MAP_PROT_LOCAL_WRITE;
  if (access & Access.REMOTE_READ) prot |= UCX.MEM_MAP_PROT_REMOTE_READ;
  if (access & Access.REMOTE_WRITE) prot |= UCX.MEM_MAP_PROT_REMOTE_WRITE;
  return prot;
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v === "" ? undefined : v;
}

function checkOptions(o: UcxProviderOptions): void {
  if (typeof o !== "object" || o === null) throw new AllocToolsTypeError("UcxProvider options must be an object");
  if (o.transports !== undefined && (typeof o.transports !== "string" || !TRANSPORTS_SYNTAX.test(o.transports))) {
    throw new AllocToolsTypeError(`transports must be a UCX_TLS list such as "tcp" or "posix,cma", got ${JSON.stringify(o.transports)}`);
  }
  if (o.netDevices !== undefined && (typeof o.netDevices !== "string" || !/^[A-Za-z0-9_:.,-]+$/.test(o.netDevices))) {
    throw new AllocToolsTypeError(`netDevices must be a UCX_NET_DEVICES list such as "lo" or "eth0", got ${JSON.stringify(o.netDevices)}`);
  }
  if (o.allocateBlocks !== undefined && typeof o.allocateBlocks !== "boolean") throw new AllocToolsTypeError("allocateBlocks must be a boolean");
  if (o.threadShared !== undefined && typeof o.threadShared !== "boolean") throw new AllocToolsTypeError("threadShared must be a boolean");
  if (o.atomics !== undefined && typeof o.atomics !== "boolean") throw new AllocToolsTypeError("atomics must be a boolean");
  if (o.settings !== undefined) {
    if (typeof o.settings !== "object" || o.settings === null) throw new AllocToolsTypeError("settings must be an object of UCX setting names to strings");
    for (const [k, v] of Object.entries(o.settings)) {
      if (!/^[A-Z0-9_]+$/.test(k) || typeof v !== "string") throw new AllocToolsTypeError(`settings.${k} must be a string under an upper-case UCX name without the UCX_ prefix`);
    }
  }
}

// A Worker's MemoryPool.attach reaches this class's attach through the registry, by the handle's kind.
registerProviderAttach(HANDLE_KIND, (handle) => UcxProvider.attach(handle as UcxProviderHandle));
