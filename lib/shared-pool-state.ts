// The part of a pool that Workers share: one SharedArrayBuffer holding the four lock-free stacks,
// a state word per region, the block table (what every Worker needs to materialize a region it
// has not seen), growth locks, the pinned-bytes counter and per-Worker books and caches.
// Fixed size, derived from each stack's maxRegions: growable SharedArrayBuffers exist in Bun, but
// a length-tracking view on the hot path is not worth the risk; the bound is explicit instead.
import { AllocToolsError } from "./errors.ts";
import type { Registration } from "./provider.ts";
import { MAX_SHARED_REGIONS, SharedStack, indexBitsFor } from "./shared-stack.ts";

/** Per-stack numbers fixed when the pool is shared. */
export interface SharedStackLayout {
  readonly chunkSize: number;
  readonly initialCount: number;
  readonly growCount: number;
  /** Most regions the stack may ever hold. */
  readonly capacity: number;
  /** Most blocks the stack may ever hold. */
  readonly maxBlocks: number;
}

/** Everything that fixes the buffer's layout; part of the handle. */
export interface SharedLayoutSpec {
  readonly stacks: readonly SharedStackLayout[];
  readonly maxWorkers: number;
  readonly cacheSize: number;
}

/** A region's state word. */
export const FREE = 0;
export const IN_USE = 1;

/** Block table entry states (0: empty, not published yet). */
const BLOCK_LIVE = 1;
const BLOCK_GONE = 2;

// Header words (int32).
const H_MAGIC = 0;
export const H_CLOSED = 1;
const H_SLOTS = 2;
const H_BLOCKS = 3;
const H_REGIONS = 4;
const H_ID = 5; // two words of random identity: clones of the buffer are different objects

const MAGIC = 0x616c6c6f; // "allo"

// A Worker's cache block per stack (int32 words; one Worker writes it, with plain stores): the
// count, a copy of the closed flag, its gets and releases as float64 (words 4 and 6), then the
// cached indices. A get or release touches this block and the region's state word, nothing else.
export const C_COUNT = 0;
export const C_CLOSED = 1;
export const C_GETS = 4;
export const C_RELEASES = 6;
export const C_ENTRIES = 8;

// Per-Worker books off the hot path (float64, written only by their Worker: plain stores).
export const BOOK_MISSES = 2;
export const BOOK_GROWTHS = 3;
/** Per-stack books take 4 words each; the side books follow. */
export const SIDE = {
  temporaryCount: 16, temporaryGets: 17, userCount: 18, sideReleases: 19,
  registrations: 20, deregistrations: 21, liveTemporaries: 22, liveUsers: 23,
} as const;
const SLOT_BOOKS = 32; // float64 words per slot: 256 bytes, four cache lines of its own

// Block table entries (float64 words): exact as long as addresses and sizes are below 2^53.
const B_ADDRESS = 0;
const B_SIZE = 1;
const B_HANDLE = 2;
const B_STACK = 3;
const B_FIRST = 4;
const B_COUNT = 5;
const B_SLOT = 6;
const B_LOCKED = 7;
const BLOCK_WORDS = 8;

const LINE = 64;
/** How long a growth may hold its stack's lock before waiters presume its Worker dead. */
export const GROWTH_LEASE_MS = 3000;
const align = (n: number) => Math.ceil(n / LINE) * LINE;

/** Where everything lives in the buffer (byte offsets, each on its own cache line). */
class Layout {
  readonly locks: number;
  readonly heads: number;
  readonly pinned: number;
  readonly stackBooks: number;
  readonly next: number;
  readonly state: number;
  /** Region i's state word is word i << stateBits of the state array. */
  readonly stateBits: number;
  readonly blockOf: number;
  readonly blocks: number;
  readonly blockKeys: number;
  readonly blockState: number;
  readonly slotBooks: number;
  readonly slotFlags: number;
  readonly caches: number;
  readonly cacheStride: number;
  readonly bytes: number;
  readonly capacity: number;
  readonly maxBlocks: number;

