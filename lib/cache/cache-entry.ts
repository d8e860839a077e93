// One buffer the cache knows (CacheEntry) and the registrations made over it (CacheRegistration).
// An entry references its buffer while any of its registrations is live, so the buffer's memory is
// never reused under them. It has one current registration, which new regions get, and older
// ones regions still hold after a growth; and it keeps its last region objects in four slots, so
// that a hit on a range seen before hands out the same object again instead of allocating one.
import type { Registration } from "../memory/provider.ts";
import type { MemoryRegionImpl } from "../memory/region.ts";
import type { AnyBuffer } from "../memory/buffer-intrinsics.ts";
import type { StagedRead } from "./read-staging.ts";

/** Region objects kept per entry for reuse on hits (distinct view ranges served without allocation). */
export const REGION_SLOTS = 4;

/** One registration of an entry: `[start, end)` bytes of its buffer. Regions carry it as theirs. */
export class CacheRegistration implements Registration {
  address = 0;
  length = 0;
  handle = 0;
  localKey = 0n;
  remoteKey = 0n;
  /** The provider's registration. */
  inner: Registration;
  entry: CacheEntry;
  /** Byte offsets into the entry's buffer. */
  start = 0;
  end = 0;
  /** Regions out that use this registration's keys. */
  holders = 0;
  /** Replaced by a wider registration or invalidated: deregistered when the last holder releases. */
  retired = false;
  /** Position in the cache's CacheRemains. */
  remainsAt = -1;

  constructor(inner: Registration, entry: CacheEntry, start: number, end: number) {
    this.inner = inner;
    this.entry = entry;
    this.set(inner, entry, start, end);
  }

  /**
   * Describes a new registration (a deregistered object is reused by the next miss: released
   * regions still pointing here only ever get DOUBLE_RELEASE, and carry their own keys).
   */
  set(inner: Registration, entry: CacheEntry, start: number, end: number): void {
    this.address = inner.address;
    this.length = inner.length;
    this.handle = inner.handle;
    this.localKey = inner.localKey;
    this.remoteKey = inner.remoteKey;
    this.inner = inner;
    this.entry = entry;
    this.start = start;
    this.end = end;
    this.holders = 0;
    this.retired = false;
    this.remainsAt = -1;
  }
}

/** The cache's record of one buffer object. */
export class CacheEntry {
  /** The buffer, referenced for as long as any of its registrations is live. */
  buffer: AnyBuffer;
  /** Address of the buffer's first byte (stable: buffers do not move once materialized). */
  address: number;
  /** The intrinsic byteLength getter of the buffer's kind. */
  lengthOf: (this: unknown) => number;
  /** The registration new regions get; null once the entry is dropped. */
  current: CacheRegistration | null = null;
  /** Older registrations still held by regions (after a growth); null while there are none. */
  retired: CacheRegistration[] | null = null;
  /** Regions out. */
  inUse: number = 0;
  /** In the cache's map (false once evicted, flushed, invalidated or closed). */
  live: boolean = true;
  /** LRU links (lru-list.ts), set only while the entry is unused and live. */
  newer: CacheEntry | null = null;
  older: CacheEntry | null = null;
  linked: boolean = false;
  /** Region objects served again on hits (fields, not an array: a miss allocates less, a hit reads less). */
  slot0: MemoryRegionImpl | null = null;
  slot1: MemoryRegionImpl | null = null;
  slot2: MemoryRegionImpl | null = null;
  slot3: MemoryRegionImpl | null = null;
  /** Regions out that are in no slot (a second acquire of a range already out, or full slots). */
  overflow: Set<MemoryRegionImpl> | null = null;
  /** Next slot to replace when every slot holds a region. */
  nextSlot: number = 0;
  /** Position in the cache's list of live entries (swept without a Map iterator). */
  index: number = -1;
  /** The staging buffer this entry registers, while a read uses it; null otherwise. */
  staging: StagedRead | null = null;

  constructor(buffer: AnyBuffer, address: number, lengthOf: (this: unknown) => number) {
    this.buffer = buffer;
    this.address = address;
    this.lengthOf = lengthOf;
  }

  /** A fresh entry's state (an entry dropped with nothing out is reused for the next miss). */
  reset(): void {
    this.current = null;
    this.retired = null;
    this.inUse = 0;
    this.live = true;
    this.newer = null;
    this.older = null;
    this.linked = false;
    this.clearSlots();
    this.overflow = null;
    this.nextSlot = 0;
    this.index = -1;
    this.staging = null;
  }

  /** Whether the buffer was detached, or shrank below the current registration. */
  lostMemory(): boolean {
    return this.lengthOf.call(this.buffer) < this.current!.end;
  }

  /** Every registration of the entry still live. */
  registrations(): CacheRegistration[] {
    const registrations = this.retired === null ? [] : [...this.retired];
    if (this.current !== null) registrations.push(this.current);
    return registrations;
  }

  // ---- region slots -------------------------------------------------------------------------------

  /**
   * Keeps a new region for reuse: in a free slot, else in one whose region is not out (round
   * robin), else (every slot's region out) only tracked among the overflow.
   */
  keepRegion(region: MemoryRegionImpl): void {
    let free = -1;
    for (let slot = 0; slot < REGION_SLOTS && free < 0; slot++) if (this.slot(slot) === null) free = slot;
    if (free < 0) {
      for (let step = 0; step < REGION_SLOTS && free < 0; step++) {
        const slot = (this.nextSlot + step) % REGION_SLOTS;
        if (!this.slot(slot)!.inUse) free = slot;
      }
      this.nextSlot = (this.nextSlot + 1) % REGION_SLOTS;
    }
    if (free >= 0) this.setSlot(free, region);
    else (this.overflow ??= new Set()).add(region);
  }

  /** Appends the entry's regions that are out to `out`. */
  collectRegionsOut(out: MemoryRegionImpl[]): void {
    for (let slot = 0; slot < REGION_SLOTS; slot++) {
      const region = this.slot(slot);
      if (region !== null && region.inUse) out.push(region);
    }
    if (this.overflow !== null) for (const region of this.overflow) out.push(region);
  }

  clearSlots(): void {
    this.slot0 = this.slot1 = this.slot2 = this.slot3 = null;
  }

  private slot(slot: number): MemoryRegionImpl | null {
    return slot === 0 ? this.slot0 : slot === 1 ? this.slot1 : slot === 2 ? this.slot2 : this.slot3;
  }

  private setSlot(slot: number, region: MemoryRegionImpl | null): void {
    if (slot === 0) this.slot0 = region;
    else if (slot === 1) this.slot1 = region;
    else if (slot === 2) this.slot2 = region;
    else this.slot3 = region;
  }
}

/**
 * Whether a slot's `region` serves a hit: over exactly `length` bytes at `address`, under
 * `registration`, and not out (the cache's regionOf reads the four slots with it).
 */
export function serves(region: MemoryRegionImpl | null, registration: CacheRegistration, address: number, length: number): boolean {
  return region !== null && !region.inUse && region.address === address && region.size === length && region.registration === registration;
}
