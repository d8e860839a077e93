// The part of a pool that Workers share: one SharedArrayBuffer (layout in shared-layout.ts) with a
// lock-free stack per size class, a state word per region, the block table, growth locks and their
// records, the pinned-bytes counter, and per Worker a slot: liveness, counters, caches, unpooled regions.
// This class (the header, the close phase, the stacks and the region state words) and its parts,
// one file each (slot-table, growth-locks, block-table, unpooled-table, shared-counters,
// shared-pinned-bytes, worker-cache; shared-audit reads them all), alone read and write those
// words; everything else asks them.
//
// A region's state word is FREE (0) while the region is on a shared stack, else the slot + 1 of the
// Worker that holds it: in use there, or free in that Worker's cache (its cache entries tell which).
// So a Worker's own get and release from its cache write no state word; only a region crossing
// Workers (released by another Worker, spilled, popped from a stack) changes it. Every step that
// moves a region is ordered so that a Worker terminated between any two of its stores leaves the
// region findable: in use, on a stack, in its cache, or in its pop-intent word (see shared-audit.ts).
import { AllocToolsError, AllocToolsTypeError, AllocToolsRangeError } from "../errors.ts";
import {
  CACHE, ClosePhase, FREE, HEADER, MAGIC, STATE_SHIFT, SharedLayout, type SharedLayoutSpec,
} from "./shared-layout.ts";
import { MAX_SHARED_REGIONS, SharedStack, indexBitsFor } from "./shared-stack.ts";
import { waitOutClosing } from "./slot-operations.ts";
import { BlockTable } from "./block-table.ts";
import { GrowthLocks } from "./growth-locks.ts";
import { SharedCounters } from "./shared-counters.ts";
import { SharedPinnedBytes } from "./shared-pinned-bytes.ts";
import { UnpooledTable } from "./unpooled-table.ts";
import { SlotTable } from "./slot-table.ts";
import { WorkerCache } from "./worker-cache.ts";

export type { SharedLayoutSpec, SharedStackLayout } from "./shared-layout.ts";

const SHIFT = STATE_SHIFT;

/** What a get, a release or a new region of any Worker gets once the owner closed the pool. */
export function poolClosedError(): AllocToolsError {
  return new AllocToolsError("POOL_CLOSED", "the pool is closed");
}

/** One Worker's view of the shared part of a pool. */
export class SharedPoolState {
  readonly buffer: SharedArrayBuffer;
  readonly spec: SharedLayoutSpec;
  readonly layout: SharedLayout;
  /** This Worker's slot (0: the owner). */
  readonly slot: number;
  /** The slots: this Worker's, and what it reads of the others' (liveness, operations, references). */
  readonly slots: SlotTable;
  /** The growth lock of each size class. */
  readonly locks: GrowthLocks;
  /** The temporary and user regions of every Worker, recorded for the owner's close. */
  readonly unpooled: UnpooledTable;
  /** Every block, its regions, mapping, registration and state. */
  readonly blocks: BlockTable;
  /** The statistics: per class, and per Worker. */
  readonly counters: SharedCounters;
  /** The pinned bytes of every Worker together. */
  readonly pinned: SharedPinnedBytes;
  /** This Worker's caches, one per size class. */
  readonly cache: WorkerCache;
  private readonly words: Int32Array;
  private readonly floats: Float64Array;
  private readonly longs: BigUint64Array;
  private readonly stacks: readonly SharedStack[];
  private readonly stateAt: number;

  private constructor(buffer: SharedArrayBuffer, spec: SharedLayoutSpec, slot: number) {
    this.buffer = buffer;
    this.spec = spec;
    this.layout = new SharedLayout(spec);
    const layout = this.layout;
    this.words = new Int32Array(buffer);
    this.floats = new Float64Array(buffer);
    this.longs = new BigUint64Array(buffer);
    const bits = indexBitsFor(layout.capacity);
    this.stacks = spec.stacks.map((_, sizeClass) => new SharedStack(this.words, layout.headLine(sizeClass) / 4, layout.next / 4, bits));
    this.stateAt = layout.state / 4;
    this.slot = slot;
    this.slots = new SlotTable(this.words, this.floats, layout, spec.maxWorkers, slot);
    this.locks = new GrowthLocks(this.words, layout, this.slots);
    this.unpooled = new UnpooledTable(this.words, this.floats, layout, spec.maxUnpooledRegions, this.slots);
    this.cache = new WorkerCache(this.words, this.floats, layout, layout.cacheWord(slot, 0), layout.cacheStride, spec.cacheSize,
      this.stacks, this.stateAt, slot, this.slots.popIntentWord(slot));
    this.counters = new SharedCounters(this.words, this.floats, layout, this.slots);
    this.pinned = new SharedPinnedBytes(this.longs, layout);
    this.blocks = new BlockTable(this.words, this.floats, this.longs, layout, spec.stacks, this.stacks, this.slots, this.locks, this.counters);
  }

