// The rules for memory the caller owns and the library registers (registerUserRegion, the
// registration cache). Registered memory must stay where it is, at its length, for as long as it
// is registered; JavaScript gives the caller two ways to break that, and this module is where
// both are checked:
// - a resizable ArrayBuffer can shrink, and its pages then become inaccessible under a live
//   registration: refused at registration, by registerUserRegion and by the registration cache
//   alike (a growable SharedArrayBuffer only grows: accepted, at its length then);
// - `transfer()` (or a transfer list) detaches a buffer, and its memory may move or be freed and
//   reused: found at the region's next use, which fails with AllocToolsError DETACHED.
import { ptr } from "bun:ffi";
import { AllocToolsError, AllocToolsTypeError, AllocToolsRangeError } from "../errors.ts";
import { arrayBufferMaxByteLength, isDetachedBuffer, isResizableArrayBuffer, realByteLength, type AnyBuffer } from "./buffer-intrinsics.ts";
import type { MemoryRegion } from "./region.ts";

/** What registerUserRegion takes. */
export type UserMemoryInput = ArrayBuffer | SharedArrayBuffer | ArrayBufferView;

/** Memory checked for registration: where it is and a fixed-length view of exactly it. */
export interface UserMemory {
  /** The buffer holding the bytes. */
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  /** Exactly the bytes to register, fixed length (never tracks a buffer's length). */
  readonly view: Uint8Array;
  /** Address of the first byte. */
  readonly address: number;
  /** Bytes to register. */
  readonly byteLength: number;
}

/** Whether `buffer` is an ArrayBuffer that was detached (transferred away); a SharedArrayBuffer never is. */
export function isDetached(buffer: ArrayBufferLike): boolean {
  return isDetachedBuffer(buffer);
}

/**
 * The refusal of a resizable ArrayBuffer (or a view of one), the same wherever user memory is
 * registered: resize() can shrink it, and the pages past its new length become inaccessible under
 * the registration (a transport or a peer writing there crashes the process).
 */
export function resizableBufferError(what: string, buffer: ArrayBuffer): AllocToolsTypeError {
  return new AllocToolsTypeError(`${what} refuses a resizable ArrayBuffer (maxByteLength ${arrayBufferMaxByteLength.call(buffer)}): it could shrink under the ` +
    `registration. Register buffer.transferToFixedLength() (the same bytes, fixed length) or a fixed-length buffer`);
}

/**
 * Checks memory a caller asks to register and returns where it is. Throws, having changed
 * nothing: TypeError for anything but an ArrayBuffer, SharedArrayBuffer or ArrayBufferView and for
 * a resizable ArrayBuffer (or a view of one); AllocToolsError DETACHED for a detached buffer;
 * RangeError for zero bytes or a view that does not fit its buffer. The buffer's kind, length and
 * resizability are read through the intrinsic getters: an own property cannot hide them.
 */
export function checkUserMemory(what: string, memory: unknown): UserMemory {
  let buffer: unknown = memory;
  let byteOffset = 0;
  let byteLength = -1; // the whole buffer
  if (ArrayBuffer.isView(memory)) {
    buffer = memory.buffer;
    try {
      byteOffset = memory.byteOffset;
      byteLength = memory.byteLength;
    } catch {
      byteLength = 0; // a DataView whose buffer was detached: its getters throw
    }
  }
  const total = typeof buffer === "object" && buffer !== null ? realByteLength(buffer) : -1;
  if (total < 0) throw new AllocToolsTypeError(`${what} takes an ArrayBuffer, SharedArrayBuffer or typed array/DataView`);
  const real = buffer as AnyBuffer;
  if (isDetachedBuffer(real)) {
    throw new AllocToolsError("DETACHED", `${what}: the buffer is detached (transferred away); there is no memory to register`);
  }
  if (isResizableArrayBuffer(real)) throw resizableBufferError(what, real as ArrayBuffer);
  if (byteLength < 0) byteLength = total;
  if (byteLength === 0) throw new AllocToolsRangeError(`${what}: cannot register an empty buffer`);
  if (!(Number.isSafeInteger(byteOffset) && Number.isSafeInteger(byteLength) && byteOffset >= 0 && byteLength > 0 && byteOffset + byteLength <= total)) {
    throw new AllocToolsRangeError(`${what}: a view of ${String(byteLength)} bytes at offset ${String(byteOffset)} does not fit its buffer's ${total} bytes`);
  }
  const view = new Uint8Array(real, byteOffset, byteLength);
  return { buffer: real, view, address: ptr(view), byteLength };
}

/**
 * Throws AllocToolsError DETACHED when `region`'s memory is gone from its view: a caller
 * transferred (detached) the buffer, or the region's pool closed. For a user region the memory may
 * have been freed and reused, so nothing may read, write or expose it any more.
 */
export function checkRegionMemory(what: string, region: MemoryRegion): void {
  if (region.view.byteLength !== region.size) throw detachedError(what, region);
}

/** The error for use of a region whose memory is gone from its view. */
export function detachedError(what: string, region: MemoryRegion): AllocToolsError {
  const cause = region.isUser
    ? "the buffer it was registered over was transferred or detached, so its memory may have been freed and reused"
    : "its view's buffer was transferred away, or its pool closed";
  return new AllocToolsError("DETACHED", `${what}: the region at 0x${region.address.toString(16)} has no memory any more: ${cause}`);
}

/**
 * The outcome of an operation that used `region` as local memory, once the transport is done with
 * it: null while the region's memory is still in its view, else AllocToolsError DETACHED. A user
 * buffer transferred while the operation was in flight may have had its memory freed and reused
 * before the transport wrote it (a read) or read it (a write); nothing can stop that (JavaScript
 * cannot make a buffer non-detachable), but the caller must not take the operation for a success.
 * Call it once the transport no longer touches the region (completion, not a timeout).
 */
export function regionMemoryAfterOperation(operation: string, region: MemoryRegion): AllocToolsError | null {
  if (region.view.byteLength === region.size) return null;
  const detached = detachedError(operation, region);
  return new AllocToolsError("DETACHED", `${detached.message}; it left while the operation was in flight, so what the operation read or wrote there is undefined`);
}

