// A Worker that drives a shared pool's state directly, to stop at exact points that a terminated
// Worker could stop at: holding a growth lock, half-way through a growth, half-way through a spill
// or a release. It posts "ready" at that point and waits to be terminated (or, holding a lock for
// `holdMs`, unlocks and posts "unlocked").
import * as libc from "../../ffi/libc.ts";
import type { SharedPoolHandle } from "../../lib/index.ts";
import { CACHE, HEADER, STATE_SHIFT, SharedLayout } from "../../lib/sharing/shared-layout.ts";
import { LockResult } from "../../lib/sharing/growth-locks.ts";
import { SharedPoolState } from "../../lib/sharing/shared-pool-state.ts";
import { SharedStack, indexBitsFor } from "../../lib/sharing/shared-stack.ts";

declare const self: Worker;

export type StateCommand =
  | { cmd: "hold-lock"; handle: SharedPoolHandle; classIndex: number; holdMs: number }
  | { cmd: "abandon-growth"; handle: SharedPoolHandle; classIndex: number; bytes: number }
  | { cmd: "spill-cut"; handle: SharedPoolHandle; classIndex: number }
  | { cmd: "release-cut"; handle: SharedPoolHandle; classIndex: number }
  | { cmd: "growth-past-close-wait"; handle: SharedPoolHandle; classIndex: number; bytes: number }
  | { cmd: "reserve-cut"; handle: SharedPoolHandle; classIndex: number; count: number };

function park(): never {
  const word = new Int32Array(new SharedArrayBuffer(4));
  for (;;) Atomics.wait(word, 0, 0);
}

self.onmessage = (event: MessageEvent<StateCommand>) => {
  const m = event.data;
  const state = SharedPoolState.attach(m.handle.buffer, m.handle.layout);
  const k = m.classIndex;
  switch (m.cmd) {
    case "hold-lock": {
      if (state.locks.lock(k) !== LockResult.ACQUIRED) throw new Error("lock not free");
      postMessage({ at: "locked" });
      if (m.holdMs < 0) park();
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, m.holdMs);
      const unlockedAt = Date.now();
      state.locks.unlock(k);
      postMessage({ at: "unlocked", unlockedAt });
      break;
    }
    case "abandon-growth": {
      // A growth that mapped and pinned its block, then died before registering it.
      if (state.locks.lock(k) !== LockResult.ACQUIRED) throw new Error("lock not free");
      const { block } = state.blocks.reserve(k, 1);
      if (!state.pinned.reserve(m.bytes, Infinity)) throw new Error("no room");
      state.blocks.notePinned(block, m.bytes);
      const address = libc.mmap(m.bytes);
      state.blocks.noteMapped(block, address, m.bytes, false);
      libc.mlock(address, m.bytes);
      state.blocks.noteMapped(block, address, m.bytes, true);
      postMessage({ at: "mapped" });
      park();
    }
    case "spill-cut": {
      // A full cache whose spill freed its newer half's state words and pushed them onto the
      // shared stack, then died before lowering its count.
      const size = m.handle.layout.cacheSize;
      const got: number[] = [];
      for (let i = 0; i < size; i++) got.push(state.cache.popShared(k));
      for (const index of got) if (!state.cache.push(k, index)) throw new Error("push refused");
      const layout = new SharedLayout(m.handle.layout);
      const words = new Int32Array(m.handle.buffer);
      const at = layout.cacheWord(state.slot, k);
      const count = words[at + CACHE.count]!;
      const half = count >> 1;
      for (let j = count - half; j < count; j++) words[layout.state / 4 + (words[at + CACHE.entries + j]! << STATE_SHIFT)] = 0;
      new SharedStack(words, layout.headLine(k) / 4, layout.next / 4, indexBitsFor(layout.capacity)).pushAll(words, at + CACHE.entries + count - half, half);
      postMessage({ at: "pushed", count, half, indices: got });
      park();
    }
    case "growth-past-close-wait": {
      // A live Worker still mapping its growth when the owner's close stops waiting for its lock:
      // the close finds the block MAPPED, with no registration recorded, and its lock free.
      if (state.locks.lock(k) !== LockResult.ACQUIRED) throw new Error("lock not free");
      const { block } = state.blocks.reserve(k, 1);
      const address = libc.mmap(m.bytes);
      state.blocks.noteMapped(block, address, m.bytes, false);
      state.locks.unlock(k);
      postMessage({ at: "mapped" });
      park();
    }
    case "reserve-cut": {
      // A growth terminated in BlockTable.reserve after taking its region indices and its block
      // entry, before writing which block each index belongs to (its loop's first iteration).
      if (state.locks.lock(k) !== LockResult.ACQUIRED) throw new Error("lock not free");
      const words = new Int32Array(m.handle.buffer);
      const first = Atomics.add(words, HEADER.regions, m.count);
      Atomics.add(words, HEADER.blocks, 1);
      postMessage({ at: "reserved", first });
      park();
    }
    case "release-cut": {
      // A release that wrote the region into its cache's next entry, then died before raising the
      // count: the region is still this Worker's, in use.
      const index = state.cache.popShared(k);
      const layout = new SharedLayout(m.handle.layout);
      const words = new Int32Array(m.handle.buffer);
      const at = layout.cacheWord(state.slot, k);
      words[at + CACHE.entries + words[at + CACHE.count]!] = index;
      postMessage({ at: "recorded", index });
      park();
    }
  }
};
