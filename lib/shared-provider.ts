// A provider as a Worker sees it: the owner's provider reduced to numbers and a shared key counter
// (structured-cloneable), and a RegionProvider rebuilt from that inside the Worker. Blocks a shared
// pool grows in a Worker are registered through it; the owner deregisters them with it at close.
import { libfabric } from "../ffi/libfabric.ts";
import { AllocToolsError } from "./errors.ts";
import { HostProvider } from "./host-provider.ts";
import { SharedKeyCounter } from "./key-counter.ts";
import { LibfabricProvider } from "./libfabric-provider.ts";
import { pinPages, unpinPages } from "./page-pins.ts";
import type { RegionProvider, Registration } from "./provider.ts";

/** What a Worker needs to register on the owner's provider: numbers and a SharedArrayBuffer only. */
export interface SharedProviderHandle {
  readonly kind: "host" | "libfabric";
  readonly name: string;
  readonly virtualAddressing: boolean;
  /** The provider supplies keys (FI_MR_PROV_KEY): no requested keys. */
  readonly providerKeys: boolean;
  /** `fid_domain *` (libfabric), 0 for the host provider. */
  readonly domain: number;
  /** Endpoint registrations are bound to under FI_MR_ENDPOINT, 0 for none. */
  readonly endpoint: number;
  readonly keyLimit: bigint;
  readonly keys: SharedArrayBuffer;
}

/** The handle of a provider alloctools made (HostProvider, LibfabricProvider); others cannot be shared. */
export function shareProvider(p: RegionProvider): SharedProviderHandle {
  if (p instanceof HostProvider) {
    return { kind: "host", name: p.name, virtualAddressing: true, providerKeys: false, domain: 0, endpoint: 0, keyLimit: 1n << 64n, keys: p.keys.buffer };
  }
  if (p instanceof LibfabricProvider) {
    return {
      kind: "libfabric", name: p.name, virtualAddressing: p.virtualAddressing, providerKeys: p.providerKeys,
      domain: p.handles.domain, endpoint: p.endpointBound ? p.boundEndpoint : 0, keyLimit: p.keyLimit, keys: p.keys.buffer,
    };
  }
  throw new AllocToolsError("NOT_SUPPORTED", `provider ${p.name} cannot be shared with Workers (only HostProvider and LibfabricProvider can)`);
}

/**
 * The owner's provider inside a Worker. It keeps no list of live registrations: the shared pool's
 * block table does, and makes sure each one is deregistered exactly once. It never closes the domain.
 */
export class AttachedProvider implements RegionProvider {
  readonly kind: "host" | "libfabric";
  readonly name: string;
  readonly virtualAddressing: boolean;
  private readonly handle: SharedProviderHandle;
  private readonly keys: SharedKeyCounter;
  private detached = false;

  constructor(handle: SharedProviderHandle) {
    this.handle = handle;
    this.kind = handle.kind;
    this.name = handle.name;
    this.virtualAddressing = handle.virtualAddressing;
    this.keys = new SharedKeyCounter(handle.keys);
  }

  /** Closed when the owner closed its provider, or this Worker detached. */
  get closed(): boolean {
    return this.detached || this.keys.closed;
  }

  register(address: number, length: number, access: number): Registration {
    if (this.closed) throw new AllocToolsError("PROVIDER_CLOSED", `provider ${this.name} is closed`);
    const h = this.handle;
    if (h.kind === "host") {
      const key = this.keys.take(h.keyLimit, "host provider has used every 64-bit key");
      pinPages(address, length);
      return { address, length, handle: 0, localKey: key, remoteKey: key };
    }
    const requested = h.providerKeys ? 0n : this.keys.take(h.keyLimit, `provider ${h.name}: requested keys exhausted`);
    const fi = libfabric(); // loaded once per thread
    const mr = fi.mrReg(h.domain, address, length, access, 0n, requested, 0);
    try {
      if (h.endpoint !== 0) {
        fi.bind(mr, h.endpoint, 0, "fi_mr_bind");
        fi.enable(mr, "fi_mr_enable");
      }
    } catch (e) {
      fi.close(mr, "mr");
      throw e;
    }
    return { address, length, handle: mr, localKey: fi.mrDesc(mr), remoteKey: fi.mrKey(mr) };
  }

  deregister(registration: Registration): void {
    if (this.handle.kind === "host") {
      unpinPages(registration.address, registration.length);
      return;
    }
    if (this.keys.closed) return; // the owner closed the domain with everything on it
    libfabric().close(registration.handle, "mr");
  }

  /** Detaching stops registrations from this thread; the domain stays the owner's. */
  close(): void {
    this.detached = true;
  }
}
