// Which launcher the doctor itself runs under, read from the environment as Job.open() reads it
// (lib/job/launcher.ts): a PMIx server to join (mpirun, prterun, srun --mpi=pmix), a launcher
// without one (srun without --mpi=pmix, PMI-1/PMI-2), or none (a singleton job).
import { detectLauncher, HOW_TO_LAUNCH } from "../job/launcher.ts";
import { ok, warning, type Finding } from "./finding.ts";

/** The launcher in `info --json`. */
export interface LauncherReport {
  /** "mpirun", "srun --mpi=pmix", "srun without --mpi=pmix", "prterun", "a PMIx launcher", "a PMI-1/PMI-2 launcher", or null for none. */
  readonly name: string | null;
  /** Whether a PMIx server is there to join. */
  readonly pmixServer: boolean;
  /** Processes the launcher says it started (1 when none says). */
  readonly tasks: number;
  /** The launcher variables set, by name (PMIX_*, OMPI_COMM_WORLD_*, SLURM_*, PRTE_*, PMI_*), sorted. */
  readonly variables: readonly string[];
}

const LAUNCHER_VARIABLE = /^(PMIX_|OMPI_COMM_WORLD_|SLURM_|PRTE_|PMI_)/;

/** The launcher this process runs under, and whether Job.open() can join it. */
export function checkLauncher(env: Readonly<Record<string, string | undefined>>, pmixLoads: boolean): { launcher: LauncherReport; finding: Finding } {
  const detected = detectLauncher(env);
  const variables = Object.keys(env).filter((name) => LAUNCHER_VARIABLE.test(name) && env[name] !== undefined).sort();
  const launcher = { name: detected.name, pmixServer: detected.pmixServer, tasks: detected.tasks, variables };
  const tasks = `${detected.tasks} task${detected.tasks === 1 ? "" : "s"}`;
  if (detected.name === null) {
    return { launcher, finding: ok("launcher", "none (no PMIX_*, OMPI_COMM_WORLD_* or SLURM_* variables): Job.open() here is a singleton job of one rank") };
  }
  if (!detected.pmixServer) {
    return {
      launcher,
      finding: warning("launcher", `${detected.name}, ${tasks}, without a PMIx server: Job.open() would run each process as a job of its own`, HOW_TO_LAUNCH),
    };
  }
  if (!pmixLoads) {
    return {
      launcher,
      finding: warning("launcher", `${detected.name}, ${tasks}, with a PMIx server, but libpmix does not load: Job.open() cannot join it`,
        "install PMIx (see the pmix line)"),
    };
  }
  return { launcher, finding: ok("launcher", `${detected.name}, ${tasks}, with a PMIx server: Job.open() joins it`) };
}
