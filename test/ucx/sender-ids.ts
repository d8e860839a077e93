// Forges a worker address whose sender id (FNV-1a 32, lib/ucx/sender-id.ts) is a given one: a copy
// of a real address with its last bytes rewritten, found by meeting in the middle (forward over
// two bytes from the prefix's state, backward over two bytes from the target; FNV-1a's multiplier
// is odd, so each step can be undone). Such an address differs from every real one and collides
// with the target's: what insert() must refuse.
import { senderId } from "../../lib/ucx/sender-id.ts";

const PRIME = 0x01000193;
/** The FNV prime's inverse modulo 2^32. */
const PRIME_INVERSE = inverse(PRIME);

/** A copy of `base` whose last four bytes (and, if needed, the fifth from last) make its sender id `target`. */
export function collidingAddress(base: Uint8Array, target: number): Uint8Array {
  const forged = base.slice();
  const n = forged.length;
  for (let fifth = 0; fifth < 256; fifth++) {
    forged[n - 5] = (base[n - 5]! + fifth) & 0xff;
    const prefix = stateOf(forged.subarray(0, n - 4));
    const forward = new Map<number, number>();
    for (let pair = 0; pair < 65_536; pair++) forward.set(step(step(prefix, pair >> 8), pair & 0xff), pair);
    for (let pair = 0; pair < 65_536; pair++) {
      // Undo the last byte (pair & 0xff), then the one before it (pair >> 8).
      const beforeLast = (Math.imul(target, PRIME_INVERSE) >>> 0) ^ (pair & 0xff);
      const middle = ((Math.imul(beforeLast, PRIME_INVERSE) >>> 0) ^ (pair >> 8)) >>> 0;
      const first = forward.get(middle);
      if (first === undefined) continue;
      forged.set([first >> 8, first & 0xff, pair >> 8, pair & 0xff], n - 4);
      if (senderId(forged) === target && forged.some((byte, i) => byte !== base[i])) return forged;
    }
  }
  throw new Error(`no address colliding with sender id ${target} found`);
}

function stateOf(bytes: Uint8Array): number {
  let state = 0x811c9dc5;
  for (const byte of bytes) state = step(state, byte);
  return state;
}

function step(state: number, byte: number): number {
  return Math.imul((state ^ byte) >>> 0, PRIME) >>> 0;
}

/** The inverse of an odd number modulo 2^32 (Newton's iteration). */
function inverse(odd: number): number {
  let x = odd;
  for (let i = 0; i < 5; i++) x = Math.imul(x, 2 - Math.imul(odd, x)) >>> 0;
  return x >>> 0;
}
