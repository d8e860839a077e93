// Memory a shared pool maps for a growth or a temporary region, with each step noted as it
// returns (mmap, mlock, then MADV_DONTFORK): a Worker terminated between two steps leaves a record
// that says exactly what it holds, so that whoever finishes after it (the next holder of the
// growth lock, the owner's close) unmaps what was mapped and unpins what was pinned, never twice.
import * as libc from "../../ffi/libc.ts";
import { adviseTransparentHugePages, MemoryBlock, usesHugeTlb, type HugePages, type MemoryBlockAllocator } from "../memory/block.ts";

/** Where a step is noted: the mapping's address and size, and whether it is pinned (0, 0, false: nothing held). */
export type MappingNote = (address: number, size: number, locked: boolean) => void;

/**
 * `bytes` (rounded up) mapped and pinned, each step noted through `note`. MAP_HUGETLB pages go
 * through the allocator, noted once it returns. On failure everything is undone, noted first.
 */
export function mapRecorded(allocator: MemoryBlockAllocator, hugePages: HugePages, bytes: number, note: MappingNote): MemoryBlock {
  if (usesHugeTlb(hugePages)) {
    const block = allocator.allocate(bytes);
    note(block.address, block.size, block.locked);
    return block;
  }
  const size = allocator.roundUp(bytes);
  const address = libc.mmap(size);
  note(address, size, false);
  adviseTransparentHugePages(address, size, hugePages);
  let locked = false;
  try {
    libc.mlock(address, size);
    locked = true;
    note(address, size, true);
    libc.madvise(address, size, libc.MADV_DONTFORK);
  } catch (error) {
    note(0, 0, false); // first: never unmapped twice
    if (locked) libc.munlock(address, size);
    libc.munmap(address, size);
    throw error;
  }
  return new MemoryBlock(address, size, false, true);
}
