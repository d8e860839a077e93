import { expect, test, describe } from "bun:test";
import {
  FabricError, HostProvider, LibfabricProvider, LibraryLoadError, MemoryBlockAllocator, MemoryRegionTraits, DEFAULT_ACCESS,
  Access, openProviderDescribed, openProvider, FI,
} from "../../lib/index.ts";
import { describeFabric, runBun, vmLckKiB } from "../helpers.ts";

describe("HostProvider", () => {
  test("pins what it registers and issues unique 64-bit keys, virtual addressing", () => {
    const p = new HostProvider({ firstKey: 2n ** 63n });
    const block = new MemoryBlockAllocator({ lock: false }).allocate(8192);
    const before = vmLckKiB();
    const a = p.register(block.address, 8192, DEFAULT_ACCESS);
    expect(vmLckKiB() - before).toBe(8);
    const b = p.register(block.address, 4096, DEFAULT_ACCESS);
    expect(a.remoteKey).toBe(2n ** 63n);
    expect(b.remoteKey).toBe(2n ** 63n + 1n);
    expect(p.virtualAddressing).toBe(true);
    p.deregister(b);
    p.deregister(a);
    expect(vmLckKiB()).toBe(before);
    p.close();
    block.free();
  });
});

describe("HostProvider page pins", () => {
  test("two registrations of one buffer: releasing one leaves its pages pinned for the other", () => {
    const p = new HostProvider();
    const block = new MemoryBlockAllocator({ lock: false }).allocate(4 * 4096);
    const before = vmLckKiB();
    const whole = p.register(block.address, 4 * 4096, DEFAULT_ACCESS);
    const middle = p.register(block.address + 4096 + 100, 5000, DEFAULT_ACCESS); // touches pages 1 and 2
    expect(vmLckKiB() - before).toBe(16);
    p.deregister(whole);
    expect(vmLckKiB() - before).toBe(8); // pages 1 and 2 still held by the second registration
    p.deregister(middle);
    expect(vmLckKiB()).toBe(before);
    p.close();
    block.free();
  });
});

describe("MemoryRegionTraits", () => {
  test("the default access flags are the original's: read, write, send, recv, remote read, remote write", () => {
    expect(DEFAULT_ACCESS).toBe(Access.READ | Access.WRITE | Access.SEND | Access.RECV | Access.REMOTE_READ | Access.REMOTE_WRITE);
    expect(DEFAULT_ACCESS).toBe(0x3f00);
    expect(new MemoryRegionTraits(new HostProvider()).access).toBe(DEFAULT_ACCESS);
  });

  test("calls the provider and derives keys and remote addresses", () => {
    const calls: string[] = [];
    const fake = {
      name: "fake", kind: "host" as const, virtualAddressing: false, closed: false,
      register(address: number, length: number, access: number) {
        calls.push(`reg ${length} ${access}`);
        return { address, length, handle: 1, localKey: 7n, remoteKey: 2n ** 64n - 1n };
      },
      deregister() { calls.push("dereg"); },
      close() {},
    };
    const t = new MemoryRegionTraits(fake, Access.REMOTE_READ);
    const reg = t.register(4096, 100);
    expect(t.localKey(reg)).toBe(7n);
    expect(t.remoteKey(reg)).toBe(2n ** 64n - 1n);
    expect(t.remoteAddress(reg, 4096 + 64)).toBe(64n); // offset mode
    t.deregister(reg);
    expect(calls).toEqual([`reg 100 ${Access.REMOTE_READ}`, "dereg"]);
  });
});

describe("openProvider", () => {
  test("without libfabric it falls back to the host provider and says why", () => {
    const r = runBun(`
      import { openProviderDescribed } from "./lib/index.ts";
      const o = openProviderDescribed();
      console.log(JSON.stringify({ name: o.provider.name, description: o.description, reason: o.provider.reason }));
    `, { ALLOCTOOLS_LIBFABRIC_PATH: "/nonexistent/libfabric.so.1", ALLOCTOOLS_PROVIDER: "" });
    const out = JSON.parse(r.stdout);
    expect(out.name).toBe("host");
    expect(out.description).toContain("libfabric is not available");
    expect(out.reason).toContain("apt-get install libfabric1");
  });

  test("openProvider() says so (a process warning) when it falls back", () => {
    const r = runBun(`
      import { openProvider } from "./lib/index.ts";
      const warnings = [];
      process.on("warning", (w) => warnings.push(w.name + ": " + w.message));
      const p = openProvider();
      await Bun.sleep(5);
      console.log(JSON.stringify({ kind: p.kind, warnings }));
    `, { ALLOCTOOLS_LIBFABRIC_PATH: "/nonexistent/libfabric.so.1", ALLOCTOOLS_PROVIDER: "" });
    const out = JSON.parse(r.stdout);
    expect(out.kind).toBe("host");
    expect(out.warnings.join("\n")).toContain("AllocToolsFallback: alloctools: using the host provider (libfabric is not available (");
  });

  test("a provider asked for by name never falls back", () => {
    const r = runBun(`
      import { openProvider } from "./lib/index.ts";
      try { openProvider({ provider: "tcp" }); console.log("opened"); } catch (e) { console.log(e.name); }
    `, { ALLOCTOOLS_LIBFABRIC_PATH: "/nonexistent/libfabric.so.1" });
    expect(r.stdout.trim()).toBe("LibraryLoadError");
    expect(LibraryLoadError).toBeDefined();
  });

  test('"host" by name gives the host provider', () => {
    const p = openProvider({ provider: "host" });
    expect(p.kind).toBe("host");
    p.close();
  });

  test("ALLOCTOOLS_PROVIDER with a garbage value is a clear error", () => {
    const r = runBun(`
      import { openProvider } from "./lib/index.ts";
      try { openProvider(); console.log("opened"); } catch (e) { console.log(e.name + ": " + e.message); }
    `, { ALLOCTOOLS_PROVIDER: "tcp; rm -rf /" });
    expect(r.stdout).toContain("TypeError: ALLOCTOOLS_PROVIDER must be a provider name");
  });
});

