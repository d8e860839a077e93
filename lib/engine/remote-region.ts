// RemoteRegion: what a peer needs to read or write one of our regions — the remote address, the
// key and the length — and nothing else. It crosses process and host boundaries, so it has a fixed
// binary form (toBytes/fromBytes), a JSON form (toJSON/fromJSON) with bigints as decimal strings, and
// a URL-safe text form (toString/parse): "rr." and the binary form in base64url (text-form.ts).
//
// Binary layout, little-endian. Version 1 (32 bytes) is what libfabric regions produce; version 2
// adds a variable-length key blob for transports whose keys do not fit 64 bits (UCX's packed rkey).
//   offset  size  field
//        0     4  magic "ATRR" (0x41 0x54 0x52 0x52)
//        4     1  version (1 or 2)
//        5     3  reserved, zero
//        8     8  address  u64  (virtual address, or offset from the registration's start: per mr_mode)
//       16     8  key      u64  (fi_mr_key; 0 for a UCX region)
//       24     8  length   u64  (bytes the peer may touch from address; at most 2^53 - 1)
//   version 2 only:
//       32     4  blob length u32 (1 .. RemoteRegion.MAX_KEY_BLOB)
//       36     n  key blob (ucp_rkey_pack output for UCX)
// A version 2 region is exactly 36 + n bytes.
import { AllocToolsTypeError, AllocToolsRangeError } from "../errors.ts";
import { inspectCustom } from "../inspect.ts";
import { fromTextForm, shorten, toTextForm } from "./text-form.ts";
import { argument } from "./operation.ts";

const MAGIC = [0x41, 0x54, 0x52, 0x52] as const; // "ATRR"
const VERSION = 1;
const VERSION_KEY_BLOB = 2;
const HEADER_BYTES = 32;
const BLOB_HEADER_BYTES = 36;
const U64_LIMIT = 1n << 64n;
/** The prefix of the text form (toString / parse). */
const TEXT_PREFIX = "rr";

/** Thrown for bytes or JSON that are not a RemoteRegion. */
export class RemoteRegionFormatError extends TypeError {
  /** Always `"RemoteRegionFormatError"`. */
  override readonly name = "RemoteRegionFormatError";
  /** Always `"REMOTE_REGION_FORMAT"`, like the `code` of the library's other errors. */
  readonly code = "REMOTE_REGION_FORMAT" as const;
}

/** The JSON form of a RemoteRegion (`toJSON`). */
export interface RemoteRegionJSON {
  /** Decimal string of the u64 remote address. */
  readonly address: string;
  /** Decimal string of the u64 key. */
  readonly key: string;
  /** Bytes the peer may touch. */
  readonly length: number;
  /** The key blob in lowercase hex (version 2 only). */
  readonly keyBlob?: string;
}

/**
 * A peer's registered memory as an RMA target: remote address, key (or key blob) and length, and
 * nothing else. Made by `region.remote()` / `pointer.remote()` on the side that owns the memory,
 * sent as `toBytes()` or `toJSON()`, read back with `fromBytes` / `fromJSON`, then passed to an
 * endpoint's write or read.
 *
 * Lifetime: plain immutable data holding no native resource; it stays valid only as long as the
 * region it describes stays registered and out of its pool (the owner decides; nothing here can
 * tell). Its `length` is what the peer may touch: for a pooled region, `region.remote()` gives the
 * whole class size (a 4000-byte get of a 16 KiB class lets the peer touch 16 KiB), so send
 * `pointer.remote(length)` or `subregion()` to give less.
 *
 * Hot path: the fields are plain reads, and `contains` allocates nothing; `subregion`, `toBytes`,
 * `fromBytes` and the JSON forms allocate. Decode once per peer region, not per operation.
 */
export class RemoteRegion {
  /** Size of `toBytes()` for a version 1 region (no key blob). */
  static readonly BYTES = HEADER_BYTES;
  /** The largest key blob a version 2 region carries (UCX rkeys are tens to a few hundred bytes). */
  static readonly MAX_KEY_BLOB = 4096;

  /** What the peer passes as the remote address of the first byte. */
  readonly address: bigint;
  /** The remote key. */
  readonly key: bigint;
  /** Bytes from `address` the peer may read or write. */
  readonly length: number;
  /**
   * The variable-length key (UCX's packed rkey), or null for a 64-bit key only. Shared, not copied,
   * by sub-regions (endpoints cache what they unpacked from it by identity): do not modify it.
   */
  readonly keyBlob: Uint8Array | null;
  /**
   * `address` as bun:ffi takes a u64: a number when exact, else the bigint. Worked out once here,
   * so that an operation converts no BigInt (the transports' hot path reads it).
   */
  readonly addressArgument: number | bigint;
  /** `key` as bun:ffi takes a u64, worked out once as `addressArgument` is. */
  readonly keyArgument: number | bigint;

