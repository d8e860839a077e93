// openProvider: libfabric when it loads, the embedded host provider otherwise, and it says which.
import { libfabricStatus } from "../ffi/libfabric.ts";
import { AllocToolsTypeError } from "./errors.ts";
import { HostProvider } from "./host/host-provider.ts";
import { LIBFABRIC_OPTION_KEYS, LibfabricProvider, libfabricProviderNames, type LibfabricProviderOptions } from "./libfabric/libfabric-provider.ts";
import { checkKnownKeys, nearest, type KnownKeys } from "./options.ts";
import { UcxProvider, type UcxProviderOptions } from "./ucx/ucx-provider.ts";
import { MpiProvider } from "./mpi/mpi-provider.ts";

/** Options of {@link openProvider}: a provider name, and for libfabric the {@link LibfabricProviderOptions}. */
export interface OpenProviderOptions extends LibfabricProviderOptions {
  /**
   * "host" for the embedded provider, "ucx" for UcxProvider (options in `ucx`; never a fall-back),
   * "mpi" for MpiProvider (inside an MPI job), a libfabric provider name ("tcp", "shm", ...) for that one
   * and nothing else, or undefined for libfabric's first choice with a fall-back to the host.
   * Default: $ALLOCTOOLS_PROVIDER, else undefined.
   */
  provider?: string;
  /** Options of the UCX provider, used when `provider` is "ucx" (e.g. `{ transports: "tcp" }`). */
  ucx?: UcxProviderOptions;
}

/**
 * Names of libfabric providers. `openProvider({ provider: "tcp" })` with one of these is typed as
 * a {@link LibfabricProvider} (a name is never replaced by the host provider); any other string
 * works too and is typed as either provider.
 */
export type LibfabricProviderName =
  | "tcp" | "tcp;ofi_rxm" | "shm" | "udp" | "udp;ofi_rxd" | "sockets" | "net" | "verbs" | "verbs;ofi_rxm"
  | "efa" | "cxi" | "psm2" | "psm3" | "opx" | "usnic" | "gni";

/** What {@link openProvider} returns: both are disposable (`using provider = openProvider()`). */
export type OpenedRegionProvider = HostProvider | LibfabricProvider | UcxProvider | MpiProvider;

/** What {@link openProviderDescribed} returns. */
export interface OpenedProvider {
  /** The provider opened. */
  readonly provider: OpenedRegionProvider;
  /** One line saying which provider is in use and, for a fall-back, why. */
  readonly description: string;
}

/** Every key of OpenProviderOptions (the compiler checks the list against the interface). */
const OPEN_PROVIDER_OPTION_KEYS: KnownKeys<OpenProviderOptions> = { ...LIBFABRIC_OPTION_KEYS, ucx: true };

let warnedFallback = false;

/**
 * Opens a provider; see {@link OpenProviderOptions.provider} for the rules. A fall-back to the host
 * provider is said once per process as a process warning (`AllocToolsFallback`).
 *
 * Lifetime: the caller owns the provider and closes it (`close()` or `using`) after the pools and
 * endpoints made on it; libfabric providers still open when the process exits are closed then.
 *
 * @throws {@link LibraryLoadError} when a libfabric provider is named and libfabric does not load;
 *   {@link FabricError} when the named provider is not available (the message lists those that are);
 *   {@link AllocToolsTypeError} for an unknown option key or a value of the wrong type.
 */
export function openProvider(options: OpenProviderOptions & { provider: "host" }): HostProvider;
export function openProvider(options: OpenProviderOptions & { provider: LibfabricProviderName }): LibfabricProvider;
export function openProvider(options: OpenProviderOptions & { provider: "ucx" }): UcxProvider;
export function openProvider(options: OpenProviderOptions & { provider: "mpi" }): MpiProvider;
export function openProvider(options?: OpenProviderOptions): OpenedRegionProvider;
export function openProvider(options: OpenProviderOptions = {}): OpenedRegionProvider {
  const opened = openProviderDescribed(options);
  if (opened.provider instanceof HostProvider && opened.provider.reason !== undefined && !warnedFallback) {
    warnedFallback = true;
    process.emitWarning(`alloctools: using the ${opened.description}`, "AllocToolsFallback");
  }
  return opened.provider;
}

