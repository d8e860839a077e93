// The block table of a shared pool: every block any Worker added, with its class, its regions,
// where it is mapped, its registration and keys, and its state. A growth walks its block through
// RESERVED, MAPPED, REGISTERED and LIVE under its class's growth lock, recording each step as it
// happens, so that whoever takes the lock from a dead Worker finishes or undoes it; the owner's
// close makes every block KEPT, and the last pool to let go GONE (kept-memory.ts).
import { AllocToolsError } from "../errors.ts";
import type { Registration } from "../memory/provider.ts";
import type { GrowthLocks } from "./growth-locks.ts";
import type { SharedCounters } from "./shared-counters.ts";
import { BLOCK, FREE, HEADER, STATE_SHIFT, type SharedLayout, type SharedStackLayout } from "./shared-layout.ts";
import type { SharedStack } from "./shared-stack.ts";
import type { SlotTable } from "./slot-table.ts";

/**
 * Block table states. A growth walks RESERVED → MAPPED → REGISTERED → LIVE. The owner's close
 * makes a block KEPT (deregistered, its range kept mapped while any pool may touch it), and the
 * last pool to let go of the shared pool makes it GONE (unmapped); an undone growth goes to GONE.
 */
export const BlockState = { EMPTY: 0, LIVE: 1, GONE: 2, RESERVED: 3, MAPPED: 4, REGISTERED: 5, KEPT: 6 } as const;
/** Written into a block's last link before its regions are pushed: recovery can tell pushed from not. */
const UNPUSHED = -1;

/** One Worker's view of the block table. */
export class BlockTable {
  private readonly words: Int32Array;
  private readonly floats: Float64Array;
  private readonly longs: BigUint64Array;
  private readonly layout: SharedLayout;
  /** Each size class's capacity (regions and blocks). */
  private readonly classes: readonly SharedStackLayout[];
  private readonly stacks: readonly SharedStack[];
  private readonly slots: SlotTable;
  private readonly locks: GrowthLocks;
  private readonly counters: SharedCounters;
  /** Int32 word of region 0's state word. */
  private readonly stateAt: number;

  constructor(words: Int32Array, floats: Float64Array, longs: BigUint64Array, layout: SharedLayout, classes: readonly SharedStackLayout[],
              stacks: readonly SharedStack[], slots: SlotTable, locks: GrowthLocks, counters: SharedCounters) {
    this.words = words;
    this.floats = floats;
    this.longs = longs;
    this.layout = layout;
    this.classes = classes;
    this.stacks = stacks;
    this.slots = slots;
    this.locks = locks;
    this.counters = counters;
    this.stateAt = layout.state / 4;
  }

  /** Region indices handed out so far (0 .. regionCount are valid). */
  get regionCount(): number {
    return Atomics.load(this.words, HEADER.regions);
  }

  get count(): number {
    return Atomics.load(this.words, HEADER.blocks);
  }

  /**
   * Starts a growth of class `sizeClass` by `count` regions under its lock: checks the capacity, takes a
   * block entry and the indices, and records them as this growth's (RESERVED).
   */
  reserve(sizeClass: number, count: number): { first: number; block: number } {
    const { regions, blocks } = this.counters.stackCounters(sizeClass);
    const room = this.classes[sizeClass]!;
    if (regions + count > room.capacity || blocks + 1 > room.maxBlocks
        || this.regionCount + count > this.layout.capacity || this.count + 1 > this.layout.maxBlocks) {
      throw new AllocToolsError("PINNED_LIMIT",
        `class ${sizeClass} of the shared pool holds at most ${room.capacity} regions in ${room.maxBlocks} blocks (maxRegions); it has ${regions} in ${blocks}`);
    }
    const first = Atomics.add(this.words, HEADER.regions, count);
    const block = Atomics.add(this.words, HEADER.blocks, 1);
    const at = this.layout.blockWord(block);
    this.floats[at + BLOCK.stack] = sizeClass;
    this.floats[at + BLOCK.first] = first;
    this.floats[at + BLOCK.count] = count;
    this.floats[at + BLOCK.slot] = this.slots.slot;
    this.floats[at + BLOCK.pinned] = 0;
    this.floats[at + BLOCK.provided] = 0;
    this.floats[at + BLOCK.stray] = 0;
    for (let index = first; index < first + count; index++) this.words[this.layout.blockOf / 4 + index] = block;
    // Named in the lock line before its state leaves EMPTY: whoever takes the lock from a Worker
    // terminated from here on finds this block (one named nowhere would reach the owner's close
    // half-built, with no registration to close).
    this.locks.noteGrowth(sizeClass, block);
    this.setState(block, BlockState.RESERVED);
    return { first, block };
  }

