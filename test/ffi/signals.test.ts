// libfabric's PSM dependency (libinfinipath) installs SIGSEGV/SIGBUS/SIGILL handlers when it loads;
// Bun's engine needs its own to stop a busy Worker. ffi/libfabric.ts restores them after dlopen.
import { expect } from "bun:test";
import { test } from "bun:test";
import { describeFabric, runBun } from "../helpers.ts";

describeFabric("signal handlers", () => {
  test("loading libfabric and opening providers leaves SIGSEGV, SIGBUS and SIGILL handlers as they were", () => {
    const r = runBun(`
      import * as libc from "./ffi/libc.ts";
      const handlers = () => [libc.SIGSEGV, libc.SIGBUS, libc.SIGILL].map((s) => libc.signalHandler(s).toString(16));
      const before = handlers();
      const { LibfabricProvider } = await import("./lib/index.ts");
      LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" }).close();
      LibfabricProvider.open({ provider: "shm" }).close();
      console.log(JSON.stringify({ before, after: handlers() }));
    `);
    const { before, after } = JSON.parse(r.stdout);
    expect(after).toEqual(before);
  });

  test("a busy Worker can be terminated after libfabric is loaded (it crashed the process with signal 11)", () => {
    const r = runBun(`
      const { LibfabricProvider } = await import("./lib/index.ts");
      const p = LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" });
      const src = URL.createObjectURL(new Blob(["postMessage(0); let x = 0; for (;;) x = (x + 1) | 0;"]));
      for (let i = 0; i < 3; i++) {
        const w = new Worker(src);
        await new Promise((r) => (w.onmessage = r));
        await Bun.sleep(30);
        const closed = new Promise((r) => w.addEventListener("close", r));
        w.terminate();
        await closed;
      }
      p.close();
      console.log("ok");
    `);
    expect(r.stdout.trim()).toBe("ok");
    expect(r.exitCode).toBe(0);
  });
});