describeFabric("LibfabricProvider", () => {
  test("opens tcp and describes it: provider, fabric, domain, mr_mode, key size, threading", () => {
    const p = LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" });
    try {
      expect(p.info.provider).toBe("tcp;ofi_rxm");
      expect(p.info.fabric.length).toBeGreaterThan(0);
      expect(p.info.domain.length).toBeGreaterThan(0);
      expect(p.info.keySize).toBeGreaterThan(0);
      expect(p.info.threading).toBe("safe");
      expect(p.info.endpointType).toBe("rdm");
      expect(p.virtualAddressing).toBe((p.info.mrMode & FI.MR_VIRT_ADDR) !== 0);
      expect(p.describe()).toContain("fi_info");
    } finally {
      p.close();
    }
  });

  test("shm uses virtual addresses (FI_MR_VIRT_ADDR); asking for mr_mode 0 gives offsets", () => {
    const v = LibfabricProvider.open({ provider: "shm" });
    const o = LibfabricProvider.open({ provider: "shm", mrMode: 0 });
    try {
      expect(v.info.mrModeNames).toContain("FI_MR_VIRT_ADDR");
      expect(v.virtualAddressing).toBe(true);
      expect(o.virtualAddressing).toBe(false);
    } finally {
      v.close();
      o.close();
    }
  });

  test("registration: unique requested keys per domain, exact desc and key; registering twice works", () => {
    const p = LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1", firstKey: 2n ** 60n + 5n });
    const block = new MemoryBlockAllocator().allocate(4096);
    try {
      const a = p.register(block.address, 4096, DEFAULT_ACCESS);
      const b = p.register(block.address, 4096, DEFAULT_ACCESS);
      expect(a.remoteKey).toBe(2n ** 60n + 5n);
      expect(b.remoteKey).toBe(2n ** 60n + 6n);
      expect(p.registrations).toBe(2);
      p.deregister(a);
      p.deregister(b);
      expect(p.registrations).toBe(0);
    } finally {
      p.close();
      block.free();
    }
  });

  test("close() closes registrations before the domain, and is idempotent", () => {
    const p = LibfabricProvider.open({ provider: "shm" });
    const block = new MemoryBlockAllocator().allocate(4096);
    p.register(block.address, 4096, DEFAULT_ACCESS);
    p.close();
    p.close();
    expect(p.closed).toBe(true);
    expect(() => p.register(block.address, 4096, DEFAULT_ACCESS)).toThrow(/closed/);
    block.free();
  });

  test("an unknown provider is a FabricError (FI_ENODATA), not a fall-back", () => {
    let err: unknown;
    try { openProvider({ provider: "no-such-provider" }); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(FabricError);
    expect((err as FabricError).errno).toBe(FI.ENODATA);
  });

  test("openProvider with no name picks libfabric and says so", () => {
    const o = openProviderDescribed({ node: "127.0.0.1" });
    try {
      expect(o.provider.kind).toBe("libfabric");
      expect(o.description).toContain("libfabric");
    } finally {
      o.provider.close();
    }
  });

  test("bad options are TypeErrors", () => {
    expect(() => LibfabricProvider.open({ endpointType: "bogus" as "rdm" })).toThrow(TypeError);
    expect(() => LibfabricProvider.open({ threading: 3 as unknown as "safe" })).toThrow(TypeError);
    expect(() => LibfabricProvider.open({ firstKey: 5 as unknown as bigint })).toThrow(TypeError);
    expect(() => LibfabricProvider.open({ provider: "" })).toThrow(TypeError);
  });
});
