// Interop with a C UCX program the library never saw (test/ucx/c-peer.c), which follows only the
// wire format of docs/messaging.md: messages both ways in every form of ours (named sources,
// ANY_SOURCE, receive() of unknown size, the C side's own probe), truncation both ways, a C sender
// never inserted (ANY_SOURCE), and remote atomics: the C peer's ucp_atomic_op_nbx ADD and CSWAP
// interleaved with ours on one counter, which it also reads with ucp_get_nbx.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { ANY_SOURCE, MemoryPool, UcxEndpoint, UcxProvider, type MemoryRegion, type Received } from "../../lib/index.ts";
import { senderId } from "../../lib/ucx/sender-id.ts";
import { describeUcx, REQUIRE_UCX, ucx } from "../helpers.ts";
import { fillPattern, firstMismatch, toHex } from "../rma/pattern.ts";
import { buildCPeer, CPeer, type CReply } from "./c-peer.ts";
import { eagerLimit } from "./eager-limit.ts";

setDefaultTimeout(120_000);

const MiB = 1 << 20;
const CASES = [
  { label: "tcp", transports: "tcp", netDevices: "lo" },
  { label: "shm, UCX-allocated blocks", transports: "posix,cma", allocateBlocks: true },
  { label: "shm, own blocks", transports: "sysv,cma", allocateBlocks: false },
] as const;
/** fetchAdds each side does on the shared counter. */
const ATOMICS = Math.min(2000, Number(process.env.ALLOCTOOLS_ATOMIC_ITERATIONS ?? 2000));

const built = ucx.available ? buildCPeer() : { missing: "UCX is not available" };

function describeWithCPeer(name: string, body: (path: string) => void): void {
  if ("path" in built) return describeUcx(name, () => body(built.path));
  if (REQUIRE_UCX) return describe(name, () => test("the C UCX peer is required (ALLOCTOOLS_REQUIRE_UCX=1)", () => { throw new Error(`c-peer.c could not be built: ${built.missing}`); }));
  console.warn(`[alloctools] skipped: ${name}: ${built.missing}`);
  describe.skip(name, () => body(""));
}

