// What the owner's close of a shared pool keeps mapped, and who unmaps it. Workers may still hold
// views of the pool's blocks (and of their own temporary regions) when the owner closes, and a
// transport may still complete a dead Worker's operation into them. So those ranges are
// deregistered and unpinned, their pages replaced by fresh zero pages, and kept mapped: a late
// read gives zeros or the reader's own bytes, a late write lands in pages nobody else uses, never
// a signal. The last pool to let go of the shared pool (HEADER.references) unmaps the blocks; a
// Worker unmaps its own kept temporary regions when it releases them or detaches.
import * as libc from "../../ffi/libc.ts";
import type { RegionProvider } from "../memory/provider.ts";
import type { SharedPoolState } from "./shared-pool-state.ts";

/** Unpins [address, address + size) and replaces its pages with fresh zero pages, keeping it mapped. */
export function keepMapped(address: number, size: number, locked: boolean): void {
  let firstError: unknown;
  if (locked) try { libc.munlock(address, size); } catch (error) { firstError = error; }
  try { libc.mmapFixed(address, size); } catch (error) { firstError ??= error; }
  if (firstError !== undefined) throw firstError;
}

/**
 * The last pool let go of the shared pool: unmaps every block the owner's close kept, a provider's
 * block through `provider` (left allocated without one), except a block a stray buffer may still
 * point into (mapped for the life of the process). Runs every block, then throws the first error.
 */
export function unmapKeptBlocks(state: SharedPoolState, provider: RegionProvider | null): void {
  let firstError: unknown;
  for (let blockIndex = 0; blockIndex < state.blocks.count; blockIndex++) {
    if (!state.blocks.takeKept(blockIndex)) continue;
    const block = state.blocks.record(blockIndex);
    if (block.stray) continue;
    try {
      if (block.provided) provider?.freeProvidedBlock?.(block.address);
      else libc.munmap(block.address, block.size);
    } catch (error) {
      firstError ??= error;
    }
  }
  if (firstError !== undefined) throw firstError;
}
