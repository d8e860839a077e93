// The contract between memory regions and whatever registers memory (libfabric, the host, ...).
// A provider registers and deregisters; MemoryRegionTraits is the one place that calls it.

/** Access flags a registration grants (libfabric's FI_* values). */
export const Access = {
  /** FI_READ: the memory may be the local target of an RMA read (data read from a peer lands here). */
  READ: 0x100,
  /** FI_WRITE: the memory may be the local source of an RMA write. */
  WRITE: 0x200,
  /** FI_RECV: the memory may receive messages. */
  RECV: 0x400,
  /** FI_SEND: the memory may be sent from. */
  SEND: 0x800,
  /** FI_REMOTE_READ: peers may read this memory with RMA. */
  REMOTE_READ: 0x1000,
  /** FI_REMOTE_WRITE: peers may write this memory with RMA. */
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
  /** The remote key (`fi_mr_key`), exact; 0n where the key is a blob (`remoteKeyBytes`). */
  readonly remoteKey: bigint;
  /** The remote key as bytes where it does not fit 64 bits (UCX's packed rkey); absent otherwise. */
  readonly remoteKeyBytes?: Uint8Array;
}

/**
 * What `provider.share()` returns: plain data and SharedArrayBuffers only (structured-cloneable),
 * to post to a Worker of the same process, where the provider's class attaches to it.
 */
export interface ProviderHandle {
  /** Which class attaches to it: "alloctools.HostProvider", "alloctools.LibfabricProvider", "alloctools.UcxProvider". */
  readonly kind: string;
  /** The process it belongs to: native handles mean nothing in another one. */
  readonly pid: number;
  /** The provider's short name (`provider.name`), kept for messages and the attached view's name. */
  readonly name: string;
}

/**
 * A block of memory a provider allocated and registered itself (`allocateBlock`): UCX's
 * `ucp_mem_map` with ALLOCATE, the memory a same-host peer can map and store to directly.
 */
export interface ProvidedBlock {
  /** Start of the block (page aligned). */
  readonly address: number;
  /** Its length in bytes (at least what was asked). */
  readonly length: number;
  /** Whether the block is mlock'd. */
  readonly locked: boolean;
  /** The registration covering the whole block; `deregister` of it leaves the memory to `release`. */
  readonly registration: Registration;
  /** Unregisters and frees the block; idempotent. The memory must not be touched afterwards. */
  release(): void;
}

/**
 * What a region provider must supply. Implementations: HostProvider, LibfabricProvider, UcxProvider, MpiProvider.
 *
 * | member | must | on failure |
 * |---|---|---|
 * | `name`, `kind` | short name ("host", "tcp;ofi_rxm", "shm", "ucx"); "host", "libfabric", "ucx" or "mpi" | |
 * | `virtualAddressing` | true: a peer addresses a region by virtual address; false: by offset from the registration's start | |
 * | `closed` | true once `close()` ran (on a view: once the owner closed or the view detached) | |
 * | `register(address, length, access)` | pin (where the provider pins) and register; keys exact 64-bit; the same range twice gives two registrations with distinct keys | typed error (`SystemError`, `FabricError`, `AllocToolsError` `PROVIDER_CLOSED` / `KEYS_EXHAUSTED`), nothing left registered |
 * | `deregister(registration)` | release exactly one registration; a view also releases registrations another view of the same provider made (the shared pool makes sure each is released once) | typed error; a registration already closed with its provider is ignored |
 * | `close()` | idempotent; children (endpoints) first, then live registrations, then the domain. A view closes only its own children (endpoints): its registrations belong to the shared pool, which releases each once, and the domain to the owner | aggregate of what failed, everything attempted |
 * | `share()` (optional) | a `ProviderHandle` for Workers of this process; the view made from it registers in the same domain with keys unique across views | `AllocToolsError` `PROVIDER_CLOSED` when closed, `NOT_SUPPORTED` when the provider cannot be used from several threads |
 * | `allocateBlock(length)` (optional) | allocate and register a pool block in one step, where memory the provider allocates is faster for peers (UCX on shared memory); undefined lets the pool map and register as usual | typed error, nothing left allocated |
 * | `freeProvidedBlock(address)` (optional; with `allocateBlock` and `share()`) | from any thread (a view too): free the block `allocateBlock` supplied at `address`, once whoever asks; false when none starts there (the pool unmaps its own memory) | typed error |
 * | `keepsFreedMemoryMapped` (optional) | true when a peer holding an old key can still write to memory after its deregistration (UCX: a put emulated by the target's own progress writes to the address, and nothing checks it): pools then free their blocks and temporary regions by mapping fresh zero pages over them, keeping the range mapped for the life of the process, so such a write lands in nothing instead of faulting | |
 * | `restoreRegistration(registration)` (optional) | a registration read back from a shared pool's table (address, length, handle, 64-bit keys) made whole in this thread, e.g. UCX packs its rkey blob again | typed error |
 * | `static attach(handle)` (on the class) | a view in this thread; the module registers it under its handle's kind (`registerProviderAttach` in provider-attach.ts), which is how `MemoryPool.attach` finds it | `NOT_SUPPORTED` for a handle from another process, `PROVIDER_CLOSED` when the provider was closed, `TypeError` for anything else |
 *
 * A provider without `share()` cannot back a pool shared with Workers: `pool.share()` says so with
 * `AllocToolsError` `NOT_SUPPORTED`.
 */
export interface RegionProvider {
  /** Short name: "host", "tcp;ofi_rxm", "shm", ... */
  readonly name: string;
  /** "host", "libfabric", "ucx" or "mpi". */
  readonly kind: "host" | "libfabric" | "ucx" | "mpi";
  /** True: a peer addresses a region by virtual address; false: by offset from the registration's start. */
  readonly virtualAddressing: boolean;
  /** True once `close()` ran (on a view: once the owner closed or the view detached). */
  readonly closed: boolean;
  /**
   * Pins (where the provider pins) and registers [address, address + length) with `access` (Access
   * bits). Throws a typed error and leaves nothing registered on failure (see the table above).
   */
  register(address: number, length: number, access: number): Registration;
  /** Releases exactly this one registration (see the table above for views). Throws a typed error on failure. */
  deregister(registration: Registration): void;
  /** Allocates and registers a block of at least `length` bytes for a pool, or returns undefined (see above). */
  allocateBlock?(length: number): ProvidedBlock | undefined;
  /** Frees the block allocateBlock supplied at `address`, from any thread; false when there is none (see above). */
  freeProvidedBlock?(address: number): boolean;
  /** A registration read back from a shared pool's table, made whole in this thread (see above). */
  restoreRegistration?(registration: Registration): Registration;
  /** Whether freed memory must stay mapped, because peers may write to it after deregistration (see the table above). */
  readonly keepsFreedMemoryMapped?: boolean;
  /** Closes the provider; registrations still live are closed first. Idempotent. */
  close(): void;
  /** A handle a Worker of this process attaches to (see the table above). */
  share?(): ProviderHandle;
}
