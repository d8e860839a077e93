// Memory regions: an address range inside a registration, with the keys a peer needs.
// Pools create every region once (with its view and keys) and hand the same object out again
// and again, so a get allocates nothing.
import { AllocToolsError, AllocToolsRangeError } from "../errors.ts";
import { hex, inspectCustom, oneLine } from "../inspect.ts";
import { MemoryRegionPointer } from "./pointer.ts";
import { RemoteRegion } from "../engine/remote-region.ts";
import type { Registration } from "./provider.ts";
import { checkRegionMemory } from "./user-memory.ts";

/** Region flags (the original's BLOCK_USER / BLOCK_TEMP / BLOCK_PARTIAL). */
export const RegionFlag = {
  /** Over the caller's memory: deregistered, never freed, on release. */
  USER: 1,
  /** Registered on the fly for one use: deregistered and unmapped on release. */
  TEMP: 2,
  /** A piece of a larger registration (pooled chunks). */
  PARTIAL: 4,
  /** Served by a RegistrationCache: released to the cache, which keeps the registration. */
  CACHED: 8,
} as const;

/**
 * A region's flags: the RegionFlag bits and, by name, `isUser`, `isTemp`, `isPartial`. One frozen
 * instance per combination, shared by every region that has it. Converts to its bits, so
 * `region.flags & RegionFlag.TEMP` works as with the original's integer flags.
 */
export class RegionFlags {
  /** The RegionFlag bits, 0..15. */
  readonly bits: number;
  /** RegionFlag.USER: over the caller's memory. */
  readonly isUser: boolean;
  /** RegionFlag.TEMP: registered for one use (above the largest size class). */
  readonly isTemp: boolean;
  /** RegionFlag.PARTIAL: a chunk of a larger registration (pooled regions). */
  readonly isPartial: boolean;
  /** Served by a RegistrationCache. */
  readonly isCached: boolean;
  private static readonly all: RegionFlags[] = [];

  private constructor(bits: number) {
    this.bits = bits;
    this.isUser = (bits & RegionFlag.USER) !== 0;
    this.isTemp = (bits & RegionFlag.TEMP) !== 0;
    this.isPartial = (bits & RegionFlag.PARTIAL) !== 0;
    this.isCached = (bits & RegionFlag.CACHED) !== 0;
    Object.freeze(this);
  }

  /** The shared instance for `bits` (a combination of RegionFlag values). */
  static of(bits: number): RegionFlags {
    if (!Number.isInteger(bits) || bits < 0 || bits > 15) throw new AllocToolsRangeError(`region flags are RegionFlag bits (0..15), got ${bits}`);
    return (RegionFlags.all[bits] ??= new RegionFlags(bits));
  }

  /** The bits, so that `flags & RegionFlag.TEMP` works as with integer flags. */
  valueOf(): number {
    return this.bits;
  }

  /** The set flags' names joined by `|`, e.g. `"USER|CACHED"`; `"0"` when none is set. */
  toString(): string {
    const names = (Object.keys(RegionFlag) as (keyof typeof RegionFlag)[]).filter((flag) => (this.bits & RegionFlag[flag]) !== 0);
    return names.length > 0 ? names.join("|") : "0";
  }
}

/** Who takes a region back. Implemented by MemoryPool; an interface to keep modules acyclic. */
export interface RegionOwner {
  /** Takes `region` back (see MemoryPool.releaseRegion). */
  releaseRegion(region: MemoryRegion): void;
}

/**
 * A registered memory region: an address range inside one registration, with its keys, a
 * zero-copy `view` and what a peer needs (`remote()`). Pools (and registration caches) make every
 * region once and hand the same object out again after each release; users never construct one.
 *
 * `size` is the usable size, for a pooled region its size class's chunk size, not the bytes asked
 * for: `pool.getRegion(4000)` from a 16 KiB class has `size` 16384, `messageLength` 4000, and its
 * `remote()` lets a peer touch all 16 KiB (send `pointer(0).remote(length)` to give less).
 *
 * Lifetime: out of its pool from `getRegion` (or `registerUserRegion` / `userRegion`) until
 * `releaseRegion` (or `using`); after that, or after the pool closes, it must not be used (a
 * closed pool's views are detached, length 0; a Worker's views of a shared pool its owner closed
 * read fresh zero pages, or its own bytes, until that Worker detaches, and its RMA is refused with
 * POOL_CLOSED). While RMA operations use it (`inFlight` above 0), in any Worker, its pool refuses
 * to release or close it (BUSY).
 *
 * Hot path: every field and getter is a plain read, and `messageLength` a checked write; no
 * allocation. `pointer(offset)` allocates a pointer except at offset 0; `remote()` allocates
 * its RemoteRegion.
 */
