// The bound on MPI_Finalize at exit (ffi/exit-watchdog.ts), in child processes: a call that blocks
// past the bound ends the process by SIGALRM with the message on stderr, with the C handler and
// without it (bun:ffi's cc unavailable); a call that returns in time leaves SIGALRM as it was.
import { expect, test } from "bun:test";

/** runBun with the signal that ended the child, if one did. */
function runChild(code: string) {
  const r = Bun.spawnSync([process.execPath, "-e", code], { cwd: `${import.meta.dir}/../..`, stdout: "pipe", stderr: "pipe" });
  return { exitCode: r.exitCode, signalCode: r.signalCode ?? null, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

const blockFor = (ms: number) => `() => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ${ms})`;

for (const form of ["boundedAtExit", "boundedWithoutCompiler"] as const) {
  test(`${form}: a call blocked past the bound ends the process by SIGALRM, saying the message`, () => {
    const started = performance.now();
    const r = runChild(`
      const { ${form} } = await import("./ffi/exit-watchdog.ts");
      ${form}(300, "the bound passed", ${blockFor(10_000)});
      console.log("returned");
    `);
    expect(performance.now() - started).toBeLessThan(8000);
    expect(r.signalCode, `exit ${r.exitCode}: ${r.stderr}`).toBe("SIGALRM");
    expect(r.stdout).not.toContain("returned");
    expect(r.stderr).toContain("the bound passed");
  }, 30_000);

  test(`${form}: a call that returns in time returns its value, the timer is stopped and SIGALRM is back to its default`, () => {
    const r = runChild(`
      const { ${form} } = await import("./ffi/exit-watchdog.ts");
      const libc = await import("./ffi/libc.ts");
      const value = ${form}(500, "the bound passed", () => { ${blockFor(50)}(); return 42; });
      await Bun.sleep(800); // past the bound: the timer was stopped
      console.log(JSON.stringify({ value, handler: String(libc.signalHandler(14)) }));
    `);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim())).toEqual({ value: 42, handler: "0" });
    if (form === "boundedAtExit") expect(r.stderr).not.toContain("the bound passed");
  }, 30_000);
}
