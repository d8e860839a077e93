// Memory regions: an address range inside a registration, with the keys a peer needs.
// Pools create every region once (with its view and keys) and hand the same object out again
// and again, so a get allocates nothing.
import { AllocToolsError } from "./errors.ts";
import { MemoryRegionPointer } from "./pointer.ts";
import { RemoteRegion } from "./remote-region.ts";
import type { Registration } from "./provider.ts";

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
  readonly bits: number;
  readonly isUser: boolean;
  readonly isTemp: boolean;
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
    if (!Number.isInteger(bits) || bits < 0 || bits > 15) throw new RangeError(`region flags are RegionFlag bits (0..15), got ${bits}`);
    return (RegionFlags.all[bits] ??= new RegionFlags(bits));
  }

  valueOf(): number {
    return this.bits;
  }

  toString(): string {
    const names = (Object.keys(RegionFlag) as (keyof typeof RegionFlag)[]).filter((k) => (this.bits & RegionFlag[k]) !== 0);
    return names.length > 0 ? names.join("|") : "0";
  }
}

/** Who takes a region back. Implemented by MemoryPool; an interface to keep modules acyclic. */
export interface RegionOwner {
  releaseRegion(region: MemoryRegionImpl): void;
}

/** The public face of a registered memory region. */
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
  /** The remote key (`fi_mr_key`), exact to 64 bits. */
  abstract readonly remoteKey: bigint;
  /** What a peer uses as the address of this region's first byte: virtual or offset, per provider. */
  abstract readonly remoteAddress: bigint;
  /** Zero-copy view of exactly `size` bytes. */
  abstract readonly view: Uint8Array;
  /** Bytes of a message in the region; settable, at most `size`. */
  abstract messageLength: number;
  /** A fancy pointer `offset` bytes into the region. */
  abstract pointer(offset?: number): MemoryRegionPointer;

  /** What a peer needs to read or write all `size` bytes of this region (see RemoteRegion). */
  remote(): RemoteRegion {
    return new RemoteRegion(this.remoteAddress, this.remoteKey, this.size);
  }

  get isUser(): boolean {
    return this.flags.isUser;
  }
  get isTemp(): boolean {
    return this.flags.isTemp;
  }
  get isPartial(): boolean {
    return this.flags.isPartial;
  }
  /** Served by a RegistrationCache (`cache.acquire`, `pool.userRegion`). */
  get isCached(): boolean {
    return this.flags.isCached;
  }
}

/** The one concrete region class (every region is one, so call sites stay monomorphic). */
export class MemoryRegionImpl extends MemoryRegion {
  readonly address: number;
  readonly baseAddress: number;
  readonly size: number;
  readonly flags: RegionFlags;
  readonly localKey: bigint;
  readonly remoteKey: bigint;
  readonly remoteAddress: bigint;
  readonly view: Uint8Array;
  /** The registration the region lies in. */
  readonly registration: Registration;
  /** Index in the owning pool's region table; -1 for temporary and user regions. */
  readonly index: number;
  /** Size class (0 small .. 3 huge); -1 for temporary and user regions. */
  readonly stackId: number;
  /** The pool that takes it back; null for regions no pool owns. */
  owner: RegionOwner | null;
  /** Out of the pool (between get and release). */
  inUse: boolean;
  /** Where it was got from (pool debug mode only). */
  origin: string | undefined;
  /** @internal message length; the setter checks it. */
  length: number;
  /** What the region keeps alive while C may use it (a temporary block, a user's buffer). */
  readonly keepAlive: object | null;
  /**
   * @internal RMA operations in flight with this region as local memory. While it is above zero the
   * transport may write into the region: its pool neither releases, unmaps nor closes it.
   */
  inFlight: number;
  private readonly base: MemoryRegionPointer;
  /** Present only on regions this library made: a Proxy or a look-alike object does not have it. */
  readonly #genuine = true;

  /** Whether `value` is a region this library made (not a Proxy, subclass or look-alike). */
  static isGenuine(value: unknown): value is MemoryRegionImpl {
    return typeof value === "object" && value !== null && #genuine in value;
  }

  constructor(registration: Registration, address: number, size: number, flags: number, remoteAddress: bigint,
              view: Uint8Array, owner: RegionOwner | null, index: number, stackId: number, keepAlive: object | null) {
    super();
    this.registration = registration;
    this.address = address;
    this.baseAddress = registration.address;
    this.size = size;
    this.flags = RegionFlags.of(flags);
    this.localKey = registration.localKey;
    this.remoteKey = registration.remoteKey;
    this.remoteAddress = remoteAddress;
    this.view = view;
    this.owner = owner;
    this.index = index;
    this.stackId = stackId;
    this.inUse = false;
    this.origin = undefined;
    this.length = size;
    this.keepAlive = keepAlive;
    this.inFlight = 0;
    this.base = new MemoryRegionPointer(this, 0);
  }

  get messageLength(): number {
    return this.length;
  }
  set messageLength(n: number) {
    if (!Number.isInteger(n) || n < 0 || n > this.size) {
      throw new RangeError(`messageLength must be an integer in [0, ${this.size}], got ${n}`);
    }
    this.length = n;
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
