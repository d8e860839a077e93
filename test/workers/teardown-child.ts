// Issue 25 #2 in a process of its own: the owner closes its provider while a Worker's endpoint on
// the same domain is open. argv[2] "terminated": the Worker was terminate()d without closing it
// (the owner closes it: its thread is gone). "running": the Worker still runs (one error naming
// it, then a second close once the Worker has closed its endpoint). Prints what happened as JSON.
import { Endpoint, LibfabricProvider, MemoryPool } from "../../lib/index.ts";

declare const self: Worker;
const mode = process.argv[2] ?? "terminated";

if (Bun.isMainThread) {
  const provider = LibfabricProvider.open({ provider: process.argv[3] ?? "tcp", node: process.argv[3] === "shm" ? undefined : "127.0.0.1" });
  const pool = new MemoryPool(provider);
  const worker = new Worker(import.meta.url, { argv: [mode] });
  const replies: string[] = [];
  const reply = () => new Promise<string>((resolve) => (worker.onmessage = ({ data }) => resolve(data as string)));
  let next = reply();
  worker.postMessage({ op: "open", handle: pool.share() });
  replies.push(await next);
  const outcome: Record<string, unknown> = { worker: replies[0] };
  if (mode === "terminated") {
    await new Promise((resolve) => {
      worker.addEventListener("close", resolve, { once: true });
      worker.terminate();
    });
  }
  pool.close();
  try {
    provider.close();
    outcome.firstClose = "closed";
  } catch (e) {
    outcome.firstClose = `${(e as Error).name} ${(e as { code?: string }).code ?? ""}: ${(e as Error).message}`;
  }
  if (mode === "running") {
    next = reply();
    worker.postMessage({ op: "close" });
    outcome.workerClosed = await next;
    try {
      provider.close();
      outcome.secondClose = "closed";
    } catch (e) {
      outcome.secondClose = `${(e as Error).name}: ${(e as Error).message}`;
    }
    worker.terminate();
  }
  console.log(JSON.stringify(outcome));
} else {
  let endpoint: Endpoint | null = null;
  let pool: MemoryPool | null = null;
  self.onmessage = ({ data }: MessageEvent<{ op: string; handle?: ReturnType<MemoryPool["share"]> }>) => {
    if (data.op === "open") {
      pool = MemoryPool.attach(data.handle!);
      endpoint = new Endpoint(pool.provider as LibfabricProvider);
      self.postMessage("endpoint open");
    } else {
      endpoint?.close();
      pool?.close();
      self.postMessage("endpoint closed");
    }
  };
}
