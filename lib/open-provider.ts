// openProvider: libfabric when it loads, the embedded host provider otherwise, and it says which.
import { libfabricStatus } from "../ffi/libfabric.ts";
import { HostProvider } from "./host-provider.ts";
import { LibfabricProvider, type LibfabricProviderOptions } from "./libfabric-provider.ts";
import { MpiProvider } from "./mpi-provider.ts";
import type { RegionProvider } from "./provider.ts";

export interface OpenProviderOptions extends LibfabricProviderOptions {
  /**
   * "host" for the embedded provider, "mpi" for MpiProvider (inside an MPI job), a libfabric provider name ("tcp", "shm", ...) for that one
   * and nothing else, or undefined for libfabric's first choice with a fall-back to the host.
   * Default: $ALLOCTOOLS_PROVIDER, else undefined.
   */
  provider?: string;
}

export interface OpenedProvider {
  readonly provider: RegionProvider;
  /** One line saying which provider is in use and, for a fall-back, why. */
  readonly description: string;
}

let warnedFallback = false;

/**
 * Opens a provider; see OpenProviderOptions.provider for the rules. A fall-back to the host
 * provider is said once per process as a process warning (`AllocToolsFallback`).
 */
export function openProvider(options: OpenProviderOptions = {}): RegionProvider {
  const opened = openProviderDescribed(options);
  if (opened.provider.kind === "host" && (opened.provider as HostProvider).reason !== undefined && !warnedFallback) {
    warnedFallback = true;
    process.emitWarning(`alloctools: using the ${opened.description}`, "AllocToolsFallback");
  }
  return opened.provider;
}

/** openProvider, with a one-line description of what was chosen. */
export function openProviderDescribed(options: OpenProviderOptions = {}): OpenedProvider {
  const name = options.provider ?? envProvider();
  if (name === "host") return { provider: new HostProvider(), description: "host provider (asked for)" };
  if (name === "mpi") {
    const p = MpiProvider.open();
    return { provider: p, description: `MPI provider: one dynamic window, rank ${p.rank} of ${p.size}, ${p.threadLevel} (${p.libraryVersion})` };
  }
  if (name !== undefined) {
    // Asked for by name: never fall back.
    const p = LibfabricProvider.open({ ...options, provider: name });
    return { provider: p, description: `libfabric ${p.info.version} provider ${p.name} (${p.info.mrModeNames.join("|") || "mr_mode 0"})` };
  }
  const status = libfabricStatus();
  if (!status.available) {
    const reason = `libfabric not available: ${status.reason}`;
    return { provider: new HostProvider({ reason }), description: `host provider (${reason})` };
  }
  try {
    const p = LibfabricProvider.open(options);
    return { provider: p, description: `libfabric ${p.info.version} provider ${p.name} (${p.info.mrModeNames.join("|") || "mr_mode 0"})` };
  } catch (e) {
    const reason = `no usable libfabric provider: ${(e as Error).message}`;
    return { provider: new HostProvider({ reason }), description: `host provider (${reason})` };
  }
}

function envProvider(): string | undefined {
  const v = process.env.ALLOCTOOLS_PROVIDER;
  if (v === undefined || v === "") return undefined;
  if (!/^[A-Za-z0-9_;.-]+$/.test(v)) throw new TypeError(`ALLOCTOOLS_PROVIDER must be a provider name such as "tcp" or "host", got ${JSON.stringify(v)}`);
  return v;
}
