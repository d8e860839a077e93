// An STL-like allocator over a pool: allocate(n) gives a fancy pointer to n elements of
// registered memory, deallocate(p) gives it back. Counts elements, not bytes (the C++ original
// under-allocated by counting elements as bytes).
import { AllocToolsRangeError, AllocToolsTypeError } from "../errors.ts";
import type { MemoryPool } from "../pool/pool.ts";
import { MemoryRegionPointer } from "./pointer.ts";
import type { MemoryRegion, MemoryRegionImpl } from "./region.ts";

/** A typed-array class: Uint8Array, Float64Array, BigUint64Array, ... */
export interface ElementType<T extends ArrayBufferView> {
  /** Bytes per element: 1 for Uint8Array, 8 for Float64Array. */
  readonly BYTES_PER_ELEMENT: number;
  /** The class name, e.g. `"Float64Array"`. */
  readonly name: string;
  /** A view of `length` elements over `buffer` from `byteOffset` (no copy). */
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): T;
}

/** Every typed-array type an allocator can hand out. */
export type AnyTypedArray = Uint8Array | Int8Array | Uint8ClampedArray | Uint16Array | Int16Array | Uint32Array | Int32Array |
  Float32Array | Float64Array | BigUint64Array | BigInt64Array;

/**
 * An STL-like allocator over a {@link MemoryPool}, for code ported from allocator-based C++:
 * `allocate(count)` returns a {@link MemoryRegionPointer} to registered memory for `count` elements of `T`
 * (it counts elements, not bytes), `deallocate(pointer)` gives it back; `allocateArray(count)` returns a typed
 * array over registered memory instead.
 *
 * Lifetime: it holds no memory of its own; what it hands out belongs to the pool and is valid until
 * deallocated or until the pool closes. Close the pool, not the allocator.
 *
 * Hot path: `allocate` and `deallocate` are a pool get and release (no system call, and no
 * allocation beyond the pointer `allocate` returns: the region's own pointer at offset 0).
 * `allocateArray` allocates the typed array it returns.
 *
 * @typeParam T The typed-array type of the elements (default Uint8Array).
 */
export class MemoryRegionAllocator<T extends AnyTypedArray = Uint8Array> {
  /** The pool every allocation comes from. */
  readonly pool: MemoryPool;
  /** The typed-array class of the elements. */
  readonly elementType: ElementType<T>;
  /** `elementType.BYTES_PER_ELEMENT`. */
  readonly bytesPerElement: number;
  /** Arrays handed out by allocateArray, to find their region on deallocateArray. */
  private readonly arrays = new WeakMap<T, MemoryRegionImpl>();

  /**
   * An allocator of `elementType` elements from `pool`.
   * @param pool Where the memory comes from.
   * @param elementType A typed-array class (default Uint8Array).
   * @throws {@link AllocToolsTypeError} when `elementType` is not a typed-array class.
   */
  constructor(pool: MemoryPool, elementType: ElementType<T> = Uint8Array as unknown as ElementType<T>) {
    if (typeof elementType?.BYTES_PER_ELEMENT !== "number") throw new AllocToolsTypeError("elementType must be a typed-array class such as Uint8Array");
    this.pool = pool;
    this.elementType = elementType;
    this.bytesPerElement = elementType.BYTES_PER_ELEMENT;
  }

  /**
   * A pointer to registered memory for `count` elements (count × BYTES_PER_ELEMENT bytes). Hot-path safe
   * for pooled sizes: no system call, no allocation.
   * @throws what {@link MemoryPool.getRegion} throws for the size.
   */
  allocate(count: number): MemoryRegionPointer {
    const region = this.pool.getRegion(count * this.bytesPerElement) as MemoryRegionImpl;
    if (region.size < count * this.bytesPerElement) this.tooSmall(region, count);
    return region.pointer(0);
  }

  /**
   * Gives back memory from `allocate`. The pointer must be the one allocate returned. Hot-path safe.
   * @param _count The count given to allocate (accepted for STL likeness; not needed).
   */
  deallocate(pointer: MemoryRegionPointer, _count?: number): void {
    const region = pointer.region;
    if (region === null || pointer.offset !== 0) this.notFromAllocate(pointer);
    this.pool.releaseRegion(region);
  }

  /** A typed array of `count` elements over registered memory (allocates the array object); give it back with `deallocateArray`. */
  allocateArray(count: number): T {
    const region = this.pool.getRegion(count * this.bytesPerElement) as MemoryRegionImpl;
    const array = new this.elementType(region.view.buffer, region.view.byteOffset, count);
    this.arrays.set(array, region);
    return array;
  }

  /** The region under an array from `allocateArray` (for its keys), or undefined. */
  regionOf(array: T): MemoryRegion | undefined {
    return this.arrays.get(array);
  }

  /**
   * Gives back an array from `allocateArray`.
   * @throws {@link AllocToolsTypeError} for an array this allocator did not hand out (or already took back).
   */
  deallocateArray(array: T): void {
    const region = this.arrays.get(array);
    if (region === undefined) throw new AllocToolsTypeError("deallocateArray takes an array returned by allocateArray of this allocator");
    this.arrays.delete(array);
    this.pool.releaseRegion(region);
  }

  private tooSmall(region: MemoryRegionImpl, count: number): never {
    this.pool.releaseRegion(region);
    throw new AllocToolsRangeError(`${count} elements do not fit`);
  }

  private notFromAllocate(pointer: MemoryRegionPointer): never {
    throw new AllocToolsTypeError(`deallocate takes a pointer returned by allocate, got ${pointer.isNull ? "a null pointer" : `offset ${pointer.offset}`}`);
  }
}
