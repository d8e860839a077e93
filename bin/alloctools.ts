#!/usr/bin/env bun
/**
 * `bunx alloctools doctor`: checks this machine for what alloctools needs and prints one finding
 * per line, marked ✓ (fine), ! (optional and missing, or worth a look) or ✗ (needed and missing),
 * each with its fix. Exit code 0 when everything needed is there (Bun as engines.bun asks, and a
 * default MemoryPool on the host provider), 1 otherwise, 2 for a bad command line. A missing
 * optional library (libfabric, UCX, Open MPI, PMIx) is a warning with its install command.
 *
 * `bunx alloctools info --json` prints the same as one JSON object (same exit code). Its keys are
 * stable (`schema` changes when one changes meaning or goes away); numbers are bytes where the
 * key says Bytes, null where a value is unknown or unlimited:
 *
 * - `schema`: "alloctools-doctor/1".
 * - `ok`: everything needed is there (the exit code is 0 exactly then).
 * - `bun`: `{ version, required, satisfied }`: Bun.version against the package's engines.bun.
 * - `host`: `{ ok, pinnedBytes, error }`: a default MemoryPool made on a HostProvider, and closed.
 * - `memlock`: `{ softBytes, hardBytes, defaultPoolBytes, capIpcLock, enough }`: RLIMIT_MEMLOCK
 *   (null: unlimited) against what a default pool pins (computed from the pool's defaults).
 * - `libfabric`, `ucx`, `mpi`, `pmix`: `{ available, version, path, reason, variable, install }`:
 *   whether the library loads through alloctools' own loader, from where, or why not (`reason`),
 *   the variable that points at it (ALLOCTOOLS_LIBFABRIC_PATH, ...) and how to install it; plus
 *   `libfabric.providers` (names fi_getinfo offers for an RDM endpoint with RMA, the library's
 *   own hints), `ucx.transports` (`[{ name, devices }]`) with `ucx.transportsFrom` ("ucx_info",
 *   "uct components" or null), and `mpi.mpirun` (its path on PATH, or null).
 * - `launcher`: `{ name, pmixServer, tasks, variables }`: the launcher this process runs under
 *   (null: none), as Job.open() reads it, and the names of the PMIX_*, OMPI_COMM_WORLD_*, SLURM_*,
 *   PRTE_* and PMI_* variables set.
 * - `hugePages`: `{ mode, usable }`: the transparent huge page mode ("always", "madvise", "never";
 *   null when the kernel has none) and whether pools' blocks can get huge pages.
 * - `shm`: `{ directory, files, removed, failed }`: the files of libfabric's shm, UCX's posix and
 *   Open MPI's shared memory found there, each `{ name, kind ("libfabric-shm", "ucx-posix",
 *   "open-mpi"), alloctools (true, false, or null when the name cannot tell), pid (the process that
 *   made or uses it, or null), command, state ("live", "stale", "unknown"), why, bytes }`; the names
 *   --clean removed, and `[{ name, error }]` for those it could not.
 * - `cpus`: `{ count, available, model, virtualMachine }`.
 * - `findings`: `[{ section, level ("ok", "warning", "error"), message, fix }]`, the lines of the
 *   text report in order; `section` is one of the keys above.
 */
import { diagnose, reportText } from "../lib/doctor/doctor.ts";

const USAGE = `usage: bunx alloctools <command> [options]

commands:
  doctor            check this machine for what alloctools needs; one line per finding
                    (✓ fine, ! optional or worth a look, ✗ needed and missing) with its fix
  info --json       the same findings as one JSON object (keys: see bin/alloctools.ts)

options:
  --clean           remove shared-memory files whose process is gone (libfabric shm, UCX posix,
                    Open MPI); files of running processes are left alone
  --shm-dir <dir>   look for those files in <dir> instead of /dev/shm
  --json            print JSON (doctor --json is info --json)
  --help, -h        this text

exit code: 0 when everything needed is there (optional libraries may be missing), 1 when not,
2 for a bad command line`;

interface Command {
  readonly name: "doctor" | "info" | "help";
  readonly json: boolean;
  readonly clean: boolean;
  readonly shmDirectory: string;
}

function parse(argv: readonly string[]): Command {
  let name: Command["name"] | undefined;
  let json = false;
  let clean = false;
  let shmDirectory = "/dev/shm";
  for (let i = 0; i < argv.length; i++) {
    const argument = argv[i]!;
    if (argument === "--help" || argument === "-h" || argument === "help") name = "help";
    else if (argument === "--json") json = true;
    else if (argument === "--clean") clean = true;
    else if (argument === "--shm-dir") shmDirectory = argv[++i] ?? usageError("--shm-dir needs a directory");
    else if (argument.startsWith("--shm-dir=")) shmDirectory = argument.slice("--shm-dir=".length);
    else if ((argument === "doctor" || argument === "info") && name === undefined) name = argument;
    else usageError(`unknown argument ${JSON.stringify(argument)}`);
  }
  if (name === undefined) usageError("name a command");
  return { name, json, clean, shmDirectory };
}

function usageError(message: string): never {
  console.error(`alloctools: ${message}\n\n${USAGE}`);
  process.exit(2);
}

const command = parse(process.argv.slice(2));
if (command.name === "help") {
  console.log(USAGE);
  process.exit(0);
}
const report = diagnose({ shmDirectory: command.shmDirectory, clean: command.clean });
process.stdout.write(command.json ? `${JSON.stringify(report, null, 2)}\n` : reportText(report));
process.exit(report.ok ? 0 : 1);
