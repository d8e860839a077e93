// The packed worker address of UCX 1.13 (src/ucp/wireup/address.c), read far enough to refuse,
// before ucp_ep_create, anything UCX would assert on or read out of bounds: ucp_address_unpack
// trusts every byte (an unknown version is an assertion that aborts the process; every length is
// followed without a bound), and the transports then read device and interface addresses at the
// lengths they expect, not at the lengths packed.
//
// Layout (non-unified mode, which Ucx.init sets): a header byte (version in the low 4 bits; v1
// keeps its flags in the high 4, v2 adds a flags byte), the worker uuid (always in v1, on a flag in
// v2), a client id and a worker name on flags, then the devices: an md byte (index, "empty" flag),
// a device-length byte (flags LAST, NUM_PATHS, SYS_DEVICE), the path count and system device on
// their flags, the device address; then the device's interfaces: a transport-name checksum (u16),
// the interface attributes (16 bytes in v1, 8 in v2), a length byte (flags LAST, HAS_EP_ADDR), the
// interface address, and endpoint addresses on their flag. v2 extends a value that fills its mask
// with one more byte. A lone 0xff after the header is an empty address.

/** What one interface of a packed worker address says. */
export interface WorkerAddressEntry {
  /** The peer's memory-domain index the interface belongs to (a key blob's md map names these). */
  readonly mdIndex: number;
  /** crc16 of the transport's name ("tcp", "posix", ...), which UCX matches against its own. */
  readonly transportChecksum: number;
  /** The device address bytes (a view into the parsed address). */
  readonly deviceAddress: Uint8Array;
  /** The packed interface attributes (ucp_address_packed_iface_attr_t in v1, the v2 struct in v2). */
  readonly attributes: Uint8Array;
  /** The interface address bytes (a view into the parsed address). */
  readonly interfaceAddress: Uint8Array;
  /** Endpoint addresses packed after the interface address (a worker address has none). */
  readonly endpointAddresses: number;
}

/** A packed worker address, read: its format version (1 or 2) and its interfaces. */
export interface WorkerAddress {
  readonly version: 1 | 2;
  readonly entries: readonly WorkerAddressEntry[];
}

/** UCP_OBJECT_VERSION_V1 and _V2 as they are written in the header's low 4 bits. */
const WIRE_VERSION_V1 = 0;
const WIRE_VERSION_V2 = 1;
/** Header flags (UCP_ADDRESS_HEADER_FLAG_*). */
const HEADER_DEBUG_INFO = 0x1;
const HEADER_WORKER_UUID = 0x2;
const HEADER_CLIENT_ID = 0x4;
/** UCP_NULL_RESOURCE: the md byte of an address without devices. */
const NULL_RESOURCE = 0xff;
/** md byte: UCP_ADDRESS_FLAG_MD_EMPTY_DEV and the index masks of v1 and v2. */
const MD_EMPTY_DEVICE = 0x80;
const MD_INDEX_MASK_V1 = 0x1f;
const MD_INDEX_MASK_V2 = 0x7f;
/** Device length byte: flags and length mask. */
const FLAG_LAST = 0x80;
const DEVICE_NUM_PATHS = 0x40;
const DEVICE_SYS_DEVICE = 0x20;
const DEVICE_LENGTH_MASK = 0x1f;
/** Interface length byte: UCP_ADDRESS_FLAG_HAS_EP_ADDR and the length mask. */
const INTERFACE_HAS_EP_ADDRESS = 0x40;
const INTERFACE_LENGTH_MASK = 0x3f;
/** ucp_address_packed_iface_attr_t (v1) and ucp_address_v2_packed_iface_attr_t (v2). */
const INTERFACE_ATTRIBUTES_V1 = 16;
const INTERFACE_ATTRIBUTES_V2 = 8;
/**
 * v2 attributes: the segment size is in units of UCP_ADDRESS_IFACE_SEG_SIZE_FACTOR (64 bytes);
 * UCP_ADDR_IFACE_FLAG_AM_SYNC marks an interface UCX may pick for active messages, whose segment
 * must hold every packed key of a rendezvous (UCX asserts it does). Real ones are 8 KiB.
 */
