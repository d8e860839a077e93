// Issue 25, item 5: `alloctools doctor` and `info --json`, run as a user runs them (a process of
// their own, bin/alloctools.ts): on this machine as it is, with libraries hidden, with too little
// RLIMIT_MEMLOCK, under a launcher's variables, and with --clean on a directory of shared-memory
// files made here for processes that are gone and for one that runs.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fabric, mpi, REQUIRE_LIBFABRIC, REQUIRE_MPI, REQUIRE_UCX, ucx } from "../helpers.ts";
import { REQUIRE_PMIX } from "../jobs/gates.ts";
import { pmixStatus } from "../../ffi/pmix.ts";
import { initialPinnedBytes } from "../../lib/pool/pool-core.ts";
import { checkOptions, DEFAULT_STACKS } from "../../lib/pool/pool-options.ts";
import type { DoctorReport } from "../../lib/doctor/doctor.ts";

const bin = join(import.meta.dir, "..", "..", "bin", "alloctools.ts");
const SECTIONS = ["bun", "host", "memlock", "libfabric", "ucx", "mpi", "pmix", "launcher", "hugePages", "shm", "cpus"] as const;
const directories: string[] = [];

/** An empty directory of this test's own, to stand for /dev/shm. */
function emptyDirectory(): string {
  const directory = mkdtempSync(join(tmpdir(), "alloctools-doctor-"));
  directories.push(directory);
  return directory;
}

afterAll(() => {
  for (const directory of directories) rmSync(directory, { recursive: true, force: true });
});

