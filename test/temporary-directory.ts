// Directories the tests build C probes and peers in, removed after the test file that made them, so
// that runs leave nothing in /tmp.
import { afterAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * A fresh directory named alloctools-<purpose>-XXXXXX under the system's temporary directory,
 * removed once the tests of the calling file have run (Bun's test runner skips process "exit").
 */
export function temporaryDirectory(purpose: string): string {
  const directory = mkdtempSync(join(tmpdir(), `alloctools-${purpose}-`));
  afterAll(() => rmSync(directory, { recursive: true, force: true }));
  return directory;
}
