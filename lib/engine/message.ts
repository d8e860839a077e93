// What a receive gives back: `Received` for a receive into memory the caller chose, `Message` for
// one whose size was found first and whose memory the library took from a pool.
import { AllocToolsRangeError, AllocToolsTypeError } from "../errors.ts";
import type { MemoryPool } from "../pool/pool.ts";
import type { MemoryRegion } from "../memory/region.ts";

/** A receive's source that matches a message from any peer. */
export const ANY_SOURCE = -1;
/** A tag mask (`ignore`) under which every tag matches: all 32 bits ignored. */
export const ANY_TAG = 0xffff_ffff;
/** The largest tag: tags are integers in [0, 2^32). */
export const MAX_TAG = 0xffff_ffff;

/** A tag: an integer in [0, 2^32); RangeError naming `kind` otherwise. */
export function checkTag(kind: string, tag: number): void {
  if (!Number.isInteger(tag) || tag < 0 || tag > MAX_TAG) throw new AllocToolsRangeError(`${kind}: a tag is an integer in [0, 2^32), got ${String(tag)}`);
}

/** A receive's tag and options, checked (the tag, `ignore` a mask, `signal` an AbortSignal); returns the mask. */
export function checkReceiveOptions(kind: string, tag: number, options: ReceiveOptions | undefined): number {
  checkTag(kind, tag);
  if (options !== undefined && (options === null || typeof options !== "object")) throw new AllocToolsTypeError(`${kind} options must be an object`);
  const ignore = options?.ignore ?? 0;
  if (!Number.isInteger(ignore) || ignore < 0 || ignore > MAX_TAG) throw new AllocToolsRangeError(`${kind}: options.ignore must be a tag mask, an integer in [0, 2^32), got ${String(ignore)}`);
  const signal = options?.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new AllocToolsTypeError(`${kind}: options.signal must be an AbortSignal`);
  return ignore;
}

/** Options of a receive. */
export interface ReceiveOptions {
  /** Tag bits that need not match (`ANY_TAG`: every tag matches); default 0, an exact tag. */
  ignore?: number;
  /**
   * Aborts the receive: it rejects (the sync form throws) with the signal's reason, exactly once,
   * and its memory is released; a receive whose message already matched completes instead.
   */
  signal?: AbortSignal;
}

/** A message received into memory the caller gave: who sent it, with which tag, how long it is. */
export class Received<Peer = number | bigint> {
  /**
   * Made by an endpoint when a receive completes.
   * @param source The sender, as a peer of this endpoint (usable for a reply), also when the receive named ANY_SOURCE.
   * @param tag The message's tag.
   * @param length The message's length in bytes (at most the receive's).
   */
  constructor(readonly source: Peer, readonly tag: number, readonly length: number) {}
}

/**
 * A message of a size found first (`receive()`, `messages()`), received with no copy into a region
 * of the endpoint's pool. Release it (or `using`) to give the region back.
 */
export class Message<Peer = number | bigint> implements Disposable {
  /** The sender, as a peer of this endpoint (usable for a reply). */
  readonly source: Peer;
  /** The message's tag. */
  readonly tag: number;
  /** The message's length in bytes. */
  readonly length: number;
  /** The pooled region holding it (at least `length` bytes). */
  readonly region: MemoryRegion;
  /** The message's bytes: a view of the region, `length` long. */
  readonly view: Uint8Array;
  #pool: MemoryPool | null;

  /** Made by an endpoint's receive(); `pool` takes the region back on release(). */
  constructor(source: Peer, tag: number, length: number, region: MemoryRegion, pool: MemoryPool) {
    this.source = source;
    this.tag = tag;
    this.length = length;
    this.region = region;
    this.view = region.view.subarray(0, length);
    this.#pool = pool;
  }

  /** Whether release() was called. */
  get released(): boolean {
    return this.#pool === null;
  }

  /** Gives the region back to its pool; idempotent. `view` must not be used afterwards. */
  release(): void {
    const pool = this.#pool;
    if (pool === null) return;
    this.#pool = null;
    pool.releaseRegion(this.region);
  }

  /** `using message = await ep.receive(...)`: the same as release(). */
  [Symbol.dispose](): void {
    this.release();
  }
}
