// A Worker with its own Endpoint on the shared pool's provider view: it exchanges tagged messages
// with other Workers and with another process, receives into regions of the shared pool
// (receive() takes them there too), and does remote atomics on another process's counter.
import {
  ANY_SOURCE, Endpoint, MemoryPool, RemoteRegion, type LibfabricProvider, type PeerAddress, type SharedPoolHandle,
} from "../../lib/index.ts";
import { fillPattern, firstMismatch, fromHex, toHex } from "../rma/pattern.ts";

declare const self: Worker;

export type MessageWorkerCommand =
  | { cmd: "open"; handle: SharedPoolHandle; id: number }
  | { cmd: "ring"; next: string; previous: string; agent: string; rounds: number; sizes: number[] }
  | { cmd: "fetchAdd"; agent: string; remote: string; count: number; window: number }
  | { cmd: "close" };

let pool: MemoryPool;
let endpoint: Endpoint;
let id = 0;

/** Rounds of: a message to the next Worker, one from the previous (receive() and recv() by turns), one to and one from the agent. */
async function ring(next: string, previous: string, agent: string, rounds: number, sizes: number[]): Promise<{ errors: string[]; received: number; fromSharedPool: number }> {
  const [toNext, fromPrevious, toAgent] = [next, previous, agent].map((name) => endpoint.insert(fromHex(name))) as [PeerAddress, PeerAddress, PeerAddress];
  const errors: string[] = [];
  let received = 0;
  let fromSharedPool = 0;
  const largest = Math.max(...sizes);
  const source = pool.getRegion(largest);
  const sink = pool.getRegion(largest);
  try {
    for (let round = 0; round < rounds && errors.length < 5; round++) {
      const size = sizes[round % sizes.length]!;
      fillPattern(source.view.subarray(0, size), id * 1000 + round);
      const sent = endpoint.send(source, size, toNext, 300 + id);
      const seed = ((id + 3) % 4) * 1000 + round;
      if (round % 2 === 0) {
        using message = await endpoint.receive(fromPrevious, 300 + (id + 3) % 4);
        if (pool.indexOf(message.region) >= 0) fromSharedPool++;
        if (message.length !== size || firstMismatch(message.view, seed) !== -1) errors.push(`worker ${id} round ${round}: receive() got ${message.length} bytes, wrong`);
      } else {
        const got = await endpoint.recv(sink, largest, fromPrevious, 300 + (id + 3) % 4);
        if (got.source !== fromPrevious || got.length !== size || firstMismatch(sink.view.subarray(0, size), seed) !== -1) errors.push(`worker ${id} round ${round}: recv() got ${got.length} bytes from ${got.source}, wrong`);
      }
      await sent;
      received++;
      // The agent: one message there (tag 400 + id), one back (tag 500 + id), received from ANY_SOURCE.
      fillPattern(source.view.subarray(0, size), 7000 + id * 100 + round);
      await endpoint.send(source, size, toAgent, 400 + id);
      const back = await endpoint.recv(sink, largest, ANY_SOURCE, 500 + id);
      if (back.source !== toAgent || firstMismatch(sink.view.subarray(0, back.length), 9000 + id * 100 + round) !== -1) errors.push(`worker ${id} round ${round}: the agent's message is wrong (${back.length} bytes from ${back.source})`);
      received++;
    }
  } catch (e) {
    errors.push(`worker ${id}: ${(e as Error).name}: ${(e as Error).message}`);
  } finally {
    pool.releaseRegion(source);
    pool.releaseRegion(sink);
  }
  return { errors, received, fromSharedPool };
}

/** `count` fetchAdd(1) on the agent's counter, `window` posted at a time; the values fetched. */
async function fetchAdds(agent: string, remoteHex: string, count: number, window: number): Promise<number[]> {
  const peer = endpoint.insert(fromHex(agent));
  const remote = RemoteRegion.fromBytes(fromHex(remoteHex)).subregion(0, 8);
  const values: number[] = [];
  const inFlight: number[] = [];
  let posted = 0;
  while (values.length < count) {
    while (posted < count && inFlight.length < window) { inFlight.push(endpoint.postFetchAdd(peer, remote, 1)); posted++; }
    endpoint.poll();
    for (let i = inFlight.length - 1; i >= 0; i--) {
      const value = endpoint.fetched(inFlight[i]!);
      if (value !== null) { values.push(Number(value)); inFlight.splice(i, 1); }
    }
    await Bun.sleep(0);
  }
  return values;
}

self.onmessage = async (event: MessageEvent<MessageWorkerCommand>) => {
  const m = event.data;
  try {
    switch (m.cmd) {
      case "open":
        id = m.id;
        pool = MemoryPool.attach(m.handle);
        endpoint = new Endpoint(pool.provider as LibfabricProvider, { timeoutMs: 20_000, pool });
        endpoint.startProgress(1);
        postMessage({ ok: true, name: toHex(endpoint.name), sameDomain: (pool.provider as LibfabricProvider).handles.domain });
        break;
      case "ring":
        postMessage({ ok: true, ...(await ring(m.next, m.previous, m.agent, m.rounds, m.sizes)) });
        break;
      case "fetchAdd":
        postMessage({ ok: true, values: await fetchAdds(m.agent, m.remote, m.count, m.window) });
        break;
      case "close": {
        endpoint.close();
        postMessage({ ok: true, leaked: pool.close().count });
        break;
      }
    }
  } catch (e) {
    postMessage({ ok: false, error: `${(e as Error).name}: ${(e as Error).message}`, code: (e as { code?: string }).code });
  }
};
