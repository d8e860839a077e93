// A RegionProvider over a UCX context (ucp_init with the RMA feature). Registration is ucp_mem_map
// of the pool's blocks; the local key is the memory handle, the remote key the packed rkey (a blob,
// RemoteRegion version 2), the remote address the virtual address.
//
// On shared memory UCX is one-sided only for memory it allocated itself (UCP_MEM_MAP_ALLOCATE):
// a peer maps the segment and stores into it. Over our own mmap'd blocks every transport here
// emulates RMA with active messages, which needs the target to progress and is many times slower.
// So where the transports include shared memory the provider supplies the pool's blocks itself
// (allocateBlock); `allocateBlocks: false` measures the other way.
import { UcxError, UCX, ucx, type Ucx } from "../ffi/ucx.ts";
import * as libc from "../ffi/libc.ts";
import { AllocToolsError } from "./errors.ts";
import { Access, type ProvidedBlock, type RegionProvider, type Registration } from "./provider.ts";

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
  /** Further UCX settings, by name without the UCX_ prefix, e.g. `{ RNDV_THRESH: "8k" }`. */
  settings?: Readonly<Record<string, string>>;
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

/** Registers pool memory with a UCX context. */
export class UcxProvider implements RegionProvider {
  /** Always "ucx". */
  readonly kind = "ucx";
  /** UCX addresses remote memory by virtual address. */
  readonly virtualAddressing = true;
  /** What was opened. */
  readonly info: UcxInfo;
  /** @internal The `ucp_context_h`, for UcxEndpoint. */
  readonly context: number;
  /** @internal The loaded library. */
  readonly ucx: Ucx;
  /** Live registrations by object: UCX's registration cache may give two of them one memh. */
  private readonly live = new Set<UcxRegistration>();
  /** Blocks handed out by allocateBlock and not released yet: the context outlives them. */
  private providedBlocks = 0;
  private readonly children = new Set<{ close(): void }>();
  private closed_ = false;
  private contextCleaned = false;

  private constructor(library: Ucx, context: number, info: UcxInfo) {
    this.ucx = library;
    this.context = context;
    this.info = info;
  }

  /**
   * Opens a UCX context for RMA. Throws LibraryLoadError when UCX is missing, TypeError for bad
   * options, UcxError when UCX refuses (UCS_ERR_NO_DEVICE for transports with no device here).
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
      context = library.init(settings);
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
    });
  }

  /** "ucx(tcp)", "ucx(posix,cma)", "ucx(default)". */
  get name(): string {
    return `ucx(${this.info.transports})`;
  }

  /** Whether close() was called. */
  get closed(): boolean {
    return this.closed_;
  }

  /** Live registrations (mapped blocks, allocated ones included). */
  get registrations(): number {
    return this.live.size;
  }

  /** `ucp_mem_map` of [address, address + length) and `ucp_rkey_pack` of it. */
  register(address: number, length: number, access: number): Registration {
    this.assertOpen();
    const mapping = this.ucx.memMap(this.context, address, length, false, protectionOf(access));
    return this.track(mapping.memh, address, length, false);
  }

  /**
   * Releases one registration (`ucp_mem_unmap`). For an allocated block's registration it does
   * nothing: the block's release() unmaps, and with it frees, the memory.
   */
  deregister(registration: Registration): void {
    const reg = registration as UcxRegistration;
    if (!this.live.has(reg) || reg.allocated) return;
    this.live.delete(reg);
    this.ucx.memUnmap(this.context, reg.handle);
  }

