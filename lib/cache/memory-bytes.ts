// What a caller's memory argument is, read the way the cache can trust: the buffer under an
// ArrayBuffer, SharedArrayBuffer, typed array or DataView, the byte range it names, and the
// buffer's length now. Misses and staged reads read it here; a hit reads a typed array's plain
// properties itself and checks them against the entry's registration.
import {
  arrayBufferByteLength, arrayBufferDetached, dataViewBuffer, dataViewByteLength, dataViewByteOffset, lengthGetterFor, type AnyBuffer,
} from "../memory/buffer-intrinsics.ts";

/** Whether `buffer` was detached (transfer(), structured transfer); SharedArrayBuffers never are. */
export function isDetached(buffer: AnyBuffer, lengthOf: (this: unknown) => number): boolean {
  return lengthOf === arrayBufferByteLength && arrayBufferDetached.call(buffer);
}

/**
 * The buffer and byte range of `memory`; false when it is no buffer or view. The buffer is proven
 * a real one by its intrinsic length getter; a typed array's offset and length are read as plain
 * properties (intrinsic calls cost ~10 ns each) and checked against that length by the caller, so
 * a view that lies about them gets a RangeError or a region inside its buffer, never outside.
 * One object per cache, read again for every call (a miss allocates nothing for it).
 */
export class MemoryBytes {
  buffer: AnyBuffer | null = null;
  offset = 0;
  length = 0;
  /** The buffer's byteLength now. */
  total = 0;
  lengthOf: (this: unknown) => number = arrayBufferByteLength;

  read(memory: unknown): boolean {
    this.buffer = null;
    let buffer: unknown;
    if (!ArrayBuffer.isView(memory)) {
      buffer = memory;
      this.offset = 0;
      this.length = -1; // the whole buffer, below
    } else if (!(memory instanceof DataView)) {
      buffer = memory.buffer;
      this.offset = memory.byteOffset;
      this.length = memory.byteLength;
    } else {
      buffer = dataViewBuffer.call(memory);
      this.readDataViewRange(memory);
    }
    if (typeof buffer !== "object" || buffer === null) return false;
    const getter = lengthGetterFor(buffer);
    try {
      this.total = getter.call(buffer);
    } catch {
      return false; // a look-alike, or an object with a buffer's prototype
    }
    if (this.length < 0) this.length = this.total;
    this.buffer = buffer as AnyBuffer;
    this.lengthOf = getter;
    return true;
  }

  /** A DataView's offset and length getters throw once its buffer is detached or too short: 0 and 0 then. */
  private readDataViewRange(view: DataView): void {
    try {
      this.offset = dataViewByteOffset.call(view);
      this.length = dataViewByteLength.call(view);
    } catch {
      this.offset = 0;
      this.length = 0;
    }
  }
}

/** What `value` is, for an error message that names what was given. */
export function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value !== "object") return typeof value;
  const name = (value as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof name === "string" ? `a ${name}` : "an object";
}
