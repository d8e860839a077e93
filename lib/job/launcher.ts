// Which launcher started this process, read from the environment it set: whether a PMIx server is
// there to join (mpirun, prterun and `srun --mpi=pmix` set PMIX_NAMESPACE and PMIX_SERVER_URI*),
// and whether a launcher started several processes without one (srun without --mpi=pmix, a PMI-1
// or PMI-2 launcher), which would otherwise run as that many jobs of one process each.

/** What the environment says about this process's launcher. */
export interface Launcher {
  /** A PMIx server is there to join: PMIX_NAMESPACE or a PMIX_SERVER_URI* variable is set. */
  readonly pmixServer: boolean;
  /** The launcher, as far as its variables tell: "srun", "mpirun", "a PMIx launcher", ... or null. */
  readonly name: string | null;
  /** Processes the launcher says it started (SLURM_NTASKS, OMPI_COMM_WORLD_SIZE, PMI_SIZE), 1 when none says. */
  readonly tasks: number;
}

/** How to start a job that Job.open() joins through PMIx. */
export const HOW_TO_LAUNCH =
  "start the ranks with a PMIx launcher: 'mpirun -n 4 bun app.ts' (Open MPI), 'prterun -n 4 bun app.ts' (PRRTE) " +
  "or 'srun --mpi=pmix -n 4 bun app.ts' (Slurm)";

/** Reads the launcher's variables from `env`. */
export function detectLauncher(env: Readonly<Record<string, string | undefined>> = process.env): Launcher {
  const pmixServer = set(env.PMIX_NAMESPACE) || Object.keys(env).some((name) => name.startsWith("PMIX_SERVER_URI") && set(env[name]));
  const tasks = positive(env.SLURM_NTASKS) ?? positive(env.SLURM_STEP_NUM_TASKS) ?? positive(env.OMPI_COMM_WORLD_SIZE) ??
    positive(env.PMI_SIZE) ?? 1;
  return { pmixServer, name: launcherName(env, pmixServer), tasks };
}

function launcherName(env: Readonly<Record<string, string | undefined>>, pmixServer: boolean): string | null {
  if (set(env.SLURM_STEP_ID) || set(env.SLURM_PROCID)) return pmixServer ? "srun --mpi=pmix" : "srun without --mpi=pmix";
  if (set(env.OMPI_COMM_WORLD_SIZE)) return "mpirun";
  if (set(env.PRTE_LAUNCHED) || Object.keys(env).some((name) => name.startsWith("PRTE_"))) return "prterun";
  if (pmixServer) return "a PMIx launcher";
  if (set(env.PMI_SIZE) || set(env.PMI_RANK)) return "a PMI-1/PMI-2 launcher";
  return null;
}

function set(value: string | undefined): boolean {
  return value !== undefined && value !== "";
}

function positive(value: string | undefined): number | undefined {
  if (value === undefined || !/^[1-9][0-9]*$/.test(value)) return undefined;
  return Number(value);
}