  constructor(spec: SharedLayoutSpec) {
    this.capacity = spec.stacks.reduce((n, s) => n + s.capacity, 0);
    this.maxBlocks = spec.stacks.reduce((n, s) => n + s.maxBlocks, 0);
    let at = LINE; // header
    const take = (bytes: number) => { const here = at; at = align(at + bytes); return here; };
    this.locks = take(4 * LINE);
    this.heads = take(4 * LINE);
    this.pinned = take(16);
    this.stackBooks = take(4 * LINE);
    this.next = take(4 * this.capacity);
    // A cache line per region's state word (up to 2^16 regions, 4 MiB; fewer lines beyond):
    // Workers cycling through neighbouring regions do not share lines. A shift, not an
    // interleave: the hot path pays one instruction for it.
    this.stateBits = this.capacity <= 1 << 16 ? 4 : this.capacity <= 1 << 18 ? 2 : 0;
    this.state = take(4 * (this.capacity << this.stateBits));
    this.blockOf = take(4 * this.capacity);
    this.blocks = take(8 * BLOCK_WORDS * this.maxBlocks);
    this.blockKeys = take(16 * this.maxBlocks);
    this.blockState = take(4 * this.maxBlocks);
    this.slotBooks = take(8 * SLOT_BOOKS * spec.maxWorkers);
    this.slotFlags = take(LINE * spec.maxWorkers);
    // Per slot, per stack: the block head and cacheSize indices, padded to whole cache lines.
    this.cacheStride = align(4 * (C_ENTRIES + spec.cacheSize)) / 4;
    this.caches = take(4 * this.cacheStride * 4 * spec.maxWorkers);
    this.bytes = at;
  }
}

/** One Worker's view of the shared part of a pool. */
export class SharedPoolState {
  readonly buffer: SharedArrayBuffer;
  readonly spec: SharedLayoutSpec;
  /** The whole buffer as int32 / float64 / uint64 words. */
  readonly i32: Int32Array;
  readonly f64: Float64Array;
  readonly u64: BigUint64Array;
  readonly stacks: readonly SharedStack[];
  /** Word offsets of the per-region arrays in i32. */
  readonly stateAt: number;
  /** Word of region i's state: stateAt + (i << stateBits). */
  readonly stateBits: number;
  readonly blockOfAt: number;
  /** This Worker's slot, its books (in f64) and caches (in i32). */
  readonly slot: number;
  readonly booksAt: number;
  readonly cacheAt: number;
  readonly cacheStride: number;
  readonly cacheSize: number;
  private readonly layout: Layout;
  /** The tickets this thread holds, per stack. */
  private readonly tickets = new Int32Array(4);

  private constructor(buffer: SharedArrayBuffer, spec: SharedLayoutSpec, slot: number) {
    this.buffer = buffer;
    this.spec = spec;
    this.layout = new Layout(spec);
    const l = this.layout;
    this.i32 = new Int32Array(buffer);
    this.f64 = new Float64Array(buffer);
    this.u64 = new BigUint64Array(buffer);
    const bits = indexBitsFor(l.capacity);
    this.stacks = [0, 1, 2, 3].map((k) => new SharedStack(this.i32, (l.heads + k * LINE) / 4, l.next / 4, bits));
    this.stateAt = l.state / 4;
    this.stateBits = l.stateBits;
    this.blockOfAt = l.blockOf / 4;
    this.slot = slot;
    this.booksAt = (l.slotBooks / 8) + slot * SLOT_BOOKS;
    this.cacheStride = l.cacheStride;
    this.cacheSize = spec.cacheSize;
    this.cacheAt = l.caches / 4 + slot * 4 * l.cacheStride;
  }

  /** A new shared state; the caller is slot 0 (the owner). */
  static create(spec: SharedLayoutSpec): SharedPoolState {
    const l = new Layout(spec);
    if (l.capacity > MAX_SHARED_REGIONS) {
      throw new RangeError(`a shared pool holds at most ${MAX_SHARED_REGIONS} regions (the stacks' ABA tags need 16 bits); ` +
        `maxRegions add up to ${l.capacity}: lower them, or use larger chunks`);
    }
    const buffer = new SharedArrayBuffer(l.bytes);
    const i32 = new Int32Array(buffer);
    i32[H_MAGIC] = MAGIC;
    i32[H_SLOTS] = 1;
    crypto.getRandomValues(i32.subarray(H_ID, H_ID + 2));
    const s = new SharedPoolState(buffer, spec, 0);
    Atomics.store(i32, s.slotFlagAt(0), 1);
    return s;
  }

