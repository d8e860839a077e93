// The TypeScript snippets of the README and of every guide under docs/, taken from their code
// fences unchanged, and the harness each one needs to run as a program of its own in a project
// that installed the packed package.
//
// A snippet that leaves names to the reader (`payload`, `send`, a peer's name, a Worker) gets an
// explicit harness here, keyed by its document and the heading it sits under: code before and
// after it, for a snippet that shows two sides (main thread and Worker) where to split it, and
// for one that needs a launcher the command that starts it. The harness never edits the
// snippet's text. RMA runs for real: the endpoint is its own peer over loopback tcp, or a second
// endpoint of the process. A snippet under a heading with no harness runs as it is; add a harness
// when it needs one. A harness that matches no snippet is an error (a heading was renamed).
import { readdirSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";

/** One ```ts fence of a document. */
export interface Snippet {
  /** The document's path from the repository root: `README.md`, `docs/workers.md`. */
  readonly document: string;
  /** The nearest `## ` or `### ` heading above it ("" before the first). */
  readonly heading: string;
  /** Its text, exactly as in the document (a fence's indentation removed). */
  readonly code: string;
  /** Its first line in the document (1-based). */
  readonly line: number;
}

/** One fenced block of any language, in document order. */
export interface Fence {
  readonly language: string;
  readonly heading: string;
  readonly code: string;
  readonly line: number;
}

/** A program to run: its file name, its text, and whether it is started on its own. */
export interface SnippetProgram {
  readonly file: string;
  readonly text: string;
  /** Programs that are loaded by another (a Worker script) are not run on their own. */
  readonly entry: boolean;
}

/** The printed line that says a program ran to its end. */
export const DONE = "snippet ok";

/** How a snippet's program is started, given the Bun executable and the file. */
export type SnippetCommand = (bun: string, file: string) => string[];

/** A library a snippet needs beyond what its text shows (its text is searched for the others). */
export type Need = "pmix";

interface Harness {
  /** Why the snippet needs it, said in the test's name. */
  readonly why: string;
  readonly before: string;
  readonly after: string;
  /** For a two-sided snippet: the line that starts the second side, and that side's harness. */
  readonly split?: { readonly at: string; readonly file: string; readonly before: string; readonly after: string };
  /** How to run the entry program when `bun <file>` is not it (e.g. two ranks under mpirun). */
  readonly command?: SnippetCommand;
  readonly needs?: readonly Need[];
  /**
   * The test that runs these snippets instead, as the document tells a reader to (several
   * processes started by hand): they are still written out and type-checked with the others.
   */
  readonly runBy?: string;
}

/** What runs one snippet. */
export interface SnippetRun {
  readonly snippet: Snippet;
  readonly why: string;
  readonly command: SnippetCommand;
  readonly programs: readonly SnippetProgram[];
  readonly needs: readonly Need[];
  /** Set when another test runs the snippet (see Harness.runBy). */
  readonly runBy: string | null;
}

const BUN_RUN: SnippetCommand = (bun, file) => [bun, file];
const MPIRUN_TWO_RANKS: SnippetCommand = (bun, file) =>
  ["mpirun", ...(process.getuid?.() === 0 ? ["--allow-run-as-root"] : []), "--oversubscribe", "-n", "2", bun, file];

/** The name and region bytes go to "the peer", which is this process (libfabric and UCX alike). */
const SELF_AS_PEER = `let peerName: Uint8Array = new Uint8Array(0);
let remoteBytes: Uint8Array = new Uint8Array(0);
/** The name and region bytes go to "the peer", which is this process. */
function send(name: Uint8Array, bytes: Uint8Array): void {
  peerName = name;
  remoteBytes = bytes;
}
`;

const HARNESSES: Readonly<Record<string, Readonly<Record<string, Harness>>>> = {
  "docs/pools.md": {
    "Getting and releasing regions": {
      why: "payload and send() are the reader's",
      before: `const payload: Uint8Array = new Uint8Array([1, 2, 3, 4]);
const sent: unknown[][] = [];
function send(...fields: unknown[]): void {
  sent.push(fields);
}
`,
      after: `if (sent.length !== 1 || typeof sent[0]?.[1] !== "bigint" || typeof sent[0]?.[2] !== "bigint") throw new Error("send() did not get a pointer and two keys");
console.log(${JSON.stringify(DONE)});
`,
    },
  },
  "docs/transports.md": {
    libfabric: {
      why: "the peer is this process's own endpoint over loopback tcp",
      before: SELF_AS_PEER,
      after: `// After the read, local holds what the target region holds.
if (!Buffer.from(local.view.subarray(0, 4096)).equals(Buffer.from(region.view.subarray(0, 4096)))) throw new Error("read did not bring the target's bytes");
ep.close();
pool.close();
provider.close();
console.log(${JSON.stringify(DONE)});
`,
    },
    UCX: {
      why: "the peer is this process's own UCX endpoint over shared memory",
      before: SELF_AS_PEER,
      after: `if (ep.stats().completed !== 1) throw new Error("the write did not complete");
ep.close();
pool.close();
provider.close();
console.log(${JSON.stringify(DONE)});
`,
    },
    MPI: {
      why: "two ranks under mpirun",
      before: "",
      after: `ep.close();
pool.close();
provider.close();
job.close();
console.log(${JSON.stringify(DONE)});
`,
      command: MPIRUN_TWO_RANKS,
    },
  },
  "docs/cache.md": {
    "Registering a buffer once": {
      why: "provider, pool, frame and send() are the reader's; the target is a second endpoint of this process over loopback tcp",
      before: `import { MemoryPool, openProvider } from "alloctools";
const provider = openProvider({ provider: "tcp", node: "127.0.0.1" });
const pool = new MemoryPool(provider);
const frame = new Uint8Array(4096).fill(7);
const sent: Uint8Array[] = [];
function send(bytes: Uint8Array): void {
  sent.push(bytes);
}
const text = "through the registration cache";
const far = new Endpoint(provider);
const peerName = far.name;
const landing = pool.getRegion(4096);
const target = landing.remote();
`,
      after: `if (Buffer.from(landing.view.subarray(0, text.length)).toString() !== text) throw new Error("the cached write did not land");
if (sent.length !== 1) throw new Error("send() was not called");
ep.close();
far.close();
pool.releaseRegion(landing);
pool.close();
console.log(${JSON.stringify(DONE)});
`,
    },
  },
  "docs/workers.md": {
    "Sharing a pool": {
      why: "a real Worker; its target is a second shm provider's endpoint inside the Worker",
      before: `import { LibfabricProvider, MemoryPool } from "alloctools";
const worker = new Worker(new URL("./workers-worker.ts", import.meta.url));
const written = new Promise<void>((resolve, reject) => {
  worker.onmessage = (event: MessageEvent<unknown>) => {
    if (event.data === "written") resolve();
  };
  worker.onerror = (event: ErrorEvent) => reject(new Error(event.message));
});
`,
      after: `await written;
worker.terminate();
pool.close();
provider.close();
console.log(${JSON.stringify(DONE)});
`,
      split: {
        at: "// worker",
        file: "workers-worker.ts",
        before: `import { Endpoint, LibfabricProvider, MemoryPool } from "alloctools";
declare const self: Worker; // inside a Worker, self is its side of the channel
const payload = new TextEncoder().encode("written from a Worker");
// The peer: an endpoint of a second shm provider in this Worker, exposing one region.
const targetProvider = LibfabricProvider.open({ provider: "shm" });
const targetPool = new MemoryPool(targetProvider);
const targetEndpoint = new Endpoint(targetProvider);
const landing = targetPool.getRegion(4096);
const peerName = targetEndpoint.name;
const target = landing.remote();
`,
        after: `const watch = setInterval(() => {
  if (Buffer.from(landing.view.subarray(0, payload.length)).equals(Buffer.from(payload))) {
    clearInterval(watch);
    self.postMessage("written");
  }
}, 5);
`,
      },
    },
  },
  "docs/jobs.md": {
    "The API in a few lines": {
      why: "bytes are the reader's; alone, a job of one process",
      before: `const bytes = new TextEncoder().encode("this rank's bytes");
`,
      after: `if (peers.length !== job.size || all.length !== job.size) throw new Error("a peer or an allgather entry per rank");
console.log(${JSON.stringify(DONE)});
`,
    },
    "A ring": {
      why: "two ranks under mpirun, joining through PMIx",
      before: "",
      after: `console.log(${JSON.stringify(DONE)});
`,
      command: MPIRUN_TWO_RANKS,
      needs: ["pmix"],
    },
  },
  "docs/getting-started.md": {
    "Two processes, started by hand": {
      why: "two processes started as the guide says",
      before: "",
      after: "",
      runBy: "docs/getting-started.md, followed to the letter (test/package/consumer.test.ts)",
    },
  },
};

/** The documents whose snippets run: the README, then every guide under docs/, by name. */
export function documentPaths(root: string): string[] {
  const guides = readdirSync(join(root, "docs")).filter((name) => name.endsWith(".md")).sort().map((name) => `docs/${name}`);
  return ["README.md", ...guides];
}

/** Every fenced block of `markdown`, in order; fences may be indented (inside a list item). */
export function extractFences(markdown: string, document: string): Fence[] {
  const fences: Fence[] = [];
  const lines = markdown.split("\n");
  let heading = "";
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index]!;
    const title = /^#{2,3} (.+)$/.exec(line);
    if (title !== null) heading = title[1]!.trim();
    const open = /^(\s*)```(\w*)\s*$/.exec(line);
    if (open === null) continue;
    const indent = open[1]!.length;
    const end = lines.findIndex((candidate, at) => at > index && /^\s*```\s*$/.test(candidate));
    if (end < 0) throw new Error(`${document} line ${index + 1}: unclosed code fence`);
    const code = lines.slice(index + 1, end).map((text) => text.slice(Math.min(indent, text.length - text.trimStart().length))).join("\n") + "\n";
    fences.push({ language: open[2] ?? "", heading, code, line: index + 2 });
    index = end;
  }
  return fences;
}

