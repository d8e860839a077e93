// The RMA operations in flight on one Worker's regions of a shared pool, counted in its slot line
// so that the owner's close sees every Worker's (the per-thread count lives in each region object).
//
// A Worker counts an operation before it looks at the pool's close phase; the owner sets the
// phase before it sums the counts. Both are sequentially consistent atomics, so at least one of
// them sees the other: either the owner finds the operation and refuses to close (BUSY), or the
// Worker finds the pool closed and refuses the operation (POOL_CLOSED). Never both missed.
import type { SharedOperationCount } from "../memory/region.ts";
import { ClosePhase, HEADER } from "./shared-layout.ts";

export class SlotOperations implements SharedOperationCount {
  private readonly words: Int32Array;
  /** Int32 word of the slot's operation count, and of its count of regions with operations. */
  private readonly operationsWord: number;
  private readonly regionsWord: number;

  constructor(words: Int32Array, operationsWord: number, regionsWord: number) {
    this.words = words;
    this.operationsWord = operationsWord;
    this.regionsWord = regionsWord;
  }

  begin(firstOnRegion: boolean): boolean {
    const words = this.words;
    Atomics.add(words, this.operationsWord, 1);
    if (firstOnRegion) Atomics.add(words, this.regionsWord, 1);
    if (waitOutClosing(words) === ClosePhase.OPEN) return true;
    this.end(firstOnRegion);
    return false;
  }

  end(lastOnRegion: boolean): void {
    Atomics.sub(this.words, this.operationsWord, 1);
    if (lastOnRegion) Atomics.sub(this.words, this.regionsWord, 1);
  }

  get closed(): boolean {
    return Atomics.load(this.words, HEADER.closed) === ClosePhase.CLOSED;
  }
}

/**
 * The pool's close phase once the owner has finished counting: OPEN or CLOSED. The count takes
 * microseconds (a pass over the slots), so the wait is short.
 */
export function waitOutClosing(words: Int32Array): number {
  let phase = Atomics.load(words, HEADER.closed);
  while (phase === ClosePhase.CLOSING) {
    Atomics.wait(words, HEADER.closed, ClosePhase.CLOSING, 50);
    phase = Atomics.load(words, HEADER.closed);
  }
  return phase;
}
