// Issue 13, items 1, 2 and 7, and issue 25, item 3: the package as a user gets it. `bun pm pack`
// (which runs prepack: declarations and the Node stub), then `bun add` of the tarball into fresh
// projects, offline:
// - a consumer fixture, type-checked under the strictest settings against the shipped declarations
//   (skipLibCheck off, no allowImportingTsExtensions), then run;
// - a fresh `bun init` project that runs every TypeScript snippet of the README and of every guide
//   under docs/ unchanged (test/package/doc-snippets.ts);
// - docs/getting-started.md followed to the letter: its commands, its files, its two processes;
// - Node gets "alloctools needs Bun", Bun's require() works, and the tarball holds what the docs link.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, normalize } from "node:path";
import { anchors, documentPaths, DONE, extractFences, fenceLanguages, snippetPrograms, unusedHarnesses, type Fence } from "./doc-snippets.ts";
import { fabric, mpi, REQUIRE_LIBFABRIC, REQUIRE_MPI, REQUIRE_UCX, ucx } from "../helpers.ts";
import { pmixStatus } from "../../ffi/pmix.ts";

const root = join(import.meta.dir, "..", "..");
const tsc = join(root, "node_modules", ".bin", "tsc");
let work = "";
let tarball = "";

function run(command: string[], cwd: string, env: Record<string, string | undefined> = {}) {
  const result = Bun.spawnSync(command, { cwd, env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  return { exitCode: result.exitCode, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
}

function mustRun(command: string[], cwd: string, env: Record<string, string | undefined> = {}): string {
  const result = run(command, cwd, env);
  if (result.exitCode !== 0) throw new Error(`${command.join(" ")} (in ${cwd}) exited ${result.exitCode}:\n${result.stdout}\n${result.stderr}`);
  return result.stdout;
}

/** A project with the tarball installed; `bun init` when asked, else a bare package.json. */
function project(name: string, init: boolean): string {
  const dir = join(work, name);
  mkdirSync(dir);
  if (init) mustRun([process.execPath, "init", "-y"], dir);
  else writeFileSync(join(dir, "package.json"), JSON.stringify({ name, private: true, type: "module" }));
  mustRun([process.execPath, "add", tarball], dir);
  return dir;
}

/** The compiler's types for Bun, from this repository's node_modules (offline). */
function linkBunTypes(dir: string): void {
  mkdirSync(join(dir, "node_modules", "@types"), { recursive: true });
  for (const name of ["@types/bun", "@types/node", "bun-types", "undici-types"]) {
    const target = join(dir, "node_modules", name);
    if (!existsSync(target)) symlinkSync(join(root, "node_modules", name), target);
  }
}

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "alloctools-package-"));
  // prepack is `build:types` then `docs` (the HTML reference, ~10 s): the declarations and the Node
  // stub are what these tests need, so they are built here and the pack skips the scripts.
  mustRun([process.execPath, "run", "build:types"], root);
  const packed = mustRun([process.execPath, "pm", "pack", "--destination", work, "--quiet", "--ignore-scripts"], root).trim().split("\n").at(-1)!;
  tarball = packed.startsWith("/") ? packed : join(work, packed);
  if (!existsSync(tarball)) throw new Error(`bun pm pack wrote no tarball (said ${JSON.stringify(packed)})`);
}, 120_000);

afterAll(() => {
  if (work !== "") rmSync(work, { recursive: true, force: true });
});

/** The README and every guide, by path from the repository root. */
const documents = new Map(documentPaths(root).map((path) => [path, readFileSync(join(root, path), "utf8")] as const));
const snippets = [...documents].flatMap(([path, text]) => snippetPrograms(path, text));
/** Snippets that open a libfabric provider need libfabric; under ALLOCTOOLS_REQUIRE_LIBFABRIC they must run. */
const needsFabric = (text: string) => /LibfabricProvider\.open|provider: "(tcp|shm|udp|sockets)"/.test(text);
/** Snippets that open a UCX provider need UCX; under ALLOCTOOLS_REQUIRE_UCX they must run. */
const needsUcx = (text: string) => /UcxProvider\.open|provider: "ucx"/.test(text);
/** Snippets that open an MPI job need Open MPI; under ALLOCTOOLS_REQUIRE_MPI they must run. */
const needsMpi = (text: string) => /MpiJob\.open|MpiProvider\.open/.test(text);
const pmix = pmixStatus();
const REQUIRE_PMIX = process.env.ALLOCTOOLS_REQUIRE_PMIX === "1";

