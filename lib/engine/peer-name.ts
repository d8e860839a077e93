// An endpoint's name as a string: `fi.` (libfabric Endpoint), `ucx.` (UcxEndpoint) or `mpi.`
// (MpiEndpoint), then the name's bytes in base64url (text-form.ts). `endpoint.nameString` makes
// it; `endpoint.insert()` takes it as well as the bytes, and refuses another kind's name by its
// prefix before the transport sees it.
import { AllocToolsTypeError } from "../../ffi/errors.ts";
import { fromTextForm, shorten, textFormPrefix, toTextForm } from "./text-form.ts";

/** Which endpoint class a name belongs to. */
export type PeerNameKind = "libfabric" | "ucx" | "mpi";

const PREFIXES: Readonly<Record<PeerNameKind, string>> = { libfabric: "fi", ucx: "ucx", mpi: "mpi" };
const DESCRIPTIONS: Readonly<Record<PeerNameKind, string>> = {
  libfabric: "a libfabric Endpoint's name",
  ucx: "a UcxEndpoint's worker address",
  mpi: "an MpiEndpoint's name",
};
/** Longer names than any transport makes (UCX worker addresses are the longest: hundreds of bytes). */
const MAX_NAME_BYTES = 64 * 1024;

/** The name string of `kind` for `bytes`: `<prefix>.<base64url>`. */
export function peerNameString(kind: PeerNameKind, bytes: Uint8Array): string {
  return toTextForm(PREFIXES[kind], bytes);
}

/**
 * The bytes of a name string made by `peerNameString(kind, ...)`. Throws AllocToolsTypeError
 * naming what is wrong: another kind's name, a missing prefix, characters outside base64url.
 */
export function peerNameBytes(kind: PeerNameKind, text: string): Uint8Array {
  const bytes = fromTextForm(PREFIXES[kind], text, MAX_NAME_BYTES);
  if (typeof bytes !== "string") return bytes;
  const found = textFormPrefix(text);
  const other = (Object.keys(PREFIXES) as PeerNameKind[]).find((k) => k !== kind && PREFIXES[k] === found);
  const problem = other !== undefined ? `it is ${DESCRIPTIONS[other]} ("${PREFIXES[other]}.")` : bytes;
  throw new AllocToolsTypeError(
    `insert takes ${DESCRIPTIONS[kind]} as bytes or as its nameString ("${PREFIXES[kind]}." + base64url), ` +
      `but ${JSON.stringify(shorten(text))} is not one: ${problem}`);
}
