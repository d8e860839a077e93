// The registration cache: user memory registered once and served again, keyed by the buffer object.
//
// An entry belongs to one ArrayBuffer (or SharedArrayBuffer) object and keeps it referenced while
// it is registered, so the garbage collector never frees the memory under a registration: a new
// buffer at a reused address is a different key, hence a miss. That is why no memory hooks are
// needed (libfabric, UCX and Open MPI key by address and must watch munmap/free).
// What JavaScript can still do to a held buffer is detach it (transfer(), a transfer list): its
// memory moves to a buffer the cache never sees, which may be freed. Nothing reachable from
// JavaScript makes a buffer non-detachable (Bun pins buffers only inside its own native calls), so:
// a detach is seen at the buffer's next lookup, on flush() and by eviction scans (32 entries per
// scan, round robin), where the entry is invalidated and deregistered; an Endpoint's read never
// lands in a caller's buffer directly (read-staging.ts), and an operation whose buffer was
// detached in flight fails with DETACHED (finishLocal). Resizable ArrayBuffers, which could shrink
// under a registration, are refused, as registerUserRegion refuses them.
//
// Hot path (a hit): one Map lookup, a bounds check against the entry's registration, one
// ArrayBuffer length read, and a region object reused from the entry's slots (no allocation).
// Unused entries sit in an LRU list; acquire unlinks, the last release links at the newest end.
import { ptr } from "bun:ffi";
import * as libc from "../../ffi/libc.ts";
import { AllocToolsError, AllocToolsTypeError, AllocToolsRangeError } from "../errors.ts";
import { busyError } from "../engine/local-memory.ts";
import { DEFAULT_ACCESS, type RegionProvider, type Registration } from "../memory/provider.ts";
import { checkOut, MemoryRegionImpl, RegionFlag, setInUse, type MemoryRegion, type RegionOwner } from "../memory/region.ts";
import { MemoryRegionTraits } from "../memory/traits.ts";
import {
  arrayBufferByteLength, arrayBufferDetached, dataViewBuffer, dataViewByteLength, dataViewByteOffset, isResizableArrayBuffer,
  lengthGetterFor, type AnyBuffer,
} from "../memory/buffer-intrinsics.ts";
import { resizableBufferError } from "../memory/user-memory.ts";
import { ReadStaging, type StagedRead } from "./read-staging.ts";

/** Options of a RegistrationCache. */
export interface RegistrationCacheOptions {
  /**
   * Most buffers (entries) kept registered at once. Every small Buffer of Bun has an ArrayBuffer of
   * its own, so each costs an entry: this bound (with LRU eviction) is what keeps many small
   * Buffers from pinning without limit. Default 1024.
   */
  maxEntries?: number;
  /** Most bytes kept registered at once (retired registrations still held included). Default 256 MiB. */
  maxBytes?: number;
  /**
   * Buffers of at most this many bytes are registered whole at their first acquire, so that every
   * later view into them is a hit (1,000 views into a 1 MiB buffer: one registration). Larger
   * buffers register the pages the view touches, and grow as wider views arrive. Default 4 MiB.
   */
  wholeBufferBytes?: number;
  /** Access flags of every registration; default read, write, send, recv, remote read, remote write. */
  access?: number;
  /** @internal Where pinned bytes are reserved: a pool's maxPinnedBytes. */
  budget?: PinnedBudget;
}

/**
 * @internal What a pool lends its cache: pinned-byte books under its maxPinnedBytes. `reserve`
 * throws (AllocToolsError PINNED_LIMIT) when the bytes are not available.
 */
export interface PinnedBudget {
  reserve(bytes: number, what: string): void;
  release(bytes: number): void;
}

/** Counters of a RegistrationCache, exact at the moment of the call. */
export interface RegistrationCacheStats {
  /** Acquires served by an existing registration. */
  readonly hits: number;
  /** Acquires that registered (a new buffer, or a view wider than the registration). */
  readonly misses: number;
  /** Unused entries deregistered to make room (maxEntries, maxBytes, the pool's maxPinnedBytes). */
  readonly evictions: number;
  /** Entries dropped because their buffer was detached (transfer(), a transfer list). */
  readonly invalidations: number;
  /** Buffers cached now. */
  readonly entries: number;
  /** Bytes registered now (including older registrations still held by regions). */
  readonly bytes: number;
  /** Regions out now (acquired and not released). */
  readonly inUse: number;
  /** Registrations live now: one per entry, plus older ones still held after a growth. */
  readonly registrations: number;
  /** Registrations made since the cache was made. */
  readonly registered: number;
  /** Registrations deregistered since the cache was made. */
  readonly deregistered: number;
  /**
   * Endpoint reads into plain views since the cache was made: each landed in the cache's own
   * staging memory and was copied into the view once the transport was done (see finishLocal).
   */
  readonly stagedReads: number;
  /** Bytes of staging memory the cache owns now (in use and idle; its registrations count in `bytes`). */
  readonly stagingBytes: number;
}

const DEFAULT_MAX_ENTRIES = 1024;
const DEFAULT_MAX_BYTES = 256 * 1024 * 1024;
const DEFAULT_WHOLE_BUFFER_BYTES = 4 * 1024 * 1024;
/** Entries an eviction scan checks for detached buffers (all of them up to this many). */
const SWEEP_PER_SCAN = 32;
/** Most bytes of idle staging buffers a cache keeps for the next reads (read-staging.ts). */
const IDLE_STAGING_BYTES = 16 * 1024 * 1024;
/** Region objects kept per entry for reuse on hits (distinct view ranges served without allocation). */
const REGION_SLOTS = 4;

