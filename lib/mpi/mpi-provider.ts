// MpiProvider: a RegionProvider over one dynamic MPI window (Open MPI).
//
// - open() initializes MPI (MPI_Init_thread asking for MPI_THREAD_MULTIPLE; `threadLevel` says what
//   was granted), checks that every rank has the same osc_rdma_max_attach (one MPI_Allgather:
//   shared-settings.ts), creates the window over the job's world communicator with
//   MPI_Win_create_dynamic (collective: every rank opens its providers in the same order) and
//   opens a passive-target epoch on every rank with MPI_Win_lock_all, held until close().
// - register = MPI_Win_attach of the range, deregister = MPI_Win_detach. Open MPI refuses to attach
//   a range that overlaps one already attached, so a range inside an attached one shares that
//   attachment (counted; detached with its last registration), and a range that straddles one is
//   refused with AllocToolsError NOT_SUPPORTED.
// - The remote address is MPI_Get_address of the first byte (in a dynamic window peers address
//   memory by absolute address: virtualAddressing is true).
// - The remote key identifies the window: its high 32 bits are the window's number (windows are
//   created collectively, so the nth window of every rank has number n), its low 32 bits count
//   registrations, so every registration has its own key.
// - Access flags are not per registration: MPI gives every rank of the window read and write access
//   to all attached memory, so a RemoteRegion's length is what keeps a peer inside a region.
//   Pinning is the pool's (its blocks are mlock'd); attaching pins nothing more on shared memory.
// - close(): endpoints first (newest first), then pools, as every provider does (provider-child.ts),
//   so that no pool is closed under an operation in flight; then every attachment is detached,
//   MPI_Win_unlock_all, MPI_Win_free (collective), and MPI_Finalize if this was the last user of
//   MPI and alloctools initialized it.
import { mpiLibrary, THREAD_LEVEL_NAMES, type MpiLibrary, type ThreadLevelName } from "../../ffi/mpi.ts";
import { AllocToolsError, AllocToolsRangeError } from "../errors.ts";
import type { RegionProvider, Registration } from "../memory/provider.ts";
import { closeChildren, type ProviderChild } from "../memory/provider-child.ts";
import { refuseDifferingSettings } from "./shared-settings.ts";

/** One MPI_Win_attach: the range and how many registrations share it. */
class Attachment {
  count = 1;
  constructor(readonly address: number, readonly end: number) {}
}

/** A registration of this provider, with the attachment it lies in. */
interface MpiRegistration extends Registration {
  readonly attachment: Attachment;
}

const KEY_SERIAL_LIMIT = 0x1_0000_0000;
/** Windows created by this process, in order: the number in the keys' high half. */
let windowsCreated = 0;

/**
 * A RegionProvider whose registrations are attachments to one dynamic MPI window (see the file
 * header for keys, addressing and access).
 *
 * Lifetime: `MpiProvider.open()` is collective (every rank opens its providers in the same order)
 * and needs at least two ranks; `close()` (or `using`) closes its endpoints, detaches everything
 * and frees the window (collective too), idempotent. MPI_Finalize runs when the last user of MPI
 * closes.
 *
 * Hot path: pools call it only when they grow or register temporary and user regions; `register`
 * and `deregister` are MPI_Win_attach / MPI_Win_detach calls that allocate the Registration.
 * `remoteAddress` and `ownsKey` are for endpoints' checks.
 */
export class MpiProvider implements RegionProvider {
  /** Always "mpi". */
  readonly name = "mpi";
  /** Always "mpi". */
  readonly kind = "mpi";
  /** Peers address a dynamic window by absolute address (MPI_Get_address). */
  readonly virtualAddressing = true;
  /** The thread level MPI granted, e.g. "MPI_THREAD_MULTIPLE" (asked for MPI_THREAD_MULTIPLE). */
  readonly threadLevel: ThreadLevelName;
  /** This process's rank in the world communicator. */
  readonly rank: number;
  /** Ranks in the world communicator. */
  readonly size: number;
  /** The window's number: the high 32 bits of every key of this provider. */
  readonly windowNumber: number;
  /** `MPI_Get_library_version`'s first line. */
  readonly libraryVersion: string;
  /** @internal The MPI library. */
  readonly mpi: MpiLibrary;
  /** @internal The `MPI_Win` handle. */
  readonly window: number;
  private readonly attachments: Attachment[] = [];
  private readonly live = new Map<number, MpiRegistration>();
  private readonly children = new Set<ProviderChild>();
  private readonly addressOut = new BigInt64Array(1);
  /** The window's number as the keys' high half. */
  private readonly keyHigh: bigint;
  private nextSerial = 1;
  private closed_ = false;

  private constructor(mpi: MpiLibrary, level: number, window: number, windowNumber: number) {
    this.mpi = mpi;
    this.threadLevel = THREAD_LEVEL_NAMES[level] ?? "MPI_THREAD_SINGLE";
    const { rank, size } = mpi.rankAndSize();
    this.rank = rank;
    this.size = size;
    this.window = window;
    this.windowNumber = windowNumber;
    this.keyHigh = BigInt(windowNumber);
    this.libraryVersion = mpi.version.split("\n")[0]!;
  }

