// A Worker of a shared pool whose owner closes it while this Worker still holds memory or has RMA
// operations in flight (issue 21, defect 4). Run by owner-close-child.ts; every reply carries the
// request's `seq`, and a command may answer twice (`at`: "posted", then "done").
import {
  Endpoint, LibfabricProvider, MemoryPool, RemoteRegion, UcxEndpoint, UcxProvider, type MemoryRegion, type SharedPoolHandle,
} from "../../lib/index.ts";
import { fromHex, toHex } from "../rma/pattern.ts";

declare const self: Worker;

export type OwnerCloseCommand =
  /** Attach, get `perClass` regions of every class, a temporary and a user region, and fill each with its own byte. */
  | { cmd: "hold"; handle: SharedPoolHandle; perClass: number; sizes: readonly number[]; temporaryBytes: number; userBytes: number }
  /** After the owner's close: read and write every held view, then try every use of the pool. */
  | { cmd: "touch" }
  /** Attach and open an Endpoint (progressing), exposing one pooled region of `exposeBytes`. */
  | { cmd: "endpoint"; handle: SharedPoolHandle; exposeBytes: number; timeoutMs: number }
  /** Block this thread (no progress here) until word 0 of `gate` is not 0. */
  | { cmd: "stall"; gate: SharedArrayBuffer }
  /** Post reads of `length` bytes from the target into a pooled, a temporary and a user region: "posted" at once, "done" when all settled. */
  | { cmd: "read"; name: string; remote: string; length: number; temporaryBytes: number }
  /** Get one region per class, then release them: whether the pool still serves. */
  | { cmd: "serve"; sizes: readonly number[] }
  /** RMA from pooled, temporary and user regions in a loop until an operation is refused; what each failure was. */
  | { cmd: "hammer"; name: string; remote: string; length: number; temporaryBytes: number; started: SharedArrayBuffer }
  /** Temporary and user regions made, touched and released in a loop until the pool refuses. */
  | { cmd: "churn"; handle: SharedPoolHandle; temporaryBytes: number; userBytes: number; started: SharedArrayBuffer }
  /** Attach, get, touch and detach in a loop until attach refuses. */
  | { cmd: "reattach"; handle: SharedPoolHandle; started: SharedArrayBuffer }
  | { cmd: "close" };

type Message = OwnerCloseCommand & { seq: number };

let pool: MemoryPool | null = null;
let endpoint: Endpoint | UcxEndpoint | null = null;
let exposed: MemoryRegion | null = null;
const held: MemoryRegion[] = [];
let user: Uint8Array | null = null;

/** The code of an error (AllocToolsError, FabricError, UcxError, RmaError...), or its name. */
function codeOf(e: unknown): string {
  const code = (e as { code?: unknown }).code;
  return typeof code === "string" ? code : e instanceof Error ? e.name : String(e);
}

function attempt(f: () => unknown): string {
  try {
    f();
    return "none";
  } catch (e) {
    return codeOf(e);
  }
}

/** A new endpoint of the kind the pool's provider is (a view of the owner's). */
function openEndpoint(p: MemoryPool, timeoutMs: number): Endpoint | UcxEndpoint {
  if (p.provider instanceof UcxProvider) return new UcxEndpoint(p.provider, { timeoutMs });
  return new Endpoint(p.provider as LibfabricProvider, { timeoutMs });
}

/** Whether every byte of `view` is `value` or every byte is 0 (the owner's close left fresh pages). */
function contentOf(view: Uint8Array, value: number): "own" | "zeros" | "other" {
  if (view.every((b) => b === value)) return "own";
  if (view.every((b) => b === 0)) return "zeros";
  return "other";
}

function hold(m: Extract<OwnerCloseCommand, { cmd: "hold" }>): Record<string, unknown> {
  pool = MemoryPool.attach(m.handle);
  for (const size of m.sizes) for (let n = 0; n < m.perClass; n++) held.push(pool.getRegion(size));
  held.push(pool.getRegion(m.temporaryBytes));
  user = new Uint8Array(m.userBytes);
  held.push(pool.registerUserRegion(user));
  held.forEach((r, k) => r.view.fill(k + 1));
  return { regions: held.length, lengths: held.map((r) => r.view.length) };
}

