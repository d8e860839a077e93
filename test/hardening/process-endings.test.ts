// A process ended by a signal, with each transport open, in child processes: it ends by that signal
// (the conventional status, 128 + the signal's number, as without alloctools) and leaves nothing
// behind, unless the user handles the signal, and then the process goes on as the user said. And a
// process whose main thread exits while a Worker holds an shm endpoint leaves no file either.
// - libfabric shm: SIGHUP left one /dev/shm file per endpoint (shm unlinks them only on SIGINT
//   and SIGTERM); and once libfabric was loaded, SIGINT, SIGTERM and SIGABRT ended the process with
//   status 1 (libinfinipath's handlers), not by the signal.
// - libfabric shm in a Worker: the main thread's exit ends Workers without their exit events, so
//   their endpoints never closed and their files stayed.
// - UCX: libucs took SIGHUP as its debug signal, so the process did not end on SIGHUP at all.
// - MPI (a singleton; under mpirun see test/mpi/exit.test.ts): SIGHUP, SIGINT, SIGTERM end it.
import { expect, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describeFabric, describeMpi, describeUcx } from "../helpers.ts";

const root = `${import.meta.dir}/../..`;
type Signal = "SIGHUP" | "SIGINT" | "SIGTERM" | "SIGABRT";
const STATUS: Record<Signal, number> = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143, SIGABRT: 134 };

/** Starts `code` in a Bun child (cwd: the repository); `prefix` runs it under that command (nohup). */
function spawnBun(code: string, env: Record<string, string | undefined> = {}, prefix: string[] = []) {
  return Bun.spawn([...prefix, process.execPath, "-e", code], {
    cwd: root, stdin: "pipe", stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } as Record<string, string>,
  });
}

/** Reads lines of a child's stdout, one at a time. */
function lines(stream: ReadableStream<Uint8Array>): () => Promise<string> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let text = "";
  return async () => {
    for (;;) {
      const end = text.indexOf("\n");
      if (end >= 0) {
        const line = text.slice(0, end);
        text = text.slice(end + 1);
        return line;
      }
      const { value, done } = await reader.read();
      if (done) throw new Error(`the child's output ended without a line (${JSON.stringify(text)})`);
      text += decoder.decode(value, { stream: true });
    }
  };
}

function shmFilesOf(pid: number): string[] {
  return readdirSync("/dev/shm").filter((name) => name.startsWith(`${pid}:`)).sort();
}

/** How a child ended: by a signal (its name) or with an exit code. */
async function ending(child: ReturnType<typeof spawnBun>): Promise<string> {
  const code = await child.exited;
  return child.signalCode !== null ? String(child.signalCode) : `exit ${code}`;
}

/** A child with two shm endpoints and a pool, its files listed on its first line. */
const SHM_HOLDER = `
  import { Endpoint, LibfabricProvider, MemoryPool } from "./lib/index.ts";
  const setUp = process.env.HANDLER_FIRST === "1";
  const handle = () => process.on("SIGHUP", () => console.log("hangup handled"));
  if (setUp) handle();
  const provider = LibfabricProvider.open({ provider: "shm" });
  const endpoints = [new Endpoint(provider), new Endpoint(provider)];
  new MemoryPool(provider).getRegion(4000);
  if (process.env.HANDLER_AFTER === "1") handle();
  const { readdirSync } = await import("node:fs");
  console.log("files " + readdirSync("/dev/shm").filter((n) => n.startsWith(process.pid + ":")).sort().join(","));
  for await (const line of console) if (line === "exit") process.exit(0);
`;

