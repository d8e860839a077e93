// A RegionProvider over a real libfabric domain. It opens fabric and domain for one provider
// (tcp, shm, verbs, efa, cxi, ...) and honours the mr_mode bits that provider returns. What it asks
// libfabric for is fabric-info.ts's; what happens at the process's exit, fabric-exit.ts's.
import { libfabric, nativeView, readI32, readPtr, readU64, type Libfabric, type MrRegFunction } from "../../ffi/libfabric.ts";
import { FI, L } from "../../ffi/layout.ts";
import { hangUpLikeInterrupt } from "../../ffi/signals.ts";
import { AllocToolsError, AllocToolsTypeError } from "../errors.ts";
import { SharedKeyCounter } from "../memory/key-counter.ts";
import { inspectCustom, oneLine } from "../inspect.ts";
import {
  checkOptions, describe, getInfoWithCapabilities, LIBFABRIC_OPTION_KEYS, withoutShmNode, readProvName,
  type LibfabricInfo, type LibfabricProviderOptions,
} from "./fabric-info.ts";
import { closeAtExit, forgetAtExit } from "./fabric-exit.ts";
import type { Access, ProviderHandle, RegionProvider, Registration } from "../memory/provider.ts";
import { registerProviderAttach } from "../memory/provider-attach.ts";
import { existingProcessEndpoints } from "./process-endpoints.ts";
import { closeChildren } from "../memory/provider-child.ts";
import { argument } from "../engine/operation.ts";

export {
  LIBFABRIC_OPTION_KEYS, libfabricProviderNames, SUPPORTED_MR_MODE,
  type EndpointType, type LibfabricInfo, type LibfabricProviderOptions, type Threading,
} from "./fabric-info.ts";

/** libfabric loaded from here (its providers' SIGHUP handler is recognized by its library). */
const LIBFABRIC_FILE = /\/libfabric\.so/;

/** Requested keys taken from the shared counter at a time. */
const KEY_BATCH = 64n;
/** Keys up to here are exact as numbers. */
const EXACT_KEYS = BigInt(Number.MAX_SAFE_INTEGER);


/**
 * What `LibfabricProvider#share()` returns: the domain's native handles (valid in every thread of
 * this process), its description and the shared key counter.
 */
export interface LibfabricProviderHandle extends ProviderHandle {
  readonly kind: "alloctools.LibfabricProvider";
  /** The owner's description of the domain (`provider.info`). */
  readonly info: LibfabricInfo;
  /** The owner's native handles, as addresses; the owner frees them when it closes. */
  readonly handles: {
    /** The `struct fi_info *` the domain was opened with. */
    readonly info: number;
    /** The `struct fid_fabric *`. */
    readonly fabric: number;
    /** The `struct fid_domain *` registrations are made in. */
    readonly domain: number;
  };
  /** The requested-key counter (and closed flag), shared by every view so that keys stay unique. */
  readonly keys: SharedArrayBuffer;
  /** One past the largest requested key the domain takes (2^(8 × key size), or 2^64). */
  readonly keyLimit: bigint;
  /** Endpoint registrations are bound to under FI_MR_ENDPOINT when shared, 0 for none. */
  readonly endpoint: number;
}

const HANDLE_KIND = "alloctools.LibfabricProvider";

/** What makes a LibfabricProvider a view of another thread's (module-private: only attach() makes one). */
class LibfabricView {
  constructor(readonly handle: LibfabricProviderHandle, readonly keys: SharedKeyCounter) {}
}

/**
 * A {@link RegionProvider} over a real libfabric domain: it opens fabric and domain for one
 * provider (tcp, shm, udp, sockets, verbs, efa, cxi, ...) and honours every mr_mode bit that
 * provider returns (requested or provider keys, virtual or offset addressing, FI_MR_ENDPOINT).
 *
 * Lifetime: open with {@link LibfabricProvider.open} (or {@link openProvider}); `close()` (or
 * `using`) closes endpoints made on it, then every registration, then domain and fabric. Close it
 * after the pools on it. Providers still open at process exit are closed then.
 *
 * Hot path: nothing here is called per message. `register`/`deregister` are libfabric calls
 * (`fi_mr_reg`, `fi_close`): pools call them only when they grow or close.
 */