/** Every ```ts (or ```typescript) fence of `markdown`, in order. */
export function extractSnippets(markdown: string, document: string): Snippet[] {
  return extractFences(markdown, document)
    .filter((fence) => fence.language === "ts" || fence.language === "typescript")
    .map(({ heading, code, line }) => ({ document, heading, code, line }));
}

/** The language of every code fence of `markdown`, in order ("" for none). */
export function fenceLanguages(markdown: string, document: string): string[] {
  return extractFences(markdown, document).map((fence) => fence.language);
}

/** `README.md` → `readme`, `docs/getting-started.md` → `getting-started`: the snippets' file prefix. */
function slug(document: string): string {
  return document === "README.md" ? "readme" : basename(document, ".md");
}

/** The programs that run every snippet of `document` (its text `markdown`), with the reason for each harness. */
export function snippetPrograms(document: string, markdown: string): SnippetRun[] {
  const harnesses = HARNESSES[document] ?? {};
  return extractSnippets(markdown, document).map((snippet, number) => {
    const harness = harnesses[snippet.heading];
    const file = `${slug(document)}-${number + 1}.ts`;
    if (harness === undefined) {
      const programs = [{ file, text: `${snippet.code}console.log(${JSON.stringify(DONE)});\n`, entry: true }];
      return { snippet, why: "runs as it is", command: BUN_RUN, programs, needs: [], runBy: null };
    }
    const common = { snippet, why: harness.why, command: harness.command ?? BUN_RUN, needs: harness.needs ?? [], runBy: harness.runBy ?? null };
    if (harness.split === undefined) {
      return { ...common, programs: [{ file, text: harness.before + snippet.code + harness.after, entry: true }] };
    }
    const at = snippet.code.indexOf(harness.split.at);
    if (at < 0) throw new Error(`${document} line ${snippet.line}: the "${snippet.heading}" snippet has no "${harness.split.at}" line to split at`);
    return {
      ...common,
      programs: [
        { file, text: harness.before + snippet.code.slice(0, at) + harness.after, entry: true },
        { file: harness.split.file, text: harness.split.before + snippet.code.slice(at) + harness.split.after, entry: false },
      ],
    };
  });
}

