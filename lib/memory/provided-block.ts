// A MemoryBlock over memory a provider allocated itself (RegionProvider.allocateBlock): the pool
// handles it like its own blocks, and freeing it hands the memory back to the provider instead of
// munmap.
import { MemoryBlock } from "./block.ts";
import type { ProvidedBlock, Registration } from "./provider.ts";

/** A pool block whose memory and registration belong to the provider that supplied them. */
export class ProvidedMemoryBlock extends MemoryBlock {
  /** The provider's registration of the whole block. */
  readonly registration: Registration;
  readonly #provided: ProvidedBlock;

  /** Wraps a block the provider allocated and registered (`allocateBlock`). */
  constructor(provided: ProvidedBlock) {
    super(provided.address, provided.length, false, provided.locked);
    this.registration = provided.registration;
    this.#provided = provided;
    Object.freeze(this);
  }

  /**
   * Gives the memory back to the provider once every view is detached. Memory a caller moved out
   * of a view (`transfer()`) stays allocated instead: the provider would unmap it under the stray
   * buffer, which could then touch whatever is mapped there next.
   */
  protected override releaseMemory(transferred: boolean): void {
    if (!transferred) this.#provided.release();
  }

  /**
   * Keeps the memory allocated (and registered: with the provider the two go together): the
   * provider would unmap it under other threads' views. Whoever knows those are gone frees it by
   * address (`freeProvidedBlock`).
   */
  protected override replaceMemory(): void {}
}
