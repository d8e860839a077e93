// A job joined through MPI: today's MpiJob (MPI_Init, MPI_Barrier, MPI_Ibarrier, MPI_Allgatherv),
// unchanged, behind the JobTransport interface.
import { MpiJob } from "../mpi/mpi-job.ts";
import type { JobTransport } from "./job-transport.ts";

/** MpiJob's collectives over MPI_COMM_WORLD. */
export class MpiTransport implements JobTransport {
  readonly rank: number;
  readonly size: number;
  readonly description: string;
  private readonly job: MpiJob;

  private constructor(job: MpiJob) {
    this.job = job;
    this.rank = job.rank;
    this.size = job.size;
    this.description = `MPI_COMM_WORLD (${job.launched ? "launched" : "an MPI singleton"}, ${job.threadLevel})`;
  }

  /** MpiJob.open(): throws what it throws (LibraryLoadError, AllocToolsError NOT_SUPPORTED, MpiError). */
  static open(): MpiTransport {
    return new MpiTransport(MpiJob.open());
  }

  barrier(): void {
    this.job.barrier();
  }

  barrierAsync(intervalMs: number): Promise<void> {
    return this.job.barrierAsync(intervalMs);
  }

  allgather(bytes: Uint8Array): Uint8Array[] {
    return this.job.allgather(bytes);
  }

  close(): void {
    this.job.close();
  }
}
