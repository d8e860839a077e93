// The embedded provider for machines without libfabric: it pins with mlock, hands out unique
// 64-bit keys and addresses by virtual address. Nothing leaves the process, but every pool
// feature (growth, limits, statistics, keys) behaves as it does on a fabric.
import { AllocToolsError, AllocToolsTypeError, AllocToolsRangeError } from "../errors.ts";
import { inspectCustom, oneLine } from "../inspect.ts";
import { SharedKeyCounter } from "../memory/key-counter.ts";
import { pinPages, unpinPages } from "../memory/page-pins.ts";
import type { ProviderHandle, RegionProvider, Registration } from "../memory/provider.ts";
import { registerProviderAttach } from "../memory/provider-attach.ts";
import { closeChildren, type ProviderChild } from "../memory/provider-child.ts";

/** Options of `new HostProvider(options)`; unknown keys are not checked here (openProvider checks its own). */
export interface HostProviderOptions {
  /** The first key handed out (default 1). Keys are unique per provider. */
  firstKey?: bigint;
  /** Why the host provider is in use (set by openProvider when libfabric was not available). */
  reason?: string;
}

/** What `HostProvider#share()` returns: the key counter, in shared memory. */
export interface HostProviderHandle extends ProviderHandle {
  readonly kind: "alloctools.HostProvider";
  /** The provider's key counter (and its closed flag), shared by every view. */
  readonly keys: SharedArrayBuffer;
}

const HANDLE_KIND = "alloctools.HostProvider";
const KEY_LIMIT = 1n << 64n;

/** Set by HostProvider.attach for the one constructor call it makes: the view's shared key counter. */
let attachingKeys: SharedKeyCounter | null = null;

/**
 * A region provider inside this process, for machines without libfabric or UCX (and for tests):
 * `register` pins the pages with mlock and hands out a unique 64-bit key, used as both the local
 * and the remote key; peers would address regions by virtual address. Nothing leaves the process,
 * but pools over it grow, limit, count and key as they do on a fabric.
 *
 * Lifetime: open from construction until `close()` (or `using`), which closes the pools made over
 * it first, then deregisters what is left; idempotent. `share()` gives Workers a view
 * (`HostProvider.attach`) drawing keys from the same counter; a view's close only detaches.
 *
 * Hot path: pools call it only when they grow or register temporary and user regions; `register`
 * and `deregister` each make an mlock/munlock system call (page-counted) and allocate the
 * Registration.
 */
export class HostProvider implements RegionProvider {
  /** Always `"host"`. */
  readonly name = "host";
  /** Always `"host"`. */
  readonly kind = "host";
  /** Always true: a region is addressed by its virtual address. */
  readonly virtualAddressing = true;
  /** Why this provider was chosen, when openProvider fell back to it. */
  readonly reason: string | undefined;
  /** Whether this is a Worker's view (HostProvider.attach) of another thread's provider. */
  readonly isAttached: boolean;
  /** Keys come from shared memory: views in Workers draw from the same counter. */
  readonly #keys: SharedKeyCounter;
  readonly #live = new Map<number, Registration>();
  #nextHandle = 1;
  #closed = false;
  /** Pools opened over this provider, closed (newest first) before it closes. */
  readonly #children = new Set<ProviderChild>();

  /**
   * An open provider with its own key counter starting at `firstKey` (default 1n). Throws
   * RangeError when `firstKey` is not a bigint in [0, 2^64).
   */
  constructor(options: HostProviderOptions = {}) {
    const viewKeys = attachingKeys;
    attachingKeys = null;
    if (viewKeys !== null) {
      this.#keys = viewKeys;
      this.reason = undefined;
      this.isAttached = true;
      return;
    }
    const first = options.firstKey ?? 1n;
    if (typeof first !== "bigint" || first < 0n || first >= KEY_LIMIT) throw new AllocToolsRangeError(`firstKey must be a 64-bit bigint, got ${String(first)}`);
    this.#keys = new SharedKeyCounter(first);
    this.reason = options.reason;
    this.isAttached = false;
  }

