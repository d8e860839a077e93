// Whether a thread of this process still runs, told from /proc: a Worker records its kernel thread
// id and start time when it attaches, and anyone can later check that this thread still exists.
// A terminated Worker's thread exits, so a slow Worker (inside a long mlock) is never mistaken
// for a dead one, whatever the wall clock says. The start time guards against a reused id.
import { readFileSync } from "node:fs";

export interface ThreadIdentity {
  /** Kernel thread id (gettid). */
  readonly id: number;
  /** Start time in clock ticks since boot (/proc/.../stat field 22). */
  readonly start: number;
}

/** The calling thread (the Worker's own). */
export function currentThread(): ThreadIdentity {
  return parseStat(readFileSync("/proc/thread-self/stat", "latin1"));
}

/** True while thread `identity` of this process runs (false once it exited). */
export function threadAlive(identity: ThreadIdentity): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/self/task/${identity.id}/stat`, "latin1");
  } catch {
    return false;
  }
  return parseStat(stat).start === identity.start;
}

function parseStat(stat: string): ThreadIdentity {
  // "tid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
  const close = stat.lastIndexOf(")");
  const fields = stat.slice(close + 2).split(" ");
  return { id: Number.parseInt(stat, 10), start: Number(fields[19]) }; // field 22, the third after ')' is field 3
}
