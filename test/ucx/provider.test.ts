// UcxProvider for real: contexts over tcp and shared memory, registration and packed rkeys,
// UCX-allocated pool blocks, typed errors (unknown transports, closed providers, missing UCX),
// openProvider and ALLOCTOOLS_PROVIDER, and Bun's signal handlers after UCX loads.
import type { MemoryRegionImpl } from "../../lib/memory/region.ts";
import { expect, test } from "bun:test";
import {
  AllocToolsError, LibraryLoadError, MemoryPool, RemoteRegion, UcxEndpoint, UcxError, UcxProvider,
  openProviderDescribed,
} from "../../lib/index.ts";
import { describeUcx, runBun } from "../helpers.ts";

const small = { small: { chunkSize: 256, initialCount: 4 }, medium: { chunkSize: 4096, initialCount: 2 },
  large: { chunkSize: 65536, initialCount: 1 }, huge: { chunkSize: 1 << 20, initialCount: 1 } };

describeUcx("UcxProvider", () => {
  test("opens over tcp and over shared memory; regions carry a packed rkey blob and virtual addresses", () => {
    for (const transports of ["tcp", "posix,cma", "sysv,cma"]) {
      using provider = UcxProvider.open({ transports });
      expect(provider.kind).toBe("ucx");
      expect(provider.name).toBe(`ucx(${transports})`);
      expect(provider.info.version).toMatch(/^1\.\d+\.\d+$/);
      expect(provider.virtualAddressing).toBe(true);
      using pool = new MemoryPool(provider, small);
      const r = pool.getRegion(100) as MemoryRegionImpl;
      expect(r.remoteKeyBytes).toBeInstanceOf(Uint8Array);
      expect(r.remoteKeyBytes!.length).toBeGreaterThanOrEqual(10);
      expect(r.remoteKey).toBe(0n);
      expect(r.localKey).toBe(BigInt(r.registration.handle)); // the memory handle
      const remote = r.remote();
      expect(remote.version).toBe(2);
      expect(remote.address).toBe(BigInt(r.address));
      expect(RemoteRegion.fromBytes(remote.toBytes()).equals(remote)).toBe(true);
      pool.releaseRegion(r);
    }
  });

  test("blocks are UCX-allocated by default on shared memory, not on tcp; both can be asked for", () => {
    const blobLength = (o: Parameters<typeof UcxProvider.open>[0]) => {
      using provider = UcxProvider.open(o);
      using pool = new MemoryPool(provider, small);
      const r = pool.getRegion(10);
      const n = r.remoteKeyBytes!.length;
      pool.releaseRegion(r);
      return { allocate: provider.info.allocateBlocks, n };
    };
    // A UCX-allocated segment's rkey names the segment (tens of bytes); our own memory's is 10 bytes.
    expect(blobLength({ transports: "tcp" })).toEqual({ allocate: false, n: 10 });
    const shm = blobLength({ transports: "posix,cma" });
    expect(shm.allocate).toBe(true);
    expect(shm.n).toBeGreaterThan(10);
    expect(blobLength({ transports: "posix,cma", allocateBlocks: false })).toEqual({ allocate: false, n: 10 });
    expect(blobLength({ transports: "tcp", allocateBlocks: true }).allocate).toBe(true);
  });

  test("closing the provider first closes its pool: UCX-allocated blocks go with it, views detach, nothing dangles", () => {
    const provider = UcxProvider.open({ transports: "posix,cma" });
    const pool = new MemoryPool(provider, small);
    const r = pool.getRegion(4096);
    r.view.fill(7);
    provider.close(); // children before parents: the pool closes first (and warns of the region out)
    expect(provider.closed).toBe(true);
    expect(pool.closed).toBe(true);
    expect(r.view.length).toBe(0); // detached with the block: a late access reads nothing
    expect(() => pool.getRegion(100)).toThrow(expect.objectContaining({ code: "PROVIDER_CLOSED" }));
    expect(pool.close().count).toBe(0);
  });

  test("unknown transports are a UcxError naming what was asked and what UCX knows", () => {
    let error: unknown;
    try {
      UcxProvider.open({ transports: "warp_drive" });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(UcxError);
    const e = error as UcxError;
    expect(e.function).toBe("ucp_init_version");
    expect(e.code).toBe("UCS_ERR_NO_DEVICE");
    expect(e.status).toBe(-14);
    expect(e.description).toBe("No such device");
    expect(e.message).toContain("warp_drive");
    expect(e.message).toContain("tcp, posix, sysv");
  });

  test("bad options are TypeErrors before UCX is touched", () => {
    for (const o of [{ transports: "" }, { transports: "tcp;rm -rf" }, { transports: 5 }, { netDevices: "lo eth0" },
      { allocateBlocks: "yes" }, { settings: { tls: "tcp" } }, { settings: { TLS: 1 } }]) {
      expect(() => UcxProvider.open(o as never)).toThrow(TypeError);
    }
    expect(() => UcxProvider.open(null as never)).toThrow(TypeError);
  });

  test("a closed provider refuses registrations, blocks, pools and endpoints with PROVIDER_CLOSED; close is idempotent", () => {
    const provider = UcxProvider.open({ transports: "posix,cma" });
    const endpoint = new UcxEndpoint(provider);
    provider.close();
    provider.close();
    expect(endpoint.closed).toBe(true); // children close first
    const codes = [
      () => provider.register(4096, 4096, 0x3300),
      () => provider.allocateBlock(4096),
      () => new MemoryPool(provider),
      () => new UcxEndpoint(provider),
    ].map((f) => { try { f(); return "no error"; } catch (e) { return (e as AllocToolsError).code; } });
    expect(codes).toEqual(["PROVIDER_CLOSED", "PROVIDER_CLOSED", "PROVIDER_CLOSED", "PROVIDER_CLOSED"]);
  });

  test("openProvider({ provider: 'ucx' }) and ALLOCTOOLS_PROVIDER=ucx pick UCX", () => {
    const opened = openProviderDescribed({ provider: "ucx", ucx: { transports: "tcp" } });
    try {
      expect(opened.provider).toBeInstanceOf(UcxProvider);
      expect(opened.description).toContain("UCX 1.");
      expect(opened.description).toContain("ucx(tcp)");
    } finally {
      opened.provider.close();
    }
    const r = runBun(`
      const { openProvider } = await import("./lib/index.ts");
      const p = openProvider();
      console.log(p.kind, p.name);
      p.close();
    `, { ALLOCTOOLS_PROVIDER: "ucx", UCX_TLS: "posix,cma" });
    expect(r.stdout.trim()).toBe("ucx ucx(posix,cma)");
  });

  test("loading UCX leaves Bun's SIGSEGV, SIGBUS, SIGILL and SIGFPE handlers; a WebAssembly trap still throws", () => {
    const r = runBun(`
      import * as libc from "./ffi/libc.ts";
      const handlers = () => [libc.SIGSEGV, libc.SIGBUS, libc.SIGILL, 8].map((s) => libc.signalHandler(s).toString(16));
      const before = handlers();
      const { UcxProvider, UcxEndpoint } = await import("./lib/index.ts");
      const p = UcxProvider.open({ transports: "posix,cma" });
      new UcxEndpoint(p);
      const after = handlers();
      // i32.load at address 65536 of a one-page memory: out of bounds, a trap JSC turns into RuntimeError.
      const wasm = new Uint8Array([0,97,115,109,1,0,0,0,1,5,1,96,0,1,127,3,2,1,0,5,3,1,0,1,7,5,1,1,102,0,0,10,11,1,9,0,65,128,128,4,40,2,0,11]);
      let trap = "none";
      try { new WebAssembly.Instance(new WebAssembly.Module(wasm)).exports.f(); } catch (e) { trap = e.constructor.name; }
      p.close();
      console.log(JSON.stringify({ before, after, trap }));
    `);
    expect(r.exitCode).toBe(0);
    const { before, after, trap } = JSON.parse(r.stdout);
    expect(after).toEqual(before);
    expect(trap).toBe("RuntimeError");
  });
});

test("without UCX (ALLOCTOOLS_UCX_PATH at nothing) the provider is a LibraryLoadError with the install hint", () => {
  const r = runBun(`
    const { UcxProvider, openProvider, LibraryLoadError, ucxStatus } = await import("./lib/index.ts");
    const out = {};
    try { UcxProvider.open(); } catch (e) { out.open = [e instanceof LibraryLoadError, e.message]; }
    try { openProvider({ provider: "ucx" }); } catch (e) { out.named = e instanceof LibraryLoadError; }
    out.status = ucxStatus();
    console.log(JSON.stringify(out));
  `, { ALLOCTOOLS_UCX_PATH: "/nonexistent/libucp.so.0" });
  const out = JSON.parse(r.stdout);
  expect(out.open[0]).toBe(true);
  expect(out.open[1]).toContain("apt-get install libucx0");
  expect(out.open[1]).toContain("ALLOCTOOLS_UCX_PATH=/nonexistent/libucp.so.0");
  expect(out.named).toBe(true);
  expect(out.status.available).toBe(false);
  expect(LibraryLoadError).toBeDefined();
});
