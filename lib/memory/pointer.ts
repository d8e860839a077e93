// The fancy pointer: behaves like an address (`+p`, `${p}`) and carries the region's keys, so
// RMA code can hand a peer both where to go and the key to get in.
import type { MemoryRegion } from "./region.ts";
import { RemoteRegion } from "../engine/remote-region.ts";
import { checkRegionMemory } from "./user-memory.ts";
import { AllocToolsTypeError, AllocToolsRangeError } from "../errors.ts";

/**
 * A fancy pointer into a region: it converts to its address (`+p`, `${p}`) and carries the
 * region's keys, so RMA code can hand a peer where to go and the key to get in (`remote()`).
 * Immutable: region, offset and address are private fields behind getters, so a pointer always
 * points where it was made to; moving (`add`) makes a new pointer, never outside the region.
 *
 * Lifetime: it holds no resource. It is valid while its region is out of its pool; after the
 * region is released (or its pool closes) it points at memory that may be reused, and `view()`
 * and `remote()` refuse once the region's memory is detached (DETACHED).
 *
 * Hot path: the getters, `equals` and the numeric conversion allocate nothing; `add()` makes
 * one small object (often optimized away once the JIT has it); `view`, `remote` and `toString`
 * allocate their result.
 */
export class MemoryRegionPointer {
  /** The null pointer: no region, address 0. */
  static readonly NULL: MemoryRegionPointer = new MemoryRegionPointer(null, 0);

  // Private (read through getters): nobody can point a pointer elsewhere after it was made.
  readonly #region: MemoryRegion | null;
  readonly #offset: number;
  readonly #address: number;

  /** Whether `value` is a pointer made by this class's constructor (not a Proxy or look-alike). */
  static isGenuine(value: unknown): value is MemoryRegionPointer {
    return typeof value === "object" && value !== null && #region in value;
  }

  /** A pointer `offset` bytes into `region`; `offset` is an integer in [0, region.size]. */
  constructor(region: MemoryRegion | null, offset: number) {
    if (region === null ? offset !== 0 : !Number.isSafeInteger(offset) || offset < 0 || offset > region.size) {
      throw new AllocToolsRangeError(`a pointer offset must be an integer in [0, ${region === null ? 0 : region.size}], got ${String(offset)}`);
    }
    this.#region = region;
    this.#offset = offset;
    this.#address = region === null ? 0 : region.address + offset;
  }

  /** The region pointed into, null for the null pointer. */
  get region(): MemoryRegion | null {
    return this.#region;
  }
  /** Bytes from the region's start. */
  get offset(): number {
    return this.#offset;
  }
  /** The address pointed at. */
  get address(): number {
    return this.#address;
  }

  /** Whether this is the null pointer (no region). */
  get isNull(): boolean {
    return this.region === null;
  }

  /** A pointer `bytes` further; it may point one past the end, never outside the region. */
  add(bytes: number): MemoryRegionPointer {
    const region = this.region;
    const offset = this.offset + bytes;
    if (region === null || !Number.isInteger(bytes) || offset < 0 || offset > region.size) this.refuseMove(bytes);
    return new MemoryRegionPointer(region, offset);
  }

  /** Same region and offset. */
  equals(other: MemoryRegionPointer | null | undefined): boolean {
    return other != null && other.region === this.region && other.offset === this.offset;
  }

  /** The region's local descriptor (`region.localKey`). TypeError for the null pointer. */
  get localKey(): bigint {
    return this.live().localKey;
  }
  /** The region's remote key (`region.remoteKey`). TypeError for the null pointer. */
  get remoteKey(): bigint {
    return this.live().remoteKey;
  }
  /** The region's remote address plus this pointer's offset. */
  get remoteAddress(): bigint {
    return this.live().remoteAddress + BigInt(this.offset);
  }

  /**
   * What a peer needs to read or write `length` bytes from here (default: to the region's end).
   * AllocToolsError DETACHED when the region's memory left its view (see `view`).
   */
  remote(length: number = this.remaining): RemoteRegion {
    const region = this.live();
    checkRegionMemory("remote", region);
    if (!Number.isSafeInteger(length) || length < 0 || length > region.size - this.offset) {
      throw new AllocToolsRangeError(`remote of ${length} bytes at offset ${this.offset} does not fit the region's ${region.size} bytes`);
    }
    return new RemoteRegion(region.remoteAddress + BigInt(this.offset), region.remoteKey, length);
  }

  /** Bytes left from here to the end of the region. */
  get remaining(): number {
    return this.region === null ? 0 : this.region.size - this.offset;
  }

  /**
   * A zero-copy view of `length` bytes from here (default: to the region's end). AllocToolsError
   * DETACHED when the region's memory left its view (a buffer transferred away, the pool closed).
   */
  view(length: number = this.remaining): Uint8Array {
    const region = this.live();
    checkRegionMemory("view", region);
    if (!Number.isInteger(length) || length < 0 || length > region.size - this.offset) {
      throw new AllocToolsRangeError(`view of ${length} bytes at offset ${this.offset} does not fit the region's ${region.size} bytes`);
    }
    return region.view.subarray(this.offset, this.offset + length);
  }

  /** `+p` and `p + 0` give the address; `${p}` gives `0x…`. */
  [Symbol.toPrimitive](hint: string): number | string {
    return hint === "string" ? `0x${this.address.toString(16)}` : this.address;
  }

  /** The address in hexadecimal, `0x…` (`0x0` for the null pointer). */
  toString(): string {
    return `0x${this.address.toString(16)}`;
  }

  private live(): MemoryRegion {
    if (this.region === null) throw new AllocToolsTypeError("null MemoryRegionPointer has no region");
    return this.region;
  }

  private refuseMove(bytes: number): never {
    if (this.region === null) throw new AllocToolsTypeError("cannot move a null MemoryRegionPointer");
    throw new AllocToolsRangeError(`pointer moved by ${bytes} would leave its region (offset ${this.offset}, size ${this.region.size})`);
  }
}
