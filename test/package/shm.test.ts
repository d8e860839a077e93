// Issue 13, item 5: the shm traps. A node given to shm (as tcp wants it) made a second process's
// endpoint fail fi_enable with EBUSY; a process that ended without close() left its
// /dev/shm/<pid>:… file behind.
import { expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { describeFabric } from "../helpers.ts";

const root = `${import.meta.dir}/../..`;

/** Starts a Bun process running `code` (cwd: the repository). */
function spawnBun(code: string) {
  return Bun.spawn([process.execPath, "-e", code], { cwd: root, stdin: "pipe", stdout: "pipe", stderr: "pipe", env: { ...process.env } });
}

/** Reads a child's stdout until a line starting with `prefix`. */
async function lineStartingWith(stream: ReadableStream<Uint8Array>, prefix: string): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of stream) {
    text += decoder.decode(chunk, { stream: true });
    const line = text.split("\n").find((l) => l.startsWith(prefix));
    if (line !== undefined) return line;
  }
  throw new Error(`no line starting with ${prefix} in ${JSON.stringify(text)}`);
}

/**
 * The /dev/shm files named after `pid` (shm names them pid:tag:count), but for those in `before`:
 * a process that had the same pid earlier and was killed may have left one.
 */
function shmFilesOf(pid: number, before: ReadonlySet<string> = new Set()): string[] {
  return readdirSync("/dev/shm").filter((name) => name.startsWith(`${pid}:`) && !before.has(name));
}

describeFabric("shm traps", () => {
  test("two processes given node 127.0.0.1 both get an endpoint, and are told node is ignored", async () => {
    const holder = `
      import { Endpoint, LibfabricProvider } from "./lib/index.ts";
      const provider = LibfabricProvider.open({ provider: "shm", node: "127.0.0.1" });
      const endpoint = new Endpoint(provider);
      console.log("ready " + Buffer.from(endpoint.name).toString("latin1").replace(/\\0+$/, ""));
      for await (const _ of Bun.stdin.stream()) break;
      endpoint.close(); provider.close();`;
    const first = spawnBun(holder);
    const firstReady = await lineStartingWith(first.stdout, "ready ");
    const second = spawnBun(holder);
    const secondExit = Promise.race([lineStartingWith(second.stdout, "ready "), second.exited.then(() => "exited")]);
    const secondReady = await secondExit;
    for (const child of [first, second]) void child.stdin.end();
    await Promise.all([first.exited, second.exited]);
    const secondErr = await new Response(second.stderr).text();
    expect(secondReady).toStartWith("ready ");
    expect(secondReady).not.toBe(firstReady);
    expect(secondErr).not.toContain("fi_enable failed");
    expect(secondErr).toContain(`AllocToolsWarning: alloctools: the shm provider ignores node "127.0.0.1"`);
  }, 20_000);

  for (const ending of ["falls off the end", "calls process.exit(3)"] as const) {
    test(`a process that ${ending} without close() leaves no /dev/shm file`, async () => {
      const before = new Set(readdirSync("/dev/shm"));
      const child = spawnBun(`
        import { readdirSync } from "node:fs";
        import { Endpoint, LibfabricProvider, MemoryPool } from "./lib/index.ts";
        const provider = LibfabricProvider.open({ provider: "shm" });
        const endpoint = new Endpoint(provider);
        const pool = new MemoryPool(provider);
        pool.getRegion(4000);
        console.log("files " + readdirSync("/dev/shm").filter((n) => n.startsWith(process.pid + ":")).join(","));
        ${ending === "calls process.exit(3)" ? "process.exit(3);" : ""}`);
      const line = await lineStartingWith(child.stdout, "files ");
      const exitCode = await child.exited;
      const files = line.slice("files ".length).split(",").filter((name) => !before.has(name));
      // While it ran, shm had its file (named pid:tag:count by Endpoint): the check below means something.
      expect(files).toHaveLength(1);
      expect(files[0]).toMatch(new RegExp(`^${child.pid}:[0-9a-f]{12}:0$`));
      expect(exitCode).toBe(ending === "calls process.exit(3)" ? 3 : 0);
      expect(shmFilesOf(child.pid, before)).toEqual([]);
      expect(existsSync(`/dev/shm/${files[0]}`)).toBe(false);
    }, 20_000);
  }
});
