// A target that only exposes memory and never asks for progress: prints its endpoint name and a
// region, then waits (with a timer of its own) until the region's first byte is written or 5 s
// pass. argv[2]: the endpoint's `progress` option ("auto" or "manual"); argv[3]: "idle" opens the
// endpoint and does nothing (the process must then exit by itself).
import { Endpoint, LibfabricProvider, MemoryPool } from "../../lib/index.ts";

const progress = process.argv[2] === "manual" ? "manual" : "auto";
const provider = LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" });
const pool = new MemoryPool(provider);
const endpoint = new Endpoint(provider, { progress });
if (process.argv[3] !== "idle") {
  const region = pool.getRegion(64);
  region.view.fill(0);
  console.log(JSON.stringify({ name: endpoint.nameString, remote: region.remote().toString() }));
  const started = performance.now();
  const check = setInterval(() => {
    if (region.view[0] !== 0 || performance.now() - started > 5000) {
      clearInterval(check);
      console.log(JSON.stringify({ written: region.view[0] }));
    }
  }, 5);
}