export abstract class MemoryRegion {
  /** Start of this region. */
  abstract readonly address: number;
  /** Start of the registration the region lies in. */
  abstract readonly baseAddress: number;
  /** Usable bytes. */
  abstract readonly size: number;
  /** The flags: `flags.isUser`, `flags.isTemp`, `flags.isPartial`, or `flags.bits`. */
  abstract readonly flags: RegionFlags;
  /** The local descriptor of the registration (`fi_mr_desc`), exact. */
  abstract readonly localKey: bigint;
  /** The remote key (`fi_mr_key`), exact to 64 bits; 0n where the key is `remoteKeyBytes`. */
  abstract readonly remoteKey: bigint;
  /** The remote key as bytes (UCX's packed rkey), or null where `remoteKey` is the whole key. Do not modify. */
  abstract readonly remoteKeyBytes: Uint8Array | null;
  /** What a peer uses as the address of this region's first byte: virtual or offset, per provider. */
  abstract readonly remoteAddress: bigint;
  /** Zero-copy view of exactly `size` bytes. */
  abstract readonly view: Uint8Array;
  /**
   * Bytes of the message the region holds, for the caller's own bookkeeping (the original's
   * message length): set on each get to the bytes asked for (`getRegion(4000)` gives 4000 in a
   * 16 KiB region; temporary and user regions: their size). Settable to an integer in [0, size];
   * RangeError otherwise. Nothing in this library reads it: endpoints take their length as an
   * argument, and `remote()` covers `size`, not `messageLength`.
   */
  abstract messageLength: number;
  /** Out of its pool (between get and release). Read-only: only the pool changes it. */
  abstract readonly inUse: boolean;
  /**
   * RMA operations in flight with this region as local memory. While above zero its pool refuses
   * to release or close it (AllocToolsError BUSY): the transport may still write into it.
   */
  abstract readonly inFlight: number;
  /**
   * Taken out of service for good: a caller moved its memory out of its view
   * (`region.view.buffer.transfer()`), so its pool never hands it out again.
   */
  abstract readonly retired: boolean;
  /** A fancy pointer `offset` bytes into the region. */
  abstract pointer(offset?: number): MemoryRegionPointer;
  /** Gives the region back to its pool: `using region = pool.getRegion(n)` releases it at scope end. */
  abstract [Symbol.dispose](): void;

  /**
   * What a peer needs to read or write all `size` bytes of this region (see RemoteRegion).
   * AllocToolsError DETACHED when the region's memory left its view (a user buffer transferred
   * away): a peer must never be sent to memory that may have been reused.
   */
  remote(): RemoteRegion {
    checkRegionMemory("remote", this);
    return new RemoteRegion(this.remoteAddress, this.remoteKey, this.size, this.remoteKeyBytes);
  }

  /** One line for console.log: address, size, message length, remote key, flags. */
  [inspectCustom](): string {
    return oneLine("MemoryRegion", {
      address: hex(this.address), size: this.size, messageLength: this.messageLength,
      remoteKey: `${this.remoteKey}n`, flags: this.flags.toString(),
    });
  }

  /** `${region}`: the same line as console.log prints (to hand the region to a peer, use `${region.remote()}`). */
  toString(): string {
    return this[inspectCustom]();
  }

  /** Over the caller's memory (registerUserRegion). */
  get isUser(): boolean {
    return this.flags.isUser;
  }
  /** Registered for one use (above the huge class). */
  get isTemp(): boolean {
    return this.flags.isTemp;
  }
  /** A chunk of a pooled block. */
  get isPartial(): boolean {
    return this.flags.isPartial;
  }
  /** Served by a RegistrationCache (`cache.acquire`, `pool.userRegion`). */
  get isCached(): boolean {
    return this.flags.isCached;
  }
}

/**
 * @internal Where a shared pool counts the RMA operations on one thread's regions, in shared
 * memory, so that the owner's close sees the operations of every Worker (lib/sharing/). Touched
 * only when an operation begins or ends, never by gets and releases.
 */
export interface SharedOperationCount {
  /**
   * One more operation (`firstOnRegion`: the region had none in flight). False, counting nothing,
   * when the owner has closed the pool: the operation must not start.
   */
  begin(firstOnRegion: boolean): boolean;
  /** One operation fewer (`lastOnRegion`: the region has none in flight now). */
  end(lastOnRegion: boolean): void;
  /** Whether the owner has closed the pool. */
  readonly closed: boolean;
}

