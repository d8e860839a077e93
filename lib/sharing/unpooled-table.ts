// The table of unpooled regions of a shared pool: every temporary and user region a Worker makes
// is recorded there before anything is mapped or registered, each step noted as it is done, so
// that the owner's close frees what a Worker left (terminated half-way or not), never repeating a
// step, and waits for those being made. Each Worker has maxUnpooledRegions entries of its own.
import type { Registration } from "../memory/provider.ts";
import { ClosePhase, UNPOOLED, type SharedLayout } from "./shared-layout.ts";
import { waitOutClosing } from "./slot-operations.ts";
import type { SlotTable } from "./slot-table.ts";

/** Unpooled table entry states. */
const UNPOOLED_EMPTY = 0;
const UNPOOLED_LIVE = 1;
/** Freed by the owner's close (nothing left for its Worker to do). */
const UNPOOLED_GONE = 2;
/** Its Worker is releasing it: deregistered and unmapped as the entry's words say. */
const UNPOOLED_FREEING = 3;
/** Its Worker is mapping and registering it: the owner's close waits for it (a dead Worker's is freed as its words say). */
const UNPOOLED_BUILDING = 4;
/** The owner's close is freeing it: its Worker's release waits until it is GONE or KEPT. */
const UNPOOLED_CLAIMED = 5;
/** Deregistered by the owner's close, its pages replaced by fresh ones and kept mapped: its Worker may hold views; it unmaps them. */
const UNPOOLED_KEPT = 6;
export const UnpooledKind = { TEMPORARY: 1, USER: 2 } as const;
/** begin(): this Worker's table is full, or the owner has closed the pool. */
export const UNPOOLED_TABLE_FULL = -1;
export const UNPOOLED_POOL_CLOSED = -2;
/** What a Worker's release of its temporary or user region finds (beginFreeing). */
export const UnpooledRelease = {
  /** Still registered: the Worker frees it, step by step. */
  LIVE: 0,
  /** The owner deregistered it and kept its pages mapped: the Worker detaches its views and unmaps them. */
  KEPT: 1,
  /** The owner freed it entirely: the Worker only detaches its views. */
  GONE: 2,
} as const;

/** One Worker's view of the table: its own entries, and (the owner's close) every Worker's. */
export class UnpooledTable {
  private readonly words: Int32Array;
  private readonly floats: Float64Array;
  private readonly layout: SharedLayout;
  /** Entries per Worker (ShareOptions.maxUnpooledRegions). */
  private readonly perWorker: number;
  private readonly slots: SlotTable;

  constructor(words: Int32Array, floats: Float64Array, layout: SharedLayout, perWorker: number, slots: SlotTable) {
    this.words = words;
    this.floats = floats;
    this.layout = layout;
    this.perWorker = perWorker;
    this.slots = slots;
  }

  /**
   * Records a temporary or user region of this Worker before anything is mapped or registered, so
   * that the owner frees whatever a Worker terminated half-way left (BUILDING until publish).
   * UNPOOLED_TABLE_FULL if this Worker's table is full; UNPOOLED_POOL_CLOSED (nothing recorded) if
   * the owner has closed the pool: recorded first, then the phase read, so that the owner's close
   * either waits for this region or this Worker sees the pool closed.
   */
  begin(kind: number, size: number, blockSize: number): number {
    const per = this.perWorker;
    for (let entry = 0; entry < per; entry++) {
      const index = this.layout.unpooledEntry(this.slots.slot, entry, per);
      const word = this.layout.unpooledState / 4 + index;
      if (Atomics.load(this.words, word) !== UNPOOLED_EMPTY) continue;
      const at = this.layout.unpooledWord(index);
      const floats = this.floats;
      floats[at + UNPOOLED.kind] = kind;
      floats[at + UNPOOLED.address] = 0;
      floats[at + UNPOOLED.length] = 0;
      floats[at + UNPOOLED.handle] = 0;
      floats[at + UNPOOLED.blockSize] = blockSize;
      floats[at + UNPOOLED.locked] = 0;
      floats[at + UNPOOLED.size] = size;
      floats[at + UNPOOLED.registered] = 0;
      floats[at + UNPOOLED.unmapping] = 0;
      Atomics.store(this.words, word, UNPOOLED_BUILDING);
      if (waitOutClosing(this.words) === ClosePhase.OPEN) return index;
      this.drop(index);
      return UNPOOLED_POOL_CLOSED;
    }
    return UNPOOLED_TABLE_FULL;
  }