type Buffer = AnyBuffer;
const EMPTY_BUFFER: Buffer = new ArrayBuffer(0);

/** Whether `buffer` was detached (transfer(), structured transfer); SharedArrayBuffers never are. */
function isDetached(buffer: Buffer, lengthOf: (this: unknown) => number): boolean {
  return lengthOf === arrayBufferByteLength && arrayBufferDetached.call(buffer);
}

/**
 * The buffer and byte range of `memory`; false when it is no buffer or view. The buffer is proven
 * a real one by its intrinsic length getter; a typed array's offset and length are read as plain
 * properties (intrinsic calls cost ~10 ns each) and checked against that length by the caller, so
 * a view that lies about them gets a RangeError or a region inside its buffer, never outside.
 */
class MemoryBytes {
  buffer: Buffer | null = null;
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
      // A DataView's offset and length getters throw once its buffer is detached or too short.
      try {
        this.offset = dataViewByteOffset.call(memory);
        this.length = dataViewByteLength.call(memory);
      } catch {
        this.offset = 0;
        this.length = 0;
      }
    }
    if (typeof buffer !== "object" || buffer === null) return false;
    const getter = lengthGetterFor(buffer);
    try {
      this.total = getter.call(buffer);
    } catch {
      return false; // a look-alike, or an object with a buffer's prototype
    }
    if (this.length < 0) this.length = this.total;
    this.buffer = buffer as Buffer;
    this.lengthOf = getter;
    return true;
  }
}

// ---- the garbage-collection backstop ---------------------------------------------------------------

/**
 * Every live registration of a cache and the buffer under it, in parallel arrays. The
 * garbage-collection backstop holds this strongly, so the buffers stay alive (their memory never
 * reused) until their registrations are gone; it holds nothing that leads back to the cache (no
 * entry, no region: a region's owner is the cache), so the cache itself can be collected.
 */
class CacheRemains {
  readonly registrations: Registration[] = [];
  readonly buffers: Buffer[] = [];
  constructor(readonly traits: MemoryRegionTraits) {}
}

const backstop = new FinalizationRegistry<CacheRemains>((remains) => {
  const count = remains.registrations.length;
  for (const registration of remains.registrations) {
    try { remains.traits.deregister(registration); } catch { /* provider gone */ }
  }
  remains.registrations.length = 0;
  remains.buffers.length = 0;
  if (count > 0) {
    process.emitWarning(`alloctools: a RegistrationCache was garbage-collected without close(); deregistered ${count} registration(s)`, "AllocToolsLeak");
  }
});

// ---- entries and their registrations -------------------------------------------------------------

/** One registration of an entry: `[start, end)` bytes of its buffer. Regions carry it as theirs. */
class CacheRegistration implements Registration {
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
class CacheEntry {
  /** The buffer, referenced for as long as any of its registrations is live. */
  buffer: Buffer;
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
  /** LRU links, set only while the entry is unused and live. */
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

  constructor(buffer: Buffer, address: number, lengthOf: (this: unknown) => number) {
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
    this.slot0 = null;
    this.slot1 = null;
    this.slot2 = null;
    this.slot3 = null;
    this.overflow = null;
    this.nextSlot = 0;
    this.index = -1;
    this.staging = null;
  }

  slot(i: number): MemoryRegionImpl | null {
    return i === 0 ? this.slot0 : i === 1 ? this.slot1 : i === 2 ? this.slot2 : this.slot3;
  }

  setSlot(i: number, region: MemoryRegionImpl | null): void {
    if (i === 0) this.slot0 = region;
    else if (i === 1) this.slot1 = region;
    else if (i === 2) this.slot2 = region;
    else this.slot3 = region;
  }

  clearSlots(): void {
    this.slot0 = this.slot1 = this.slot2 = this.slot3 = null;
  }

