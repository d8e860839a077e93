// The API reference: `bun run docs` writes docs/api from the TSDoc comments (TypeDoc);
// `bun run docs:check` writes nothing and fails on any TypeDoc warning, listing each undocumented
// export or public member as file:line, grouped by file (`bun run test` runs it).
//
// TypeDoc 0.28 runs on TypeScript ≤ 6 through its JavaScript API, which TypeScript 7 (native) does
// not have: it gets the `typescript-6` dev dependency (an npm alias) as its own `typescript`.
import { existsSync, lstatSync, mkdirSync, readlinkSync, rmSync, symlinkSync } from "node:fs";
import { join, relative } from "node:path";

const root = join(import.meta.dir, "..");
const check = process.argv.includes("--check");

/** node_modules/typedoc/node_modules/typescript → typescript-6, so that TypeDoc resolves it first. */
function giveTypedocItsTypescript(): void {
  const nested = join(root, "node_modules", "typedoc", "node_modules");
  const link = join(nested, "typescript");
  const target = join("..", "..", "typescript-6");
  if (!existsSync(join(root, "node_modules", "typescript-6", "package.json"))) {
    throw new Error("node_modules/typescript-6 is missing: run `bun install` (it is a dev dependency, npm:typescript@6)");
  }
  if (existsSync(link) && lstatSync(link).isSymbolicLink() && readlinkSync(link) === target) return;
  mkdirSync(nested, { recursive: true });
  rmSync(link, { recursive: true, force: true });
  symlinkSync(target, link);
}

/** The parts of TypeDoc's API used here (its own types import "typescript", which here is version 7). */
interface Reflection {
  readonly sources?: readonly { readonly fullFileName: string; readonly line: number }[];
  readonly parent?: Reflection;
}
interface TypeDoc {
  Application: {
    bootstrapWithPlugins(options: Record<string, unknown>, readers: readonly unknown[]): Promise<{
      logger: { warn(text: string, ...rest: unknown[]): void; error(text: string, ...rest: unknown[]): void };
      convert(): Promise<(Reflection & { getChildByName(name: string): Reflection | undefined }) | undefined>;
      validate(project: unknown): void;
      generateOutputs(project: unknown): Promise<void>;
    }>;
  };
  TypeDocReader: new () => unknown;
  TSConfigReader: new () => unknown;
}

giveTypedocItsTypescript();
const typedoc = (await import("typedoc")) as unknown as TypeDoc;
const app = await typedoc.Application.bootstrapWithPlugins(
  { options: join(root, "typedoc.json"), ...(check ? { emit: "none" } : {}) },
  [new typedoc.TypeDocReader(), new typedoc.TSConfigReader()]);

// TypeDoc's warnings are collected and printed once, grouped, below.
const warnings: string[] = [];
app.logger.warn = (text: string) => {
  warnings.push(text);
};

const project = await app.convert();
if (project === undefined) throw new Error("TypeDoc could not convert the project (see the errors above)");
app.validate(project);

/** "Name.member (Kind), defined in …, does not have any documentation" → file:line and the name. */
function whereUndocumented(message: string): { file: string; line: number; what: string } | undefined {
  const match = /^(.+?) \((\w+)\), defined in .*, does not have any documentation$/.exec(message);
  if (match === null) return undefined;
  const [, qualified = "", kind = ""] = match;
  // Signatures and type-literal members have no reflection by name: use the nearest that has one.
  const names = qualified.replace(/\.__type\b/g, "").split(".");
  let reflection: Reflection | undefined;
  for (let length = names.length; reflection?.sources === undefined && length > 0; length--) {
    reflection = project!.getChildByName(names.slice(0, length).join("."));
  }
  const source = reflection?.sources?.[0];
  return { file: source === undefined ? "?" : relative(root, source.fullFileName), line: source?.line ?? 0, what: `${qualified.replace(/\.__type\b/g, "")} (${kind})` };
}

const undocumented = warnings.map(whereUndocumented).filter((w) => w !== undefined);
const other = warnings.filter((w) => whereUndocumented(w) === undefined && !/^Found \d+ errors/.test(w));
if (undocumented.length > 0 || other.length > 0) {
  const byFile = Map.groupBy(undocumented.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line), (w) => w.file);
  const lines = [`${undocumented.length} exported declarations or public members have no TSDoc comment:`];
  for (const [file, list] of byFile) {
    lines.push(`  ${file} (${list.length})`);
    for (const w of list) lines.push(`    ${file}:${w.line}  ${w.what}`);
  }
  if (other.length > 0) lines.push(`${other.length} other TypeDoc warnings:`, ...other.map((w) => `  ${w}`));
  console.error(lines.join("\n"));
  // `docs` still writes the reference; `docs:check` is the gate.
  if (check) process.exit(1);
}
if (!check) await app.generateOutputs(project);
console.log(check ? "docs: every export and public member is documented" : `docs: written to docs/api${undocumented.length + other.length > 0 ? " (with the warnings above)" : ""}`);