  /** Growth steps, recorded as they happen so that a Worker terminated in between can be undone. */
  notePinned(block: number, bytes: number): void {
    this.floats[this.layout.blockWord(block) + BLOCK.pinned] = bytes;
  }
  noteMapped(block: number, address: number, size: number, locked: boolean): void {
    const at = this.layout.blockWord(block);
    this.floats[at + BLOCK.address] = address;
    this.floats[at + BLOCK.size] = size;
    this.floats[at + BLOCK.locked] = locked ? 1 : 0;
    this.setState(block, BlockState.MAPPED);
  }
  noteRegistered(block: number, registration: Registration): void {
    const at = this.layout.blockWord(block);
    this.floats[at + BLOCK.handle] = registration.handle;
    const keys = this.layout.blockKeys / 8 + block * 2;
    this.longs[keys] = registration.localKey;
    this.longs[keys + 1] = registration.remoteKey;
    this.setState(block, BlockState.REGISTERED);
  }

  /**
   * Publishes a registered block: its first region in use by this Worker (the get that grew it), the
   * others free and pushed on the class's stack in one CAS. Ends the growth record.
   */
  publish(block: number): number {
    const at = this.layout.blockWord(block);
    const sizeClass = this.floats[at + BLOCK.stack]!;
    const first = this.floats[at + BLOCK.first]!;
    const count = this.floats[at + BLOCK.count]!;
    this.words[this.regionStateWord(first)] = this.slots.slot + 1;
    for (let index = first + 1; index < first + count; index++) this.words[this.regionStateWord(index)] = FREE;
    if (count > 1) this.words[this.layout.next / 4 + first + count - 1] = UNPUSHED;
    this.counters.addStackCounters(sizeClass, count, 1, this.floats[at + BLOCK.size]!);
    this.setState(block, BlockState.LIVE);
    this.pushRest(block);
    this.locks.noteGrowth(sizeClass, -1);
    return first;
  }

  private pushRest(block: number): void {
    const at = this.layout.blockWord(block);
    const first = this.floats[at + BLOCK.first]!;
    const count = this.floats[at + BLOCK.count]!;
    if (count < 2) return;
    const rest = Int32Array.from({ length: count - 1 }, (_, step) => first + 1 + step);
    // The mark again after a failed CAS: a Worker terminated at the retry leaves the block unpushed for the next taker.
    this.stacks[this.floats[at + BLOCK.stack]!]!.pushAll(rest, 0, rest.length, UNPUSHED);
  }

  /**
   * After taking class `sizeClass`'s lock from a dead Worker: a growth it published but had not
   * pushed is pushed now; one it had not published is handed back, still named in the lock line,
   * for the caller to undo step by step (forgetRegistration, notePinned(0), retireAbandoned,
   * endTakeOver). The lock line forgets a block only once it is LIVE and pushed, or GONE: a taker
   * terminated half-way leaves the rest to the next one.
   */
  takeOverGrowth(sizeClass: number): SharedBlock | null {
    const block = this.locks.growthInProgress(sizeClass);
    if (block < 0) return null;
    const state = this.stateOf(block);
    if (state === BlockState.LIVE) {
      const at = this.layout.blockWord(block);
      const first = this.floats[at + BLOCK.first]!;
      const count = this.floats[at + BLOCK.count]!;
      if (count > 1 && this.words[this.layout.next / 4 + first + count - 1] === UNPUSHED) this.pushRest(block);
    } else if (state !== BlockState.GONE) {
      return this.record(block); // GONE: a taker before this one undid it (or leaked what it was undoing when it died)
    }
    this.endTakeOver(sizeClass);
    return null;
  }

  /** Undoing an abandoned growth: its registration is no longer to be closed (noted before the close: a taker terminated in it leaks it, never closes it twice). */
  forgetRegistration(block: number): void {
    this.setState(block, BlockState.MAPPED);
  }

  /** Undoing an abandoned growth: its memory is no longer to be unmapped (noted before the munmap, for the same reason). */
  retireAbandoned(block: number): void {
    this.setState(block, BlockState.GONE);
  }

  /** The growth the lock line of class `sizeClass` names is undone or published: the line forgets it. */
  endTakeOver(sizeClass: number): void {
    this.locks.noteGrowth(sizeClass, -1);
  }

  /** A growth that failed in this Worker: its record is retired (the caller undid the steps). */
  abandonGrowth(block: number, sizeClass: number): void {
    this.setState(block, BlockState.GONE);
    this.locks.noteGrowth(sizeClass, -1);
  }

  private setState(block: number, state: number): void {
    Atomics.store(this.words, this.layout.blockState / 4 + block, state);
  }

  stateOf(block: number): number {
    return Atomics.load(this.words, this.layout.blockState / 4 + block);
  }

