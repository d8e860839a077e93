// A ring of 3 and 4 Bun processes over libfabric tcp (tcp;ofi_rxm): every rank writes stamped
// messages into the next rank's pooled region and reads them back (promise form, then sync form)
// while the previous rank writes into its own, so every process is initiator and target at once.
// Every write must complete: on the progress engine that decided the next turn from the state
// before it, a rank that had completed its own operations stopped progressing as a target, and
// the previous rank's write ended in RmaTimeoutError (every run of 3 ranks failed).
import { afterEach, expect, test } from "bun:test";
import { describeFabric } from "../helpers.ts";
import { AgentProcess } from "./peers.ts";

const RING_PEER = `${import.meta.dir}/ring-peer.ts`;
const MESSAGES = 6;

type RingReply = { ok?: boolean; failures?: string[]; wrong?: number[]; error?: { message: string } };

let ranks: AgentProcess[] = [];
afterEach(async () => {
  await Promise.all(ranks.map((rank) => rank.stop()));
  ranks = [];
});

async function runRing(size: number, insertSelf: boolean): Promise<void> {
  const args = ["--provider", "tcp", "--node", "127.0.0.1", "--timeout", "2000", "--interval", "1"];
  ranks = await Promise.all(Array.from({ length: size }, () => AgentProcess.start(args, undefined, 15_000, RING_PEER)));
  const names = ranks.map((r) => r.ready.name);
  const remotes = ranks.map((r) => (r.ready as unknown as { remote: string }).remote);
  const common = { names, remotes, messages: MESSAGES, insertSelf };
  const rings = (await Promise.all(ranks.map((r, rank) => r.request({ op: "ring", rank, ...common })))) as RingReply[];
  expect(rings.map((r) => r.failures ?? r.error?.message)).toEqual(rings.map(() => []));
  // Every rank is done writing: each inbox holds all of the previous rank's messages.
  const checks = (await Promise.all(ranks.map((r, rank) => r.request({ op: "check", rank, ...common })))) as RingReply[];
  expect(checks.map((r) => r.wrong ?? r.error?.message)).toEqual(checks.map(() => []));
}

describeFabric("RMA around a ring of processes [tcp]", () => {
  test("3 ranks, every other rank inserted: every write completes and lands", () => runRing(3, false), 20_000);
  test("4 ranks, each also inserting its own name: every write completes and lands", () => runRing(4, true), 20_000);
});
