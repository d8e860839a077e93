// What a LibfabricProvider asks libfabric for and what it is told: the options (fi_getinfo's
// hints), the capability tiers tried in turn, the providers there are here, and the fi_info of the
// chosen one described.
import { nativeView, readCString, readI32, readPtr, readU64, libfabric, type Libfabric } from "../../ffi/libfabric.ts";
import { FI, L, MR_MODE_NAMES } from "../../ffi/layout.ts";
import * as libc from "../../ffi/libc.ts";
import { AllocToolsTypeError, FabricError } from "../errors.ts";
import { checkKnownKeys, type KnownKeys } from "../options.ts";

/** libfabric endpoint types: FI_EP_RDM (reliable datagrams, what Endpoint uses), FI_EP_MSG, FI_EP_DGRAM. */
export type EndpointType = "rdm" | "msg" | "dgram";
/** libfabric threading models (FI_THREAD_SAFE, FI_THREAD_FID, ...): what the domain may be called from concurrently. */
export type Threading = "safe" | "fid" | "domain" | "completion" | "endpoint";

const EP_TYPES: Record<EndpointType, number> = { msg: FI.EP_MSG, dgram: FI.EP_DGRAM, rdm: FI.EP_RDM };
const THREADING: Record<Threading, number> = {
  safe: FI.THREAD_SAFE, fid: FI.THREAD_FID, domain: FI.THREAD_DOMAIN,
  completion: FI.THREAD_COMPLETION, endpoint: FI.THREAD_ENDPOINT,
};

/** The mr_mode bits we tell libfabric we can handle. */
export const SUPPORTED_MR_MODE = FI.MR_LOCAL | FI.MR_VIRT_ADDR | FI.MR_ALLOCATED | FI.MR_PROV_KEY | FI.MR_ENDPOINT | FI.MR_MMU_NOTIFY;

/** Options of {@link LibfabricProvider.open}: the fi_getinfo hints. Unknown keys are refused. */
export interface LibfabricProviderOptions {
  /** libfabric provider name: "tcp", "shm", "udp", "sockets", "verbs", "efa", "cxi", ... Default: libfabric's first choice. */
  provider?: string;
  /** Node (address or host name) to bind to, with FI_SOURCE. Default: none (libfabric chooses). */
  node?: string;
  /** Service (port) to bind to. */
  service?: string;
  /** Endpoint type; default "rdm". */
  endpointType?: EndpointType;
  /** Threading model; default "safe" (pools are shared across Workers). */
  threading?: Threading;
  /** mr_mode bits offered to libfabric; default SUPPORTED_MR_MODE. */
  mrMode?: number;
  /** First requested key where the provider takes requested keys (no FI_MR_PROV_KEY). Default 1. */
  firstKey?: bigint;
}

/** What the opened provider is, as libfabric describes it. */
export interface LibfabricInfo {
  /** e.g. "tcp;ofi_rxm" */
  readonly provider: string;
  /** The fabric name (fabric_attr->name), e.g. "127.0.0.0/8" for tcp. */
  readonly fabric: string;
  /** The domain name (domain_attr->name), e.g. "lo" for tcp. */
  readonly domain: string;
  /** The mr_mode bits the provider returned. */
  readonly mrMode: number;
  /** Their names, e.g. ["FI_MR_VIRT_ADDR"]. */
  readonly mrModeNames: readonly string[];
  /** mr_key_size in bytes. */
  readonly keySize: number;
  /** The threading model granted (a number when it has no name here). */
  readonly threading: Threading | number;
  /** The endpoint type granted (a number when it has no name here). */
  readonly endpointType: EndpointType | number;
  /** The capability bits granted (FI_MSG, FI_RMA, ...), exact. */
  readonly caps: bigint;
  /** The libfabric library version, "1.17". */
  readonly version: string;
}
/** Every key of LibfabricProviderOptions (the compiler checks the list against the interface). */
export const LIBFABRIC_OPTION_KEYS: KnownKeys<LibfabricProviderOptions> = {
  provider: true, node: true, service: true, endpointType: true, threading: true, mrMode: true, firstKey: true,
};

