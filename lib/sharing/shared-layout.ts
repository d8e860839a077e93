// Where everything of a shared pool lives in its one SharedArrayBuffer, computed from the size
// classes, the capacity and the Worker count (TigerBeetle style: every part named, the whole
// checked against the sum of its parts). Each part starts on its own cache line.

/** Per-class numbers fixed when the pool is shared. */
export interface SharedStackLayout {
  /** Bytes per region. */
  readonly chunkSize: number;
  /** Regions registered when the pool was made. */
  readonly initialCount: number;
  /** Regions added per growth (one block). */
  readonly growCount: number;
  /** Most regions the class may ever hold. */
  readonly capacity: number;
  /** Most blocks the class may ever hold. */
  readonly maxBlocks: number;
}

/** Everything that fixes the buffer's layout; part of the pool's handle. */
export interface SharedLayoutSpec {
  /** One entry per size class, smallest first. */
  readonly stacks: readonly SharedStackLayout[];
  /** How many pools (owner included) may be attached at once (ShareOptions.maxWorkers): one slot each. */
  readonly maxWorkers: number;
  /** Free regions each Worker keeps per size class in its cache (0: none). */
  readonly cacheSize: number;
  /** Temporary and user regions each Worker may hold at once (recorded for the owner's close). */
  readonly maxUnpooledRegions: number;
}

export const LINE = 64;
const INT32 = 4;
const FLOAT64 = 8;
export const alignToLine = (bytes: number): number => Math.ceil(bytes / LINE) * LINE;
/**
 * Region i's state word is int32 word `i << STATE_SHIFT` of the state part: a cache line each, so
 * Workers cycling through neighbouring regions share no line. A constant: the hot path shifts by
 * a literal. (At most MAX_SHARED_REGIONS, 2^16 - 1, regions: 4 MiB of state lines at most.)
 */
export const STATE_SHIFT = 4;
/** A region's state word while the region is on a shared stack; else the slot + 1 of the Worker that holds it. */
export const FREE = 0;

/**
 * Header (int32 words of the first line). `closed` holds a ClosePhase; `references` counts the
 * pools that may still touch the blocks (the owner until its close, each attached pool until it
 * detaches): the one that brings it to 0 unmaps what the owner's close kept mapped.
 */
export const HEADER = { magic: 0, closed: 1, slots: 2, blocks: 3, regions: 4, identity: 5, references: 7, classes: 8 } as const;
export const MAGIC = 0x616c6c6f; // "allo"

/**
 * The pool's description (float64 words of the part after the header), written by share(): what
 * the layout and every attached pool's options depend on, so that attach takes them from the
 * shared memory and only checks the handle against them (shared-description.ts). The provider
 * handle is fingerprinted (two 32-bit hashes); then one line of words per size class.
 */
export const DESCRIPTION = {
  pid: 0, maxWorkers: 1, cacheSize: 2, maxUnpooledRegions: 3, maxPinnedBytes: 4, access: 5, hugePages: 6, debug: 7,
  providerFingerprint: 8, stacks: 10,
} as const;
/** A size class's words in the description. */
export const DESCRIPTION_STACK = { chunkSize: 0, initialCount: 1, growCount: 2, capacity: 3, maxBlocks: 4 } as const;
export const DESCRIPTION_STACK_WORDS = 5;

/** Bytes of the description part for `classes` size classes. */
export function descriptionBytes(classes: number): number {
  return alignToLine(FLOAT64 * (DESCRIPTION.stacks + classes * DESCRIPTION_STACK_WORDS));
}

/**
 * The header's `closed` word. CLOSING is the owner counting the operations in flight: a Worker
 * beginning an operation (or a temporary or user region, or an attach) meanwhile waits to learn
 * whether the close went through (CLOSED) or was refused as BUSY (OPEN again).
 */
export const ClosePhase = { OPEN: 0, CLOSED: 1, CLOSING: 2 } as const;

/** A class's lock line (int32 words): who grows it, and which block that growth is adding. */
export const LOCK = { holder: 0, block: 1 } as const;

/**
 * A Worker's slot line (int32 words; its start time as float64 at byte 16): its liveness, its
 * pop intent, and the RMA operations in flight on its regions (and on how many regions), which
 * only that Worker changes, when an operation begins or ends.
 */
export const SLOT = { attached: 0, thread: 1, popIntent: 2, startFloat64: 2, operations: 6, busyRegions: 7 } as const;