const SEGMENT_SIZE_UNIT = 64;
const ADDRESS_FLAG_AM_SYNC = 0x2;
const MIN_ACTIVE_MESSAGE_SEGMENT = 512;
/** UCP_MAX_MDS: ucp_wireup indexes a 64-entry array and a 64-bit map with the peer's md index. */
const MAX_MEMORY_DOMAINS = 64;
/** Device indices go into a 64-bit map and a UCP_MAX_RESOURCES (128) array during lane selection. */
const MAX_DEVICES = 64;
/** UCP_MAX_RESOURCES interfaces and UCP_MAX_LANES endpoint addresses per interface. */
const MAX_INTERFACES = 128;
const MAX_ENDPOINT_ADDRESSES = 6;

/** A parse that ran out of bytes or met a value UCX cannot take: its message is the problem. */
class AddressProblem extends Error {}

/** Reads the address front to back; every read is bounded by its length. */
class AddressReader {
  at = 0;
  constructor(readonly bytes: Uint8Array, readonly version: 1 | 2) {}

  byte(what: string): number {
    if (this.at >= this.bytes.length) throw new AddressProblem(`it ends at byte ${this.bytes.length}, before ${what} (truncated?)`);
    return this.bytes[this.at++]!;
  }

  skip(length: number, what: string): number {
    const start = this.at;
    if (start + length > this.bytes.length) {
      throw new AddressProblem(`${what} (${length} bytes at byte ${start}) runs past its ${this.bytes.length} bytes (truncated?)`);
    }
    this.at += length;
    return start;
  }

  /** A value in the low bits of `first`; in v2 a value equal to its mask continues in the next byte. */
  extended(first: number, mask: number, what: string): number {
    const value = first & mask;
    return this.version === 2 && value === mask ? this.byte(what) : value;
  }
}

/**
 * Reads a packed worker address (as `ucp_worker_get_address` gives it), or says why it cannot be
 * one: a string naming the first problem. Every length is checked against the bytes there are.
 */
export function readWorkerAddress(bytes: Uint8Array): WorkerAddress | string {
  if (bytes.length === 0) return "a worker address is at least 1 byte, got 0";
  const wire = bytes[0]! & 0x0f;
  if (wire !== WIRE_VERSION_V1 && wire !== WIRE_VERSION_V2) {
    return `address version ${wire} (header byte 0x${hex(bytes[0]!)}) is not one UCX 1.13 reads (0 for v1, 1 for v2)`;
  }
  const reader = new AddressReader(bytes, wire === WIRE_VERSION_V1 ? 1 : 2);
  try {
    readHeader(reader);
    const entries = readDevices(reader);
    if (reader.at !== bytes.length) {
      throw new AddressProblem(`${bytes.length - reader.at} bytes follow the last device (at byte ${reader.at} of ${bytes.length})`);
    }
    return { version: reader.version, entries };
  } catch (e) {
    if (e instanceof AddressProblem) return e.message;
    throw e;
  }
}

function readHeader(reader: AddressReader): void {
  const header = reader.byte("the header");
  const flags = reader.version === 1 ? header >> 4 : reader.byte("the v2 header flags");
  // ucp_ep_create unpacks with the uuid flag: a v1 address always has one.
  if (reader.version === 1 || (flags & HEADER_WORKER_UUID) !== 0) reader.skip(8, "the worker uuid");
  if ((flags & HEADER_CLIENT_ID) !== 0) reader.skip(8, "the client id");
  if ((flags & HEADER_DEBUG_INFO) !== 0) reader.skip(reader.byte("the worker name's length"), "the worker name");
}