/** `#state` bit 0: out of its pool. */
const IN_USE = 1;
/** `#state` counts operations in flight above bit 0. */
const IN_FLIGHT_STEP = 2;
/** `#state` of a region that is out and that no operation uses: the only one a release takes. */
const OUT_IDLE = IN_USE;

// Changes of a region's state that only this library makes. They are module functions, set
// inside the class body (they reach its private fields), and the package does not export them:
// a caller holding a region can read its state but never change it.

/** @internal A pool hands the region out for a message of `length` bytes. */
export let checkOut: (region: MemoryRegionImpl, length: number) => void;
/**
 * @internal The release hot path: true when `region` is a genuine pooled region of `owner`, out
 * and with no RMA operation in flight (one comparison), and is now marked free. False changes nothing
 * (the caller's slow path finds out why). Never throws, whatever `region` is.
 */
export let checkIn: (region: unknown, owner: RegionOwner) => boolean;
/** @internal Sets the in-use mark (close, Worker hand-overs, release of temporary and user regions). */
export let setInUse: (region: MemoryRegionImpl, inUse: boolean) => void;
/** @internal Where the region was got (debug pools). */
export let setOrigin: (region: MemoryRegionImpl, origin: string | undefined) => void;
/**
 * @internal An RMA operation starts using the region as local memory: until `endOperation`, its
 * pool neither releases, unmaps nor closes it (BUSY), and the pool stays reachable (no GC). A
 * region of a shared pool whose owner has closed it throws AllocToolsError POOL_CLOSED, counting
 * nothing: call it before taking anything that would have to be given back.
 */
export let beginOperation: (region: MemoryRegionImpl) => void;
/** @internal The transport no longer touches the region for one operation (completed, failed or cancelled). */
export let endOperation: (region: MemoryRegionImpl) => void;
/**
 * @internal Takes a pooled region out of service for good: its memory was transferred away from
 * its view (`region.view.buffer.transfer()`), so the pool never hands it out again.
 */
export let retire: (region: MemoryRegionImpl) => void;
/** @internal What the region keeps alive: a temporary region's MemoryBlock, a user region's memory. */
export let keepAliveOf: (region: MemoryRegionImpl) => object | null;
/**
 * @internal From now on the region's operations are counted in `count` too (its pool is shared):
 * the operations already in flight are added to it.
 */
export let countOperationsIn: (region: MemoryRegionImpl, count: SharedOperationCount) => void;
/**
 * @internal Throws AllocToolsError POOL_CLOSED when the region belongs to a shared pool its owner
 * has closed: an endpoint checks it before it takes anything (beginOperation decides for good).
 */
export let assertPoolOpen: (region: MemoryRegionImpl, what: string) => void;

/**
 * The one concrete region class (every region is one, so call sites stay monomorphic). Frozen at
 * construction: address, size, keys, view and owner cannot be changed by anyone; the state that
 * changes (in use, message length, operations in flight) lives in private fields that only this
 * library's modules change. Not exported from the package: users see MemoryRegion.
 */
export class MemoryRegionImpl extends MemoryRegion {
  readonly address: number;
  readonly baseAddress: number;
  readonly size: number;
  readonly flags: RegionFlags;
  readonly localKey: bigint;
  readonly remoteKey: bigint;
  readonly remoteKeyBytes: Uint8Array | null;
  readonly remoteAddress: bigint;
  readonly view: Uint8Array;
  /** The registration the region lies in. */
  readonly registration: Registration;
  /** Index in the owning pool's region table; -1 for temporary and user regions. */
  readonly index: number;
  /** Size class (0 small .. 3 huge); -1 for temporary and user regions. */
  readonly stackId: number;
  /** The pool that takes it back; null for regions no pool owns. */
  readonly owner: RegionOwner | null;
  private readonly base: MemoryRegionPointer;
  /**
   * In use (bit 0) and RMA operations in flight (the rest, in steps of IN_FLIGHT_STEP): one field,
   * so that the release hot path checks both with one comparison (OUT_IDLE).
   */
  #state = 0;
  #length: number;
  #retired = false;
  /** What the region keeps alive while C may use it (a temporary region's block, a user's memory). */
  readonly #keepAlive: object | null;
  #origin: string | undefined = undefined;
  /** Where a shared pool counts this region's operations for every thread to see; null when unshared. */
  #sharedOperations: SharedOperationCount | null = null;

  /** Whether `value` is a region this library made (not a Proxy, subclass or look-alike). */
  static isGenuine(value: unknown): value is MemoryRegionImpl {
    return typeof value === "object" && value !== null && #state in value;
  }