describeFabric("libfabric shm endpoints open: signals and exits", () => {
  for (const signal of ["SIGHUP", "SIGINT", "SIGTERM"] as const) {
    test(`${signal}: the process ends by ${signal} (status ${STATUS[signal]}) and no /dev/shm file of its pid remains`, async () => {
      const child = spawnBun(SHM_HOLDER);
      const files = (await lines(child.stdout)()).slice("files ".length).split(",");
      expect(files).toEqual(shmFilesOf(child.pid)); // two endpoints, two files: the check below means something
      expect(files.length).toBe(2);
      child.kill(signal);
      expect(await ending(child)).toBe(signal);
      expect(shmFilesOf(child.pid)).toEqual([]);
    }, 20_000);
  }

  for (const when of ["before", "after"] as const) {
    test(`a SIGHUP handler of the user's, installed ${when} the endpoints: the process goes on with its files, and exits cleaning them`, async () => {
      const child = spawnBun(SHM_HOLDER, when === "before" ? { HANDLER_FIRST: "1" } : { HANDLER_AFTER: "1" });
      const next = lines(child.stdout);
      const files = (await next()).slice("files ".length).split(",");
      child.kill("SIGHUP");
      expect(await next()).toBe("hangup handled");
      expect(shmFilesOf(child.pid)).toEqual(files);
      child.stdin.write("exit\n");
      await child.stdin.end();
      expect(await ending(child)).toBe("exit 0");
      expect(shmFilesOf(child.pid)).toEqual([]);
    }, 20_000);
  }

  test("SIGHUP ignored (nohup): the process goes on with its files and exits cleaning them", async () => {
    const child = spawnBun(SHM_HOLDER, {}, ["nohup"]);
    const next = lines(child.stdout);
    const files = (await next()).slice("files ".length).split(",");
    child.kill("SIGHUP");
    await Bun.sleep(300);
    expect(child.exitCode).toBeNull();
    expect(shmFilesOf(child.pid)).toEqual(files);
    child.stdin.write("exit\n");
    await child.stdin.end();
    expect(await ending(child)).toBe("exit 0");
    expect(shmFilesOf(child.pid)).toEqual([]);
  }, 20_000);

  for (const how of ["process.exit(0)", "the end of the program"] as const) {
    test(`the main thread ends (${how}) while a Worker holds an shm endpoint: no /dev/shm file of the pid remains`, async () => {
      const child = spawnBun(`
        import { readdirSync } from "node:fs";
        import "./lib/index.ts";
        const source = 'const { Endpoint, LibfabricProvider } = await import(' + JSON.stringify(process.cwd() + "/lib/index.ts") + ');' +
          'new Endpoint(LibfabricProvider.open({ provider: "shm" })); postMessage("open");' +
          'setInterval(() => {}, 1000);'; // the Worker stays, holding its endpoint, until the process ends
        const worker = new Worker(URL.createObjectURL(new Blob([source], { type: "application/typescript" })));
        await new Promise((resolve) => (worker.onmessage = resolve));
        console.log("files " + readdirSync("/dev/shm").filter((n) => n.startsWith(process.pid + ":")).join(","));
        ${how === "process.exit(0)" ? "process.exit(0);" : "worker.unref();"}`);
      const files = (await lines(child.stdout)()).slice("files ".length);
      expect(files).toMatch(new RegExp(`^${child.pid}:[0-9a-f]{12}:0$`)); // the Worker's file was there
      expect(await ending(child)).toBe("exit 0");
      expect(shmFilesOf(child.pid)).toEqual([]);
    }, 20_000);
  }

  for (const signal of ["SIGINT", "SIGTERM", "SIGABRT"] as const) {
    test(`libfabric loaded (a tcp provider): ${signal} ends the process by ${signal}, not with status 1`, async () => {
      const child = spawnBun(`
        import { LibfabricProvider } from "./lib/index.ts";
        LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" });
        console.log("ready");
        for await (const _ of console) break;`);
      await lines(child.stdout)();
      child.kill(signal);
      expect(await ending(child)).toBe(signal);
    }, 20_000);
  }
});

describeUcx("signals with a UCX endpoint open", () => {
  for (const signal of ["SIGHUP", "SIGINT", "SIGTERM"] as const) {
    test(`${signal}: the process ends by ${signal} (libucs's debug handler does not keep SIGHUP)`, async () => {
      const child = spawnBun(`
        import { MemoryPool, UcxEndpoint, UcxProvider } from "./lib/index.ts";
        const provider = UcxProvider.open({ transports: "posix,cma" });
        new MemoryPool(provider).getRegion(4000);
        new UcxEndpoint(provider);
        console.log("ready");
        for await (const _ of console) break;`, { UCX_DEBUG_SIGNO: undefined });
      await lines(child.stdout)();
      child.kill(signal);
      const ended = await Promise.race([ending(child), Bun.sleep(5000).then(() => "still running")]);
      if (ended === "still running") child.kill("SIGKILL");
      expect(ended).toBe(signal);
    }, 20_000);
  }

  test("UCX_DEBUG_SIGNO=HUP asks for libucs's debug signal: SIGHUP then raises UCX's log level and the process goes on", async () => {
    const child = spawnBun(`
      import { UcxProvider } from "./lib/index.ts";
      UcxProvider.open({ transports: "posix,cma" });
      console.log("ready");
      for await (const line of console) if (line === "exit") process.exit(0);`, { UCX_DEBUG_SIGNO: "HUP" });
    await lines(child.stdout)();
    child.kill("SIGHUP");
    await Bun.sleep(300);
    expect(child.exitCode).toBeNull();
    child.stdin.write("exit\n");
    await child.stdin.end();
    expect(await ending(child)).toBe("exit 0");
  }, 20_000);
});

describeMpi("signals with MPI initialized (a singleton)", () => {
  for (const signal of ["SIGHUP", "SIGINT", "SIGTERM"] as const) {
    test(`${signal}: the process ends by ${signal}; of Open MPI's session files only an empty directory remains`, async () => {
      // Open MPI's session directory goes to a directory of this test's, removed afterwards.
      const sessions = mkdtempSync(join(tmpdir(), "alloctools-ompi-"));
      try {
        const child = spawnBun(`
          import { MpiJob } from "./lib/index.ts";
          MpiJob.open();
          console.log("ready");
          for await (const _ of console) break;`, { OMPI_COMM_WORLD_SIZE: undefined, PMIX_RANK: undefined, OMPI_MCA_orte_tmpdir_base: sessions });
        await lines(child.stdout)();
        child.kill(signal);
        expect(await ending(child)).toBe(signal);
        await Bun.sleep(300); // the singleton's helper notices and cleans up
        const files = readdirSync(sessions, { recursive: true, withFileTypes: true }).filter((entry) => !entry.isDirectory());
        expect(files.map((entry) => entry.name)).toEqual([]);
      } finally {
        rmSync(sessions, { recursive: true, force: true });
      }
    }, 20_000);
  }
});