/** What a snippet's programs need that this machine lacks (and that no REQUIRE variable demands), or null. */
function missingFor(programs: readonly { text: string }[], needs: readonly string[], command: string[]): string | null {
  const texts = programs.map((p) => p.text);
  if (texts.some(needsFabric) && !fabric.available && !REQUIRE_LIBFABRIC) return "libfabric";
  if (texts.some(needsUcx) && !ucx.available && !REQUIRE_UCX) return "UCX";
  if ((texts.some(needsMpi) || command[0] === "mpirun") && !mpi.available && !REQUIRE_MPI) return "Open MPI";
  if (needs.includes("pmix") && !pmix.available && !REQUIRE_PMIX) return "PMIx";
  return null;
}

/** Every relative link of `markdown` (in `document`): the linked path from the root, and its anchor. */
function relativeLinks(document: string, markdown: string): { path: string; anchor: string | null }[] {
  const links: { path: string; anchor: string | null }[] = [];
  for (const [, target] of markdown.matchAll(/\]\(([^)\s]+)\)/g)) {
    if (/^[a-z]+:/i.test(target!)) continue;
    const [file = "", anchor] = target!.split("#");
    const path = file === "" ? document : normalize(join(dirname(document), file));
    links.push({ path, anchor: anchor ?? null });
  }
  return links;
}

