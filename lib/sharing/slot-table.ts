// The slots of a shared pool, one per attached pool (the owner's is 0), each a line of words
// (SLOT in shared-layout.ts): the thread that holds it and whether that thread still runs, whether
// it is attached, detached or vacant, its pop intent, and the RMA operations in flight on its
// regions. With them the header's count of references: who unmaps what the owner's close kept.
import { AllocToolsRangeError } from "../errors.ts";
import { HEADER, SLOT, type SharedLayout } from "./shared-layout.ts";
import { SlotOperations } from "./slot-operations.ts";
import { currentThread, threadAlive, type ThreadIdentity } from "./thread-liveness.ts";

/** A slot's attached word. */
export const SlotState = { DETACHED: 0, ATTACHED: 1, VACANT: 2 } as const;

/** One thread's view of the slots: its own slot, and what it reads of the others'. */
export class SlotTable {
  /** This thread's slot (0: the owner). */
  readonly slot: number;
  /** Where this thread counts the RMA operations on its regions (the owner's close reads every slot's). */
  readonly operations: SlotOperations;
  private readonly words: Int32Array;
  private readonly floats: Float64Array;
  private readonly layout: SharedLayout;
  private readonly maxWorkers: number;
  /** Slots whose thread was seen dead, with that thread (a slot left holding nothing is taken again by a new one). */
  private readonly dead = new Map<number, string>();

  constructor(words: Int32Array, floats: Float64Array, layout: SharedLayout, maxWorkers: number, slot: number) {
    this.words = words;
    this.floats = floats;
    this.layout = layout;
    this.maxWorkers = maxWorkers;
    this.slot = slot;
    const line = layout.slotLine(slot) / 4;
    this.operations = new SlotOperations(words, line + SLOT.operations, line + SLOT.busyRegions);
  }

  /**
   * A slot for a new attached pool: one a Worker left holding nothing (VACANT), else the next
   * unused one. AllocToolsRangeError when all `maxWorkers` are taken.
   */
  static take(words: Int32Array, layout: SharedLayout, maxWorkers: number): number {
    const vacant = SlotTable.takeVacant(words, layout, maxWorkers);
    if (vacant >= 0) return vacant;
    const slot = Atomics.add(words, HEADER.slots, 1);
    if (slot < maxWorkers) return slot;
    Atomics.sub(words, HEADER.slots, 1);
    throw new AllocToolsRangeError(`the shared pool takes ${maxWorkers} attached pools at once (share({ maxWorkers })); a detached one that holds no region frees its slot`);
  }

  /** A slot a Worker left holding nothing (VACANT), taken with a CAS; -1 if there is none. */
  private static takeVacant(words: Int32Array, layout: SharedLayout, maxWorkers: number): number {
    const used = Math.min(Atomics.load(words, HEADER.slots), maxWorkers);
    for (let slot = 1; slot < used; slot++) {
      const word = layout.slotLine(slot) / 4 + SLOT.attached;
      if (Atomics.compareExchange(words, word, SlotState.VACANT, SlotState.ATTACHED) === SlotState.VACANT) return slot;
    }
    return -1;
  }

  /** This thread takes its slot: its identity (for liveness), no pop noted, attached. */
  enter(): void {
    const line = this.layout.slotLine(this.slot);
    const me = currentThread();
    this.words[line / 4 + SLOT.thread] = me.id;
    this.floats[line / 8 + SLOT.startFloat64] = me.start;
    this.words[line / 4 + SLOT.popIntent] = -1;
    Atomics.store(this.words, line / 4 + SLOT.attached, SlotState.ATTACHED);
  }

  /**
   * This thread leaves its slot, VACANT (holding nothing: the next attach may take it) or DETACHED
   * (what it holds stays its own in reports), and drops its reference: see dropReference.
   */
  leave(vacant: boolean): boolean {
    Atomics.store(this.words, this.layout.slotLine(this.slot) / 4 + SLOT.attached, vacant ? SlotState.VACANT : SlotState.DETACHED);
    return this.dropReference();
  }

  /**
   * This pool no longer touches the blocks (an attached pool detached, or the owner's close is
   * done). True for the last one, after the owner's close: it unmaps the blocks the close kept.
   */
  dropReference(): boolean {
    return Atomics.sub(this.words, HEADER.references, 1) === 1;
  }

  /**
   * The owner's close: a slot still attached whose thread has exited and that has no operation in
   * flight can touch nothing any more (its views went with its heap); its reference is dropped so
   * that the kept blocks are unmapped once the live pools have detached. One whose operations are
   * still counted keeps its reference: a transport may yet complete them into its memory.
   */
  releaseDead(): void {
    for (let slot = 1; slot < this.used; slot++) {
      const word = this.layout.slotLine(slot) / 4 + SLOT.attached;
      if (Atomics.load(this.words, word) !== SlotState.ATTACHED || this.alive(slot) || this.operationsOf(slot).operations > 0) continue;
      if (Atomics.compareExchange(this.words, word, SlotState.ATTACHED, SlotState.DETACHED) === SlotState.ATTACHED) this.dropReference();
    }
  }

  /** Whether the pool of `slot` may still touch its memory: attached, and alive or with operations in flight. */
  mayTouch(slot: number): boolean {
    return this.attached(slot) && (this.alive(slot) || this.operationsOf(slot).operations > 0);
  }

  /** The RMA operations in flight on the regions of `slot`, and on how many regions. */
  operationsOf(slot: number): { operations: number; regions: number } {
    const line = this.layout.slotLine(slot) / 4;
    return { operations: Atomics.load(this.words, line + SLOT.operations), regions: Atomics.load(this.words, line + SLOT.busyRegions) };
  }

  /** Slots taken so far (0 .. used). */
  get used(): number {
    return Math.min(Atomics.load(this.words, HEADER.slots), this.maxWorkers);
  }

  /** The thread that holds `slot`. */
  threadOf(slot: number): ThreadIdentity {
    const line = this.layout.slotLine(slot);
    return { id: this.words[line / 4 + SLOT.thread]!, start: this.floats[line / 8 + SLOT.startFloat64]! };
  }

  /** Whether the thread of `slot` still runs. A thread never comes back once gone, but a slot left VACANT gets a new one. */
  alive(slot: number): boolean {
    if (slot === this.slot) return true;
    const thread = this.threadOf(slot);
    const key = `${thread.id}:${thread.start}`;
    if (this.dead.get(slot) === key) return false;
    if (threadAlive(thread)) return true;
    this.dead.set(slot, key);
    return false;
  }

  /** Whether `slot` is attached now (its pool not closed). */
  attached(slot: number): boolean {
    return Atomics.load(this.words, this.layout.slotLine(slot) / 4 + SLOT.attached) === SlotState.ATTACHED;
  }

  /** Int32 word of the region `slot` is popping from a stack (-1: none), what a Worker dead mid-pop leaves. */
  popIntentWord(slot: number): number {
    return this.layout.slotLine(slot) / 4 + SLOT.popIntent;
  }
}
