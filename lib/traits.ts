// Region traits: the one place that calls a provider's register/deregister and that turns a
// registration into the keys and remote address a peer needs (the seed's memory_region_traits).
import { DEFAULT_ACCESS, type RegionProvider, type Registration } from "./provider.ts";
import { AllocToolsError } from "./errors.ts";

export class MemoryRegionTraits {
  readonly provider: RegionProvider;
  /** Access flags used for every registration made through these traits. */
  readonly access: number;

  constructor(provider: RegionProvider, access: number = DEFAULT_ACCESS) {
    if (!Number.isInteger(access) || access <= 0) throw new RangeError(`access flags must be a positive integer, got ${access}`);
    this.provider = provider;
    this.access = access;
  }

  /** Registers [address, address + length) with the provider. */
  register(address: number, length: number): Registration {
    if (this.provider.closed) throw new AllocToolsError("PROVIDER_CLOSED", `provider ${this.provider.name} is closed`);
    return this.provider.register(address, length, this.access);
  }

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