describe("the packed package", () => {
  test("holds the declarations, the Node stub, the LICENSE, and every file the README and the guides link", () => {
    const listing = mustRun(["tar", "tzf", tarball], work).split("\n");
    for (const file of ["package/types/lib/index.d.ts", "package/node/needs-bun.cjs", "package/LICENSE", "package/lib/index.ts", "package/README.md"]) {
      expect(listing).toContain(file);
    }
    // Every file the README and the guides link is shipped; docs/api/ is written by prepack.
    for (const [document, text] of documents) {
      for (const { path } of relativeLinks(document, text)) {
        if (path.startsWith("docs/api/")) continue;
        expect({ document, link: path, shipped: listing.includes(`package/${path}`) }).toEqual({ document, link: path, shipped: true });
      }
    }
    const scripts = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).scripts;
    expect(scripts.prepack).toBe("bun run build:types && bun run docs");
    const declarations = listing.filter((f) => f.endsWith(".d.ts"));
    expect(declarations.length).toBeGreaterThan(20);
    const manifest = JSON.parse(mustRun(["tar", "xzOf", tarball, "package/package.json"], work));
    expect(manifest.os).toEqual(["linux"]);
    expect(manifest.repository.url).toContain("alloctools");
    expect(manifest.license).toBe("BSD-3-Clause");
    expect(readFileSync(join(root, "LICENSE"), "utf8")).toContain("ETH Zurich");
  });

  test("type-checks under the strictest consumer settings and runs (fixture)", () => {
    const dir = project("strict", false);
    linkBunTypes(dir);
    cpSync(join(import.meta.dir, "fixture"), dir, { recursive: true });
    // The README's and the guides' snippets, with their harnesses, are checked under the same settings.
    for (const { programs } of snippets) for (const program of programs) writeFileSync(join(dir, program.file), program.text);
    const check = run([tsc, "-p", "."], dir);
    expect(check.stdout + check.stderr).toBe("");
    expect(check.exitCode).toBe(0);
    const nodenext = run([tsc, "-p", "tsconfig.nodenext.json"], dir);
    expect(nodenext.stdout + nodenext.stderr).toBe("");
    expect(nodenext.exitCode).toBe(0);
    // Consumers still on the JavaScript compiler (TypeScript 6, the dev dependency TypeDoc runs on):
    // their code against our declarations (the declarations themselves were just checked above).
    const check6 = run([process.execPath, join(root, "node_modules", "typescript-6", "bin", "tsc"), "-p", ".", "--skipLibCheck"], dir);
    expect(check6.stdout + check6.stderr).toBe("");
    expect(check6.exitCode).toBe(0);
    const fixture = run([process.execPath, "api.ts"], dir);
    expect(fixture.stderr).not.toContain("error");
    expect(fixture.stdout.trim()).toBe("fixture ok");
  }, 60_000);

  test("examples/pingpong.ts and rpc.ts, copied into a project, type-check under the strictest settings and run unchanged (issue 25, item 4)", () => {
    const dir = project("examples", false);
    linkBunTypes(dir);
    cpSync(join(import.meta.dir, "fixture", "tsconfig.json"), join(dir, "tsconfig.json"));
    for (const file of ["pingpong.ts", "rpc.ts"]) cpSync(join(root, "examples", file), join(dir, file));
    const check = run([tsc, "-p", "."], dir);
    expect(check.stdout + check.stderr).toBe("");
    expect(check.exitCode).toBe(0);
    if (!fabric.available && !REQUIRE_LIBFABRIC) {
      console.warn(`[alloctools] skipped: running the copied examples (libfabric is not available: ${fabric.reason})`);
      return;
    }
    const runs = [
      { argv: ["pingpong.ts", "--iterations", "20"], last: "pingpong ok: 20 round trips of 64 B over tcp (sendSync/recvSync)" },
      { argv: ["rpc.ts", "--requests", "20"], last: "rpc ok: 20 requests answered and verified over tcp" },
    ];
    for (const { argv, last } of runs) {
      const result = Bun.spawnSync([process.execPath, ...argv], { cwd: dir, stdout: "pipe", stderr: "pipe", timeout: 60_000 });
      expect(result.stderr.toString()).toBe("");
      expect(result.exitCode).toBe(0);
      expect(result.stdout.toString().trim().split("\n").at(-1)).toBe(last);
    }
  }, 150_000);

  test("Node says alloctools needs Bun, for import and require; Bun's require() works", () => {
    const dir = project("runtimes", false);
    writeFileSync(join(dir, "named.mjs"), `import { MemoryPool } from "alloctools";\nconsole.log(typeof MemoryPool);\n`);
    writeFileSync(join(dir, "required.cjs"), `const { MemoryPool, openProvider } = require("alloctools");\nconsole.log(typeof MemoryPool, typeof openProvider);\n`);
    const node = Bun.which("node");
    if (node !== null) {
      for (const file of ["named.mjs", "required.cjs"]) {
        const result = run([node, file], dir);
        expect(result.exitCode).not.toBe(0);
        expect(result.stderr).toContain("alloctools needs Bun (https://bun.sh)");
        expect(result.stderr).not.toContain("ERR_UNKNOWN_FILE_EXTENSION");
      }
    } else {
      console.warn("[alloctools] node is not installed: the Node stub is checked by its text only");
      expect(readFileSync(join(dir, "node_modules", "alloctools", "node", "needs-bun.cjs"), "utf8")).toContain("alloctools needs Bun");
    }
    expect(run([process.execPath, "required.cjs"], dir).stdout.trim()).toBe("function function");
    expect(run([process.execPath, "named.mjs"], dir).stdout.trim()).toBe("function");
  }, 60_000);

  test("bunx alloctools doctor and info --json run from the installed package (issue 25, item 5)", () => {
    const dir = project("doctor", false);
    const doctor = run([process.execPath, "x", "alloctools", "doctor"], dir);
    if (doctor.exitCode !== 0) throw new Error(`bunx alloctools doctor exited ${doctor.exitCode}:\n${doctor.stdout}\n${doctor.stderr}`);
    expect(doctor.stdout).toContain("✓ bun: ");
    expect(doctor.stdout).toContain("✓ host: a default MemoryPool on the host provider pinned 3.75 MiB");
    for (const section of ["libfabric", "ucx", "mpi", "pmix", "launcher", "memlock", "hugePages", "shm", "cpus"]) {
      expect(doctor.stdout).toMatch(new RegExp(`^[✓!] ${section}: `, "m"));
    }
    if (fabric.available) expect(doctor.stdout).toMatch(/^✓ libfabric: .*providers/m);
    const info = run([process.execPath, "x", "alloctools", "info", "--json"], dir);
    expect(info.exitCode).toBe(0);
    const report = JSON.parse(info.stdout) as { schema: string; ok: boolean; bun: { required: string } };
    expect(report.schema).toBe("alloctools-doctor/1");
    expect(report.ok).toBe(true);
    expect(report.bun.required).toBe(JSON.parse(readFileSync(join(root, "package.json"), "utf8")).engines.bun);
  }, 60_000);
});

