// Job.open() with no launcher: rank 0 of 1, collectives that wait for nobody, exchangeNames giving
// this process's own peer (usable: a write through it lands), examples/job-ring.ts alone; and the
// ways Job.open() refuses, each a typed error saying what is missing and how to launch. Every case
// runs in a fresh Bun process with the launchers' variables removed.
import { expect, test } from "bun:test";
import { runBun } from "../helpers.ts";
import { describeMpirun, describePmix } from "./gates.ts";
import { fabric, REQUIRE_LIBFABRIC, REQUIRE_UCX, ucx } from "../helpers.ts";

/** The environment of a process no launcher started. */
const NO_LAUNCHER: Record<string, string | undefined> = Object.fromEntries(
  Object.keys(process.env).filter((name) => /^(PMIX_|SLURM_|OMPI_|PMI_|PRTE_)/.test(name)).map((name) => [name, undefined]));

function lastJson(output: { exitCode: number | null; stdout: string; stderr: string }): Record<string, unknown> {
  expect(output.exitCode, output.stderr).toBe(0);
  return JSON.parse(output.stdout.trim().split("\n").pop()!) as Record<string, unknown>;
}

test("no launcher: rank 0 of 1 via singleton; barrier, barrierAsync and allgather wait for nobody; closed jobs refuse with JOB_CLOSED", () => {
  const out = lastJson(runBun(`
    const { Job, AllocToolsError } = await import("./lib/index.ts");
    const job = await Job.open();
    job.barrier();
    await job.barrierAsync();
    const mine = new Uint8Array([1, 2, 3]);
    const all = job.allgather(mine);
    const copied = all[0] !== mine;
    job.close();
    job.close();
    let closed = "";
    try { job.barrier(); } catch (e) { closed = e instanceof AllocToolsError ? e.code : String(e); }
    console.log(JSON.stringify({ rank: job.rank, size: job.size, via: job.via, all: all.map((b) => [...b]), copied, closed, inspect: Bun.inspect(job) }));
  `, NO_LAUNCHER));
  expect(out).toEqual({
    rank: 0, size: 1, via: "singleton", all: [[1, 2, 3]], copied: true, closed: "JOB_CLOSED", inspect: "Job { via: singleton, rank: 0, size: 1, closed: true }",
  });
});

test("no launcher: exchangeNames returns this process's own peer for libfabric tcp and shm, and UCX, and a write through it lands", () => {
  if (!fabric.available && !REQUIRE_LIBFABRIC && !ucx.available && !REQUIRE_UCX) {
    console.warn("[alloctools] skipped: singleton exchangeNames (neither libfabric nor UCX is available)");
    return;
  }
  const out = lastJson(runBun(`
    const { Job, Endpoint, LibfabricProvider, MemoryPool, RemoteRegion, UcxEndpoint, UcxProvider } = await import("./lib/index.ts");
    using job = await Job.open();
    const results = {};
    const cases = {
      ...(${fabric.available || REQUIRE_LIBFABRIC} ? {
        tcp: () => { const p = LibfabricProvider.open({ provider: "tcp", node: "127.0.0.1" }); return [p, new Endpoint(p)]; },
        shm: () => { const p = LibfabricProvider.open({ provider: "shm" }); return [p, new Endpoint(p)]; },
      } : {}),
      ...(${ucx.available || REQUIRE_UCX} ? { ucx: () => { const p = UcxProvider.open({ transports: "tcp" }); return [p, new UcxEndpoint(p)]; } } : {}),
    };
    for (const [name, open] of Object.entries(cases)) {
      const [provider, endpoint] = open();
      const pool = new MemoryPool(provider);
      const peers = job.exchangeNames(endpoint);
      const inbox = pool.getRegion(64);
      inbox.view.fill(0);
      const outbox = pool.getRegion(64);
      outbox.view.set(new TextEncoder().encode("to myself over " + name));
      endpoint.startProgress(0);
      await endpoint.write(outbox, 64, peers[0], RemoteRegion.parse(String(inbox.remote().subregion(0, 64))));
      endpoint.stopProgress();
      results[name] = { peers: peers.length, got: new TextDecoder().decode(inbox.view.subarray(0, 64)).replace(/\\0+$/, "") };
      pool.releaseRegion(inbox); pool.releaseRegion(outbox);
      endpoint.close(); pool.close(); provider.close();
    }
    console.log(JSON.stringify(results));
  `, NO_LAUNCHER));
  for (const [name, result] of Object.entries(out)) expect(result).toEqual({ peers: 1, got: `to myself over ${name}` });
  expect(Object.keys(out).length).toBeGreaterThan(0);
}, 30_000);