  /** The unpooled region is mapped and registered (BUILDING → LIVE): the owner's close may take it now. */
  publish(index: number): void {
    const word = this.layout.unpooledState / 4 + index;
    Atomics.store(this.words, word, UNPOOLED_LIVE);
    Atomics.notify(this.words, word);
  }

  /** The unpooled region's memory: mapped here (temporary) or the caller's (user); `locked`: mlock'd. */
  noteMapped(index: number, address: number, blockSize: number, locked: boolean): void {
    const at = this.layout.unpooledWord(index);
    this.floats[at + UNPOOLED.address] = address;
    this.floats[at + UNPOOLED.blockSize] = blockSize;
    this.floats[at + UNPOOLED.locked] = locked ? 1 : 0;
  }

  noteRegistered(index: number, registration: Registration): void {
    const at = this.layout.unpooledWord(index);
    this.floats[at + UNPOOLED.address] = registration.address;
    this.floats[at + UNPOOLED.length] = registration.length;
    this.floats[at + UNPOOLED.handle] = registration.handle;
    this.floats[at + UNPOOLED.registered] = 1;
  }

  /** Gives a unpooled entry back unused (its region failed before it was registered). */
  drop(index: number): void {
    const word = this.layout.unpooledState / 4 + index;
    Atomics.store(this.words, word, UNPOOLED_EMPTY);
    Atomics.notify(this.words, word);
  }

  /**
   * This Worker starts releasing unpooled entry `index` (UnpooledRelease): LIVE, it frees it and
   * notes each step (noteDeregistered, noteUnlocked, noteUnmapping) so that
   * the owner finishes, without repeating, what a Worker terminated half-way left; KEPT, the owner
   * deregistered it and only its kept pages are left to unmap; GONE, nothing is left. LIVE and KEPT
   * end with endFreeing. While the owner's close is freeing it (CLAIMED), this waits.
   */
  beginFreeing(index: number): number {
    const word = this.layout.unpooledState / 4 + index;
    for (;;) {
      const state = Atomics.load(this.words, word);
      if (state === UNPOOLED_CLAIMED) {
        Atomics.wait(this.words, word, UNPOOLED_CLAIMED, 50);
        continue;
      }
      if (state !== UNPOOLED_LIVE && state !== UNPOOLED_KEPT) return UnpooledRelease.GONE;
      if (Atomics.compareExchange(this.words, word, state, UNPOOLED_FREEING) === state) {
        return state === UNPOOLED_LIVE ? UnpooledRelease.LIVE : UnpooledRelease.KEPT;
      }
    }
  }

  noteDeregistered(index: number): void {
    this.floats[this.layout.unpooledWord(index) + UNPOOLED.registered] = 0;
  }

  noteUnlocked(index: number): void {
    this.floats[this.layout.unpooledWord(index) + UNPOOLED.locked] = 0;
  }

  /** Written before the munmap: whoever finds it set must not unmap again (the range may be reused). */
  noteUnmapping(index: number): void {
    this.floats[this.layout.unpooledWord(index) + UNPOOLED.unmapping] = 1;
  }

  endFreeing(index: number): void {
    Atomics.store(this.words, this.layout.unpooledState / 4 + index, UNPOOLED_EMPTY);
  }

  /** The owner's close takes unpooled entry `index` (seen in `state`) to free it: true if it got it. */
  claim(index: number, state: number): boolean {
    const word = this.layout.unpooledState / 4 + index;
    return Atomics.compareExchange(this.words, word, state, UNPOOLED_CLAIMED) === state;
  }

