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
//
// This file is the cache itself: acquire and release, misses and growths, making room, dropping
// entries, and the plain views of RMA operations. Its parts, one file each: cache-options (options,
// stats, limits), memory-bytes (what a caller's memory argument is), cache-entry (an entry, its
// registrations and region slots), entry-table (entries by buffer and as a list), lru-list,
// detach-sweep (scans for detached buffers), registration-span (which bytes of a large buffer to
// register), cache-registrar (registering with budget and books), cache-backstop (the
// garbage-collection backstop), read-staging (where reads into plain views land).
import { ptr } from "bun:ffi";
import { AllocToolsError, AllocToolsTypeError, AllocToolsRangeError } from "../errors.ts";
import { busyError } from "../engine/local-memory.ts";
import { DEFAULT_ACCESS, type RegionProvider } from "../memory/provider.ts";
import { checkOut, MemoryRegionImpl, RegionFlag, setInUse, type MemoryRegion, type RegionOwner } from "../memory/region.ts";
import { MemoryRegionTraits } from "../memory/traits.ts";
import { isResizableArrayBuffer, type AnyBuffer } from "../memory/buffer-intrinsics.ts";
import { resizableBufferError } from "../memory/user-memory.ts";
import { CacheRemains, unwatchCache, watchCache } from "./cache-backstop.ts";
import { serves, type CacheEntry, type CacheRegistration } from "./cache-entry.ts";
import {
  checkLimit, DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES, DEFAULT_WHOLE_BUFFER_BYTES, type RegistrationCacheOptions, type RegistrationCacheStats,
} from "./cache-options.ts";
import { CacheRegistrar } from "./cache-registrar.ts";
import { DetachSweep, SWEEP_PER_SCAN } from "./detach-sweep.ts";
import { EntryTable } from "./entry-table.ts";
import { LruList } from "./lru-list.ts";
import { describe, isDetached, MemoryBytes } from "./memory-bytes.ts";
import { ReadStaging } from "./read-staging.ts";
import { RegistrationSpan } from "./registration-span.ts";

export type { PinnedBudget, RegistrationCacheOptions, RegistrationCacheStats } from "./cache-options.ts";

