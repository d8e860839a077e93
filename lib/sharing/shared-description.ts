// What a shared pool is, written into its own shared memory by share(): the owner's process, the
// size classes and table sizes the layout is computed from, the options every attached pool uses,
// and a fingerprint of the provider handle. MemoryPool.attach reads all of it from there and only
// checks the handle against it: a handle changed after share() (a chunk size halved, a capacity
// doubled, a provider's native handle replaced) is refused with a typed error naming the field,
// never attached with a layout that puts its regions over another Worker's.
import { AllocToolsTypeError } from "../errors.ts";
import type { HugePages } from "../memory/block.ts";
import type { ProviderHandle } from "../memory/provider.ts";
import {
  DESCRIPTION, DESCRIPTION_STACK, DESCRIPTION_STACK_WORDS, HEADER, LINE, MAGIC, SharedLayout, descriptionBytes, type SharedLayoutSpec,
} from "./shared-layout.ts";

/** The options of the owner's pool that every attached pool uses too (part of the pool's handle). */
export interface SharedPoolOptions {
  readonly maxPinnedBytes: number;
  readonly access: number;
  readonly hugePages: HugePages;
  readonly debug: boolean;
}

/** Everything the shared memory says about its pool. */
export interface SharedPoolDescription {
  readonly pid: number;
  readonly layout: SharedLayoutSpec;
  readonly options: SharedPoolOptions;
  /** Two 32-bit hashes of the provider handle's fields (see providerFingerprint). */
  readonly providerFingerprint: readonly [number, number];
}

/** The handle fields checked here (the pool handle's own shape, without importing the pool). */
interface HandleFields {
  readonly pid: unknown;
  readonly layout: unknown;
  readonly options: unknown;
  readonly provider: unknown;
}

const HUGE_PAGES: readonly HugePages[] = [false, true, "try", "transparent"];
/** More size classes than any pool has: a header claiming more is not a pool's. */
const MAX_CLASSES = 64;

/** share(): writes the description into the new shared memory (before the handle exists). */
export function writeDescription(buffer: SharedArrayBuffer, layout: SharedLayout, description: SharedPoolDescription): void {
  const spec = description.layout;
  new Int32Array(buffer)[HEADER.classes] = spec.stacks.length;
  const floats = new Float64Array(buffer, layout.description, descriptionBytes(spec.stacks.length) / 8);
  floats[DESCRIPTION.pid] = description.pid;
  floats[DESCRIPTION.maxWorkers] = spec.maxWorkers;
  floats[DESCRIPTION.cacheSize] = spec.cacheSize;
  floats[DESCRIPTION.maxUnpooledRegions] = spec.maxUnpooledRegions;
  floats[DESCRIPTION.maxPinnedBytes] = description.options.maxPinnedBytes;
  floats[DESCRIPTION.access] = description.options.access;
  floats[DESCRIPTION.hugePages] = HUGE_PAGES.indexOf(description.options.hugePages);
  floats[DESCRIPTION.debug] = description.options.debug ? 1 : 0;
  floats[DESCRIPTION.providerFingerprint] = description.providerFingerprint[0];
  floats[DESCRIPTION.providerFingerprint + 1] = description.providerFingerprint[1];
  spec.stacks.forEach((stack, sizeClass) => {
    const at = DESCRIPTION.stacks + sizeClass * DESCRIPTION_STACK_WORDS;
    floats[at + DESCRIPTION_STACK.chunkSize] = stack.chunkSize;
    floats[at + DESCRIPTION_STACK.initialCount] = stack.initialCount;
    floats[at + DESCRIPTION_STACK.growCount] = stack.growCount;
    floats[at + DESCRIPTION_STACK.capacity] = stack.capacity;
    floats[at + DESCRIPTION_STACK.maxBlocks] = stack.maxBlocks;
  });
}

/** The layout spec the description's words record, for `classes` size classes. */
function readLayout(floats: Float64Array, classes: number): SharedLayoutSpec {
  return {
    maxWorkers: floats[DESCRIPTION.maxWorkers]!, cacheSize: floats[DESCRIPTION.cacheSize]!,
    maxUnpooledRegions: floats[DESCRIPTION.maxUnpooledRegions]!,
    stacks: Array.from({ length: classes }, (_, sizeClass) => {
      const at = DESCRIPTION.stacks + sizeClass * DESCRIPTION_STACK_WORDS;
      return {
        chunkSize: floats[at + DESCRIPTION_STACK.chunkSize]!, initialCount: floats[at + DESCRIPTION_STACK.initialCount]!,
        growCount: floats[at + DESCRIPTION_STACK.growCount]!, capacity: floats[at + DESCRIPTION_STACK.capacity]!,
        maxBlocks: floats[at + DESCRIPTION_STACK.maxBlocks]!,
      };
    }),
  };
}

/**
 * The layout with its numbers as the engine makes whole numbers it parses: int32s. Read from the
 * Float64Array they are doubles, the attached pool's fields derived from them were doubles too, and
 * its get+release, compiled for double arithmetic, took 3× as long as the owner's. Neither
 * `value | 0` nor a parse per number survives optimization of this code (a merged result is boxed
 * as a double again); a whole layout parsed from text is built by the parser. Once per attach; the
 * layout is finite, checked before.
 */
function withInt32s(layout: SharedLayoutSpec): SharedLayoutSpec {
  return JSON.parse(JSON.stringify(layout)) as SharedLayoutSpec;
}

/**
 * The description a shared pool's memory holds. AllocToolsTypeError when `buffer` is not a shared
 * pool's memory (not a SharedArrayBuffer, no magic, or a size its own description does not give).
 */