describe("the README and the guides link only to what exists", () => {
  test("every relative link names a file of the repository, and every #anchor a heading of it", () => {
    const broken: string[] = [];
    for (const [document, text] of documents) {
      for (const { path, anchor } of relativeLinks(document, text)) {
        if (path.startsWith("docs/api/")) continue;
        if (!existsSync(join(root, path))) {
          broken.push(`${document}: ${path} does not exist`);
        } else if (anchor !== null && path.endsWith(".md") && !anchors(documents.get(path) ?? readFileSync(join(root, path), "utf8")).has(anchor)) {
          broken.push(`${document}: ${path}#${anchor} names no heading`);
        }
      }
    }
    expect(broken).toEqual([]);
  });
});

describe("a fresh bun init project runs every snippet of the README and the guides unchanged", () => {
  let dir = "";
  beforeAll(() => {
    dir = project("fresh", true);
    for (const { programs } of snippets) for (const program of programs) writeFileSync(join(dir, program.file), program.text);
  }, 120_000);

  test("every fence is TypeScript (run here), or sh, text or C (commands, output and C peers, not run)", () => {
    const others: string[] = [];
    for (const [document, text] of documents) {
      const allowed = document === "README.md" ? ["ts", "typescript", "sh"] : ["ts", "typescript", "sh", "text", "c"];
      for (const language of fenceLanguages(text, document)) if (!allowed.includes(language)) others.push(`${document}: ${JSON.stringify(language)}`);
    }
    expect(others).toEqual([]);
  });

  test("the README and the guides have snippets, each taken unchanged, and every harness has its snippet", () => {
    expect(snippets.filter((run) => run.snippet.document === "README.md").length).toBeGreaterThanOrEqual(1);
    expect(snippets.length).toBeGreaterThanOrEqual(10);
    for (const { snippet, programs } of snippets) {
      const joined = programs.map((p) => p.text).join("");
      for (const line of snippet.code.split("\n")) expect(joined).toContain(line);
    }
    expect(unusedHarnesses(root)).toEqual([]);
  });

  for (const { snippet, why, command, programs, needs, runBy } of snippets) {
    if (runBy !== null) continue; // run by the test it names, below
    const entry = programs.find((p) => p.entry)!;
    const argv = command(process.execPath, entry.file);
    const missing = missingFor(programs, needs, argv);
    if (missing !== null) console.warn(`[alloctools] skipped the snippet at ${snippet.document} line ${snippet.line}: ${missing} is not available`);
    test.skipIf(missing !== null)(`${snippet.document} line ${snippet.line} (${snippet.heading}; ${why})`, () => {
      const result = run(argv, dir);
      if (result.exitCode !== 0 || !result.stdout.includes(DONE)) {
        throw new Error(`the snippet at ${snippet.document} line ${snippet.line} failed (exit ${result.exitCode}):\n${result.stdout}\n${result.stderr}`);
      }
      expect(result.stdout.trim().split("\n").at(-1)).toBe(DONE);
    }, 30_000);
  }
});

