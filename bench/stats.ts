// The two summaries the suites quote for repeated rounds: their median and their spread.

/** The median; with an even count, the lower of the middle two (a measured value, never a mean). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[(sorted.length - 1) >> 1]!;
}

/** "min–max" of the values, for a figure's note. */
export function spread(values: readonly number[], digits = 2): string {
  return `${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)}`;
}
