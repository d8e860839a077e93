// How a provider closes what was opened on it before itself (children before parents): pools
// and endpoints `adopt` themselves into their provider, which closes them, newest first, when it
// closes. A pool is held weakly, so that a pool dropped without close() can still be collected
// (and freed by its garbage-collection backstop) while its provider lives on.

/** Something a provider closes before itself. */
export interface ProviderChild {
  close(): void;
}

/** The providers that close their children: HostProvider, LibfabricProvider. */
export interface ParentProvider {
  adopt(child: ProviderChild): void;
  disown(child: ProviderChild): void;
}

/** Whether `provider` closes its children (a custom RegionProvider need not). */
export function isParentProvider(provider: object): provider is ParentProvider {
  const parent = provider as Partial<ParentProvider>;
  return typeof parent.adopt === "function" && typeof parent.disown === "function";
}

/**
 * The provider's handle on one child it must not keep alive: closing it calls `onParentClose` on
 * the child if the child still exists. `unlink()` takes it off the provider's list.
 */
export class WeakChild<T extends object> implements ProviderChild {
  private readonly child: WeakRef<T>;
  private readonly parent: ParentProvider | null;
  private readonly onParentClose: (child: T) => void;

  constructor(provider: object, child: T, onParentClose: (child: T) => void) {
    this.child = new WeakRef(child);
    this.onParentClose = onParentClose;
    this.parent = isParentProvider(provider) ? provider : null;
    this.parent?.adopt(this);
  }

  /** Called by the provider as it closes. */
  close(): void {
    const child = this.child.deref();
    if (child !== undefined) this.onParentClose(child);
  }

  /** The child closed (or was collected) on its own: the provider forgets it. Idempotent. */
  unlink(): void {
    this.parent?.disown(this);
  }
}

/**
 * Closes `children`: endpoints first, newest first (what was opened last may use what was opened
 * before it), then pools, whose memory an endpoint's operations may be using until it closes.
 */
export function closeChildren(children: Set<ProviderChild>, attempt: (close: () => void) => void): void {
  const newestFirst = [...children].reverse();
  const ordered = [...newestFirst.filter((child) => !(child instanceof WeakChild)), ...newestFirst.filter((child) => child instanceof WeakChild)];
  for (const child of ordered) attempt(() => child.close());
  children.clear();
}
