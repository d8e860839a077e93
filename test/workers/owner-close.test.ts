// The owner of a shared pool closes it while its Workers still use it (issue 21, defect 4): a
// Worker's views never dangle (fresh zero pages or its own bytes, never a signal) and its later
// use of the pool is POOL_CLOSED; a Worker's RMA in flight makes the owner's close BUSY, the pool
// open and serving; a Worker beginning RMA, a temporary or user region, or an attach while the
// owner closes ends with a typed error. Each case runs in a child process (a signal there is a
// failure here), several rounds each (ALLOCTOOLS_OWNER_CLOSE_ROUNDS).
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { describeFabric, describeUcx } from "../helpers.ts";

setDefaultTimeout(120_000);

const ROUNDS = Number(process.env.ALLOCTOOLS_OWNER_CLOSE_ROUNDS ?? 4);

type Round = Record<string, unknown> & { touched?: Record<string, unknown> };
interface ChildResult {
  rounds: Round[];
  baseline: number;
  lockedAfterRounds: number;
  providerError: string | null;
}

/** Runs owner-close-child.ts; a signal or an exception there fails with its stderr. */
function runChild(scenario: string, provider: string, rounds = ROUNDS): ChildResult {
  const r = Bun.spawnSync([process.execPath, `${import.meta.dir}/owner-close-child.ts`, scenario, provider, String(rounds)], {
    stdout: "pipe", stderr: "pipe", timeout: 110_000,
  });
  const stderr = r.stderr.toString();
  if (r.exitCode !== 0 || r.signalCode !== undefined) {
    throw new Error(`owner-close-child.ts ${scenario} ${provider} ended with ${r.signalCode ?? `exit ${r.exitCode}`}: ${stderr.slice(-2000)}`);
  }
  const result = JSON.parse(r.stdout.toString().trim().split("\n").at(-1)!) as ChildResult;
  expect(result.rounds.length).toBe(rounds);
  expect(result.providerError).toBeNull(); // nothing left registered: the domain closes
  expect(result.lockedAfterRounds).toBe(result.baseline); // VmLck: nothing stays pinned
  return result;
}

function views(provider: string): void {
  test(`a Worker's views of pooled (the owner's blocks and its own), temporary and user regions after the owner's close: no signal, POOL_CLOSED [${provider}]`, () => {
    for (const round of runChild("views", provider).rounds) {
      expect(round.reported).toBe(10); // 2 regions of each of 4 classes, a temporary and a user region
      const touched = round.touched!;
      // Pooled and temporary regions read fresh zero pages (or, for a provider's kept block, their own bytes); the user region is the Worker's memory.
      for (const content of touched.contents as string[]) expect(["zeros", "own"]).toContain(content);
      expect((touched.contents as string[]).at(-1)).toBe("own");
      expect(touched.rewritten).toBe(true);
      expect(touched.closed).toBe(true);
      for (const use of ["get", "temporary", "register", "region", "release", "releaseTemporary"]) expect(`${use}: ${touched[use]}`).toBe(`${use}: POOL_CLOSED`);
      expect(round.leaked).toBe(2); // the Worker's own detach reports its temporary and user region
    }
  });
}

function busy(provider: string): void {
  test(`the owner's close while a Worker's reads are in flight (pooled, temporary, user): BUSY, the pool keeps serving, the reads land [${provider}]`, () => {
    for (const round of runChild("busy", provider).rounds) {
      expect(round.inFlight).toEqual([1, 1, 1]);
      const error = round.closeError as { code: string; message: string } | null;
      expect(error?.code).toBe("BUSY");
      expect(error?.message).toContain("3 region(s) still have 3 RMA operation(s) in flight");
      expect(round.stillOpen).toBe(true);
      expect(round.ownerServes).toBe(true);
      expect(round.workerServes).toBe(4);
      const reads = round.reads as { outcomes: string[]; bytes: number[]; released: string[] };
      expect(reads.outcomes).toEqual(["done", "done", "done"]);
      expect(reads.bytes).toEqual([0x5a, 0x5a, 0x5a]); // the target's bytes, in memory still mapped
      expect(reads.released).toEqual(["none", "none", "none"]);
      expect(round.leaked).toEqual([0, 0]);
      expect(round.reported).toBe(0); // closed afterwards, nothing held
    }
  });
}

function race(provider: string): void {
  test(`a Worker doing RMA as fast as it can while the owner closes (BUSY retried): only POOL_CLOSED, never a signal [${provider}]`, () => {
    for (const round of runChild("race", provider).rounds) {
      expect(round.closed).toBe(true);
      expect(round.otherErrors).toEqual([]);
      const failures = round.failures as Record<string, number>;
      expect(failures.POOL_CLOSED).toBe(1); // the Worker's first refusal, after which it stops
      for (const code of Object.keys(failures)) expect(["POOL_CLOSED", "release:POOL_CLOSED"]).toContain(code);
    }
  });
}

function unpooled(provider: string): void {
  test(`Workers making temporary and user regions, and attaching, while the owner closes: POOL_CLOSED, nothing dangling or left registered [${provider}]`, () => {
    for (const round of runChild("unpooled", provider).rounds) {
      const churn = round.churn as { failures: Record<string, number>; kept: number; leaked: number };
      expect(churn.failures).toEqual({ POOL_CLOSED: 1 });
      expect(churn.leaked).toBeGreaterThanOrEqual(churn.kept);
      const reattach = round.reattach as { refusal: string; attaches: number; failures: Record<string, number> };
      expect(reattach.refusal).toBe("POOL_CLOSED");
      expect(reattach.attaches).toBeGreaterThan(0);
      for (const code of Object.keys(reattach.failures)) expect(["POOL_CLOSED", "region:POOL_CLOSED"]).toContain(code);
    }
  });
}

describe("the owner closes under its Workers [host]", () => {
  views("host");
  unpooled("host");
});
for (const provider of ["tcp", "shm"]) {
  describeFabric(`the owner closes under its Workers [${provider}]`, () => {
    views(provider);
    busy(provider);
    race(provider);
    unpooled(provider);
  });
}
describeUcx("the owner closes under its Workers [ucx tcp]", () => {
  views("ucx-tcp");
  busy("ucx-tcp");
  race("ucx-tcp");
  unpooled("ucx-tcp");
});
// posix,cma: the blocks are UCX's own, kept allocated while a Worker may hold views. Its reads are
// one-sided (a stalled target does not hold them in flight), so the BUSY case runs on tcp only.
describeUcx("the owner closes under its Workers [ucx posix,cma]", () => {
  views("ucx-shm");
  race("ucx-shm");
  unpooled("ucx-shm");
});