/** {@link openProvider}, with a one-line description of what was chosen. Same rules, same errors, no warning. */
export function openProviderDescribed(options: OpenProviderOptions = {}): OpenedProvider {
  if (typeof options !== "object" || options === null) throw new AllocToolsTypeError("openProvider options must be an object");
  checkKnownKeys(options, OPEN_PROVIDER_OPTION_KEYS, "openProvider options");
  const name = options.provider ?? envProvider();
  if (name === "host") return { provider: new HostProvider(), description: "host provider (asked for)" };
  if (name === "ucx") {
    const provider = UcxProvider.open(options.ucx);
    return { provider, description: `UCX ${provider.info.version} provider ${provider.name}${provider.info.allocateBlocks ? " (UCX-allocated blocks)" : ""}` };
  }
  if (name === "mpi") {
    const provider = MpiProvider.open();
    return { provider, description: `MPI provider: one dynamic window, rank ${provider.rank} of ${provider.size}, ${provider.threadLevel} (${provider.libraryVersion})` };
  }
  // Asked for by name: never fall back.
  if (name !== undefined) return describedLibfabric(LibfabricProvider.open({ ...libfabricOptions(options), provider: name }));
  return libfabricOrHost(options);
}

/** No provider named: libfabric's first usable provider, else the host provider with the reason. */
function libfabricOrHost(options: OpenProviderOptions): OpenedProvider {
  const status = libfabricStatus();
  if (!status.available) {
    // status.reason already starts "libfabric is not available (...)".
    const reason = status.reason;
    return { provider: new HostProvider({ reason }), description: `host provider (${reason})` };
  }
  try {
    return describedLibfabric(LibfabricProvider.open(libfabricOptions(options)));
  } catch (error) {
    const reason = `no usable libfabric provider: ${(error as Error).message}`;
    return { provider: new HostProvider({ reason }), description: `host provider (${reason})` };
  }
}

function describedLibfabric(provider: LibfabricProvider): OpenedProvider {
  return { provider, description: `libfabric ${provider.info.version} provider ${provider.name} (${provider.info.mrModeNames.join("|") || "mr_mode 0"})` };
}

/** The options LibfabricProvider.open takes, out of openProvider's (which other providers extend). */
function libfabricOptions(options: OpenProviderOptions): LibfabricProviderOptions {
  const picked: Record<string, unknown> = {};
  for (const key of Object.keys(LIBFABRIC_OPTION_KEYS)) {
    const value = (options as Record<string, unknown>)[key];
    if (value !== undefined) picked[key] = value;
  }
  return picked as LibfabricProviderOptions;
}

/**
 * $ALLOCTOOLS_PROVIDER, checked: "host", "ucx", "mpi", or a libfabric provider there is here (a
 * name such as "tcp" matches "tcp;ofi_rxm"). A name nobody has is a TypeError listing what there is
 * (a typo in a variable should not read as a fabric failure).
 */
function envProvider(): string | undefined {
  const requested = process.env["ALLOCTOOLS_PROVIDER"];
  if (requested === undefined || requested === "") return undefined;
  if (!/^[A-Za-z0-9_;.-]+$/.test(requested)) throw new AllocToolsTypeError(`ALLOCTOOLS_PROVIDER must be a provider name such as "tcp" or "host", got ${JSON.stringify(requested)}`);
  if (requested === "host" || requested === "ucx" || requested === "mpi" || !libfabricStatus().available) return requested;
  const available = libfabricProviderNames();
  if (available.some((name) => name === requested || name.startsWith(`${requested};`))) return requested;
  const names = ["host", "ucx", "mpi", ...new Set(available.flatMap((name) => [name.split(";")[0]!, name]))];
  const near = nearest(requested, names);
  throw new AllocToolsTypeError(
    `ALLOCTOOLS_PROVIDER names no provider here: ${JSON.stringify(requested)}${near === undefined ? "" : ` (did you mean ${JSON.stringify(near)}?)`}; available: ${names.join(", ")}`);
}