export function checkOptions(o: LibfabricProviderOptions, known: Readonly<Record<string, true>>, what: string): void {
  if (typeof o !== "object" || o === null) throw new AllocToolsTypeError(`${what} must be an object`);
  checkKnownKeys(o, known, what);
  for (const k of ["provider", "node", "service"] as const) {
    if (o[k] !== undefined && (typeof o[k] !== "string" || o[k] === "")) throw new AllocToolsTypeError(`${k} must be a non-empty string`);
  }
  if (o.endpointType !== undefined && !(o.endpointType in EP_TYPES)) throw new AllocToolsTypeError(`endpointType must be one of ${Object.keys(EP_TYPES).join(", ")}`);
  if (o.threading !== undefined && !(o.threading in THREADING)) throw new AllocToolsTypeError(`threading must be one of ${Object.keys(THREADING).join(", ")}`);
  if (o.mrMode !== undefined && (!Number.isInteger(o.mrMode) || o.mrMode < 0)) throw new AllocToolsTypeError("mrMode must be a non-negative integer");
  if (o.firstKey !== undefined && (typeof o.firstKey !== "bigint" || o.firstKey < 0n || o.firstKey >= 1n << 64n)) throw new AllocToolsTypeError("firstKey must be a 64-bit bigint");
}

/**
 * shm names each endpoint after `node` when one is given (FI_SOURCE): with the same node in two
 * processes (`"127.0.0.1"`, as tcp wants), the second process's endpoint fails `fi_enable` with
 * EBUSY. shm needs no node: drop it, and say so once.
 */
export function withoutShmNode(options: LibfabricProviderOptions): LibfabricProviderOptions {
  if (options.node === undefined || options.provider === undefined || options.provider.split(";")[0] !== "shm") return options;
  if (!warnedShmNode) {
    warnedShmNode = true;
    process.emitWarning(
      `alloctools: the shm provider ignores node ${JSON.stringify(options.node)}: shm names each endpoint after ` +
        "its node, so two processes given the same node would collide (fi_enable: EBUSY). Leave node out for shm.",
      "AllocToolsWarning");
  }
  const { node: _node, ...rest } = options;
  return rest;
}
let warnedShmNode = false;

/**
 * fi_getinfo, and when it finds nothing for a named provider, an error that names the provider
 * asked for and lists the providers that do match the other hints here.
 */
export function getInfoNamingProviders(fi: Libfabric, hints: number, options: LibfabricProviderOptions): number {
  const node = options.node ?? null;
  const flags = options.node ? FI.SOURCE : 0n;
  try {
    return fi.getInfo(hints, node, options.service ?? null, flags);
  } catch (e) {
    if (!(e instanceof FabricError) || e.errno !== 61 || options.provider === undefined) throw e;
    const available = availableProviders(fi, { ...options, provider: undefined });
    const endpoint = options.endpointType ?? "rdm";
    throw new FabricError(e.function, e.errno, e.description,
      `no libfabric provider ${JSON.stringify(options.provider)} for an ${endpoint} endpoint with RMA` +
        `${options.node === undefined ? "" : ` on node ${options.node}`} here; available: ` +
        `${available.length > 0 ? available.join(", ") : "none"}`,
      { cause: e });
  }
}

/**
 * The libfabric providers that offer here what {@link LibfabricProvider.open} asks for by default
 * (an RDM endpoint with RMA, thread-safe domains, the mr_mode bits alloctools handles), in
 * libfabric's order of preference, e.g. ["tcp;ofi_rxm", "shm", "udp;ofi_rxd", "sockets"]; empty
 * when none does. Throws LibraryLoadError when libfabric does not load.
 */
export function libfabricProviderNames(): string[] {
  return availableProviders(libfabric(), {});
}

/** The provider names fi_getinfo lists for these options (the provider name left out). */
function availableProviders(fi: Libfabric, options: LibfabricProviderOptions): string[] {
  const hints = fi.allocInfo();
  let list = 0;
  try {
    writeHints(hints, options);
    list = fi.getInfo(hints, options.node ?? null, options.service ?? null, options.node ? FI.SOURCE : 0n);
    const names: string[] = [];
    for (let entry = list; entry !== 0; entry = readPtr(entry, L.fi_info.next)) {
      const name = readProvName(entry);
      if (!names.includes(name)) names.push(name);
    }
    return names;
  } catch {
    return [];
  } finally {
    fi.freeInfo(list);
    fi.freeInfo(hints);
  }
}

