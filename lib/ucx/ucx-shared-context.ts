// What every thread's view of one UCX context agrees on, in shared memory: how many users keep the
// context alive (the owner until it closes, every endpoint, registration and allocated block, in any
// thread; the last one out calls ucp_cleanup, which aborts with a mapping left), whether its owner closed
// it, and the blocks UCX allocated for pools (a block a Worker grew is freed by the owner at close,
// and must go back through ucp_mem_unmap, never munmap).
//
// Lock-free on purpose: a Worker terminated at any instruction leaves no lock held. A block entry
// it was writing stays claimed and is lost (one table slot); nothing is freed twice.

/** Int32 words at the start of the buffer. */
const USERS = 0; // references keeping the context; -1 once it was cleaned up
const CLOSED = 1; // 1 once the owner closed the provider
const HEADER_WORDS = 2;

/** Block table entry states. */
const EMPTY = 0;
const WRITING = 1;
const LIVE = 2;
const TAKING = 3;

/** Provided blocks one context records: far more than a pool's block count (one per growth). */
export const MAX_PROVIDED_BLOCKS = 1024;
/** Each entry's numbers: address, length, memh. */
const ENTRY_NUMBERS = 3;

/** One allocated block as the table records it. */
export interface ProvidedBlockRecord {
  /** Start of the block (what UCX mapped). */
  readonly address: number;
  /** Its length in bytes. */
  readonly length: number;
  /** The `ucp_mem_h` that maps, and unmapping frees, it. */
  readonly memh: number;
}

/** The shared part of a UCX context: see the file header. */
export class UcxSharedContext {
  /** Posted to Workers inside the provider's handle. */
  readonly buffer: SharedArrayBuffer;
  private readonly words: Int32Array;
  private readonly entryStates: Int32Array;
  private readonly entries: Float64Array;

  /** A new state with one user (the owner's own reference), or a view of an existing one. */
  constructor(from?: SharedArrayBuffer) {
    const stateBytes = (HEADER_WORDS + MAX_PROVIDED_BLOCKS) * 4;
    const entriesAt = Math.ceil(stateBytes / 8) * 8;
    this.buffer = from ?? new SharedArrayBuffer(entriesAt + MAX_PROVIDED_BLOCKS * ENTRY_NUMBERS * 8);
    this.words = new Int32Array(this.buffer, 0, HEADER_WORDS);
    this.entryStates = new Int32Array(this.buffer, HEADER_WORDS * 4, MAX_PROVIDED_BLOCKS);
    this.entries = new Float64Array(this.buffer, entriesAt, MAX_PROVIDED_BLOCKS * ENTRY_NUMBERS);
    if (from === undefined) this.words[USERS] = 1;
  }

  /** Whether `buffer` has the size of a state buffer (a check of a handle, not of its origin). */
  static fits(buffer: SharedArrayBuffer): boolean {
    return buffer.byteLength === new UcxSharedContext().buffer.byteLength;
  }

  // ---- users ----------------------------------------------------------------------------------------

  /** One more user of the context; false when it was cleaned up already. */
  retain(): boolean {
    for (;;) {
      const users = Atomics.load(this.words, USERS);
      if (users < 0) return false;
      if (Atomics.compareExchange(this.words, USERS, users, users + 1) === users) return true;
    }
  }

  /**
   * One user fewer; true for the one caller that must now call ucp_cleanup (the last user left:
   * the owner's own reference goes only at its close).
   */
  release(): boolean {
    if (Atomics.sub(this.words, USERS, 1) !== 1) return false;
    return Atomics.compareExchange(this.words, USERS, 0, -1) === 0;
  }

  /** Whether ucp_cleanup ran (or is about to run) on the context. */
  get cleanedUp(): boolean {
    return Atomics.load(this.words, USERS) < 0;
  }

  /** Users right now (-1 once cleaned up): the owner's reference, endpoints, registrations, allocated blocks. */
  get users(): number {
    return Atomics.load(this.words, USERS);
  }

  /** The owner closed the provider: no view may start anything new on it. */
  markClosed(): void {
    Atomics.store(this.words, CLOSED, 1);
  }

  /** Whether the owner closed the provider. */
  get closed(): boolean {
    return Atomics.load(this.words, CLOSED) !== 0;
  }

  // ---- allocated blocks -----------------------------------------------------------------------------

  /** Records an allocated block; false when the table is full (the caller frees it and maps its own). */
  addBlock(record: ProvidedBlockRecord): boolean {
    for (let slot = 0; slot < MAX_PROVIDED_BLOCKS; slot++) {
      if (Atomics.load(this.entryStates, slot) !== EMPTY) continue;
      if (Atomics.compareExchange(this.entryStates, slot, EMPTY, WRITING) !== EMPTY) continue;
      const at = slot * ENTRY_NUMBERS;
      this.entries[at] = record.address;
      this.entries[at + 1] = record.length;
      this.entries[at + 2] = record.memh;
      Atomics.store(this.entryStates, slot, LIVE);
      return true;
    }
    return false;
  }

  /** Whether an allocated block starts at `address`. */
  hasBlock(address: number): boolean {
    return this.find(address) >= 0;
  }

  /** Removes the block at `address` from the table: the one caller that gets it frees it. Null when none. */
  takeBlock(address: number): ProvidedBlockRecord | null {
    for (;;) {
      const slot = this.find(address);
      if (slot < 0) return null;
      if (Atomics.compareExchange(this.entryStates, slot, LIVE, TAKING) !== LIVE) continue; // another taker: look again
      const at = slot * ENTRY_NUMBERS;
      const record = { address: this.entries[at]!, length: this.entries[at + 1]!, memh: this.entries[at + 2]! };
      if (record.address !== address) { // reused for another block between find and the CAS
        Atomics.store(this.entryStates, slot, LIVE);
        continue;
      }
      this.entries.fill(0, at, at + ENTRY_NUMBERS);
      Atomics.store(this.entryStates, slot, EMPTY);
      return record;
    }
  }

  /** Allocated blocks recorded now. */
  get blockCount(): number {
    let count = 0;
    for (let slot = 0; slot < MAX_PROVIDED_BLOCKS; slot++) if (Atomics.load(this.entryStates, slot) === LIVE) count++;
    return count;
  }

  private find(address: number): number {
    for (let slot = 0; slot < MAX_PROVIDED_BLOCKS; slot++) {
      if (Atomics.load(this.entryStates, slot) === LIVE && this.entries[slot * ENTRY_NUMBERS] === address) return slot;
    }
    return -1;
  }
}