/** Harnesses whose document or heading has no snippet: each one a heading that was renamed or removed. */
export function unusedHarnesses(root: string): string[] {
  const unused: string[] = [];
  for (const [document, byHeading] of Object.entries(HARNESSES)) {
    let headings: Set<string>;
    try {
      headings = new Set(extractSnippets(readFileSync(join(root, document), "utf8"), document).map((snippet) => snippet.heading));
    } catch {
      headings = new Set();
    }
    for (const heading of Object.keys(byHeading)) if (!headings.has(heading)) unused.push(`${document} "${heading}"`);
  }
  return unused;
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
export function headingAnchor(heading: string): string {
  return heading.toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, "").replace(/\s/g, "-");
}

/** The anchors of every heading of `markdown` (a repeated heading's later ones get -1, -2, ...). */
export function anchors(markdown: string): Set<string> {
  const found = new Set<string>();
  const seen = new Map<string, number>();
  let inFence = false;
  for (const line of markdown.split("\n")) {
    if (/^\s*```/.test(line)) inFence = !inFence;
    const title = inFence ? null : /^#{1,6} (.+)$/.exec(line);
    if (title === null) continue;
    const base = headingAnchor(title[1]!.trim());
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    found.add(count === 0 ? base : `${base}-${count}`);
  }
  return found;
}
