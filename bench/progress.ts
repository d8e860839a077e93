// Where a benchmark run is: the suite being set up or cleaned up, the benchmark being measured,
// how many of how many, and the time so far. On a terminal (stdout a TTY) one status line on
// stderr, rewritten in place and cleared before anything else prints, so the report reads as
// without it; otherwise one plain line per step on stderr. Nothing goes to stdout or the JSON.

/** The console methods that print: while the status line shows, each clears it first. */
const PRINTING = ["log", "info", "warn", "error", "debug"] as const;

export class Progress {
  /** Whether to keep one line rewritten in place (a terminal) rather than print plain lines. */
  private readonly terminal: boolean;
  private readonly stream: NodeJS.WriteStream;
  private readonly started = performance.now();
  /** What the status line says now; null when it is cleared. */
  private status: string | null = null;

  constructor(terminal: boolean, stream: NodeJS.WriteStream = process.stderr) {
    this.terminal = terminal;
    this.stream = stream;
    if (terminal) this.clearBeforeConsolePrints();
  }

  /** Setting up suite `index` (from 1) of `count`. */
  setup(suite: string, index: number, count: number): void {
    this.show(`setting up suite ${index}/${count}: ${suite}`);
  }

  /** Measuring benchmark `index` (from 1) of `count`, registered by `suite`. */
  benchmark(suite: string, name: string, index: number, count: number): void {
    this.show(`benchmark ${index}/${count} [${suite}] ${name}`);
  }

  /** Running the cleanup (late figures) of suite `index` (from 1) of `count`. */
  cleanup(suite: string, index: number, count: number): void {
    this.show(`cleaning up suite ${index}/${count}: ${suite}`);
  }

  /** Takes the status line away (the step is over); plain lines stay. */
  clear(): void {
    if (this.status === null) return;
    this.status = null;
    this.stream.write("\r\x1b[2K");
  }

  /** What mitata prints (its `print` option): on a terminal, the status line goes first. */
  print(text: string): void {
    this.clear();
    console.log(text);
  }

  private show(step: string): void {
    const text = `bench: ${step} (${((performance.now() - this.started) / 1000).toFixed(0)} s)`;
    if (!this.terminal) {
      this.stream.write(`${text}\n`);
      return;
    }
    // One screen row at most: a wrapped line cannot be rewritten in place.
    const width = Math.max(20, (this.stream.columns || 80) - 1);
    this.status = text.length > width ? `${text.slice(0, width - 1)}…` : text;
    this.stream.write(`\r\x1b[2K${this.status}`);
  }

  /** Suites and their children's output may print while the line shows: clear it, print, draw it again. */
  private clearBeforeConsolePrints(): void {
    for (const method of PRINTING) {
      const original = console[method].bind(console);
      console[method] = (...values: unknown[]) => {
        const status = this.status;
        this.clear();
        original(...values);
        if (status !== null) {
          this.status = status;
          this.stream.write(status);
        }
      };
    }
  }
}
