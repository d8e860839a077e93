// The protocol of the test agents that run in a child process (test/rma/agent.ts,
// test/rma/ring-peer.ts, test/ucx/agent.ts): JSON commands on stdin, one per line, run one at a
// time in order; each reply is a JSON line on stdout carrying the command's seq.
import { createInterface } from "node:readline";

/** Writes one JSON line to stdout. */
export const out = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);

/**
 * Serves commands with `handle` until stdin closes, then calls `close` and exits. A command that
 * throws is answered with the error's name, code and message (refused before anything was posted).
 */
export function serveCommands<C extends { seq: number }>(handle: (c: C) => object | Promise<object>, close: () => void): void {
  let chain = Promise.resolve();
  createInterface({ input: process.stdin }).on("line", (line) => {
    const c = JSON.parse(line) as C;
    chain = chain.then(async () => {
      let reply: object;
      try {
        reply = await handle(c);
      } catch (e) {
        const err = e as Error & { code?: string };
        reply = { error: { name: err.name, code: err.code, message: err.message } };
      }
      out({ seq: c.seq, ...reply });
    });
  }).on("close", () => {
    // The test went away: do not linger.
    try { close(); } finally { process.exit(0); }
  });
}
