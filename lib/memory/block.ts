// Memory blocks: page-aligned, mmap'd, mlock'd and kept out of forked children. Pools carve
// regions out of blocks; one registration covers a whole block.
import { toArrayBuffer, type Pointer } from "bun:ffi";
import * as libc from "../../ffi/libc.ts";
import { AllocToolsError, SystemError, AllocToolsTypeError, AllocToolsRangeError } from "../errors.ts";

/**
 * Huge pages: `false` (normal pages), `true` (MAP_HUGETLB or fail), `"try"` (MAP_HUGETLB, else
 * `"transparent"`), `"transparent"` (normal pages advised MADV_HUGEPAGE: the kernel backs what it
 * can with transparent huge pages, the size is not rounded up and nothing reserved is needed).
 */
export type HugePages = boolean | "try" | "transparent";

/** Whether `hugePages` maps with MAP_HUGETLB (sizes then round up to the huge page size). */
export function usesHugeTlb(hugePages: HugePages): boolean {
  return hugePages === true || hugePages === "try";
}

/** Advises a fresh mapping MADV_HUGEPAGE under `"try"` and `"transparent"`; where THP is off, nothing changes. */
export function adviseTransparentHugePages(address: number, size: number, hugePages: HugePages): void {
  if (hugePages === "try" || hugePages === "transparent") try { libc.madvise(address, size, MADV_HUGEPAGE); } catch { /* THP off */ }
}

/** How {@link MemoryBlockAllocator.allocate} maps a block. */
export interface BlockOptions {
  /** Default `false`. */
  hugePages?: HugePages;
  /** `mlock` the block (default `true`). Unpinned blocks are for tests and benchmarks of pinning. */
  lock?: boolean;
}

const HUGE_PAGE_SIZE = readHugePageSize();
const MADV_HUGEPAGE = 14;

/**
 * A pinned, page-aligned piece of memory with a zero-copy view over it.
 *
 * Lifetime: `free()` (or `using`) unlocks and unmaps it, by its own address, never through a view.
 * Every buffer the block handed out (its `view`'s and each `regionView`'s) is detached first, so a
 * late access reads nothing. A caller may have moved the memory out of one of those buffers with
 * `buffer.transfer()`: the new buffer, out of our reach, still points into the block. Unmapping
 * would leave it dangling (a later mapping could be placed under it), so such a block is unlocked
 * and its pages replaced by fresh zero pages that stay mapped for the life of the process
 * (`transferred` tells). Only those pages the stray buffer touches cost memory.
 *
 * Frozen: `address` and `size` are what free() unmaps, so nobody can change them.
 */
export class MemoryBlock {
  /** Start address (page aligned). */
  readonly address: number;
  /** Length in bytes (a multiple of the page size used). */
  readonly size: number;
  /** Zero-copy view of the whole block; detached (length 0) once the block is freed. */
  readonly view: Uint8Array;
  /** Whether the block sits on huge pages (MAP_HUGETLB). */
  readonly hugePages: boolean;
  /** Whether the block is mlock'd. */
  readonly locked: boolean;
  #freed = false;
  #transferred = false;
  /** Every buffer made over the block: detached on free, and how a caller's transfer() is found. */
  readonly #buffers: ArrayBuffer[] = [];

  /**
   * Wraps memory already mapped (and locked when `locked`); made by MemoryBlockAllocator.
   * @param address Start of the mapping.
   * @param size Its length in bytes.
   * @param hugePages Whether it is on huge pages.
   * @param locked Whether it is mlock'd (free() unlocks it then).
   */
  constructor(address: number, size: number, hugePages: boolean, locked: boolean) {
    this.address = address;
    this.size = size;
    this.hugePages = hugePages;
    this.locked = locked;
    const buffer = toArrayBuffer(address as Pointer, 0, size);
    this.#buffers.push(buffer);
    this.view = new Uint8Array(buffer);
    // free() unmaps `address`: nobody may point it elsewhere (a subclass freezes after its fields).
    if (new.target === MemoryBlock) Object.freeze(this);
  }

