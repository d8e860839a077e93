// Worker addresses are checked before ucp_ep_create (issue 21, defect 2): UCX trusts every byte of
// a peer's address (a 16-byte name of 0xff bytes aborted the process on "addr version 15").
// The reader (ffi/ucx-address.ts) is fuzzed in this process, since it is plain TypeScript; the
// inserts run in child processes, so that an abort is a failed test, not a dead runner.
import { afterAll, beforeAll, expect, test } from "bun:test";
import fc from "fast-check";
import { checkWorkerAddress, readWorkerAddress, transportChecksum, transportName, workerAddressProblem, type WorkerAddress } from "../../ffi/ucx-address.ts";
import { UcxEndpoint, UcxProvider } from "../../lib/index.ts";
import { describeUcx } from "../helpers.ts";

/** Configurations whose real addresses are fuzzed and inserted (tcp on loopback only). */
const CONFIGURATIONS = [
  { label: "posix,cma", transports: "posix,cma" },
  { label: "sysv,cma", transports: "sysv,cma" },
  { label: "tcp", transports: "tcp", netDevices: "lo" },
  { label: "shm", transports: "shm" },
  { label: "tcp (address v2)", transports: "tcp", netDevices: "lo", settings: { ADDRESS_VERSION: "v2" } },
  { label: "posix,cma (address v2, debug info)", transports: "posix,cma", settings: { ADDRESS_VERSION: "v2", ADDRESS_DEBUG_INFO: "y" } },
] as const;
const SEED = Number(process.env.ALLOCTOOLS_FUZZ_SEED ?? 21);

