// Two endpoints in one process, over each provider: writes and reads of pooled sub-regions from
// 1 B to 4 MiB at odd offsets, checked byte for byte in the target's memory through its view;
// both addressing modes; delivery-complete writes; and the negative cases.
import { afterAll, beforeAll, expect, test } from "bun:test";
import {
  AllocToolsError, Endpoint, FabricError, LibfabricProvider, MemoryPool, RemoteRegion, RmaError, RmaTimeoutError,
  type LibfabricProviderOptions, type MemoryRegion, type PeerAddress,
} from "../../lib/index.ts";
import { FI } from "../../ffi/layout.ts";
import { SUPPORTED_MR_MODE } from "../../lib/libfabric/libfabric-provider.ts";
import type { MemoryRegionImpl } from "../../lib/memory/region.ts";
import { describeFabric } from "../helpers.ts";
import { fillPattern, firstMismatch, firstNot, LOCAL_OFFSET, REMOTE_OFFSET, RMA_POOL, SENTINEL, SIZES } from "./pattern.ts";

interface Case {
  readonly label: string;
  readonly options: LibfabricProviderOptions;
  readonly virtual: boolean;
  /** What a write with a wrong key ends as here (measured; see docs in lib/libfabric/endpoint.ts). */
  readonly badKey: "error" | "timeout";
  /** Whether the target must progress for a write to complete (manual data progress). */
  readonly targetProgress: boolean;
}

const CASES: readonly Case[] = [
  { label: "tcp (offset addressing)", options: { provider: "tcp", node: "127.0.0.1" }, virtual: false, badKey: "error", targetProgress: true },
  { label: "shm (FI_MR_VIRT_ADDR)", options: { provider: "shm" }, virtual: true, badKey: "timeout", targetProgress: true },
  { label: "shm (offset addressing)", options: { provider: "shm", mrMode: SUPPORTED_MR_MODE & ~FI.MR_VIRT_ADDR }, virtual: false, badKey: "timeout", targetProgress: true },
  { label: "udp", options: { provider: "udp", node: "127.0.0.1" }, virtual: false, badKey: "timeout", targetProgress: true },
  { label: "sockets", options: { provider: "sockets", node: "127.0.0.1" }, virtual: false, badKey: "error", targetProgress: false },
];

/** Initiator and target, each with its own provider (domain), pool and endpoint. */
class Pair {
  readonly providers: LibfabricProvider[];
  readonly pools: MemoryPool[];
  readonly a: Endpoint;
  readonly b: Endpoint;
  readonly peer: PeerAddress;
  /** Second huge region of each pool: a sub-region in the middle of a registered block. */
  readonly src: MemoryRegion;
  readonly dst: MemoryRegion;

  constructor(c: Case, timeoutMs = 10_000, spinMicroseconds = 20) {
    this.providers = [LibfabricProvider.open(c.options), LibfabricProvider.open(c.options)];
    this.pools = this.providers.map((p) => new MemoryPool(p, RMA_POOL));
    this.a = new Endpoint(this.providers[0]!, { timeoutMs, spinMicroseconds });
    this.b = new Endpoint(this.providers[1]!, { timeoutMs, spinMicroseconds });
    this.peer = this.a.insert(this.b.name);
    this.b.insert(this.a.name);
    this.pools[0]!.getRegion(RMA_POOL.huge.chunkSize);
    this.src = this.pools[0]!.getRegion(RMA_POOL.huge.chunkSize);
    this.pools[1]!.getRegion(RMA_POOL.huge.chunkSize);
    this.dst = this.pools[1]!.getRegion(RMA_POOL.huge.chunkSize);
    this.dst.view.fill(SENTINEL);
  }

  close(): void {
    for (const p of this.providers) p.close(); // closes the endpoints first
    for (const p of this.pools) p.close();
  }
}