  /** Whether the block has been freed. */
  get freed(): boolean {
    return this.#freed;
  }

  /**
   * Whether memory of the block was moved out of one of its buffers by `transfer()` (found at
   * free; before it, whether one of its buffers is detached now).
   */
  get transferred(): boolean {
    return this.#transferred || (!this.#freed && this.#buffers.some((buffer) => buffer.detached));
  }

  /**
   * A zero-copy view of `length` bytes at `offset`, over a buffer of its own that holds exactly
   * those bytes: `view.buffer` never reaches the rest of the block, and a `transfer()` of it moves
   * only them. Detached when the block is freed.
   */
  regionView(offset: number, length: number): Uint8Array {
    if (this.#freed) throw new AllocToolsRangeError(`block at 0x${this.address.toString(16)} is freed`);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length <= 0 || length > this.size - offset) {
      throw new AllocToolsRangeError(`a view of ${length} bytes at offset ${offset} does not fit the block's ${this.size} bytes`);
    }
    const buffer = toArrayBuffer(this.address as Pointer, offset, length);
    this.#buffers.push(buffer);
    return new Uint8Array(buffer);
  }

  /**
   * Unlocks and unmaps the block (see the class comment for a block whose memory was
   * transferred). Idempotent. Runs every step even when one fails, then throws the first
   * SystemError.
   */
  free(): void {
    if (this.#freed) return;
    this.#freed = true;
    this.releaseMemory(this.detachViews());
  }

  /**
   * Frees the block for this thread but keeps its address range mapped: detaches its views here,
   * unlocks it and replaces its pages with fresh zero pages (a provider's block stays allocated).
   * For memory other threads may still hold views of (a shared pool's Workers): their reads then
   * give zeros or their own bytes, never a signal; whoever knows they are gone unmaps the range by
   * address. Idempotent. Returns whether memory had been transferred out of one of its buffers
   * (then the range must stay mapped for the life of the process).
   */
  freeKeepingRange(): boolean {
    if (this.#freed) return this.#transferred;
    this.#freed = true;
    const transferred = this.detachViews();
    this.replaceMemory();
    return transferred;
  }

  /**
   * Detaches every buffer made over the block (views over it read length 0 from now on) and says
   * whether memory had been transferred out of one of them. free() does it first; code that
   * unmaps a block step by step itself (a shared pool's temporary regions) calls it too.
   */
  detachViews(): boolean {
    for (const buffer of this.#buffers) {
      if (buffer.detached) this.#transferred = true;
      else buffer.transfer(0);
    }
    this.#buffers.length = 0;
    return this.#transferred;
  }

  /**
   * Gives the memory back once every buffer is detached: unlocks, then unmaps, or when memory was
   * transferred out of a buffer maps fresh zero pages over it (see the class comment). Runs every
   * step even when one fails, then throws the first SystemError. A block whose memory came from
   * elsewhere (a provider's) overrides it.
   */
  protected releaseMemory(transferred: boolean): void {
    let firstError: unknown;
    if (this.locked) try { libc.munlock(this.address, this.size); } catch (error) { firstError = error; }
    try {
      if (transferred) libc.mmapFixed(this.address, this.size);
      else libc.munmap(this.address, this.size);
    } catch (error) {
      firstError ??= error;
    }
    if (firstError !== undefined) throw firstError;
  }

  /**
   * Unlocks the block and maps fresh zero pages over it, keeping the range mapped (see
   * freeKeepingRange). Runs both steps, then throws the first SystemError. A block whose memory
   * came from elsewhere (a provider's) overrides it.
   */
  protected replaceMemory(): void {
    let firstError: unknown;
    if (this.locked) try { libc.munlock(this.address, this.size); } catch (error) { firstError = error; }
    try { libc.mmapFixed(this.address, this.size); } catch (error) { firstError ??= error; }
    if (firstError !== undefined) throw firstError;
  }

  /** `using block = allocator.allocate(n)`: frees it. */
  [Symbol.dispose](): void {
    this.free();
  }
}

/**
 * Allocates {@link MemoryBlock}s: mmap, then mlock, then madvise(MADV_DONTFORK) so that a forked
 * child neither shares nor copies pinned pages.
 *
 * Lifetime: stateless beyond its defaults; each block it returns is freed on its own.
 *
 * Hot path: none of it. `allocate` makes three or more system calls; pools call it only to grow.
 */
export class MemoryBlockAllocator {
  /** The system page size in bytes (usually 4096). */
  readonly pageSize = libc.pageSize;
  /** The huge page size in bytes (Hugepagesize in /proc/meminfo; 2 MiB when unknown). */
  readonly hugePageSize = HUGE_PAGE_SIZE;
  private readonly defaults: BlockOptions;

  /**
   * An allocator whose blocks default to `defaults`.
   * @param defaults Options used where `allocate` is given none.
   */
  constructor(defaults: BlockOptions = {}) {
    this.defaults = defaults;
  }

  /** The size a request of `bytes` occupies once rounded to whole pages. */
  roundUp(bytes: number, hugePages: boolean = false): number {
    const page = hugePages ? this.hugePageSize : this.pageSize;
    return Math.ceil(bytes / page) * page;
  }

  /**
   * Maps, pins and returns a block of at least `bytes` bytes. On failure nothing stays mapped.
   * Throws SystemError (mlock names RLIMIT_MEMLOCK and its value), or AllocToolsError HUGE_PAGES.
   */
  allocate(bytes: number, options: BlockOptions = {}): MemoryBlock {
    if (typeof bytes !== "number") throw new AllocToolsTypeError(`block size must be a number, got ${typeof bytes}`);
    if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new AllocToolsRangeError(`block size must be a positive integer, got ${bytes}`);
    const huge = options.hugePages ?? this.defaults.hugePages ?? false;
    const lock = options.lock ?? this.defaults.lock ?? true;

    let size = 0;
    let address = 0;
    if (usesHugeTlb(huge)) {
      size = this.roundUp(bytes, true);
      address = mapHugeTlb(size, huge === true);
    }
    const onHugePages = address !== 0;
    if (!onHugePages) {
      size = this.roundUp(bytes);
      address = libc.mmap(size);
      adviseTransparentHugePages(address, size, huge);
    }
    try {
      if (lock) libc.mlock(address, size);
      libc.madvise(address, size, libc.MADV_DONTFORK);
    } catch (error) {
      if (lock && !(error instanceof SystemError && error.function === "mlock")) libc.munlock(address, size);
      libc.munmap(address, size);
      throw error;
    }
    return new MemoryBlock(address, size, onHugePages, lock);
  }
}

/**
 * `size` bytes on MAP_HUGETLB pages; 0 when none are available, unless they are `required`:
 * then AllocToolsError HUGE_PAGES.
 */
function mapHugeTlb(size: number, required: boolean): number {
  try {
    return libc.mmap(size, libc.MAP_HUGETLB);
  } catch (error) {
    if (!required) return 0;
    throw new AllocToolsError("HUGE_PAGES",
      `no huge pages for ${size} bytes (MAP_HUGETLB failed: ${(error as Error).message}); ` +
        `reserve some in /proc/sys/vm/nr_hugepages or ask for hugePages: "try"`, { cause: error });
  }
}

function readHugePageSize(): number {
  try {
    const match = /Hugepagesize:\s+(\d+) kB/.exec(require("node:fs").readFileSync("/proc/meminfo", "utf8"));
    if (match?.[1]) return Number(match[1]) * 1024;
  } catch { /* not Linux */ }
  return 2 * 1024 * 1024;
}
