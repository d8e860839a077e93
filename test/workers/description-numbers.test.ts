// The layout an attached pool takes from the shared memory must reach it as the same kind of
// number the owner's has. Read back from a Float64Array, every size was a double, every field of
// the attached pool derived from them a double too, and a Worker's get+release, compiled for
// double arithmetic, took 3× as long as the owner's (bench suite workers: 29 ns against 8 ns).
import * as jsc from "bun:jsc";
import { expect, test } from "bun:test";
import { HostProvider, MemoryPool } from "../../lib/index.ts";
import { readDescription } from "../../lib/sharing/shared-description.ts";

/** How the engine holds a value ("Int32: 1024", "Double: ..."); bun:jsc has it, its types do not. */
const representation = (jsc as unknown as { describe(value: unknown): string }).describe;

/** Every number inside `value`, with its path. */
function numbers(value: unknown, path: string, into: Array<[string, number]>): Array<[string, number]> {
  if (typeof value === "number") into.push([path, value]);
  else if (value !== null && typeof value === "object") for (const [key, inner] of Object.entries(value)) numbers(inner, `${path}.${key}`, into);
  return into;
}

test("the layout an attached pool reads from the description holds its whole numbers as int32s, also once the reader is optimized", () => {
  const provider = new HostProvider();
  // Pools of other shapes (an unlimited maxPinnedBytes, a fractional-looking stride) read in turn,
  // so that the optimized reader has seen more than one kind of number.
  const pools = [
    new MemoryPool(provider, { maxPinnedBytes: 64 << 20 }),
    new MemoryPool(provider),
    new MemoryPool(provider, { small: { chunkSize: 1000, initialCount: 3 }, maxPinnedBytes: 1.5 * 2 ** 40 }),
  ];
  try {
    const buffers = pools.map((pool) => pool.share().buffer);
    // Read often enough that the reading code is optimized, as in the suite's process after
    // thousands of tampered attaches: there `value | 0`, then a parse per number, came back boxed
    // as doubles.
    for (let read = 0; read < 30_000; read++) readDescription(buffers[read % buffers.length]);
    for (const buffer of buffers) {
      const found = numbers(readDescription(buffer).layout, "layout", []);
      expect(found.length).toBeGreaterThan(20);
      for (const [path, value] of found) {
        if (Number.isInteger(value) && value === (value | 0)) expect({ path, kind: representation(value).split(":")[0] }).toEqual({ path, kind: "Int32" });
      }
    }
  } finally {
    for (const pool of pools) pool.close();
    provider.close();
  }
});
