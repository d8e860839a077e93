// The doctor's findings about the shared-memory directory: files in use, files left by processes
// that are gone (with --clean: removed), files this user cannot judge. Files are grouped by what
// made them, so that a directory full of leftovers stays a few lines.
import { bytes } from "../inspect.ts";
import { ok, warning, type Finding } from "./finding.ts";
import { cleanShm, scanShm, type ShmFile, type ShmRemovalFailure } from "./shm-files.ts";

/** The shared-memory directory in `info --json`. */
export interface ShmReport {
  /** The directory looked at ("/dev/shm" unless --shm-dir says otherwise). */
  readonly directory: string;
  /** Its transports' files as found (before any removal). */
  readonly files: readonly ShmFile[];
  /** Names of the files --clean removed (empty without --clean). */
  readonly removed: readonly string[];
  /** Files --clean could not remove, with the error. */
  readonly failed: readonly ShmRemovalFailure[];
}

/** Names shown per line before "and N more". */
const NAMES_SHOWN = 4;
/** Processes shown per line before "and N more". */
const PROCESSES_SHOWN = 6;

/** Scans `directory`, removes the stale files when `clean`, and says what it found. */
export function checkShm(directory: string, clean: boolean): { shm: ShmReport; findings: Finding[] } {
  const files = scanShm(directory);
  const { removed, failed } = clean ? cleanShm(directory, files) : { removed: [], failed: [] };
  const shm = { directory, files, removed: removed.map((file) => file.name), failed };
  if (files.length === 0) {
    return { shm, findings: [ok("shm", `${directory} holds no files of libfabric's shm, UCX's posix or Open MPI's shared memory`)] };
  }
  const findings: Finding[] = [];
  const removedNames = new Set(shm.removed);
  for (const group of groups(files.filter((file) => file.state === "live"))) {
    findings.push(ok("shm", `${count(group)} of ${describe(group[0]!)} in use by ${processes(group)}`));
  }
  for (const group of groups(files.filter((file) => removedNames.has(file.name)))) {
    findings.push(ok("shm", `removed ${count(group)} of ${describe(group[0]!)}, left by ${gone(group)}: ${names(group)}`));
  }
  const left = files.filter((file) => file.state === "stale" && !removedNames.has(file.name));
  for (const group of groups(left)) {
    const failure = failed.find((candidate) => group.some((file) => file.name === candidate.name));
    findings.push(warning("shm", `${count(group)} of ${describe(group[0]!)}, left by ${gone(group)}: ${names(group)}`,
      failure === undefined
        ? "'bunx alloctools doctor --clean' removes the files whose process is gone"
        : `--clean could not remove them (${failure.error}): run it as root or as the files' owner`));
  }
  for (const group of groups(files.filter((file) => file.state === "unknown"))) {
    findings.push(warning("shm", `${count(group)} of ${describe(group[0]!)} that this user cannot tell are in use (${group[0]!.why}): ${names(group)}`,
      "run 'bunx alloctools doctor' as root to tell, and '--clean' to remove the stale ones"));
  }
  return { shm, findings };
}

/** Files grouped by transport and by whether alloctools made them, in the order first seen. */
function groups(files: readonly ShmFile[]): ShmFile[][] {
  const byKey = new Map<string, ShmFile[]>();
  for (const file of files) {
    const key = `${file.kind}/${file.alloctools}`;
    const group = byKey.get(key);
    if (group === undefined) byKey.set(key, [file]);
    else group.push(file);
  }
  return [...byKey.values()];
}

function describe(file: ShmFile): string {
  switch (file.kind) {
    case "libfabric-shm":
      return file.alloctools ? "alloctools' libfabric shm endpoints" : "libfabric shm endpoints under libfabric's default names (not alloctools')";
    case "ucx-posix":
      return "UCX posix segments (UCX_POSIX_USE_PROC_LINK=n; alloctools' when the process used provider \"ucx\")";
    case "open-mpi":
      return "Open MPI shared-memory segments";
  }
}

function count(group: readonly ShmFile[]): string {
  const total = group.reduce((sum, file) => sum + file.bytes, 0);
  return `${group.length} file${group.length === 1 ? "" : "s"} (${bytes(total)})`;
}

function names(group: readonly ShmFile[]): string {
  const shown = group.slice(0, NAMES_SHOWN).map((file) => file.name).join(", ");
  return group.length > NAMES_SHOWN ? `${shown} and ${group.length - NAMES_SHOWN} more` : shown;
}

/** "process 12 (bun app.ts), process 34 (fi_pingpong)" */
function processes(group: readonly ShmFile[]): string {
  const pids = [...new Map(group.map((file) => [file.pid, file.command])).entries()];
  const shown = pids.slice(0, PROCESSES_SHOWN).map(([pid, command]) => `process ${pid}${command ? ` (${command})` : ""}`).join(", ");
  return pids.length > PROCESSES_SHOWN ? `${shown} and ${pids.length - PROCESSES_SHOWN} more` : shown;
}

/** "processes that are gone (12, 34)", or without the list when the names do not tell which. */
function gone(group: readonly ShmFile[]): string {
  const pids = [...new Set(group.map((file) => file.pid).filter((pid) => pid !== null))];
  if (pids.length === 0) return "processes that are gone";
  const shown = pids.slice(0, PROCESSES_SHOWN).join(", ");
  const more = pids.length > PROCESSES_SHOWN ? ` and ${pids.length - PROCESSES_SHOWN} more` : "";
  return pids.length === 1 ? `process ${shown}, which is gone` : `processes that are gone (${shown}${more})`;
}