test("examples/job-ring.ts alone: a job of one process, its own neighbour over tcp and UCX", () => {
  if (!(fabric.available || REQUIRE_LIBFABRIC) || !(ucx.available || REQUIRE_UCX)) {
    console.warn("[alloctools] skipped: job-ring alone (it needs libfabric and UCX)");
    return;
  }
  const r = Bun.spawnSync([process.execPath, "examples/job-ring.ts"], {
    cwd: `${import.meta.dir}/../..`, env: { ...process.env, ...NO_LAUNCHER } as Record<string, string>, stdout: "pipe", stderr: "pipe",
  });
  expect(r.exitCode, r.stderr.toString()).toBe(0);
  expect(r.stdout.toString().trim()).toBe('rank 0/1 via singleton: tcp got "tcp from rank 0 to rank 0", ucx got "ucx from rank 0 to rank 0"');
}, 30_000);

test("Job.open refuses what it cannot do, with typed errors that say what is missing and how to launch", () => {
  const out = lastJson(runBun(`
    const { Job, AllocToolsError, AllocToolsTypeError, AllocToolsRangeError } = await import("./lib/index.ts");
    const tryOpen = async (options, env) => {
      const saved = {};
      for (const [k, v] of Object.entries(env ?? {})) { saved[k] = process.env[k]; process.env[k] = v; }
      try { const job = await Job.open(options); job.close(); return "opened via " + job.via; }
      catch (e) { return [e.constructor.name, e.code, e.message].join(" | "); }
      finally { for (const [k, v] of Object.entries(saved)) { if (v === undefined) delete process.env[k]; else process.env[k] = v; } }
    };
    console.log(JSON.stringify({
      forcedPmix: await tryOpen({ via: "pmix" }),
      srunWithoutPmix: await tryOpen(undefined, { SLURM_NTASKS: "4", SLURM_PROCID: "1", SLURM_STEP_ID: "0" }),
      pmi2: await tryOpen(undefined, { PMI_SIZE: "3", PMI_RANK: "0" }),
      singletonOnPurpose: await tryOpen({ via: "singleton" }, { SLURM_NTASKS: "4", SLURM_PROCID: "1" }),
      badVia: await tryOpen({ via: "shmem" }),
      unknownKey: await tryOpen({ timeout: 5 }),
      badTimeout: await tryOpen({ timeoutMs: -1 }),
      notObject: await tryOpen(7),
    }));
  `, NO_LAUNCHER));
  expect(out.forcedPmix).toStartWith("AllocToolsError | JOB_UNAVAILABLE | { via: \"pmix\" } found no PMIx server to join");
  expect(out.forcedPmix).toContain("srun --mpi=pmix -n 4 bun app.ts");
  expect(out.srunWithoutPmix).toStartWith("AllocToolsError | JOB_UNAVAILABLE | srun without --mpi=pmix started 4 processes but set up no PMIx server");
  expect(out.pmi2).toStartWith("AllocToolsError | JOB_UNAVAILABLE | a PMI-1/PMI-2 launcher started 3 processes");
  expect(out.singletonOnPurpose).toBe("opened via singleton");
  expect(out.badVia).toStartWith("AllocToolsTypeError | INVALID_ARGUMENT | options.via must be one of \"pmix\", \"mpi\", \"singleton\", got \"shmem\"");
  expect(out.unknownKey).toStartWith("AllocToolsTypeError | UNKNOWN_OPTION | Job.open options: unknown option \"timeout\"");
  expect(out.badTimeout).toStartWith("AllocToolsRangeError | OUT_OF_RANGE | options.timeoutMs must be an integer >= 0");
  expect(out.notObject).toStartWith("AllocToolsTypeError | INVALID_ARGUMENT | Job.open options must be an object");
});

