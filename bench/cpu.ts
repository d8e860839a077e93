// Pinning for benchmarks against a busy-polling peer on a small machine: the peer on CPU 1, the
// initiators (C's and this process) on CPU 0, so that neither side's scheduling decides a ratio.
// Without taskset, or on one CPU, nothing is pinned and `pinnable` says so.

const taskset = Bun.which("taskset");

/** Whether commands and this process can be pinned here. */
export const pinnable = taskset !== null && navigator.hardwareConcurrency >= 2;

/** argv prefix that runs a command on `cpu` where taskset exists. */
export const onCpu = (cpu: number): string[] => (pinnable ? [taskset!, "-c", String(cpu)] : []);

/** Pins this process (all its threads) to `cpus`, e.g. "0" or "0-1"; a no-op without taskset. */
export function pinSelf(cpus: string): void {
  if (pinnable) Bun.spawnSync([taskset!, "-a", "-p", "-c", cpus, String(process.pid)], { stdout: "ignore", stderr: "ignore" });
}

/** Every CPU, for pinSelf after a pinned measurement. */
export const allCpus = (): string => `0-${navigator.hardwareConcurrency - 1}`;
