// A rank that fails (an uncaught error, a non-zero exit code) or leaves while its job is open
// (process.exit(), the end of the program before close()) would leave the other ranks waiting at
// their next collective until their timeout. The guard ends the job at once instead: at process
// exit it gives every job this process joined its exit code, and the job decides (finalize on a
// clean exit after close(); otherwise say which rank left and how, on stderr, which every launcher
// forwards, and ask the launcher to end the whole job). Jobs stay guarded after close(): with
// `using`, an error thrown out of the block closes the job before the process exits with code 1.
// `process.on("exit")` runs on every exit Bun makes, uncaught errors and unhandled rejections
// included; only a kill by signal skips it, and launchers end a job one of whose processes was
// killed.

/** A joined job, told how the process exits. */
export interface ExitGuarded {
  /** Called once from the process's "exit" event with the exit code; must not throw. */
  endOnExit(code: number): void;
}

const guarded = new Set<ExitGuarded>();
let installed = false;

/** Guards `job` until the process exits. */
export function guard(job: ExitGuarded): void {
  if (!installed) {
    installed = true;
    process.on("exit", (code) => {
      for (const open of [...guarded]) {
        guarded.delete(open);
        open.endOnExit(code);
      }
    });
  }
  guarded.add(job);
}