export function readDescription(buffer: unknown): SharedPoolDescription {
  if (!(buffer instanceof SharedArrayBuffer) || buffer.byteLength < 2 * LINE || new Int32Array(buffer, 0, LINE / 4)[HEADER.magic] !== MAGIC) {
    throw new AllocToolsTypeError("MemoryPool.attach takes the handle pool.share() returned (its buffer is not a shared pool's memory)");
  }
  const classes = new Int32Array(buffer, 0, LINE / 4)[HEADER.classes]!;
  if (classes < 1 || classes > MAX_CLASSES || buffer.byteLength < LINE + descriptionBytes(classes)) throw damaged();
  const floats = new Float64Array(buffer, LINE, descriptionBytes(classes) / 8);
  const layout = readLayout(floats, classes);
  let bytes: number;
  try {
    bytes = new SharedLayout(layout).bytes;
  } catch {
    throw damaged();
  }
  const hugePages = HUGE_PAGES[floats[DESCRIPTION.hugePages]!];
  if (bytes !== buffer.byteLength || hugePages === undefined) throw damaged();
  return {
    pid: floats[DESCRIPTION.pid]!, layout: withInt32s(layout),
    options: { maxPinnedBytes: floats[DESCRIPTION.maxPinnedBytes]!, access: floats[DESCRIPTION.access]!, hugePages, debug: floats[DESCRIPTION.debug] === 1 },
    providerFingerprint: [floats[DESCRIPTION.providerFingerprint]!, floats[DESCRIPTION.providerFingerprint + 1]!],
  };
}

/**
 * Checks every field of a pool handle against what its shared memory says: AllocToolsTypeError
 * naming the first field that differs (the handle was changed after share()), nothing touched.
 */
export function checkHandle(handle: HandleFields, description: SharedPoolDescription): void {
  const differs = firstDifference({ pid: description.pid, layout: description.layout, options: description.options },
    { pid: handle.pid, layout: handle.layout, options: handle.options }, "");
  if (differs !== null) {
    throw new AllocToolsTypeError(`MemoryPool.attach: the handle's ${differs}; the handle was changed after share() (post it to the Worker unchanged)`);
  }
  const fingerprint = providerFingerprint(handle.provider);
  if (fingerprint[0] !== description.providerFingerprint[0] || fingerprint[1] !== description.providerFingerprint[1]) {
    throw new AllocToolsTypeError("MemoryPool.attach: the handle's provider is not the provider handle share() put there (a field of it was changed after share())");
  }
}

/**
 * Two 32-bit FNV-1a hashes (two offset bases) of the provider handle's fields, in a form a
 * structured clone keeps: every primitive with its type, objects by sorted key. A SharedArrayBuffer
 * counts by its size only (another one of the same size cannot be told apart from here).
 */
export function providerFingerprint(handle: unknown): [number, number] {
  const text = canonical(handle as ProviderHandle);
  let first = 0x811c9dc5;
  let second = 0x01000193 ^ 0x5bd1e995;
  for (let position = 0; position < text.length; position++) {
    const unit = text.charCodeAt(position);
    first = Math.imul(first ^ unit, 0x01000193) >>> 0;
    second = Math.imul(second ^ unit, 0x01000193) >>> 0;
  }
  return [first, second];
}

/** A structured-clone-stable text of `value`: type-tagged primitives, sorted keys. */
function canonical(value: unknown): string {
  if (value === null || typeof value !== "object") return `${typeof value}:${Object.is(value, -0) ? "-0" : String(value)}`;
  if (value instanceof SharedArrayBuffer) return `SharedArrayBuffer:${value.byteLength}`;
  if (value instanceof ArrayBuffer) return `ArrayBuffer:${value.byteLength}`;
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  const entries = Object.entries(value).sort(([left], [right]) => (left < right ? -1 : left > right ? 1 : 0));
  return `{${entries.map(([key, field]) => `${JSON.stringify(key)}:${canonical(field)}`).join(",")}}`;
}

/** "layout.stacks[0].chunkSize is 512, but the shared pool's is 1024", or null when `given` is `expected`. */
function firstDifference(expected: unknown, given: unknown, path: string): string | null {
  const name = path === "" ? "fields" : path;
  if (expected === null || typeof expected !== "object") {
    return Object.is(expected, given) ? null : `${name} is ${describe(given)}, but the shared pool's is ${describe(expected)}`;
  }
  if (given === null || typeof given !== "object" || Array.isArray(expected) !== Array.isArray(given)) {
    return `${name} is ${describe(given)}, not what share() put there`;
  }
  const expectedKeys = Object.keys(expected);
  const extra = Object.keys(given).filter((key) => !expectedKeys.includes(key));
  if (extra.length > 0) return `${name} has ${extra.map((key) => JSON.stringify(key)).join(", ")}, which share() did not put there`;
  for (const key of expectedKeys) {
    const inner = Array.isArray(expected) ? `${path}[${key}]` : path === "" ? key : `${path}.${key}`;
    const found = firstDifference((expected as Record<string, unknown>)[key], (given as Record<string, unknown>)[key], inner);
    if (found !== null) return found;
  }
  return null;
}

function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "bigint") return `${value}n`;
  if (value === null || typeof value !== "object") return Object.is(value, -0) ? "-0" : String(value);
  return Array.isArray(value) ? "an array" : "an object";
}

function damaged(): AllocToolsTypeError {
  return new AllocToolsTypeError("MemoryPool.attach: the handle's buffer is not a shared pool's memory (its description is damaged)");
}