/** Most bytes of idle staging buffers a cache keeps for the next reads (read-staging.ts). */
const IDLE_STAGING_BYTES = 16 * 1024 * 1024;

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
  /** The entries, by buffer and as a list (entry-table.ts). */
  private readonly entries = new EntryTable();
  /** The table's map, for the hit path's lookup (read through `entries`, the hit costs a load more). */
  private readonly byBuffer = this.entries.byBuffer;
  /** Unused live entries, the next to evict at the tail (lru-list.ts). */
  private readonly lru = new LruList();
  /** Finds entries whose buffer was detached (detach-sweep.ts). */
  private readonly sweep: DetachSweep;
  /** Registers and deregisters, with the budget, the backstop's remains and the books (cache-registrar.ts). */
  private readonly registrar: CacheRegistrar;
  /** What the garbage-collection backstop deregisters if the cache is collected unclosed (cache-backstop.ts). */
  private readonly remains: CacheRemains;
  /** The entry a miss is working on: no eviction may take it. */
  private busyEntry: CacheEntry | null = null;
  private readonly bytesOf = new MemoryBytes();
  /** The bytes a miss or a growth registers of a buffer above wholeBufferBytes (registration-span.ts). */
  private readonly span = new RegistrationSpan();
  /** Where Endpoint reads into plain views land (read-staging.ts). */
  private readonly staging: ReadStaging;
  private closed_ = false;
  // Books (the registrations' own are the registrar's).
  private hits = 0;
  private misses = 0;
  private evictions = 0;
  private invalidations = 0;
  private inUse = 0;
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
    this.remains = new CacheRemains(this.traits);
    this.registrar = new CacheRegistrar(this.traits, options.budget ?? null, this.remains);
    this.sweep = new DetachSweep(this.entries.live, (entry) => this.invalidate(entry));
    // Power-of-two staging buffers only up to what one entry may register (maxBytes).
    const largestKept = 2 ** Math.floor(Math.log2(Math.min(this.wholeBufferBytes, this.maxBytes)));
    this.staging = new ReadStaging(largestKept, Math.min(IDLE_STAGING_BYTES, this.maxBytes));
    watchCache(this, this.remains);
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
    const entry = this.byBuffer.get(buffer);
    if (entry === undefined) return this.acquireSlow(memory, buffer);
    const registration = entry.current!;
    if (!(length > 0 && offset >= registration.start && offset + length <= registration.end && Number.isInteger(offset) && Number.isInteger(length)) ||
        entry.lengthOf.call(buffer) < registration.end) {
      return this.acquireSlow(memory, null);
    }
    this.hits++;
    return this.regionOf(entry, registration, offset, length);
  }

  /**
   * Gives back a region from `acquire`; its registration stays cached. Throws TypeError for what
   * is not a region, FOREIGN_REGION for another owner's, DOUBLE_RELEASE when it is not out, BUSY
   * while RMA operations use it, CACHE_CLOSED after close().
   */
  release(region: MemoryRegion): void {
    const cached = region as MemoryRegionImpl;
    if (!MemoryRegionImpl.isGenuine(cached) || cached.owner !== this || !cached.inUse || cached.inFlight !== 0 || this.closed_) {
      return this.releaseSlow(cached);
    }
    setInUse(cached, false);
    this.inUse--;
    const registration = cached.registration as CacheRegistration;
    const entry = registration.entry;
    if (entry.overflow !== null) entry.overflow.delete(cached);
    if (--registration.holders === 0 && registration.retired) this.dropRetired(entry, registration);
    if (--entry.inUse === 0) {
      if (entry.live) this.lru.linkNewest(entry);
      else this.entries.orphans.delete(entry);
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
    const registration = region.registration as CacheRegistration;
    const entry = registration.entry;
    const staged = entry.staging !== null && entry.staging.region === region ? entry.staging : null;
    if (error === null && waited) {
      const intact = staged !== null ? this.staging.deliver(staged, delivered) : entry.lengthOf.call(entry.buffer) >= registration.end;
      if (!intact) error = detachedInFlight(operation, staged !== null);
    }
    if (!this.closed_ && region.inUse && region.inFlight === 0) {
      try {
        this.release(region);
      } catch (releaseError) {
        error ??= releaseError;
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
    const registration = region.registration as CacheRegistration;
    if (this.closed_) throw new AllocToolsError("CACHE_CLOSED", `${operation}: the registration cache is closed`);
    region.assertInUse(operation);
    const entry = registration.entry;
    if (entry.lengthOf.call(entry.buffer) < registration.end) {
      throw new AllocToolsError("DETACHED", `${operation}: the buffer under the cached region at 0x${region.address.toString(16)} was detached or shrank`);
    }
  }

  /** Counters and sizes now. */
  stats(): RegistrationCacheStats {
    return {
      hits: this.hits, misses: this.misses, evictions: this.evictions, invalidations: this.invalidations,
      entries: this.entries.size, bytes: this.registrar.bytes, inUse: this.inUse, registrations: this.registrar.live,
      registered: this.registrar.registered, deregistered: this.registrar.deregistered, stagedReads: this.stagedReads,
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
    this.sweep.all();
    let dropped = 0;
    while (this.lru.oldest !== null) {
      this.drop(this.lru.oldest);
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
    const registrar = this.registrar;
    const before = registrar.bytes;
    this.sweep.all();
    while (before - registrar.bytes < bytes && this.evictOne()) { /* evicted one */ }
    return before - registrar.bytes;
  }

  /** @internal Regions out now (for a pool's leak report). */
  regionsInUse(): MemoryRegionImpl[] {
    const out: MemoryRegionImpl[] = [];
    for (const entry of this.entries.live) if (entry.inUse > 0) entry.collectRegionsOut(out);
    for (const entry of this.entries.orphans) entry.collectRegionsOut(out);
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
    for (const region of held) if (region.inFlight !== 0) throw busyError("RegistrationCache.close", region);
    this.closed_ = true;
    unwatchCache(this);
    for (const region of held) setInUse(region, false);
    let firstError: unknown;
    const all = this.entries.clear();
    this.lru.clear();
    for (const entry of all) {
      const entryError = this.closeEntry(entry);
      firstError ??= entryError;
    }
    this.staging.clear();
    this.inUse = 0;
    this.registrar.dropSpare();
    if (firstError !== undefined) throw firstError;
  }

  /** `using cache = new RegistrationCache(...)`: close(). */
  [Symbol.dispose](): void {
    this.close();
  }

  // ---- hits ---------------------------------------------------------------------------------------

  /**
   * A region over [offset, offset + length) of `entry` under `registration`: one from a slot, or a
   * new one. The slots are read here, not through a method of the entry: that call is not inlined,
   * and costs the hit a tenth of its time.
   */
  private regionOf(entry: CacheEntry, registration: CacheRegistration, offset: number, length: number): MemoryRegionImpl {
    const address = entry.address + offset;
    let region = entry.slot0;
    if (!serves(region, registration, address, length)) {
      region = entry.slot1;
      if (!serves(region, registration, address, length)) {
        region = entry.slot2;
        if (!serves(region, registration, address, length)) {
          region = entry.slot3;
          if (!serves(region, registration, address, length)) return this.newRegion(entry, registration, offset, length);
        }
      }
    }
    this.take(entry, registration, region!, length);
    return region!;
  }

  private take(entry: CacheEntry, registration: CacheRegistration, region: MemoryRegionImpl, length: number): void {
    checkOut(region, length);
    registration.holders++;
    this.inUse++;
    if (entry.inUse++ === 0 && entry.linked) this.lru.unlink(entry);
  }

  private newRegion(entry: CacheEntry, registration: CacheRegistration, offset: number, length: number): MemoryRegionImpl {
    const address = entry.address + offset;
    const region = new MemoryRegionImpl(registration, address, length, RegionFlag.USER | RegionFlag.CACHED,
      this.traits.remoteAddress(registration, address), new Uint8Array(entry.buffer, offset, length), this, -1, -1, entry);
    entry.keepRegion(region);
    this.take(entry, registration, region, length);
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
    } catch (error) {
      this.staging.give(slot);
      throw error;
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
  private acquireSlow(memory: unknown, uncached: AnyBuffer | null): MemoryRegion {
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
    const registration = entry.current!;
    if (offset >= registration.start && offset + length <= registration.end) {
      this.hits++;
      return this.regionOf(entry, registration, offset, length);
    }
    return this.grow(entry, offset, length);
  }

  /** A buffer not cached: a new entry with its first registration. */
  private miss(buffer: AnyBuffer, lengthOf: (this: unknown) => number, total: number, offset: number, length: number): MemoryRegion {
    const address = ptr(buffer);
    const entry = this.entries.newEntry(buffer, address, lengthOf);
    let start = 0;
    let end = total;
    if (total > this.wholeBufferBytes) {
      this.span.compute(address, total, offset, length, 0, 0);
      start = this.span.start;
      end = this.span.end;
    }
    this.makeRoom(1, end - start, null);
    const registration = this.registrar.register(entry, start, end);
    entry.current = registration;
    this.entries.add(entry);
    this.misses++;
    return this.newRegion(entry, registration, offset, length);
  }

  /** A view wider than the entry's registration: a wider one replaces it (the old one lives while held). */
  private grow(entry: CacheEntry, offset: number, length: number): MemoryRegion {
    const old = entry.current!;
    const total = entry.lengthOf.call(entry.buffer);
    let start = 0;
    let end = total;
    if (total > this.wholeBufferBytes) {
      this.span.compute(entry.address, total, offset, length, old.start, old.end);
      start = this.span.start;
      end = this.span.end;
    }
    this.busyEntry = entry;
    let registration: CacheRegistration;
    try {
      this.makeRoom(0, end - start, entry);
      registration = this.registrar.register(entry, start, end);
    } finally {
      this.busyEntry = null;
    }
    entry.current = registration;
    this.retireOrDeregister(entry, old);
    this.misses++;
    return this.newRegion(entry, registration, offset, length);
  }

  // ---- making room ----------------------------------------------------------------------------------

  /**
   * Room for `entries` more entries and `bytes` more registered bytes: invalid entries first, then
   * unused ones, oldest first. Throws CACHE_FULL when regions out hold everything.
   */
  private makeRoom(entries: number, bytes: number, keep: CacheEntry | null): void {
    if (bytes > this.maxBytes) {
      throw new AllocToolsError("CACHE_FULL", `acquire needs ${bytes} registered bytes, more than the cache's maxBytes (${this.maxBytes}); register it uncached (registerUserRegion)`);
    }
    if (this.fits(entries, bytes)) return;
    let swept = this.entries.live.length <= SWEEP_PER_SCAN;
    this.sweep.some();
    while (!this.fits(entries, bytes)) {
      if (this.evictOne(keep)) continue;
      if (!swept) {
        swept = true;
        this.sweep.all(); // before refusing: every entry, not only this scan's share
        continue;
      }
      throw new AllocToolsError("CACHE_FULL",
        `acquire needs ${entries} more entr${entries === 1 ? "y" : "ies"} and ${bytes} more bytes; the cache holds ${this.entries.size} of maxEntries ${this.maxEntries} and ${this.registrar.bytes} of maxBytes ${this.maxBytes}, all with regions out`);
    }
  }

  /** Whether `entries` more entries and `bytes` more registered bytes fit the limits now. */
  private fits(entries: number, bytes: number): boolean {
    return this.entries.size + entries <= this.maxEntries && this.registrar.bytes + bytes <= this.maxBytes;
  }

  /** Evicts the least recently used unused entry (never `keep`); false when there is none. */
  private evictOne(keep: CacheEntry | null = this.busyEntry): boolean {
    const entry = this.lru.oldestExcept(keep);
    if (entry === null) return false;
    this.evictions++;
    this.drop(entry);
    return true;
  }

  // ---- dropping entries ----------------------------------------------------------------------------

  /** An entry whose buffer was detached or shrank (a lookup or a sweep found it). */
  private invalidate(entry: CacheEntry): void {
    this.invalidations++;
    this.drop(entry);
  }

  /** Takes `entry` out of the cache: registrations no region holds are deregistered now, the rest at their last release. */
  private drop(entry: CacheEntry): void {
    this.entries.remove(entry);
    if (entry.linked) this.lru.unlink(entry);
    entry.live = false;
    const registration = entry.current!;
    entry.current = null;
    entry.clearSlots();
    this.retireOrDeregister(entry, registration);
    if (entry.inUse > 0) {
      this.entries.orphans.add(entry);
    } else {
      // Nothing out refers to either object any more (but released regions, which only ever
      // get DOUBLE_RELEASE): the next miss reuses them.
      this.entries.recycle(entry);
      this.registrar.recycle(registration);
    }
  }

  /** A registration `entry` no longer hands out: deregistered now if no region holds it, else at its last holder's release. */
  private retireOrDeregister(entry: CacheEntry, registration: CacheRegistration): void {
    if (registration.holders > 0) {
      registration.retired = true;
      (entry.retired ??= []).push(registration);
    } else {
      this.registrar.deregister(registration);
    }
  }

  private dropRetired(entry: CacheEntry, registration: CacheRegistration): void {
    const retired = entry.retired!;
    retired.splice(retired.indexOf(registration), 1);
    if (retired.length === 0) entry.retired = null;
    this.registrar.deregister(registration);
  }

  /** close() of one entry: every registration of it deregistered; returns the first provider error. */
  private closeEntry(entry: CacheEntry): unknown {
    let firstError: unknown;
    entry.live = false;
    entry.linked = false;
    entry.inUse = 0;
    const registrations = entry.registrations();
    entry.current = null;
    entry.retired = null;
    for (const registration of registrations) {
      try { this.registrar.deregister(registration); } catch (error) { firstError ??= error; }
    }
    entry.clearSlots();
    entry.overflow = null;
    entry.staging?.clear();
    entry.staging = null;
    return firstError;
  }

  // ---- errors -------------------------------------------------------------------------------------

  private releaseSlow(region: MemoryRegionImpl): void {
    if (!MemoryRegionImpl.isGenuine(region)) throw new AllocToolsTypeError(`release takes a MemoryRegion from this cache's acquire, got ${describe(region)}`);
    if (region.owner !== this) throw new AllocToolsError("FOREIGN_REGION", `region at 0x${region.address.toString(16)} does not belong to this registration cache`);
    this.assertOpen("release");
    if (region.inFlight !== 0) throw busyError("release", region);
    region.assertInUse("release");
  }

  private assertOpen(what: string): void {
    if (this.closed_) throw new AllocToolsError("CACHE_CLOSED", `${what}: the registration cache is closed`);
  }
}

/** The outcome of an operation whose caller's buffer was detached while it was in flight. */
function detachedInFlight(operation: string, staged: boolean): AllocToolsError {
  return new AllocToolsError("DETACHED", staged
    ? `${operation}: the destination buffer was detached (transfer(), a transfer list) while the read was in flight; the bytes read were dropped, not written anywhere`
    : `${operation}: the source buffer was detached (transfer(), a transfer list) while the operation was in flight; its memory may have been reused, so the target may hold other bytes`);
}
