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

test("the description an attached pool reads holds whole numbers as int32s, as share() wrote them, also once its reader is optimized", () => {
  const provider = new HostProvider();
  const pool = new MemoryPool(provider, { maxPinnedBytes: 64 << 20 });
  try {
    const buffer = pool.share().buffer;
    // Read often enough that the reading code is optimized, as in a test process that attached
    // thousands of times: there a merged `value | 0` came back boxed as a double.
    let description = readDescription(buffer);
    for (let read = 0; read < 20_000; read++) description = readDescription(buffer);
    const found = numbers({ layout: description.layout, options: description.options, pid: description.pid }, "description", []);
    expect(found.length).toBeGreaterThan(20);
    for (const [path, value] of found) {
      if (Number.isInteger(value) && value === (value | 0)) expect({ path, kind: representation(value).split(":")[0] }).toEqual({ path, kind: "Int32" });
    }
  } finally {
    pool.close();
    provider.close();
  }
});
