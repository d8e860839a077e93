// One line of `alloctools doctor`: what was found about one part of the machine, how it stands,
// and what to do about it.

/**
 * How a finding stands: "ok" (✓), "warning" (!: optional and missing, or working with a caveat),
 * "error" (✗: what the library needs is not there, and `doctor` exits non-zero).
 */
export type FindingLevel = "ok" | "warning" | "error";

/** The part of the machine a finding is about; also the key of its data in `info --json`. */
export type Section =
  | "bun" | "host" | "libfabric" | "ucx" | "mpi" | "pmix" | "launcher" | "memlock" | "hugePages" | "shm" | "cpus";

/** One finding: one line of the report. */
export interface Finding {
  /** What it is about. */
  readonly section: Section;
  /** How it stands. */
  readonly level: FindingLevel;
  /** What was found, in one sentence without a final period. */
  readonly message: string;
  /** What to do about it (a command where there is one); null when there is nothing to do. */
  readonly fix: string | null;
}

const MARKS: Readonly<Record<FindingLevel, string>> = { ok: "✓", warning: "!", error: "✗" };

/** The finding as one line of plain text: mark, section, message, and the fix when there is one. */
export function findingLine(finding: Finding): string {
  const fix = finding.fix === null ? "" : `. Fix: ${finding.fix}`;
  return `${MARKS[finding.level]} ${finding.section}: ${finding.message}${fix}`;
}

/** A finding with nothing to do. */
export function ok(section: Section, message: string): Finding {
  return { section, level: "ok", message, fix: null };
}

/** Something optional is missing, or works with a caveat: what to do about it. */
export function warning(section: Section, message: string, fix: string): Finding {
  return { section, level: "warning", message, fix };
}

/** Something the library needs is missing: what to do about it. */
export function error(section: Section, message: string, fix: string): Finding {
  return { section, level: "error", message, fix };
}
