// The local side of an operation: which region, which address, checked and pinned before anything
// is posted. Every endpoint (libfabric, UCX, MPI) resolves its local memory here, so one set of rules
// decides what C may be handed: only regions and pointers this library made (checked by identity,
// never by shape), integer offsets and lengths inside the region, regions still out of their pool.
import { AllocToolsError, AllocToolsTypeError, AllocToolsRangeError } from "../errors.ts";
import { MemoryRegionPointer } from "../memory/pointer.ts";
import { assertPoolOpen, beginOperation, endOperation, MemoryRegionImpl } from "../memory/region.ts";
import type { RegistrationCache } from "../cache/registration-cache.ts";
import type { LocalMemory } from "./rma-endpoint.ts";
import { checkRegionMemory, regionMemoryAfterOperation } from "../memory/user-memory.ts";
import { Outcome, type Operation } from "./operation.ts";

/**
 * The resolved local memory of one operation. An endpoint keeps one and refills it per call, so
 * resolving allocates nothing.
 */
export class LocalRange {
  /** The region the bytes lie in. */
  region: MemoryRegionImpl | null = null;
  /** Address of the first byte. */
  address = 0;
  /** Bytes from the region's start. */
  offset = 0;
  /** Whether the region was acquired from a registration cache for this operation (a plain view). */
  cached = false;
}

/** What pins need of a transport: whether a region is registered where it can use it. */
interface LocalMemoryCheck {
  checkLocal(kind: string, region: MemoryRegionImpl): void;
}

/**
 * The local memory of an endpoint's operations: a region, a pointer, or (with a cache) a plain
 * view, checked and pinned (`beginOperation`) before the operation takes a slot.
 */
export class LocalMemoryPins {
  private readonly range = new LocalRange();

  constructor(private readonly cache: RegistrationCache | null, private readonly transport: LocalMemoryCheck) {}

  /**
   * Resolves and pins `length` bytes of `local`. Begun before a slot is taken: a shared pool whose
   * owner closed refuses here (POOL_CLOSED), and the owner's close counts the operation once it is
   * begun (BUSY). Throws having changed nothing (a cached region acquired here goes back).
   */
  pin(kind: string, local: LocalMemory | ArrayBufferView, length: number, minimumLength: number): LocalRange {
    const cached = this.cache !== null && ArrayBuffer.isView(local);
    const range = cached ? this.resolveCached(kind, local, length, minimumLength) : this.resolve(kind, local as LocalMemory, length, minimumLength);
    range.cached = cached;
    try {
      beginOperation(range.region!);
    } catch (e) {
      if (cached) this.cache!.release(range.region!);
      throw e;
    }
    return range;
  }

  /** Undoes pin() for an operation that could not take its slot. */
  unpin(region: MemoryRegionImpl, cached: boolean): void {
    endOperation(region);
    if (cached) this.cache!.release(region);
  }

  /** This library's memory, in range, out of its pool, usable by the transport. */
  private resolve(kind: string, local: LocalMemory, length: number, minimumLength: number): LocalRange {
    const range = this.range;
    resolveLocal(kind, local, length, range, minimumLength);
    this.transport.checkLocal(kind, range.region!);
    return range;
  }

  /** A plain view through the cache: a cached region over it, acquired until the operation ends. */
  private resolveCached(kind: string, view: ArrayBufferView, length: number, minimumLength: number): LocalRange {
    const cache = this.cache!;
    const region = cache.resolveLocal(kind, view, length);
    try {
      cache.assertUsable(kind, region);
      return this.resolve(kind, region, length, minimumLength);
    } catch (e) {
      cache.release(region);
      throw e;
    }
  }
}

/**
 * Fills `out` with where `length` bytes of `local` are, or throws having changed nothing the
 * caller owns: TypeError for anything that is not a region or pointer of this library, RangeError
 * for a length or offset that is not an integer inside the region, AllocToolsError DOUBLE_RELEASE
 * for a pooled region that is not out of its pool, AllocToolsError POOL_CLOSED for a region of a
 * shared pool its owner closed, AllocToolsError DETACHED for a region whose memory left its view
 * (a user buffer transferred away).
 */
export function resolveLocal(operation: string, local: LocalMemory, length: number, out: LocalRange, minimumLength = 1): void {
  let region: unknown = local;
  let offset = 0;
  if (MemoryRegionPointer.isGenuine(local)) {
    region = local.region;
    offset = local.offset;
  }
  // One test for every refusal, its message built apart: this function stays small enough to inline.
  if (!MemoryRegionImpl.isGenuine(region) || !Number.isSafeInteger(length) || length < minimumLength ||
      !Number.isSafeInteger(offset) || offset < 0 || length > region.size - offset) {
    throw refusal(operation, local, length, minimumLength);
  }
  if (region.owner !== null) region.assertInUse(operation);
  assertPoolOpen(region, operation); // a shared pool's owner closed it: nothing may be posted on its memory
  checkRegionMemory(operation, region); // a user buffer transferred away: its memory may be reused
  out.region = region;
  out.address = region.address + offset;
  out.offset = offset;
}

/** Why resolveLocal refuses `local`: the first of its checks that fails, as a typed error. */
function refusal(operation: string, local: LocalMemory, length: number, minimumLength: number): Error {
  const pointer = MemoryRegionPointer.isGenuine(local);
  const region: unknown = pointer ? local.region : local;
  const offset: number = pointer ? local.offset : 0;
  if (pointer && region === null) return new AllocToolsTypeError(`${operation}: the null MemoryRegionPointer has no memory`);
  if (!MemoryRegionImpl.isGenuine(region)) {
    return new AllocToolsTypeError(`${operation} takes a MemoryRegion or MemoryRegionPointer made by this library as local memory, got ${describe(local)}`);
  }
  if (!Number.isSafeInteger(length) || length < minimumLength) {
    return new AllocToolsRangeError(`${operation} length must be ${minimumLength === 1 ? "a positive integer" : `an integer >= ${minimumLength}`}, got ${String(length)}`);
  }
  return new AllocToolsRangeError(`${operation} of ${length} bytes at offset ${String(offset)} does not fit the local region's ${region.size} bytes`);
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value !== "object") return typeof value;
  const name = (value as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof name === "string" ? `a look-alike ${name}` : "an object";
}

/** The error an operation gets when it would release or unmap memory an RMA operation still uses. */
export function busyError(what: string, region: MemoryRegionImpl): AllocToolsError {
  return new AllocToolsError("BUSY", `${what}: ${region.inFlight} RMA operation(s) still use the region at 0x${region.address.toString(16)}; wait for them (or close their endpoint) first`);
}

/**
 * The transport is done with `op`'s local memory (unpinned already): a plain view's region goes back
 * to the cache, and a read staged in the cache's memory reaches the view only now, and only if its
 * buffer is still there; a user buffer transferred away in flight fails the operation. Returns the
 * operation's error.
 */
export function afterLocalUse(op: Operation, cache: RegistrationCache | null, region: MemoryRegionImpl, error: unknown): unknown {
  if (cache !== null) return cache.finishLocal(op.kind, region, error, op.outcome === Outcome.Pending, op.kind === "recv" ? op.resultLength : undefined);
  return error === null ? regionMemoryAfterOperation(op.kind, region) : error;
}
