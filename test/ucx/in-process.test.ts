// RMA over UCX between two endpoints (two workers) of this process: promise, sync and post forms
// on tcp, on shared memory with UCX-allocated blocks and with our own blocks, stamped payloads at
// odd offsets checked byte for byte, and every refusal as a typed error before anything is posted.
import type { MemoryRegionImpl } from "../../lib/memory/region.ts";
import { afterAll, beforeAll, expect, test } from "bun:test";
import {
  AllocToolsError, HostProvider, MemoryPool, RemoteRegion, UcxEndpoint, UcxError, UcxProvider,
} from "../../lib/index.ts";
import { describeUcx } from "../helpers.ts";
import { fillPattern, firstMismatch, firstNot, LOCAL_OFFSET, REMOTE_OFFSET, RMA_POOL, SENTINEL, SIZES } from "../rma/pattern.ts";

const CASES = [
  { label: "tcp", transports: "tcp" },
  { label: "shm, UCX-allocated blocks", transports: "posix,cma", allocateBlocks: true },
  { label: "shm, own blocks", transports: "sysv,cma", allocateBlocks: false },
] as const;

for (const c of CASES) {
  describeUcx(`UcxEndpoint in one process [${c.label}]`, () => {
    let provider: UcxProvider;
    let pool: MemoryPool;
    let a: UcxEndpoint;
    let b: UcxEndpoint;
    let peer: number;
    let source: MemoryRegionImpl;
    let target: MemoryRegionImpl;

    beforeAll(() => {
      provider = UcxProvider.open({ transports: c.transports, ...("allocateBlocks" in c ? { allocateBlocks: c.allocateBlocks } : {}) });
      pool = new MemoryPool(provider, RMA_POOL);
      a = new UcxEndpoint(provider, { timeoutMs: 5000 });
      b = new UcxEndpoint(provider, { timeoutMs: 5000 });
      peer = a.insert(b.name);
      b.insert(a.name);
      source = pool.getRegion(RMA_POOL.huge.chunkSize) as MemoryRegionImpl;
      target = pool.getRegion(RMA_POOL.huge.chunkSize) as MemoryRegionImpl;
    });
    afterAll(() => {
      a.close();
      b.close();
      pool.releaseRegion(source);
      pool.releaseRegion(target);
      expect(pool.close().count).toBe(0);
      provider.close();
    });

    /** The written range holds the pattern, the bytes around it the sentinel. */
    const expectWritten = (length: number, seed: number) => {
      const v = target.view;
      expect({ length, mismatch: firstMismatch(v.subarray(REMOTE_OFFSET, REMOTE_OFFSET + length), seed),
        before: firstNot(v.subarray(0, REMOTE_OFFSET), SENTINEL), after: firstNot(v.subarray(REMOTE_OFFSET + length), SENTINEL) })
        .toEqual({ length, mismatch: -1, before: -1, after: -1 });
    };

    test("the worker address is the name; a region's remote() is a version 2 RemoteRegion with its packed rkey", () => {
      expect(a.name.length).toBeGreaterThan(16);
      const remote = target.remote();
      expect(remote.version).toBe(2);
      expect(remote.keyBlob).toBe(target.remoteKeyBytes);
      expect(remote.address).toBe(BigInt(target.address));
    });

    test("write(): 1 B to 4 MiB at odd offsets lands in the target byte for byte, nothing around it moves", async () => {
      const remote = RemoteRegion.fromBytes(target.remote().toBytes()).subregion(REMOTE_OFFSET);
      for (const [i, length] of SIZES.entries()) {
        target.view.fill(SENTINEL);
        fillPattern(source.view.subarray(LOCAL_OFFSET, LOCAL_OFFSET + length), i);
        await a.write(source.pointer(LOCAL_OFFSET), length, peer, remote);
        expectWritten(length, i);
      }
      expect(source.inFlight).toBe(0);
    });

    test("read(): 1 B to 4 MiB at odd offsets brings the target's bytes back", async () => {
      const remote = target.remote().subregion(REMOTE_OFFSET);
      for (const [i, length] of SIZES.entries()) {
        fillPattern(target.view.subarray(REMOTE_OFFSET, REMOTE_OFFSET + length), 50 + i);
        source.view.fill(0);
        await a.read(source.pointer(LOCAL_OFFSET), length, peer, remote);
        expect({ length, mismatch: firstMismatch(source.view.subarray(LOCAL_OFFSET, LOCAL_OFFSET + length), 50 + i) })
          .toEqual({ length, mismatch: -1 });
      }
    });

    test("writeSync()/readSync(): the same bytes, waited for on this thread", () => {
      const remote = target.remote().subregion(REMOTE_OFFSET);
      for (const [i, length] of [64, 4097, 1 << 20].entries()) {
        target.view.fill(SENTINEL);
        fillPattern(source.view.subarray(LOCAL_OFFSET, LOCAL_OFFSET + length), 100 + i);
        a.writeSync(source.pointer(LOCAL_OFFSET), length, peer, remote);
        expectWritten(length, 100 + i);
        source.view.fill(0);
        a.readSync(source.pointer(LOCAL_OFFSET), length, peer, remote);
        expect(firstMismatch(source.view.subarray(LOCAL_OFFSET, LOCAL_OFFSET + length), 100 + i)).toBe(-1);
      }
    });

    test("postWrite()/postRead() with poll() and completed(id): a window of 16, each id retired once", () => {
      const remote = target.remote();
      const chunk = 65_536;
      target.view.fill(SENTINEL);
      for (let i = 0; i < 16; i++) fillPattern(source.view.subarray(i * chunk, (i + 1) * chunk), 200 + i);
      const ids = Array.from({ length: 16 }, (_, i) => a.postWrite(source.pointer(i * chunk), chunk, peer, remote.subregion(i * chunk)));
      expect(new Set(ids).size).toBe(16);
      const done = new Set<number>();
      const deadline = performance.now() + 5000;
      while (done.size < ids.length && performance.now() < deadline) {
        a.poll();
        for (const id of ids) if (!done.has(id) && a.completed(id)) done.add(id);
      }
      expect(done.size).toBe(16);
      for (let i = 0; i < 16; i++) expect(firstMismatch(target.view.subarray(i * chunk, (i + 1) * chunk), 200 + i)).toBe(-1);
      expect(() => a.completed(ids[0]!)).toThrow(RangeError); // retired
      expect(() => a.completed(12345)).toThrow(RangeError);
      expect(source.inFlight).toBe(0);
      source.view.fill(0);
      const readId = a.postRead(source, chunk, peer, remote);
      while (!a.completed(readId)) a.poll();
      expect(firstMismatch(source.view.subarray(0, chunk), 200)).toBe(-1);
    });

    test("refusals are typed and post nothing: bounds, peers, libfabric-format and malformed key blobs, foreign regions", () => {
      const posted = a.stats().posted;
      const remote = target.remote();
      expect(() => a.writeSync(source, remote.length + 1, peer, remote)).toThrow(RangeError);
      expect(() => a.write(source, 101, peer, remote.subregion(remote.length - 100))).toThrow(RangeError);
      expect(() => a.postRead(source.pointer(source.size - 10), 11, peer, remote)).toThrow(RangeError);
      expect(() => a.writeSync(source, 0, peer, remote)).toThrow(RangeError);
      expect(() => a.writeSync(source, 64, 99, remote)).toThrow(RangeError);
      expect(() => a.writeSync(source, 64, peer, { ...remote } as RemoteRegion)).toThrow(TypeError);
      expect(() => a.writeSync(source, 64, peer, new RemoteRegion(remote.address, 1n, remote.length))).toThrow(/no key blob/);
      // A blob whose framing names more bytes than it has is never handed to ucp_ep_rkey_unpack.
      const truncated = new RemoteRegion(remote.address, 0n, remote.length, remote.keyBlob!.subarray(0, 9).map((v, i) => (i === 0 ? 0xff : v)));
      let error: unknown;
      try { a.writeSync(source, 64, peer, truncated); } catch (e) { error = e; }
      expect(error).toBeInstanceOf(UcxError);
      expect((error as UcxError).code).toBe("UCS_ERR_INVALID_PARAM");
      expect((error as UcxError).message).toContain("refused before unpacking");
      expect(() => a.writeSync(source, 64, peer, new RemoteRegion(remote.address, 0n, remote.length, new Uint8Array(3)))).toThrow(UcxError);
      const host = new HostProvider();
      const foreignPool = new MemoryPool(host, { small: { chunkSize: 256, initialCount: 1 } });
      const foreign = foreignPool.getRegion(64);
      expect(() => a.writeSync(foreign, 64, peer, remote)).toThrow(/registered with another provider/);
      foreignPool.releaseRegion(foreign);
      foreignPool.close();
      host.close();
      const released = pool.getRegion(100);
      pool.releaseRegion(released);
      expect(() => a.writeSync(released, 64, peer, remote)).toThrow(/not in use/);
      expect(a.stats().posted).toBe(posted);
      expect(source.inFlight).toBe(0);
    });

    test("an endpoint closed with operations in flight fails them with ENDPOINT_CLOSED and unpins their regions; later calls too", async () => {
      const e = new UcxEndpoint(provider);
      const p = e.insert(b.name);
      const remote = target.remote();
      const writes = Array.from({ length: 8 }, (_, i) => e.write(source.pointer(i * 65_536), 65_536, p, remote.subregion(i * 65_536)));
      const id = e.postWrite(source, 4096, p, remote);
      e.close();
      e.close(); // idempotent
      const outcomes = await Promise.allSettled(writes);
      for (const o of outcomes) {
        // On shared memory a write may be complete by the time it returns; what was not ends as ENDPOINT_CLOSED.
        if (o.status === "rejected") expect((o.reason as AllocToolsError).code).toBe("ENDPOINT_CLOSED");
      }
      try { expect(e.completed(id)).toBe(true); } catch (err) { expect((err as AllocToolsError).code).toBe("ENDPOINT_CLOSED"); }
      expect(source.inFlight).toBe(0);
      expect(() => e.writeSync(source, 64, p, remote)).toThrow(/closed/);
      expect(() => e.insert(b.name)).toThrow(AllocToolsError);
      expect(e.pendingCount).toBe(0);
    });

    test("rkeys are unpacked once per peer and key blob: region copies, parsed copies and sub-regions hit the cache", () => {
      const e = new UcxEndpoint(provider);
      try {
        const p = e.insert(b.name);
        const bytes = target.remote().toBytes();
        for (let i = 0; i < 50; i++) {
          e.writeSync(source, 64, p, RemoteRegion.fromBytes(bytes).subregion(i));
          e.writeSync(source, 64, p, target.remote());
        }
        // Blocks of one provider may share an rkey's bytes (own memory: always): at most one unpack per distinct blob.
        const distinct = new Set([Buffer.from(target.remoteKeyBytes!).toString("hex")]).size;
        expect(e.stats().rkeysUnpacked).toBe(distinct);
        expect(e.stats().completed).toBe(100);
      } finally {
        e.close();
      }
    });

    if (c.transports === "tcp") {
      test("a posted write pins its local region (inFlight) until it completes; the target progresses only when polled", () => {
        const id = a.postWrite(source, 4096, peer, target.remote());
        expect(source.inFlight).toBe(1);
        expect(a.pendingCount).toBe(1);
        const deadline = performance.now() + 5000;
        while (!a.completed(id) && performance.now() < deadline) a.poll();
        expect(source.inFlight).toBe(0);
        expect(a.pendingCount).toBe(0);
      });
    }

    test("stats count what happened; insert refuses a non-address", () => {
      const s = a.stats();
      expect(s.posted).toBeGreaterThan(0);
      expect(s.completed).toBe(s.posted);
      expect([s.failed, s.timedOut, s.retried]).toEqual([0, 0, 0]);
      expect(() => a.insert(new Uint8Array(0))).toThrow(TypeError);
      expect(() => a.insert("x" as unknown as Uint8Array)).toThrow(TypeError);
    });
  });
}