  /**
   * `keyBlob` (1 .. MAX_KEY_BLOB bytes) makes a version 2 region; it is kept as given, not copied.
   * Throws RangeError for values out of range, TypeError for a blob that is not a Uint8Array.
   */
  constructor(address: bigint, key: bigint, length: number, keyBlob: Uint8Array | null = null) {
    if (typeof address !== "bigint" || address < 0n || address >= U64_LIMIT) throw new AllocToolsRangeError(`address must be a u64 bigint, got ${String(address)}`);
    if (typeof key !== "bigint" || key < 0n || key >= U64_LIMIT) throw new AllocToolsRangeError(`key must be a u64 bigint, got ${String(key)}`);
    if (!Number.isSafeInteger(length) || length < 0) throw new AllocToolsRangeError(`length must be a non-negative safe integer, got ${length}`);
    if (address + BigInt(length) > U64_LIMIT) throw new AllocToolsRangeError(`address ${address} + length ${length} passes 2^64`);
    if (keyBlob !== null) {
      if (!(keyBlob instanceof Uint8Array)) throw new AllocToolsTypeError("keyBlob must be a Uint8Array or null");
      if (keyBlob.length === 0 || keyBlob.length > RemoteRegion.MAX_KEY_BLOB) {
        throw new AllocToolsRangeError(`keyBlob must hold 1 to ${RemoteRegion.MAX_KEY_BLOB} bytes, got ${keyBlob.length}`);
      }
    }
    this.address = address;
    this.key = key;
    this.length = length;
    this.keyBlob = keyBlob;
    this.addressArgument = argument(address);
    this.keyArgument = argument(key);
  }

  /** The binary format version `toBytes()` writes: 1 (64-bit key), 2 (key blob). */
  get version(): 1 | 2 {
    return this.keyBlob === null ? 1 : 2;
  }

  /** Size of `toBytes()`: 32, or 36 + the key blob's length. */
  get byteLength(): number {
    return this.keyBlob === null ? HEADER_BYTES : BLOB_HEADER_BYTES + this.keyBlob.length;
  }

