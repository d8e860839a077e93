// The tests two peers in separate processes run, whatever separates them (nothing but the process,
// or network namespaces): A writes and reads B's exposed pooled sub-region, B checks its own memory.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { RemoteRegion } from "../../lib/index.ts";
import type { AgentProcess } from "./peers.ts";
import { REMOTE_OFFSET, LOCAL_OFFSET, SIZES, fromHex } from "./pattern.ts";

export interface PeerSetup {
  /** Starts initiator A and target B. */
  start(): Promise<{ a: AgentProcess; b: AgentProcess }>;
  /** What a wrong key ends as on this provider. */
  badKey: "RmaError" | "RmaTimeoutError";
  /** Bytes that reached B over the wire so far, where there is a wire to count (veth). */
  wireBytes?: () => number;
}

export function twoPeerTests(setup: PeerSetup): void {
  let a: AgentProcess;
  let b: AgentProcess;
  let peer: string;

  beforeAll(async () => {
    ({ a, b } = await setup.start());
    peer = (await a.request({ op: "insert", name: b.ready.name })).peer!;
    await b.request({ op: "insert", name: a.ready.name });
  });
  afterAll(async () => {
    // Both close their endpoint, pool and provider, and exit 0.
    const codes = await Promise.all([a?.stop(), b?.stop()]);
    expect(codes).toEqual([0, 0]);
  });

  test("B's region description crosses as bytes: a pooled sub-region with B's key", () => {
    const remote = RemoteRegion.fromBytes(fromHex(b.ready.remote));
    expect(remote.length).toBeGreaterThanOrEqual(4 << 20);
    if (b.ready.virtualAddressing) expect(remote.address).toBe(BigInt(b.ready.exposedAddress));
    else expect(remote.address).toBeGreaterThan(0n); // offset of the second region in its block
  });

  test("A's writes of 1 B to 4 MiB at odd offsets are in B's memory byte for byte, nothing around them moved", async () => {
    const wireBefore = setup.wireBytes?.();
    for (const [i, length] of SIZES.entries()) {
      await b.request({ op: "clear" });
      const w = await a.request({ op: "write", peer, remote: b.ready.remote, offset: REMOTE_OFFSET, length, localOffset: LOCAL_OFFSET, seed: i });
      expect(w.error).toBeUndefined();
      const c = await b.request({ op: "check", offset: REMOTE_OFFSET, length, seed: i });
      expect({ length, mismatch: c.mismatch, before: c.before, after: c.after }).toEqual({ length, mismatch: -1, before: -1, after: -1 });
    }
    if (wireBefore !== undefined) {
      // The bytes really crossed the link between the namespaces (headers come on top).
      const total = SIZES.reduce((n, s) => n + s, 0);
      expect(setup.wireBytes!() - wireBefore).toBeGreaterThanOrEqual(total);
    }
  });

  test("A's reads of 1 B to 4 MiB at odd offsets bring back B's bytes", async () => {
    for (const [i, length] of SIZES.entries()) {
      await b.request({ op: "fill", offset: REMOTE_OFFSET, length, seed: 50 + i });
      const r = await a.request({ op: "read", peer, remote: b.ready.remote, offset: REMOTE_OFFSET, length, localOffset: LOCAL_OFFSET, seed: 50 + i });
      expect(r.error).toBeUndefined();
      expect({ length, mismatch: r.mismatch }).toEqual({ length, mismatch: -1 });
    }
  });

  test("out of bounds is refused in A before posting; B's memory is untouched", async () => {
    await b.request({ op: "clear" });
    const size = RemoteRegion.fromBytes(fromHex(b.ready.remote)).length;
    // One byte past the end of B's region (the neighbour chunk shares its registration and key).
    const w = await a.request({ op: "write", peer, remote: b.ready.remote, offset: size - 100, length: 101, localOffset: 0, seed: 1 });
    expect(w.error?.name).toBe("RangeError");
    const r = await a.request({ op: "read", peer, remote: b.ready.remote, offset: size - 100, length: 101, localOffset: 0, seed: 1 });
    expect(r.error?.name).toBe("RangeError");
    const c = await b.request({ op: "check", offset: 0, length: 0, seed: 0 });
    expect(c.after).toBe(-1);
  });

  test(`a wrong key ends as ${setup.badKey}, never as silent success; B's memory is untouched`, async () => {
    await b.request({ op: "clear" });
    const w = await a.request({ op: "write", peer, remote: b.ready.remote, offset: 0, length: 4096, localOffset: 0, seed: 3, keyDelta: 1000 });
    expect(w.ok).toBeUndefined();
    expect(w.error?.name).toBe(setup.badKey);
    const c = await b.request({ op: "check", offset: 0, length: 0, seed: 0 });
    expect(c.after).toBe(-1);
  });
}
