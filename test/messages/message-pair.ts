// Endpoints that exchange tagged messages in one process: each on a provider and pool of its own
// (as two processes would have), every one inserted in every other, each with its pool for
// receive(). The providers the messaging tests run on, and their thresholds as fi_info gives them.
import {
  Endpoint, LibfabricProvider, MemoryPool, type EndpointOptions, type LibfabricProviderOptions, type MemoryPoolOptions, type PeerAddress,
} from "../../lib/index.ts";
import { readPtr, readU64 } from "../../ffi/libfabric.ts";
import { L } from "../../ffi/layout.ts";

export interface MessageCase {
  readonly label: string;
  readonly options: LibfabricProviderOptions;
  /** Whether a receive from ANY_SOURCE learns its sender (udp;ofi_rxd never reports it: ANY_SOURCE). */
  readonly reportsSource: boolean;
  /** Whether receives with a tag mask are taken (shm before libfabric 1.19 mishandles them: refused). */
  readonly masks: boolean;
}

export const TCP: MessageCase = { label: "tcp", options: { provider: "tcp", node: "127.0.0.1" }, reportsSource: true, masks: true };
export const SHM: MessageCase = { label: "shm", options: { provider: "shm" }, reportsSource: true, masks: false };
export const UDP: MessageCase = { label: "udp", options: { provider: "udp", node: "127.0.0.1" }, reportsSource: false, masks: true };
export const SOCKETS: MessageCase = { label: "sockets", options: { provider: "sockets", node: "127.0.0.1" }, reportsSource: true, masks: true };

/** rxm's eager limit (FI_OFI_RXM_BUFFER_SIZE): above it a message goes by SAR, then rendezvous. */
export const RXM_EAGER_LIMIT = 16_384;

/**
 * Pool classes for messages up to 64 MiB: the huge class holds 64 MiB plus a guard, so a receive
 * of any size tested has bytes after it to check. Its regions are made when first asked for.
 */
export const MESSAGE_POOL: MemoryPoolOptions = {
  small: { chunkSize: 4096, initialCount: 4 },
  medium: { chunkSize: 65_536 + 4096, initialCount: 2 },
  large: { chunkSize: (4 << 20) + 4096, initialCount: 1 },
  huge: { chunkSize: (64 << 20) + 4096, initialCount: 0 },
};

/** tx_attr->inject_size of a provider, as fi_info gives it. */
export function injectSizeOf(provider: LibfabricProvider): number {
  return Number(readU64(readPtr(provider.handles.info, L.fi_info.tx_attr), L.fi_tx_attr.inject_size));
}

/** One endpoint with its own provider and pool. */
export class Station {
  readonly provider: LibfabricProvider;
  readonly pool: MemoryPool;
  readonly endpoint: Endpoint;

  constructor(c: MessageCase, options: EndpointOptions = {}, pool: MemoryPoolOptions = MESSAGE_POOL) {
    this.provider = LibfabricProvider.open(c.options);
    this.pool = new MemoryPool(this.provider, pool);
    this.endpoint = new Endpoint(this.provider, { timeoutMs: 10_000, pool: this.pool, ...options });
  }

  /** tx_attr->inject_size of the provider: sends up to it are fi_tinject. */
  get injectSize(): number {
    return injectSizeOf(this.provider);
  }

  close(): void {
    this.endpoint.close();
    this.pool.close();
    this.provider.close();
  }
}

/** Stations that all know each other: `peer(i, j)` is station j as inserted at station i. */
export class Group {
  readonly stations: Station[];
  private readonly peers: PeerAddress[][];

  constructor(c: MessageCase, count: number, options: EndpointOptions = {}) {
    this.stations = [];
    try {
      for (let i = 0; i < count; i++) this.stations.push(new Station(c, options));
    } catch (e) {
      this.close();
      throw e;
    }
    this.peers = this.stations.map((from) => this.stations.map((to) => (to === from ? -1n : from.endpoint.insert(to.endpoint.name))));
  }

  peer(from: number, to: number): PeerAddress {
    return this.peers[from]![to]!;
  }

  endpoint(i: number): Endpoint {
    return this.stations[i]!.endpoint;
  }

  pool(i: number): MemoryPool {
    return this.stations[i]!.pool;
  }

  close(): void {
    const errors: unknown[] = [];
    for (const s of this.stations) {
      try { s.close(); } catch (e) { errors.push(e); }
    }
    if (errors.length > 0) throw errors[0];
  }
}