  /** A new shared state; the caller is slot 0 (the owner). */
  static create(spec: SharedLayoutSpec): SharedPoolState {
    const layout = new SharedLayout(spec);
    if (layout.capacity > MAX_SHARED_REGIONS) {
      throw new AllocToolsRangeError(`a shared pool holds at most ${MAX_SHARED_REGIONS} regions (the stacks' ABA tags need 16 bits); ` +
        `maxRegions add up to ${layout.capacity}: lower them, or use larger chunks`);
    }
    const buffer = new SharedArrayBuffer(layout.bytes);
    const words = new Int32Array(buffer);
    words[HEADER.magic] = MAGIC;
    words[HEADER.slots] = 1;
    words[HEADER.references] = 1; // the owner's, dropped at the end of its close
    crypto.getRandomValues(words.subarray(HEADER.identity, HEADER.identity + 2));
    const state = new SharedPoolState(buffer, spec, 0);
    state.slots.enter();
    return state;
  }

  /** Another Worker's view: takes the next free slot. */
  static attach(buffer: SharedArrayBuffer, spec: SharedLayoutSpec): SharedPoolState {
    let layout: SharedLayout;
    try {
      layout = new SharedLayout(spec);
    } catch {
      throw new AllocToolsTypeError("MemoryPool.attach takes the handle pool.share() returned (its layout is damaged)");
    }
    if (!(buffer instanceof SharedArrayBuffer) || buffer.byteLength !== layout.bytes || new Int32Array(buffer)[HEADER.magic] !== MAGIC) {
      throw new AllocToolsTypeError("MemoryPool.attach takes the handle pool.share() returned");
    }
    const words = new Int32Array(buffer);
    if (waitOutClosing(words) !== ClosePhase.OPEN) throw new AllocToolsError("POOL_CLOSED", "the shared pool is closed");
    // The reference before the slot: a Worker terminated in between leaves one reference too many
    // (what the owner's close kept stays mapped), never a dead attached slot whose reference the
    // owner's close would drop without it having been counted.
    Atomics.add(words, HEADER.references, 1);
    let slot: number;
    try {
      slot = SlotTable.take(words, layout, spec.maxWorkers);
    } catch (error) {
      Atomics.sub(words, HEADER.references, 1);
      throw error;
    }
    const state = new SharedPoolState(buffer, spec, slot);
    state.slots.enter();
    return state;
  }

  /**
   * Whether the pool is still open now that this attached pool counts as a reference: if so, the
   * owner's close will find the reference and keep the blocks mapped for it. False: the caller
   * leaves (leaveSlot) and refuses.
   */
  isOpenAfterJoining(): boolean {
    return waitOutClosing(this.words) === ClosePhase.OPEN;
  }

  /**
   * This Worker detached: its slot keeps its counters (they stay in the totals). A slot that holds
   * nothing any more (no region's state word names it, its cache and unpooled table are empty, it
   * holds no growth lock and notes no pop) is VACANT, for the next Worker to attach; else it stays
   * DETACHED, so that what it holds stays its own in leak reports.
   */
  leaveSlot(): boolean {
    return this.slots.leave(this.slot !== 0 && this.holdsNothing());
  }

  /** Only this Worker writes its own mark, cache, unpooled entries and pop intent, so the answer stays true once true. */
  private holdsNothing(): boolean {
    const words = this.words;
    const mark = this.slot + 1;
    for (let index = 0; index < this.layout.capacity; index++) if (Atomics.load(words, this.stateAt + (index << SHIFT)) === mark) return false;
    for (let sizeClass = 0; sizeClass < this.classCount; sizeClass++) {
      if (words[this.layout.cacheWord(this.slot, sizeClass)] !== 0) return false;
      if (this.locks.holder(sizeClass) === mark) return false;
    }
    if (words[this.slots.popIntentWord(this.slot)] !== -1) return false;
    return this.unpooled.holdsNone();
  }