describeUcx("worker addresses are read with every length bounded", () => {
  const real = new Map<string, Uint8Array>();
  const own = new Map<string, WorkerAddress>();
  beforeAll(() => {
    for (const c of CONFIGURATIONS) {
      const provider = UcxProvider.open(c);
      const ep = new UcxEndpoint(provider);
      real.set(c.label, ep.name);
      own.set(c.label, readWorkerAddress(ep.name) as WorkerAddress);
      ep.close();
      provider.close();
    }
  });
  afterAll(() => real.clear());

  test("real addresses of every transport and both formats read whole, and pass their own worker's check", () => {
    for (const [label, bytes] of real) {
      const read = readWorkerAddress(bytes);
      expect({ label, read: typeof read }).toEqual({ label, read: "object" });
      const address = read as WorkerAddress;
      expect(address.version).toBe(label.includes("v2") ? 2 : 1);
      expect(address.entries.length).toBeGreaterThan(0);
      expect(address.entries.every((e) => e.endpointAddresses === 0)).toBe(true);
      for (const [otherLabel, other] of own) expect({ label, otherLabel, problem: workerAddressProblem(bytes, other) }).toEqual({ label, otherLabel, problem: "" });
    }
    const names = (label: string) => (own.get(label)!.entries.map((e) => transportName(e.transportChecksum)));
    expect(names("posix,cma")).toEqual(["posix", "cma"]);
    expect(names("tcp")).toEqual(["tcp"]);
    expect(transportChecksum("tcp")).toBe(own.get("tcp")!.entries[0]!.transportChecksum);
  });

  test("the name that aborted UCX, and other garbage, is refused saying what is wrong", () => {
    const local = own.get("posix,cma")!;
    expect(workerAddressProblem(new Uint8Array(16).fill(0xff), local)).toBe("address version 15 (header byte 0xff) is not one UCX 1.13 reads (0 for v1, 1 for v2)");
    expect(workerAddressProblem(new Uint8Array(0), local)).toBe("a worker address is at least 1 byte, got 0");
    expect(workerAddressProblem(new Uint8Array(3), local)).toMatch(/the worker uuid \(8 bytes at byte 1\) runs past its 3 bytes \(truncated\?\)/);
    const posix = real.get("posix,cma")!;
    expect(workerAddressProblem(posix.subarray(0, posix.length - 1), local)).toMatch(/truncated/);
    expect(workerAddressProblem(Uint8Array.from([...posix, 7]), local)).toMatch(/1 bytes follow the last device/);
    const tcp = real.get("tcp")!;
    // The tcp interface's address (2 bytes, the port) is the address's last part: a longer one is read as framed, and refused.
    const longerPort = Uint8Array.from([...tcp.subarray(0, tcp.length - 3), (tcp[tcp.length - 3]! & 0xc0) | 3, tcp[tcp.length - 2]!, tcp[tcp.length - 1]!, 0]);
    expect(workerAddressProblem(longerPort, own.get("tcp")!)).toBe("interface 0 (tcp) has a 3-byte interface address; tcp here reads 2 bytes");
  });

  test("fuzzed: truncations are all refused; bit flips, byte flips and random bytes never throw and are read or refused", () => {
    for (const [label, bytes] of real) {
      const local = own.get(label)!;
      for (let n = 0; n < bytes.length; n++) {
        const problem = workerAddressProblem(bytes.subarray(0, n), local);
        expect({ label, n, refused: problem !== "" }).toEqual({ label, n, refused: true });
      }
    }
    const realList = [...real.values()];
    const locals = [...own.values()];
    fc.assert(fc.property(fc.constantFrom(...realList), fc.constantFrom(...locals), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }),
      (bytes, local, changes) => {
        const b = bytes.slice();
        for (const [at, mask] of changes) b[at % b.length] = b[at % b.length]! ^ mask;
        const checked = checkWorkerAddress(b, local);
        expect(typeof checked === "string" ? checked.length > 0 : checked.entries.length >= 0).toBe(true);
      }), { seed: SEED, numRuns: 3000 });
    fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), fc.constantFrom(...locals), (b, local) => {
      const checked = checkWorkerAddress(b, local);
      expect(typeof checked === "string" || checked.entries.length >= 0).toBe(true);
    }), { seed: SEED, numRuns: 3000 });
  });

  for (const c of CONFIGURATIONS.slice(0, 3)) {
    test(`[${c.label}] insert() of fuzzed names in a child process: no abort; refusals are UcxError UCS_ERR_INVALID_ADDR; real addresses insert`, () => {
      const r = Bun.spawnSync([process.execPath, `${import.meta.dir}/insert-fuzz-child.ts`, c.transports, String(SEED), JSON.stringify(CONFIGURATIONS)], {
        cwd: `${import.meta.dir}/../..`, stdout: "pipe", stderr: "pipe",
      });
      const stdout = r.stdout.toString();
      const stderr = r.stderr.toString();
      expect(stdout).not.toContain("Assertion");
      expect(stderr).not.toContain("panic");
      expect(r.exitCode).toBe(0);
      const result = JSON.parse(stdout.trim().split("\n").pop()!) as { outcomes: Record<string, number>; realOutcomes: string[]; total: number };
      expect(result.outcomes["0xff x 16: UcxError ucp_ep_create UCS_ERR_INVALID_ADDR refused"]).toBe(1);
      expect(result.outcomes["one byte 0: UcxError ucp_ep_create UCS_ERR_INVALID_ADDR refused"]).toBe(1);
      // Every outcome is an insert, a refusal before UCX, or UCX's own typed answer (no common transport).
      for (const outcome of Object.keys(result.outcomes)) {
        expect(outcome).toMatch(/: inserted$|: UcxError ucp_ep_create UCS_ERR_INVALID_ADDR refused$|: UcxError ucp_ep_create UCS_ERR_UNREACHABLE$|^accepted, not inserted$/);
      }
      expect(result.outcomes["fuzzed: UcxError ucp_ep_create UCS_ERR_INVALID_ADDR refused"]).toBeGreaterThan(500);
      // Live workers' real addresses insert, or UCX answers UNREACHABLE (no transport in common); none is refused.
      CONFIGURATIONS.forEach((other, i) => {
        const expected = other.transports === c.transports && !("settings" in other) ? ["inserted"] : ["inserted", "UcxError ucp_ep_create UCS_ERR_UNREACHABLE"];
        expect({ peer: other.label, expected: expected.includes(result.realOutcomes[i]!) }).toEqual({ peer: other.label, expected: true });
      });
    }, 120_000);
  }
});
