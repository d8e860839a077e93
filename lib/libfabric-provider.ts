// A RegionProvider over a real libfabric domain. It opens fabric and domain for one provider
// (tcp, shm, verbs, efa, cxi, ...) and honours the mr_mode bits that provider returns.
import { libfabric, nativeView, readCString, readI32, readPtr, readU32, readU64, type Libfabric } from "../ffi/libfabric.ts";
import { FI, L, MR_MODE_NAMES } from "../ffi/layout.ts";
import * as libc from "../ffi/libc.ts";
import { AllocToolsError } from "./errors.ts";
import { SharedKeyCounter } from "./key-counter.ts";
import type { RegionProvider, Registration } from "./provider.ts";

/** Requested keys taken from the shared counter at a time. */
const KEY_BATCH = 64n;
/** Keys up to here are exact as numbers. */
const EXACT_KEYS = BigInt(Number.MAX_SAFE_INTEGER);

export type EndpointType = "rdm" | "msg" | "dgram";
export type Threading = "safe" | "fid" | "domain" | "completion" | "endpoint";

const EP_TYPES: Record<EndpointType, number> = { msg: FI.EP_MSG, dgram: FI.EP_DGRAM, rdm: FI.EP_RDM };
const THREADING: Record<Threading, number> = {
  safe: FI.THREAD_SAFE, fid: FI.THREAD_FID, domain: FI.THREAD_DOMAIN,
  completion: FI.THREAD_COMPLETION, endpoint: FI.THREAD_ENDPOINT,
};

/** The mr_mode bits we tell libfabric we can handle. */
export const SUPPORTED_MR_MODE = FI.MR_LOCAL | FI.MR_VIRT_ADDR | FI.MR_ALLOCATED | FI.MR_PROV_KEY | FI.MR_ENDPOINT | FI.MR_MMU_NOTIFY;

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
  readonly fabric: string;
  readonly domain: string;
  /** The mr_mode bits the provider returned. */
  readonly mrMode: number;
  /** Their names, e.g. ["FI_MR_VIRT_ADDR"]. */
  readonly mrModeNames: readonly string[];
  /** mr_key_size in bytes. */
  readonly keySize: number;
  readonly threading: Threading | number;
  readonly endpointType: EndpointType | number;
  readonly caps: bigint;
  /** The libfabric library version, "1.17". */
  readonly version: string;
}

export class LibfabricProvider implements RegionProvider {
  readonly kind = "libfabric";
  readonly info: LibfabricInfo;
  readonly virtualAddressing: boolean;
  /** Whether the provider supplies keys (FI_MR_PROV_KEY); otherwise we request unique ones. */
  readonly providerKeys: boolean;
  /** Whether registrations must be bound to an endpoint (FI_MR_ENDPOINT). */
  readonly endpointBound: boolean;
  /** Raw handles for the FFI layer and Endpoint: `struct fi_info *`, `fid_fabric *`, `fid_domain *`. */
  readonly handles: { readonly info: number; readonly fabric: number; readonly domain: number };
  private readonly fi: Libfabric;
  /** @internal Requested keys, in shared memory: pools shared with Workers register from them too. */
  readonly keys: SharedKeyCounter;
  /** @internal One past the largest requested key the domain takes. */
  readonly keyLimit: bigint;
  /** Live registrations; each knows its slot, so deregister removes it without a lookup. */
  private readonly live: FabricRegistration[] = [];
  /** `handles.domain`, as a plain field for register(). */
  private readonly domain: number;
  /** KEYS_EXHAUSTED's message, made once (register() builds no string per call). */
  private readonly keysExhausted: string;
  /** This thread's batch of requested keys: [next, end). Keys are never reused, even after deregister. */
  private keyBatchNext = 0;
  private keyBatchEnd = 0;
  /** The same past 2^53, as BigInts. */
  private bigKeyNext = 0n;
  private bigKeyEnd = 0n;
  /** Endpoint registrations are bound to (FI_MR_ENDPOINT); 0 until attachEndpoint. */
  private endpoint = 0;
  private readonly children = new Set<{ close(): void }>();
  private closed_ = false;

  private constructor(fi: Libfabric, info: number, fabric: number, domain: number, options: LibfabricProviderOptions) {
    this.fi = fi;
    this.handles = { info, fabric, domain };
    this.info = describe(fi, info);
    const mode = this.info.mrMode;
    this.virtualAddressing = (mode & FI.MR_VIRT_ADDR) !== 0;
    this.providerKeys = (mode & FI.MR_PROV_KEY) !== 0;
    this.endpointBound = (mode & FI.MR_ENDPOINT) !== 0;
    this.keys = new SharedKeyCounter(options.firstKey ?? 1n);
    const keyBits = BigInt(Math.min(this.info.keySize, 8) * 8);
    this.keyLimit = this.info.keySize === 0 ? 1n << 64n : 1n << keyBits;
    this.domain = domain;
    this.keysExhausted = `provider ${this.info.provider}: requested keys exhausted (${this.info.keySize}-byte keys)`;
  }

