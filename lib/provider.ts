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
  /** The remote key (`fi_mr_key`), exact; 0n where the key is a blob (`remoteKeyBytes`). */
  readonly remoteKey: bigint;
  /** The remote key as bytes where it does not fit 64 bits (UCX's packed rkey); absent otherwise. */
  readonly remoteKeyBytes?: Uint8Array;
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
 * What a region provider must do. Implementations: HostProvider, LibfabricProvider, UcxProvider.
 * - `register` pins (where the provider pins) and registers; it throws a typed error and leaves
 *   nothing registered when it fails.
 * - `deregister` releases exactly one registration; registering the same range twice is allowed
 *   and gives two registrations with distinct keys.
 * - `virtualAddressing` says what a peer uses as the remote address: the virtual address (true),
 *   or the byte offset from the registration's start (false).
 * - `allocateBlock` (optional): the provider supplies the pool's blocks itself, allocated and
 *   registered in one step, where memory it allocates is faster for peers (UCX on shared memory).
 *   It returns undefined to let the pool map and register the block as usual.
 */
export interface RegionProvider {
  /** Short name: "host", "tcp;ofi_rxm", "shm", ... */
  readonly name: string;
  /** "host", "libfabric" or "ucx". */
  readonly kind: "host" | "libfabric" | "ucx";
  readonly virtualAddressing: boolean;
  readonly closed: boolean;
  register(address: number, length: number, access: number): Registration;
  deregister(registration: Registration): void;
  /** Allocates and registers a block of at least `length` bytes for a pool, or returns undefined (see above). */
  allocateBlock?(length: number): ProvidedBlock | undefined;
  /** Closes the provider; registrations still live are closed first. Idempotent. */
  close(): void;
}
