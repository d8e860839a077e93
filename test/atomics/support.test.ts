// When an endpoint has remote atomics (lib/libfabric/libfabric-atomics.ts RemoteAtomics.open),
// with a stand-in for the provider's atomic ops table: each reason names the provider, and only
// a provider that passes every check gets atomics. The real providers are in-process.test.ts.
import { expect, test } from "bun:test";
import type { AtomicOps } from "../../ffi/libfabric.ts";
import { FI } from "../../ffi/layout.ts";
import { RemoteAtomics } from "../../lib/libfabric/libfabric-atomics.ts";

/** An ops table whose valid calls answer `fetch` and `compare` (a count, or a negative errno). */
function opsAnswering(fetch: number, compare: number): AtomicOps & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    fetch: () => 0,
    compare: () => 0,
    fetchValid: (datatype, op) => { asked.push(`fetch ${datatype} ${op}`); return fetch; },
    compareValid: (datatype, op) => { asked.push(`compare ${datatype} ${op}`); return compare; },
  };
}

const strerror = (errno: number) => (errno === FI.ENOSYS ? "Function not implemented" : `errno ${errno}`);
const supported = { providerName: "verbs;ofi_rxm", caps: FI.ATOMIC | FI.RMA, mrMode: 0 };

test("a provider that passes every check gets atomics; the valid calls are asked for (FI_UINT64, FI_SUM) and (FI_UINT64, FI_CSWAP)", () => {
  const ops = opsAnswering(1, 1);
  expect(RemoteAtomics.open(ops, 1, supported, strerror)).toBeInstanceOf(RemoteAtomics);
  expect(ops.asked).toEqual([`fetch ${FI.UINT64} ${FI.SUM}`, `compare ${FI.UINT64} ${FI.CSWAP}`]);
});

test("each missing piece is a reason naming the provider: FI_ATOMIC not granted, FI_MR_LOCAL, no ops table, ofi_rxd, the valid calls saying no", () => {
  const reasons = [
    RemoteAtomics.open(opsAnswering(1, 1), 1, { ...supported, caps: FI.RMA }, strerror),
    RemoteAtomics.open(opsAnswering(1, 1), 1, { ...supported, mrMode: FI.MR_LOCAL }, strerror),
    RemoteAtomics.open(null, 1, supported, strerror),
    RemoteAtomics.open(opsAnswering(1, 1), 1, { ...supported, providerName: "udp;ofi_rxd" }, strerror),
    RemoteAtomics.open(opsAnswering(-FI.ENOSYS, 1), 1, supported, strerror),
    RemoteAtomics.open(opsAnswering(1, 0), 1, supported, strerror),
  ];
  for (const reason of reasons) expect(typeof reason).toBe("string");
  const [caps, local, table, rxd, fetch, compare] = reasons as string[];
  expect(caps).toMatch(/verbs;ofi_rxm .*FI_ATOMIC/);
  expect(local).toMatch(/verbs;ofi_rxm .*FI_MR_LOCAL/);
  expect(table).toMatch(/verbs;ofi_rxm .*fi_fetch_atomic/);
  expect(rxd).toMatch(/udp;ofi_rxd.*value found/);
  expect(fetch).toMatch(/verbs;ofi_rxm .*fi_fetch_atomicvalid answered Function not implemented/);
  expect(compare).toMatch(/verbs;ofi_rxm .*fi_compare_atomicvalid answered a count of 0/);
});
