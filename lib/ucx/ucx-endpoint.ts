// UcxEndpoint: RMA (ucp_put_nbx / ucp_get_nbx), tagged messages (UCX's tag API) and remote atomics
// (ucp_atomic_op_nbx) over a UCX worker, with the engine's promise, sync and post forms
// (lib/engine/endpoint-engine.ts). What UCX does (flush epochs, rkeys, worker addresses, the
// messages' wire format) is its transport's: ucx-transport.ts, ucx-messages.ts, ucx-atomics.ts.
import type { RmaEndpointStats } from "../engine/rma-endpoint.ts";
import { EndpointEngine } from "../engine/endpoint-engine.ts";
import { checkEngineOptions, type EngineOptions } from "../engine/engine-options.ts";
import { AllocToolsError, AllocToolsTypeError } from "../errors.ts";
import type { UcxProvider } from "./ucx-provider.ts";
import { UcxTransport, type UcxPeer } from "./ucx-transport.ts";

export type { UcxPeer } from "./ucx-transport.ts";

/** RmaEndpointStats, and what UCX adds. */
export interface UcxEndpointStats extends RmaEndpointStats {
  /** `ucp_ep_rkey_unpack` calls: one per peer and distinct key blob (the rest hit the cache). */
  readonly rkeysUnpacked: number;
  /** `ucp_ep_flush_nbx` calls: one per peer and progress turn that found writes awaiting a flush. */
  readonly flushes: number;
}

/** Options of `new UcxEndpoint(provider, options)` (maxPending defaults to 4096 here, spinMicroseconds to 0). */
export type UcxEndpointOptions = EngineOptions;

/**
 * No inline spin by default: promises posted together then share one flush per peer, issued by
 * the next progress turn (a spin would flush each write on its own).
 */
const UCX_DEFAULTS = { maxPending: 4096, spinMicroseconds: 0 } as const;

/**
 * RMA, tagged messages and remote atomics over UCX. A write is a put covered by a flush: it
 * resolves once the data is in the target's memory. Writes posted to one peer before a progress
 * turn share one flush. Messages carry the sender's id in their UCX tag (docs/messaging.md, "UCX",
 * for the wire format a C peer follows); atomics complete when the value found has come back.
 *
 * Lifetime: `new UcxEndpoint(provider)` creates a ucp_worker on the provider's context;
 * `close()` (or `using`) ends what is in flight, closes the peers' eps and destroys the worker,
 * idempotent; the provider closes its endpoints first when it closes.
 *
 * Hot path: once a peer has seen a remote key blob, the post forms (`postWrite`, `postRead`,
 * `completed`, `poll`, `progress`) and the sync forms reuse operation slots and parameter memory
 * and make no new object per call on success; the first use of a key blob on a peer unpacks it
 * (`ucp_ep_rkey_unpack`, and allocations). `write`/`read` allocate their Promise. A
 * `sendSync` + `recvSync` pair makes only the `Received`, `fetchAddSync` only the bigint it returns
 * (a tag from 2^21 to 2^32 − 2^21 makes a BigInt for its UCX tag word when it changes).
 */
export class UcxEndpoint extends EndpointEngine<UcxPeer> {
  /** The provider whose memory this endpoint reads and writes from. */
  readonly provider: UcxProvider;
  /** How a write's completion is made to mean "in the target's memory". */
  readonly writeCompletion = "ucp_ep_flush_nbx" as const;
  private readonly ucxTransport: UcxTransport;

  /**
   * Creates a worker on the provider's context: in a Worker, over `UcxProvider.attach(handle)` (or
   * an attached pool's `provider`), the Worker's own ucp_worker. Throws AllocToolsError
   * PROVIDER_CLOSED (also when the owner of a view closed it), TypeError or RangeError for bad
   * options, UcxError when UCX refuses.
   */
  constructor(provider: UcxProvider, options: UcxEndpointOptions = {}) {
    if (provider === null || typeof provider !== "object" || provider.kind !== "ucx") throw new AllocToolsTypeError("UcxEndpoint takes a UcxProvider");
    const settings = checkEngineOptions(options, "UcxEndpoint", [], UCX_DEFAULTS, provider);
    if (provider.closed) throw new AllocToolsError("PROVIDER_CLOSED", `provider ${provider.name} is closed`);
    const transport = new UcxTransport(provider, settings.closeTimeoutMs);
    super(transport, settings, provider);
    this.provider = provider;
    this.ucxTransport = transport;
  }

  /** Flushes issued and not yet completed (each covers the writes posted to its peer before it). */
  get flushesInFlight(): number {
    return this.ucxTransport.flushesInFlight;
  }

  /** Counters since the endpoint opened (UCX queues internally: `retried` stays 0). */
  override stats(): UcxEndpointStats {
    return { ...super.stats(), rkeysUnpacked: this.ucxTransport.rkeysUnpacked, flushes: this.ucxTransport.flushes };
  }
}