/** Reads and writes every held view (a signal here kills the process), then tries the pool. */
function touch(): Record<string, unknown> {
  const p = pool!;
  const contents = held.map((r, k) => (r.view.length === 0 ? "detached" : contentOf(r.view, k + 1)));
  for (const r of held) r.view.fill(0xee);
  const rewritten = held.every((r) => r.view.length === 0 || r.view.every((b) => b === 0xee));
  const pooled = held.find((r) => !r.isTemp && !r.isUser)!;
  return {
    contents, rewritten, closed: p.closed,
    get: attempt(() => p.getRegion(10)),
    temporary: attempt(() => p.getRegion(4 << 20)),
    register: attempt(() => p.registerUserRegion(new Uint8Array(4096))),
    region: attempt(() => p.region(p.indexOf(pooled))),
    release: attempt(() => p.releaseRegion(pooled)),
    releaseTemporary: attempt(() => p.releaseRegion(held.find((r) => r.isTemp)!)),
  };
}

async function read(m: Extract<OwnerCloseCommand, { cmd: "read" }>, reply: (body: Record<string, unknown>) => void): Promise<Record<string, unknown>> {
  const p = pool!;
  const ep = endpoint!;
  const peer = ep.insert(fromHex(m.name));
  const remote = RemoteRegion.fromBytes(fromHex(m.remote));
  const sinks = [p.getRegion(m.length), p.getRegion(m.temporaryBytes), p.registerUserRegion(new Uint8Array(m.length))];
  for (const sink of sinks) sink.view.fill(0);
  const reads = sinks.map((sink) => (ep.read as (l: MemoryRegion, n: number, p: unknown, r: RemoteRegion) => Promise<void>)(sink, m.length, peer, remote)
    .then(() => "done", (e: unknown) => codeOf(e)));
  reply({ at: "posted", inFlight: sinks.map((s) => s.inFlight) });
  const outcomes = await Promise.all(reads);
  const bytes = sinks.map((s) => s.view[0]!);
  const released = sinks.map((s) => attempt(() => p.releaseRegion(s)));
  return { at: "done", outcomes, bytes, released };
}

/** RMA with every kind of local memory until the pool refuses; a signal would end the process instead. */
async function hammer(m: Extract<OwnerCloseCommand, { cmd: "hammer" }>): Promise<Record<string, unknown>> {
  const p = pool!;
  const ep = endpoint!;
  const peer = ep.insert(fromHex(m.name));
  const remote = RemoteRegion.fromBytes(fromHex(m.remote));
  const started = new Int32Array(m.started);
  const failures: Record<string, number> = {};
  let operations = 0;
  const op = ep as unknown as { write(l: MemoryRegion, n: number, p: unknown, r: RemoteRegion): Promise<void>; read(l: MemoryRegion, n: number, p: unknown, r: RemoteRegion): Promise<void> };
  for (let round = 0; round < 1_000_000; round++) {
    let locals: MemoryRegion[] = [];
    try {
      locals = [p.getRegion(m.length), p.getRegion(m.temporaryBytes), p.registerUserRegion(new Uint8Array(m.length))];
      for (const local of locals) {
        local.view.fill(round & 0xff);
        await op.write(local, m.length, peer, remote);
        await op.read(local, m.length, peer, remote);
        local.view[0] = 1; // the view is never dangling, closed or not
        operations += 2;
      }
      if (round === 2) Atomics.store(started, 0, 1), Atomics.notify(started, 0);
    } catch (e) {
      const code = codeOf(e);
      failures[code] = (failures[code] ?? 0) + 1;
      if (p.closed) break;
    } finally {
      for (const local of locals) {
        try { p.releaseRegion(local); } catch (e) { failures[`release:${codeOf(e)}`] = (failures[`release:${codeOf(e)}`] ?? 0) + 1; }
      }
    }
  }
  Atomics.store(started, 0, 1);
  Atomics.notify(started, 0);
  // After the owner's close: every held view still reads (fresh pages or its own bytes).
  return { operations, failures, closed: p.closed };
}

