// The text form of the library's binary descriptors (endpoint names, RemoteRegions): a short prefix
// naming what the bytes are, a dot, then the bytes in unpadded base64url (RFC 4648 §5). Every
// character is URL-safe (unreserved in RFC 3986), so a text form passes through argv, environment
// variables, files, JSON and URLs as it is.
//
// Decoding is strict: only the base64url alphabet, no padding, no whitespace, and the canonical
// encoding only (the unused low bits of the last character zero), so one byte string has exactly
// one text form and a mangled string is refused rather than decoded into different bytes.

/** Characters of unpadded base64url; a length of 1 mod 4 cannot be one. */
const BASE64URL = /^[A-Za-z0-9_-]*$/;

/** `<prefix>.<base64url of bytes>`. */
export function toTextForm(prefix: string, bytes: Uint8Array): string {
  return `${prefix}.${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64url")}`;
}

/** The prefix of a text form (what comes before the first dot), or null when there is no dot. */
export function textFormPrefix(text: string): string | null {
  const dot = text.indexOf(".");
  return dot < 0 ? null : text.slice(0, dot);
}

/**
 * The bytes of `<prefix>.<base64url>`, or a sentence saying what is wrong with the text (the
 * caller throws its own error class). `maxBytes` bounds the decoded length before decoding.
 */
export function fromTextForm(prefix: string, text: string, maxBytes: number): Uint8Array | string {
  if (!text.startsWith(`${prefix}.`)) {
    const found = textFormPrefix(text);
    return found === null ? `it has no "${prefix}." prefix` : `its prefix is "${shorten(found)}", not "${prefix}"`;
  }
  const body = text.slice(prefix.length + 1);
  if (body.length === 0) return "it has nothing after the prefix";
  if (body.length > Math.ceil((maxBytes * 4) / 3)) return `it is longer than ${maxBytes} bytes can be`;
  if (!BASE64URL.test(body)) return "it has characters outside base64url (A-Z a-z 0-9 - _; no padding, no spaces)";
  if (body.length % 4 === 1) return "its base64url part has a length no byte string encodes to (truncated?)";
  const bytes = new Uint8Array(Buffer.from(body, "base64url"));
  if (Buffer.from(bytes).toString("base64url") !== body) return "its base64url part is not in canonical form (mangled?)";
  return bytes;
}

/** A value as an error message shows it: at most 40 characters of it. */
export function shorten(text: string): string {
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
}
