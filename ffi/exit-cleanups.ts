// Cleanups that must run before the process ends, such as closing libfabric providers (shm unlinks
// an endpoint's /dev/shm file only when it closes). They run from the process's "exit" event, and
// before that from any exit path of this library that ends the process itself while the event is
// still being delivered (MPI_Abort, the bound on MPI_Finalize: ffi/mpi.ts), which would skip the
// listeners registered after its own. Each runs once.

const pending = new Set<() => void>();
let listening = false;

/** Runs `cleanup` once when the process exits (see the file header); failures are ignored. */
export function runAtExit(cleanup: () => void): void {
  pending.add(cleanup);
  if (listening) return;
  listening = true;
  process.on("exit", runExitCleanups);
}

/** Runs every cleanup not run yet. For exit paths that end the process before the exit event is over. */
export function runExitCleanups(): void {
  for (const cleanup of [...pending]) {
    pending.delete(cleanup);
    try {
      cleanup();
    } catch {
      // Exiting: nothing left to tell.
    }
  }
}
