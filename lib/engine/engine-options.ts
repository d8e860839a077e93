// The options every endpoint takes, whatever its transport, checked once at construction.
import { AllocToolsTypeError, AllocToolsRangeError } from "../errors.ts";
import { describeUnknownKey, unknownKey } from "../options.ts";
import { RegistrationCache } from "../cache/registration-cache.ts";
import { MemoryPool } from "../pool/pool.ts";
import { MAX_OPERATIONS } from "./operation.ts";

/** Options of every endpoint (`Endpoint`, `UcxEndpoint`, `MpiEndpoint`); each transport adds its own. */
export interface EngineOptions {
  /** Milliseconds an operation may take before it fails with RmaTimeoutError; default 10 000. */
  timeoutMs?: number;
  /**
   * Microseconds the promise forms poll inline, right after posting, before handing the wait to
   * the event loop; default 20, 0 to never spin. The event loop is never blocked longer than this.
   */
  spinMicroseconds?: number;
  /**
   * A registration cache over this endpoint's provider: every form then also takes a plain
   * ArrayBufferView as local memory. A write's (or send's) view is registered through the cache
   * (zero-copy) and given back when the transport is done; a read lands in the cache's own staging
   * memory and is copied into the view then, if its buffer was not transferred meanwhile. An
   * operation whose view's buffer was detached in flight fails with AllocToolsError DETACHED.
   */
  cache?: RegistrationCache;
  /**
   * Where `receive()` and `messages()` take the memory of a message of unknown size: a MemoryPool
   * over this endpoint's provider (or, in a Worker, the shared pool's view). Without it they are refused.
   */
  pool?: MemoryPool;
  /** Operations in flight or not yet retired at once; beyond it a post throws AllocToolsError BUSY. At most 65 536. */
  maxPending?: number;
  /** Milliseconds close() waits for operations in flight to end after cancelling them; default the smaller of timeoutMs and 1000. */
  closeTimeoutMs?: number;
  /**
   * "auto" (the default): the endpoint progresses on the event loop from the moment it opens, with
   * nothing pending too (a target serves its peers without being asked), on an unref'd timer that
   * never keeps the process alive: every 1 ms after activity, backing off to every 8 ms. "manual":
   * only pending operations, poll()/progress() and startProgress() turn it.
   */
  progress?: "auto" | "manual";
  /**
   * Times every operation from post to completion into a fixed-size log histogram per kind (no
   * allocation per operation); `stats().latency` gives p50, p90, p99 and max. Default false: no
   * clock is read for it.
   */
  latency?: boolean;
}

/** EngineOptions checked, with their defaults. */
export interface EngineSettings {
  readonly timeoutMs: number;
  readonly spinMicroseconds: number;
  readonly cache: RegistrationCache | null;
  readonly pool: MemoryPool | null;
  readonly maxPending: number;
  readonly closeTimeoutMs: number;
  readonly progress: "auto" | "manual";
  readonly latency: boolean;
}

/** A transport's defaults for the engine's options. */
export interface EngineDefaults {
  readonly maxPending: number;
  readonly spinMicroseconds: number;
}

const ENGINE_KEYS = { timeoutMs: true, spinMicroseconds: true, cache: true, pool: true, maxPending: true, closeTimeoutMs: true, progress: true, latency: true } as const;

/**
 * Checks `options` of a `className` endpoint on `provider`: its type, unknown keys (those of
 * EngineOptions and `transportKeys` are known), and the engine's own values. Throws
 * AllocToolsTypeError (UNKNOWN_OPTION for a key nobody knows; a cache over another provider) or
 * AllocToolsRangeError, naming the option and the limit.
 */
export function checkEngineOptions(options: unknown, className: string, transportKeys: readonly string[], defaults: EngineDefaults, provider: object): EngineSettings {
  if (options === null || typeof options !== "object") throw new AllocToolsTypeError(`${className} options must be an object`);
  const known: Record<string, true> = { ...ENGINE_KEYS };
  for (const key of transportKeys) known[key] = true;
  const key = unknownKey(options, known);
  if (key !== undefined) throw new AllocToolsTypeError(`unknown ${className} option ${describeUnknownKey(key, known)}`, { code: "UNKNOWN_OPTION" });
  const o = options as EngineOptions;
  if (o.cache !== undefined && !(o.cache instanceof RegistrationCache && o.cache.provider === provider)) {
    throw new AllocToolsTypeError("options.cache must be a RegistrationCache over this endpoint's provider");
  }
  const timeoutMs = integerOption("timeoutMs", o.timeoutMs, 10_000, 1, 2 ** 31 - 1, "2^31 - 1 ms (a timer's range)");
  return {
    timeoutMs,
    spinMicroseconds: integerOption("spinMicroseconds", o.spinMicroseconds, defaults.spinMicroseconds, 0, 1_000_000, "1 000 000 (one second)"),
    cache: o.cache ?? null,
    pool: checkPool(o.pool, provider),
    maxPending: integerOption("maxPending", o.maxPending, defaults.maxPending, 1, MAX_OPERATIONS, `${MAX_OPERATIONS}, what one endpoint's operation ids can name`),
    closeTimeoutMs: integerOption("closeTimeoutMs", o.closeTimeoutMs, Math.min(timeoutMs, 1000), 0, 60_000, "60 000 ms"),
    progress: progressOption(o.progress),
    latency: booleanOption("latency", o.latency),
  };
}

/**
 * An integer option: `fallback` when undefined; AllocToolsRangeError when not a safe integer, below
 * `min`, or above `max` (`limit` says what `max` is).
 */
export function integerOption(name: string, value: unknown, fallback: number, min: number, max: number, limit: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
    throw new AllocToolsRangeError(`options.${name} must be an integer >= ${min}, got ${String(value)}`);
  }
  if (value > max) throw new AllocToolsRangeError(`options.${name} ${value} is above ${limit}`);
  return value;
}

/** options.pool: a MemoryPool whose regions this endpoint's transport can use (same provider, or a view of it). */
function checkPool(pool: unknown, provider: object): MemoryPool | null {
  if (pool === undefined) return null;
  if (!(pool instanceof MemoryPool)) throw new AllocToolsTypeError("options.pool must be a MemoryPool (receive() takes its messages' memory from it)");
  const own = pool.provider as unknown as { sharesDomainWith?(other: unknown): boolean; sharesContextWith?(other: unknown): boolean };
  const same = own === provider || own.sharesDomainWith?.(provider) === true || own.sharesContextWith?.(provider) === true || (provider as { kind?: unknown }).kind === "mpi";
  if (!same) throw new AllocToolsTypeError(`options.pool must be a MemoryPool over this endpoint's provider, not ${String((own as { name?: unknown }).name)}`);
  return pool;
}

/** options.progress: "auto" (default) or "manual". */
function progressOption(value: unknown): "auto" | "manual" {
  if (value === undefined || value === "auto") return "auto";
  if (value === "manual") return "manual";
  throw new AllocToolsTypeError(`options.progress must be "auto" or "manual", got ${JSON.stringify(value)}`);
}

/** A boolean option: false when undefined, TypeError otherwise. */
function booleanOption(name: string, value: unknown): boolean {
  if (value === undefined) return false;
  if (typeof value !== "boolean") throw new AllocToolsTypeError(`options.${name} must be a boolean, got ${typeof value}`);
  return value;
}
