// The memory of remote atomics: each operation slot has a cell of three 64-bit words, the operand
// (the value to add, or the one to swap in), the value to compare with, and the result the
// transport writes back (the value found at the target). A cell belongs to its slot, and a slot is
// not reused until the transport has let go of its operation, so a late completion never writes
// into another operation's cell. Cells live in ArrayBuffers of their own (their memory never
// moves), made as slots are and freed with the endpoint by the garbage collector.
import { ptr } from "bun:ffi";
import { AllocToolsRangeError, AllocToolsTypeError } from "../errors.ts";

/** 64-bit words per cell: operand, compare, result. */
const WORDS = 3;
const CELL_BYTES = WORDS * 8;
/** Cells per chunk of native memory: chunks are added as slots are, never moved. */
const CELLS_PER_CHUNK = 64;

/** Byte offsets in a cell, for transports. */
export const OPERAND_OFFSET = 0;
export const COMPARE_OFFSET = 8;
export const RESULT_OFFSET = 16;

const TWO_TO_64 = 1n << 64n;
const MINUS_TWO_TO_63 = -(1n << 63n);

/**
 * An atomic's value, checked: a bigint in [-2^63, 2^64) or a safe integer (negative ones wrap:
 * adding -1 subtracts one). Numbers stay numbers (no BigInt made on the hot path). RangeError /
 * TypeError otherwise, naming `what`.
 */
export function atomicValue(value: unknown, what: string): number | bigint {
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new AllocToolsRangeError(`${what} must be a bigint or a safe integer, got ${value}`);
    return value;
  }
  if (typeof value !== "bigint") throw new AllocToolsTypeError(`${what} must be a bigint or a safe integer, got ${typeof value}`);
  if (value < MINUS_TWO_TO_63 || value >= TWO_TO_64) throw new AllocToolsRangeError(`${what} must fit 64 bits ([-2^63, 2^64)), got ${value}`);
  return value;
}

/** The cells of one endpoint's slots. */
export class AtomicScratch {
  private readonly chunks: number[] = [];
  private readonly views: BigUint64Array[] = [];
  /** The same chunks as 32-bit words, to write numbers without making a BigInt. */
  private readonly words: Uint32Array[] = [];

  /** The address of slot `index`'s cell, made on first use. */
  address(index: number): number {
    const chunk = index / CELLS_PER_CHUNK | 0;
    while (this.chunks.length <= chunk) this.grow();
    return this.chunks[chunk]! + (index % CELLS_PER_CHUNK) * CELL_BYTES;
  }

  /**
   * Writes the operand and the value to compare with (as unsigned 64-bit words: negative values
   * wrap) into slot `index`'s cell, and clears its result.
   */
  fill(index: number, operand: number | bigint, compare: number | bigint): void {
    this.address(index);
    const chunk = index / CELLS_PER_CHUNK | 0;
    const at = (index % CELLS_PER_CHUNK) * WORDS;
    this.write(chunk, at, operand);
    this.write(chunk, at + 1, compare);
    this.write(chunk, at + 2, 0);
  }

  /** Word `at` of `chunk`: a number through its two 32-bit halves, a bigint as it is. */
  private write(chunk: number, at: number, value: number | bigint): void {
    if (typeof value === "bigint") {
      this.views[chunk]![at] = BigInt.asUintN(64, value);
      return;
    }
    const words = this.words[chunk]!;
    words[2 * at] = value >>> 0;
    words[2 * at + 1] = Math.floor(value / 4294967296) >>> 0;
  }

  /** The result the transport wrote into slot `index`'s cell. */
  result(index: number): bigint {
    return this.views[index / CELLS_PER_CHUNK | 0]![(index % CELLS_PER_CHUNK) * WORDS + 2]!;
  }

  private grow(): void {
    const view = new BigUint64Array(new ArrayBuffer(CELLS_PER_CHUNK * CELL_BYTES));
    this.views.push(view);
    this.words.push(new Uint32Array(view.buffer));
    this.chunks.push(ptr(view));
  }
}