  /** Block `block` if it is live: its registration, where it was mapped, and which regions it holds. */
  live(block: number): SharedBlock | null {
    return this.stateOf(block) === BlockState.LIVE ? this.record(block) : null;
  }

  /** Whatever the table holds for `block`, in any state. */
  record(block: number): SharedBlock {
    const at = this.layout.blockWord(block);
    const floats = this.floats;
    const keys = this.layout.blockKeys / 8 + block * 2;
    const address = floats[at + BLOCK.address]!;
    const size = floats[at + BLOCK.size]!;
    return {
      index: block, state: this.stateOf(block), stackId: floats[at + BLOCK.stack]!, first: floats[at + BLOCK.first]!,
      count: floats[at + BLOCK.count]!, slot: floats[at + BLOCK.slot]!, locked: floats[at + BLOCK.locked] === 1,
      address, size, pinnedBytes: floats[at + BLOCK.pinned]!, provided: floats[at + BLOCK.provided] === 1, stray: floats[at + BLOCK.stray] === 1,
      registration: { address, length: size, handle: floats[at + BLOCK.handle]!, localKey: this.longs[keys]!, remoteKey: this.longs[keys + 1]! },
    };
  }

  /**
   * The owner's close takes a block out of service: KEPT (deregistered, its range kept mapped until
   * the last pool lets go: takeKeptBlock). Returns the state it took the block from, for the one
   * caller that gets to retire it; -1 for the others, and for a block with nothing mapped (made
   * GONE here).
   */
  keep(block: number): number {
    const word = this.layout.blockState / 4 + block;
    for (;;) {
      const state = Atomics.load(this.words, word);
      if (state === BlockState.GONE || state === BlockState.EMPTY || state === BlockState.KEPT) return -1;
      // Nothing mapped (a growth cut before its mapping was noted): nothing to keep or unmap.
      const next = this.floats[this.layout.blockWord(block) + BLOCK.size]! > 0 ? BlockState.KEPT : BlockState.GONE;
      if (Atomics.compareExchange(this.words, word, state, next) === state) return next === BlockState.KEPT ? state : -1;
    }
  }

  /** The last pool to let go takes a kept block to unmap it (GONE); true for the one caller that does. */
  takeKept(block: number): boolean {
    const word = this.layout.blockState / 4 + block;
    return Atomics.compareExchange(this.words, word, BlockState.KEPT, BlockState.GONE) === BlockState.KEPT;
  }

  /** The provider allocated block `block` itself: it is freed through freeProvidedBlock, never unmapped. */
  noteProvided(block: number): void {
    this.floats[this.layout.blockWord(block) + BLOCK.provided] = 1;
  }

  /** A thread moved memory of block `block` out of a view (transfer()): its range stays mapped for the life of the process. */
  noteStray(block: number): void {
    this.floats[this.layout.blockWord(block) + BLOCK.stray] = 1;
  }

  blockOf(index: number): number {
    return this.words[this.layout.blockOf / 4 + index]!;
  }

  /** share(): records a block the unshared pool already had, all its regions free but those marked later. */
  adopt(sizeClass: number, first: number, count: number, address: number, size: number, locked: boolean, registration: Registration): number {
    const { block } = this.reserve(sizeClass, count);
    if (block !== this.count - 1 || first !== this.regionCount - count) throw new Error("share(): blocks must be adopted in order");
    this.noteMapped(block, address, size, locked);
    this.noteRegistered(block, registration);
    for (let index = first; index < first + count; index++) this.words[this.regionStateWord(index)] = FREE;
    this.counters.addStackCounters(sizeClass, count, 1, size);
    this.setState(block, BlockState.LIVE);
    this.locks.noteGrowth(sizeClass, -1);
    return block;
  }


  /** The size class of region `index`. */
  stackOf(index: number): number {
    return this.floats[this.layout.blockWord(this.blockOf(index)) + BLOCK.stack]!;
  }

  private regionStateWord(index: number): number {
    return this.stateAt + (index << STATE_SHIFT);
  }
}

/** A block as the block table records it. */
export interface SharedBlock {
  readonly index: number;
  readonly state: number;
  readonly stackId: number;
  readonly first: number;
  readonly count: number;
  /** The slot of the Worker that mapped and registered it (0: the owner). */
  readonly slot: number;
  readonly locked: boolean;
  readonly address: number;
  readonly size: number;
  /** Bytes counted against maxPinnedBytes for it (0 before the growth reserved them). */
  readonly pinnedBytes: number;
  /** The provider allocated it (freeProvidedBlock frees it). */
  readonly provided: boolean;
  /** Memory was moved out of a view of it: its range is never unmapped. */
  readonly stray: boolean;
  readonly registration: Registration;
}