for (const c of CASES) {
  describeFabric(`RMA in one process [${c.label}]`, () => {
    let pair: Pair;
    beforeAll(() => { pair = new Pair(c); });
    afterAll(() => pair.close());

    test("addressing mode: the remote address is virtual or an offset in the registration, as the provider says", () => {
      const { dst, providers } = pair;
      expect(providers[1]!.virtualAddressing).toBe(c.virtual);
      expect(dst.isPartial).toBe(true);
      expect(dst.address).toBeGreaterThan(dst.baseAddress); // a sub-region, not the block's start
      const expected = c.virtual ? BigInt(dst.address) : BigInt(dst.address - dst.baseAddress);
      expect(dst.remoteAddress).toBe(expected);
      const remote = dst.pointer(REMOTE_OFFSET).remote(100);
      expect(remote.address).toBe(expected + BigInt(REMOTE_OFFSET));
      expect(remote.key).toBe(dst.remoteKey);
      expect(remote.length).toBe(100);
    });

    test("writes of 1 B to 4 MiB at odd offsets land byte for byte, and nothing around them moves", async () => {
      const { a, peer, src, dst } = pair;
      // The target region travels as bytes, as it would between hosts.
      const remote = RemoteRegion.fromBytes(dst.remote().toBytes());
      for (const [i, size] of SIZES.entries()) {
        dst.view.fill(SENTINEL);
        fillPattern(src.pointer(LOCAL_OFFSET).view(size), i);
        await a.write(src.pointer(LOCAL_OFFSET), size, peer, remote.subregion(REMOTE_OFFSET, size));
        // Checked right after the promise: FI_DELIVERY_COMPLETE means the bytes are already there.
        expect({ size, at: firstMismatch(dst.view.subarray(REMOTE_OFFSET, REMOTE_OFFSET + size), i) }).toEqual({ size, at: -1 });
        expect(firstNot(dst.view.subarray(0, REMOTE_OFFSET), SENTINEL)).toBe(-1);
        expect(firstNot(dst.view.subarray(REMOTE_OFFSET + size), SENTINEL)).toBe(-1);
      }
      expect(a.pendingCount).toBe(0);
    });

    test("reads of 1 B to 4 MiB at odd offsets bring back exactly the target's bytes", async () => {
      const { a, peer, src, dst } = pair;
      const remote = RemoteRegion.fromJSON(JSON.parse(JSON.stringify(dst.remote())));
      for (const [i, size] of SIZES.entries()) {
        fillPattern(dst.view.subarray(REMOTE_OFFSET, REMOTE_OFFSET + size), 100 + i);
        src.view.fill(0);
        await a.read(src.pointer(LOCAL_OFFSET), size, peer, remote.subregion(REMOTE_OFFSET));
        expect({ size, at: firstMismatch(src.pointer(LOCAL_OFFSET).view(size), 100 + i) }).toEqual({ size, at: -1 });
        expect(firstNot(src.view.subarray(0, LOCAL_OFFSET), 0)).toBe(-1);
        expect(firstNot(src.view.subarray(LOCAL_OFFSET + size), 0)).toBe(-1);
      }
    });

    test("many operations at once all complete, in any order, each to its own slot", async () => {
      const { a, peer, src, dst } = pair;
      const n = 200;
      const slot = 4099;
      dst.view.fill(SENTINEL);
      fillPattern(src.view.subarray(0, n * slot), 42);
      await Promise.all(Array.from({ length: n }, (_, k) =>
        a.write(src.pointer(k * slot), slot, peer, dst.pointer(k * slot).remote(slot))));
      expect(firstMismatch(dst.view.subarray(0, n * slot), 42)).toBe(-1);
      const s = a.stats();
      expect(s.completed).toBe(s.posted);
      expect(s.failed + s.timedOut).toBe(0);
    });

    test("a write is not reported done before its data is in the target's memory", async () => {
      // No inline spin: write() would progress the target (an endpoint of this process) itself.
      const quiet = new Pair(c, 10_000, 0);
      try {
      const { a, b, peer, src, dst } = quiet;
      for (const size of [8, 60_000]) {
        dst.view.fill(SENTINEL);
        fillPattern(src.view.subarray(0, size), 7);
        const done = a.write(src, size, peer, dst.remote());
        // Only the initiator progresses (synchronously: the event loop, and so the target, is held).
        const until = performance.now() + 30;
        while (a.pendingCount > 0 && performance.now() < until) a.progress();
        if (c.targetProgress) {
          // Manual progress: the target has not polled, so the data cannot have landed, and a
          // delivery-complete write cannot have completed (tcp without it does complete here).
          expect(a.pendingCount).toBe(1);
          b.progress();
        } else if (a.pendingCount === 0) {
          // Completed by the provider's own thread (sockets): the data must be there already.
          expect(firstMismatch(dst.view.subarray(0, size), 7)).toBe(-1);
        }
        await done;
        expect(firstMismatch(dst.view.subarray(0, size), 7)).toBe(-1);
      }
      } finally {
        quiet.close();
      }
    }, 30_000);

    test("bounds are checked locally, before anything is posted", async () => {
      const { a, peer, src, dst } = pair;
      dst.view.fill(SENTINEL);
      const posted = a.stats().posted;
      const small = dst.pointer(100).remote(10);
      expect(() => a.write(src, 11, peer, small)).toThrow(RangeError); // past the remote region
      expect(() => a.read(src, 11, peer, small)).toThrow(RangeError);
      expect(() => a.write(src.pointer(src.size - 5), 6, peer, dst.remote())).toThrow(RangeError); // past the local region
      expect(() => a.write(src, src.size + 1, peer, dst.remote())).toThrow(RangeError);
      expect(() => a.write(src, 0, peer, dst.remote())).toThrow(RangeError);
      expect(() => a.write(src, 1.5, peer, dst.remote())).toThrow(RangeError);
      expect(() => small.subregion(5, 6)).toThrow(RangeError);
      expect(() => dst.pointer(dst.size - 3).remote(4)).toThrow(RangeError);
      expect(() => a.write(src, 1, 12345n, dst.remote())).toThrow(RangeError); // peer never inserted
      expect(() => a.write(src, 1, peer, { address: 0n, key: 0n, length: 1 } as RemoteRegion)).toThrow(TypeError);
      expect(a.stats().posted).toBe(posted);
      expect(firstNot(dst.view, SENTINEL)).toBe(-1);
      // The endpoint is still good.
      fillPattern(src.view.subarray(0, 10), 3);
      await a.write(src, 10, peer, small);
      expect(firstMismatch(dst.view.subarray(100, 110), 3)).toBe(-1);
    });

    test("a region given back to its pool, or from another provider, is refused", () => {
      const { a, peer, dst, pools, providers } = pair;
      const r = pools[0]!.getRegion(64);
      pools[0]!.releaseRegion(r);
      expect(() => a.write(r, 8, peer, dst.remote())).toThrow(AllocToolsError);
      const foreign = pools[1]!.getRegion(64);
      expect(() => a.write(foreign, 8, peer, dst.remote())).toThrow(/another provider/);
      pools[1]!.releaseRegion(foreign);
      expect(providers[0]!.closed).toBe(false);
    });

    // Forged remote regions, which only a peer that ignores RemoteRegion would send: a wrong key,
    // and the right key past the end of the registration.
    const forgeries = [
      { what: "a wrong key", forge: (d: MemoryRegion) => new RemoteRegion(d.remoteAddress, d.remoteKey + 1000n, d.size) },
      { what: "an address past the registration", forge: (d: MemoryRegion) => new RemoteRegion(d.remoteAddress + (64n << 20n), d.remoteKey, 64) },
    ];
    for (const { what, forge } of forgeries) {
      test(`${what} ends as a typed ${c.badKey === "error" ? "error completion" : "timeout"}, never as silent success, and the target is untouched`, async () => {
        // A fresh pair: a bad access breaks tcp's connection and wedges shm's and udp's queues.
        const bad = new Pair(c, 1500);
        try {
          const { a, peer, src, dst } = bad;
          // Connect first with a good write, so that the failure is the forgery's.
          await a.write(src, 1, peer, dst.remote());
          dst.view.fill(SENTINEL);
          fillPattern(src.view.subarray(0, 64), 9);
          const forged = forge(dst);
          const t = performance.now();
          let err: unknown;
          try {
            await a.write(src, 64, peer, forged);
          } catch (e) {
            err = e;
          }
          expect(err).toBeInstanceOf(FabricError);
          expect(err).toBeInstanceOf(c.badKey === "error" ? RmaError : RmaTimeoutError);
          if (err instanceof RmaError) {
            expect(err.providerMessage.length).toBeGreaterThan(0);
            expect(err.operation.key).toBe(forged.key);
          } else {
            expect(performance.now() - t).toBeGreaterThanOrEqual(1400);
            expect((err as RmaTimeoutError).errno).toBe(FI.ETIMEDOUT);
          }
          expect(firstNot(dst.view, SENTINEL)).toBe(-1);
        } finally {
          bad.close();
        }
      });
    }

    test("a closed endpoint throws, and fails what was pending", async () => {
      const p = new Pair(c, 5000);
      try {
        const { a, peer, src, dst } = p;
        await a.write(src, 1, peer, dst.remote());
        // An operation that cannot complete yet: nobody progresses until the close below.
        const pending = a.write(src, 4096, peer, new RemoteRegion(dst.remoteAddress, dst.remoteKey + 7n, 4096));
        a.close();
        expect(a.closed).toBe(true);
        let err: unknown;
        try { await pending; } catch (e) { err = e; }
        // close() cancels and drains: the operation ends with its own error completion where the
        // provider gives one in time (tcp, sockets), else with ENDPOINT_CLOSED; never resolves.
        if (err instanceof AllocToolsError) expect(err.code).toBe("ENDPOINT_CLOSED");
        else expect(err).toBeInstanceOf(RmaError);
        expect((src as MemoryRegionImpl).inFlight).toBe(0); // unpinned once the endpoint is closed
        expect(() => a.write(src, 1, peer, dst.remote())).toThrow(AllocToolsError);
        expect(() => a.read(src, 1, peer, dst.remote())).toThrow(/closed/);
        expect(() => a.insert(p.b.name)).toThrow(/closed/);
        expect(() => a.progress()).toThrow(/closed/);
        a.close(); // idempotent
        // Closing the provider closes its endpoints first.
        p.providers[1]!.close();
        expect(p.b.closed).toBe(true);
      } finally {
        p.close();
      }
    });
  });
}