  /** The part [offset, offset + length) of this region; refuses to grow past its end. */
  subregion(offset: number, length: number = this.length - offset): RemoteRegion {
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > this.length) {
      throw new AllocToolsRangeError(`subregion offset ${offset} is outside the remote region's ${this.length} bytes`);
    }
    if (!Number.isSafeInteger(length) || length < 0 || length > this.length - offset) {
      throw new AllocToolsRangeError(`subregion of ${length} bytes at offset ${offset} does not fit the remote region's ${this.length} bytes`);
    }
    return new RemoteRegion(this.address + BigInt(offset), this.key, length, this.keyBlob);
  }

  /** Whether [offset, offset + length) lies inside the region. */
  contains(offset: number, length: number): boolean {
    return offset >= 0 && length >= 0 && offset + length <= this.length;
  }

  /** Same address, key, length and key blob bytes. */
  equals(other: RemoteRegion): boolean {
    return other.address === this.address && other.key === this.key && other.length === this.length &&
      sameBlob(other.keyBlob, this.keyBlob);
  }

  /** The little-endian form described at the top of this file: version 1 without a key blob, 2 with one. */
  toBytes(): Uint8Array {
    const blob = this.keyBlob;
    const bytes = new Uint8Array(this.byteLength);
    bytes.set(MAGIC, 0);
    bytes[4] = blob === null ? VERSION : VERSION_KEY_BLOB;
    const dv = new DataView(bytes.buffer);
    dv.setBigUint64(8, this.address, true);
    dv.setBigUint64(16, this.key, true);
    dv.setBigUint64(24, BigInt(this.length), true);
    if (blob !== null) {
      dv.setUint32(HEADER_BYTES, blob.length, true);
      bytes.set(blob, BLOB_HEADER_BYTES);
    }
    return bytes;
  }

  /**
   * Parses `toBytes()` output of either version; anything else (wrong size, magic, version,
   * reserved bits, a blob length that does not match) throws RemoteRegionFormatError. The key blob
   * is copied out of `bytes`.
   */
  static fromBytes(bytes: Uint8Array): RemoteRegion {
    if (!(bytes instanceof Uint8Array)) throw new RemoteRegionFormatError("RemoteRegion.fromBytes takes a Uint8Array");
    if (bytes.length >= 5 && MAGIC.every((b, i) => bytes[i] === b)) {
      if (bytes[4] === VERSION_KEY_BLOB) return fromBytesWithBlob(bytes);
      if (bytes[4] !== VERSION) checkHeader(bytes); // names the unsupported version
    }
    if (bytes.length !== RemoteRegion.BYTES) {
      throw new RemoteRegionFormatError(`a RemoteRegion is ${RemoteRegion.BYTES} bytes, got ${bytes.length}${bytes.length < RemoteRegion.BYTES ? " (truncated?)" : ""}`);
    }
    checkHeader(bytes);
    return fromHeader(bytes, null);
  }

  /** `{ address: "<decimal>", key: "<decimal>", length: <number>, keyBlob?: "<hex>" }`: JSON.stringify uses it. */
  toJSON(): RemoteRegionJSON {
    const json = { address: this.address.toString(), key: this.key.toString(), length: this.length };
    return this.keyBlob === null ? json : { ...json, keyBlob: Buffer.from(this.keyBlob).toString("hex") };
  }

  /** Takes the parsed object (or the JSON text) that `toJSON` describes. */
  static fromJSON(json: unknown): RemoteRegion {
    let value = json;
    if (typeof value === "string") {
      try { value = JSON.parse(value); } catch (e) { throw new RemoteRegionFormatError("RemoteRegion.fromJSON: not JSON", { cause: e }); }
    }
    if (typeof value !== "object" || value === null) throw new RemoteRegionFormatError("RemoteRegion.fromJSON takes an object { address, key, length }");
    const o = value as Record<string, unknown>;
    const u64 = (name: string): bigint => {
      const v = o[name];
      if (typeof v !== "string" || !/^(0|[1-9][0-9]{0,19})$/.test(v)) {
        throw new RemoteRegionFormatError(`RemoteRegion.fromJSON: ${name} must be a decimal string, got ${shown(v)}`);
      }
      const n = BigInt(v);
      if (n >= U64_LIMIT) throw new RemoteRegionFormatError(`RemoteRegion.fromJSON: ${name} ${v} is above 2^64 - 1`);
      return n;
    };
    const address = u64("address");
    const key = u64("key");
    const length = o.length;
    if (typeof length !== "number" || !Number.isSafeInteger(length) || length < 0) {
      throw new RemoteRegionFormatError(`RemoteRegion.fromJSON: length must be a non-negative integer, got ${shown(length)}`);
    }
    const keyBlob = blobFromJSON(o.keyBlob);
    try {
      return new RemoteRegion(address, key, length, keyBlob);
    } catch (e) {
      throw new RemoteRegionFormatError(`RemoteRegion.fromJSON: ${(e as Error).message}`, { cause: e });
    }
  }

  /**
   * The text form: `rr.` then `toBytes()` in unpadded base64url (every version; 43 characters for
   * version 1). URL-safe, so it passes through argv, environment variables, files and URLs;
   * `${region}` gives it too. Read it back with `RemoteRegion.parse`.
   */
  toString(): string {
    return toTextForm(TEXT_PREFIX, this.toBytes());
  }

  /**
   * Parses `toString()` output of either version, checked like `fromBytes` (size, magic, version,
   * reserved bytes, blob length); anything else throws RemoteRegionFormatError naming the problem.
   */
  static parse(text: string): RemoteRegion {
    if (typeof text !== "string") throw new RemoteRegionFormatError(`RemoteRegion.parse takes a string, got ${typeof text}`);
    const bytes = fromTextForm(TEXT_PREFIX, text, BLOB_HEADER_BYTES + RemoteRegion.MAX_KEY_BLOB);
    if (typeof bytes === "string") {
      throw new RemoteRegionFormatError(`RemoteRegion.parse takes "${TEXT_PREFIX}." + base64url (RemoteRegion.toString()), but ${JSON.stringify(shorten(text))} is not: ${bytes}`);
    }
    return RemoteRegion.fromBytes(bytes);
  }

  /** One line for logs (console.log): address, key (or the key blob's size) and length. */
  [inspectCustom](): string {
    const key = this.keyBlob === null ? `key ${this.key}` : `key blob of ${this.keyBlob.length} bytes`;
    return `RemoteRegion(address 0x${this.address.toString(16)}, ${key}, ${this.length} bytes)`;
  }
}

/** A value as an error message shows it: JSON where it has one, else its type (a bigint, say, has no JSON). */
function shown(value: unknown): string {
  if (typeof value === "bigint") return `the bigint ${value}n (send decimal strings)`;
  try {
    return JSON.stringify(value) ?? String(typeof value);
  } catch {
    return `a ${typeof value} that has no JSON form`;
  }
}

