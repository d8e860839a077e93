// Races the owner for the blocks of a UcxSharedContext: takes every address it is given, and
// retains and releases the context many times; reports which addresses it got.
import { UcxSharedContext } from "../../lib/ucx/ucx-shared-context.ts";

declare const self: Worker;

self.onmessage = (event: MessageEvent<{ buffer: SharedArrayBuffer; addresses: number[]; start: SharedArrayBuffer; cycles: number }>) => {
  const { buffer, addresses, start, cycles } = event.data;
  const shared = new UcxSharedContext(buffer);
  const gate = new Int32Array(start);
  Atomics.add(gate, 0, 1);
  while (Atomics.load(gate, 1) === 0) { /* everyone starts together */ }
  const taken: number[] = [];
  let cleanups = 0;
  for (const address of addresses) {
    if (shared.takeBlock(address) !== null) taken.push(address);
    if (shared.retain() && shared.release()) cleanups++;
  }
  for (let i = 0; i < cycles; i++) if (shared.retain() && shared.release()) cleanups++;
  postMessage({ taken, cleanups });
};