/**
 * A Worker's cache block per class (int32 words): count, closed flag copy, two float64 counters,
 * entries. Only releases are counted on the hot path; gets are releases - count + getOffset, the
 * offset moved only where the count changes without a get or release (spill, flush, fill) or a
 * get or release bypasses the cache. So a get+release pair writes one counter, and the get (whose
 * code must stay small enough for the JIT to inline into a caller's loop) writes none.
 */
export const CACHE = { count: 0, closed: 1, releasesInt32: 4, getOffsetInt32: 6, entries: 8 } as const;

/** Float64 counters of a Worker: per class (misses, growths), then the unpooled counters. */
export const CLASS_COUNTERS = { misses: 0, growths: 1 } as const;
export const CLASS_COUNTER_WORDS = 2;
export const UNPOOLED_COUNTERS = {
  temporaryCount: 0, temporaryGets: 1, userCount: 2, unpooledReleases: 3,
  registrations: 4, deregistrations: 5, liveTemporaries: 6, liveUsers: 7,
} as const;
export const UNPOOLED_COUNTER_WORDS = 8;

/**
 * A block table entry (float64 words); its keys are two uint64 words elsewhere. `provided`: the
 * provider allocated it (freed through freeProvidedBlock, never munmap); `stray`: a thread moved
 * its memory out of a view (transfer()), so its range stays mapped for the life of the process.
 */
export const BLOCK = { address: 0, size: 1, handle: 2, stack: 3, first: 4, count: 5, slot: 6, locked: 7, pinned: 8, provided: 9, stray: 10 } as const;
const BLOCK_WORDS = 11;

/** A temporary or user region recorded for the owner (float64 words). */
export const UNPOOLED = { kind: 0, address: 1, length: 2, handle: 3, blockSize: 4, locked: 5, size: 6, registered: 7, unmapping: 8 } as const;
const UNPOOLED_WORDS = 9;

export class SharedLayout {
  readonly classCount: number;
  /** Regions of all classes together, and blocks. */
  readonly capacity: number;
  readonly maxBlocks: number;
  // Byte offsets of each part.
  readonly description: number;
  readonly locks: number;
  readonly heads: number;
  readonly pinned: number;
  readonly stackCounters: number;
  readonly next: number;
  readonly state: number;
  readonly blockOf: number;
  readonly blocks: number;
  readonly blockKeys: number;
  readonly blockState: number;
  readonly slotLines: number;
  readonly slotCounters: number;
  /** Float64 words of one Worker's counters. */
  readonly slotCounterWords: number;
  readonly caches: number;
  /** Int32 words of one cache block (one class of one Worker). */
  readonly cacheStride: number;
  readonly unpooledState: number;
  readonly unpooledData: number;
  readonly bytes: number;

  constructor(spec: SharedLayoutSpec) {
    this.classCount = spec.stacks.length;
    this.capacity = spec.stacks.reduce((total, stack) => total + stack.capacity, 0);
    this.maxBlocks = spec.stacks.reduce((total, stack) => total + stack.maxBlocks, 0);
    this.slotCounterWords = alignToLine(FLOAT64 * (this.classCount * CLASS_COUNTER_WORDS + UNPOOLED_COUNTER_WORDS)) / FLOAT64;
    this.cacheStride = alignToLine(INT32 * (CACHE.entries + spec.cacheSize)) / INT32;
    const parts = this.partSizes(spec);
    const offsets = {} as Record<keyof typeof parts, number>;
    let at = 0;
    for (const name of Object.keys(parts) as (keyof typeof parts)[]) {
      offsets[name] = at;
      at += parts[name];
    }
    this.description = offsets.description;
    this.locks = offsets.locks;
    this.heads = offsets.heads;
    this.pinned = offsets.pinned;
    this.stackCounters = offsets.stackCounters;
    this.next = offsets.next;
    this.state = offsets.state;
    this.blockOf = offsets.blockOf;
    this.blocks = offsets.blocks;
    this.blockKeys = offsets.blockKeys;
    this.blockState = offsets.blockState;
    this.slotLines = offsets.slotLines;
    this.slotCounters = offsets.slotCounters;
    this.caches = offsets.caches;
    this.unpooledState = offsets.unpooledState;
    this.unpooledData = offsets.unpooledData;
    this.bytes = at;
    this.check(spec, parts, offsets);
  }

