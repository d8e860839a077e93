// The job of one process, started without a launcher: rank 0 of 1. Collectives have nobody to wait
// for, and an allgather gives back this process's own bytes.
import type { JobTransport } from "./job-transport.ts";

/** Rank 0 of 1; nothing to join, nothing to leave. */
export class SingletonTransport implements JobTransport {
  readonly rank = 0;
  readonly size = 1;
  readonly description = "a job of one process (no launcher)";

  barrier(): void {}

  async barrierAsync(): Promise<void> {}

  allgather(bytes: Uint8Array): Uint8Array[] {
    return [bytes.slice()];
  }

  close(): void {}
}
