// RMA between two endpoints of this process (examples/rma-pingpong.ts): delivered one-way latency
// and windowed bandwidth, with each message's local memory from the pool or registered per message.
// Custom measurements (async, on the event loop), recorded as figures; no mitata benches.
import { rmaPingPong, type Row } from "../../examples/rma-pingpong.ts";
import type { BenchContext, Suite } from "../context.ts";

const SUITE = "rma";
const PROVIDERS = ["tcp", "shm"] as const;

function label(r: Row): string {
  const size = r.bytes >= 1 << 20 ? `${r.bytes >> 20} MiB` : r.bytes >= 1024 ? `${r.bytes >> 10} KiB` : `${r.bytes} B`;
  return `${r.test} ${size} ${r.memory}`;
}

const suite: Suite = {
  name: SUITE,
  async setup(ctx: BenchContext) {
    if (!ctx.fabric) {
      ctx.provider({ suite: SUITE, label: "rma", description: "libfabric not available: RMA suite skipped" });
      return;
    }
    const sizes = ctx.quick ? [64, 65_536, 1 << 20] : [1, 64, 4096, 65_536, 1 << 20, 4 << 20];
    for (const provider of PROVIDERS) {
      let result;
      try {
        result = await rmaPingPong({ provider, sizes, quick: ctx.quick, window: 16 });
      } catch (e) {
        if (process.env.ALLOCTOOLS_REQUIRE_LIBFABRIC === "1") throw e;
        ctx.provider({ suite: SUITE, label: provider, description: `not available, skipped: ${(e as Error).message}` });
        continue;
      }
      ctx.provider({ suite: SUITE, label: provider, description: `two endpoints in one process over ${result.description}` });
      for (const r of result.rows) {
        if (r.test === "pingpong") {
          ctx.record({ suite: SUITE, name: `${provider} ${label(r)} latency`, value: r.usecPerXfer * 1000, unit: "ns", note: `${r.iterations} transfers` });
        }
        if (r.test === "bandwidth") {
          ctx.record({ suite: SUITE, name: `${provider} ${label(r)} bandwidth`, value: r.mbPerSec, unit: "MB/s", note: `window 16, ${r.iterations} writes` });
        }
      }
    }
  },
};
export default suite;