function readDevices(reader: AddressReader): WorkerAddressEntry[] {
  const entries: WorkerAddressEntry[] = [];
  if (reader.at < reader.bytes.length && reader.bytes[reader.at] === NULL_RESOURCE) {
    reader.at++;
    return entries;
  }
  for (let device = 0; ; device++) {
    if (device >= MAX_DEVICES) throw new AddressProblem(`it lists more than ${MAX_DEVICES} devices`);
    const mdByte = reader.byte(`device ${device}'s md index`);
    const mdIndex = reader.extended(mdByte, reader.version === 1 ? MD_INDEX_MASK_V1 : MD_INDEX_MASK_V2, `device ${device}'s md index`);
    if (mdIndex >= MAX_MEMORY_DOMAINS) throw new AddressProblem(`device ${device} names md index ${mdIndex}; UCX has at most ${MAX_MEMORY_DOMAINS} memory domains`);
    const lengthByte = reader.byte(`device ${device}'s address length`);
    const deviceLength = reader.extended(lengthByte, DEVICE_LENGTH_MASK, `device ${device}'s address length`);
    if ((lengthByte & DEVICE_NUM_PATHS) !== 0) reader.byte(`device ${device}'s path count`);
    if ((lengthByte & DEVICE_SYS_DEVICE) !== 0) reader.byte(`device ${device}'s system device`);
    const deviceStart = reader.skip(deviceLength, `device ${device}'s address`);
    const deviceAddress = reader.bytes.subarray(deviceStart, deviceStart + deviceLength);
    if ((mdByte & MD_EMPTY_DEVICE) === 0) readInterfaces(reader, device, mdIndex, deviceAddress, entries);
    if ((lengthByte & FLAG_LAST) !== 0) return entries;
  }
}

function readInterfaces(reader: AddressReader, device: number, mdIndex: number, deviceAddress: Uint8Array, entries: WorkerAddressEntry[]): void {
  for (let last = false; !last;) {
    const what = `device ${device}'s interface ${entries.length}`;
    if (entries.length >= MAX_INTERFACES) throw new AddressProblem(`it lists more than ${MAX_INTERFACES} interfaces`);
    const checksumAt = reader.skip(2, `${what}'s transport checksum`);
    const transportChecksum = reader.bytes[checksumAt]! | (reader.bytes[checksumAt + 1]! << 8);
    const attributesLength = reader.version === 1 ? INTERFACE_ATTRIBUTES_V1 : INTERFACE_ATTRIBUTES_V2;
    const attributesStart = reader.skip(attributesLength, `${what}'s attributes`);
    const attributes = reader.bytes.subarray(attributesStart, attributesStart + attributesLength);
    const lengthByte = reader.byte(`${what}'s address length`);
    last = (lengthByte & FLAG_LAST) !== 0;
    const interfaceLength = reader.extended(lengthByte, INTERFACE_LENGTH_MASK, `${what}'s address length`);
    const interfaceStart = reader.skip(interfaceLength, `${what}'s address`);
    const interfaceAddress = reader.bytes.subarray(interfaceStart, interfaceStart + interfaceLength);
    let endpointAddresses = 0;
    for (let more = (lengthByte & INTERFACE_HAS_EP_ADDRESS) !== 0; more; endpointAddresses++) {
      if (endpointAddresses >= MAX_ENDPOINT_ADDRESSES) throw new AddressProblem(`${what} has more than ${MAX_ENDPOINT_ADDRESSES} endpoint addresses`);
      reader.skip(reader.byte(`${what}'s endpoint address length`), `${what}'s endpoint address`);
      more = (reader.byte(`${what}'s endpoint lane`) & FLAG_LAST) === 0;
    }
    entries.push({ mdIndex, transportChecksum, deviceAddress, attributes, interfaceAddress, endpointAddresses });
  }
}

/** ucs_crc16_string: the checksum of a transport's name that addresses carry (CRC-16-CCITT, reflected). */
export function transportChecksum(name: string): number {
  let crc = 0xffff;
  for (let i = 0; i < name.length; i++) {
    crc ^= name.charCodeAt(i);
    for (let bit = 0; bit < 8; bit++) crc = (crc >>> 1) ^ ((crc & 1) !== 0 ? 0x8408 : 0);
  }
  return ~crc & 0xffff;
}

/** Transports of UCX 1.13, by checksum, to name them in messages. */
const TRANSPORT_NAMES = new Map<number, string>(
  ["tcp", "posix", "sysv", "xpmem", "cma", "knem", "self", "rc_verbs", "rc_mlx5", "dc_mlx5", "ud_verbs", "ud_mlx5",
    "cuda_copy", "cuda_ipc", "gdr_copy", "rocm_copy", "rocm_ipc", "rocm_gdr"].map((name) => [transportChecksum(name), name]));

