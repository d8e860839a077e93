// A MemoryBlock over memory a provider allocated itself (RegionProvider.allocateBlock): the pool
// handles it like its own blocks, and freeing it hands the memory back to the provider instead of
// munmap.
import { MemoryBlock } from "./block.ts";
import type { ProvidedBlock, Registration } from "./provider.ts";

/** A pool block whose memory and registration belong to the provider that supplied them. */
export class ProvidedMemoryBlock extends MemoryBlock {
  /** The provider's registration of the whole block. */
  readonly registration: Registration;
  private readonly provided: ProvidedBlock;
  private released = false;

  constructor(provided: ProvidedBlock) {
    super(provided.address, provided.length, false, provided.locked);
    this.provided = provided;
    this.registration = provided.registration;
  }

  /** Whether the memory went back to the provider. */
  override get freed(): boolean {
    return this.released;
  }

  /** Detaches every view over the block, then gives the memory back to the provider. Idempotent. */
  override free(): void {
    if (this.released) return;
    this.released = true;
    (this.view.buffer as ArrayBuffer).transfer(0);
    this.provided.release();
  }
}
