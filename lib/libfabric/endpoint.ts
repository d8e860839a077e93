// Endpoint: a reliable-datagram (FI_EP_RDM) libfabric endpoint with its own completion queue and
// address vector, that reads and writes peers' registered memory (RMA) from pooled regions.
//
// What every endpoint does (the three forms, slots, timeouts, pinning, progress, close) is the
// engine's (lib/engine/endpoint-engine.ts); what libfabric does is its transport's
// (libfabric-transport.ts: FI_DELIVERY_COMPLETE writes, the completion queue, -FI_EAGAIN, peers of
// this process). This file opens them and checks the options against the provider's fi_info.
import { libfabric, readPtr, readU64 } from "../../ffi/libfabric.ts";
import { L } from "../../ffi/layout.ts";
import { AllocToolsError } from "../errors.ts";
import { EndpointEngine } from "../engine/endpoint-engine.ts";
import { checkEngineOptions, integerOption, type EngineOptions } from "../engine/engine-options.ts";
import type { RmaEndpointStats } from "../engine/rma-endpoint.ts";
import type { LibfabricProvider } from "./libfabric-provider.ts";
import { LibfabricTransport, type PeerAddress } from "./libfabric-transport.ts";

export type { PeerAddress } from "./libfabric-transport.ts";
export type { LocalMemory } from "../engine/rma-endpoint.ts";

/** Options of `new Endpoint(provider, options)`; unknown keys are refused. */
export interface EndpointOptions extends EngineOptions {
  /** Completion queue entries; default 256, at most the provider's tx_attr->size + rx_attr->size. */
  cqSize?: number;
  /** Address vector slots (peers); default 64, at most the provider's domain_attr->ep_cnt. */
  avCount?: number;
}

/** Counters since the endpoint opened. */
export type EndpointStats = RmaEndpointStats;

/**
 * An RMA endpoint on a LibfabricProvider's domain: writes complete once the data is in the
 * target's memory (FI_DELIVERY_COMPLETE).
 *
 * Lifetime: open with `new Endpoint(provider)`, close with `close()` (or `using`); the provider
 * closes its endpoints first. Closing cancels and drains what is in flight, then closes endpoint,
 * completion queue and address vector.
 *
 * Hot-path-safe (no allocation on success): `writeSync`, `readSync`, `postWrite`, `postRead`,
 * `poll`, `completed`, `progress`. `write`/`read` allocate their Promise.
 */
export class Endpoint extends EndpointEngine<PeerAddress> {
  /** The provider whose domain the endpoint is opened on. */
  readonly provider: LibfabricProvider;
  /** The largest single transfer the provider takes (ep_attr->max_msg_size). */
  readonly maxMessageSize: number;
  /** How a write's completion is made to mean "in the target's memory". */
  readonly writeCompletion = "FI_DELIVERY_COMPLETE" as const;

  /**
   * Opens an RDM endpoint on `provider`'s domain with its own completion queue and address vector,
   * writes completing with FI_DELIVERY_COMPLETE. Throws AllocToolsError NOT_SUPPORTED when
   * `provider` is not a LibfabricProvider opened with endpointType "rdm", PROVIDER_CLOSED when it is
   * closed, TypeError for an unknown option or a cache over another provider, RangeError for an
   * option out of the provider's limits, FabricError when libfabric refuses; nothing stays open
   * after a throw.
   */
  constructor(provider: LibfabricProvider, options: EndpointOptions = {}) {
    if ((provider as { kind?: unknown } | null | undefined)?.kind !== "libfabric") {
      const given = (provider as { name?: unknown } | null | undefined)?.name ?? String(provider);
      throw new AllocToolsError("NOT_SUPPORTED", `Endpoint needs a LibfabricProvider (e.g. openProvider({ provider: "tcp" })), got ${String(given)}: only libfabric providers move data between processes`);
    }
    if (provider.closed) throw new AllocToolsError("PROVIDER_CLOSED", `provider ${provider.name} is closed`);
    if (provider.info.endpointType !== "rdm") {
      throw new AllocToolsError("NOT_SUPPORTED", `Endpoint needs a provider opened with endpointType "rdm", not ${String(provider.info.endpointType)}`);
    }
    const settings = checkEngineOptions(options, "Endpoint", ["cqSize", "avCount"], { maxPending: 1 << 16, spinMicroseconds: 20 }, provider);
    const limits = providerLimits(provider.handles.info);
    const cqLimit = `the provider's queues: tx_attr->size ${limits.txSize} + rx_attr->size ${limits.rxSize} = ${limits.queueEntries}`;
    const transport = new LibfabricTransport(libfabric(), provider, {
      cqSize: integerOption("cqSize", options.cqSize, Math.min(256, limits.queueEntries), 1, limits.queueEntries, cqLimit),
      avCount: integerOption("avCount", options.avCount, Math.min(64, limits.endpoints), 1, limits.endpoints, `the provider's domain_attr->ep_cnt ${limits.endpoints}`),
    });
    super(transport, settings, provider);
    this.provider = provider;
    this.maxMessageSize = transport.maxMessageSize;
  }
}

/** What the provider's fi_info allows; Endpoint options are checked against it. */
interface ProviderLimits {
  /** tx_attr->size + rx_attr->size: the most completions the queue can ever need to hold. */
  readonly queueEntries: number;
  readonly txSize: number;
  readonly rxSize: number;
  /** domain_attr->ep_cnt: addressable endpoints. */
  readonly endpoints: number;
}

function providerLimits(info: number): ProviderLimits {
  const tx = readPtr(info, L.fi_info.tx_attr);
  const rx = readPtr(info, L.fi_info.rx_attr);
  const domain = readPtr(info, L.fi_info.domain_attr);
  const bounded = (v: bigint) => (v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v));
  const txSize = bounded(readU64(tx, L.fi_tx_attr.size));
  const rxSize = bounded(readU64(rx, L.fi_rx_attr.size));
  return { queueEntries: txSize + rxSize, txSize, rxSize, endpoints: bounded(readU64(domain, L.fi_domain_attr.ep_cnt)) };
}
