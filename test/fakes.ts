// A provider wrapper whose registration can be made to fail: for pool logic under provider faults.
// It wraps a real provider, so what does succeed is really pinned/registered.
import { SystemError } from "../ffi/errors.ts";
import type { RegionProvider, Registration } from "../lib/index.ts";

export class FailingProvider implements RegionProvider {
  readonly kind: RegionProvider["kind"];
  readonly name: string;
  readonly virtualAddressing: boolean;
  /** Registrations that will fail next, counted down per call to register(). */
  failNext = 0;
  readonly live = new Set<number>();

  constructor(readonly inner: RegionProvider) {
    this.kind = inner.kind;
    this.name = `failing(${inner.name})`;
    this.virtualAddressing = inner.virtualAddressing;
  }

  get closed(): boolean {
    return this.inner.closed;
  }

  register(address: number, length: number, access: number): Registration {
    if (this.failNext > 0) {
      this.failNext--;
      throw new SystemError("fake_register", 12, "Cannot allocate memory", "injected fault");
    }
    const reg = this.inner.register(address, length, access);
    this.live.add(reg.handle);
    return reg;
  }

  deregister(registration: Registration): void {
    this.inner.deregister(registration);
    this.live.delete(registration.handle);
  }

  close(): void {
    this.inner.close();
  }
}