  /** Another Worker's view: takes the next free slot. */
  static attach(buffer: SharedArrayBuffer, spec: SharedLayoutSpec): SharedPoolState {
    if (!(buffer instanceof SharedArrayBuffer) || buffer.byteLength !== new Layout(spec).bytes || new Int32Array(buffer)[H_MAGIC] !== MAGIC) {
      throw new TypeError("MemoryPool.attach takes the handle pool.share() returned");
    }
    const i32 = new Int32Array(buffer);
    const slot = Atomics.add(i32, H_SLOTS, 1);
    if (slot >= spec.maxWorkers) {
      Atomics.sub(i32, H_SLOTS, 1);
      throw new RangeError(`the shared pool takes ${spec.maxWorkers} attached pools (share({ maxWorkers }))`);
    }
    if (Atomics.load(i32, H_CLOSED) !== 0) throw new AllocToolsError("POOL_CLOSED", "the shared pool is closed");
    const s = new SharedPoolState(buffer, spec, slot);
    Atomics.store(i32, s.slotFlagAt(slot), 1);
    return s;
  }

  /** Whether `other` is a view of the same shared pool (perhaps through a clone of the buffer). */
  sameAs(other: SharedPoolState): boolean {
    return other.i32[H_ID] === this.i32[H_ID] && other.i32[H_ID + 1] === this.i32[H_ID + 1];
  }

  get closed(): boolean {
    return Atomics.load(this.i32, H_CLOSED) !== 0;
  }

  /** Plain read for the hot path: the flag only ever goes 0 → 1. */
  closedFast(): boolean {
    return this.i32[H_CLOSED] !== 0;
  }

  /** Closes the pool for every slot, attached or still to come (attach checks H_CLOSED after taking one). */
  markClosed(): void {
    Atomics.store(this.i32, H_CLOSED, 1);
    for (let s = 0; s < this.spec.maxWorkers; s++) {
      for (let id = 0; id < 4; id++) Atomics.store(this.i32, this.cacheOf(s, id) + C_CLOSED, 1);
    }
  }

  // ---- growth lock (one per stack) on Atomics.wait/notify, with a lease -------------------------------
  // The lock word holds a fresh ticket per acquisition (0: free). A Worker terminated inside a
  // growth never unlocks, so a waiter that sees the same ticket for GROWTH_LEASE_MS takes the lock
  // over; growth (mmap, mlock, register one block) takes micro- to milliseconds.

  /**
   * Takes stack `id`'s growth lock, sleeping while another Worker grows that stack. Returns false
   * if `timeoutMs` passed first.
   */
  lock(id: number, timeoutMs: number = Infinity): boolean {
    const a = this.i32;
    const at = this.layout.locks / 4 + id * (LINE / 4);
    const ticket = (Atomics.add(a, at + 1, 1) + 1) | 1; // odd: never 0
    let seen = Atomics.compareExchange(a, at, 0, ticket);
    if (seen === 0) return this.hold(id, ticket);
    const start = Date.now();
    let since = start;
    for (;;) {
      Atomics.wait(a, at, seen, 20);
      const now = Date.now();
      const c = Atomics.compareExchange(a, at, 0, ticket);
      if (c === 0) return this.hold(id, ticket);
      if (c !== seen) {
        seen = c;
        since = now;
      } else if (now - since > GROWTH_LEASE_MS && Atomics.compareExchange(a, at, c, ticket) === c) {
        return this.hold(id, ticket); // the holder overran its lease: presumed terminated
      }
      if (now - start > timeoutMs) return false;
    }
  }

  unlock(id: number): void {
    const a = this.i32;
    const at = this.layout.locks / 4 + id * (LINE / 4);
    // Only if still ours (a lease may have passed it on); wake every waiter: they all want to pop.
    if (Atomics.compareExchange(a, at, this.tickets[id]!, 0) === this.tickets[id]) Atomics.notify(a, at);
    this.tickets[id] = 0;
  }

  private hold(id: number, ticket: number): true {
    this.tickets[id] = ticket;
    return true;
  }

  // ---- pinned bytes (shared, 64-bit: rare) ----------------------------------------------------------

  /** Adds `bytes` to the shared pinned count unless that passes `limit`; returns whether it did. */
  reservePinned(bytes: number, limit: number): boolean {
    const at = this.layout.pinned / 8;
    for (;;) {
      const now = Atomics.load(this.u64, at);
      const next = Number(now) + bytes;
      if (bytes > 0 && next > limit) return false;
      if (Atomics.compareExchange(this.u64, at, now, BigInt(Math.max(0, next))) === now) {
        for (;;) {
          const peak = Atomics.load(this.u64, at + 1);
          if (Number(peak) >= next || Atomics.compareExchange(this.u64, at + 1, peak, BigInt(next)) === peak) return true;
        }
      }
    }
  }

  get pinnedBytes(): number {
    return Number(Atomics.load(this.u64, this.layout.pinned / 8));
  }

