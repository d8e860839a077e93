// Builds the C reference programs of bench/c/ with the system C compiler, once per source version,
// into a cache directory. Benchmarks and tests call it; when there is no compiler or no libfabric
// headers it says why instead of failing, so a row can report "not built: <reason>".
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A built program, or why it could not be built. */
export type CProgram = { readonly path: string } | { readonly missing: string };

const built = new Map<string, CProgram>();

/**
 * Compiles `<directory>/<name>.c` (default bench/c/; linked with `libraries`, with bench/c/ on the
 * include path for fabric-common.h) with `cc` (or `$CC`) and returns the binary's path;
 * `{ missing }` says why not. The binary is cached under the temporary directory by the hash of
 * its source, the headers of bench/c/ and its flags, so a changed source or header is rebuilt.
 */
export function buildC(name: string, libraries: readonly string[] = ["-lfabric"], directory: string = import.meta.dir, compiler?: string): CProgram {
  const key = join(directory, name);
  const cached = built.get(key);
  if (cached !== undefined) return cached;
  const result = compile(name, libraries, directory, compiler);
  built.set(key, result);
  return result;
}

/** The RMA peer (target, initiator, registration loop): see rma-peer.c. */
export function rmaPeer(): CProgram {
  return buildC("rma-peer", ["-lfabric", "-lpthread"]);
}

function compile(name: string, libraries: readonly string[], directory: string, chosenCompiler?: string): CProgram {
  // `chosenCompiler` (e.g. mpicc) overrides $CC.
  const compiler = chosenCompiler ?? (process.env.CC || "cc");
  if (Bun.which(compiler) === null) return { missing: `no C compiler (${compiler} not found; apt-get install gcc)` };
  const source = join(directory, `${name}.c`);
  const flags = ["-O2", "-Wall", `-I${import.meta.dir}`, "-o"];
  // The headers of bench/c/ count too: a changed header rebuilds every program.
  const hash = createHash("sha256").update(readFileSync(source));
  for (const header of readdirSync(import.meta.dir).filter((f) => f.endsWith(".h")).sort()) hash.update(readFileSync(join(import.meta.dir, header)));
  const digest = hash.update(flags.join(" ") + libraries.join(" ")).digest("hex").slice(0, 16);
  const cacheDirectory = join(tmpdir(), `alloctools-c-${process.getuid?.() ?? 0}`);
  const binary = join(cacheDirectory, `${name}-${digest}`);
  if (existsSync(binary)) return { path: binary };
  mkdirSync(cacheDirectory, { recursive: true });
  // Build under a private name, then rename: concurrent builds never run a half-written binary.
  const partial = `${binary}.${process.pid}`;
  const r = Bun.spawnSync([compiler, ...flags, partial, source, ...libraries], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) {
    const text = r.stderr.toString();
    if (/rdma\/fabric\.h/.test(text)) return { missing: "libfabric headers missing (apt-get install libfabric-dev)" };
    if (/-lfabric|cannot find -l/.test(text)) return { missing: "libfabric.so for linking missing (apt-get install libfabric-dev)" };
    return { missing: `${compiler} failed to build ${name}.c: ${text.trim().split("\n").slice(0, 3).join(" / ")}` };
  }
  renameSync(partial, binary);
  return { path: binary };
}