  /** The owner's close freed a claimed entry: entirely (GONE), or all but its pages, kept mapped for its Worker to unmap (KEPT). */
  endClaimed(index: number, kept: boolean): void {
    const word = this.layout.unpooledState / 4 + index;
    Atomics.store(this.words, word, kept ? UNPOOLED_KEPT : UNPOOLED_GONE);
    Atomics.notify(this.words, word);
  }

  /**
   * The owner's close (the pool already CLOSED) waits, until `deadline`, for the temporary and user
   * regions live Workers are still mapping and registering; those of a Worker that dies meanwhile
   * are freed as their words say.
   */
  waitForBuilds(exceptSlot: number, deadline: number): void {
    const per = this.perWorker;
    for (let slot = 0; slot < this.slots.used; slot++) {
      if (slot === exceptSlot) continue;
      for (let entry = 0; entry < per; entry++) {
        const word = this.layout.unpooledState / 4 + this.layout.unpooledEntry(slot, entry, per);
        while (Atomics.load(this.words, word) === UNPOOLED_BUILDING && this.slots.alive(slot) && Date.now() < deadline) {
          Atomics.wait(this.words, word, UNPOOLED_BUILDING, 20);
        }
      }
    }
  }

  /**
   * Unpooled entries of other slots at the owner's close: live ones, and those a dead Worker was
   * making or releasing when it died (`releasing`: finished as far as its noted steps make safe).
   */
  live(exceptSlot: number): SharedUnpooledRegion[] {
    const out: SharedUnpooledRegion[] = [];
    const per = this.perWorker;
    for (let slot = 0; slot < this.slots.used; slot++) {
      if (slot === exceptSlot) continue;
      for (let entry = 0; entry < per; entry++) {
        const index = this.layout.unpooledEntry(slot, entry, per);
        const state = Atomics.load(this.words, this.layout.unpooledState / 4 + index);
        const deadWorkers = (state === UNPOOLED_FREEING || state === UNPOOLED_BUILDING) && !this.slots.alive(slot);
        if (state !== UNPOOLED_LIVE && !deadWorkers) continue;
        const at = this.layout.unpooledWord(index);
        const floats = this.floats;
        out.push({
          index, slot, state, releasing: state === UNPOOLED_FREEING, kind: floats[at + UNPOOLED.kind] === UnpooledKind.TEMPORARY ? "temporary" : "user", size: floats[at + UNPOOLED.size]!,
          address: floats[at + UNPOOLED.address]!, blockSize: floats[at + UNPOOLED.blockSize]!, locked: floats[at + UNPOOLED.locked] === 1,
          unmapping: floats[at + UNPOOLED.unmapping] === 1,
          registration: floats[at + UNPOOLED.registered] === 1
            ? { address: floats[at + UNPOOLED.address]!, length: floats[at + UNPOOLED.length]!, handle: floats[at + UNPOOLED.handle]!, localKey: 0n, remoteKey: 0n }
            : null,
        });
      }
    }
    return out;
  }

  /** Whether this Worker's entries are all empty (it holds no temporary or user region). */
  holdsNone(): boolean {
    const per = this.perWorker;
    for (let entry = 0; entry < per; entry++) {
      if (Atomics.load(this.words, this.layout.unpooledState / 4 + this.layout.unpooledEntry(this.slots.slot, entry, per)) !== UNPOOLED_EMPTY) return false;
    }
    return true;
  }
}

/** A temporary or user region as the table of unpooled regions records it. */
export interface SharedUnpooledRegion {
  readonly index: number;
  readonly slot: number;
  /** The entry's state when listed (claim takes it from this one). */
  readonly state: number;
  /** A dead Worker was releasing it: how far it got is unknown. */
  readonly releasing: boolean;
  readonly kind: "temporary" | "user";
  readonly size: number;
  /** Its memory (0: not mapped yet). */
  readonly address: number;
  /** The mapping to unmap (temporary regions), 0 for user regions. */
  readonly blockSize: number;
  readonly locked: boolean;
  /** Its Worker may have unmapped it already. */
  readonly unmapping: boolean;
  /** Null when the Worker ended before its registration returned. */
  readonly registration: Registration | null;
}