  /** Opens fabric and domain. Throws LibraryLoadError when libfabric is missing, FabricError when no provider matches. */
  static open(options: LibfabricProviderOptions = {}): LibfabricProvider {
    checkOptions(options);
    const fi = libfabric();
    const hints = fi.allocInfo();
    let info = 0;
    let fabric = 0;
    let domain = 0;
    try {
      writeHints(hints, options);
      const list = fi.getInfo(hints, options.node ?? null, options.service ?? null, options.node ? FI.SOURCE : 0n);
      // Keep the first match only: a private copy we can free on close.
      info = list;
      const next = readPtr(list, L.fi_info.next);
      if (next !== 0) {
        nativeView(list, 8).setBigUint64(L.fi_info.next, 0n, true);
        fi.freeInfo(next);
      }
      const mode = readI32(readPtr(info, L.fi_info.domain_attr), L.fi_domain_attr.mr_mode);
      if (mode & FI.MR_RAW) {
        throw new AllocToolsError("NOT_SUPPORTED", `provider ${readProvName(info)} needs FI_MR_RAW keys (wider than 64 bits), which alloctools does not support`);
      }
      fabric = fi.fabric(info);
      domain = fi.domain(fabric, info);
      return new LibfabricProvider(fi, info, fabric, domain, options);
    } catch (e) {
      if (domain) fi.close(domain, "domain");
      if (fabric) fi.close(fabric, "fabric");
      fi.freeInfo(info);
      throw e;
    } finally {
      fi.freeInfo(hints);
    }
  }

  get name(): string {
    return this.info.provider;
  }

  get closed(): boolean {
    return this.closed_;
  }

  /** Live registrations on this domain. */
  get registrations(): number {
    return this.live.length;
  }

  /**
   * `fi_mr_reg` (+ `fi_mr_bind`/`fi_mr_enable` under FI_MR_ENDPOINT). The success path builds no
   * string and looks nothing up by name: what an error needs is made when it is thrown.
   */
  register(address: number, length: number, access: number): Registration {
    if (this.closed_) throw new AllocToolsError("PROVIDER_CLOSED", `provider ${this.name} is closed`);
    const requested = this.providerKeys ? 0n : this.nextRequestedKey();
    const fi = this.fi;
    const mr = fi.mrReg(this.domain, address, length, access, 0, requested, 0);
    if (this.endpointBound && this.endpoint !== 0) {
      try {
        this.bindToEndpoint(mr);
      } catch (e) {
        fi.close(mr, "mr");
        throw e;
      }
    }
    const reg = new FabricRegistration(address, length, mr, this.live.length);
    this.live.push(reg);
    return reg;
  }

  /**
   * The next requested key, from a batch taken from the shared counter (one CAS per batch). A
   * number while keys are exact in a double (no BigInt made or passed per call), else a BigInt.
   */
  private nextRequestedKey(): number | bigint {
    if (this.keyBatchNext < this.keyBatchEnd) return this.keyBatchNext++;
    if (this.bigKeyNext < this.bigKeyEnd) return this.bigKeyNext++;
    const range = this.keys.takeRange(KEY_BATCH, this.keyLimit, this.keysExhausted);
    if (range.end <= EXACT_KEYS) {
      this.keyBatchNext = Number(range.first);
      this.keyBatchEnd = Number(range.end);
      return this.keyBatchNext++;
    }
    this.bigKeyNext = range.first;
    this.bigKeyEnd = range.end;
    return this.bigKeyNext++;
  }

  /** `fi_close` of a registration; a no-op for one the provider's close() already closed. */
  deregister(registration: Registration): void {
    if (!(registration instanceof FabricRegistration)) return; // not this provider's
    const live = this.live;
    const slot = registration.slot;
    if (live[slot] !== registration) return; // closed with the provider already
    const last = live.pop()!;
    if (last !== registration) {
      live[slot] = last;
      last.slot = slot;
    }
    this.fi.close(registration.handle, "mr");
  }

  /**
   * FI_MR_ENDPOINT: binds every registration, present and future, to `ep` and enables it.
   * Called by Endpoint; harmless where the provider does not need it.
   */
  attachEndpoint(ep: number): void {
    if (!this.endpointBound) return;
    if (this.endpoint !== 0 && this.endpoint !== ep) {
      throw new AllocToolsError("NOT_SUPPORTED", `provider ${this.name} binds registrations to one endpoint (FI_MR_ENDPOINT); open one provider per endpoint`);
    }
    this.endpoint = ep;
    for (const reg of this.live.values()) this.bindToEndpoint(reg.handle);
  }