describeFabric("RMA endpoint basics", () => {
  test("the first operation to a new tcp peer meets -FI_EAGAIN (connection) and is retried, not failed", async () => {
    const p = new Pair(CASES[0]!);
    try {
      await p.a.write(p.src, 16, p.peer, p.dst.remote());
      const s = p.a.stats();
      expect(s.retried).toBeGreaterThan(0);
      expect(s.completed).toBe(1);
    } finally {
      p.close();
    }
  });

  test("options are checked", () => {
    const provider = LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" });
    try {
      expect(() => new Endpoint(provider, { timeoutMs: 0 })).toThrow(RangeError);
      expect(() => new Endpoint(provider, { cqSize: -1 })).toThrow(RangeError);
      const ep = new Endpoint(provider);
      expect(ep.writeCompletion).toBe("FI_DELIVERY_COMPLETE");
      expect(ep.name.length).toBeGreaterThan(0);
      expect(() => ep.insert(new Uint8Array(0))).toThrow(TypeError);
      expect(() => ep.startProgress(-1)).toThrow(RangeError);
      ep.startProgress(5);
      expect(ep.progressInterval).toBe(5);
      ep.stopProgress();
      ep.close();
      expect(() => new Endpoint(provider, { timeoutMs: 100 }).close()).not.toThrow();
    } finally {
      provider.close();
    }
    expect(() => new Endpoint(provider)).toThrow(AllocToolsError);
  });

  test("a provider opened for another endpoint type is refused", () => {
    const msg = LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1", endpointType: "msg" });
    try {
      expect(() => new Endpoint(msg)).toThrow(/endpointType "rdm"/);
    } finally {
      msg.close();
    }
  });
});
