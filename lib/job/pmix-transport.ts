// A job joined through PMIx: the PMIx server of mpirun, prterun or `srun --mpi=pmix`, with no MPI
// library in the process.
//
// - Barrier: PMIx_Fence over the namespace without data. barrierAsync: PMIx_Fence_nb, its
//   completion polled from the event loop (ffi/pmix.ts says how without JS off-thread).
// - Allgather number k of the process (counting from 0, exchangeNames included): every rank puts
//   its bytes once as a PMIX_BYTE_OBJECT under the key `alloctools.allgather.<k>` (PMIX_GLOBAL),
//   commits, fences with PMIX_COLLECT_DATA, then gets every rank's value. A rank in another
//   language joins by doing the same (docs/jobs.md).
// - Every fence and get carries PMIX_TIMEOUT (the job's timeoutMs), so no collective outlives it;
//   barrierAsync also gives up in JS a little after it, should PMIx never call back.
// - A rank that exits with the job open, or with a non-zero code, ends the job (exit-guard.ts).
//   PMIx_Finalize therefore waits for the process's clean exit: after close() PMIx_Abort must
//   still be callable.
import { pmixLibrary, PmixError, PMIX, type PmixClient } from "../../ffi/pmix.ts";
import { guard, type ExitGuarded } from "./exit-guard.ts";
import { nextTurn, type JobTransport } from "./job-transport.ts";
import { writeSync } from "node:fs";

/** The key prefix of allgathers; the allgather's number follows. */
export const ALLGATHER_KEY_PREFIX = "alloctools.allgather.";
/** How long barrierAsync waits in JS past PMIX_TIMEOUT before it gives up on PMIx's callback. */
const CALLBACK_GRACE_MS = 10_000;

/** Allgathers made by this process so far: every rank counts the same way, so the keys match. */
let allgathers = 0;

/** The collectives of a PMIx namespace. */
export class PmixTransport implements JobTransport, ExitGuarded {
  readonly rank: number;
  readonly size: number;
  readonly description: string;
  private readonly client: PmixClient;
  private readonly timeoutMs: number;
  private readonly timeoutSeconds: number;
  private barriers = 0;
  private closed = false;

  /** @internal Made by Job.open() once PMIx_Init joined a server. */
  constructor(client: PmixClient, size: number, timeoutMs: number, launcher: string) {
    this.client = client;
    this.rank = client.rank;
    this.size = size;
    this.timeoutMs = timeoutMs;
    this.timeoutSeconds = timeoutMs === 0 ? 0 : Math.max(1, Math.ceil(timeoutMs / 1000));
    this.description = `PMIx namespace ${client.nspace}, ${launcher}`;
    guard(this);
  }

  /**
   * PMIx_Init against the launcher's server and the job's size. Throws LibraryLoadError (no
   * libpmix) or PmixError; `singleton: true` comes back as null (no server answered).
   */
  static join(timeoutMs: number, launcher: string): PmixTransport | null {
    const client = pmixLibrary().init();
    if (client.singleton) {
      client.finalize();
      return null;
    }
    let size: number;
    try {
      size = client.jobSize();
    } catch (e) {
      client.finalize();
      throw e;
    }
    return new PmixTransport(client, size, timeoutMs, launcher);
  }

  barrier(): void {
    this.client.fence(false, this.timeoutSeconds, this.what(`barrier ${++this.barriers}`));
  }

  async barrierAsync(intervalMs: number): Promise<void> {
    const detail = this.what(`barrier ${++this.barriers} (nonblocking)`);
    const pending = this.client.startFence(false, this.timeoutSeconds, detail);
    const giveUpAt = this.timeoutMs === 0 ? Infinity : performance.now() + this.timeoutMs + CALLBACK_GRACE_MS;
    while (!pending.poll()) {
      if (performance.now() > giveUpAt) {
        pending.abandon();
        throw new PmixError("PMIx_Fence_nb", PMIX.ERR_TIMEOUT, "TIMEOUT", `${detail}: PMIx never reported the fence's end`);
      }
      await nextTurn(intervalMs);
    }
  }

  allgather(bytes: Uint8Array): Uint8Array[] {
    const key = `${ALLGATHER_KEY_PREFIX}${allgathers++}`;
    this.client.put(key, bytes);
    this.client.commit();
    this.client.fence(true, this.timeoutSeconds, this.what(`allgather ${key}`));
    const all: Uint8Array[] = [];
    for (let rank = 0; rank < this.size; rank++) all.push(this.client.getBytes(rank, key, this.timeoutSeconds));
    return all;
  }

  /** Leaves the job's collectives; PMIx_Finalize runs at the process's clean exit (see the file header). */
  close(): void {
    this.closed = true;
  }

  endOnExit(code: number): void {
    if (this.closed && code === 0) {
      try {
        this.client.finalize();
      } catch { /* exiting anyway */ }
      return;
    }
    const how = code === 0 ? "exited (code 0) before closing its Job" :
      `exited with code ${code}${this.closed ? " after closing its Job" : " while its Job was open"}`;
    const message = `alloctools: rank ${this.rank} of ${this.size} (${this.description}) ${how}: ending the job (PMIx_Abort)`;
    try {
      writeSync(2, `${message}\n`);
    } catch { /* stderr closed: the abort still ends the job */ }
    this.client.abort(code === 0 ? 1 : code, message);
  }

  /** Names the collective for error messages: which one, this rank, the job, the timeout. */
  private what(collective: string): string {
    const timeout = this.timeoutSeconds === 0 ? "no timeout" : `timeout ${this.timeoutSeconds} s`;
    return `${collective} of rank ${this.rank} of ${this.size} (${this.description}, ${timeout}); ` +
      "a timeout or PMIX_ERR_PARTIAL_SUCCESS means a rank did not arrive (it ended, or is still busy)";
  }
}
