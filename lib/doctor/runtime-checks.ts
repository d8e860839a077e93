// The runtime and the processor, as the doctor reports them: the Bun version against the
// package's engines.bun, and the CPUs (how many, how many this process may use, and whether this
// looks like a virtual machine, where timings vary more).
import { readFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { error, ok, warning, type Finding } from "./finding.ts";

/** Bun in `info --json`. */
export interface BunReport {
  /** Bun.version. */
  readonly version: string;
  /** The package's engines.bun, e.g. ">=1.4". */
  readonly required: string;
  /** Whether the version satisfies it. */
  readonly satisfied: boolean;
}

/** The CPUs in `info --json`. */
export interface CpuReport {
  /** CPUs in the machine (os.cpus()). */
  readonly count: number;
  /** CPUs this process may run on (affinity and cgroup limits: os.availableParallelism()). */
  readonly available: number;
  /** The model name, e.g. "AMD EPYC 7B13". */
  readonly model: string;
  /** Whether the CPU reports a hypervisor (the "hypervisor" flag of /proc/cpuinfo). */
  readonly virtualMachine: boolean;
}

/** The package's own package.json (beside lib/, in the repository and in node_modules/alloctools). */
const PACKAGE_JSON = join(import.meta.dir, "..", "..", "package.json");

/** Bun.version against engines.bun. */
export function checkBun(): { bun: BunReport; finding: Finding } {
  const required = (JSON.parse(readFileSync(PACKAGE_JSON, "utf8")) as { engines?: { bun?: string } }).engines?.bun ?? "*";
  const satisfied = Bun.semver.satisfies(Bun.version, required);
  const bun = { version: Bun.version, required, satisfied };
  return {
    bun,
    finding: satisfied
      ? ok("bun", `Bun ${Bun.version} (alloctools needs ${required})`)
      : error("bun", `Bun ${Bun.version} is older than alloctools needs (${required})`,
        "'bun upgrade', or install a newer Bun: curl -fsSL https://bun.sh/install | bash"),
  };
}

/** How many CPUs, how many this process may use, and whether this is a VM. */
export function checkCpus(): { cpus: CpuReport; finding: Finding } {
  const list = os.cpus();
  let flags = "";
  try {
    flags = /^flags\s*:\s*(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "";
  } catch {
    // Not Linux's procfs: no flags to read.
  }
  const cpus: CpuReport = {
    count: list.length,
    available: os.availableParallelism(),
    model: list[0]?.model.trim() ?? "unknown",
    virtualMachine: /\bhypervisor\b/.test(flags),
  };
  const usable = cpus.available < cpus.count ? `, ${cpus.available} of them available to this process` : "";
  const where = cpus.virtualMachine ? "; a virtual machine (the CPU reports a hypervisor): timings vary more than on bare metal" : "";
  const message = `${cpus.count} × ${cpus.model}${usable}${where}`;
  if (cpus.available >= 2) return { cpus, finding: ok("cpus", message) };
  return {
    cpus,
    finding: warning("cpus", `${message}; with one CPU a peer that polls for progress and its target take turns, so latencies are scheduler-bound`,
      "run on 2 or more CPUs, or let the process use more (taskset, cgroup cpuset, docker --cpus)"),
  };
}
