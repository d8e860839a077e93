// The bare bun:ffi baseline of registration, shared by the rma suite and its one-provider child:
// the domain's fi_mr_reg and the fid_mr's fi_close as two CFunctions resolved once, a constant
// requested key (each registration is closed before the next), u64 arguments passed as numbers
// (the cheapest bun:ffi call). Nothing of the library's own code runs in it.
import { CFunction, FFIType, read, type Pointer } from "bun:ffi";
import { libfabric } from "../ffi/libfabric.ts";
import { L } from "../ffi/layout.ts";

/** FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE: what the benches register with. */
export const REGISTRATION_ACCESS = 0x100 | 0x200 | 0x1000 | 0x2000;

/** fi_mr_reg + fi_close of `bytes` at `address` in `domain`, through bun:ffi and nothing else. */
export function bareRegistration(domain: number, address: number): (bytes: number) => void {
  const reg = CFunction({
    ptr: read.ptr(read.ptr(domain as Pointer, L.fid_domain.mr) as Pointer, L.fi_ops_mr.reg) as Pointer, returns: FFIType.i32,
    // fid_domain*, void *buf, size_t len, uint64_t access, offset, requested_key, flags, fid_mr**, void *context
    args: [FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.ptr, FFIType.ptr],
  });
  const fi = libfabric();
  const probe = fi.mrReg(domain, address, 4096, REGISTRATION_ACCESS, 0n, 1n << 40n, 0);
  const close = CFunction({ ptr: read.ptr(read.ptr(probe as Pointer, L.fid.ops) as Pointer, L.fi_ops.close) as Pointer, args: [FFIType.ptr], returns: FFIType.i32 });
  fi.close(probe);
  const out = new BigUint64Array(1);
  const outWords = new Uint32Array(out.buffer);
  const key = 2 ** 40 + 1;
  return (bytes) => {
    reg(domain, address, bytes, REGISTRATION_ACCESS, 0, key, 0, out, null);
    close(outWords[0]! + outWords[1]! * 0x1_0000_0000);
  };
}
