// The garbage-collection backstop of registration caches: a cache dropped without close() has its
// registrations deregistered when the collector finds it, with a warning (AllocToolsLeak). The
// backstop holds the cache's remains (every live registration and the buffer under it) strongly,
// so the buffers stay alive, their memory never reused, until their registrations are gone; it
// holds nothing that leads back to the cache (no entry, no region: a region's owner is the
// cache), so the cache itself can be collected. The cache's side (RemainsBook) knows which of its
// registrations stands at each position, to take one out in O(1) when it is deregistered.
import type { Registration } from "../memory/provider.ts";
import type { MemoryRegionTraits } from "../memory/traits.ts";
import type { AnyBuffer } from "../memory/buffer-intrinsics.ts";
import type { CacheRegistration } from "./cache-entry.ts";

/** Every live registration of a cache and the buffer under it, in parallel arrays. */
export class CacheRemains {
  readonly registrations: Registration[] = [];
  readonly buffers: AnyBuffer[] = [];
  constructor(readonly traits: MemoryRegionTraits) {}
}

const backstop = new FinalizationRegistry<CacheRemains>((remains) => {
  const count = remains.registrations.length;
  for (const registration of remains.registrations) {
    try { remains.traits.deregister(registration); } catch { /* provider gone */ }
  }
  remains.registrations.length = 0;
  remains.buffers.length = 0;
  if (count > 0) {
    process.emitWarning(`alloctools: a RegistrationCache was garbage-collected without close(); deregistered ${count} registration(s)`, "AllocToolsLeak");
  }
});

/** Deregisters what `remains` holds once `cache` is garbage-collected, unless unwatched first. */
export function watchCache(cache: object, remains: CacheRemains): void {
  backstop.register(cache, remains, cache);
}

/** The cache was closed: nothing left for the backstop. */
export function unwatchCache(cache: object): void {
  backstop.unregister(cache);
}

/** The cache's side of its remains: the CacheRegistration at each position (it leads to regions). */
export class RemainsBook {
  readonly remains: CacheRemains;
  private readonly owners: CacheRegistration[] = [];

  constructor(remains: CacheRemains) {
    this.remains = remains;
  }

  /** `registration` (over `buffer`) is live: the backstop deregisters it if the cache is collected. */
  add(registration: CacheRegistration, buffer: AnyBuffer): void {
    const remains = this.remains;
    registration.remainsAt = remains.registrations.length;
    remains.registrations.push(registration.inner);
    remains.buffers.push(buffer);
    this.owners.push(registration);
  }

  /** Takes `registration` out of the remains (the last one moves into its place). */
  forget(registration: CacheRegistration): void {
    const remains = this.remains;
    const owners = this.owners;
    const at = registration.remainsAt;
    const last = owners.length - 1;
    if (at !== last) {
      const moved = owners[last]!;
      owners[at] = moved;
      moved.remainsAt = at;
      remains.registrations[at] = remains.registrations[last]!;
      remains.buffers[at] = remains.buffers[last]!;
    }
    owners.pop();
    remains.registrations.pop();
    remains.buffers.pop();
    registration.remainsAt = -1;
  }
}