  /** Whether `other` is a view of the same shared pool (perhaps through a clone of the buffer). */
  sameAs(other: SharedPoolState): boolean {
    return other.words[HEADER.identity] === this.words[HEADER.identity] && other.words[HEADER.identity + 1] === this.words[HEADER.identity + 1];
  }

  get classCount(): number {
    return this.spec.stacks.length;
  }

  get closed(): boolean {
    return Atomics.load(this.words, HEADER.closed) === ClosePhase.CLOSED;
  }

  /**
   * The owner's close, first step: counts the RMA operations in flight on the regions of every
   * live thread (a dead Worker's never end) while Workers beginning one wait (CLOSING). With any in
   * flight the pool opens again and the count is returned (BUSY); otherwise it is closed for every
   * slot, attached or still to come, and null is returned.
   */
  beginClose(): { operations: number; regions: number; threads: number } | null {
    const words = this.words;
    Atomics.store(words, HEADER.closed, ClosePhase.CLOSING);
    let operations = 0;
    let regions = 0;
    let threads = 0;
    for (let slot = 0; slot < this.slots.used; slot++) {
      const inFlight = this.slots.operationsOf(slot);
      if (inFlight.operations === 0 || !this.slots.alive(slot)) continue;
      operations += inFlight.operations;
      regions += inFlight.regions;
      threads++;
    }
    if (operations > 0) {
      Atomics.store(words, HEADER.closed, ClosePhase.OPEN);
      Atomics.notify(words, HEADER.closed);
      return { operations, regions, threads };
    }
    // The pool's word first: a get or release the caches refuse from here on finds the pool closed.
    Atomics.store(words, HEADER.closed, ClosePhase.CLOSED);
    Atomics.notify(words, HEADER.closed);
    for (let slot = 0; slot < this.spec.maxWorkers; slot++) {
      for (let sizeClass = 0; sizeClass < this.classCount; sizeClass++) Atomics.store(words, this.layout.cacheWord(slot, sizeClass) + CACHE.closed, 1);
    }
    return null;
  }

  private stateWord(index: number): number {
    return this.stateAt + (index << SHIFT);
  }

  /** FREE (on a stack), or the slot + 1 of the Worker that holds region `index` (in use or in its cache). */
  regionState(index: number): number {
    return Atomics.load(this.words, this.stateWord(index));
  }

  /** FREE when region `index` is free (on a stack or in its holder's cache), else the slot + 1 of the Worker using it. */
  holderOf(index: number): number {
    const holder = this.regionState(index);
    if (holder === FREE || this.cache.inCacheOf(holder - 1, this.blocks.stackOf(index), index)) return FREE;
    return holder;
  }

  /** share(): marks region `index` in use by this (the owner's) slot. */
  markInUse(index: number): void {
    this.words[this.stateWord(index)] = this.slot + 1;
  }

  /** share(): puts the unshared pool's free indices on class `sizeClass`'s stack, `indices[0]` on top. */
  pushFree(sizeClass: number, indices: ArrayLike<number>): void {
    this.stacks[sizeClass]!.pushAll(indices, 0, indices.length);
  }

  /** close(): empties every stack. */
  clearStacks(): void {
    for (const stack of this.stacks) stack.clear();
  }

  /** The indices on class `sizeClass`'s stack, top first (at most `limit`): for the audit. */
  stackSnapshot(sizeClass: number, limit: number): number[] {
    return this.stacks[sizeClass]!.snapshot(limit);
  }

  /** The region indices free in `slot`'s cache of class `sizeClass`: for the audit. */
  cacheEntries(slot: number, sizeClass: number): number[] {
    const at = this.layout.cacheWord(slot, sizeClass);
    return Array.from(this.words.subarray(at + CACHE.entries, at + CACHE.entries + this.words[at + CACHE.count]!));
  }

  /** The region `slot` noted it was popping (-1: none): for the audit. */
  popIntentOf(slot: number): number {
    return this.words[this.slots.popIntentWord(slot)]!;
  }
}

export type { SharedAudit } from "./shared-audit.ts";
