// Baselines that give the pool's figures a scale: the cheapest JS container operation, a fresh
// (unregistered, unpinned) buffer, and the floor of any call into C through bun:ffi.
import { dlopen, FFIType } from "bun:ffi";
import { bench, do_not_optimize, group } from "mitata";
import type { Suite } from "../context.ts";

export const baselineNames = {
  popPush: "array pop+push",
  u8: (label: string) => `new Uint8Array(${label})`,
  ffi: "bun:ffi call getpagesize()",
};

const suite: Suite = {
  name: "baselines",
  setup() {
    // getpagesize() reads a libc global: no system call, so this is the FFI crossing alone.
    const libc = dlopen(process.platform === "darwin" ? "libc.dylib" : "libc.so.6", {
      getpagesize: { args: [], returns: FFIType.i32 },
    });
    const getpagesize = libc.symbols.getpagesize;
    group("baselines", () => {
      bench(baselineNames.popPush, function* () {
        const stack = Array.from({ length: 16 }, (_, i) => i);
        yield () => stack.push(stack.pop()!);
      });
      for (const [label, n] of [["64", 64], ["4096", 4096], ["1 MiB", 1 << 20]] as const) {
        bench(baselineNames.u8(label), () => do_not_optimize(new Uint8Array(n)));
      }
      bench(baselineNames.ffi, () => do_not_optimize(getpagesize()));
    });
    return () => libc.close();
  },
};
export default suite;