  /** Every registration of the entry still live. */
  registrations(): CacheRegistration[] {
    const regs = this.retired === null ? [] : [...this.retired];
    if (this.current !== null) regs.push(this.current);
    return regs;
  }
}

/**
 * A registration cache over one provider: `acquire(memory)` gives a user region over exactly the
 * bytes of `memory`, registering only when the buffer (or the part of it asked for) is not
 * registered yet; `release(region)` gives it back, leaving the registration cached.
 *
 * Guarantees:
 * - An entry belongs to one buffer object and references it while registered: no registration is
 *   ever served for memory that changed owner (no memory hooks needed).
 * - One registration serves every view into a buffer; it grows (page-aligned, within the buffer)
 *   when a wider view arrives. The previous registration stays live while regions hold it.
 * - A detached buffer's entry is invalidated at its next lookup, on flush(), and by eviction scans
 *   (every entry while there are at most 32, else the next 32 in turn). Resizable ArrayBuffers
 *   (they could shrink under a registration) are refused with a TypeError; a growable
 *   SharedArrayBuffer is registered at its length then, and again wider when a wider view comes.
 * - An entry with regions out is never evicted; unused entries go LRU when maxEntries or maxBytes
 *   is reached (or when the owning pool needs room under its maxPinnedBytes).
 *
 * One cache per thread: its buffers are that thread's objects. Keys stay unique across Workers
 * because the provider's key counter is shared.
 *
 * Lifetime: made over an open provider (or by a pool for `pool.userRegion`, which closes it);
 * `close()` (or `using`) deregisters everything, is idempotent and refuses with BUSY while RMA
 * uses one of its regions. Close it before its provider. A cache dropped without close() has its
 * registrations released by a garbage-collection backstop.
 *
 * Hot path: `acquire` of a typed-array view the cache already registered, reusing one of the
 * entry's last four region objects, and `release` allocate nothing and make no system call. A
 * miss registers (a provider call, pinning included); DataViews and views with new offsets or
 * lengths take the slow path and may allocate a region object.
 */
export class RegistrationCache implements RegionOwner, Disposable {
  /** The provider registrations are made with. */
  readonly provider: RegionProvider;
  /** The registration calls and remote addressing (the pool's traits when a pool owns the cache). */
  readonly traits: MemoryRegionTraits;
  /** Most entries (buffers) kept registered at once. */
  readonly maxEntries: number;
  /** Most bytes kept registered at once. */
  readonly maxBytes: number;
  /** Buffers up to this size are registered whole at their first acquire. */
  readonly wholeBufferBytes: number;
  private readonly budget: PinnedBudget | null;
  private readonly entries = new Map<Buffer, CacheEntry>();
  /** The same entries as a list, for sweeps. */
  private readonly live: CacheEntry[] = [];
  /** LRU list of unused live entries: newest at the head, the next to evict at the tail. */
  private newest: CacheEntry | null = null;
  private oldest: CacheEntry | null = null;
  /** Entries dropped while regions still held them (deregistered at their last release or at close). */
  private readonly orphans = new Set<CacheEntry>();
  /** An entry dropped with no region out, reused by the next miss (one allocation less per miss). */
  private spare: CacheEntry | null = null;
  /** A registration object dropped with no holder, reused by the next registration. */
  private spareRegistration: CacheRegistration | null = null;
  /** What the garbage-collection backstop deregisters if the cache is collected unclosed. */
  private readonly remains: CacheRemains;
  /** The CacheRegistration at each position of `remains` (the cache's side: it leads to regions). */
  private readonly remainsOwners: CacheRegistration[] = [];
  /** The entry a miss is working on: no eviction may take it. */
  private busyEntry: CacheEntry | null = null;
  private readonly bytesOf = new MemoryBytes();
  /** Where the next eviction scan's sweep starts in `live`. */
  private sweepAt = 0;
  /** span()'s result (fields: a miss allocates no array). */
  private spanStart = 0;
  private spanEnd = 0;
  /** Where Endpoint reads into plain views land (read-staging.ts). */
  private readonly staging: ReadStaging;
  private closed_ = false;
  // Books.
  private hits = 0;
  private misses = 0;
  private evictions = 0;
  private invalidations = 0;
  private bytes = 0;
  private inUse = 0;
  private liveRegistrations = 0;
  private registered = 0;
  private deregistered = 0;
  private stagedReads = 0;

  /** A cache over `provider` (a HostProvider, LibfabricProvider, or a pool's provider). */
  constructor(provider: RegionProvider, options: RegistrationCacheOptions = {}) {
    if (provider === null || typeof provider !== "object" || typeof provider.register !== "function") {
      throw new AllocToolsTypeError("RegistrationCache needs a RegionProvider (HostProvider, LibfabricProvider, or openProvider())");
    }
    if (options === null || typeof options !== "object") throw new AllocToolsTypeError("RegistrationCache options must be an object");
    if (provider.closed) throw new AllocToolsError("PROVIDER_CLOSED", `provider ${provider.name} is closed`);
    this.provider = provider;
    this.traits = new MemoryRegionTraits(provider, options.access ?? DEFAULT_ACCESS);
    this.maxEntries = checkLimit("maxEntries", options.maxEntries, DEFAULT_MAX_ENTRIES);
    this.maxBytes = checkLimit("maxBytes", options.maxBytes, DEFAULT_MAX_BYTES);
    this.wholeBufferBytes = checkLimit("wholeBufferBytes", options.wholeBufferBytes, DEFAULT_WHOLE_BUFFER_BYTES);
    this.budget = options.budget ?? null;
    this.remains = new CacheRemains(this.traits);
    // Power-of-two staging buffers only up to what one entry may register (maxBytes).
    const largestKept = 2 ** Math.floor(Math.log2(Math.min(this.wholeBufferBytes, this.maxBytes)));
    this.staging = new ReadStaging(largestKept, Math.min(IDLE_STAGING_BYTES, this.maxBytes));
    backstop.register(this, this.remains, this);
  }

  /** Whether close() was called. */
  get closed(): boolean {
    return this.closed_;
  }