function churn(m: Extract<OwnerCloseCommand, { cmd: "churn" }>): Record<string, unknown> {
  const p = (pool = MemoryPool.attach(m.handle));
  const started = new Int32Array(m.started);
  const failures: Record<string, number> = {};
  let rounds = 0;
  const kept: MemoryRegion[] = [];
  for (; rounds < 10_000_000; rounds++) {
    if (rounds === 10) Atomics.store(started, 0, 1), Atomics.notify(started, 0);
    try {
      const temporary = p.getRegion(m.temporaryBytes);
      kept.push(temporary);
      temporary.view.fill(rounds & 0xff);
      const userRegion = p.registerUserRegion(new Uint8Array(m.userBytes));
      kept.push(userRegion);
      userRegion.view.fill(7);
      // Hold the last pair over the next round, so that the owner's close finds some in use.
      while (kept.length > 2) p.releaseRegion(kept.shift()!);
    } catch (e) {
      const code = codeOf(e);
      failures[code] = (failures[code] ?? 0) + 1;
      if (p.closed) break;
    }
  }
  Atomics.store(started, 0, 1);
  Atomics.notify(started, 0);
  // What is still held: its views read and write without a signal.
  for (const r of kept) { r.view.fill(3); void r.view[r.view.length - 1]; }
  const leaked = p.close().count;
  return { rounds, failures, kept: kept.length, leaked };
}

function reattach(m: Extract<OwnerCloseCommand, { cmd: "reattach" }>): Record<string, unknown> {
  const started = new Int32Array(m.started);
  let attaches = 0;
  let refusal = "none";
  const failures: Record<string, number> = {};
  for (let n = 0; n < 1_000_000; n++) {
    if (n === 10) Atomics.store(started, 0, 1), Atomics.notify(started, 0);
    let p: MemoryPool;
    try {
      p = MemoryPool.attach(m.handle);
    } catch (e) {
      refusal = codeOf(e);
      break;
    }
    attaches++;
    try {
      const r = p.getRegion(100);
      r.view.fill(9);
      p.releaseRegion(r);
    } catch (e) {
      failures[codeOf(e)] = (failures[codeOf(e)] ?? 0) + 1;
    }
    // Every block this attach made views of: read them whatever the owner did meanwhile.
    for (let i = 0; i < 4; i++) {
      try { void p.region(i).view[0]; } catch (e) { failures[`region:${codeOf(e)}`] = (failures[`region:${codeOf(e)}`] ?? 0) + 1; }
    }
    p.close();
  }
  Atomics.store(started, 0, 1);
  Atomics.notify(started, 0);
  return { attaches, refusal, failures };
}

self.onmessage = async (event: MessageEvent<Message>) => {
  const m = event.data;
  const reply = (body: Record<string, unknown>) => postMessage({ seq: m.seq, ok: true, ...body });
  try {
    switch (m.cmd) {
      case "hold": reply(hold(m)); break;
      case "touch": reply(touch()); break;
      case "endpoint": {
        pool = MemoryPool.attach(m.handle);
        endpoint = openEndpoint(pool, m.timeoutMs);
        endpoint.startProgress(1);
        exposed = pool.getRegion(m.exposeBytes);
        exposed.view.fill(0x5a);
        reply({ name: toHex(endpoint.name), remote: toHex(exposed.remote().toBytes()) });
        break;
      }
      case "stall": {
        const gate = new Int32Array(m.gate);
        reply({ at: "stalled" });
        while (Atomics.load(gate, 0) === 0) Atomics.wait(gate, 0, 0, 1000);
        reply({ at: "resumed" });
        break;
      }
      case "read": reply(await read(m, reply)); break;
      case "serve": {
        const got = m.sizes.map((n) => pool!.getRegion(n));
        for (const r of got) pool!.releaseRegion(r);
        reply({ served: got.length });
        break;
      }
      case "hammer": reply(await hammer(m)); break;
      case "churn": reply(churn(m)); break;
      case "reattach": reply(reattach(m)); break;
      case "close": {
        endpoint?.close();
        endpoint = null;
        if (exposed !== null) try { pool!.releaseRegion(exposed); } catch { /* closed by the owner */ }
        exposed = null;
        const leaked = pool?.close().count ?? 0;
        pool = null;
        held.length = 0;
        reply({ leaked });
        break;
      }
    }
  } catch (e) {
    postMessage({ seq: m.seq, ok: false, error: `${(e as Error).name}: ${(e as Error).message}`, code: codeOf(e) });
  }
};

