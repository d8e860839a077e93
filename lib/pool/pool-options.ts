// What a pool may be configured with: the per-class stack options, the pool options, their
// defaults and their checks. Everything here runs before anything is pinned.
import type { HugePages } from "../memory/block.ts";
import { AllocToolsRangeError, AllocToolsTypeError } from "../errors.ts";
import { checkKnownKeys, type KnownKeys } from "../options.ts";
import { DEFAULT_ACCESS } from "../memory/provider.ts";
import { MAX_SHARED_REGIONS } from "../sharing/shared-stack.ts";
import { SIZE_CLASSES, type SizeClass } from "./stack.ts";

/** One size class's options (`MemoryPoolOptions.small` etc.); what is left out takes DEFAULT_STACKS. */
export interface MemoryPoolStackOptions {
  /** Bytes per region in this class. */
  chunkSize?: number;
  /** Regions registered when the pool is made. */
  initialCount?: number;
  /** Regions added per growth (one block, one registration). Default: initialCount, at least 1. */
  growCount?: number;
  /**
   * Most regions this stack may hold once the pool is shared with Workers (it sizes the shared
   * tables; an unshared pool ignores it). Default: what maxPinnedBytes allows when it is set, else
   * 64 × max(initialCount, growCount).
   */
  maxRegions?: number;
}

/** Per size class (`small`, `medium`, `large`, `huge`: SIZE_CLASSES), then the pool's own options. */
export interface MemoryPoolOptions extends Partial<Record<SizeClass, MemoryPoolStackOptions>> {
  /** The small class; default 1 KiB regions, 256 at first, 256 per growth. */
  small?: MemoryPoolStackOptions;
  /** The medium class; default 16 KiB regions, 32 at first, 32 per growth. */
  medium?: MemoryPoolStackOptions;
  /** The large class; default 64 KiB regions, 16 at first, 16 per growth. */
  large?: MemoryPoolStackOptions;
  /** The huge class; default 1 MiB regions, 2 at first, 2 per growth. Larger gets are temporary regions. */
  huge?: MemoryPoolStackOptions;
  /** Upper bound on pinned/registered bytes (blocks, temporary and user regions). Default: no bound. */
  maxPinnedBytes?: number;
  /** Access flags for every registration; default read, write, send, recv, remote read, remote write. */
  access?: number;
  /**
   * Back blocks with huge pages. Default `"transparent"`: blocks are advised MADV_HUGEPAGE, so
   * the kernel backs what it can with transparent huge pages (fewer pages to walk when a transfer
   * or a NIC translates them; on shm, 1 MiB copies ran about 1.9× faster), with no rounding up
   * and nothing reserved. `false` for plain 4 KiB pages, `true` or `"try"` for MAP_HUGETLB pages.
   */
  hugePages?: HugePages;
  /** Record where each region was got from, for leak reports. Default false. */
  debug?: boolean;
}

/**
 * Defaults: 3.75 MiB pinned in all, inside the 8 MiB RLIMIT_MEMLOCK that unprivileged users
 * commonly have, with room for growth and temporary regions.
 */
export const DEFAULT_STACKS: Readonly<Record<SizeClass, Required<Omit<MemoryPoolStackOptions, "maxRegions">>>> = {
  small: { chunkSize: 1024, initialCount: 256, growCount: 256 },
  medium: { chunkSize: 16 * 1024, initialCount: 32, growCount: 32 },
  large: { chunkSize: 64 * 1024, initialCount: 16, growCount: 16 },
  huge: { chunkSize: 1024 * 1024, initialCount: 2, growCount: 2 },
};

/** maxRegions when not given: what maxPinnedBytes allows, else 64 growths' worth; an equal share of MAX_SHARED_REGIONS at most. */
function defaultMaxRegions(chunkSize: number, initialCount: number, growCount: number, maxPinnedBytes: number | undefined): number {
  const stride = Math.ceil(chunkSize / 64) * 64;
  const byPins = typeof maxPinnedBytes === "number" && Number.isFinite(maxPinnedBytes) && maxPinnedBytes > 0
    ? Math.floor(maxPinnedBytes / stride) : 64 * Math.max(initialCount, growCount, 1);
  return Math.max(1, initialCount, Math.min(byPins, Math.floor(MAX_SHARED_REGIONS / SIZE_CLASSES.length)));
}