  /**
   * A user region (`isUser`, `isCached`) over exactly the bytes of `memory`, with keys and a remote
   * address a peer can use. Give it back with `release`. Throws TypeError for anything but a buffer
   * or view and for a resizable ArrayBuffer or a view of one (as registerUserRegion: it could
   * shrink under the registration), RangeError for an empty one, AllocToolsError DETACHED for a
   * detached buffer, CACHE_FULL when every entry is in use at a limit, CACHE_CLOSED after close(),
   * and the provider's error when registration fails; a failed acquire leaves nothing registered.
   */
  acquire(memory: ArrayBuffer | SharedArrayBuffer | ArrayBufferView): MemoryRegion {
    // DataViews take the slow path: their getters throw once the buffer is detached.
    if (this.closed_ || !ArrayBuffer.isView(memory) || memory instanceof DataView) return this.acquireSlow(memory, null);
    // Plain property reads: a view that lies about them (own properties) still gets a region
    // inside a buffer the cache registered, never outside one; NaN and fractions fail the checks.
    const buffer = memory.buffer;
    const offset = memory.byteOffset;
    const length = memory.byteLength;
    const entry = this.entries.get(buffer);
    if (entry === undefined) return this.acquireSlow(memory, buffer);
    const reg = entry.current!;
    if (!(length > 0 && offset >= reg.start && offset + length <= reg.end && Number.isInteger(offset) && Number.isInteger(length)) ||
        entry.lengthOf.call(buffer) < reg.end) {
      return this.acquireSlow(memory, null);
    }
    this.hits++;
    return this.regionOf(entry, reg, offset, length);
  }

  /**
   * Gives back a region from `acquire`; its registration stays cached. Throws TypeError for what
   * is not a region, FOREIGN_REGION for another owner's, DOUBLE_RELEASE when it is not out, BUSY
   * while RMA operations use it, CACHE_CLOSED after close().
   */
  release(region: MemoryRegion): void {
    const r = region as MemoryRegionImpl;
    if (!MemoryRegionImpl.isGenuine(r) || r.owner !== this || !r.inUse || r.inFlight !== 0 || this.closed_) return this.releaseSlow(r);
    setInUse(r, false);
    this.inUse--;
    const reg = r.registration as CacheRegistration;
    const entry = reg.entry;
    if (entry.overflow !== null) entry.overflow.delete(r);
    if (--reg.holders === 0 && reg.retired) this.dropRetired(entry, reg);
    if (--entry.inUse === 0) {
      if (entry.live) this.linkNewest(entry);
      else this.orphans.delete(entry);
    }
    if (entry.staging !== null) this.unstage(entry);
  }

  /** RegionOwner: `region[Symbol.dispose]()` releases through here. */
  releaseRegion(region: MemoryRegion): void {
    this.release(region);
  }

  /**
   * The local memory of an RMA operation given as a plain view, for `length` bytes from its start.
   * A write gets a region over exactly `view`, acquired here (zero-copy: the transport only reads
   * it). A read gets a region over the cache's own staging memory, which remembers the view: the
   * transport writes there, and finishLocal copies the bytes into the view once it is done (a
   * caller's buffer can be transferred away and its memory reused while the read is in flight;
   * staging memory cannot). Either way the caller gives the region back with `finishLocal` once
   * the transport no longer touches it, or with `release` if it never posted. Throws, having
   * acquired nothing: RangeError when `length` is not an integer in [1, view.byteLength], and
   * what `acquire` throws for the view (TypeError for a resizable buffer, DETACHED, ...).
   * @internal For endpoints (it returns the library's own region type).
   */
  resolveLocal(operation: string, view: ArrayBufferView, length: number): MemoryRegionImpl {
    if (!ArrayBuffer.isView(view)) throw new AllocToolsTypeError(`${operation} takes a MemoryRegion, a MemoryRegionPointer or (with a cache) an ArrayBufferView as local memory`);
    if (!Number.isSafeInteger(length) || length <= 0 || length > view.byteLength) {
      throw new AllocToolsRangeError(`${operation} of ${String(length)} bytes does not fit the local view's ${view.byteLength} bytes`);
    }
    if (operation !== "read" && operation !== "recv") return this.acquire(view) as MemoryRegionImpl;
    return this.stageRead(operation, view, length);
  }

  /**
   * The transport is done with an operation's region from resolveLocal (completion, error
   * completion, refused post, endpoint closed): for a read (or a receive) that succeeded while its
   * caller still waits (`waited`), copies the staged bytes into the view (a receive's `delivered`
   * bytes only: what the message held); then gives the region back. Returns
   * the operation's outcome: `error` as given, or AllocToolsError DETACHED when the view's buffer
   * was detached (transfer(), a transfer list) while the operation was in flight. A read's bytes
   * then go nowhere; a write's target may hold other bytes (the transport read memory the buffer
   * no longer owned). Never throws: a provider error while giving the region back (a deregistration
   * that failed) becomes the outcome of an operation that had none.
   * @internal For endpoints, once per operation, after its region left the transport.
   */
  finishLocal(operation: string, region: MemoryRegionImpl, error: unknown, waited: boolean, delivered?: number): unknown {
    const reg = region.registration as CacheRegistration;
    const entry = reg.entry;
    const staged = entry.staging !== null && entry.staging.region === region ? entry.staging : null;
    if (error === null && waited) {
      const intact = staged !== null ? this.staging.deliver(staged, delivered) : entry.lengthOf.call(entry.buffer) >= reg.end;
      if (!intact) error = detachedInFlight(operation, staged !== null);
    }
    if (!this.closed_ && region.inUse && region.inFlight === 0) {
      try {
        this.release(region);
      } catch (e) {
        error ??= e;
      }
    } else if (staged !== null) {
      entry.staging = null; // a closed cache took the region back; the caller's buffer is not kept
      staged.clear();
    }
    return error;
  }

