// Settings every rank of a job must share before a window is created. Open MPI's osc/rdma sizes a
// dynamic window's table of attached ranges by osc_rdma_max_attach and reads a peer's table with
// its own value: ranks that disagree get MPI_ERR_RMA_RANGE, or a segmentation fault, on their
// first operation. So MpiProvider.open() allgathers each rank's value (MPI_T) before
// MPI_Win_create_dynamic, and every rank refuses the same way when they differ, so no rank is left
// waiting in the window's collective creation. A C rank in the job makes the same MPI_Allgather
// (docs/rma.md, "C ranks").
import type { MpiLibrary } from "../../ffi/mpi.ts";
import { AllocToolsError } from "../errors.ts";

/** The setting, as MPI_T names it (its environment variable is OMPI_MCA_ + the name). */
export const MAX_ATTACH = "osc_rdma_max_attach";
/** What a rank sends when MPI_T cannot read the setting. */
const UNREADABLE = -1;
/** Ranks listed per value in the message before "and N more". */
const RANKS_LISTED = 8;

/**
 * Collective over MPI_COMM_WORLD (one MPI_Allgather of an int): throws AllocToolsError
 * SETTING_MISMATCH on every rank when the ranks' osc_rdma_max_attach differ, naming each value and
 * its ranks. Nothing else happens.
 */
export function refuseDifferingSettings(mpi: MpiLibrary, rank: number, size: number): void {
  const mine = Int32Array.of(mpi.integerControlVariable(MAX_ATTACH) ?? UNREADABLE);
  const all = new Int32Array(size);
  mpi.allgatherInt(mine, all);
  if (all.every((value) => value === all[0])) return;
  throw new AllocToolsError("SETTING_MISMATCH",
    `the ranks of this job disagree on ${MAX_ATTACH}: ${describeValues(all)} (this is rank ${rank}, with ${describe(mine[0]!)}). ` +
      `Open MPI's osc/rdma reads a peer's table of attached memory with its own size, so a window between these ranks ` +
      `fails with MPI_ERR_RMA_RANGE or crashes: no window was created, on any rank. Start every rank with the same value: ` +
      `alloctools sets OMPI_MCA_${MAX_ATTACH}=4096 where the environment sets none, so give other ranks the same ` +
      `('mpirun -x OMPI_MCA_${MAX_ATTACH}=4096'), or one value for all ('mpirun --mca ${MAX_ATTACH} <n>').`);
}

/** "64 on rank 0; 4096 on ranks 1, 2, 3": each value with its ranks, in order of first rank. */
function describeValues(all: Int32Array): string {
  const ranksByValue = new Map<number, number[]>();
  all.forEach((value, rank) => {
    const ranks = ranksByValue.get(value);
    if (ranks === undefined) ranksByValue.set(value, [rank]);
    else ranks.push(rank);
  });
  return [...ranksByValue].map(([value, ranks]) => {
    const listed = ranks.slice(0, RANKS_LISTED).join(", ") + (ranks.length > RANKS_LISTED ? ` and ${ranks.length - RANKS_LISTED} more` : "");
    return `${describe(value)} on rank${ranks.length > 1 ? "s" : ""} ${listed}`;
  }).join("; ");
}

function describe(value: number): string {
  return value === UNREADABLE ? "a value MPI_T cannot read" : String(value);
}
