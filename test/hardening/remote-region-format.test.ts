// Issue 10 #12: RemoteRegion.fromJSON given what JSON cannot carry (bigints, cycles) says what is
// wrong with a RemoteRegionFormatError, never an engine TypeError from inside its own message.
import { expect, test } from "bun:test";
import { RemoteRegion, RemoteRegionFormatError } from "../../lib/index.ts";

test("bigint fields are a RemoteRegionFormatError that names the field and asks for decimal strings", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ address: 4096n, key: "1", length: 8 }, /address must be a decimal string, got the bigint 4096n/],
    [{ address: "4096", key: 7n, length: 8 }, /key must be a decimal string, got the bigint 7n/],
    [{ address: "4096", key: "7", length: 8n }, /length must be a non-negative integer, got the bigint 8n/],
  ];
  for (const [json, message] of cases) {
    let error: unknown;
    try { RemoteRegion.fromJSON(json); } catch (e) { error = e; }
    expect(error).toBeInstanceOf(RemoteRegionFormatError);
    expect((error as RemoteRegionFormatError).code).toBe("REMOTE_REGION_FORMAT");
    expect((error as Error).message).toMatch(message);
  }
});

test("a field without a JSON form (a cycle) is a RemoteRegionFormatError too", () => {
  const cycle: Record<string, unknown> = {};
  cycle.self = cycle;
  expect(() => RemoteRegion.fromJSON({ address: cycle, key: "1", length: 1 })).toThrow(RemoteRegionFormatError);
  expect(() => RemoteRegion.fromJSON({ address: "1", key: "1", length: cycle })).toThrow(/no JSON form/);
});
