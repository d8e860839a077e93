// The contract between memory regions and whatever registers memory (libfabric, the host, ...).
// A provider registers and deregisters; MemoryRegionTraits is the one place that calls it.

/** Access flags a registration grants (libfabric's FI_* values). */
export const Access = {
  READ: 0x100,
  WRITE: 0x200,
  RECV: 0x400,
  SEND: 0x800,
  REMOTE_READ: 0x1000,
  REMOTE_WRITE: 0x2000,
} as const;

/** The original's default: read, write, send, receive, remote read, remote write. */
export const DEFAULT_ACCESS =
  Access.READ | Access.WRITE | Access.SEND | Access.RECV | Access.REMOTE_READ | Access.REMOTE_WRITE;

/** One registration of [address, address + length). Keys are exact 64-bit values. */
export interface Registration {
  /** Start of the registered range. */
  readonly address: number;
  /** Length of the registered range in bytes. */
  readonly length: number;
  /** The provider's handle (a `struct fid_mr *` for libfabric; an id for the host provider). */
  readonly handle: number;
  /** The local descriptor (`fi_mr_desc`), exact. */
  readonly localKey: bigint;
  /** The remote key (`fi_mr_key`), exact. */
  readonly remoteKey: bigint;
}

/**
 * What `provider.share()` returns: plain data and SharedArrayBuffers only (structured-cloneable),
 * to post to a Worker of the same process, where the provider's class attaches to it.
 */
export interface ProviderHandle {
  /** Which class attaches to it: "alloctools.HostProvider", "alloctools.LibfabricProvider". */
  readonly kind: string;
  /** The process it belongs to: native handles mean nothing in another one. */
  readonly pid: number;
  readonly name: string;
}

/**
 * What a region provider must supply. Implementations: HostProvider, LibfabricProvider.
 *
 * | member | must | on failure |
 * |---|---|---|
 * | `name`, `kind` | short name ("host", "tcp;ofi_rxm", "shm"); "host" or "libfabric" | |
 * | `virtualAddressing` | true: a peer addresses a region by virtual address; false: by offset from the registration's start | |
 * | `closed` | true once `close()` ran (on a view: once the owner closed or the view detached) | |
 * | `register(address, length, access)` | pin (where the provider pins) and register; keys exact 64-bit; the same range twice gives two registrations with distinct keys | typed error (`SystemError`, `FabricError`, `AllocToolsError` `PROVIDER_CLOSED` / `KEYS_EXHAUSTED`), nothing left registered |
 * | `deregister(registration)` | release exactly one registration; a view also releases registrations another view of the same provider made (the shared pool makes sure each is released once) | typed error; a registration already closed with its provider is ignored |
 * | `close()` | idempotent; children (endpoints) first, then live registrations, then the domain. A view closes only its own children (endpoints): its registrations belong to the shared pool, which releases each once, and the domain to the owner | aggregate of what failed, everything attempted |
 * | `share()` (optional) | a `ProviderHandle` for Workers of this process; the view made from it registers in the same domain with keys unique across views | `AllocToolsError` `PROVIDER_CLOSED` when closed, `NOT_SUPPORTED` when the provider cannot be used from several threads |
 * | `static attach(handle)` (on the class) | a view in this thread | `NOT_SUPPORTED` for a handle from another process, `PROVIDER_CLOSED` when the provider was closed, `TypeError` for anything else |
 *
 * A provider without `share()` cannot back a pool shared with Workers: `pool.share()` says so with
 * `AllocToolsError` `NOT_SUPPORTED`.
 */
export interface RegionProvider {
  /** Short name: "host", "tcp;ofi_rxm", "shm", ... */
  readonly name: string;
  /** "host" or "libfabric". */
  readonly kind: "host" | "libfabric";
  readonly virtualAddressing: boolean;
  readonly closed: boolean;
  register(address: number, length: number, access: number): Registration;
  deregister(registration: Registration): void;
  /** Closes the provider; registrations still live are closed first. Idempotent. */
  close(): void;
  /** A handle a Worker of this process attaches to (see the table above). */
  share?(): ProviderHandle;
}
