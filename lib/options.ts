// Options objects are checked key by key: an unknown key (a typo such as `maxPinedBytes`) would
// otherwise be ignored and its default used without a word.
import { AllocToolsTypeError } from "./errors.ts";

/**
 * The keys an options type accepts, as an object so that the compiler checks the list against the
 * type: `const KEYS: KnownKeys<MemoryPoolOptions> = { small: true, ... }` fails to compile when a
 * key is missing or extra.
 */
export type KnownKeys<Options> = { readonly [Key in keyof Required<Options>]: true };

/**
 * Throws an {@link AllocToolsTypeError} (`UNKNOWN_OPTION`) naming the first key of `options` that
 * `known` does not list, the closest known key when one is near, and every known key.
 * Not for hot paths: it runs once per constructor or open.
 *
 * @param options The options object as given (already checked to be an object).
 * @param known The accepted keys.
 * @param what How the message names the options, e.g. `"MemoryPool options"`.
 */
export function checkKnownKeys(options: object, known: Readonly<Record<string, true>>, what: string): void {
  const key = unknownKey(options, known);
  if (key === undefined) return;
  throw new AllocToolsTypeError(`${what}: unknown option ${describeUnknownKey(key, known)}`, { code: "UNKNOWN_OPTION" });
}

/** The first key of `options` that `known` does not list, if any. */
export function unknownKey(options: object, known: Readonly<Record<string, true>>): string | undefined {
  return Object.keys(options).find((key) => !Object.hasOwn(known, key));
}

/** `"key" (did you mean "near"?); known options: a, b, c`: the tail of an unknown-option message. */
export function describeUnknownKey(key: string, known: Readonly<Record<string, true>>): string {
  const names = Object.keys(known);
  const closest = nearest(key, names);
  return `${JSON.stringify(key)}${closest === undefined ? "" : ` (did you mean ${JSON.stringify(closest)}?)`}; known options: ${names.join(", ")}`;
}

/** The known name nearest `key` (case ignored) within edit distance 2 and under half its length, if any. */
export function nearest(key: string, names: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const name of names) {
    const distance = editDistance(key.toLowerCase(), name.toLowerCase());
    if (distance < bestDistance && distance * 2 < key.length) {
      best = name;
      bestDistance = distance;
    }
  }
  return best;
}

/** Levenshtein distance, one row at a time. */
function editDistance(given: string, known: string): number {
  let previous = Array.from({ length: known.length + 1 }, (_, index) => index);
  for (let givenLength = 1; givenLength <= given.length; givenLength++) {
    const current = [givenLength];
    for (let knownLength = 1; knownLength <= known.length; knownLength++) {
      const substitution = previous[knownLength - 1]! + (given[givenLength - 1] === known[knownLength - 1] ? 0 : 1);
      current.push(Math.min(previous[knownLength]! + 1, current[knownLength - 1]! + 1, substitution));
    }
    previous = current;
  }
  return previous[known.length]!;
}
