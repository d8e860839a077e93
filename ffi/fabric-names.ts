// A peer's endpoint name, checked before fi_av_insert. libfabric takes the name as a bare pointer
// and reads it by the provider's address format, not by the bytes given: tcp, udp and sockets
// (FI_SOCKADDR_IN) read 16 bytes, a 2-byte or 8-byte name included; shm (FI_ADDR_STR) reads a
// string up to its NUL, past the end of a name that has none. Measured on libfabric 1.17.
import { FabricError } from "./errors.ts";
import { L } from "./layout.ts";
import { readU32 } from "./libfabric.ts";
import * as libc from "./libc.ts";

/** enum fi_addr_format (rdma/fabric.h) values with a layout known here. */
const FORMAT_SOCKADDR = 1;
const FORMAT_SOCKADDR_IN = 2;
const FORMAT_SOCKADDR_IN6 = 3;
const FORMAT_SOCKADDR_IB = 4;
const FORMAT_STRING = 9;
/** sa_family values and the size of the sockaddr each one is. */
const SOCKADDR_SIZES = new Map<number, [string, number]>([[2, ["AF_INET", 16]], [10, ["AF_INET6", 28]], [27, ["AF_IB", 48]]]);
const FAMILY_OF_FORMAT = new Map<number, number>([[FORMAT_SOCKADDR_IN, 2], [FORMAT_SOCKADDR_IN6, 10], [FORMAT_SOCKADDR_IB, 27]]);
/** Longest string name taken (shm's names are about 20 bytes; SMR_NAME_MAX is 256). */
const MAX_STRING_NAME = 256;

/**
 * Why `peer` cannot be an endpoint name in `addressFormat`, or "" when it can: a sockaddr of its
 * family's exact size (the format's family where it has one), a printable string ending in its
 * only NUL, or, in any other format, exactly as many bytes as this endpoint's own name `own`.
 */
export function peerNameProblem(peer: Uint8Array, own: Uint8Array, addressFormat: number): string {
  if (addressFormat === FORMAT_STRING) return stringNameProblem(peer);
  if (addressFormat >= FORMAT_SOCKADDR && addressFormat <= FORMAT_SOCKADDR_IB) return sockaddrProblem(peer, FAMILY_OF_FORMAT.get(addressFormat));
  return peer.length === own.length ? "" : `a name is ${own.length} bytes in this provider's address format (${addressFormat}), got ${peer.length}`;
}

function sockaddrProblem(peer: Uint8Array, formatFamily: number | undefined): string {
  if (peer.length < 2) return `a socket address starts with its 2-byte family, got ${peer.length} bytes`;
  const family = peer[0]! | (peer[1]! << 8);
  const known = SOCKADDR_SIZES.get(family);
  if (known === undefined || (formatFamily !== undefined && family !== formatFamily)) {
    const wanted = formatFamily === undefined ? [...SOCKADDR_SIZES.values()].map(([name]) => name).join(", ") : SOCKADDR_SIZES.get(formatFamily)![0];
    return `address family ${family} is not ${wanted}`;
  }
  const [name, size] = known;
  return peer.length === size ? "" : `an ${name} socket address is ${size} bytes, got ${peer.length}`;
}

function stringNameProblem(peer: Uint8Array): string {
  const nul = peer.indexOf(0);
  if (nul < 0) return `a string name ends with a NUL byte; these ${peer.length} bytes have none`;
  if (nul !== peer.length - 1) return `a string name ends at its first NUL byte, here byte ${nul} of ${peer.length}`;
  if (nul === 0 || nul > MAX_STRING_NAME) return `a string name has 1 to ${MAX_STRING_NAME} characters, got ${nul}`;
  for (let i = 0; i < nul; i++) {
    if (peer[i]! < 0x20 || peer[i]! > 0x7e) return `a string name is printable ASCII; byte ${i} is 0x${peer[i]!.toString(16).padStart(2, "0")}`;
  }
  return "";
}

/**
 * Throws FabricError fi_av_insert EINVAL, saying what is wrong, unless `peer` is a name in the
 * address format of `info` (the endpoint's fi_info) whose own name is `own`. Nothing is inserted.
 */
export function checkPeerName(info: number, own: Uint8Array, peer: Uint8Array): void {
  const problem = peerNameProblem(peer, own, readU32(info, L.fi_info.addr_format));
  if (problem !== "") throw new FabricError("fi_av_insert", 22, libc.strerror(22), `refused before fi_av_insert: ${problem}`);
}
