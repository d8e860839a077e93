// Files in /dev/shm that transports leave behind when a process dies without closing: libfabric
// shm's endpoint files ("<pid>:<tag>:<n>": alloctools names its own "<pid>:<12 hex digits>:<n>",
// libfabric's default is "<pid>:<uid>:<n>"), UCX's posix segments ("ucx_shm_posix_<hex>", left
// only with UCX_POSIX_USE_PROC_LINK=n) and Open MPI's shared-memory segments. A libfabric file
// names the process that made it; a UCX or Open MPI file is in use while a process maps it or
// holds it open (read from /proc/<pid>/maps and /proc/<pid>/fd). Each takes memory (tmpfs) until
// it is removed. `clean` removes only files whose process is gone, and looks again right before.
// Process ids are this PID namespace's: a /dev/shm shared with another namespace's processes
// would make their files look stale.
import { readdirSync, readFileSync, readlinkSync, statSync, unlinkSync, type Stats } from "node:fs";
import { join } from "node:path";

/** Which transport made a file: libfabric's shm provider, UCX's posix transport, Open MPI's shared memory. */
export type ShmFileKind = "libfabric-shm" | "ucx-posix" | "open-mpi";

/** "live": its process runs (or a process uses it); "stale": none does; "unknown": this user cannot tell. */
export type ShmFileState = "live" | "stale" | "unknown";

/** One file in the shared-memory directory. */
export interface ShmFile {
  /** The file's name in the directory. */
  readonly name: string;
  /** Which transport made it. */
  readonly kind: ShmFileKind;
  /** Whether alloctools made it (its shm endpoint names); null when the name cannot tell (UCX, Open MPI). */
  readonly alloctools: boolean | null;
  /** The process that made it (libfabric names) or uses it (UCX, Open MPI); null when none is known. */
  readonly pid: number | null;
  /** That process's command line while it runs; null otherwise. */
  readonly command: string | null;
  /** Whether a process still needs it. */
  readonly state: ShmFileState;
  /** Why it is in that state, in a few words. */
  readonly why: string;
  /** Its size in bytes (memory taken until it is removed). */
  readonly bytes: number;
}

/** A file `clean` could not remove. */
export interface ShmRemovalFailure {
  /** The file's name. */
  readonly name: string;
  /** The error's message (EACCES: another user's file). */
  readonly error: string;
}

const ALLOCTOOLS_SHM_NAME = /^(\d+):[0-9a-f]{12}:\d+$/;
const LIBFABRIC_DEFAULT_NAME = /^(\d+):\d+:\d+$/;
const UCX_POSIX_NAME = /^ucx_shm_posix_[0-9a-f]+$/;
const OPEN_MPI_NAME = /^(vader_segment|sm_segment)\./;
/** A process that started this long after a file was last written did not make it (the pid was reused). */
const START_TIME_MARGIN_MS = 2000;
/** Linux's USER_HZ: /proc/<pid>/stat counts start times in these ticks. */
const CLOCK_TICKS_PER_SECOND = 100;

/** The directory's files that a transport made, each with its process and state. */
export function scanShm(directory: string): ShmFile[] {
  let names: string[];
  try {
    names = readdirSync(directory).sort();
  } catch {
    return [];
  }
  let users: ProcessUsers | undefined;
  const files: ShmFile[] = [];
  for (const name of names) {
    const kind = kindOf(name);
    if (kind === null) continue;
    let stats: Stats;
    try {
      stats = statSync(join(directory, name));
    } catch {
      continue; // removed meanwhile
    }
    if (!stats.isFile()) continue;
    if (kind === "libfabric-shm") {
      files.push(namedFile(name, stats));
    } else {
      users ??= processUsers(directory);
      files.push(usedFile(name, kind, stats, users));
    }
  }
  return files;
}

/** Removes the stale files among `files`, each after looking at it again. */
export function cleanShm(directory: string, files: readonly ShmFile[]): { removed: ShmFile[]; failed: ShmRemovalFailure[] } {
  const removed: ShmFile[] = [];
  const failed: ShmRemovalFailure[] = [];
  const stale = files.filter((file) => file.state === "stale");
  const again = new Map(stale.length === 0 ? [] : scanShm(directory).map((file) => [file.name, file]));
  for (const file of stale) {
    if (again.get(file.name)?.state !== "stale") continue;
    try {
      unlinkSync(join(directory, file.name));
      removed.push(file);
    } catch (error) {
      failed.push({ name: file.name, error: error instanceof Error ? error.message : String(error) });
    }
  }
  return { removed, failed };
}