export class LibfabricProvider implements RegionProvider {
  /** `"libfabric"`. */
  readonly kind = "libfabric";
  /** What libfabric opened: provider, fabric, domain, mr_mode, key size, ... */
  readonly info: LibfabricInfo;
  /** Whether peers address regions by virtual address (FI_MR_VIRT_ADDR) or by offset in the registration. */
  readonly virtualAddressing: boolean;
  /** Whether the provider supplies keys (FI_MR_PROV_KEY); otherwise we request unique ones. */
  readonly providerKeys: boolean;
  /** Whether registrations must be bound to an endpoint (FI_MR_ENDPOINT). */
  readonly endpointBound: boolean;
  /** Raw handles for the FFI layer and Endpoint: `struct fi_info *`, `fid_fabric *`, `fid_domain *`. */
  readonly handles: {
    /** `struct fi_info *` of the opened provider (owned: freed on close). */
    readonly info: number;
    /** `struct fid_fabric *`. */
    readonly fabric: number;
    /** `struct fid_domain *`. */
    readonly domain: number;
  };
  private readonly fi: Libfabric;
  /** Requested keys, in shared memory: views in Workers register from them too. */
  readonly #keys: SharedKeyCounter;
  /** One past the largest requested key the domain takes. */
  readonly #keyLimit: bigint;
  /** Whether this is a Worker's view (LibfabricProvider.attach) of another thread's domain. */
  readonly isAttached: boolean;
  /** Live registrations made by this (owning) provider; each knows its slot, so deregister removes it without a lookup. */
  private readonly live: FabricRegistration[] = [];
  /** `handles.domain`, as a plain field for register(). */
  private readonly domain: number;
  /** The domain's fi_mr_reg, resolved once (its mr ops are set by fi_domain). */
  private readonly registerFunction: MrRegFunction;
  /** KEYS_EXHAUSTED's message, made once (register() builds no string per call). */
  private readonly keysExhausted: string;
  /** This thread's batch of requested keys: [next, end). Keys are never reused, even after deregister. */
  private keyBatchNext = 0;
  private keyBatchEnd = 0;
  /** The same past 2^53, as BigInts. */
  private bigKeyNext = 0n;
  private bigKeyEnd = 0n;
  /** Endpoint registrations are bound to (FI_MR_ENDPOINT); 0 until attachEndpoint. */
  private endpoint = 0;
  private readonly children = new Set<{ close(): void }>();
  private closed_ = false;
  /** The owner's domain and fabric are open (a close may leave them to a later close: see closeDomain). */
  private domainOpen = true;

  private constructor(fi: Libfabric, info: number, fabric: number, domain: number, options: LibfabricProviderOptions, view: LibfabricView | null = null) {
    this.fi = fi;
    this.handles = view?.handle.handles ?? { info, fabric, domain };
    this.info = view?.handle.info ?? describe(fi, info);
    const mode = this.info.mrMode;
    this.virtualAddressing = (mode & FI.MR_VIRT_ADDR) !== 0;
    this.providerKeys = (mode & FI.MR_PROV_KEY) !== 0;
    this.endpointBound = (mode & FI.MR_ENDPOINT) !== 0;
    this.#keys = view?.keys ?? new SharedKeyCounter(options.firstKey ?? 1n);
    const keyBits = BigInt(Math.min(this.info.keySize, 8) * 8);
    this.#keyLimit = this.info.keySize === 0 ? 1n << 64n : 1n << keyBits;
    this.domain = this.handles.domain;
    this.registerFunction = fi.mrRegFunction(this.domain);
    this.keysExhausted = `provider ${this.info.provider}: requested keys exhausted (${this.info.keySize}-byte keys)`;
    this.isAttached = view !== null;
    if (view !== null) this.endpoint = view.handle.endpoint;
  }

