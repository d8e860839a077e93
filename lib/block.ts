// Memory blocks: page-aligned, mmap'd, mlock'd and kept out of forked children. Pools carve
// regions out of blocks; one registration covers a whole block.
import { toArrayBuffer, type Pointer } from "bun:ffi";
import * as libc from "../ffi/libc.ts";
import { AllocToolsError, SystemError } from "./errors.ts";

/** Huge pages: `false` (normal pages), `true` (MAP_HUGETLB or fail), `"try"` (MAP_HUGETLB, else normal pages). */
export type HugePages = boolean | "try";

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
 * A pinned, page-aligned piece of memory with a zero-copy view over it, made by
 * {@link MemoryBlockAllocator.allocate}. Pools register whole blocks and carve regions out of them.
 *
 * Lifetime: mapped and locked until `free()` (or `using`); then every view over it is detached
 * (length 0). Nothing frees it implicitly: the pool that made it frees it when the pool closes.
 *
 * Hot path: `view`, `address` and `size` are fields; `free()` makes system calls (munlock, munmap).
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
  private freed_ = false;

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
    this.view = new Uint8Array(toArrayBuffer(address as Pointer, 0, size));
  }

  /** Whether `free()` was called. */
  get freed(): boolean {
    return this.freed_;
  }

  /**
   * Unlocks and unmaps the block. Idempotent. Every view made over `view.buffer` is detached first,
   * so a late access reads nothing instead of touching unmapped memory.
   */
  free(): void {
    if (this.freed_) return;
    this.freed_ = true;
    (this.view.buffer as ArrayBuffer).transfer(0); // detach: views over the block now have length 0
    if (this.locked) libc.munlock(this.address, this.size);
    libc.munmap(this.address, this.size);
  }

  /** `free()`: `using block = allocator.allocate(n)` frees it at scope end. */
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
    if (typeof bytes !== "number") throw new TypeError(`block size must be a number, got ${typeof bytes}`);
    if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new RangeError(`block size must be a positive integer, got ${bytes}`);
    const huge = options.hugePages ?? this.defaults.hugePages ?? false;
    const lock = options.lock ?? this.defaults.lock ?? true;

    let address = 0;
    let size = 0;
    let onHugePages = false;
    if (huge !== false) {
      size = this.roundUp(bytes, true);
      try {
        address = libc.mmap(size, libc.MAP_HUGETLB);
        onHugePages = true;
      } catch (e) {
        if (huge === true) {
          throw new AllocToolsError("HUGE_PAGES",
            `no huge pages for ${size} bytes (MAP_HUGETLB failed: ${(e as Error).message}); ` +
              `reserve some in /proc/sys/vm/nr_hugepages or ask for hugePages: "try"`, { cause: e });
        }
      }
    }
    if (!onHugePages) {
      size = this.roundUp(bytes);
      address = libc.mmap(size);
      // "try": ask for transparent huge pages instead; a refusal changes nothing.
      if (huge === "try") try { libc.madvise(address, size, MADV_HUGEPAGE); } catch { /* THP off */ }
    }
    try {
      if (lock) libc.mlock(address, size);
      libc.madvise(address, size, libc.MADV_DONTFORK);
    } catch (e) {
      if (lock && !(e instanceof SystemError && e.function === "mlock")) libc.munlock(address, size);
      libc.munmap(address, size);
      throw e;
    }
    return new MemoryBlock(address, size, onHugePages, lock);
  }
}

function readHugePageSize(): number {
  try {
    const m = /Hugepagesize:\s+(\d+) kB/.exec(require("node:fs").readFileSync("/proc/meminfo", "utf8"));
    if (m?.[1]) return Number(m[1]) * 1024;
  } catch { /* not Linux */ }
  return 2 * 1024 * 1024;
}