/**
 * What a domain is asked for, most first: RMA with tagged messages (receives naming and reporting
 * their source) and atomics; without atomics; RMA alone. A provider that lacks a capability is
 * opened with fewer, and what it lacks is NOT_SUPPORTED on its endpoints (info.caps says which).
 */
const CAPABILITY_TIERS: readonly bigint[] = [
  FI.MSG | FI.RMA | FI.TAGGED | FI.SOURCE_CAP | FI.DIRECTED_RECV | FI.ATOMIC,
  FI.MSG | FI.RMA | FI.TAGGED | FI.SOURCE_CAP | FI.DIRECTED_RECV,
  FI.MSG | FI.RMA,
];

/** fi_getinfo with the most capabilities a matching provider grants (see CAPABILITY_TIERS). */
export function getInfoWithCapabilities(fi: Libfabric, hints: number, options: LibfabricProviderOptions): number {
  for (let tier = 0; ; tier++) {
    const last = tier === CAPABILITY_TIERS.length - 1;
    writeHints(hints, options, CAPABILITY_TIERS[tier]!);
    try {
      return last ? getInfoNamingProviders(fi, hints, options) : fi.getInfo(hints, options.node ?? null, options.service ?? null, options.node ? FI.SOURCE : 0n);
    } catch (e) {
      if (last || !(e instanceof FabricError) || e.errno !== 61) throw e;
    }
  }
}

export function writeHints(hints: number, o: LibfabricProviderOptions, caps: bigint = FI.MSG | FI.RMA): void {
  nativeView(hints, 16).setBigUint64(L.fi_info.caps, caps, true);
  // Ask for the context modes we can satisfy: none. Endpoint passes per-operation contexts itself.
  nativeView(readPtr(hints, L.fi_info.ep_attr), 4).setInt32(L.fi_ep_attr.type, EP_TYPES[o.endpointType ?? "rdm"], true);
  const dom = nativeView(readPtr(hints, L.fi_info.domain_attr), L.fi_domain_attr.mr_mode + 4);
  dom.setInt32(L.fi_domain_attr.threading, THREADING[o.threading ?? "safe"], true);
  dom.setInt32(L.fi_domain_attr.mr_mode, o.mrMode ?? SUPPORTED_MR_MODE, true);
  if (o.provider !== undefined) {
    // fi_freeinfo frees prov_name, so it must be malloc'd.
    nativeView(readPtr(hints, L.fi_info.fabric_attr), 24).setBigUint64(L.fi_fabric_attr.prov_name, BigInt(libc.strdup(o.provider)), true);
  }
}

export function readProvName(info: number): string {
  return readCString(readPtr(readPtr(info, L.fi_info.fabric_attr), L.fi_fabric_attr.prov_name)) ?? "?";
}

export function describe(fi: Libfabric, info: number): LibfabricInfo {
  const dom = readPtr(info, L.fi_info.domain_attr);
  const fab = readPtr(info, L.fi_info.fabric_attr);
  const ep = readPtr(info, L.fi_info.ep_attr);
  const mrMode = readI32(dom, L.fi_domain_attr.mr_mode);
  const threading = readI32(dom, L.fi_domain_attr.threading);
  const epType = readI32(ep, L.fi_ep_attr.type);
  return {
    provider: readProvName(info),
    fabric: readCString(readPtr(fab, L.fi_fabric_attr.name)) ?? "",
    domain: readCString(readPtr(dom, L.fi_domain_attr.name)) ?? "",
    mrMode,
    mrModeNames: MR_MODE_NAMES.filter(([bit]) => (mrMode & bit) !== 0).map(([, n]) => n),
    keySize: Number(readU64(dom, L.fi_domain_attr.mr_key_size)),
    threading: (Object.keys(THREADING) as Threading[]).find((k) => THREADING[k] === threading) ?? threading,
    endpointType: (Object.keys(EP_TYPES) as EndpointType[]).find((k) => EP_TYPES[k] === epType) ?? epType,
    caps: readU64(info, L.fi_info.caps),
    version: fi.versionString,
  };
}

