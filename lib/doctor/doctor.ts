// `alloctools doctor`: every check, in the order a newcomer needs them, gathered into one report
// that prints as plain text (one finding per line) or as one JSON object (`info --json`).
import { checkLauncher, type LauncherReport } from "./launcher-check.ts";
import { checkLibraries, type LibfabricReport, type LibraryReport, type MpiReport, type UcxReport } from "./library-checks.ts";
import { checkHostProvider, checkHugePages, checkMemlock, type HostReport, type HugePagesReport, type MemlockReport } from "./memory-checks.ts";
import { checkBun, checkCpus, type BunReport, type CpuReport } from "./runtime-checks.ts";
import { checkShm, type ShmReport } from "./shm-check.ts";
import { findingLine, type Finding } from "./finding.ts";

/** What the doctor found: the data of each section, and the findings (one per line of the text report). */
export interface DoctorReport {
  /** "alloctools-doctor/1": changes only when a key changes meaning or goes away. */
  readonly schema: "alloctools-doctor/1";
  /** Whether everything the library needs is there (Bun, and a default pool on the host provider); the exit code is 0 exactly then. */
  readonly ok: boolean;
  readonly bun: BunReport;
  readonly host: HostReport;
  readonly memlock: MemlockReport;
  readonly libfabric: LibfabricReport;
  readonly ucx: UcxReport;
  readonly mpi: MpiReport;
  readonly pmix: LibraryReport;
  readonly launcher: LauncherReport;
  readonly hugePages: HugePagesReport;
  readonly shm: ShmReport;
  readonly cpus: CpuReport;
  /** Every finding, in the order printed. */
  readonly findings: readonly Finding[];
}

/** What to look at, and whether to remove stale shared-memory files. */
export interface DoctorOptions {
  /** The shared-memory directory; default "/dev/shm". */
  readonly shmDirectory?: string;
  /** Remove the files there whose process is gone. Default false. */
  readonly clean?: boolean;
  /** The environment the launcher is read from; default process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

/** Runs every check; never throws for what it finds (a failing check is a finding). */
export function diagnose(options: DoctorOptions = {}): DoctorReport {
  const bun = checkBun();
  const memlock = checkMemlock();
  const host = checkHostProvider(memlock.memlock);
  const libraries = checkLibraries();
  const launcher = checkLauncher(options.env ?? process.env, libraries.pmix.available);
  const hugePages = checkHugePages();
  const shm = checkShm(options.shmDirectory ?? "/dev/shm", options.clean ?? false);
  const cpus = checkCpus();
  const findings = [
    bun.finding, host.finding, memlock.finding, ...libraries.findings, launcher.finding, hugePages.finding, ...shm.findings, cpus.finding,
  ];
  return {
    schema: "alloctools-doctor/1",
    ok: bun.bun.satisfied && host.host.ok,
    bun: bun.bun,
    host: host.host,
    memlock: memlock.memlock,
    libfabric: libraries.libfabric,
    ucx: libraries.ucx,
    mpi: libraries.mpi,
    pmix: libraries.pmix,
    launcher: launcher.launcher,
    hugePages: hugePages.hugePages,
    shm: shm.shm,
    cpus: cpus.cpus,
    findings,
  };
}

/** The report as plain text: one finding per line, then a verdict line. */
export function reportText(report: DoctorReport): string {
  const warnings = report.findings.filter((finding) => finding.level === "warning").length;
  const verdict = report.ok
    ? `alloctools can run here${warnings > 0 ? ` (${warnings} warning${warnings === 1 ? "" : "s"}: optional parts missing or worth a look)` : ""}`
    : "alloctools cannot run here as it is: fix the ✗ lines";
  return `${report.findings.map(findingLine).join("\n")}\n${verdict}\n`;
}