  get peakPinnedBytes(): number {
    return Number(Atomics.load(this.u64, this.layout.pinned / 8 + 1));
  }

  resetPinned(): void {
    Atomics.store(this.u64, this.layout.pinned / 8, 0n);
  }

  // ---- per-stack structure books (written under the stack's growth lock) --------------------------

  /** [regions, blocks, pinnedBytes] of stack `id`. */
  stackBooks(id: number): [number, number, number] {
    const at = this.layout.stackBooks / 8 + id * (LINE / 8);
    return [this.f64[at]!, this.f64[at + 1]!, this.f64[at + 2]!];
  }

  addStackBooks(id: number, regions: number, blocks: number, pinnedBytes: number): void {
    const at = this.layout.stackBooks / 8 + id * (LINE / 8);
    this.f64[at] = this.f64[at]! + regions;
    this.f64[at + 1] = this.f64[at + 1]! + blocks;
    this.f64[at + 2] = this.f64[at + 2]! + pinnedBytes;
  }

  // ---- regions and blocks ----------------------------------------------------------------------------

  /** Region indices handed out so far (0 .. regionCount are valid). */
  get regionCount(): number {
    return Atomics.load(this.i32, H_REGIONS);
  }

  get blockCount(): number {
    return Atomics.load(this.i32, H_BLOCKS);
  }

  /** Reserves `count` region indices and one block entry for stack `id` (under its growth lock). */
  reserve(id: number, count: number): { first: number; block: number } {
    const [regions, blocks] = this.stackBooks(id);
    const s = this.spec.stacks[id]!;
    if (regions + count > s.capacity || blocks + 1 > s.maxBlocks) {
      throw new AllocToolsError("PINNED_LIMIT",
        `the shared pool's stack ${id} holds at most ${s.capacity} regions (maxRegions); it has ${regions}`);
    }
    return { first: Atomics.add(this.i32, H_REGIONS, count), block: Atomics.add(this.i32, H_BLOCKS, 1) };
  }

  /** Records a block and its regions (all free), then publishes it: only then may its indices be pushed. */
  publishBlock(block: number, id: number, first: number, count: number, address: number, size: number,
               locked: boolean, reg: Registration): void {
    const at = this.layout.blocks / 8 + block * BLOCK_WORDS;
    const f = this.f64;
    f[at + B_ADDRESS] = address;
    f[at + B_SIZE] = size;
    f[at + B_HANDLE] = reg.handle;
    f[at + B_STACK] = id;
    f[at + B_FIRST] = first;
    f[at + B_COUNT] = count;
    f[at + B_SLOT] = this.slot;
    f[at + B_LOCKED] = locked ? 1 : 0;
    const k = this.layout.blockKeys / 8 + block * 2;
    this.u64[k] = reg.localKey;
    this.u64[k + 1] = reg.remoteKey;
    for (let i = first; i < first + count; i++) {
      this.i32[this.blockOfAt + i] = block;
      this.i32[this.stateWord(i)] = FREE;
    }
    Atomics.store(this.i32, this.layout.blockState / 4 + block, BLOCK_LIVE);
  }

  /** Block `block` as its registration, where it was mapped, and which regions it holds. */
  block(block: number): SharedBlock | null {
    if (Atomics.load(this.i32, this.layout.blockState / 4 + block) !== BLOCK_LIVE) return null;
    const at = this.layout.blocks / 8 + block * BLOCK_WORDS;
    const f = this.f64;
    const k = this.layout.blockKeys / 8 + block * 2;
    const address = f[at + B_ADDRESS]!;
    const size = f[at + B_SIZE]!;
    return {
      index: block, stackId: f[at + B_STACK]!, first: f[at + B_FIRST]!, count: f[at + B_COUNT]!,
      slot: f[at + B_SLOT]!, locked: f[at + B_LOCKED] === 1, address, size,
      registration: { address, length: size, handle: f[at + B_HANDLE]!, localKey: this.u64[k]!, remoteKey: this.u64[k + 1]! },
    };
  }

  /** Marks a block deregistered; true for the one caller that gets to free it. */
  retireBlock(block: number): boolean {
    return Atomics.compareExchange(this.i32, this.layout.blockState / 4 + block, BLOCK_LIVE, BLOCK_GONE) === BLOCK_LIVE;
  }

  blockOf(index: number): number {
    return this.i32[this.blockOfAt + index]!;
  }

  /** The i32 word holding region `index`'s state. */
  stateWord(index: number): number {
    return this.stateAt + (index << this.stateBits);
  }