  /**
   * Throws unless `region` (a region of this cache) may be handed to C: out, its cache open, its
   * buffer neither detached nor shrunk below it.
   * @internal For endpoints, before posting.
   */
  assertUsable(operation: string, region: MemoryRegionImpl): void {
    const reg = region.registration as CacheRegistration;
    if (this.closed_) throw new AllocToolsError("CACHE_CLOSED", `${operation}: the registration cache is closed`);
    region.assertInUse(operation);
    const entry = reg.entry;
    if (entry.lengthOf.call(entry.buffer) < reg.end) {
      throw new AllocToolsError("DETACHED", `${operation}: the buffer under the cached region at 0x${region.address.toString(16)} was detached or shrank`);
    }
  }

  /** Counters and sizes now. */
  stats(): RegistrationCacheStats {
    return {
      hits: this.hits, misses: this.misses, evictions: this.evictions, invalidations: this.invalidations,
      entries: this.entries.size, bytes: this.bytes, inUse: this.inUse, registrations: this.liveRegistrations,
      registered: this.registered, deregistered: this.deregistered, stagedReads: this.stagedReads,
      stagingBytes: this.staging.ownedBytes,
    };
  }

  /**
   * Deregisters every entry not in use (and drops entries whose buffer was detached,
   * counted as invalidations). Entries with regions out stay. Returns the number of unused
   * entries deregistered.
   */
  flush(): number {
    this.assertOpen("flush");
    this.sweepInvalid();
    let dropped = 0;
    while (this.oldest !== null) {
      this.drop(this.oldest);
      dropped++;
    }
    return dropped;
  }

  /**
   * @internal Evicts unused entries, oldest first, until `bytes` registered bytes are freed or
   * none is left: how a pool makes room under maxPinnedBytes. Returns the bytes freed.
   */
  evictBytes(bytes: number): number {
    if (this.closed_) return 0;
    const before = this.bytes;
    this.sweepInvalid();
    while (before - this.bytes < bytes && this.evictOne()) { /* evicted one */ }
    return before - this.bytes;
  }

  /** @internal Regions out now (for a pool's leak report). */
  regionsInUse(): MemoryRegionImpl[] {
    const out: MemoryRegionImpl[] = [];
    const collect = (entry: CacheEntry) => {
      for (let i = 0; i < REGION_SLOTS; i++) {
        const r = entry.slot(i);
        if (r !== null && r.inUse) out.push(r);
      }
      if (entry.overflow !== null) for (const r of entry.overflow) out.push(r);
    };
    for (const entry of this.live) if (entry.inUse > 0) collect(entry);
    for (const entry of this.orphans) collect(entry);
    return out;
  }

  /**
   * Deregisters everything, regions out included (they are reported by a pool's close, and fail
   * their next use). Idempotent. Refuses with BUSY, changing nothing, while an RMA operation in
   * flight uses one of its regions. Throws the first provider error after trying every registration.
   */
  close(): void {
    if (this.closed_) return;
    const held = this.regionsInUse();
    for (const r of held) if (r.inFlight !== 0) throw busyError("RegistrationCache.close", r);
    this.closed_ = true;
    backstop.unregister(this);
    for (const r of held) setInUse(r, false);
    let firstError: unknown;
    const all = [...this.live, ...this.orphans];
    this.entries.clear();
    this.live.length = 0;
    this.orphans.clear();
    this.newest = this.oldest = null;
    for (const entry of all) {
      entry.live = false;
      entry.linked = false;
      entry.inUse = 0;
      const regs = entry.registrations();
      entry.current = null;
      entry.retired = null;
      for (const reg of regs) {
        try { this.deregister(reg); } catch (e) { firstError ??= e; }
      }
      entry.clearSlots();
      entry.overflow = null;
      entry.staging?.clear();
      entry.staging = null;
    }
    this.staging.clear();
    this.inUse = 0;
    this.spare = null;
    this.spareRegistration = null;
    if (firstError !== undefined) throw firstError;
  }

  /** `using cache = new RegistrationCache(...)`: close(). */
  [Symbol.dispose](): void {
    this.close();
  }

  // ---- hits ---------------------------------------------------------------------------------------

  /** A region over [offset, offset + length) of `entry` under `reg`: one from a slot, or a new one. */
  private regionOf(entry: CacheEntry, reg: CacheRegistration, offset: number, length: number): MemoryRegionImpl {
    const address = entry.address + offset;
    let r = entry.slot0;
    if (r === null || r.inUse || r.address !== address || r.size !== length || r.registration !== reg) {
      r = entry.slot1;
      if (r === null || r.inUse || r.address !== address || r.size !== length || r.registration !== reg) {
        r = entry.slot2;
        if (r === null || r.inUse || r.address !== address || r.size !== length || r.registration !== reg) {
          r = entry.slot3;
          if (r === null || r.inUse || r.address !== address || r.size !== length || r.registration !== reg) {
            return this.newRegion(entry, reg, offset, length);
          }
        }
      }
    }
    this.take(entry, reg, r, length);
    return r;
  }

  private take(entry: CacheEntry, reg: CacheRegistration, region: MemoryRegionImpl, length: number): void {
    checkOut(region, length);
    reg.holders++;
    this.inUse++;
    if (entry.inUse++ === 0 && entry.linked) this.unlink(entry);
  }

