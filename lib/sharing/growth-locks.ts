// The growth locks of a shared pool, one per size class (LOCK in shared-layout.ts): a Worker
// whose class ran dry takes its class's lock, maps and registers a block, and records in the
// lock's line which block it is adding, so that whoever takes the lock from a dead holder
// finishes or undoes that growth. A lock is taken from its holder only when the holder's thread
// has exited, never because a growth is slow.
import { LOCK, type SharedLayout } from "./shared-layout.ts";
import type { SlotTable } from "./slot-table.ts";

/** What lock() did. */
export const LockResult = { ACQUIRED: 0, TIMED_OUT: 1, TAKEN_FROM_DEAD: 2 } as const;

export class GrowthLocks {
  private readonly words: Int32Array;
  private readonly layout: SharedLayout;
  private readonly slots: SlotTable;

  constructor(words: Int32Array, layout: SharedLayout, slots: SlotTable) {
    this.words = words;
    this.layout = layout;
    this.slots = slots;
  }

  /**
   * Takes class `sizeClass`'s growth lock, sleeping while another Worker grows that class. A holder whose
   * thread has exited is dead, not slow: its lock is taken over (TAKEN_FROM_DEAD; the caller
   * finishes or undoes its growth with growthInProgress()). TIMED_OUT once `timeoutMs` passed.
   */
  lock(sizeClass: number, timeoutMs: number = Infinity): number {
    const words = this.words;
    const at = this.holderWord(sizeClass);
    const me = this.slots.slot + 1;
    const start = Date.now();
    for (;;) {
      const holder = Atomics.compareExchange(words, at, 0, me);
      if (holder === 0) return LockResult.ACQUIRED;
      if (!this.slots.alive(holder - 1) && Atomics.compareExchange(words, at, holder, me) === holder) return LockResult.TAKEN_FROM_DEAD;
      Atomics.wait(words, at, holder, 20);
      if (Date.now() - start > timeoutMs) return LockResult.TIMED_OUT;
    }
  }

  unlock(sizeClass: number): void {
    const at = this.holderWord(sizeClass);
    const me = this.slots.slot + 1;
    if (Atomics.compareExchange(this.words, at, me, 0) === me) Atomics.notify(this.words, at);
  }

  /** The slot + 1 of the Worker holding class `sizeClass`'s lock, 0 when free. */
  holder(sizeClass: number): number {
    return Atomics.load(this.words, this.holderWord(sizeClass));
  }

  /** The block a growth of class `sizeClass` is adding (under its lock), or -1. */
  growthInProgress(sizeClass: number): number {
    return this.words[this.layout.lockLine(sizeClass) / 4 + LOCK.block]! - 1;
  }

  /** Under class `sizeClass`'s lock: the growth adds `block` (-1: none any more). */
  noteGrowth(sizeClass: number, block: number): void {
    this.words[this.layout.lockLine(sizeClass) / 4 + LOCK.block] = block + 1;
  }

  private holderWord(sizeClass: number): number {
    return this.layout.lockLine(sizeClass) / 4 + LOCK.holder;
  }
}
