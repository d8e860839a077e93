// An STL-like allocator over a pool: allocate(n) gives a fancy pointer to n elements of
// registered memory, deallocate(p) gives it back. Counts elements, not bytes (the C++ original
// under-allocated by counting elements as bytes).
import type { MemoryPool } from "./pool.ts";
import { MemoryRegionPointer } from "./pointer.ts";
import type { MemoryRegionImpl } from "./region.ts";

/** A typed-array class: Uint8Array, Float64Array, BigUint64Array, ... */
export interface ElementType<T extends ArrayBufferView> {
  readonly BYTES_PER_ELEMENT: number;
  readonly name: string;
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): T;
}

type AnyTypedArray = Uint8Array | Int8Array | Uint8ClampedArray | Uint16Array | Int16Array | Uint32Array | Int32Array |
  Float32Array | Float64Array | BigUint64Array | BigInt64Array;

export class MemoryRegionAllocator<T extends AnyTypedArray = Uint8Array> {
  readonly pool: MemoryPool;
  readonly elementType: ElementType<T>;
  readonly bytesPerElement: number;
  /** Arrays handed out by allocateArray, to find their region on deallocateArray. */
  private readonly arrays = new WeakMap<T, MemoryRegionImpl>();

  constructor(pool: MemoryPool, elementType: ElementType<T> = Uint8Array as unknown as ElementType<T>) {
    if (typeof elementType?.BYTES_PER_ELEMENT !== "number") throw new TypeError("elementType must be a typed-array class such as Uint8Array");
    this.pool = pool;
    this.elementType = elementType;
    this.bytesPerElement = elementType.BYTES_PER_ELEMENT;
  }

  /** A pointer to registered memory for `n` elements (n × BYTES_PER_ELEMENT bytes). */
  allocate(n: number): MemoryRegionPointer {
    const region = this.pool.getRegion(n * this.bytesPerElement) as MemoryRegionImpl;
    if (region.size < n * this.bytesPerElement) this.tooSmall(region, n);
    return region.pointer(0);
  }

  /** Gives back memory from `allocate`. The pointer must be the one allocate returned. */
  deallocate(pointer: MemoryRegionPointer, _n?: number): void {
    const region = pointer.region;
    if (region === null || pointer.offset !== 0) this.notFromAllocate(pointer);
    this.pool.releaseRegion(region);
  }

  /** A typed array of `n` elements over registered memory; give it back with `deallocateArray`. */
  allocateArray(n: number): T {
    const region = this.pool.getRegion(n * this.bytesPerElement) as MemoryRegionImpl;
    const array = new this.elementType(region.view.buffer, region.view.byteOffset, n);
    this.arrays.set(array, region);
    return array;
  }

  /** The region under an array from `allocateArray` (for its keys), or undefined. */
  regionOf(array: T): MemoryRegionImpl | undefined {
    return this.arrays.get(array);
  }

  deallocateArray(array: T): void {
    const region = this.arrays.get(array);
    if (region === undefined) throw new TypeError("deallocateArray takes an array returned by allocateArray of this allocator");
    this.arrays.delete(array);
    this.pool.releaseRegion(region);
  }

  private tooSmall(region: MemoryRegionImpl, n: number): never {
    this.pool.releaseRegion(region);
    throw new RangeError(`${n} elements do not fit`);
  }

  private notFromAllocate(pointer: MemoryRegionPointer): never {
    throw new TypeError(`deallocate takes a pointer returned by allocate, got ${pointer.isNull ? "a null pointer" : `offset ${pointer.offset}`}`);
  }
}
