// One-line summaries for console.log / Bun.inspect: a pool, region, provider or endpoint holds
// typed arrays, native handles and thousands of regions, which the default inspector prints in full.

/**
 * The symbol `Bun.inspect`, `console.log` and `util.inspect` call for an object's own text
 * (`Bun.inspect.custom` is this symbol).
 */
export const inspectCustom: unique symbol = Symbol.for("nodejs.util.inspect.custom");

/** `Name { key: value, ... }`: the values as given (format them before), keys in order. */
export function oneLine(name: string, fields: Readonly<Record<string, string | number | boolean>>): string {
  const parts = Object.entries(fields).map(([key, value]) => `${key}: ${value}`);
  return parts.length === 0 ? name : `${name} { ${parts.join(", ")} }`;
}

/** Bytes with a binary unit: `512 B`, `16 KiB`, `3.75 MiB`. */
export function bytes(count: number): string {
  if (!Number.isFinite(count)) return String(count);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = count;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${Number.isInteger(value) ? value : value.toFixed(2).replace(/\.?0+$/, "")} ${units[unit]}`;
}

/** An address as `0x…`. */
export function hex(address: number | bigint): string {
  return `0x${address.toString(16)}`;
}