// Issue 25, item 3: "a person following only docs/getting-started.md gets two processes exchanging a
// region by RMA, from bun add, in a fresh project". The guide's own commands run as written, with
// three substitutions a reader makes too: `bun`/`bunx` are this Bun, `bun add alloctools` adds the
// packed tarball (this test is offline), and `<name> <region>` are the two strings the target printed.
describe("docs/getting-started.md, followed to the letter", () => {
  const guide = documents.get("docs/getting-started.md")!;
  const fences = extractFences(guide, "docs/getting-started.md");
  const commands = fences.filter((fence) => fence.language === "sh");
  const files = fences.filter((fence) => fence.language === "ts");
  const outputs = fences.filter((fence) => fence.language === "text");
  const missing = !fabric.available && !REQUIRE_LIBFABRIC ? "libfabric" : null;
  if (missing !== null) console.warn(`[alloctools] skipped docs/getting-started.md: ${missing} is not available`);

  /** A command line of the guide, as this machine runs it. */
  function asRun(line: string, substitutions: Record<string, string> = {}): string {
    let text = line.replace(/^bunx /, `${process.execPath} x `).replace(/(^|&& )bun /g, `$1${process.execPath} `)
      .replace(/ add alloctools$/, ` add ${tarball}`);
    for (const [placeholder, value] of Object.entries(substitutions)) text = text.replace(placeholder, value);
    return text;
  }

  /** The file a fence shows: its first line is `// <name>.ts: ...`. */
  function fileOf(fence: Fence): string {
    const name = /^\/\/ ([\w.-]+\.ts):/.exec(fence.code)?.[1];
    if (name === undefined) throw new Error(`docs/getting-started.md line ${fence.line}: a file's first line names it ("// target.ts: ...")`);
    return name;
  }

  test("the guide shows a project, the doctor, two files, the two processes, and what they print", () => {
    expect(commands.map((fence) => fence.code.trim())).toEqual([
      "mkdir hello-rma && cd hello-rma\nbun init -y\nbun add alloctools",
      "bunx alloctools doctor",
      "bun target.ts",
      "bun initiator.ts <name> <region>",
    ]);
    expect(files.map(fileOf)).toEqual(["target.ts", "initiator.ts"]);
    // They are the snippets doc-snippets.ts leaves to this test.
    const leftHere = snippets.filter((run) => run.snippet.document === "docs/getting-started.md" && run.runBy !== null).map((run) => run.snippet.code);
    expect(leftHere).toEqual(files.map((fence) => fence.code));
    expect(outputs.length).toBe(2);
  });

  test.skipIf(missing !== null)("from bun add in a fresh folder to two processes started by hand: the region written, the message received", async () => {
    const folder = join(work, "getting-started");
    mkdirSync(folder);
    const [setup, doctor, startTarget, startInitiator] = commands;
    mustRun(["sh", "-e", "-c", setup!.code.trim().split("\n").map((line) => asRun(line)).join("\n")], folder);
    const project = join(folder, /cd (\S+)/.exec(setup!.code)![1]!);
    expect(JSON.parse(readFileSync(join(project, "package.json"), "utf8")).dependencies.alloctools).toBeDefined();
    const diagnosis = run(["sh", "-c", asRun(doctor!.code.trim())], project);
    expect({ exitCode: diagnosis.exitCode, stderr: diagnosis.stderr }).toEqual({ exitCode: 0, stderr: "" });
    for (const fence of files) writeFileSync(join(project, fileOf(fence)), fence.code);

    // The first terminal: the target prints its two strings, then waits.
    const target = Bun.spawn(["sh", "-c", asRun(startTarget!.code.trim())], { cwd: project, stdout: "pipe", stderr: "pipe" });
    const reader = target.stdout.getReader();
    let printed = "";
    while (!printed.includes("\n")) {
      const chunk = await reader.read();
      if (chunk.done) throw new Error(`the target ended before printing its strings:\n${printed}\n${await new Response(target.stderr).text()}`);
      printed += new TextDecoder().decode(chunk.value);
    }
    const [strings = ""] = printed.split("\n");
    expect(strings).toMatch(/^fi\.[\w-]+ rr\.[\w-]+$/);
    expect(outputs[0]!.code.trim()).toMatch(/^fi\.[\w-]+ rr\.[\w-]+$/); // the guide shows the same shape
    const [name, region] = strings.split(" ");

    // The second terminal: the initiator, given the two strings.
    const initiator = run(["sh", "-c", asRun(startInitiator!.code.trim(), { "<name>": name!, "<region>": region! })], project);
    expect({ exitCode: initiator.exitCode, stderr: initiator.stderr }).toEqual({ exitCode: 0, stderr: "" });
    expect(initiator.stdout.trim()).toBe("wrote the region and sent the message");

    // The target prints what arrived, as the guide shows, and ends.
    while (true) {
      const chunk = await reader.read();
      if (chunk.done) break;
      printed += new TextDecoder().decode(chunk.value);
    }
    expect(await target.exited).toBe(0);
    expect(printed.trim().split("\n").slice(1)).toEqual(outputs[1]!.code.trim().split("\n"));
  }, 60_000);
});