  /**
   * A handle for Workers of this process: `LibfabricProvider.attach(handle)` there gives a provider
   * over the same fabric and domain (registrations with keys unique across threads, endpoints of
   * the Worker's own). Needs a domain opened with FI_THREAD_SAFE (the default `threading`):
   * NOT_SUPPORTED otherwise, since Workers would call into the domain at the same time.
   */
  share(): LibfabricProviderHandle {
    if (this.closed) throw new AllocToolsError("PROVIDER_CLOSED", `provider ${this.name} is closed`);
    if (this.info.threading !== "safe") {
      throw new AllocToolsError("NOT_SUPPORTED",
        `provider ${this.name} was opened with threading "${String(this.info.threading)}"; sharing it with Workers needs "safe" (FI_THREAD_SAFE), ` +
        `since they register and post on the domain at the same time`);
    }
    return {
      kind: HANDLE_KIND, pid: process.pid, name: this.name, info: this.info, handles: this.handles,
      keys: this.#keys.buffer, keyLimit: this.#keyLimit, endpoint: this.endpointBound ? this.endpoint : 0,
    };
  }

  /**
   * A view, in this Worker, of the provider `handle` came from: the same fabric and domain, so
   * `new Endpoint(view)` opens this Worker's own endpoint, CQ and AV on that domain. The view keeps
   * no list of registrations (the shared pool releases each once), and its close() closes only its
   * own endpoints; the domain stays the owner's.
   */
  static attach(handle: LibfabricProviderHandle): LibfabricProvider {
    if (handle === null || typeof handle !== "object" || handle.kind !== HANDLE_KIND || !(handle.keys instanceof SharedArrayBuffer)
        || typeof handle.handles?.domain !== "number" || typeof handle.info?.provider !== "string") {
      throw new AllocToolsTypeError("LibfabricProvider.attach takes the handle a LibfabricProvider's share() returned");
    }
    if (handle.pid !== process.pid) {
      throw new AllocToolsError("NOT_SUPPORTED",
        `the provider handle comes from process ${handle.pid}; its domain exists only there (this is process ${process.pid}): open a provider in this process`);
    }
    const keys = new SharedKeyCounter(handle.keys);
    if (keys.closed) throw new AllocToolsError("PROVIDER_CLOSED", `provider ${handle.name} is closed (its owner closed it)`);
    return new LibfabricProvider(libfabric(), 0, 0, 0, {}, new LibfabricView(handle, keys));
  }

  /** Whether `other` registers in the same domain as this provider (a view of it, or the owner). */
  sharesDomainWith(other: unknown): boolean {
    return other instanceof LibfabricProvider && other.handles.domain === this.handles.domain;
  }

  /** Opens fabric and domain. Throws LibraryLoadError when libfabric is missing, FabricError when no provider matches. */
  static open(options: LibfabricProviderOptions = {}): LibfabricProvider {
    checkOptions(options, LIBFABRIC_OPTION_KEYS, "LibfabricProvider.open options");
    options = withoutShmNode(options);
    const fi = libfabric();
    const hints = fi.allocInfo();
    let info = 0;
    let fabric = 0;
    let domain = 0;
    try {
      const list = getInfoWithCapabilities(fi, hints, options);
      // Keep the first match only: a private copy we can free on close.
      info = list;
      const next = readPtr(list, L.fi_info.next);
      if (next !== 0) {
        nativeView(list, 8).setBigUint64(L.fi_info.next, 0n, true);
        fi.freeInfo(next);
      }
      const mode = readI32(readPtr(info, L.fi_info.domain_attr), L.fi_domain_attr.mr_mode);
      if (mode & FI.MR_RAW) {
        throw new AllocToolsError("NOT_SUPPORTED", `provider ${readProvName(info)} needs FI_MR_RAW keys (wider than 64 bits), which alloctools does not support`);
      }
      fabric = fi.fabric(info);
      domain = fi.domain(fabric, info);
      const provider = new LibfabricProvider(fi, info, fabric, domain, options);
      closeAtExit(provider);
      return provider;
    } catch (e) {
      if (domain) fi.close(domain, "domain");
      if (fabric) fi.close(fabric, "fabric");
      fi.freeInfo(info);
      throw e;
    } finally {
      fi.freeInfo(hints);
    }
  }

