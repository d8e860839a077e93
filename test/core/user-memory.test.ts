// lib/memory/user-memory.ts: the checks registerUserRegion and the registration cache share.
import { expect, test } from "bun:test";
import { AllocToolsError } from "../../lib/index.ts";
import { checkUserMemory, isDetached } from "../../lib/memory/user-memory.ts";

function codeOf(f: () => unknown): string | undefined {
  try { f(); } catch (e) { return e instanceof AllocToolsError ? e.code : (e as Error).name; }
  return undefined;
}

test("checkUserMemory: what may be registered, and exactly which bytes", () => {
  const detached = new ArrayBuffer(64);
  detached.transfer();
  expect(codeOf(() => checkUserMemory("cache", detached))).toBe("DETACHED");
  expect(codeOf(() => checkUserMemory("cache", new Uint8Array(0)))).toBe("RangeError");
  expect(codeOf(() => checkUserMemory("cache", [1, 2, 3]))).toBe("TypeError");
  expect(codeOf(() => checkUserMemory("cache", new ArrayBuffer(8, { maxByteLength: 16 })))).toBe("TypeError");
  const ok = checkUserMemory("cache", new Float64Array(new ArrayBuffer(80), 8, 4));
  expect(ok.byteLength).toBe(32);
  expect(ok.view.byteOffset).toBe(8);
  expect(ok.view.byteLength).toBe(32);
  const sab = new SharedArrayBuffer(16, { maxByteLength: 64 });
  const fixed = checkUserMemory("cache", new Uint8Array(sab)); // a length-tracking view: fixed at 16
  sab.grow(64);
  expect(fixed.view.byteLength).toBe(16);
});

test("isDetached: ArrayBuffers once transferred; SharedArrayBuffers never", () => {
  const buffer = new ArrayBuffer(8);
  expect(isDetached(buffer)).toBe(false);
  buffer.transfer();
  expect(isDetached(buffer)).toBe(true);
  expect(isDetached(new SharedArrayBuffer(8))).toBe(false);
});
