// Reads through an Endpoint's registration cache land in memory the cache owns, and are copied
// into the caller's view once the transport is done with them, if that view's buffer is still
// there. Never into the caller's buffer directly, because nothing can keep that buffer's memory
// where it is for the length of the read:
// - transfer() (or a transfer list) moves an ArrayBuffer's memory to a new buffer the library
//   never sees, and transfer(newLength) frees it at once; either way the garbage collector may
//   hand it to an unrelated buffer before the transport writes (a peer's CMA copy or a tcp receive
//   lands whenever it lands);
// - JavaScriptCore copies instead of moving only for a pinned or locked buffer, and nothing
//   reachable from JavaScript or bun:ffi pins one: ptr(), toArrayBuffer, Buffer, napi through cc()
//   do not; WebAssembly.Memory buffers cannot be detached, but a caller's buffer is not one; Bun
//   pins only inside its own native calls (zlib), for their length.
// So the read's bytes are only ever written to the staging memory, and from there to exactly the
// bytes the caller named, by this thread, after checking that the buffer was not detached.
// Writes need no staging: the transport only reads the caller's memory, and finishLocal fails a
// write whose buffer was detached in flight (DETACHED).
//
// Staging buffers are private ArrayBuffers, cached (registered) by the cache like any buffer:
// power-of-two sizes from a page up to `largestKept`, kept idle for the next read while the idle
// ones hold at most `idleLimit` bytes; larger reads get a buffer of their own, dropped after use.
import { ptr } from "bun:ffi";
import * as libc from "../../ffi/libc.ts";
import type { AnyBuffer } from "../memory/buffer-intrinsics.ts";
import type { MemoryRegionImpl } from "../memory/region.ts";

/** One staging buffer and, while a read uses it, where that read's bytes go. */
export class StagedRead {
  /** The private memory a read lands in (a buffer of its own, never handed out). */
  readonly memory: Uint8Array;
  /** Address of its first byte. */
  readonly address: number;
  /** Size class (log2 of the capacity), or -1 for a buffer of its own above the largest kept. */
  readonly sizeClass: number;
  /** The cache's region over `memory` while a read uses it; null while idle. */
  region: MemoryRegionImpl | null = null;
  /** The caller's buffer, while a read is in flight (not kept after: the caller's memory is theirs). */
  destination: AnyBuffer | null = null;
  /** The intrinsic byteLength getter of the destination's kind (0 once an ArrayBuffer is detached). */
  destinationLength: (this: unknown) => number = () => 0;
  /** Where in the destination the bytes go. */
  offset = 0;
  /** Bytes the read brings. */
  length = 0;

  constructor(capacity: number, sizeClass: number) {
    this.memory = new Uint8Array(new ArrayBuffer(capacity));
    this.address = ptr(this.memory);
    this.sizeClass = sizeClass;
  }

  /** Capacity in bytes. */
  get capacity(): number {
    return this.memory.byteLength;
  }

  /** Forgets the caller's buffer and the region (the read is over). */
  clear(): void {
    this.region = null;
    this.destination = null;
    this.offset = 0;
    this.length = 0;
  }
}

/** Staging buffers of one cache: idle ones by size class, reused read after read. */
export class ReadStaging {
  /** Idle buffers by size class. */
  private readonly idle: StagedRead[][] = [];
  private idleBytes = 0;
  /** Bytes of staging memory that exist now (idle and in use). */
  ownedBytes = 0;

  /**
   * @param largestKept Reads up to this many bytes use power-of-two buffers kept for reuse.
   * @param idleLimit Most bytes of idle buffers kept.
   */
  constructor(private readonly largestKept: number, private readonly idleLimit: number) {}

  /** A buffer of at least `length` bytes: an idle one of its size class, or a new one. */
  take(length: number): StagedRead {
    if (length > this.largestKept) {
      const capacity = Math.ceil(length / libc.pageSize) * libc.pageSize;
      this.ownedBytes += capacity;
      return new StagedRead(capacity, -1);
    }
    const sizeClass = Math.max(Math.ceil(Math.log2(length)), Math.log2(libc.pageSize));
    const idle = this.idle[sizeClass];
    const kept = idle === undefined ? undefined : idle.pop();
    if (kept !== undefined) {
      this.idleBytes -= kept.capacity;
      return kept;
    }
    const capacity = 2 ** sizeClass;
    this.ownedBytes += capacity;
    return new StagedRead(capacity, sizeClass);
  }

  /** Takes `slot` back for reuse; false when it is dropped instead (too large, or the idle limit). */
  give(slot: StagedRead): boolean {
    slot.clear();
    if (slot.sizeClass < 0 || this.idleBytes + slot.capacity > this.idleLimit) {
      this.ownedBytes -= slot.capacity;
      return false;
    }
    (this.idle[slot.sizeClass] ??= []).push(slot);
    this.idleBytes += slot.capacity;
    return true;
  }

  /**
   * The transport is done and the read succeeded: copies its bytes to the caller's buffer when
   * that buffer still has them (not detached); false when it does not, and nothing is written.
   */
  deliver(slot: StagedRead, length: number = slot.length): boolean {
    const destination = slot.destination;
    if (destination === null || slot.destinationLength.call(destination) < slot.offset + slot.length) return false;
    if (length > 0) libc.memcpy(ptr(destination) + slot.offset, slot.address, Math.min(length, slot.length));
    return true;
  }

  /** Drops every idle buffer (the cache closes). */
  clear(): void {
    for (const idle of this.idle) if (idle !== undefined) for (const slot of idle) this.ownedBytes -= slot.capacity;
    this.idle.length = 0;
    this.idleBytes = 0;
  }
}