/** The transport's name for a checksum, or "transport 0x1234" when it is not one UCX 1.13 has. */
export function transportName(checksum: number): string {
  return TRANSPORT_NAMES.get(checksum) ?? `transport 0x${checksum.toString(16).padStart(4, "0")}`;
}

/** Transports whose remote keys map the peer's memory (uct mm): an unpack can fail there. */
export const MAPPING_TRANSPORTS: ReadonlySet<number> = new Set(["posix", "sysv", "xpmem"].map(transportChecksum));

const TCP = transportChecksum("tcp");
/** uct_tcp_device_addr_t: flags, sa_family; then uct_iface_local_addr_ns_t (16) for loopback, else the IP. */
const TCP_LOOPBACK = 0x1;
const TCP_DEVICE_LENGTHS = new Map<number, number>([[2 /* AF_INET */, 2 + 4], [10 /* AF_INET6 */, 2 + 16]]);
const TCP_LOOPBACK_DEVICE_LENGTH = 2 + 16;
/**
 * Shared-memory transports, whose device address is uct_iface_local_addr_ns_t: a u64 system id,
 * and a namespace id after it when the id's top bit (UCT_IFACE_LOCAL_ADDR_FLAG_NS) is set.
 */
const LOCAL_ADDRESS_TRANSPORTS: ReadonlySet<number> = new Set(["posix", "sysv", "xpmem", "cma", "knem"].map(transportChecksum));

/**
 * `peer` read (readWorkerAddress), or why it cannot be handed to ucp_ep_create on the worker whose
 * own address is `local`. Besides the framing, every interface of a transport this worker has must
 * carry addresses of the lengths that transport reads: what the address's own content calls for
 * (tcp, shared memory), else the lengths this worker's own address packs for it. Interfaces of
 * transports this worker lacks are never read by UCX and need only be framed.
 */
export function checkWorkerAddress(peer: Uint8Array, local: WorkerAddress): WorkerAddress | string {
  const read = readWorkerAddress(peer);
  if (typeof read === "string") return read;
  const lengths = localLengths(local);
  for (const [index, entry] of read.entries.entries()) {
    if (entry.endpointAddresses > 0) return `interface ${index} carries endpoint addresses; a worker address (ucp_worker_get_address) has none`;
    const own = lengths.get(entry.transportChecksum);
    if (own === undefined) continue;
    const name = transportName(entry.transportChecksum);
    const device = entry.deviceAddress.length;
    const expected = expectedDeviceLengths(entry, own.device);
    if (!expected.includes(device)) {
      return `interface ${index} (${name}) has a ${device}-byte device address; ${name} here reads ${expected.join(" or ")} bytes`;
    }
    const attributes = attributesProblem(entry.attributes);
    if (attributes !== "") return `interface ${index} (${name}) ${attributes}`;
    if (!own.iface.has(entry.interfaceAddress.length)) {
      return `interface ${index} (${name}) has a ${entry.interfaceAddress.length}-byte interface address; ${name} here reads ${[...own.iface].join(" or ")} bytes`;
    }
  }
  return read;
}

/** Why `peer` cannot be handed to ucp_ep_create on the worker whose own address is `local`, or "" (checkWorkerAddress). */
export function workerAddressProblem(peer: Uint8Array, local: WorkerAddress): string {
  const checked = checkWorkerAddress(peer, local);
  return typeof checked === "string" ? checked : "";
}

/**
 * Why UCX's lane selection cannot score these interface attributes, or "": it asserts that every
 * score is >= 0, and scores are 1e-3 / (latency + overheads + size / bandwidth). v1 packs floats
 * (overhead, bandwidth, latency overhead, then priority and flags); v2 packs fp8 bytes (overhead,
 * bandwidth, latency; 4 exponent bits, all set for NaN and infinity), a priority byte, the
 * segment size (0 for a transport without active messages, such as cma) and flags.
 */
