// Remote atomics on a libfabric endpoint (FI_ATOMIC), for LibfabricTransport: fetchAdd is
// fi_fetch_atomic(FI_SUM, FI_UINT64) and compareSwap fi_compare_atomic(FI_CSWAP, FI_UINT64), one
// element each, on the engine's per-slot cell: operand at op.local, compare at op.local + 8, the
// value found written by the provider into op.local + 16 before the completion.
//
// Support is checked once, at endpoint open: the domain must have been granted FI_ATOMIC, the
// endpoint must have both calls, and fi_fetch_atomicvalid / fi_compare_atomicvalid must accept
// (FI_UINT64, FI_SUM) and (FI_UINT64, FI_CSWAP). Anything else makes `reason` say why, naming the
// provider, and the engine refuses the operations (NOT_SUPPORTED): never a wrong answer.
//
// ofi_rxd (udp;ofi_rxd here) is refused by name: it applies fi_fetch_atomic and fi_compare_atomic
// at the target but never fetches (rxd_do_atomic runs the write handler for FI_SUM and drops the
// swap handler's result), so the value reported is not the value found; libfabric 1.17 also
// crashed this process after a few of them. Its valid calls say yes all the same.
//
// The cells are not registered memory: a provider that needs local buffers registered
// (FI_MR_LOCAL, verbs and others) is refused for that reason rather than handed an unregistered
// buffer. The endpoint's default FI_DELIVERY_COMPLETE (op_flags, for RMA writes) applies to atomics
// too; a fetching atomic cannot complete before its result came back from the target anyway
// (rxm and shm complete it on the target's response), so it changes nothing here.
import type { AtomicOps } from "../../ffi/libfabric.ts";
import { FI } from "../../ffi/layout.ts";
import { FabricError } from "../errors.ts";
import type { Operation } from "../engine/operation.ts";
import { COMPARE_OFFSET, RESULT_OFFSET } from "../engine/atomic-scratch.ts";
import { Posted } from "../engine/transport.ts";

/** What the domain must have been granted, and how it is told. */
export interface AtomicSupport {
  readonly providerName: string;
  /** fi_info->caps of the domain. */
  readonly caps: bigint;
  /** domain_attr->mr_mode. */
  readonly mrMode: number;
}

/** fetchAdd and compareSwap of one endpoint. */
export class RemoteAtomics {
  private readonly ops: AtomicOps;
  private readonly ep: number;
  private readonly strerror: (errno: number) => string;

  private constructor(ops: AtomicOps, ep: number, strerror: (errno: number) => string) {
    this.ops = ops;
    this.ep = ep;
    this.strerror = strerror;
  }

  /**
   * The atomics of `ep`, or why there are none (a string naming the provider): see the file header.
   */
  static open(ops: AtomicOps | null, ep: number, support: AtomicSupport, strerror: (errno: number) => string): RemoteAtomics | string {
    const name = support.providerName;
    if ((support.caps & FI.ATOMIC) === 0n) return `provider ${name} was opened without remote atomics (FI_ATOMIC not granted)`;
    if ((support.mrMode & FI.MR_LOCAL) !== 0) {
      return `provider ${name} needs registered local buffers for atomics (FI_MR_LOCAL), which alloctools' atomic cells are not`;
    }
    if (ops === null) return `provider ${name} has no fi_fetch_atomic / fi_compare_atomic on its endpoints`;
    if (name.split(";").includes("ofi_rxd")) {
      return `provider ${name}: ofi_rxd applies fetching atomics without returning the value found (rxd_do_atomic), so they are refused`;
    }
    const fetch = ops.fetchValid(FI.UINT64, FI.SUM);
    if (fetch <= 0) return `provider ${name} does not take fi_fetch_atomic(FI_SUM, FI_UINT64): fi_fetch_atomicvalid answered ${describe(fetch, strerror)}`;
    const compare = ops.compareValid(FI.UINT64, FI.CSWAP);
    if (compare <= 0) return `provider ${name} does not take fi_compare_atomic(FI_CSWAP, FI_UINT64): fi_compare_atomicvalid answered ${describe(compare, strerror)}`;
    return new RemoteAtomics(ops, ep, strerror);
  }

  /** Posts a fetchAdd or compareSwap with the operation's id as context. */
  post(op: Operation): Posted {
    const cell = op.local;
    const ret = (op.kind === "fetchAdd"
      ? this.ops.fetch(this.ep, cell, 1, 0, cell + RESULT_OFFSET, 0, op.peer, op.remoteAddress, op.key, FI.UINT64, FI.SUM, op.id)
      : this.ops.compare(this.ep, cell, 1, 0, cell + COMPARE_OFFSET, 0, cell + RESULT_OFFSET, 0, op.peer, op.remoteAddress, op.key,
        FI.UINT64, FI.CSWAP, op.id)) as number;
    if (ret === 0) return Posted.POSTED;
    if (ret === -FI.EAGAIN) return Posted.RETRY;
    const fn = op.kind === "fetchAdd" ? "fi_fetch_atomic" : "fi_compare_atomic";
    op.error = new FabricError(fn, -ret, this.strerror(-ret), `${op.kind} of the 64-bit word at remote 0x${op.remoteAddress.toString(16)} key ${String(op.key)}`);
    return Posted.FAILED;
  }
}

function describe(ret: number, strerror: (errno: number) => string): string {
  return ret === 0 ? "a count of 0" : `${strerror(-ret)} (${ret})`;
}
