// The README's TypeScript snippets, taken from its code fences unchanged, and the harness each one
// needs to run as a program of its own in a project that installed the packed package.
//
// A snippet that leaves names to the reader (`payload`, `send`, a peer's name, a Worker) gets an
// explicit harness here, keyed by the README heading it sits under: code before and after it, and
// for a snippet that shows two sides (main thread and Worker), where to split it. The harness
// never edits the snippet's text. RMA runs for real: the endpoint is its own peer over loopback tcp.
// A snippet under a heading with no harness runs as it is; add a harness when it needs one.

/** One ```ts fence of the README. */
export interface Snippet {
  /** The nearest `## ` heading above it. */
  readonly heading: string;
  /** Its text, exactly as in the README. */
  readonly code: string;
  /** Its first line in the README (1-based). */
  readonly line: number;
}

/** A program to run: its file name, its text, and the line it prints last when it worked. */
export interface SnippetProgram {
  readonly file: string;
  readonly text: string;
  /** Programs that are loaded by another (a Worker script) are not run on their own. */
  readonly entry: boolean;
}

/** Every ```ts (or ```typescript) fence of `readme`, in order. */
export function extractSnippets(readme: string): Snippet[] {
  const snippets: Snippet[] = [];
  const lines = readme.split("\n");
  let heading = "";
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index]!;
    if (line.startsWith("## ")) heading = line.slice(3).trim();
    const fence = /^```(\w*)\s*$/.exec(line);
    if (fence === null) continue;
    const end = lines.findIndex((l, i) => i > index && l.startsWith("```"));
    if (end < 0) throw new Error(`README line ${index + 1}: unclosed code fence`);
    if (fence[1] === "ts" || fence[1] === "typescript") {
      snippets.push({ heading, code: lines.slice(index + 1, end).join("\n") + "\n", line: index + 2 });
    }
    index = end;
  }
  return snippets;
}

/** The language of every code fence of `readme`, in order ("" for none). */
export function fenceLanguages(readme: string): string[] {
  const languages: string[] = [];
  let open = false;
  for (const line of readme.split("\n")) {
    const fence = /^```(\w*)\s*$/.exec(line);
    if (fence === null) continue;
    if (!open) languages.push(fence[1] ?? "");
    open = !open;
  }
  return languages;
}

/** The printed line that says a program ran to its end. */
export const DONE = "snippet ok";

interface Harness {
  /** Why the snippet needs it, said in the test's name. */
  readonly why: string;
  readonly before: string;
  readonly after: string;
  /** For a two-sided snippet: the line that starts the second side, and that side's harness. */
  readonly split?: { readonly at: string; readonly file: string; readonly before: string; readonly after: string };
  /**
   * How to run the entry program when `bun <file>` is not it (e.g. two ranks under mpirun):
   * the command, given the Bun executable and the file.
   */
  readonly command?: (bun: string, file: string) => string[];
}

/** How a snippet's program is started. */
export type SnippetCommand = (bun: string, file: string) => string[];

const BUN_RUN: SnippetCommand = (bun, file) => [bun, file];

const HARNESSES: Readonly<Record<string, Harness>> = {
  Use: {
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
  RMA: {
    why: "the peer is this process's own endpoint over loopback tcp",
    before: `let peerName: Uint8Array = new Uint8Array(0);
let remoteBytes: Uint8Array = new Uint8Array(0);
/** The name and region bytes go to "the peer", which is this process. */
function send(name: Uint8Array, bytes: Uint8Array): void {
  peerName = name;
  remoteBytes = bytes;
}
`,
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
    before: `let peerName: Uint8Array = new Uint8Array(0);
let remoteBytes: Uint8Array = new Uint8Array(0);
/** The name and region bytes go to "the peer", which is this process. */
function send(name: Uint8Array, bytes: Uint8Array): void {
  peerName = name;
  remoteBytes = bytes;
}
`,
    after: `if (ep.stats().completed !== 1) throw new Error("the write did not complete");
ep.close();
pool.close();
provider.close();
console.log(${JSON.stringify(DONE)});
`,
  },
  "Registration cache": {
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
far.startProgress(0);
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
  MPI: {
    why: "two ranks under mpirun",
    before: "",
    after: `ep.close();
pool.close();
provider.close();
job.close();
console.log(${JSON.stringify(DONE)});
`,
    command: (bun, file) => ["mpirun", ...(process.getuid?.() === 0 ? ["--allow-run-as-root"] : []), "--oversubscribe", "-n", "2", bun, file],
  },
  Workers: {
    why: "a real Worker; its target is a second shm provider's endpoint inside the Worker",
    before: `import { LibfabricProvider, MemoryPool } from "alloctools";
const worker = new Worker(new URL("./readme-workers-worker.ts", import.meta.url));
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
      file: "readme-workers-worker.ts",
      before: `import { Endpoint, LibfabricProvider, MemoryPool } from "alloctools";
declare const self: Worker; // inside a Worker, self is its side of the channel
const payload = new TextEncoder().encode("written from a Worker");
// The peer: an endpoint of a second shm provider in this Worker, exposing one region.
const targetProvider = LibfabricProvider.open({ provider: "shm" });
const targetPool = new MemoryPool(targetProvider);
const targetEndpoint = new Endpoint(targetProvider);
targetEndpoint.startProgress(0);
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
};

/** The programs that run every snippet of `readme`, with the reason for each harness. */
export function snippetPrograms(readme: string): { snippet: Snippet; why: string; command: SnippetCommand; programs: SnippetProgram[] }[] {
  return extractSnippets(readme).map((snippet, number) => {
    const harness = HARNESSES[snippet.heading];
    const file = `readme-${number + 1}.ts`;
    if (harness === undefined) {
      return { snippet, why: "runs as it is", command: BUN_RUN, programs: [{ file, text: `${snippet.code}console.log(${JSON.stringify(DONE)});\n`, entry: true }] };
    }
    const command = harness.command ?? BUN_RUN;
    if (harness.split === undefined) {
      return { snippet, why: harness.why, command, programs: [{ file, text: harness.before + snippet.code + harness.after, entry: true }] };
    }
    const at = snippet.code.indexOf(harness.split.at);
    if (at < 0) throw new Error(`README line ${snippet.line}: the ${snippet.heading} snippet has no "${harness.split.at}" line to split at`);
    return {
      snippet,
      why: harness.why,
      command,
      programs: [
        { file, text: harness.before + snippet.code.slice(0, at) + harness.after, entry: true },
        { file: harness.split.file, text: harness.split.before + snippet.code.slice(at) + harness.split.after, entry: false },
      ],
    };
  });
}