function doctor(args: string[], env: Record<string, string | undefined> = {}, prefix: string[] = []) {
  const merged = Object.fromEntries(Object.entries({ ...process.env, ...env }).filter((entry): entry is [string, string] => entry[1] !== undefined));
  const r = Bun.spawnSync([...prefix, process.execPath, bin, ...args], { env: merged, stdout: "pipe", stderr: "pipe" });
  return { exitCode: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/** The line of `section`, which must be there exactly once. */
function line(stdout: string, section: string): string {
  const lines = stdout.split("\n").filter((l) => new RegExp(`^[✓!✗] ${section}: `).test(l));
  if (lines.length !== 1) throw new Error(`expected one "${section}" line, got ${lines.length}:\n${stdout}`);
  return lines[0]!;
}

describe("alloctools doctor", () => {
  test("on this machine: exit 0, a line for every section, each library as its loader sees it", () => {
    const r = doctor(["doctor"]);
    expect(r.stderr).toBe("");
    expect(r.exitCode).toBe(0);
    for (const section of SECTIONS.filter((s) => s !== "shm")) line(r.stdout, section);
    expect(r.stdout).toMatch(/^[✓!] shm: /m);
    expect(line(r.stdout, "bun")).toStartWith(`✓ bun: Bun ${Bun.version}`);
    expect(line(r.stdout, "host")).toStartWith("✓ host: a default MemoryPool on the host provider pinned 3.75 MiB");
    expect(r.stdout.trim().split("\n").at(-1)).toStartWith("alloctools can run here");
    if (REQUIRE_LIBFABRIC) expect(fabric.available).toBe(true);
    if (REQUIRE_UCX) expect(ucx.available).toBe(true);
    if (REQUIRE_MPI) expect(mpi.available).toBe(true);
    const pmix = pmixStatus();
    if (REQUIRE_PMIX) expect(pmix.available).toBe(true);
    if (fabric.available) expect(line(r.stdout, "libfabric")).toMatch(new RegExp(`^✓ libfabric: ${fabric.version} .*providers .*\\bshm\\b`));
    if (ucx.available) expect(line(r.stdout, "ucx")).toMatch(new RegExp(`^✓ ucx: ${ucx.version.replaceAll(".", "\\.")} .*\\bself\\b`));
    if (mpi.available) expect(line(r.stdout, "mpi")).toContain(`mpirun: ${mpi.mpirun}`);
    if (pmix.available) expect(line(r.stdout, "pmix")).toStartWith(`✓ pmix: ${pmix.version}`);
    for (const status of [fabric, ucx, mpi, pmix]) if (!status.available) expect(r.stdout).toContain("Fix: install it with");
  });

  test("with libfabric and UCX hidden: a warning naming the path and the install command each, still exit 0", () => {
    const r = doctor(["doctor", "--shm-dir", emptyDirectory()], { ALLOCTOOLS_LIBFABRIC_PATH: "/nonexistent", ALLOCTOOLS_UCX_PATH: "/nonexistent" });
    expect(r.exitCode).toBe(0);
    const libfabric = line(r.stdout, "libfabric");
    expect(libfabric).toStartWith("! libfabric: libfabric is not loaded (tried ALLOCTOOLS_LIBFABRIC_PATH=/nonexistent: ");
    expect(libfabric).toContain("Fix: install it with 'apt-get install libfabric1'");
    expect(libfabric).toContain("or point ALLOCTOOLS_LIBFABRIC_PATH at libfabric.so.1");
    const ucxLine = line(r.stdout, "ucx");
    expect(ucxLine).toStartWith("! ucx: UCX is not loaded (tried ALLOCTOOLS_UCX_PATH=/nonexistent: ");
    expect(ucxLine).toContain("Fix: install it with 'apt-get install libucx0'");
    expect(line(r.stdout, "host")).toStartWith("✓ host: ");
    expect(r.stdout).toMatch(/alloctools can run here \(\d+ warnings/);
  });

  test("info --json: one object with the documented keys, the same findings, the default pool's bytes as the pool counts them", () => {
    const r = doctor(["info", "--json", "--shm-dir", emptyDirectory()], { ALLOCTOOLS_UCX_PATH: "/nonexistent" });
    expect(r.exitCode).toBe(0);
    const report = JSON.parse(r.stdout) as DoctorReport;
    expect(Object.keys(report)).toEqual(["schema", "ok", "bun", "host", "memlock", "libfabric", "ucx", "mpi", "pmix", "launcher", "hugePages", "shm", "cpus", "findings"]);
    expect(report.schema).toBe("alloctools-doctor/1");
    expect(report.ok).toBe(true);
    expect(report.bun).toEqual({ version: Bun.version, required: ">=1.4", satisfied: true });
    // 1 KiB × 256 + 16 KiB × 32 + 64 KiB × 16 + 1 MiB × 2, from the defaults, as a real pool pinned it.
    const fromDefaults = Object.values(DEFAULT_STACKS).reduce((sum, s) => sum + s.chunkSize * s.initialCount, 0);
    expect(report.memlock.defaultPoolBytes).toBe(fromDefaults);
    expect(report.memlock.defaultPoolBytes).toBe(initialPinnedBytes(checkOptions({})));
    expect(report.host).toEqual({ ok: true, pinnedBytes: fromDefaults, error: null });
    expect(Object.keys(report.memlock)).toEqual(["softBytes", "hardBytes", "defaultPoolBytes", "capIpcLock", "enough"]);
    expect(report.ucx).toMatchObject({ available: false, version: null, path: null, variable: "ALLOCTOOLS_UCX_PATH", transports: [], transportsFrom: null });
    expect(report.ucx.reason).toContain("ALLOCTOOLS_UCX_PATH=/nonexistent");
    if (fabric.available) expect(report.libfabric.providers).toContain("shm");
    expect(report.launcher.name).toBe(null);
    expect(report.shm).toEqual({ directory: report.shm.directory, files: [], removed: [], failed: [] });
    expect(report.cpus.count).toBeGreaterThan(0);
    expect(Object.keys(report.hugePages)).toEqual(["mode", "usable"]);
    // The findings are the text report's lines, in order.
    const text = doctor(["doctor", "--shm-dir", report.shm.directory], { ALLOCTOOLS_UCX_PATH: "/nonexistent" }).stdout;
    expect(report.findings.map((f) => `${f.section}:${f.level}`)).toEqual(
      text.trim().split("\n").slice(0, -1).map((l) => `${/^. (\w+):/.exec(l)![1]}:${{ "✓": "ok", "!": "warning", "✗": "error" }[l[0]!]}`));
    for (const finding of report.findings) expect(Object.keys(finding)).toEqual(["section", "level", "message", "fix"]);
  });

  const prlimit = Bun.which("prlimit");
  const setpriv = Bun.which("setpriv");
  test.skipIf(!prlimit || !setpriv)("with RLIMIT_MEMLOCK below the default pool and no CAP_IPC_LOCK: ✗ memlock and host, exit 1", () => {
    const r = doctor(["doctor", "--shm-dir", emptyDirectory()], {},
      [prlimit!, "--memlock=65536:65536", setpriv!, "--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock"]);
    expect(r.exitCode).toBe(1);
    expect(line(r.stdout, "memlock")).toStartWith("✗ memlock: RLIMIT_MEMLOCK is 64 KiB, less than the 3.75 MiB a default pool pins");
    expect(line(r.stdout, "memlock")).toContain("Fix: raise RLIMIT_MEMLOCK: 'ulimit -l unlimited'");
    expect(line(r.stdout, "host")).toStartWith("✗ host: a default MemoryPool on the host provider failed: mlock failed");
    expect(r.stdout.trim().split("\n").at(-1)).toBe("alloctools cannot run here as it is: fix the ✗ lines");
  });

  test("under a launcher's variables without a PMIx server: a warning with how to launch, exit 0", () => {
    const r = doctor(["doctor", "--shm-dir", emptyDirectory()], { SLURM_PROCID: "0", SLURM_NTASKS: "2", PMIX_NAMESPACE: undefined });
    expect(r.exitCode).toBe(0);
    expect(line(r.stdout, "launcher")).toStartWith("! launcher: srun without --mpi=pmix, 2 tasks, without a PMIx server");
    expect(line(r.stdout, "launcher")).toContain("srun --mpi=pmix -n 4 bun app.ts");
  });

  test.skipIf(!ucx.available && !REQUIRE_UCX)("without ucx_info and mpirun on PATH: UCX's own view (uct components), mpirun missing", () => {
    const r = doctor(["doctor", "--shm-dir", emptyDirectory()], { PATH: "/nonexistent" });
    expect(r.exitCode).toBe(0);
    expect(line(r.stdout, "ucx")).toMatch(/^✓ ucx: [\d.]+ \(libucp\.so\.0\); uct components: .*\bself\b.*\bposix\b.* \(ucx_info, in ucx-utils, would list their devices\)$/);
    if (mpi.available) {
      expect(line(r.stdout, "mpi")).toMatch(/^! mpi: Open MPI .* loads, but mpirun is not on PATH\. Fix: apt-get install openmpi-bin/);
    }
  });

  test("--help, and a bad command line is exit 2", () => {
    const help = doctor(["--help"]);
    expect(help.exitCode).toBe(0);
    expect(help.stdout).toContain("bunx alloctools <command>");
    expect(help.stdout).toContain("--clean");
    const bad = doctor(["doctor", "--frobnicate"]);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain('unknown argument "--frobnicate"');
  });
});

describe("alloctools doctor: files left in /dev/shm", () => {
  test("finds a file in /dev/shm itself that a process which exited left, names alloctools and the process", () => {
    const gone = Bun.spawnSync(["true"]).pid;
    const name = `${gone}:0123456789ab:0`;
    writeFileSync(join("/dev/shm", name), "left by a process that exited");
    try {
      // Without --clean: other sessions' files in /dev/shm are theirs to remove.
      const r = doctor(["info", "--json"]);
      expect(r.exitCode).toBe(0);
      const report = JSON.parse(r.stdout) as DoctorReport;
      expect(report.shm.directory).toBe("/dev/shm");
      expect(report.shm.files.find((file) => file.name === name)).toEqual({
        name, kind: "libfabric-shm", alloctools: true, pid: gone, command: null, state: "stale", why: `process ${gone} is gone`, bytes: 29,
      });
      expect(report.shm.removed).toEqual([]);
    } finally {
      rmSync(join("/dev/shm", name), { force: true });
    }
  });


  test("removes the files of processes that are gone, and leaves a running process's files and other files alone", async () => {
    const directory = emptyDirectory();
    const exited = Bun.spawnSync(["true"]);
    const gone = exited.pid;
    const held = join(directory, "ucx_shm_posix_1f2e3d");
    writeFileSync(held, "a segment a running process holds open");
    // A running process: it holds the UCX segment open until killed.
    const running = Bun.spawn([process.execPath, "-e", `require("node:fs").openSync(${JSON.stringify(held)}, "r"); console.log("ready"); setInterval(() => {}, 1000);`],
      { stdout: "pipe", stderr: "inherit" });
    try {
      const reader = running.stdout.getReader();
      expect(new TextDecoder().decode((await reader.read()).value)).toContain("ready");
      const live = running.pid;
      const files = {
        goneOwn: `${gone}:0123456789ab:0`, // alloctools' name, process gone
        goneDefault: `${gone}:0:1`, // libfabric's default name, process gone
        liveOwn: `${live}:0123456789ab:0`, // the running process's
        reused: `${live}:0123456789ab:1`, // written an hour before the running process started: its pid was reused
        ucxHeld: "ucx_shm_posix_1f2e3d",
        ucxLeft: "ucx_shm_posix_4c5b6a", // nobody maps it or holds it open
        other: "notes.txt", // not a transport's
      };
      for (const name of Object.values(files)) if (name !== files.ucxHeld) writeFileSync(join(directory, name), "x".repeat(4096));
      const anHourAgo = new Date(Date.now() - 3600_000);
      utimesSync(join(directory, files.reused), anHourAgo, anHourAgo);

      const look = doctor(["info", "--json", "--shm-dir", directory]);
      expect(look.exitCode).toBe(0);
      const before = (JSON.parse(look.stdout) as DoctorReport).shm.files;
      const state = (name: string) => before.find((f) => f.name === name);
      expect(state(files.goneOwn)).toMatchObject({ kind: "libfabric-shm", alloctools: true, pid: gone, state: "stale", why: `process ${gone} is gone` });
      expect(state(files.goneDefault)).toMatchObject({ kind: "libfabric-shm", alloctools: false, pid: gone, state: "stale" });
      expect(state(files.liveOwn)).toMatchObject({ kind: "libfabric-shm", alloctools: true, pid: live, state: "live" });
      expect(state(files.liveOwn)!.command).toContain(process.execPath);
      expect(state(files.reused)).toMatchObject({ pid: live, state: "stale" });
      expect(state(files.ucxHeld)).toMatchObject({ kind: "ucx-posix", alloctools: null, pid: live, state: "live" });
      expect(state(files.ucxLeft)).toMatchObject({ kind: "ucx-posix", pid: null, state: "stale" });
      expect(state(files.other)).toBeUndefined();
      expect(readdirSync(directory).sort()).toEqual(Object.values(files).sort()); // looking removes nothing

      // Listed in name order, with the processes that made them.
      const staleOwn = [files.goneOwn, files.reused].sort();
      const stalePids = staleOwn.map((name) => name.split(":")[0]).join(", ");
      const text = doctor(["doctor", "--shm-dir", directory]);
      expect(text.stdout).toContain(`! shm: 2 files (8 KiB) of alloctools' libfabric shm endpoints, left by processes that are gone (${stalePids}): ${staleOwn.join(", ")}. Fix`);
      expect(text.stdout).toContain("Fix: 'bunx alloctools doctor --clean' removes the files whose process is gone");

      const clean = doctor(["doctor", "--clean", "--shm-dir", directory]);
      expect(clean.exitCode).toBe(0);
      expect(readdirSync(directory).sort()).toEqual([files.liveOwn, files.ucxHeld, files.other].sort());
      expect(clean.stdout).toContain(`✓ shm: removed 2 files (8 KiB) of alloctools' libfabric shm endpoints, left by processes that are gone (${stalePids}): ${staleOwn.join(", ")}`);
      expect(clean.stdout).toContain(`✓ shm: removed 1 file (4 KiB) of libfabric shm endpoints under libfabric's default names (not alloctools'), left by process ${gone}, which is gone`);
      expect(clean.stdout).toMatch(new RegExp(`✓ shm: 1 file \\(4 KiB\\) of alloctools' libfabric shm endpoints in use by process ${live} `));
      expect(clean.stdout).not.toMatch(/^! shm/m);
    } finally {
      running.kill();
      await running.exited;
    }
  });
});
