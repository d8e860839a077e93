// The system libraries alloctools calls through bun:ffi, as the doctor reports them: whether each
// loads here (through the library's own loaders), its version, and what it offers: libfabric's
// providers for the library's own hints, UCX's transports, mpirun beside Open MPI. Every one is
// optional: a missing one is a warning with its install command.
import type { LibraryLocation, LibraryStatus } from "../../ffi/library-status.ts";
import { LIBFABRIC_LOCATION, libfabricStatus } from "../../ffi/libfabric.ts";
import { MPI_LOCATION, mpiStatus } from "../../ffi/mpi.ts";
import { PMIX_LOCATION, pmixStatus } from "../../ffi/pmix.ts";
import { ucx, UCX_LOCATION, ucxStatus } from "../../ffi/ucx.ts";
import { libfabricProviderNames } from "../libfabric/libfabric-provider.ts";
import { ok, warning, type Finding, type Section } from "./finding.ts";

/** A system library in `info --json`. */
export interface LibraryReport {
  /** Whether it loads in this process. */
  readonly available: boolean;
  /** The version it reports ("1.17", "1.13.1", "Open MPI v4.1.4, ..."); null when it does not load. */
  readonly version: string | null;
  /** The path it was loaded from; null when it does not load. */
  readonly path: string | null;
  /** Why it does not load (the loader's message); null when it does. */
  readonly reason: string | null;
  /** The environment variable that names its path instead of the default names. */
  readonly variable: string;
  /** How to install it. */
  readonly install: string;
}

/** libfabric and the providers it offers for an RDM endpoint with RMA. */
export interface LibfabricReport extends LibraryReport {
  /** Provider names in libfabric's order of preference, e.g. ["tcp;ofi_rxm", "shm"]; empty when it does not load. */
  readonly providers: readonly string[];
}

/** One UCX transport and its devices ("tcp": ["lo", "eth0"]). */
export interface UcxTransport {
  /** The transport ("tcp", "posix", "sysv", "cma", "self", "rc_mlx5", ...). */
  readonly name: string;
  /** Its devices; empty when only the library's own view (uct components) was available. */
  readonly devices: readonly string[];
}

/** UCX and its transports. */
export interface UcxReport extends LibraryReport {
  /** Transports with their devices; empty when UCX does not load. */
  readonly transports: readonly UcxTransport[];
  /** Where the transports come from: `ucx_info -d`, or UCX's uct components through the library's own binding. */
  readonly transportsFrom: "ucx_info" | "uct components" | null;
}

/** Open MPI and its launcher. */
export interface MpiReport extends LibraryReport {
  /** The path of mpirun found on PATH, or null. */
  readonly mpirun: string | null;
}

/** The libraries' part of the report. */
export interface LibraryChecks {
  readonly libfabric: LibfabricReport;
  readonly ucx: UcxReport;
  readonly mpi: MpiReport;
  readonly pmix: LibraryReport;
  readonly findings: readonly Finding[];
}

/** Loads (or fails to load) each library the way the library does, and says what each offers. */
export function checkLibraries(): LibraryChecks {
  const findings: Finding[] = [];
  const libfabric = checkLibfabric(findings);
  const ucxReport = checkUcx(findings);
  const mpi = checkMpi(findings);
  const pmix = report(pmixStatus(), PMIX_LOCATION);
  findings.push(pmix.available
    ? ok("pmix", `${pmix.version} (${pmix.path})`)
    : missing("pmix", PMIX_LOCATION, pmix.reason!, "it is needed only for Job.open() under mpirun, prterun or srun --mpi=pmix"));
  return { libfabric, ucx: ucxReport, mpi, pmix, findings };
}

function checkLibfabric(findings: Finding[]): LibfabricReport {
  const library = report(libfabricStatus(), LIBFABRIC_LOCATION);
  if (!library.available) {
    findings.push(missing("libfabric", LIBFABRIC_LOCATION, library.reason!,
      "without it openProvider() uses the host provider, which moves no data between processes"));
    return { ...library, providers: [] };
  }
  const providers = libfabricProviderNames();
  findings.push(providers.length > 0
    ? ok("libfabric", `${library.version} (${library.path}); providers for RDM endpoints with RMA, first choice first: ${providers.join(", ")}`)
    : warning("libfabric", `${library.version} (${library.path}) loads, but no provider offers an RDM endpoint with RMA`,
      "check FI_PROVIDER and FI_PROVIDER_PATH in the environment, or install a libfabric built with tcp and shm " +
        `(${LIBFABRIC_LOCATION.install})`));
  return { ...library, providers };
}

