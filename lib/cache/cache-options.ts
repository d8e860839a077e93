// What a registration cache may be configured with (its limits, its access flags, and the pinned
// bytes a pool lends it), their defaults and checks, and the counters it reports. Everything here
// is read once, when the cache is made.
import { AllocToolsRangeError } from "../errors.ts";

/** Options of a RegistrationCache. */
export interface RegistrationCacheOptions {
  /**
   * Most buffers (entries) kept registered at once. Every small Buffer of Bun has an ArrayBuffer of
   * its own, so each costs an entry: this bound (with LRU eviction) is what keeps many small
   * Buffers from pinning without limit. Default 1024.
   */
  maxEntries?: number;
  /** Most bytes kept registered at once (retired registrations still held included). Default 256 MiB. */
  maxBytes?: number;
  /**
   * Buffers of at most this many bytes are registered whole at their first acquire, so that every
   * later view into them is a hit (1,000 views into a 1 MiB buffer: one registration). Larger
   * buffers register the pages the view touches, and grow as wider views arrive. Default 4 MiB.
   */
  wholeBufferBytes?: number;
  /** Access flags of every registration; default read, write, send, recv, remote read, remote write. */
  access?: number;
  /** @internal Where pinned bytes are reserved: a pool's maxPinnedBytes. */
  budget?: PinnedBudget;
}

/**
 * @internal What a pool lends its cache: pinned-byte books under its maxPinnedBytes. `reserve`
 * throws (AllocToolsError PINNED_LIMIT) when the bytes are not available.
 */
export interface PinnedBudget {
  reserve(bytes: number, what: string): void;
  release(bytes: number): void;
}

/** Counters of a RegistrationCache, exact at the moment of the call. */
export interface RegistrationCacheStats {
  /** Acquires served by an existing registration. */
  readonly hits: number;
  /** Acquires that registered (a new buffer, or a view wider than the registration). */
  readonly misses: number;
  /** Unused entries deregistered to make room (maxEntries, maxBytes, the pool's maxPinnedBytes). */
  readonly evictions: number;
  /** Entries dropped because their buffer was detached (transfer(), a transfer list). */
  readonly invalidations: number;
  /** Buffers cached now. */
  readonly entries: number;
  /** Bytes registered now (including older registrations still held by regions). */
  readonly bytes: number;
  /** Regions out now (acquired and not released). */
  readonly inUse: number;
  /** Registrations live now: one per entry, plus older ones still held after a growth. */
  readonly registrations: number;
  /** Registrations made since the cache was made. */
  readonly registered: number;
  /** Registrations deregistered since the cache was made. */
  readonly deregistered: number;
  /**
   * Endpoint reads into plain views since the cache was made: each landed in the cache's own
   * staging memory and was copied into the view once the transport was done (see finishLocal).
   */
  readonly stagedReads: number;
  /** Bytes of staging memory the cache owns now (in use and idle; its registrations count in `bytes`). */
  readonly stagingBytes: number;
}

export const DEFAULT_MAX_ENTRIES = 1024;
export const DEFAULT_MAX_BYTES = 256 * 1024 * 1024;
export const DEFAULT_WHOLE_BUFFER_BYTES = 4 * 1024 * 1024;

/** `value` of option `name`: a positive integer or Infinity, `fallback` when not given. */
export function checkLimit(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !(Number.isSafeInteger(value) || value === Infinity) || value < 1) {
    throw new AllocToolsRangeError(`options.${name} must be a positive integer (or Infinity), got ${String(value)}`);
  }
  return value;
}