function sameBlob(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === b) return true;
  if (a === null || b === null || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Magic, version 1 or 2 and zero reserved bytes; the caller has checked the length. */
function checkHeader(bytes: Uint8Array): void {
  if (MAGIC.some((b, i) => bytes[i] !== b)) throw new RemoteRegionFormatError("not a RemoteRegion: bad magic (expected \"ATRR\")");
  if (bytes[4] !== VERSION && bytes[4] !== VERSION_KEY_BLOB) {
    throw new RemoteRegionFormatError(`unsupported RemoteRegion version ${bytes[4]} (this library reads versions ${VERSION} and ${VERSION_KEY_BLOB})`);
  }
  if (bytes[5] !== 0 || bytes[6] !== 0 || bytes[7] !== 0) throw new RemoteRegionFormatError("not a RemoteRegion: reserved bytes are not zero");
}

/** Address, key and length from the 32-byte header, with `keyBlob`. */
function fromHeader(bytes: Uint8Array, keyBlob: Uint8Array | null): RemoteRegion {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const length = dv.getBigUint64(24, true);
  if (length > BigInt(Number.MAX_SAFE_INTEGER)) throw new RemoteRegionFormatError(`RemoteRegion length ${length} is above 2^53 - 1`);
  try {
    return new RemoteRegion(dv.getBigUint64(8, true), dv.getBigUint64(16, true), Number(length), keyBlob);
  } catch (e) {
    throw new RemoteRegionFormatError(`not a RemoteRegion: ${(e as Error).message}`, { cause: e });
  }
}

/** Version 2: header, blob length, blob; the total must be exactly 36 + blob length. */
function fromBytesWithBlob(bytes: Uint8Array): RemoteRegion {
  if (bytes.length < BLOB_HEADER_BYTES + 1) {
    throw new RemoteRegionFormatError(`a version 2 RemoteRegion is at least ${BLOB_HEADER_BYTES + 1} bytes, got ${bytes.length} (truncated?)`);
  }
  checkHeader(bytes);
  const blobLength = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(HEADER_BYTES, true);
  if (blobLength === 0 || blobLength > RemoteRegion.MAX_KEY_BLOB) {
    throw new RemoteRegionFormatError(`RemoteRegion key blob length ${blobLength} is outside 1 to ${RemoteRegion.MAX_KEY_BLOB}`);
  }
  if (bytes.length !== BLOB_HEADER_BYTES + blobLength) {
    const truncated = bytes.length < BLOB_HEADER_BYTES + blobLength ? " (truncated?)" : "";
    throw new RemoteRegionFormatError(`a version 2 RemoteRegion with a ${blobLength}-byte key blob is ${BLOB_HEADER_BYTES + blobLength} bytes, got ${bytes.length}${truncated}`);
  }
  return fromHeader(bytes, bytes.slice(BLOB_HEADER_BYTES));
}

/** The keyBlob field of the JSON form: absent, or 1 .. MAX_KEY_BLOB bytes of lowercase hex. */
function blobFromJSON(value: unknown): Uint8Array | null {
  if (value === undefined) return null;
  const max = RemoteRegion.MAX_KEY_BLOB;
  if (typeof value !== "string" || value.length === 0 || value.length > 2 * max || value.length % 2 !== 0 || !/^[0-9a-f]+$/.test(value)) {
    throw new RemoteRegionFormatError(`RemoteRegion.fromJSON: keyBlob must be 1 to ${max} bytes of lowercase hex, got ${JSON.stringify(value)?.slice(0, 40)}`);
  }
  return new Uint8Array(Buffer.from(value, "hex"));
}

/**
 * The TypeError for a `remote` that is not a RemoteRegion, naming what it is; for a plain object
 * with its fields (what structuredClone, postMessage or a JSON round trip leave of one), how to make
 * it a RemoteRegion again.
 */
export function notRemoteRegion(kind: string, value: unknown): AllocToolsTypeError {
  const fields = value !== null && typeof value === "object" && "address" in value && "key" in value && "length" in value;
  const hint = fields
    ? ": got a plain object with its fields (what structuredClone, postMessage or JSON.parse leave of one); send JSON.stringify(region) and read it with RemoteRegion.fromJSON(), or send `${region}` and read it with RemoteRegion.parse()"
    : ` (region.remote(), RemoteRegion.fromBytes(), RemoteRegion.fromJSON(), RemoteRegion.parse()), got ${value === null ? "null" : typeof value}`;
  return new AllocToolsTypeError(`${kind} target must be a RemoteRegion${hint}`);
}