  regionState(index: number): number {
    return Atomics.load(this.i32, this.stateWord(index));
  }

  // ---- slots ---------------------------------------------------------------------------------------

  get slotsUsed(): number {
    return Math.min(Atomics.load(this.i32, H_SLOTS), this.spec.maxWorkers);
  }

  private slotFlagAt(slot: number): number {
    return this.layout.slotFlags / 4 + slot * (LINE / 4);
  }

  /** This Worker detached: its slot keeps its books (they stay in the totals). */
  leaveSlot(): void {
    Atomics.store(this.i32, this.slotFlagAt(this.slot), 0);
  }

  /** Word offset of `slot`'s cache block for stack `id` (see C_COUNT .. C_ENTRIES). */
  cacheOf(slot: number, id: number): number {
    return this.layout.caches / 4 + (slot * 4 + id) * this.cacheStride;
  }

  /** Sum of book `word` over every slot. */
  sumBooks(word: number): number {
    let n = 0;
    const base = this.layout.slotBooks / 8;
    for (let s = 0; s < this.slotsUsed; s++) n += this.f64[base + s * SLOT_BOOKS + word]!;
    return n;
  }

  /** Sum over every slot of a float64 in the cache blocks of stack `id` (C_GETS or C_RELEASES). */
  sumCacheBooks(id: number, word: number): number {
    let n = 0;
    for (let s = 0; s < this.slotsUsed; s++) n += this.f64[(this.cacheOf(s, id) + word) >> 1]!;
    return n;
  }

  /** Regions of stack `id` sitting in Worker caches (free, not on the shared stack). */
  cached(id: number): number {
    let n = 0;
    for (let s = 0; s < this.slotsUsed; s++) n += this.i32[this.cacheOf(s, id)]!;
    return n;
  }

  /**
   * Where every region is, for tests and post-mortems; exact only while no Worker uses the pool.
   * Every region must be exactly once in: a shared stack, a Worker cache, or in use.
   */
  audit(): SharedAudit {
    const n = this.regionCount;
    const seen = new Int32Array(n);
    const problems: string[] = [];
    let onStacks = 0;
    let cached = 0;
    let inUse = 0;
    const place = (index: number, where: string) => {
      if (index < 0 || index >= n) { problems.push(`${where}: index ${index} out of range`); return; }
      if (seen[index]! > 0) problems.push(`region ${index} found twice (${where})`);
      seen[index] = seen[index]! + 1;
    };
    for (let id = 0; id < 4; id++) {
      for (const i of this.stacks[id]!.snapshot(n)) {
        place(i, `stack ${id}`);
        onStacks++;
        if (this.regionState(i) !== FREE) problems.push(`region ${i} is on stack ${id} but marked in use`);
        if (this.stackOf(i) !== id) problems.push(`region ${i} is on stack ${id} but belongs to stack ${this.stackOf(i)}`);
      }
      for (let s = 0; s < this.slotsUsed; s++) {
        const at = this.cacheOf(s, id);
        for (let j = 0; j < this.i32[at + C_COUNT]!; j++) {
          const i = this.i32[at + C_ENTRIES + j]!;
          place(i, `cache of slot ${s}`);
          cached++;
          if (this.regionState(i) !== FREE) problems.push(`region ${i} is cached but marked in use`);
        }
      }
    }
    let lost = 0;
    for (let i = 0; i < n; i++) {
      if (this.regionState(i) === IN_USE) {
        if (seen[i]! === 0) inUse++;
      } else if (seen[i] === 0) {
        lost++;
        problems.push(`region ${i} is free but on no stack and in no cache`);
      }
    }
    return { regions: n, onStacks, cached, inUse, lost, problems };
  }

  private stackOf(index: number): number {
    return this.f64[this.layout.blocks / 8 + this.blockOf(index) * BLOCK_WORDS + B_STACK]!;
  }
}

/** A block as the block table records it. */
export interface SharedBlock {
  readonly index: number;
  readonly stackId: number;
  readonly first: number;
  readonly count: number;
  /** The slot of the Worker that mapped and registered it (0: the owner). */
  readonly slot: number;
  readonly locked: boolean;
  readonly address: number;
  readonly size: number;
  readonly registration: Registration;
}

/** Where the regions of a shared pool are (see SharedPoolState.audit). */
export interface SharedAudit {
  readonly regions: number;
  readonly onStacks: number;
  readonly cached: number;
  readonly inUse: number;
  /** Free regions on no stack and in no cache (a Worker ended between a pop and its books). */
  readonly lost: number;
  readonly problems: readonly string[];
}