  /**
   * A pool block allocated by UCX (UCP_MEM_MAP_ALLOCATE), mlock'd and kept out of forked children,
   * or undefined when `allocateBlocks` is off. Its release() unmaps it; the context stays until
   * every such block is released, even past close().
   */
  allocateBlock(length: number): ProvidedBlock | undefined {
    this.assertOpen();
    if (!this.info.allocateBlocks) return undefined;
    if (!Number.isSafeInteger(length) || length <= 0) throw new RangeError(`block length must be a positive integer, got ${length}`);
    const mapping = this.ucx.memMap(this.context, 0, length, true);
    let reg: UcxRegistration;
    try {
      libc.mlock(mapping.address, mapping.length);
      libc.madvise(mapping.address, mapping.length, libc.MADV_DONTFORK);
      reg = this.track(mapping.memh, mapping.address, mapping.length, true);
    } catch (e) {
      try { libc.munlock(mapping.address, mapping.length); } catch { /* was not locked */ }
      this.ucx.memUnmap(this.context, mapping.memh);
      throw e;
    }
    this.providedBlocks++;
    let released = false;
    return {
      address: mapping.address,
      length: mapping.length,
      locked: true,
      registration: reg,
      release: () => {
        if (released) return;
        released = true;
        this.releaseBlock(reg);
      },
    };
  }

  /** @internal Objects made on this context (endpoints) that must close before it. */
  adopt(child: { close(): void }): void {
    this.children.add(child);
  }

  /** @internal The child closed itself. */
  disown(child: { close(): void }): void {
    this.children.delete(child);
  }

  /**
   * Closes endpoints first, then unmaps the registrations of memory the provider did not allocate,
   * then cleans the context up. Blocks it allocated stay mapped until their pool releases them
   * (the pool's views over them must not dangle); the context is cleaned up after the last one.
   * Idempotent.
   */
  close(): void {
    if (this.closed_) return;
    this.closed_ = true;
    const errors: unknown[] = [];
    const attempt = (f: () => void) => { try { f(); } catch (e) { errors.push(e); } };
    for (const child of [...this.children]) attempt(() => child.close());
    this.children.clear();
    for (const reg of [...this.live]) {
      if (reg.allocated) continue;
      this.live.delete(reg);
      attempt(() => this.ucx.memUnmap(this.context, reg.handle));
    }
    this.cleanupWhenUnused();
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
    this.live.add(reg);
    return reg;
  }

  private releaseBlock(reg: UcxRegistration): void {
    this.live.delete(reg);
    this.providedBlocks--;
    try {
      libc.munlock(reg.address, reg.length);
      this.ucx.memUnmap(this.context, reg.handle);
    } finally {
      if (this.closed_) this.cleanupWhenUnused();
    }
  }

  private cleanupWhenUnused(): void {
    if (this.contextCleaned || this.providedBlocks > 0) return;
    this.contextCleaned = true;
    this.ucx.cleanup(this.context);
  }

  private assertOpen(): void {
    if (this.closed_) throw new AllocToolsError("PROVIDER_CLOSED", `provider ${this.name} is closed`);
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
  if (typeof o !== "object" || o === null) throw new TypeError("UcxProvider options must be an object");
  if (o.transports !== undefined && (typeof o.transports !== "string" || !TRANSPORTS_SYNTAX.test(o.transports))) {
    throw new TypeError(`transports must be a UCX_TLS list such as "tcp" or "posix,cma", got ${JSON.stringify(o.transports)}`);
  }
  if (o.netDevices !== undefined && (typeof o.netDevices !== "string" || !/^[A-Za-z0-9_:.,-]+$/.test(o.netDevices))) {
    throw new TypeError(`netDevices must be a UCX_NET_DEVICES list such as "lo" or "eth0", got ${JSON.stringify(o.netDevices)}`);
  }
  if (o.allocateBlocks !== undefined && typeof o.allocateBlocks !== "boolean") throw new TypeError("allocateBlocks must be a boolean");
  if (o.settings !== undefined) {
    if (typeof o.settings !== "object" || o.settings === null) throw new TypeError("settings must be an object of UCX setting names to strings");
    for (const [k, v] of Object.entries(o.settings)) {
      if (!/^[A-Z0-9_]+$/.test(k) || typeof v !== "string") throw new TypeError(`settings.${k} must be a string under an upper-case UCX name without the UCX_ prefix`);
    }
  }
}