  /** The endpoint `ep` is closing: registrations made from now on are not bound to it. */
  detachEndpoint(ep: number): void {
    if (this.endpoint === ep) this.endpoint = 0;
  }

  /** @internal The endpoint registrations are bound to (FI_MR_ENDPOINT), 0 for none. */
  get boundEndpoint(): number {
    return this.endpoint;
  }

  /** Objects opened on this domain (endpoints) that must close before it. */
  adopt(child: { close(): void }): void {
    this.children.add(child);
  }
  disown(child: { close(): void }): void {
    this.children.delete(child);
  }

  private bindToEndpoint(mr: number): void {
    this.fi.bind(mr, this.endpoint, 0, "fi_mr_bind");
    this.fi.enable(mr, "fi_mr_enable");
  }

  /** Closes children first: endpoints, then registrations, then domain, fabric and info. Idempotent. */
  close(): void {
    if (this.closed_) return;
    this.closed_ = true;
    this.keys.markClosed();
    const errors: unknown[] = [];
    const attempt = (f: () => void) => { try { f(); } catch (e) { errors.push(e); } };
    for (const child of [...this.children]) attempt(() => child.close());
    this.children.clear();
    for (const reg of this.live.values()) attempt(() => this.fi.close(reg.handle, "mr"));
    this.live.length = 0;
    attempt(() => this.fi.close(this.handles.domain, "domain"));
    attempt(() => this.fi.close(this.handles.fabric, "fabric"));
    this.fi.freeInfo(this.handles.info);
    if (errors.length > 0) throw errors.length === 1 ? errors[0] : new AggregateError(errors, `closing provider ${this.name}`);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** libfabric's own description of the opened fi_info (fi_tostr). */
  describe(): string {
    return this.fi.infoToString(this.handles.info);
  }
}

/**
 * A libfabric registration. Descriptor and key are read from the `fid_mr` at registration as
 * 32-bit halves (reading a u64 through bun:ffi makes a BigInt, ~100 ns each) and become exact
 * BigInts when first asked for; the `fid_mr` is not read again (it is freed at deregister).
 */
class FabricRegistration implements Registration {
  private readonly descLow: number;
  private readonly descHigh: number;
  private readonly keyLow: number;
  private readonly keyHigh: number;
  private desc: bigint | null = null;
  private key: bigint | null = null;

  /** @param slot its index in the provider's list of live registrations */
  constructor(readonly address: number, readonly length: number, readonly handle: number, public slot: number) {
    this.descLow = readU32(handle, L.fid_mr.mem_desc);
    this.descHigh = readU32(handle, L.fid_mr.mem_desc + 4);
    this.keyLow = readU32(handle, L.fid_mr.key);
    this.keyHigh = readU32(handle, L.fid_mr.key + 4);
  }

  /** `fi_mr_desc(mr)`, exact. */
  get localKey(): bigint {
    return (this.desc ??= exact(this.descLow, this.descHigh));
  }

  /** `fi_mr_key(mr)`, exact. */
  get remoteKey(): bigint {
    return (this.key ??= exact(this.keyLow, this.keyHigh));
  }
}

function exact(low: number, high: number): bigint {
  return high === 0 ? BigInt(low) : (BigInt(high) << 32n) | BigInt(low);
}

function checkOptions(o: LibfabricProviderOptions): void {
  if (typeof o !== "object" || o === null) throw new TypeError("options must be an object");
  for (const k of ["provider", "node", "service"] as const) {
    if (o[k] !== undefined && (typeof o[k] !== "string" || o[k] === "")) throw new TypeError(`${k} must be a non-empty string`);
  }
  if (o.endpointType !== undefined && !(o.endpointType in EP_TYPES)) throw new TypeError(`endpointType must be one of ${Object.keys(EP_TYPES).join(", ")}`);
  if (o.threading !== undefined && !(o.threading in THREADING)) throw new TypeError(`threading must be one of ${Object.keys(THREADING).join(", ")}`);
  if (o.mrMode !== undefined && (!Number.isInteger(o.mrMode) || o.mrMode < 0)) throw new TypeError("mrMode must be a non-negative integer");
  if (o.firstKey !== undefined && (typeof o.firstKey !== "bigint" || o.firstKey < 0n || o.firstKey >= 1n << 64n)) throw new TypeError("firstKey must be a 64-bit bigint");
}

function writeHints(hints: number, o: LibfabricProviderOptions): void {
  nativeView(hints, 16).setBigUint64(L.fi_info.caps, FI.MSG | FI.RMA, true);
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

function readProvName(info: number): string {
  return readCString(readPtr(readPtr(info, L.fi_info.fabric_attr), L.fi_fabric_attr.prov_name)) ?? "?";
}

function describe(fi: Libfabric, info: number): LibfabricInfo {
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
