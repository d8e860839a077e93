// The tests two UCX peers in separate processes run, whatever separates them (nothing but the
// process, or network namespaces): A writes and reads B's exposed pooled region in the three forms,
// B checks its own memory; a forged key blob and a target that stops progressing end as typed errors.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { RemoteRegion } from "../../lib/index.ts";
import type { AgentProcess } from "../rma/peers.ts";
import { fromHex, LOCAL_OFFSET, REMOTE_OFFSET, SIZES } from "../rma/pattern.ts";

export const UCX_AGENT = `${import.meta.dir}/agent.ts`;

export interface UcxPeerSetup {
  /** Starts initiator A and target B. */
  start(): Promise<{ a: AgentProcess; b: AgentProcess }>;
  /** Whether a write lands with a target that does not progress (UCX-allocated memory on shared memory: one-sided). */
  oneSided: boolean;
  /** Bytes that reached B over the wire so far, where there is a wire to count (veth). */
  wireBytes?: () => number;
}

export function ucxTwoPeerTests(setup: UcxPeerSetup): void {
  let a: AgentProcess;
  let b: AgentProcess;
  const peer = 0;

  beforeAll(async () => {
    ({ a, b } = await setup.start());
    expect((await a.request({ op: "insert", name: b.ready.name })).peer).toBe("0");
    await b.request({ op: "insert", name: a.ready.name });
  });
  afterAll(async () => {
    const codes = await Promise.all([a?.stop(), b?.stop()]);
    expect(codes).toEqual([0, 0]);
  });

  test("B's region crosses as version 2 bytes: its virtual address and packed rkey", () => {
    const remote = RemoteRegion.fromBytes(fromHex(b.ready.remote));
    expect(remote.version).toBe(2);
    expect(remote.keyBlob!.length).toBeGreaterThanOrEqual(10);
    expect(remote.length).toBeGreaterThanOrEqual(4 << 20);
    expect(remote.address).toBe(BigInt(b.ready.exposedAddress));
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

  test("the sync and post forms move the same bytes", async () => {
    for (const form of ["sync", "post"] as const) {
      for (const [i, length] of [64, 65_537, 1 << 20].entries()) {
        const seed = (form === "sync" ? 100 : 150) + i;
        await b.request({ op: "clear" });
        const w = await a.request({ op: "write", form, peer, remote: b.ready.remote, offset: REMOTE_OFFSET, length, localOffset: LOCAL_OFFSET, seed });
        expect(w.error).toBeUndefined();
        const c = await b.request({ op: "check", offset: REMOTE_OFFSET, length, seed });
        expect({ form, length, mismatch: c.mismatch, after: c.after }).toEqual({ form, length, mismatch: -1, after: -1 });
        await b.request({ op: "fill", offset: REMOTE_OFFSET, length, seed: seed + 1 });
        const r = await a.request({ op: "read", form, peer, remote: b.ready.remote, offset: REMOTE_OFFSET, length, localOffset: LOCAL_OFFSET, seed: seed + 1 });
        expect({ form, length, mismatch: r.mismatch }).toEqual({ form, length, mismatch: -1 });
      }
    }
  });

  test("out of bounds is refused in A before posting; B's memory is untouched", async () => {
    await b.request({ op: "clear" });
    const size = RemoteRegion.fromBytes(fromHex(b.ready.remote)).length;
    const w = await a.request({ op: "write", peer, remote: b.ready.remote, offset: size - 100, length: 101, localOffset: 0, seed: 1 });
    expect(w.error?.name).toBe("RangeError");
    const r = await a.request({ op: "read", form: "sync", peer, remote: b.ready.remote, offset: size - 100, length: 101, localOffset: 0, seed: 1 });
    expect(r.error?.name).toBe("RangeError");
    const c = await b.request({ op: "check", offset: 0, length: 0, seed: 0 });
    expect(c.after).toBe(-1);
  });

  test("a key blob cut short is a UcxError before UCX reads it; B's memory is untouched", async () => {
    await b.request({ op: "clear" });
    for (const truncateBlob of [1, 9]) {
      const w = await a.request({ op: "write", peer, remote: b.ready.remote, offset: 0, length: 4096, localOffset: 0, seed: 3, truncateBlob });
      expect(w.ok).toBeUndefined();
      expect(w.error?.name).toBe("UcxError");
      expect(w.error?.code).toBe("UCS_ERR_INVALID_PARAM");
    }
    const c = await b.request({ op: "check", offset: 0, length: 0, seed: 0 });
    expect(c.after).toBe(-1);
  });

  test(setup.oneSided
    ? "a target that stops progressing still gets the write (UCX-allocated memory on shared memory is one-sided)"
    : "a target that stops progressing makes the write end as RmaTimeoutError, never as silent success", async () => {
    await b.request({ op: "clear" });
    await b.request({ op: "stopProgress" });
    try {
      const w = await a.request({ op: "write", peer, remote: b.ready.remote, offset: REMOTE_OFFSET, length: 4096, localOffset: 0, seed: 9 });
      if (setup.oneSided) {
        expect(w.error).toBeUndefined();
        const c = await b.request({ op: "check", offset: REMOTE_OFFSET, length: 4096, seed: 9 });
        expect(c.mismatch).toBe(-1);
      } else {
        expect(w.error?.name).toBe("RmaTimeoutError");
        expect(w.error?.message).toStartWith("ucp_put_nbx failed: Operation timed out");
      }
    } finally {
      await b.request({ op: "startProgress" });
    }
    // A keeps working once B progresses again.
    const r = await a.request({ op: "write", peer, remote: b.ready.remote, offset: 0, length: 64, localOffset: 0, seed: 10 });
    expect(r.error).toBeUndefined();
  });
}