function kindOf(name: string): ShmFileKind | null {
  if (ALLOCTOOLS_SHM_NAME.test(name) || LIBFABRIC_DEFAULT_NAME.test(name)) return "libfabric-shm";
  if (UCX_POSIX_NAME.test(name)) return "ucx-posix";
  if (OPEN_MPI_NAME.test(name)) return "open-mpi";
  return null;
}

/** A libfabric shm file: its name gives the process that made it. */
function namedFile(name: string, stats: Stats): ShmFile {
  const alloctools = ALLOCTOOLS_SHM_NAME.test(name);
  const pid = Number(/^\d+/.exec(name)![0]);
  const base = { name, kind: "libfabric-shm" as const, alloctools, pid, bytes: stats.size };
  const creator = readProcess(pid);
  if (creator === null) return { ...base, command: null, state: "stale", why: `process ${pid} is gone` };
  if (creator.zombie) return { ...base, command: null, state: "stale", why: `process ${pid} has exited (a zombie)` };
  if (creator.startMs > stats.mtimeMs + START_TIME_MARGIN_MS) {
    return { ...base, command: null, state: "stale", why: `process ${pid} is gone (the pid now belongs to a process started after the file was written)` };
  }
  return { ...base, command: creator.command, state: "live", why: `process ${pid} runs` };
}

/** A UCX or Open MPI file: in use while a process maps it or holds it open. */
function usedFile(name: string, kind: ShmFileKind, stats: Stats, users: ProcessUsers): ShmFile {
  const base = { name, kind, alloctools: null, bytes: stats.size };
  const pid = users.byPath.get(name);
  if (pid !== undefined) return { ...base, pid, command: readProcess(pid)?.command ?? null, state: "live", why: `process ${pid} uses it` };
  const othersCouldUseIt = stats.uid !== process.getuid!() || (stats.mode & 0o077) !== 0;
  if (users.unreadable > 0 && othersCouldUseIt && process.getuid!() !== 0) {
    return { ...base, pid: null, command: null, state: "unknown", why: `${users.unreadable} processes of other users cannot be inspected from this user` };
  }
  return { ...base, pid: null, command: null, state: "stale", why: "no process maps it or holds it open" };
}

/** Which process maps or holds open each file of the directory (by file name). */
interface ProcessUsers {
  readonly byPath: Map<string, number>;
  /** Processes whose maps or descriptors this user may not read. */
  readonly unreadable: number;
}

function processUsers(directory: string): ProcessUsers {
  const prefix = `${directory.replace(/\/+$/, "")}/`;
  const byPath = new Map<string, number>();
  let unreadable = 0;
  const note = (path: string, pid: number) => {
    if (path.startsWith(prefix) && !byPath.has(path.slice(prefix.length))) byPath.set(path.slice(prefix.length), pid);
  };
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    try {
      for (const line of readFileSync(`/proc/${pid}/maps`, "utf8").split("\n")) {
        const at = line.indexOf(prefix);
        if (at >= 0) note(line.slice(at).replace(/ \(deleted\)$/, ""), pid);
      }
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        try {
          note(readlinkSync(`/proc/${pid}/fd/${fd}`), pid);
        } catch {
          // Closed meanwhile.
        }
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EACCES") unreadable++;
      // ENOENT: the process ended meanwhile.
    }
  }
  return { byPath, unreadable };
}

/** What /proc says about a process: null when there is none with this pid. */
function readProcess(pid: number): { zombie: boolean; startMs: number; command: string } | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // The fields after the command (which may hold spaces and parentheses): state is field 3, starttime field 22.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const startMs = (bootTimeSeconds() + Number(fields[19]) / CLOCK_TICKS_PER_SECOND) * 1000;
  let command = "";
  try {
    command = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean).join(" ");
  } catch {
    // Ended meanwhile, or not ours to read.
  }
  return { zombie: fields[0] === "Z", startMs, command: command.length > 80 ? `${command.slice(0, 79)}…` : command };
}

let bootTime: number | undefined;

function bootTimeSeconds(): number {
  bootTime ??= Number(/^btime (\d+)$/m.exec(readFileSync("/proc/stat", "utf8"))?.[1] ?? 0);
  return bootTime;
}
