// The provider object through which this thread releases what another thread of a shared pool
// registered: a growth a dead Worker left half-way, the blocks and temporary or user regions
// other Workers made, when the owner closes. An attached pool uses its own provider (already a
// view of the owner's); the owner attaches a view of its provider's handle at its first need, so
// that the provider's books in this thread stay its own.
import { attachProvider } from "../memory/provider-attach.ts";
import type { ProviderHandle, RegionProvider } from "../memory/provider.ts";

export class ForeignProvider {
  /** This pool's own provider. */
  private readonly own: RegionProvider;
  /** The owner's provider handle; null for an attached pool (its own provider serves). */
  private readonly handle: ProviderHandle | null;
  private view: RegionProvider | null = null;

  constructor(own: RegionProvider, handle: ProviderHandle, isOwner: boolean) {
    this.own = own;
    this.handle = isOwner ? handle : null;
  }

  /** The provider to release another thread's registrations with. */
  get(): RegionProvider {
    if (this.handle === null) return this.own;
    return (this.view ??= attachProvider(this.handle));
  }

  /** Closes the view the owner attached, if any (the pool's own provider is the pool's to close). */
  close(): void {
    if (this.view !== null && this.view !== this.own) this.view.close();
  }
}
