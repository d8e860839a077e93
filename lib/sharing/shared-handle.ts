// What share() hands out and what attach() takes: the share options and their checks, the layout
// an unshared pool's stacks give the shared memory, the pool handle (SharedArrayBuffers, numbers
// and strings only, so that it crosses to a Worker by postMessage), and the checks a handle
// passes before a Worker attaches: its kind, its process, and every field against what the
// shared memory itself says (shared-description.ts).
import { AllocToolsError, AllocToolsRangeError, AllocToolsTypeError } from "../errors.ts";
import type { HugePages } from "../memory/block.ts";
import type { ProviderHandle, RegionProvider } from "../memory/provider.ts";
import type { PoolCore } from "../pool/pool-core.ts";
import type { MemoryPoolOptions, MemoryPoolStackOptions } from "../pool/pool-options.ts";
import { SIZE_CLASSES, type SizeClass } from "../pool/stack.ts";
import { checkHandle, readDescription, type SharedPoolDescription } from "./shared-description.ts";
import type { SharedLayoutSpec } from "./shared-layout.ts";

/** Options of the first `share()` (later calls return the same shared pool). */
export interface ShareOptions {
  /**
   * How many pools (owner included) may be attached at once. A pool that detaches holding nothing
   * (no region in use, no temporary or user region) frees its slot for the next attach; one that
   * leaves regions in use, or whose Worker was terminated, keeps it. Default 64.
   */
  maxWorkers?: number;
  /**
   * Free regions each Worker keeps per size class in front of the shared stack: gets and releases
   * of a hot region stay off the shared head. share() and attach put one region of each class
   * there (where the stack has one), so that a thread's first gets hit. 0 turns the cache off.
   * Default 16.
   */
  cacheSize?: number;
  /** Temporary and user regions one Worker may hold at once (recorded so the owner frees a dead Worker's). Default 64. */
  maxUnpooledRegions?: number;
}

/** What `MemoryPool.attach` needs in a Worker: SharedArrayBuffers, numbers and strings only. */
export interface SharedPoolHandle {
  /** Marks the object as a pool handle (attach checks it). */
  readonly kind: "alloctools.MemoryPool";
  /** The process it belongs to: its memory and native handles mean nothing in another one. */
  readonly pid: number;
  /** The shared stacks, region states, Worker caches and books. */
  readonly buffer: SharedArrayBuffer;
  /** Where each part lives in `buffer`. */
  readonly layout: SharedLayoutSpec;
  /** The owner's `provider.share()`. */
  readonly provider: ProviderHandle;
  /** The owner pool's options that every attached pool uses too. */
  readonly options: {
    /** The bound on pinned bytes, counted for every Worker together. */
    readonly maxPinnedBytes: number;
    /** Access flags of every registration (Access bits). */
    readonly access: number;
    /** Whether blocks are backed by huge pages. */
    readonly hugePages: HugePages;
    /** Whether gets record a stack trace for leak reports. */
    readonly debug: boolean;
  };
  // The buffer itself records `layout`, `options`, `pid` and a fingerprint of `provider`: attach
  // takes them from there and refuses a handle whose fields differ (shared-description.ts).
}

/** The table sizes of ShareOptions, checked, with their defaults. */
export interface ShareLimits {
  readonly maxWorkers: number;
  readonly cacheSize: number;
  readonly maxUnpooledRegions: number;
}

/** `options` of share(), checked (TypeError, RangeError), with defaults for what is not given. */
export function checkShareOptions(options: ShareOptions): ShareLimits {
  if (options === null || typeof options !== "object") throw new AllocToolsTypeError("share options must be an object");
  const maxWorkers = options.maxWorkers ?? 64;
  const cacheSize = options.cacheSize ?? 16;
  const maxUnpooledRegions = options.maxUnpooledRegions ?? 64;
  if (!Number.isInteger(maxWorkers) || maxWorkers < 1 || maxWorkers > 4096) throw new AllocToolsRangeError(`maxWorkers must be an integer in [1, 4096], got ${maxWorkers}`);
  if (!Number.isInteger(cacheSize) || cacheSize < 0 || cacheSize > 1024) throw new AllocToolsRangeError(`cacheSize must be an integer in [0, 1024], got ${cacheSize}`);
  if (!Number.isInteger(maxUnpooledRegions) || maxUnpooledRegions < 0 || maxUnpooledRegions > 4096) {
    throw new AllocToolsRangeError(`maxUnpooledRegions must be an integer in [0, 4096], got ${maxUnpooledRegions}`);
  }
  return { maxWorkers, cacheSize, maxUnpooledRegions };
}

/** The owner's provider shared with Workers; NOT_SUPPORTED for a provider that cannot be. */
export function shareProvider(provider: RegionProvider): ProviderHandle {
  if (typeof provider.share !== "function") {
    throw new AllocToolsError("NOT_SUPPORTED",
      `provider ${provider.name} cannot be shared with Workers: it has no share() (HostProvider, LibfabricProvider and UcxProvider have)`);
  }
  return provider.share();
}

/** The layout of the shared memory for an unshared pool's stacks: room for each class to reach its maxRegions. */
export function layoutFor(core: PoolCore, limits: ShareLimits): SharedLayoutSpec {
  const stacks = core.stacks.map((stack) => {
    const capacity = Math.max(stack.maxRegions, stack.regions);
    return {
      chunkSize: stack.chunkSize, initialCount: stack.initialCount, growCount: stack.growCount, capacity,
      maxBlocks: stack.blocks + Math.ceil((capacity - stack.regions) / stack.growCount),
    };
  });
  return { stacks, maxWorkers: limits.maxWorkers, cacheSize: limits.cacheSize, maxUnpooledRegions: limits.maxUnpooledRegions };
}

/**
 * What the shared memory behind `handle` says about its pool, once the handle passed every check:
 * a pool handle (TypeError), of this process (NOT_SUPPORTED), of a pool with this library's size
 * classes, and every field equal to what the shared memory records.
 */
export function checkAttach(handle: SharedPoolHandle): SharedPoolDescription {
  if (handle === null || typeof handle !== "object" || handle.kind !== "alloctools.MemoryPool") {
    throw new AllocToolsTypeError("MemoryPool.attach takes the handle pool.share() returned");
  }
  if (handle.pid !== process.pid) {
    throw new AllocToolsError("NOT_SUPPORTED",
      `the pool handle comes from process ${handle.pid}; a shared pool is shared between the Workers of one process (this is ${process.pid})`);
  }
  const description = readDescription(handle.buffer);
  if (description.layout.stacks.length !== SIZE_CLASSES.length) {
    throw new AllocToolsTypeError(`MemoryPool.attach: the shared pool has ${description.layout.stacks.length} size classes, this library ${SIZE_CLASSES.length}`);
  }
  checkHandle(handle, description);
  return description;
}

/** The options an attached pool is built with: the owner's, and each class as the shared memory lays it out. */
export function attachedPoolOptions(description: SharedPoolDescription): MemoryPoolOptions {
  const options: MemoryPoolOptions = { ...description.options };
  description.layout.stacks.forEach((stack, sizeClass) => {
    const stackOptions: MemoryPoolStackOptions = { chunkSize: stack.chunkSize, initialCount: stack.initialCount, growCount: stack.growCount, maxRegions: stack.capacity };
    (options as Record<SizeClass, MemoryPoolStackOptions>)[SIZE_CLASSES[sizeClass]!] = stackOptions;
  });
  return options;
}