  /** The bytes of each part, in the order they are laid out (each a whole number of cache lines). */
  private partSizes(spec: SharedLayoutSpec) {
    const classes = this.classCount;
    const workers = spec.maxWorkers;
    const unpooledEntries = workers * spec.maxUnpooledRegions;
    return {
      header: LINE,
      description: descriptionBytes(classes),
      locks: classes * LINE,
      heads: classes * LINE,
      pinned: alignToLine(2 * FLOAT64),
      stackCounters: classes * LINE,
      next: alignToLine(INT32 * this.capacity),
      state: alignToLine(INT32 * (this.capacity << STATE_SHIFT)),
      blockOf: alignToLine(INT32 * this.capacity),
      blocks: alignToLine(FLOAT64 * BLOCK_WORDS * this.maxBlocks),
      blockKeys: alignToLine(2 * FLOAT64 * this.maxBlocks),
      blockState: alignToLine(INT32 * this.maxBlocks),
      slotLines: workers * LINE,
      slotCounters: workers * this.slotCounterWords * FLOAT64,
      caches: workers * classes * this.cacheStride * INT32,
      unpooledState: alignToLine(INT32 * unpooledEntries),
      unpooledData: alignToLine(FLOAT64 * UNPOOLED_WORDS * unpooledEntries),
    };
  }

  /** The whole checked against the sum of its parts, and each part against what it must hold. */
  private check(spec: SharedLayoutSpec, parts: ReturnType<SharedLayout["partSizes"]>, offsets: Record<string, number>): void {
    const classes = this.classCount;
    const workers = spec.maxWorkers;
    // bytes = header + description + (locks + heads + stack counters: a line per class) + pinned
    //       + (next + blockOf + state: per region) + (blocks + keys + block states: per block)
    //       + (slot line + counters + a cache block per class: per Worker) + table of unpooled regions (per Worker × maxUnpooledRegions)
    assert(this.bytes === LINE + parts.description + 3 * classes * LINE + parts.pinned
      + parts.next + parts.blockOf + parts.state
      + parts.blocks + parts.blockKeys + parts.blockState
      + workers * (LINE + this.slotCounterWords * FLOAT64 + classes * this.cacheStride * INT32)
      + parts.unpooledState + parts.unpooledData, "the parts add up to the buffer");
    for (const [name, offset] of Object.entries(offsets)) assert(offset % LINE === 0, `${name} starts on a cache line`);
    assert(this.cacheStride >= CACHE.entries + spec.cacheSize, "a cache block holds its header and cacheSize entries");
    assert(this.slotCounterWords >= classes * CLASS_COUNTER_WORDS + UNPOOLED_COUNTER_WORDS, "a Worker's counters hold every class and the unpooled counters");
    assert(SLOT.startFloat64 * FLOAT64 >= (SLOT.popIntent + 1) * INT32 && (SLOT.startFloat64 + 1) * FLOAT64 <= SLOT.operations * INT32
      && (SLOT.busyRegions + 1) * INT32 <= LINE, "a slot line holds its words");
    assert(this.capacity * 2 ** STATE_SHIFT < 2 ** 31, "state words are int32-indexable");
  }

  /** Byte offset of class `sizeClass`'s lock, head and counters lines. */
  lockLine(sizeClass: number): number {
    return this.locks + sizeClass * LINE;
  }
  headLine(sizeClass: number): number {
    return this.heads + sizeClass * LINE;
  }
  stackCountersLine(sizeClass: number): number {
    return this.stackCounters + sizeClass * LINE;
  }
  slotLine(slot: number): number {
    return this.slotLines + slot * LINE;
  }
  /** Int32 word offset of `slot`'s cache block for class `sizeClass`. */
  cacheWord(slot: number, sizeClass: number): number {
    return this.caches / INT32 + (slot * this.classCount + sizeClass) * this.cacheStride;
  }
  /** Float64 word offset of `slot`'s counters. */
  countersWord(slot: number): number {
    return this.slotCounters / FLOAT64 + slot * this.slotCounterWords;
  }
  /** Float64 word of class `sizeClass`'s counter `counter` (CLASS_COUNTERS) inside a Worker's counters. */
  classCounter(sizeClass: number, counter: number): number {
    return sizeClass * CLASS_COUNTER_WORDS + counter;
  }
  /** Float64 word of unpooled counter `counter` (UNPOOLED_COUNTERS) inside a Worker's counters. */
  unpooledCounter(counter: number): number {
    return this.classCount * CLASS_COUNTER_WORDS + counter;
  }
  blockWord(block: number): number {
    return this.blocks / FLOAT64 + block * BLOCK_WORDS;
  }
  /** Index of unpooled entry `entry` of `slot` in the table of unpooled regions. */
  unpooledEntry(slot: number, entry: number, perWorker: number): number {
    return slot * perWorker + entry;
  }
  unpooledWord(index: number): number {
    return this.unpooledData / FLOAT64 + index * UNPOOLED_WORDS;
  }
}

function assert(ok: boolean, what: string): asserts ok {
  if (!ok) throw new Error(`shared pool layout: ${what} does not hold`);
}
