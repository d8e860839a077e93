// RemoteRegion: what a peer needs to read or write one of our regions — the remote address, the
// key and the length — and nothing else. It crosses process and host boundaries, so it has a fixed
// binary form (toBytes/fromBytes) and a JSON form (toJSON/fromJSON) with bigints as decimal strings.
//
// Binary layout, 32 bytes, little-endian:
//   offset  size  field
//        0     4  magic "ATRR" (0x41 0x54 0x52 0x52)
//        4     1  version (1)
//        5     3  reserved, zero
//        8     8  address  u64  (virtual address, or offset from the registration's start: per mr_mode)
//       16     8  key      u64  (fi_mr_key)
//       24     8  length   u64  (bytes the peer may touch from address; at most 2^53 - 1)

const MAGIC = [0x41, 0x54, 0x52, 0x52] as const; // "ATRR"
const VERSION = 1;
const U64_LIMIT = 1n << 64n;

/** Thrown for bytes or JSON that are not a RemoteRegion. */
export class RemoteRegionFormatError extends TypeError {
  override readonly name = "RemoteRegionFormatError";
}

export interface RemoteRegionJSON {
  /** Decimal string of the u64 remote address. */
  readonly address: string;
  /** Decimal string of the u64 key. */
  readonly key: string;
  readonly length: number;
}

export class RemoteRegion {
  /** Size of `toBytes()`. */
  static readonly BYTES = 32;

  /** What the peer passes as the remote address of the first byte. */
  readonly address: bigint;
  /** The remote key. */
  readonly key: bigint;
  /** Bytes from `address` the peer may read or write. */
  readonly length: number;

  constructor(address: bigint, key: bigint, length: number) {
    if (typeof address !== "bigint" || address < 0n || address >= U64_LIMIT) throw new RangeError(`address must be a u64 bigint, got ${String(address)}`);
    if (typeof key !== "bigint" || key < 0n || key >= U64_LIMIT) throw new RangeError(`key must be a u64 bigint, got ${String(key)}`);
    if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`length must be a non-negative safe integer, got ${length}`);
    if (address + BigInt(length) > U64_LIMIT) throw new RangeError(`address ${address} + length ${length} passes 2^64`);
    this.address = address;
    this.key = key;
    this.length = length;
  }

  /** The part [offset, offset + length) of this region; refuses to grow past its end. */
  subregion(offset: number, length: number = this.length - offset): RemoteRegion {
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > this.length) {
      throw new RangeError(`subregion offset ${offset} is outside the remote region's ${this.length} bytes`);
    }
    if (!Number.isSafeInteger(length) || length < 0 || length > this.length - offset) {
      throw new RangeError(`subregion of ${length} bytes at offset ${offset} does not fit the remote region's ${this.length} bytes`);
    }
    return new RemoteRegion(this.address + BigInt(offset), this.key, length);
  }

  /** Whether [offset, offset + length) lies inside the region. */
  contains(offset: number, length: number): boolean {
    return offset >= 0 && length >= 0 && offset + length <= this.length;
  }

  equals(other: RemoteRegion): boolean {
    return other.address === this.address && other.key === this.key && other.length === this.length;
  }

  /** The fixed 32-byte little-endian form described at the top of this file. */
  toBytes(): Uint8Array {
    const bytes = new Uint8Array(RemoteRegion.BYTES);
    bytes.set(MAGIC, 0);
    bytes[4] = VERSION;
    const dv = new DataView(bytes.buffer);
    dv.setBigUint64(8, this.address, true);
    dv.setBigUint64(16, this.key, true);
    dv.setBigUint64(24, BigInt(this.length), true);
    return bytes;
  }

  /** Parses `toBytes()` output; anything else (wrong size, magic, version, reserved bits) throws RemoteRegionFormatError. */
  static fromBytes(bytes: Uint8Array): RemoteRegion {
    if (!(bytes instanceof Uint8Array)) throw new RemoteRegionFormatError("RemoteRegion.fromBytes takes a Uint8Array");
    if (bytes.length !== RemoteRegion.BYTES) {
      throw new RemoteRegionFormatError(`a RemoteRegion is ${RemoteRegion.BYTES} bytes, got ${bytes.length}${bytes.length < RemoteRegion.BYTES ? " (truncated?)" : ""}`);
    }
    if (MAGIC.some((b, i) => bytes[i] !== b)) throw new RemoteRegionFormatError("not a RemoteRegion: bad magic (expected \"ATRR\")");
    if (bytes[4] !== VERSION) throw new RemoteRegionFormatError(`unsupported RemoteRegion version ${bytes[4]} (this library reads version ${VERSION})`);
    if (bytes[5] !== 0 || bytes[6] !== 0 || bytes[7] !== 0) throw new RemoteRegionFormatError("not a RemoteRegion: reserved bytes are not zero");
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const length = dv.getBigUint64(24, true);
    if (length > BigInt(Number.MAX_SAFE_INTEGER)) throw new RemoteRegionFormatError(`RemoteRegion length ${length} is above 2^53 - 1`);
    try {
      return new RemoteRegion(dv.getBigUint64(8, true), dv.getBigUint64(16, true), Number(length));
    } catch (e) {
      throw new RemoteRegionFormatError(`not a RemoteRegion: ${(e as Error).message}`, { cause: e });
    }
  }

  /** `{ address: "<decimal>", key: "<decimal>", length: <number> }`: JSON.stringify uses it. */
  toJSON(): RemoteRegionJSON {
    return { address: this.address.toString(), key: this.key.toString(), length: this.length };
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
    try {
      return new RemoteRegion(address, key, length);
    } catch (e) {
      throw new RemoteRegionFormatError(`RemoteRegion.fromJSON: ${(e as Error).message}`, { cause: e });
    }
  }

  toString(): string {
    return `RemoteRegion(address 0x${this.address.toString(16)}, key ${this.key}, ${this.length} bytes)`;
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