function attributesProblem(attributes: Uint8Array): string {
  if (attributes.length === INTERFACE_ATTRIBUTES_V1) {
    const view = new DataView(attributes.buffer, attributes.byteOffset, attributes.length);
    const [overhead, bandwidth, latency] = [view.getFloat32(0, true), view.getFloat32(4, true), view.getFloat32(8, true)];
    if (!(overhead >= 0 && overhead < Infinity)) return `has overhead ${overhead}; a finite value >= 0 is needed`;
    if (!Number.isFinite(bandwidth)) return `has bandwidth ${bandwidth}; a finite value is needed`;
    if (!(latency >= 0 && latency < Infinity)) return `has latency overhead ${latency}; a finite value >= 0 is needed`;
    return "";
  }
  for (const [at, what] of [[0, "overhead"], [1, "bandwidth"], [2, "latency"]] as const) {
    if ((attributes[at]! & 0x0f) === 0x0f) return `has ${what} NaN or infinite (fp8 byte 0x${hex(attributes[at]!)})`;
  }
  const segmentSize = (attributes[4]! | (attributes[5]! << 8)) * SEGMENT_SIZE_UNIT;
  const activeMessages = (attributes[6]! & ADDRESS_FLAG_AM_SYNC) !== 0;
  if (activeMessages && segmentSize < MIN_ACTIVE_MESSAGE_SEGMENT) {
    return `takes active messages of at most ${segmentSize} bytes; UCX needs room for its packed keys (at least ${MIN_ACTIVE_MESSAGE_SEGMENT} bytes here)`;
  }
  return "";
}

/** The device and interface address lengths each transport of the local address uses. */
function localLengths(local: WorkerAddress): Map<number, { device: Set<number>; iface: Set<number> }> {
  const lengths = new Map<number, { device: Set<number>; iface: Set<number> }>();
  for (const entry of local.entries) {
    let own = lengths.get(entry.transportChecksum);
    if (own === undefined) lengths.set(entry.transportChecksum, own = { device: new Set(), iface: new Set() });
    own.device.add(entry.deviceAddress.length);
    own.iface.add(entry.interfaceAddress.length);
  }
  return lengths;
}

/**
 * The device address lengths the transport reads from `entry`: what its own content calls for
 * (tcp, shared memory), else one of the lengths this worker packs for that transport.
 */
function expectedDeviceLengths(entry: WorkerAddressEntry, own: ReadonlySet<number>): number[] {
  if (entry.transportChecksum === TCP) return [tcpDeviceLength(entry.deviceAddress)];
  if (LOCAL_ADDRESS_TRANSPORTS.has(entry.transportChecksum)) {
    return [entry.deviceAddress.length >= 8 && (entry.deviceAddress[7]! & 0x80) !== 0 ? 16 : 8];
  }
  return [...own];
}

/** The length uct_tcp reads from a tcp device address, by its flags and family (2 for families it never connects to). */
function tcpDeviceLength(deviceAddress: Uint8Array): number {
  if (deviceAddress.length < 2) return 2;
  if ((deviceAddress[0]! & TCP_LOOPBACK) !== 0) return TCP_LOOPBACK_DEVICE_LENGTH;
  return TCP_DEVICE_LENGTHS.get(deviceAddress[1]!) ?? 2;
}

/**
 * The peer's memory domains whose keys this worker would map (posix, sysv, xpmem: an unpack that
 * attaches a segment and can fail), each with its transport: those of interfaces whose device
 * address equals this worker's own for that transport (same host and IPC namespace: UCX's
 * reachability test for shared memory compares exactly these bytes).
 */
export function mappedMemoryDomains(peer: WorkerAddress, local: WorkerAddress): Map<number, string> {
  const domains = new Map<number, string>();
  for (const entry of peer.entries) {
    if (!MAPPING_TRANSPORTS.has(entry.transportChecksum)) continue;
    const reachable = local.entries.some((own) => own.transportChecksum === entry.transportChecksum && equalBytes(own.deviceAddress, entry.deviceAddress));
    if (reachable) domains.set(entry.mdIndex, transportName(entry.transportChecksum));
  }
  return domains;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function hex(byte: number): string {
  return byte.toString(16).padStart(2, "0");
}
