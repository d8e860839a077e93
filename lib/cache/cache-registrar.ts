// How a registration cache registers and deregisters: the pinned bytes reserved from the owning
// pool's budget first, the provider's call, the backstop's remains kept in step, and the books
// (bytes, live registrations, registered, deregistered) that stats() and the limits read. Only
// misses, growths, drops and close come here; a hit never does.
import type { Registration } from "../memory/provider.ts";
import type { MemoryRegionTraits } from "../memory/traits.ts";
import type { PinnedBudget } from "./cache-options.ts";
import { CacheRegistration, type CacheEntry } from "./cache-entry.ts";
import { RemainsBook, type CacheRemains } from "./cache-backstop.ts";

export class CacheRegistrar {
  private readonly traits: MemoryRegionTraits;
  private readonly budget: PinnedBudget | null;
  private readonly book: RemainsBook;
  /** A registration object dropped with no holder, reused by the next registration. */
  private spare: CacheRegistration | null = null;
  /** Bytes registered now. */
  bytes = 0;
  /** Registrations live now. */
  live = 0;
  /** Registrations made since the cache was made. */
  registered = 0;
  /** Registrations deregistered since the cache was made. */
  deregistered = 0;

  constructor(traits: MemoryRegionTraits, budget: PinnedBudget | null, remains: CacheRemains) {
    this.traits = traits;
    this.budget = budget;
    this.book = new RemainsBook(remains);
  }

  /** Registers `[start, end)` of `entry`'s buffer; throws (nothing reserved or registered) when the budget or the provider refuses. */
  register(entry: CacheEntry, start: number, end: number): CacheRegistration {
    const bytes = end - start;
    this.budget?.reserve(bytes, `a cached registration of ${bytes} bytes`);
    let inner: Registration;
    try {
      inner = this.traits.register(entry.address + start, bytes);
    } catch (error) {
      this.budget?.release(bytes);
      throw error;
    }
    this.bytes += bytes;
    this.live++;
    this.registered++;
    let registration = this.spare;
    if (registration !== null) {
      this.spare = null;
      registration.set(inner, entry, start, end);
    } else {
      registration = new CacheRegistration(inner, entry, start, end);
    }
    this.book.add(registration, entry.buffer);
    return registration;
  }

  /** Deregisters `registration`: its books and budget first, then the provider's call (which may throw). */
  deregister(registration: CacheRegistration): void {
    const bytes = registration.end - registration.start;
    this.bytes -= bytes;
    this.live--;
    this.deregistered++;
    this.budget?.release(bytes);
    this.book.forget(registration);
    this.traits.deregister(registration.inner);
  }

  /** Keeps a deregistered object that nothing out refers to (but released regions) for the next registration. */
  recycle(registration: CacheRegistration): void {
    this.spare = registration;
  }

  /** Lets go of the spare object (close). */
  dropSpare(): void {
    this.spare = null;
  }
}