  private newRegion(entry: CacheEntry, reg: CacheRegistration, offset: number, length: number): MemoryRegionImpl {
    const address = entry.address + offset;
    const region = new MemoryRegionImpl(reg, address, length, RegionFlag.USER | RegionFlag.CACHED,
      this.traits.remoteAddress(reg, address), new Uint8Array(entry.buffer, offset, length), this, -1, -1, entry);
    // A free slot, else one whose region is not out (round robin), else none: the region is only tracked.
    let slot = -1;
    for (let i = 0; i < REGION_SLOTS && slot < 0; i++) if (entry.slot(i) === null) slot = i;
    if (slot < 0) {
      for (let k = 0; k < REGION_SLOTS && slot < 0; k++) {
        const i = (entry.nextSlot + k) % REGION_SLOTS;
        if (!entry.slot(i)!.inUse) slot = i;
      }
      entry.nextSlot = (entry.nextSlot + 1) % REGION_SLOTS;
    }
    if (slot >= 0) entry.setSlot(slot, region);
    else (entry.overflow ??= new Set()).add(region);
    this.take(entry, reg, region, length);
    return region;
  }

  // ---- staged reads --------------------------------------------------------------------------------

  /** A read into `view`: a staging buffer of at least `length` bytes, acquired, remembering the view. */
  private stageRead(operation: string, view: ArrayBufferView, length: number): MemoryRegionImpl {
    this.assertOpen(operation);
    const bytes = this.bytesOf;
    if (!bytes.read(view)) throw new AllocToolsTypeError(`${operation} takes an ArrayBufferView as local memory, got ${describe(view)}`);
    const buffer = bytes.buffer!;
    bytes.buffer = null; // the scratch must not keep a buffer alive
    if (bytes.total === 0 && isDetached(buffer, bytes.lengthOf)) throw new AllocToolsError("DETACHED", `${operation}: the buffer is detached (transferred); it has no memory to read into`);
    if (isResizableArrayBuffer(buffer)) throw resizableBufferError(operation, buffer as ArrayBuffer);
    const offset = bytes.offset;
    if (!(Number.isSafeInteger(offset) && offset >= 0 && offset + length <= bytes.total)) {
      throw new AllocToolsRangeError(`${operation}: ${length} bytes at offset ${String(offset)} do not fit the view's buffer of ${bytes.total} bytes`);
    }
    const slot = this.staging.take(length);
    let region: MemoryRegionImpl;
    try {
      region = this.acquire(slot.memory) as MemoryRegionImpl;
    } catch (e) {
      this.staging.give(slot);
      throw e;
    }
    (region.registration as CacheRegistration).entry.staging = slot;
    slot.region = region;
    slot.destination = buffer;
    slot.destinationLength = bytes.lengthOf;
    slot.offset = offset;
    slot.length = length;
    this.stagedReads++;
    return region;
  }

  /** A read's staging buffer is free again: kept for the next read, or dropped with its entry. */
  private unstage(entry: CacheEntry): void {
    const slot = entry.staging!;
    entry.staging = null;
    if (!this.staging.give(slot) && entry.live && entry.inUse === 0) this.drop(entry);
  }

  // ---- misses and bad input -----------------------------------------------------------------------

  /** Everything but a hit. `uncached`: a buffer the caller just looked up and did not find. */
  private acquireSlow(memory: unknown, uncached: Buffer | null): MemoryRegion {
    this.assertOpen("acquire");
    const bytes = this.bytesOf;
    if (!bytes.read(memory)) {
      throw new AllocToolsTypeError(`acquire takes an ArrayBuffer, SharedArrayBuffer or ArrayBufferView, got ${describe(memory)}`);
    }
    const buffer = bytes.buffer!;
    const offset = bytes.offset;
    const length = bytes.length;
    bytes.buffer = null; // the scratch must not keep a buffer alive
    if (!(Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0 && offset + length <= bytes.total)) {
      throw new AllocToolsRangeError(`acquire: a view of ${String(length)} bytes at offset ${String(offset)} does not fit its buffer's ${bytes.total} bytes`);
    }
    let entry = buffer === uncached ? undefined : this.entries.get(buffer);
    if (entry !== undefined && bytes.total < entry.current!.end) {
      this.invalidate(entry);
      entry = undefined;
    }
    if (bytes.total === 0 && isDetached(buffer, bytes.lengthOf)) throw new AllocToolsError("DETACHED", "acquire: the buffer is detached (transferred); it has no memory to register");
    // Never cached (so never a hit): resize() could shrink it under the registration.
    if (isResizableArrayBuffer(buffer)) throw resizableBufferError("acquire", buffer as ArrayBuffer);
    if (length === 0) throw new AllocToolsRangeError("acquire: cannot register an empty buffer or view");
    if (entry === undefined) return this.miss(buffer, bytes.lengthOf, bytes.total, offset, length);
    const reg = entry.current!;
    if (offset >= reg.start && offset + length <= reg.end) {
      this.hits++;
      return this.regionOf(entry, reg, offset, length);
    }
    return this.grow(entry, offset, length);
  }

  /** A buffer not cached: a new entry with its first registration. */
  private miss(buffer: Buffer, lengthOf: (this: unknown) => number, total: number, offset: number, length: number): MemoryRegion {
    const address = ptr(buffer);
    let entry = this.spare;
    if (entry !== null) {
      this.spare = null;
      entry.buffer = buffer;
      entry.address = address;
      entry.lengthOf = lengthOf;
    } else {
      entry = new CacheEntry(buffer, address, lengthOf);
    }
    let start = 0;
    let end = total;
    if (total > this.wholeBufferBytes) {
      this.span(address, total, offset, length, 0, 0);
      start = this.spanStart;
      end = this.spanEnd;
    }
    this.makeRoom(1, end - start, null);
    const reg = this.register(entry, start, end);
    entry.current = reg;
    this.entries.set(buffer, entry);
    entry.index = this.live.length;
    this.live.push(entry);
    this.misses++;
    return this.newRegion(entry, reg, offset, length);
  }