  /**
   * A view, in this Worker, of the provider `handle` came from (`provider.share()`): it registers
   * with keys from the same counter. It keeps no list of registrations (the shared pool does) and
   * its close() only detaches.
   */
  static attach(handle: HostProviderHandle): HostProvider {
    if (handle === null || typeof handle !== "object" || handle.kind !== HANDLE_KIND || !(handle.keys instanceof SharedArrayBuffer)) {
      throw new AllocToolsTypeError("HostProvider.attach takes the handle a HostProvider's share() returned");
    }
    if (handle.pid !== process.pid) {
      throw new AllocToolsError("NOT_SUPPORTED", `the host provider handle comes from process ${handle.pid}; a handle attaches only in Workers of the process that shared it (${process.pid})`);
    }
    const keys = new SharedKeyCounter(handle.keys);
    if (keys.closed) throw new AllocToolsError("PROVIDER_CLOSED", "the shared host provider is closed");
    attachingKeys = keys;
    try {
      return new HostProvider();
    } finally {
      attachingKeys = null;
    }
  }

  /** True once `close()` ran; a view also once the owner closed. */
  get closed(): boolean {
    return this.#closed || (this.isAttached && this.#keys.closed);
  }

  /** Number of live registrations (made by this object; a view counts none). */
  get registrations(): number {
    return this.#live.size;
  }

  /**
   * Pins [address, address + length) (mlock, counted per page so overlapping ranges stay pinned)
   * and returns a registration with a fresh key. `access` is ignored: host memory is all
   * accessible. Throws PROVIDER_CLOSED when closed, KEYS_EXHAUSTED after 2^64 keys, SystemError
   * when mlock fails (e.g. ENOMEM over RLIMIT_MEMLOCK); nothing stays pinned after a throw.
   */
  register(address: number, length: number, _access: number): Registration {
    if (this.closed) throw new AllocToolsError("PROVIDER_CLOSED", "host provider is closed");
    const key = this.#keys.take(KEY_LIMIT, "host provider has used every 64-bit key");
    pinPages(address, length);
    const reg: Registration = { address, length, handle: this.#nextHandle++, localKey: key, remoteKey: key };
    if (!this.isAttached) this.#live.set(reg.handle, reg);
    return reg;
  }

  /**
   * Unpins the registration's pages (each page stays pinned while another registration covers it).
   * A registration already released by `close()` is ignored. Throws SystemError when munlock fails.
   */
  deregister(registration: Registration): void {
    if (!this.isAttached && !this.#live.delete(registration.handle)) return; // already gone (closed provider)
    unpinPages(registration.address, registration.length);
  }

  /** A handle for `HostProvider.attach` in a Worker of this process. Throws PROVIDER_CLOSED when closed. */
  share(): HostProviderHandle {
    if (this.closed) throw new AllocToolsError("PROVIDER_CLOSED", "host provider is closed");
    return { kind: HANDLE_KIND, pid: process.pid, name: this.name, keys: this.#keys.buffer };
  }

  /** @internal Pools opened over this provider, closed (newest first) before it closes. */
  adopt(child: ProviderChild): void {
    this.#children.add(child);
  }
  /** @internal The child closed on its own. */
  disown(child: ProviderChild): void {
    this.#children.delete(child);
  }

  /**
   * Closes the pools opened over it (newest first: a pool refuses further use with
   * PROVIDER_CLOSED), then every registration left. Idempotent. Throws what a pool's close threw
   * (BUSY while RMA is in flight) after closing everything else. A Worker's view only detaches.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.isAttached) this.#keys.markClosed();
    const errors: unknown[] = [];
    closeChildren(this.#children, (close) => { try { close(); } catch (error) { errors.push(error); } });
    for (const reg of [...this.#live.values()]) this.deregister(reg);
    if (errors.length > 0) throw errors.length === 1 ? errors[0] : new AggregateError(errors, "closing the host provider");
  }

  /** `using provider = new HostProvider()`: the same as `close()`. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** One line for console.log: live registrations, closed, and why it was chosen. */
  [inspectCustom](): string {
    return oneLine("HostProvider", { registrations: this.registrations, closed: this.closed, ...(this.reason === undefined ? {} : { reason: JSON.stringify(this.reason) }) });
  }
}

// A Worker's MemoryPool.attach reaches this class's attach through the registry, by the handle's kind.
registerProviderAttach(HANDLE_KIND, (handle) => HostProvider.attach(handle as HostProviderHandle));