  /**
   * Initializes MPI if needed and opens one dynamic window, locked for passive-target access.
   * Collective over the job: every rank must call it (before the window, the ranks allgather their
   * osc_rdma_max_attach: shared-settings.ts). Throws LibraryLoadError (no Open MPI),
   * AllocToolsError NOT_SUPPORTED (not Open MPI; MPI already finalized), AllocToolsError
   * SETTING_MISMATCH on every rank when the ranks disagree on osc_rdma_max_attach, or MpiError.
   */
  static open(): MpiProvider {
    const mpi = mpiLibrary();
    const level = mpi.acquire();
    let window = 0;
    try {
      const { rank, size } = mpi.rankAndSize();
      refuseDifferingSettings(mpi, rank, size);
      window = mpi.createDynamicWindow();
      mpi.lockAll(window);
    } catch (e) {
      if (window !== 0) mpi.freeWindow(window);
      mpi.release();
      throw e;
    }
    return new MpiProvider(mpi, level, window, ++windowsCreated);
  }

  /** Whether close() was called. */
  get closed(): boolean {
    return this.closed_;
  }

  /** Live registrations. */
  get registrations(): number {
    return this.live.size;
  }

  /** Ranges attached to the window (registrations inside one attached range share it). */
  get attachedRanges(): number {
    return this.attachments.length;
  }

  /** `MPI_Get_address(address)`: what a peer passes as the target displacement of that byte. */
  remoteAddress(address: number): bigint {
    return this.mpi.getAddress(address, this.addressOut);
  }

  /** Whether `key` was made by this provider's window. */
  ownsKey(key: bigint): boolean {
    return key >> 32n === this.keyHigh;
  }

  /** Attaches [address, address + length) to the window (or shares the attached range it lies in). */
  register(address: number, length: number, _access: number): Registration {
    this.assertOpen();
    if (!Number.isSafeInteger(address) || address <= 0) throw new AllocToolsRangeError(`register address must be a positive integer, got ${address}`);
    if (!Number.isSafeInteger(length) || length <= 0) throw new AllocToolsRangeError(`register length must be a positive integer, got ${length}`);
    if (this.nextSerial >= KEY_SERIAL_LIMIT) throw new AllocToolsError("KEYS_EXHAUSTED", `window ${this.windowNumber} has used all 2^32 registration keys`);
    const remote = this.remoteAddress(address);
    if (remote !== BigInt(address)) {
      throw new AllocToolsError("NOT_SUPPORTED", `MPI_Get_address(0x${address.toString(16)}) is 0x${remote.toString(16)}: this MPI does not address memory by virtual address`);
    }
    const end = address + length;
    let attachment = this.containing(address, end);
    if (attachment !== undefined) {
      attachment.count++;
    } else {
      const overlap = this.overlapping(address, end);
      if (overlap !== undefined) {
        throw new AllocToolsError("NOT_SUPPORTED", `[0x${address.toString(16)}, 0x${end.toString(16)}) straddles the range ` +
          `[0x${overlap.address.toString(16)}, 0x${overlap.end.toString(16)}) already attached to the MPI window; ` +
          `MPI_Win_attach takes ranges that do not overlap`);
      }
      this.mpi.attach(this.window, address, length, `${length} bytes at 0x${address.toString(16)} (${this.attachments.length} ranges attached)`);
      attachment = new Attachment(address, end);
      this.attachments.push(attachment);
    }
    const key = (BigInt(this.windowNumber) << 32n) | BigInt(this.nextSerial);
    const registration: MpiRegistration = { address, length, handle: this.nextSerial++, localKey: key, remoteKey: key, attachment };
    this.live.set(registration.handle, registration);
    return registration;
  }

  /** Releases one registration; its range is detached with the last registration that shares it. */
  deregister(registration: Registration): void {
    const live = this.live.get(registration.handle);
    if (live === undefined || live !== registration) return; // already gone (closed provider)
    this.live.delete(registration.handle);
    const attachment = live.attachment;
    if (--attachment.count > 0) return;
    this.attachments.splice(this.attachments.indexOf(attachment), 1);
    this.mpi.detach(this.window, attachment.address);
  }

  /** @internal An endpoint or pool over this provider: closed before the window is freed. */
  adopt(child: ProviderChild): void {
    this.children.add(child);
  }

  /** @internal The endpoint or pool closed itself. */
  disown(child: ProviderChild): void {
    this.children.delete(child);
  }

  /**
   * Closes endpoints (newest first; each drains what it has in flight), then pools; detaches every
   * range, ends the passive-target epoch (MPI_Win_unlock_all), frees the window (collective) and
   * finalizes MPI if this was its last user and alloctools initialized it. Idempotent.
   */
  close(): void {
    if (this.closed_) return;
    const errors: unknown[] = [];
    const attempt = (f: () => void) => { try { f(); } catch (e) { errors.push(e); } };
    closeChildren(this.children, attempt);
    this.closed_ = true;
    this.live.clear();
    for (const a of this.attachments.splice(0)) {
      attempt(() => this.mpi.detach(this.window, a.address));
    }
    attempt(() => this.mpi.unlockAll(this.window));
    attempt(() => this.mpi.freeWindow(this.window));
    attempt(() => this.mpi.release());
    if (errors.length > 0) throw errors.length === 1 ? errors[0] : new AggregateError(errors, "closing the MPI provider");
  }

  /** close(). */
  [Symbol.dispose](): void {
    this.close();
  }

  /** @internal Throws AllocToolsError PROVIDER_CLOSED after close(). */
  assertOpen(): void {
    if (this.closed_) throw new AllocToolsError("PROVIDER_CLOSED", "the MPI provider is closed");
  }

  private containing(address: number, end: number): Attachment | undefined {
    for (const a of this.attachments) if (a.address <= address && end <= a.end) return a;
    return undefined;
  }

  private overlapping(address: number, end: number): Attachment | undefined {
    for (const a of this.attachments) if (a.address < end && address < a.end) return a;
    return undefined;
  }
}
