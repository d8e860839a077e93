// A shared pool's handle changed after share() (issue 21, defect 8): attach took chunkSize and the
// rest of the layout from the handle, so 1024 changed to 512 attached, and the Worker's regions
// lay over those the owner held (2048 gave a bare RangeError). Now the shared memory describes
// its pool and attach checks the handle against it: every field, and every field of its provider
// handle, changed one at a time (fast-check), is refused with a typed error and the pool stays as
// it was. In child processes: a tampered native handle could crash.
import { expect, setDefaultTimeout, test } from "bun:test";
import { describeFabric, describeUcx } from "../helpers.ts";

setDefaultTimeout(120_000);

const RUNS = Number(process.env.ALLOCTOOLS_TAMPER_RUNS ?? 300);

interface TamperResult {
  tried: number;
  fields: number;
  failures: string[];
  refusals: Record<string, number>;
  served: number;
  leaked: number;
}

function tamper(provider: string, seed: number): TamperResult {
  const r = Bun.spawnSync([process.execPath, `${import.meta.dir}/handle-tamper-child.ts`, provider, String(RUNS), String(seed)], {
    stdout: "pipe", stderr: "pipe", timeout: 110_000,
  });
  if (r.exitCode !== 0 || r.signalCode !== undefined) {
    throw new Error(`handle-tamper-child.ts ${provider} ended with ${r.signalCode ?? `exit ${r.exitCode}`}: ${r.stderr.toString().slice(-2000)}`);
  }
  return JSON.parse(r.stdout.toString().trim().split("\n").at(-1)!) as TamperResult;
}

function suite(provider: string): void {
  test(`every field of a pool handle (and of its provider handle) changed one at a time: a typed error, the pool untouched [${provider}]`, () => {
    const result = tamper(provider, 21);
    expect(result.failures).toEqual([]);
    expect(result.tried).toBeGreaterThanOrEqual(RUNS + result.fields); // the property ran to the end, then each field once more
    for (const code of Object.keys(result.refusals)) expect(["INVALID_ARGUMENT", "NOT_SUPPORTED"]).toContain(code);
    expect(result.served).toBe(1024); // refused attaches took no slot: the owner and two Workers still fit maxWorkers 3
    expect(result.leaked).toBe(0);
  });
}

suite("host");
describeFabric("tampered pool handles [tcp]", () => suite("tcp"));
describeUcx("tampered pool handles [ucx tcp]", () => suite("ucx-tcp"));
