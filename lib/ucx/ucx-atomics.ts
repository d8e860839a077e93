// Remote atomics on 64-bit words over UCX (ucp_atomic_op_nbx), for UcxTransport.
//
// The engine gives each atomic a cell of three words at op.local: the operand, the value to
// compare with, and the result. UCX's operands (ucp.h, "Atomic Operations Semantic"):
// - UCP_ATOMIC_OP_ADD: buffer = the value to add (the operand word); reply_buffer receives the
//   value found.
// - UCP_ATOMIC_OP_CSWAP: buffer = the value to compare with; reply_buffer holds the value to swap
//   in when posted and receives the value found. So the operand (the desired value) is copied
//   into the result word first, and buffer is the compare word.
// The context is opened with UCP_FEATURE_AMO64, datatype ucp_dt_make_contig(8), count 1.
//
// An atomic completes when its fetched value has arrived: the operation was done at the target
// (remote completion). Where UCX executes it:
// - shared memory (posix, sysv) with UCX-allocated memory: the initiator's CPU, with locked
//   instructions, on the target's segment mapped here (one-sided: the target need not progress;
//   UCX often completes it at once).
// - tcp, and shared memory with memory UCX did not allocate: emulated in software by the target,
//   with the same locked instructions, when it progresses its worker (an active message there,
//   the reply back).
// Either way it is atomic against every other UCX atomic on the word and against the target's
// own atomic instructions (Atomics.add on a BigInt64Array view, C11 atomics), not against its
// plain stores.
import type { Pointer } from "bun:ffi";
import { ptr } from "bun:ffi";
import { isStatusError, UCX, ucxLayout, type Ucx } from "../../ffi/ucx.ts";
import * as libc from "../../ffi/libc.ts";
import { AllocToolsError } from "../errors.ts";
import { COMPARE_OFFSET, RESULT_OFFSET } from "../engine/atomic-scratch.ts";
import type { Operation } from "../engine/operation.ts";
import { Posted } from "../engine/transport.ts";

const PARAM = ucxLayout.ucp_request_param_t.fields;
const TWO_TO_32 = 4294967296;

/** fetchAdd and compareSwap on one worker's eps. */
export class UcxAtomics {
  private readonly ucx: Ucx;
  private readonly raw: Ucx["raw"];
  private readonly providerName: string;
  /** ucp_request_param_t: DATATYPE (one 64-bit word) and REPLY_BUFFER, written per operation. Its own ArrayBuffer: the address stays valid. */
  private readonly param = new Uint32Array(new ArrayBuffer(ucxLayout.ucp_request_param_t.size));
  private readonly paramAddress: number;

  constructor(ucx: Ucx, providerName: string) {
    this.ucx = ucx;
    this.raw = ucx.raw;
    this.providerName = providerName;
    this.param[PARAM.op_attr_mask / 4] = UCX.OP_ATTR_FIELD_DATATYPE | UCX.OP_ATTR_FIELD_REPLY_BUFFER;
    this.param[PARAM.datatype / 4] = UCX.DATATYPE_CONTIG_8;
    this.paramAddress = ptr(this.param);
  }

  /** ucp_atomic_op_nbx of a fetchAdd (ADD) or compareSwap (CSWAP) on the operation's remote word. */
  post(op: Operation, ep: number): Posted {
    const reply = op.local + RESULT_OFFSET;
    this.param[PARAM.reply_buffer / 4] = reply >>> 0;
    this.param[PARAM.reply_buffer / 4 + 1] = Math.floor(reply / TWO_TO_32);
    let opcode: number = UCX.ATOMIC_OP_ADD;
    let operand = op.local;
    if (op.kind === "compareSwap") {
      libc.memcpy(reply, op.local, 8); // the value to swap in goes in the reply buffer
      opcode = UCX.ATOMIC_OP_CSWAP;
      operand = op.local + COMPARE_OFFSET;
    }
    const posted = this.raw.ucp_atomic_op_nbx(ep as Pointer, opcode, operand as Pointer, 1, op.remoteAddress, op.remoteHandle as Pointer,
      this.paramAddress as Pointer) as number;
    if (posted === 0) return Posted.DONE;
    if (isStatusError(posted)) {
      op.error = this.error(op, posted);
      return Posted.FAILED;
    }
    op.request = posted;
    return Posted.POSTED;
  }

  /** The error of an atomic UCX failed with `status`: NOT_SUPPORTED where UCX has no such atomic. */
  error(op: Operation, status: number): Error {
    const cause = this.ucx.error("ucp_atomic_op_nbx", status, describe(op));
    if (status !== UCX.ERR_UNSUPPORTED && status !== UCX.ERR_NOT_IMPLEMENTED) return cause;
    return new AllocToolsError("NOT_SUPPORTED", `${op.kind}: UCX (provider ${this.providerName}) has no 64-bit ${op.kind === "fetchAdd" ? "fetch-and-add" : "compare-and-swap"} to this peer: ${cause.message}`, { cause });
  }
}

function describe(op: Operation): string {
  return `${op.kind} on the 64-bit word at remote 0x${op.remoteAddress.toString(16)}`;
}
