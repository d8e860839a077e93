// The sender id of UCX tagged messages: who sent a message, in the low 32 bits of its UCX tag
// (lib/ucx/ucx-messages.ts has the whole wire format). UCX tells a receiver nothing about the sender
// but the tag, so every sender puts there a number a receiver can compute from the sender's worker
// address, which it has inserted as a peer.
//
// The function, for a C peer: FNV-1a, 32 bits, over the bytes of the worker address exactly as
// `ucp_worker_get_address` returns them (the bytes an endpoint's `name` holds):
//
//   uint32_t id = 2166136261u;                        /* 0x811c9dc5, the FNV offset basis */
//   for (size_t i = 0; i < length; i++) {
//       id ^= address[i];
//       id *= 16777619u;                              /* 0x01000193, the FNV prime, modulo 2^32 */
//   }

/** The FNV-1a offset basis (32 bits). */
const FNV_OFFSET_BASIS = 0x811c9dc5;
/** The FNV prime (32 bits). */
const FNV_PRIME = 0x01000193;

/** The 32-bit sender id of the worker whose address is `address` (FNV-1a over its bytes), unsigned. */
export function senderId(address: Uint8Array): number {
  let id = FNV_OFFSET_BASIS;
  for (let i = 0; i < address.length; i++) {
    id ^= address[i]!;
    id = Math.imul(id, FNV_PRIME);
  }
  return id >>> 0;
}

/** Which inserted peer each sender id stands for. */
export class SenderIds {
  /** Sender id → the index of the first peer inserted with an address of that id. */
  private readonly peers = new Map<number, number>();
  /** Sender id → that peer's address, to tell a second insert of one address from a collision. */
  private readonly addresses = new Map<number, Uint8Array>();

  /**
   * Why a peer with `address` cannot be told apart from one inserted before (another address
   * with the same id), or "" when it can (a new id, or the same address again).
   */
  conflict(address: Uint8Array): string {
    const id = senderId(address);
    const known = this.addresses.get(id);
    if (known === undefined || sameBytes(known, address)) return "";
    return `its sender id 0x${id.toString(16).padStart(8, "0")} (FNV-1a of its ${address.length}-byte worker address) is that of peer ${this.peers.get(id)}, ` +
      `whose address (${known.length} bytes) differs: messages from the two could not be told apart`;
  }

  /** Records peer `index` for `address`; the first peer of an address keeps its id. */
  add(address: Uint8Array, index: number): void {
    const id = senderId(address);
    if (this.peers.has(id)) return;
    this.peers.set(id, index);
    this.addresses.set(id, address.slice());
  }

  /** The peer that sender id `id` stands for, or -1 (ANY_SOURCE) for a sender never inserted. */
  peerOf(id: number): number {
    return this.peers.get(id) ?? -1;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