  static {
    checkOut = (region, length) => {
      region.#state |= IN_USE;
      region.#length = length;
    };
    checkIn = (region, owner) => {
      if (typeof region !== "object" || region === null || !(#state in region)) return false;
      const genuine = region as MemoryRegionImpl;
      if (genuine.#state !== OUT_IDLE || genuine.owner !== owner || genuine.index < 0) return false;
      genuine.#state = 0;
      return true;
    };
    setInUse = (region, inUse) => {
      region.#state = inUse ? region.#state | IN_USE : region.#state & ~IN_USE;
    };
    setOrigin = (region, origin) => {
      region.#origin = origin;
    };
    beginOperation = (region) => {
      const state = (region.#state += IN_FLIGHT_STEP);
      const shared = region.#sharedOperations;
      if (shared !== null && !shared.begin(state < 2 * IN_FLIGHT_STEP)) {
        region.#state -= IN_FLIGHT_STEP;
        throw poolClosedError("RMA", region);
      }
    };
    endOperation = (region) => {
      if (region.#state < IN_FLIGHT_STEP) throw new AllocToolsRangeError(`region at 0x${region.address.toString(16)} has no RMA operation in flight to end`);
      const state = (region.#state -= IN_FLIGHT_STEP);
      region.#sharedOperations?.end(state < IN_FLIGHT_STEP);
    };
    countOperationsIn = (region, count) => {
      region.#sharedOperations = count;
      for (let operation = 0; operation < region.#state >>> 1; operation++) count.begin(operation === 0);
    };
    assertPoolOpen = (region, what) => {
      if (region.#sharedOperations?.closed === true) throw poolClosedError(what, region);
    };
    retire = (region) => {
      region.#retired = true;
    };
    keepAliveOf = (region) => region.#keepAlive;
  }

  constructor(registration: Registration, address: number, size: number, flags: number, remoteAddress: bigint,
              view: Uint8Array, owner: RegionOwner | null, index: number, stackId: number, keepAlive: object | null) {
    super();
    if (view.byteLength !== size) throw new AllocToolsRangeError(`a region's view is exactly its ${size} bytes, got ${view.byteLength}`);
    this.registration = registration;
    this.address = address;
    this.baseAddress = registration.address;
    this.size = size;
    this.flags = RegionFlags.of(flags);
    this.localKey = registration.localKey;
    this.remoteKey = registration.remoteKey;
    this.remoteKeyBytes = registration.remoteKeyBytes ?? null;
    this.remoteAddress = remoteAddress;
    this.view = view;
    this.owner = owner;
    this.index = index;
    this.stackId = stackId;
    this.#keepAlive = keepAlive;
    this.#length = size;
    this.base = new MemoryRegionPointer(this, 0);
    Object.freeze(this);
  }

  /** Out of its pool (between get and release). */
  get inUse(): boolean {
    return (this.#state & IN_USE) !== 0;
  }

  /**
   * RMA operations in flight with this region as local memory. While above zero the transport may
   * write into the region: its pool refuses to release, unmap or close it (BUSY).
   */
  get inFlight(): number {
    return this.#state >>> 1;
  }

  /** Taken out of service because its memory was transferred away from its view (never handed out again). */
  get retired(): boolean {
    return this.#retired;
  }

  /** Where it was got from (pool debug mode only). */
  get origin(): string | undefined {
    return this.#origin;
  }

  get messageLength(): number {
    return this.#length;
  }
  set messageLength(length: number) {
    if (!Number.isInteger(length) || length < 0 || length > this.size) {
      throw new AllocToolsRangeError(`messageLength must be an integer in [0, ${this.size}], got ${length}`);
    }
    this.#length = length;
  }

  /** A fancy pointer `offset` bytes into the region (`offset` may equal `size`: one past the end). */
  pointer(offset: number = 0): MemoryRegionPointer {
    if (offset === 0) return this.base;
    return this.base.add(offset);
  }

  /** Gives the region back to its pool (`using region = pool.getRegion(n)`). */
  [Symbol.dispose](): void {
    if (this.inUse && this.owner !== null) this.owner.releaseRegion(this);
  }

  /** @internal Throws unless the region is out of its pool. */
  assertInUse(what: string): void {
    if (!this.inUse) throw new AllocToolsError("DOUBLE_RELEASE", `${what}: region at 0x${this.address.toString(16)} is not in use (released or closed)`);
  }
}

function poolClosedError(what: string, region: MemoryRegionImpl): AllocToolsError {
  return new AllocToolsError("POOL_CLOSED", `${what}: the region at 0x${region.address.toString(16)} belongs to a shared pool its owner has closed`);
}
