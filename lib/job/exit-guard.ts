// A rank that leaves while its job is open (an uncaught error, process.exit(), or the end of the
// program before close()) would leave the other ranks waiting at their next collective until their
// timeout. The guard ends the job at once instead: at process exit, each job still open says which
// rank left and how (on stderr, which every launcher forwards) and asks the launcher to end the
// whole job (PMIx_Abort). `process.on("exit")` runs on every exit Bun makes, uncaught errors and
// unhandled rejections included; only a kill by signal skips it, and launchers end a job whose
// process was killed by themselves.

/** A job that ends its job when the process exits with it open. */
export interface ExitGuarded {
  /** Called from the process's "exit" event with the exit code; must not throw. */
  endOnExit(code: number): void;
}

const guarded = new Set<ExitGuarded>();
let installed = false;

/** Guards `job` until `unguard(job)` (its close()). */
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

/** Stops guarding `job`: it closed. */
export function unguard(job: ExitGuarded): void {
  guarded.delete(job);
}
