// A Worker that makes one real get (that grows a class) and stops for good at the entry of its
// n-th step: the n-th call, counted from the get, to any method of the block table or the growth
// locks. A Worker terminated there leaves the shared words exactly as one terminated between those
// two steps of the real code would (termination lands at calls and loop heads, not in the
// straight-line code between them). It posts
// "cut" with the step's name and waits to be terminated, or "done" when the get ended first.
import { MemoryPool, type SharedPoolHandle } from "../../lib/index.ts";
import { BlockTable } from "../../lib/sharing/block-table.ts";
import { GrowthLocks } from "../../lib/sharing/growth-locks.ts";

declare const self: Worker;

export interface CutCommand {
  handle: SharedPoolHandle;
  /** Bytes of the get (its class must be empty, so that it grows or takes over a growth). */
  bytes: number;
  /** Stop at the entry of this step: its number (1: the first; 0 never stops) or "Class.method#k", the k-th call of that method. */
  step: number | string;
  /**
   * Instead of stopping at the step's entry: from there, the next Atomics.compareExchange fails
   * (as if another Worker had pushed or popped first) and the Worker stops at the next
   * Atomics.load, the retry's first: where a Worker whose push lost the race is terminated (the
   * loop's head).
   */
  atRetry?: boolean;
}

export type CutReply = { at: "cut"; step: number; name: string } | { at: "done"; steps: number; names: string[] };

let atRetry = false;
/** After the step with atRetry: 2, the next compareExchange fails; 1, the retry's first load (the loop's back edge, where termination lands) stops. */
let retryPhase = 0;
const compareExchange = Atomics.compareExchange;
Atomics.compareExchange = ((array: Int32Array, index: number, expected: number, replacement: number) => {
  if (retryPhase === 2) {
    retryPhase = 1;
    return expected + 1; // lost the race: nothing written
  }
  return compareExchange(array, index, expected, replacement);
}) as typeof Atomics.compareExchange;
const load = Atomics.load;
Atomics.load = ((array: Int32Array, index: number) => {
  if (retryPhase === 1) {
    postMessage({ at: "cut", step: steps, name: `${names.at(-1)} at the retry of a compareExchange` } satisfies CutReply);
    park();
  }
  return load(array, index);
}) as typeof Atomics.load;

let steps = 0;
let stopAt = 0;
let stopAtName = "";
const names: string[] = [];

function park(): never {
  const word = new Int32Array(new SharedArrayBuffer(4));
  for (;;) Atomics.wait(word, 0, 0);
}

/** Every method of `prototype` counts as a step, and the `stopAt`-th one never returns. */
function countSteps(prototype: object, className: string): void {
  for (const key of Object.getOwnPropertyNames(prototype)) {
    const descriptor = Object.getOwnPropertyDescriptor(prototype, key)!;
    if (key === "constructor" || typeof descriptor.value !== "function") continue;
    const original = descriptor.value as (...args: unknown[]) => unknown;
    const name = `${className}.${key}`;
    Object.defineProperty(prototype, key, {
      ...descriptor,
      value(this: unknown, ...args: unknown[]) {
        if (stopAt > 0) {
          steps++;
          names.push(name);
          if (steps === stopAt || `${name}#${names.filter((seen) => seen === name).length}` === stopAtName) {
            if (atRetry) {
              retryPhase = 2;
            } else {
              postMessage({ at: "cut", step: steps, name } satisfies CutReply);
              park();
            }
          }
        }
        return original.apply(this, args);
      },
    });
  }
}

countSteps(BlockTable.prototype, "BlockTable");
countSteps(GrowthLocks.prototype, "GrowthLocks");

self.onmessage = (event: MessageEvent<CutCommand>) => {
  const { handle, bytes, step } = event.data;
  atRetry = event.data.atRetry === true;
  const pool = MemoryPool.attach(handle);
  stopAt = typeof step === "string" || step === 0 ? Infinity : step;
  stopAtName = typeof step === "string" ? step : "";
  pool.getRegion(bytes);
  stopAt = 0;
  postMessage({ at: "done", steps, names } satisfies CutReply);
  park(); // holds the region: terminated like the others
};
