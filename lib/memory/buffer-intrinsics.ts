// What a buffer really is, read through the engine's own getters. A caller's object can carry own
// properties (`byteLength`, `resizable`, `detached`) or a borrowed prototype that say anything;
// the getters of ArrayBuffer.prototype, SharedArrayBuffer.prototype and DataView.prototype read
// the internal slots instead, and throw for anything that is not the real thing. Every decision
// about what memory may be registered (registerUserRegion, the registration cache) reads them.

/** An ArrayBuffer or a SharedArrayBuffer. */
export type AnyBuffer = ArrayBuffer | SharedArrayBuffer;

function getter(prototype: object, name: string): (this: unknown) => unknown {
  return Object.getOwnPropertyDescriptor(prototype, name)!.get! as (this: unknown) => unknown;
}

/** ArrayBuffer.prototype.byteLength: throws for anything but a (non-shared) ArrayBuffer; 0 once detached. */
export const arrayBufferByteLength = getter(ArrayBuffer.prototype, "byteLength") as (this: unknown) => number;
/** SharedArrayBuffer.prototype.byteLength: throws for anything but a SharedArrayBuffer. */
export const sharedArrayBufferByteLength = getter(SharedArrayBuffer.prototype, "byteLength") as (this: unknown) => number;
/** ArrayBuffer.prototype.detached. */
export const arrayBufferDetached = getter(ArrayBuffer.prototype, "detached") as (this: unknown) => boolean;
/** ArrayBuffer.prototype.resizable. */
export const arrayBufferResizable = getter(ArrayBuffer.prototype, "resizable") as (this: unknown) => boolean;
/** ArrayBuffer.prototype.maxByteLength. */
export const arrayBufferMaxByteLength = getter(ArrayBuffer.prototype, "maxByteLength") as (this: unknown) => number;
/** DataView.prototype.buffer. */
export const dataViewBuffer = getter(DataView.prototype, "buffer") as (this: unknown) => AnyBuffer;
/** DataView.prototype.byteOffset: throws once the buffer is detached or too short. */
export const dataViewByteOffset = getter(DataView.prototype, "byteOffset") as (this: unknown) => number;
/** DataView.prototype.byteLength: throws once the buffer is detached or too short. */
export const dataViewByteLength = getter(DataView.prototype, "byteLength") as (this: unknown) => number;

/** The intrinsic byteLength getter for `value`'s kind (picked by prototype; the getter itself checks). */
export function lengthGetterFor(value: object): (this: unknown) => number {
  return value instanceof SharedArrayBuffer ? sharedArrayBufferByteLength : arrayBufferByteLength;
}

/**
 * The byteLength of `value` when it is a real ArrayBuffer or SharedArrayBuffer, else -1 (a
 * look-alike, or a buffer wearing the other kind's prototype).
 */
export function realByteLength(value: object): number {
  try {
    return lengthGetterFor(value).call(value);
  } catch {
    return -1;
  }
}

/**
 * Whether `buffer` (a real buffer) is a resizable ArrayBuffer: one that `resize()` can shrink. A
 * growable SharedArrayBuffer is not: it only grows, so memory under it never goes away.
 */
export function isResizableArrayBuffer(buffer: AnyBuffer): boolean {
  try {
    return arrayBufferResizable.call(buffer);
  } catch {
    return false; // a SharedArrayBuffer
  }
}

/** Whether `buffer` (a real buffer) was detached (transfer(), a transfer list); SharedArrayBuffers never are. */
export function isDetachedBuffer(buffer: AnyBuffer): boolean {
  try {
    return arrayBufferDetached.call(buffer);
  } catch {
    return false; // a SharedArrayBuffer
  }
}
