// libfabric at the process's exit: providers still open are closed then (endpoints first), and
// the main thread sweeps this process's shm files.
import { readdirSync, unlinkSync } from "node:fs";
import { runAtExit } from "../../ffi/exit-cleanups.ts";

/** What the exit hook closes: a provider still open. */
interface Closable {
  close(): void;
}

/**
 * Providers still open when the process exits are closed then (endpoints first): shm unlinks its
 * /dev/shm/<pid>:… file only when its endpoint closes, so a process that ends without close()
 * would leave it behind. A process ended by a signal runs no JavaScript: there shm's own handler
 * unlinks the files, on SIGINT and SIGTERM, and on SIGHUP too since attachEndpoint gave it SIGHUP
 * (ffi/signals.ts). SIGKILL leaves them.
 */
const openProviders = new Set<Closable>();
let exitHookInstalled = false;

/** Closes `provider` at the process's exit if it is still open then. */
export function closeAtExit(provider: Closable): void {
  openProviders.add(provider);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Through runAtExit: MPI's exit hook, which may end the process (MPI_Abort), runs it first.
  runAtExit(closeOpenProviders);
}

/**
 * Closes this thread's open providers. On the main thread, then unlinks every /dev/shm file named
 * after this process (`<pid>:…`, as every shm endpoint's name here begins): the main thread's exit
 * ends the Workers without their exit events, so the endpoints of Workers' providers never close.
 */
function closeOpenProviders(): void {
  for (const open of [...openProviders]) {
    try {
      open.close();
    } catch {
      // Exiting: nothing left to tell.
    }
  }
  if (!Bun.isMainThread) return;
  const prefix = `${process.pid}:`;
  try {
    for (const name of readdirSync(SHM_DIRECTORY)) if (name.startsWith(prefix)) unlinkSync(`${SHM_DIRECTORY}/${name}`);
  } catch {
    // No /dev/shm, or the file went meanwhile.
  }
}
const SHM_DIRECTORY = "/dev/shm";

// The main thread sweeps at exit even when only Workers opened providers.
if (Bun.isMainThread) {
  exitHookInstalled = true;
  runAtExit(closeOpenProviders);
}


/** `provider` closed on its own: the exit hook leaves it. */
export function forgetAtExit(provider: Closable): void {
  openProviders.delete(provider);
}