  /** A view wider than the entry's registration: a wider one replaces it (the old one lives while held). */
  private grow(entry: CacheEntry, offset: number, length: number): MemoryRegion {
    const old = entry.current!;
    const total = entry.lengthOf.call(entry.buffer);
    let start = 0;
    let end = total;
    if (total > this.wholeBufferBytes) {
      this.span(entry.address, total, offset, length, old.start, old.end);
      start = this.spanStart;
      end = this.spanEnd;
    }
    this.busyEntry = entry;
    let reg: CacheRegistration;
    try {
      this.makeRoom(0, end - start, entry);
      reg = this.register(entry, start, end);
    } finally {
      this.busyEntry = null;
    }
    entry.current = reg;
    if (old.holders > 0) {
      old.retired = true;
      (entry.retired ??= []).push(old);
    } else {
      this.deregister(old);
    }
    this.misses++;
    return this.newRegion(entry, reg, offset, length);
  }

  /**
   * The byte range to register for a view of a buffer above wholeBufferBytes: the view's pages
   * clipped to the buffer, joined with [oldStart, oldEnd) and at least doubled on growth
   * (a buffer walked through in order costs log n registrations, not n). Into spanStart, spanEnd.
   */
  private span(address: number, total: number, offset: number, length: number, oldStart: number, oldEnd: number): void {
    const page = libc.pageSize;
    const pageDown = (at: number) => Math.max(0, Math.floor((address + at) / page) * page - address);
    const pageUp = (at: number) => Math.min(total, Math.ceil((address + at) / page) * page - address);
    let start = pageDown(offset);
    let end = pageUp(offset + length);
    if (oldEnd > oldStart) {
      start = Math.min(start, oldStart);
      end = Math.max(end, oldEnd);
      const want = 2 * (oldEnd - oldStart);
      if (end - start < want) {
        if (offset >= oldStart) end = pageUp(start + want);
        else start = pageDown(end - want);
      }
    }
    this.spanStart = start;
    this.spanEnd = end;
  }

  /**
   * Room for `entries` more entries and `bytes` more registered bytes: invalid entries first, then
   * unused ones, oldest first. Throws CACHE_FULL when regions out hold everything.
   */
  private makeRoom(entries: number, bytes: number, keep: CacheEntry | null): void {
    if (bytes > this.maxBytes) {
      throw new AllocToolsError("CACHE_FULL", `acquire needs ${bytes} registered bytes, more than the cache's maxBytes (${this.maxBytes}); register it uncached (registerUserRegion)`);
    }
    if (this.entries.size + entries <= this.maxEntries && this.bytes + bytes <= this.maxBytes) return;
    let swept = this.live.length <= SWEEP_PER_SCAN;
    this.sweepSome();
    while (this.entries.size + entries > this.maxEntries || this.bytes + bytes > this.maxBytes) {
      if (this.evictOne(keep)) continue;
      if (!swept) {
        swept = true;
        this.sweepInvalid(); // before refusing: every entry, not only this scan's share
        continue;
      }
      throw new AllocToolsError("CACHE_FULL",
        `acquire needs ${entries} more entr${entries === 1 ? "y" : "ies"} and ${bytes} more bytes; the cache holds ${this.entries.size} of maxEntries ${this.maxEntries} and ${this.bytes} of maxBytes ${this.maxBytes}, all with regions out`);
    }
  }

  /** Evicts the least recently used unused entry (never `keep`); false when there is none. */
  private evictOne(keep: CacheEntry | null = this.busyEntry): boolean {
    let entry = this.oldest;
    if (entry !== null && entry === keep) entry = entry.newer;
    if (entry === null) return false;
    this.evictions++;
    this.drop(entry);
    return true;
  }

  /**
   * An eviction scan's check for detached buffers: every entry while there are at most
   * SWEEP_PER_SCAN, else the next SWEEP_PER_SCAN round robin (every entry within
   * ceil(entries / SWEEP_PER_SCAN) + 1 scans), so that a miss at capacity stays O(1).
   */
  private sweepSome(): void {
    const live = this.live;
    if (live.length <= SWEEP_PER_SCAN) return this.sweepInvalid();
    // Downwards: a drop moves the last entry into the hole, and the last ones were checked first,
    // so no entry present when a round starts is skipped in that round.
    let at = this.sweepAt;
    for (let n = 0; n < SWEEP_PER_SCAN; n++) {
      if (at < 0 || at >= live.length) at = live.length - 1;
      const entry = live[at]!;
      if (entry.lengthOf.call(entry.buffer) < entry.current!.end) this.invalidate(entry);
      at--;
    }
    this.sweepAt = at;
  }

  /** Drops every entry whose buffer was detached (flush, and before refusing room). */
  private sweepInvalid(): void {
    const live = this.live;
    for (let i = live.length - 1; i >= 0; i--) {
      const entry = live[i]!;
      if (entry.lengthOf.call(entry.buffer) < entry.current!.end) this.invalidate(entry);
    }
  }