function checkUcx(findings: Finding[]): UcxReport {
  const library = report(ucxStatus(), UCX_LOCATION);
  if (!library.available) {
    findings.push(missing("ucx", UCX_LOCATION, library.reason!, 'it is needed only for openProvider({ provider: "ucx" })'));
    return { ...library, transports: [], transportsFrom: null };
  }
  const listed = ucxInfoTransports();
  const transports = listed ?? ucx().componentNames().map((name) => ({ name, devices: [] }));
  const shown = transports.map((transport) => (transport.devices.length > 0 ? `${transport.name} (${transport.devices.join(", ")})` : transport.name)).join(", ");
  // Without ucx_info the library's own view (uct components) says which transports, not which devices.
  findings.push(listed !== null
    ? ok("ucx", `${library.version} (${library.path}); transports: ${shown}`)
    : ok("ucx", `${library.version} (${library.path}); uct components: ${shown} (ucx_info, in ucx-utils, would list their devices)`));
  return { ...library, transports, transportsFrom: listed !== null ? "ucx_info" : "uct components" };
}

/**
 * `ucx_info -d`'s transports and devices, or null when it is not on PATH, fails, or may describe
 * another UCX than the one loaded (ALLOCTOOLS_UCX_PATH set).
 */
function ucxInfoTransports(): UcxTransport[] | null {
  const command = Bun.which("ucx_info");
  if (command === null || (process.env[UCX_LOCATION.variable] ?? "") !== "") return null;
  const run = Bun.spawnSync([command, "-d"], { stdout: "pipe", stderr: "ignore", timeout: 10_000 });
  if (run.exitCode !== 0) return null;
  const devices = new Map<string, string[]>();
  let transport: string[] | undefined;
  for (const line of run.stdout.toString().split("\n")) {
    const field = /^#\s*(Transport|Device):\s*(\S+)/.exec(line);
    if (field === null) continue;
    if (field[1] === "Transport") {
      if (!devices.has(field[2]!)) devices.set(field[2]!, []);
      transport = devices.get(field[2]!);
    } else if (transport !== undefined && !transport.includes(field[2]!)) {
      transport.push(field[2]!);
    }
  }
  return devices.size === 0 ? null : [...devices].map(([name, list]) => ({ name, devices: list }));
}

function checkMpi(findings: Finding[]): MpiReport {
  const library = report(mpiStatus(), MPI_LOCATION);
  const mpirun = Bun.which("mpirun");
  if (!library.available) {
    findings.push(missing("mpi", MPI_LOCATION, library.reason!, 'it is needed only for MPI programs (MpiJob, openProvider({ provider: "mpi" }))'));
  } else if (mpirun === null) {
    findings.push(warning("mpi", `${library.version} (${library.path}) loads, but mpirun is not on PATH`,
      "apt-get install openmpi-bin (Debian/Ubuntu), or add Open MPI's bin directory to PATH"));
  } else {
    // "Open MPI v4.1.4, package: Debian OpenMPI, ...": the first part says it (JSON keeps the whole).
    findings.push(ok("mpi", `${library.version!.split(",")[0]} (${library.path}); mpirun: ${mpirun}`));
  }
  return { ...library, mpirun };
}

function report(status: LibraryStatus, location: LibraryLocation): LibraryReport {
  const { variable, install } = location;
  return status.available
    ? { available: true, version: status.version, path: status.path, reason: null, variable, install }
    : { available: false, version: null, path: null, reason: status.reason, variable, install };
}

/** The warning for an optional library that does not load: what was tried, why, and how to install it. */
function missing(section: Section, location: LibraryLocation, reason: string, why: string): Finding {
  const causeAt = reason.lastIndexOf("Cause: ");
  const path = process.env[location.variable] ?? "";
  const tried = path !== "" ? `${location.variable}=${path}` : location.names.join(", ");
  // Without a cause the library was found but does not fit (its version, or not Open MPI): the loader's words.
  const found = causeAt < 0 ? reason : `${location.name} is not loaded (tried ${tried}: ${reason.slice(causeAt + 7)})`;
  return warning(section, `${found}; ${why}`,
    `install it with ${location.install}, or point ${location.variable} at ${location.names[0]}`);
}