for (const c of CASES) {
  describeWithCPeer(`UCX interop with an independent C peer [${c.label}]`, (path) => {
    let provider: UcxProvider;
    let pool: MemoryPool;
    let ep: UcxEndpoint;
    let peer: CPeer;
    let fromC: number;
    let src: MemoryRegion;
    let dst: MemoryRegion;
    let limit: number;
    const netDevices = "netDevices" in c ? c.netDevices : undefined;

    beforeAll(async () => {
      provider = UcxProvider.open({ transports: c.transports, ...(netDevices ? { netDevices } : {}), ...("allocateBlocks" in c ? { allocateBlocks: c.allocateBlocks } : {}) });
      pool = new MemoryPool(provider, { huge: { chunkSize: 4 * MiB + 4096, initialCount: 2 } });
      ep = new UcxEndpoint(provider, { timeoutMs: 20_000, pool });
      ep.startProgress(0); // the C peer's rendezvous and atomics need this worker to progress
      peer = await CPeer.start(path, c.transports, netDevices);
      fromC = ep.insert(peer.address);
      const connected = await peer.ask(`peer ${toHex(ep.name)}`);
      expect(connected).toEqual({ status: "Success", peerId: senderId(ep.name) });
      src = pool.getRegion(4 * MiB + 64);
      dst = pool.getRegion(4 * MiB + 64);
      limit = eagerLimit(c.transports, netDevices, "intra");
    });
    afterAll(async () => {
      expect(await peer?.stop()).toBe(0);
      ep?.close();
      pool.releaseRegion(src);
      pool.releaseRegion(dst);
      pool.close();
      provider.close();
    });

    test("the C peer computes the sender ids the library does (FNV-1a 32 of the worker address)", () => {
      expect(peer.id).toBe(senderId(peer.address));
    });

    test("ours to C, in every send form: C's named and ANY_SOURCE receives get the bytes, our tag, our sender id", async () => {
      const forms = ["send", "sendSync", "postSend"] as const;
      for (const [i, length] of [0, 1, limit, limit + 1, 4 * MiB].entries()) {
        for (const [f, form] of forms.entries()) {
          const seed = 10 * i + f;
          const tag = 0x10000 + i;
          const any = (i + f) % 2;
          fillPattern(src.view.subarray(0, length), seed);
          const reply = await peer.command(`recv ${tag} ${length} ${any} ${seed}`);
          if (form === "send") await ep.send(src, length, fromC, tag);
          else if (form === "sendSync") ep.sendSync(src, length, fromC, tag);
          else {
            const id = ep.postSend(src, length, fromC, tag);
            while (!ep.completed(id)) await Bun.sleep(0);
          }
          expect({ form, length, any, reply: await reply.reply })
            .toEqual({ form, length, any, reply: { status: "Success", tag, fromPeer: true, sender: senderId(ep.name), length, mismatch: -1, after: -1 } });
        }
      }
    });

    test("C's to ours, in every receive form (recv, recvSync, postRecv, receive, messages), named and ANY_SOURCE: the bytes, C's tag, C as the source", async () => {
      const forms = ["recv", "recvSync", "postRecv", "receive", "messages"] as const;
      for (const [i, length] of [0, 1, limit, limit + 1, 4 * MiB].entries()) {
        for (const [f, form] of forms.entries()) {
          const seed = 100 + 10 * i + f;
          const tag = 0x20000 + i;
          const source = (i + f) % 2 === 0 ? fromC : ANY_SOURCE;
          dst.view.fill(0);
          const sent = await peer.command(`send ${tag} ${length} ${seed}`);
          let got: { source: number; tag: number; length: number };
          let view = dst.view;
          if (form === "recv") got = await ep.recv(dst, 4 * MiB, source, tag);
          else if (form === "recvSync") got = ep.recvSync(dst, 4 * MiB, source, tag);
          else if (form === "postRecv") {
            const id = ep.postRecv(dst, 4 * MiB, source, tag);
            let r: Received<number> | null;
            while ((r = ep.received(id)) === null) await Bun.sleep(0);
            got = r;
          } else {
            const message = form === "receive" ? await ep.receive(source, tag) : (await ep.messages(tag)[Symbol.asyncIterator]().next()).value!;
            got = { source: message.source, tag: message.tag, length: message.length };
            view = message.view.slice();
            message.release();
          }
          expect({ form, length, source, sent: await sent.reply, got: { source: got.source, tag: got.tag, length: got.length }, mismatch: firstMismatch(view.subarray(0, length), seed) })
            .toEqual({ form, length, source, sent: { status: "Success", sent: length }, got: { source: fromC, tag, length }, mismatch: -1 });
        }
      }
    });

    test("C probes our messages of unknown size (ucp_tag_probe_nb + ucp_tag_msg_recv_nbx)", async () => {
      for (const [i, length] of [0, limit + 1, 4 * MiB].entries()) {
        fillPattern(src.view.subarray(0, length), 200 + i);
        const probed = await peer.command(`probe ${0x30000} ${200 + i}`);
        await ep.send(src, length, fromC, 0x30000);
        expect(await probed.reply).toMatchObject({ status: "Success", tag: 0x30000, fromPeer: true, length, mismatch: -1 });
      }
    });

    test("truncation both ways: we report TRUNCATED with both lengths; C gets UCS_ERR_MESSAGE_TRUNCATED with the whole length, nothing past its buffer", async () => {
      const sent = await peer.command(`send ${0x40000} ${4 * MiB} 1`);
      const error = await ep.recv(dst, 100, fromC, 0x40000).then(() => null, (e: Error & { code?: string }) => e);
      expect(error?.code).toBe("TRUNCATED");
      expect(error?.message).toContain(`a message of ${4 * MiB} bytes is longer than the receive's 100 bytes`);
      expect((await sent.reply).status).toBe("Success");
      for (const length of [limit, 4 * MiB]) {
        const reply = await peer.command(`recv ${0x40001} 100 0 1`);
        await ep.send(src, length, fromC, 0x40001);
        expect(await reply.reply).toMatchObject({ status: "Message truncated", length, after: -1 });
      }
    });

    test("a C sender we never inserted: its messages reach ANY_SOURCE with source ANY_SOURCE (-1)", async () => {
      const stranger = await CPeer.start(path, c.transports, netDevices);
      try {
        expect((await stranger.ask(`peer ${toHex(ep.name)}`)).status).toBe("Success");
        const sent = await stranger.command(`send ${0x50000} 33 7`);
        const got = await ep.recv(dst, 64, ANY_SOURCE, 0x50000);
        expect({ source: got.source, length: got.length, mismatch: firstMismatch(dst.view.subarray(0, 33), 7) }).toEqual({ source: ANY_SOURCE, length: 33, mismatch: -1 });
        expect((await sent.reply).status).toBe("Success");
      } finally {
        expect(await stranger.stop()).toBe(0);
      }
    });

    test(`atomics: C's ${ATOMICS} ADDs interleave with our ${ATOMICS} fetchAdds on one counter (exact, distinct); C's CSWAP and get agree with our compareSwap`, async () => {
      const counter = pool.getRegion(64);
      const words = new BigUint64Array(counter.view.buffer, counter.view.byteOffset, 8);
      words.fill(0n);
      const remote = counter.remote();
      const target = `${remote.address} ${toHex(remote.keyBlob!)}`;
      const other = new UcxEndpoint(provider, { timeoutMs: 20_000 });
      try {
        const toEp = other.insert(ep.name);
        const theirs = await peer.command(`fadd ${target} ${ATOMICS} 1`);
        const ours: bigint[] = [];
        for (let i = 0; i < ATOMICS; i++) {
          ours.push(i % 2 === 0 ? other.fetchAddSync(toEp, remote, 1n) : await other.fetchAdd(toEp, remote, 1n));
        }
        const reply = await theirs.reply as CReply & { fetched: string[] };
        expect(reply.status).toBe("Success");
        const all = [...ours.map(Number), ...reply.fetched.map(Number)];
        expect(new Set(all).size).toBe(2 * ATOMICS);
        expect([Math.min(...all), Math.max(...all)]).toEqual([0, 2 * ATOMICS - 1]);
        expect(words[0]).toBe(BigInt(2 * ATOMICS));
        expect(await peer.ask(`get ${target}`)).toEqual({ status: "Success", value: String(2 * ATOMICS) });
        // C's CSWAP (compare in its buffer, the value to swap in its reply buffer) and ours on the same word.
        expect(await peer.ask(`cswap ${target} ${2 * ATOMICS} 7`)).toEqual({ status: "Success", found: String(2 * ATOMICS) });
        expect(words[0]).toBe(7n);
        expect(other.compareSwapSync(toEp, remote, 7, 9)).toBe(7n);
        expect(await peer.ask(`cswap ${target} 8 1`)).toEqual({ status: "Success", found: "9" });
        expect(await peer.ask(`get ${target}`)).toEqual({ status: "Success", value: "9" });
        expect(words[1]).toBe(0n);
      } finally {
        other.close();
        pool.releaseRegion(counter);
      }
    });
  });
}