/** Throws TypeError/RangeError for anything but a positive safe integer. */
export function checkSize(bytes: unknown): asserts bytes is number {
  if (typeof bytes === "bigint") {
    throw new AllocToolsTypeError(`size must be a number of bytes, got the bigint ${bytes}n: pass ${bytes <= BigInt(Number.MAX_SAFE_INTEGER) ? `${bytes}` : "a number"} instead`);
  }
  if (typeof bytes !== "number") throw new AllocToolsTypeError(`size must be a number, got ${typeof bytes}`);
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new AllocToolsRangeError(`size must be a positive integer, got ${bytes}`);
}

/** Every key of MemoryPoolOptions (the compiler checks the list against the interface). */
const POOL_OPTION_KEYS: KnownKeys<MemoryPoolOptions> = {
  small: true, medium: true, large: true, huge: true, maxPinnedBytes: true, access: true, hugePages: true, debug: true,
};
/** Every key of MemoryPoolStackOptions. */
const STACK_OPTION_KEYS: KnownKeys<MemoryPoolStackOptions> = { chunkSize: true, initialCount: true, growCount: true, maxRegions: true };

export interface CheckedOptions {
  /** One entry per size class, in SIZE_CLASSES order. */
  stacks: Required<MemoryPoolStackOptions>[];
  maxPinnedBytes: number;
  access: number;
  hugePages: HugePages;
  debug: boolean;
}

/** `options` of a pool, checked (TypeError, RangeError), with the defaults for what is not given. */
export function checkOptions(options: MemoryPoolOptions): CheckedOptions {
  if (options === null || typeof options !== "object") throw new AllocToolsTypeError("MemoryPool options must be an object");
  checkKnownKeys(options, POOL_OPTION_KEYS, "MemoryPool options");
  const stacks: Required<MemoryPoolStackOptions>[] = [];
  let previous = 0;
  for (const name of SIZE_CLASSES) {
    const stack = checkStackOptions(name, options[name] ?? {}, options.maxPinnedBytes);
    if (stack.chunkSize <= previous) {
      throw new AllocToolsRangeError(`options.${name}.chunkSize (${stack.chunkSize}) must be larger than the class below it (${previous})`);
    }
    previous = stack.chunkSize;
    stacks.push(stack);
  }
  const maxPinnedBytes = options.maxPinnedBytes ?? Infinity;
  if (typeof maxPinnedBytes !== "number" || Number.isNaN(maxPinnedBytes) || maxPinnedBytes <= 0) {
    throw new AllocToolsRangeError(`options.maxPinnedBytes must be a positive number, got ${String(maxPinnedBytes)}`);
  }
  const access = options.access ?? DEFAULT_ACCESS;
  const hugePages = options.hugePages ?? "transparent";
  if (hugePages !== true && hugePages !== false && hugePages !== "try" && hugePages !== "transparent") {
    throw new AllocToolsTypeError(`options.hugePages must be true, false, "try" or "transparent", got ${String(hugePages)}`);
  }
  if (options.debug !== undefined && typeof options.debug !== "boolean") throw new AllocToolsTypeError("options.debug must be a boolean");
  return { stacks, maxPinnedBytes, access, hugePages, debug: options.debug ?? false };
}

/** The options of class `name` as `given`, checked, with its defaults (maxRegions from `maxPinnedBytes` as given). */
function checkStackOptions(name: SizeClass, given: MemoryPoolStackOptions, maxPinnedBytes: number | undefined): Required<MemoryPoolStackOptions> {
  if (typeof given !== "object" || given === null) throw new AllocToolsTypeError(`options.${name} must be an object`);
  checkKnownKeys(given, STACK_OPTION_KEYS, `MemoryPool options.${name}`);
  const defaults = DEFAULT_STACKS[name];
  const chunkSize = given.chunkSize ?? defaults.chunkSize;
  const initialCount = given.initialCount ?? defaults.initialCount;
  const growCount = given.growCount ?? Math.max(1, given.initialCount ?? defaults.growCount);
  const maxRegions = given.maxRegions ?? defaultMaxRegions(chunkSize, initialCount, growCount, maxPinnedBytes);
  for (const [key, value, min] of [["chunkSize", chunkSize, 1], ["initialCount", initialCount, 0], ["growCount", growCount, 1], ["maxRegions", maxRegions, 1]] as const) {
    if (typeof value !== "number") throw new AllocToolsTypeError(`options.${name}.${key} must be a number, got ${typeof value}`);
    if (!Number.isInteger(value) || value < min || value > 0x7fff_ffff) throw new AllocToolsRangeError(`options.${name}.${key} must be an integer in [${min}, 2^31), got ${value}`);
  }
  return { chunkSize, initialCount, growCount, maxRegions };
}