  get name(): string {
    return this.info.provider;
  }

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.closed_ || (this.isAttached && this.#keys.closed);
  }

  /** Live registrations on this domain. */
  get registrations(): number {
    return this.live.length;
  }

  /**
   * `fi_mr_reg` (+ `fi_mr_bind`/`fi_mr_enable` under FI_MR_ENDPOINT). The success path builds no
   * string and looks nothing up by name: what an error needs is made when it is thrown.
   * @param access {@link Access} flags.
   * @throws {@link AllocToolsError} `PROVIDER_CLOSED` or `KEYS_EXHAUSTED`; {@link FabricError} from libfabric.
   */
  register(address: number, length: number, access: number): Registration {
    if (this.closed_ || (this.isAttached && this.#keys.closed)) throw new AllocToolsError("PROVIDER_CLOSED", `provider ${this.name} is closed`);
    const requested = this.providerKeys ? 0 : this.nextRequestedKey();
    const fi = this.fi;
    const mr = fi.mrRegWith(this.registerFunction, this.domain, address, length, access, requested);
    if (this.endpointBound && this.endpoint !== 0) {
      try {
        this.bindToEndpoint(mr);
      } catch (e) {
        fi.closeMr(mr);
        throw e;
      }
    }
    if (this.isAttached) {
      // The owner frees a view's registrations when it closes, without telling the view: read
      // the keys now, while the fid_mr is certainly alive.
      const reg = new FabricRegistration(address, length, mr, -1);
      reg.readKeys();
      return reg;
    }
    const reg = new FabricRegistration(address, length, mr, this.live.length);
    this.live.push(reg);
    return reg;
  }

  /**
   * The next requested key, from a batch taken from the shared counter (one CAS per batch). A
   * number while keys are exact in a double (no BigInt made or passed per call), else a BigInt.
   */
  private nextRequestedKey(): number | bigint {
    if (this.keyBatchNext < this.keyBatchEnd) return this.keyBatchNext++;
    if (this.bigKeyNext < this.bigKeyEnd) return this.bigKeyNext++;
    const range = this.#keys.takeRange(KEY_BATCH, this.#keyLimit, this.keysExhausted);
    if (range.end <= EXACT_KEYS) {
      this.keyBatchNext = Number(range.first);
      this.keyBatchEnd = Number(range.end);
      return this.keyBatchNext++;
    }
    this.bigKeyNext = range.first;
    this.bigKeyEnd = range.end;
    return this.bigKeyNext++;
  }

  /** `fi_close` of a registration; a no-op for one the provider's close() already closed. */
  deregister(registration: Registration): void {
    if (this.isAttached || !(registration instanceof FabricRegistration)) {
      // A view's registrations (and blocks other Workers grew) belong to the shared pool, which
      // releases each one once; after the owner closed the domain they are gone with it.
      if (this.isAttached && this.#keys.closed) return;
      this.fi.closeMr(registration.handle);
      if (registration instanceof FabricRegistration) registration.slot = CLOSED;
      return;
    }
    const live = this.live;
    const slot = registration.slot;
    if (live[slot] !== registration) return; // closed with the provider already
    const last = live.pop()!;
    if (last !== registration) {
      live[slot] = last;
      last.slot = slot;
    }
    registration.slot = CLOSED;
    this.fi.closeMr(registration.handle);
  }

  /**
   * FI_MR_ENDPOINT: binds every registration, present and future, to `ep` and enables it.
   * Called by Endpoint; harmless where the provider does not need it. Also where SIGHUP learns to
   * unlink shm's files: shm installs its cleanup on SIGINT and SIGTERM at its first endpoint.
   */
  attachEndpoint(ep: number): void {
    hangUpLikeInterrupt(LIBFABRIC_FILE);
    if (!this.endpointBound) return;
    if (this.isAttached || (this.endpoint !== 0 && this.endpoint !== ep)) {
      throw new AllocToolsError("NOT_SUPPORTED", `provider ${this.name} binds registrations to one endpoint (FI_MR_ENDPOINT); open one provider per endpoint`);
    }
    this.endpoint = ep;
    for (const reg of this.live.values()) this.bindToEndpoint(reg.handle);
  }

  /** The endpoint `ep` is closing: registrations made from now on are not bound to it. */
  detachEndpoint(ep: number): void {
    if (this.endpoint === ep) this.endpoint = 0;
  }

  /** Objects opened on this domain (endpoints, pools) that must close before it, newest first. */
  adopt(child: { close(): void }): void {
    this.children.add(child);
  }
  /** `child` closed on its own: the provider no longer closes it. */
  disown(child: { close(): void }): void {
    this.children.delete(child);
  }

  private bindToEndpoint(mr: number): void {
    this.fi.bind(mr, this.endpoint, 0, "fi_mr_bind");
    this.fi.enable(mr, "fi_mr_enable");
  }

  /** Closes children first: endpoints, then registrations, then domain, fabric and info. Idempotent. */
  close(): void {
    if (this.closed_) {
      if (this.domainOpen) this.closeDomain([]); // a close that found other threads' endpoints open: try again
      return;
    }
    this.closed_ = true;
    forgetAtExit(this);
    const errors: unknown[] = [];
    const attempt = (f: () => void) => { try { f(); } catch (e) { errors.push(e); } };
    closeChildren(this.children, attempt);
    if (this.isAttached) {
      if (errors.length > 0) throw errors.length === 1 ? errors[0] : new AggregateError(errors, `closing the view of provider ${this.name}`);
      return;
    }
    this.#keys.markClosed();
    for (const reg of this.live.values()) {
      reg.slot = CLOSED;
      attempt(() => this.fi.closeMr(reg.handle));
    }
    this.live.length = 0;
    this.closeDomain(errors);
  }

  /**
   * Closes what other threads left on the domain, then the domain and the fabric, unless endpoints
   * of live threads are still open on it: then one error says so, and a later close() tries again.
   * Throws `errors` and what failed here.
   */
  private closeDomain(errors: unknown[]): void {
    const attempt = (f: () => void) => { try { f(); } catch (e) { errors.push(e); } };
    this.closeEndpointsLeftBehind(attempt);
    const elsewhere = this.endpointsElsewhere();
    if (elsewhere !== null) {
      errors.push(elsewhere); // one error for one cause: the domain and the fabric would both say EBUSY
    } else if (this.domainOpen) {
      this.domainOpen = false;
      attempt(() => this.fi.close(this.handles.domain, "domain"));
      attempt(() => this.fi.close(this.handles.fabric, "fabric"));
      this.fi.freeInfo(this.handles.info);
    }
    if (errors.length > 0) throw errors.length === 1 ? errors[0] : new AggregateError(errors, `closing provider ${this.name}`);
  }

  /**
   * Endpoints of this domain left behind: those of Workers that ended without closing them (their
   * thread is gone: nothing progresses them any more), and those kept open at their close
   * (process-endpoints.ts) once no endpoint of the process is open. Closed here, children first.
   */
  private closeEndpointsLeftBehind(attempt: (f: () => void) => void): void {
    const table = existingProcessEndpoints();
    if (table === null) return;
    const domain = this.handles.domain;
    const leftBehind = table.takeOrphans(domain);
    if (!table.anyOpen()) leftBehind.push(...table.takeKept(domain));
    for (const handles of leftBehind) {
      attempt(() => this.fi.close(handles.endpoint, "endpoint"));
      attempt(() => this.fi.close(handles.completionQueue, "cq"));
      attempt(() => this.fi.close(handles.addressVector, "av"));
    }
  }

  /**
   * Why the domain cannot close yet: endpoints other Workers (still running) opened on it. One
   * error naming them and what to do, instead of libfabric's EBUSY for the domain and the fabric.
   */
  private endpointsElsewhere(): AllocToolsError | null {
    const threads = existingProcessEndpoints()?.openElsewhere(this.handles.domain) ?? [];
    if (threads.length === 0) return null;
    const named = [...new Set(threads)].map((thread) => (thread === 0 ? "the main thread" : `Worker threadId ${thread}`)).join(", ");
    return new AllocToolsError("BUSY",
      `provider ${this.name}: ${threads.length} endpoint(s) opened on its domain by other threads are still open (${named}): ` +
        "close each in its own thread (endpoint.close() before the Worker ends; a terminated Worker's are closed here), then close the provider again. " +
        "Everything else is closed; the domain and fabric stay open until then");
  }

  /** `close()`: `using provider = LibfabricProvider.open(...)`. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** One line for console.log: provider, mr_mode, live registrations, closed. */
  [inspectCustom](): string {
    return oneLine("LibfabricProvider", {
      provider: this.info.provider, mrMode: this.info.mrModeNames.join("|") || "0", registrations: this.live.length, closed: this.closed_,
    });
  }

  /** libfabric's own description of the opened fi_info (fi_tostr). */
  describe(): string {
    return this.fi.infoToString(this.handles.info);
  }
}

/** A registration's descriptor as fi_write/fi_read and the message calls take it: cached on this provider's registrations. */
export function descriptorArgument(registration: Registration): number | bigint {
  return registration instanceof FabricRegistration ? registration.localKeyArgument : argument(registration.localKey);
}

/** FabricRegistration#slot once its fid_mr is closed (freed). */
const CLOSED = -2;

/**
 * A libfabric registration. Descriptor and key are read from the `fid_mr` when first asked for
 * (pools ask at region creation; a register+deregister pair that never asks pays no read) with
 * one read.u64 each (cheaper in Bun 1.4 than two u32 halves joined as BigInts), and kept. The
 * `fid_mr` is freed at deregister: a value not read by then is never read (the getter throws).
 */
class FabricRegistration implements Registration {
  private desc: bigint | null = null;
  private key: bigint | null = null;
  /** `localKey` as bun:ffi takes a u64 (a number when exact), worked out on first use. */
  private descArgument: number | bigint | null = null;

  /**
   * @param slot its index in the provider's list of live registrations; -1 for a view's (no
   *   list), CLOSED once deregistered or closed with the provider
   */
  constructor(readonly address: number, readonly length: number, readonly handle: number, public slot: number) {}

  /** `fi_mr_desc(mr)`, exact. Throws AllocToolsTypeError when deregistered before it was read. */
  get localKey(): bigint {
    return this.desc ?? (this.desc = readU64(this.live("localKey"), L.fid_mr.mem_desc));
  }

  /** `localKey` as an operation passes it to libfabric: converted from the bigint once, not per operation. */
  get localKeyArgument(): number | bigint {
    return this.descArgument ?? (this.descArgument = argument(this.localKey));
  }

  /** `fi_mr_key(mr)`, exact. Throws AllocToolsTypeError when deregistered before it was read. */
  get remoteKey(): bigint {
    return this.key ?? (this.key = readU64(this.live("remoteKey"), L.fid_mr.key));
  }

  /** Reads descriptor and key now (a view's registrations, which the owner may free unannounced). */
  readKeys(): void {
    void this.localKey;
    void this.remoteKey;
  }

  /** The fid_mr, while it is registered. */
  private live(what: string): number {
    if (this.slot === CLOSED) {
      throw new AllocToolsTypeError(`the registration of ${this.length} bytes at 0x${this.address.toString(16)} was deregistered ` +
        `before its ${what} was read: read it while registered`);
    }
    return this.handle;
  }
}


// A Worker's MemoryPool.attach reaches this class's attach through the registry, by the handle's kind.
registerProviderAttach(HANDLE_KIND, (handle) => LibfabricProvider.attach(handle as LibfabricProviderHandle));
