// The embedded provider for machines without libfabric: it pins with mlock, hands out unique
// 64-bit keys and addresses by virtual address. Nothing leaves the process, but every pool
// feature (growth, limits, statistics, keys) behaves as it does on a fabric.
import { AllocToolsError } from "./errors.ts";
import { inspectCustom, oneLine } from "./inspect.ts";
import { SharedKeyCounter } from "./key-counter.ts";
import { pinPages, unpinPages } from "./page-pins.ts";
import type { RegionProvider, Registration } from "./provider.ts";
import { closeChildren, type ProviderChild } from "./provider-child.ts";

export interface HostProviderOptions {
  /** The first key handed out (default 1). Keys are unique per provider. */
  firstKey?: bigint;
  /** Why the host provider is in use (set by openProvider when libfabric was not available). */
  reason?: string;
}

export class HostProvider implements RegionProvider {
  readonly name = "host";
  readonly kind = "host";
  readonly virtualAddressing = true;
  /** Why this provider was chosen, when openProvider fell back to it. */
  readonly reason: string | undefined;
  /** @internal Keys come from shared memory: pools shared with Workers register from them too. */
  readonly keys: SharedKeyCounter;
  private readonly live = new Map<number, Registration>();
  private nextHandle = 1;
  private readonly children = new Set<ProviderChild>();
  private closed_ = false;

  constructor(options: HostProviderOptions = {}) {
    const first = options.firstKey ?? 1n;
    if (typeof first !== "bigint" || first < 0n || first >= 1n << 64n) throw new RangeError(`firstKey must be a 64-bit bigint, got ${String(first)}`);
    this.keys = new SharedKeyCounter(first);
    this.reason = options.reason;
  }

  get closed(): boolean {
    return this.closed_;
  }

  /** Number of live registrations. */
  get registrations(): number {
    return this.live.size;
  }

  register(address: number, length: number, _access: number): Registration {
    if (this.closed_) throw new AllocToolsError("PROVIDER_CLOSED", "host provider is closed");
    const key = this.keys.take(1n << 64n, "host provider has used every 64-bit key");
    pinPages(address, length);
    const reg: Registration = { address, length, handle: this.nextHandle++, localKey: key, remoteKey: key };
    this.live.set(reg.handle, reg);
    return reg;
  }

  deregister(registration: Registration): void {
    if (!this.live.delete(registration.handle)) return; // already gone (closed provider)
    unpinPages(registration.address, registration.length);
  }

  /** @internal Pools opened over this provider, closed (newest first) before it closes. */
  adopt(child: ProviderChild): void {
    this.children.add(child);
  }
  /** @internal The child closed on its own. */
  disown(child: ProviderChild): void {
    this.children.delete(child);
  }

  /**
   * Closes the pools opened over it (newest first: a pool refuses further use with
   * PROVIDER_CLOSED), then every registration left. Idempotent. Throws what a pool's close threw
   * (BUSY while RMA is in flight) after closing everything else.
   */
  close(): void {
    if (this.closed_) return;
    this.closed_ = true;
    this.keys.markClosed();
    const errors: unknown[] = [];
    closeChildren(this.children, (close) => { try { close(); } catch (e) { errors.push(e); } });
    for (const reg of [...this.live.values()]) this.deregister(reg);
    if (errors.length > 0) throw errors.length === 1 ? errors[0] : new AggregateError(errors, "closing the host provider");
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** One line for console.log: live registrations, closed, and why it was chosen. */
  [inspectCustom](): string {
    return oneLine("HostProvider", { registrations: this.registrations, closed: this.closed, ...(this.reason === undefined ? {} : { reason: JSON.stringify(this.reason) }) });
  }
}
