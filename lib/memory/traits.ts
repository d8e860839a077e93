// Region traits: the one place that calls a provider's register/deregister and that turns a
// registration into the keys and remote address a peer needs (the seed's memory_region_traits).
import { DEFAULT_ACCESS, type Access, type RegionProvider, type Registration } from "./provider.ts";
import { AllocToolsError, AllocToolsRangeError } from "../errors.ts";

/**
 * The one place that registers and deregisters memory with a {@link RegionProvider}, and that turns
 * a {@link Registration} into what a peer needs: local key, remote key, remote address (virtual, or
 * the offset from the registration's start, as the provider addresses).
 *
 * Lifetime: as long as its provider; it holds nothing else. A pool makes one per pool.
 *
 * Hot path: `localKey`, `remoteKey` and `remoteAddress` read fields (remoteAddress makes a bigint);
 * `register` and `deregister` call the provider (a system call or a libfabric call: not for the hot path).
 */
export class MemoryRegionTraits {
  /** The provider every registration goes to. */
  readonly provider: RegionProvider;
  /** Access flags used for every registration made through these traits. */
  readonly access: number;

  /**
   * Traits over `provider`, registering with `access`.
   * @param provider Who registers.
   * @param access {@link Access} flags for every registration (default {@link DEFAULT_ACCESS}).
   * @throws {@link AllocToolsRangeError} unless `access` is a positive integer.
   */
  constructor(provider: RegionProvider, access: number = DEFAULT_ACCESS) {
    if (!Number.isInteger(access) || access <= 0) throw new AllocToolsRangeError(`access flags must be a positive integer, got ${access}`);
    this.provider = provider;
    this.access = access;
  }

  /**
   * Registers [address, address + length) with the provider.
   * @throws {@link AllocToolsError} `PROVIDER_CLOSED`; the provider's own error (SystemError, FabricError) otherwise.
   */
  register(address: number, length: number): Registration {
    if (this.provider.closed) throw new AllocToolsError("PROVIDER_CLOSED", `provider ${this.provider.name} is closed`);
    return this.provider.register(address, length, this.access);
  }

  /** Releases one registration (the provider ignores one it already dropped, e.g. when it closed). */
  deregister(registration: Registration): void {
    this.provider.deregister(registration);
  }

  /** The local key (descriptor) of a registration. */
  localKey(registration: Registration): bigint {
    return registration.localKey;
  }

  /** The remote key of a registration. */
  remoteKey(registration: Registration): bigint {
    return registration.remoteKey;
  }

  /**
   * What a peer uses to address `address` inside `registration`: the virtual address where the
   * provider addresses by virtual address, else the offset from the registration's start.
   */
  remoteAddress(registration: Registration, address: number): bigint {
    return BigInt(this.provider.virtualAddressing ? address : address - registration.address);
  }
}
