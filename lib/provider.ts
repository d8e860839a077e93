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
 * What a region provider must do. Implementations: HostProvider, LibfabricProvider, MpiProvider.
 * - `register` pins (where the provider pins) and registers; it throws a typed error and leaves
 *   nothing registered when it fails.
 * - `deregister` releases exactly one registration; registering the same range twice is allowed
 *   and gives two registrations with distinct keys.
 * - `virtualAddressing` says what a peer uses as the remote address: the virtual address (true),
 *   or the byte offset from the registration's start (false).
 */
export interface RegionProvider {
  /** Short name: "host", "tcp;ofi_rxm", "shm", ... */
  readonly name: string;
  /** "host", "libfabric" or "mpi". */
  readonly kind: "host" | "libfabric" | "mpi";
  readonly virtualAddressing: boolean;
  readonly closed: boolean;
  register(address: number, length: number, access: number): Registration;
  deregister(registration: Registration): void;
  /** Closes the provider; registrations still live are closed first. Idempotent. */
  close(): void;
}