describePmix("PMIx without a launcher", () => {
  test("PMIx_Init without a server is reported as a singleton (PMIX_ERR_UNREACH with a singleton namespace), not an error", () => {
    const out = lastJson(runBun(`
      const { pmixLibrary } = await import("./ffi/pmix.ts");
      const client = pmixLibrary().init();
      const facts = { singleton: client.singleton, rank: client.rank, nspace: client.nspace, size: client.jobSize() };
      client.finalize();
      client.finalize();
      console.log(JSON.stringify(facts));
    `, NO_LAUNCHER));
    expect(out.singleton).toBe(true);
    expect(out.rank).toBe(0);
    expect(out.size).toBe(1);
    expect(String(out.nspace)).toStartWith("singleton.");
  });

  test("a stale environment naming a PMIx server nobody serves: JOB_UNAVAILABLE saying so, not a job of one", () => {
    const out = lastJson(runBun(`
      const { Job } = await import("./lib/index.ts");
      let error = "";
      try { await Job.open(); } catch (e) { error = [e.constructor.name, e.code, e.message].join(" | "); }
      console.log(JSON.stringify({ error }));
    `, { ...NO_LAUNCHER, PMIX_NAMESPACE: "gone.1", PMIX_RANK: "0", PMIX_SERVER_URI41: "pmix-server.1;tcp4://127.0.0.1:9" }));
    expect(String(out.error)).toStartWith("AllocToolsError | JOB_UNAVAILABLE | ");
    expect(String(out.error)).toMatch(/PMIx_Init reached no PMIx server although the environment names one|PMIx_Init could not join/);
  });

  test("ALLOCTOOLS_PMIX_PATH pointing nowhere: JOB_UNAVAILABLE whose cause is a LibraryLoadError with an install hint", () => {
    const out = lastJson(runBun(`
      const { Job, LibraryLoadError, pmixStatus } = await import("./lib/index.ts");
      let error = "", cause = "";
      try { await Job.open(); } catch (e) { error = e.code + " " + e.message; cause = e.cause instanceof LibraryLoadError ? "LibraryLoadError" : String(e.cause); }
      console.log(JSON.stringify({ error, cause, status: pmixStatus() }));
    `, { ...NO_LAUNCHER, PMIX_NAMESPACE: "x.1", ALLOCTOOLS_PMIX_PATH: "/nonexistent/libpmix.so.2" }));
    expect(String(out.error)).toStartWith("JOB_UNAVAILABLE joining through PMIx needs libpmix: PMIx is not available (ALLOCTOOLS_PMIX_PATH=/nonexistent/libpmix.so.2");
    expect(String(out.error)).toContain("apt-get install libpmix2");
    expect(String(out.error)).toContain('{ via: "mpi" }');
    expect(out.cause).toBe("LibraryLoadError");
    expect((out.status as { available: boolean }).available).toBe(false);
  });
});

describeMpirun("Job via mpi without a launcher", () => {
  test("{ via: \"mpi\" } alone is MpiJob's singleton: rank 0 of 1 via mpi", () => {
    const out = lastJson(runBun(`
      const { Job } = await import("./lib/index.ts");
      const job = await Job.open({ via: "mpi" });
      const all = job.allgather(new Uint8Array([9]));
      job.close();
      console.log(JSON.stringify({ rank: job.rank, size: job.size, via: job.via, all: all.map((b) => [...b]) }));
    `, NO_LAUNCHER));
    expect(out).toEqual({ rank: 0, size: 1, via: "mpi", all: [[9]] });
  });
});