  private invalidate(entry: CacheEntry): void {
    this.invalidations++;
    this.drop(entry);
  }

  /** Takes `entry` out of the cache: registrations no region holds are deregistered now, the rest at their last release. */
  private drop(entry: CacheEntry): void {
    this.entries.delete(entry.buffer);
    const last = this.live.pop()!;
    if (last !== entry) {
      this.live[entry.index] = last;
      last.index = entry.index;
    }
    entry.index = -1;
    if (entry.linked) this.unlink(entry);
    entry.live = false;
    const reg = entry.current!;
    entry.current = null;
    entry.clearSlots();
    if (reg.holders > 0) {
      reg.retired = true;
      (entry.retired ??= []).push(reg);
    } else {
      this.deregister(reg);
    }
    if (entry.inUse > 0) {
      this.orphans.add(entry);
    } else {
      // Nothing out refers to either object any more (but released regions, which only ever
      // get DOUBLE_RELEASE): the next miss reuses them.
      entry.reset();
      entry.buffer = EMPTY_BUFFER; // the spare must not keep the dropped buffer alive
      this.spare = entry;
      this.spareRegistration = reg;
    }
  }

  private dropRetired(entry: CacheEntry, reg: CacheRegistration): void {
    const retired = entry.retired!;
    retired.splice(retired.indexOf(reg), 1);
    if (retired.length === 0) entry.retired = null;
    this.deregister(reg);
  }

  private register(entry: CacheEntry, start: number, end: number): CacheRegistration {
    const bytes = end - start;
    this.budget?.reserve(bytes, `a cached registration of ${bytes} bytes`);
    let inner: Registration;
    try {
      inner = this.traits.register(entry.address + start, bytes);
    } catch (e) {
      this.budget?.release(bytes);
      throw e;
    }
    this.bytes += bytes;
    this.liveRegistrations++;
    this.registered++;
    let reg = this.spareRegistration;
    if (reg !== null) {
      this.spareRegistration = null;
      reg.set(inner, entry, start, end);
    } else {
      reg = new CacheRegistration(inner, entry, start, end);
    }
    const remains = this.remains;
    reg.remainsAt = remains.registrations.length;
    remains.registrations.push(inner);
    remains.buffers.push(entry.buffer);
    this.remainsOwners.push(reg);
    return reg;
  }

  private deregister(reg: CacheRegistration): void {
    const bytes = reg.end - reg.start;
    this.bytes -= bytes;
    this.liveRegistrations--;
    this.deregistered++;
    this.budget?.release(bytes);
    this.forget(reg);
    this.traits.deregister(reg.inner);
  }

  /** Takes `reg` out of `remains` (the last one moves into its place). */
  private forget(reg: CacheRegistration): void {
    const remains = this.remains;
    const owners = this.remainsOwners;
    const at = reg.remainsAt;
    const last = owners.length - 1;
    if (at !== last) {
      const moved = owners[last]!;
      owners[at] = moved;
      moved.remainsAt = at;
      remains.registrations[at] = remains.registrations[last]!;
      remains.buffers[at] = remains.buffers[last]!;
    }
    owners.pop();
    remains.registrations.pop();
    remains.buffers.pop();
    reg.remainsAt = -1;
  }

  // ---- the LRU list -------------------------------------------------------------------------------

  private linkNewest(entry: CacheEntry): void {
    entry.newer = null;
    entry.older = this.newest;
    if (this.newest !== null) this.newest.newer = entry;
    else this.oldest = entry;
    this.newest = entry;
    entry.linked = true;
  }

  private unlink(entry: CacheEntry): void {
    const newer = entry.newer;
    const older = entry.older;
    if (newer !== null) newer.older = older;
    else this.newest = older;
    if (older !== null) older.newer = newer;
    else this.oldest = newer;
    entry.newer = entry.older = null;
    entry.linked = false;
  }

  // ---- errors -------------------------------------------------------------------------------------

  private releaseSlow(r: MemoryRegionImpl): void {
    if (!MemoryRegionImpl.isGenuine(r)) throw new AllocToolsTypeError(`release takes a MemoryRegion from this cache's acquire, got ${describe(r)}`);
    if (r.owner !== this) throw new AllocToolsError("FOREIGN_REGION", `region at 0x${r.address.toString(16)} does not belong to this registration cache`);
    this.assertOpen("release");
    if (r.inFlight !== 0) throw busyError("release", r);
    r.assertInUse("release");
  }

  private assertOpen(what: string): void {
    if (this.closed_) throw new AllocToolsError("CACHE_CLOSED", `${what}: the registration cache is closed`);
  }
}

function checkLimit(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !(Number.isSafeInteger(value) || value === Infinity) || value < 1) {
    throw new AllocToolsRangeError(`options.${name} must be a positive integer (or Infinity), got ${String(value)}`);
  }
  return value;
}

/** The outcome of an operation whose caller's buffer was detached while it was in flight. */
function detachedInFlight(operation: string, staged: boolean): AllocToolsError {
  return new AllocToolsError("DETACHED", staged
    ? `${operation}: the destination buffer was detached (transfer(), a transfer list) while the read was in flight; the bytes read were dropped, not written anywhere`
    : `${operation}: the source buffer was detached (transfer(), a transfer list) while the operation was in flight; its memory may have been reused, so the target may hold other bytes`);
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value !== "object") return typeof value;
  const name = (value as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof name === "string" ? `a ${name}` : "an object";
}
