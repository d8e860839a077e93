// How a Worker attaches to the provider handle a shared pool's owner posted: each transport
// registers an attach function under its handle's `kind` when its module loads, so that the
// pool and sharing code import no transport, and a new transport registers itself instead of
// being added there.
import { AllocToolsError, AllocToolsTypeError } from "../errors.ts";
import type { ProviderHandle, RegionProvider } from "./provider.ts";

/** Makes, in this thread, a view of the provider behind a handle of one kind (the class's static attach). */
export type ProviderAttach = (handle: ProviderHandle) => RegionProvider;

const attachByKind = new Map<string, ProviderAttach>();

/**
 * Registers how handles of `kind` attach: a transport calls it at its module's top level, with its
 * `share()` handle's kind. Registering the same function again does nothing; another function for
 * a kind already registered is an AllocToolsTypeError (two transports claiming one kind).
 */
export function registerProviderAttach(kind: string, attach: ProviderAttach): void {
  if (typeof kind !== "string" || kind === "" || typeof attach !== "function") {
    throw new AllocToolsTypeError("registerProviderAttach takes a handle kind (a non-empty string) and an attach function");
  }
  const known = attachByKind.get(kind);
  if (known !== undefined && known !== attach) throw new AllocToolsTypeError(`provider handle kind "${kind}" is registered already, by another attach function`);
  attachByKind.set(kind, attach);
}

/**
 * A view, in this thread, of the provider behind `handle`, made by the attach its kind registered.
 * AllocToolsTypeError for anything that is not a provider handle; AllocToolsError NOT_SUPPORTED,
 * naming the kinds registered, when no transport loaded in this thread registered its kind.
 */
export function attachProvider(handle: ProviderHandle): RegionProvider {
  if (handle === null || typeof handle !== "object" || typeof handle.kind !== "string") {
    throw new AllocToolsTypeError("a provider handle (provider.share()) is an object with a string `kind`");
  }
  const attach = attachByKind.get(handle.kind);
  if (attach === undefined) {
    throw new AllocToolsError("NOT_SUPPORTED",
      `no transport loaded in this thread attaches provider handles of kind "${handle.kind}" ` +
      `(registered: ${[...attachByKind.keys()].map((kind) => `"${kind}"`).join(", ") || "none"}); import the module of the provider that shared it`);
  }
  return attach(handle);
}
