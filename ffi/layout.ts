// Struct layouts and constants of libfabric's ABI (x86-64 / LP64), declared once.
// Offsets were taken with offsetof against the libfabric 1.17 headers; test/ffi/layout.test.ts
// compiles the same table against the installed headers and fails on any drift.

/** One C struct: its C name, its size where we allocate it, and the byte offset of each field we use. */
export interface StructLayout {
  readonly cName: string;
  readonly size?: number;
  readonly fields: Readonly<Record<string, number>>;
}

function struct<const F extends Record<string, number>, const S extends number | undefined = undefined>(
  cName: string, fields: F, size?: S,
) {
  return { cName, fields, size: size as S } as const;
}

export const layout = {
  fid: struct("struct fid", { fclass: 0, context: 8, ops: 16 }, 24),
  fi_ops: struct("struct fi_ops", { close: 8, bind: 16, control: 24, ops_open: 32 }),
  fid_fabric: struct("struct fid_fabric", { ops: 24 }),
  fi_ops_fabric: struct("struct fi_ops_fabric", { domain: 8 }),
  fid_domain: struct("struct fid_domain", { ops: 24, mr: 32 }),
  fi_ops_domain: struct("struct fi_ops_domain", { av_open: 8, cq_open: 16, endpoint: 24, cntr_open: 40 }),
  fi_ops_mr: struct("struct fi_ops_mr", { reg: 8, regv: 16, regattr: 24 }),
  fid_mr: struct("struct fid_mr", { mem_desc: 24, key: 32 }),
  fid_ep: struct("struct fid_ep", { ops: 24, cm: 32, msg: 40, rma: 48, tagged: 56, atomic: 64 }),
  fi_ops_ep: struct("struct fi_ops_ep", { cancel: 8 }),
  fi_ops_cm: struct("struct fi_ops_cm", { setname: 8, getname: 16 }),
  fi_ops_rma: struct("struct fi_ops_rma", { read: 8, readv: 16, readmsg: 24, write: 32, writev: 40, writemsg: 48, inject: 56 }),
  fi_ops_tagged: struct("struct fi_ops_tagged", { recv: 8, recvmsg: 24, send: 32, sendmsg: 48, inject: 56 }),
  fi_msg_tagged: struct("struct fi_msg_tagged", { msg_iov: 0, desc: 8, iov_count: 16, addr: 24, tag: 32, ignore: 40, context: 48, data: 56 }, 64),
  fi_ops_atomic: struct("struct fi_ops_atomic", { write: 8, readwrite: 40, compwrite: 64, writevalid: 88, readwritevalid: 96, compwritevalid: 104 }),
  fid_cq: struct("struct fid_cq", { ops: 24 }),
  fi_ops_cq: struct("struct fi_ops_cq", { read: 8, readfrom: 16, readerr: 24, sread: 32, strerror: 56 }),
  fid_av: struct("struct fid_av", { ops: 24 }),
  fi_ops_av: struct("struct fi_ops_av", { insert: 8, lookup: 40, straddr: 48 }),
  fi_info: struct("struct fi_info", {
    next: 0, caps: 8, mode: 16, addr_format: 24, src_addrlen: 32, dest_addrlen: 40, src_addr: 48,
    dest_addr: 56, tx_attr: 72, rx_attr: 80, ep_attr: 88, domain_attr: 96, fabric_attr: 104,
  }, 120),
  fi_tx_attr: struct("struct fi_tx_attr", { caps: 0, mode: 8, op_flags: 16, msg_order: 24, inject_size: 40, size: 48 }),
  fi_rx_attr: struct("struct fi_rx_attr", { caps: 0, mode: 8, op_flags: 16, size: 48 }),
  fi_ep_attr: struct("struct fi_ep_attr", { type: 0, max_msg_size: 16 }),
  fi_domain_attr: struct("struct fi_domain_attr", {
    domain: 0, name: 8, threading: 16, control_progress: 20, data_progress: 24, resource_mgmt: 28,
    av_type: 32, mr_mode: 36, mr_key_size: 40, cq_data_size: 48, cq_cnt: 56, ep_cnt: 64, caps: 136, mode: 144, mr_cnt: 176,
  }),
  fi_fabric_attr: struct("struct fi_fabric_attr", { fabric: 0, name: 8, prov_name: 16, prov_version: 24, api_version: 28 }),
  fi_cq_attr: struct("struct fi_cq_attr", { size: 0, flags: 8, format: 16, wait_obj: 20, signaling_vector: 24, wait_cond: 28, wait_set: 32 }, 40),
  fi_av_attr: struct("struct fi_av_attr", { type: 0, rx_ctx_bits: 4, count: 8, ep_per_node: 16, name: 24, map_addr: 32, flags: 40 }, 48),
  fi_mr_attr: struct("struct fi_mr_attr", {
    mr_iov: 0, iov_count: 8, access: 16, offset: 24, requested_key: 32, context: 40, auth_key_size: 48,
    auth_key: 56, iface: 64, device: 72,
  }),
  fi_cq_data_entry: struct("struct fi_cq_data_entry", { op_context: 0, flags: 8, len: 16, buf: 24, data: 32 }, 40),
  fi_cq_tagged_entry: struct("struct fi_cq_tagged_entry", { op_context: 0, flags: 8, len: 16, buf: 24, data: 32, tag: 40 }, 48),
  fi_context: struct("struct fi_context", { internal: 0 }, 32),
  fi_cq_err_entry: struct("struct fi_cq_err_entry", {
    op_context: 0, flags: 8, len: 16, buf: 24, data: 32, tag: 40, olen: 48, err: 56, prov_errno: 60,
    err_data: 64, err_data_size: 72,
  }, 80),
} as const satisfies Record<string, StructLayout>;

type FieldsOf<T> = { readonly [K in keyof T]: T[K] extends { fields: infer F } ? F : never };

/** Shorthand: `L.fid_mr.key` is the offset of `key` in `struct fid_mr`. */
export const L = Object.fromEntries(
  Object.entries(layout).map(([name, s]) => [name, s.fields]),
) as unknown as FieldsOf<typeof layout>;

/** FI_VERSION(major, minor). */
export const fiVersion = (major: number, minor: number): number => (major << 16) | minor;

/** The API version we ask for, and the library versions whose layouts match the table above. */
export const FI_API_VERSION = fiVersion(1, 17);
export const FI_MIN_LIBRARY_VERSION = fiVersion(1, 11);
export const FI_MAX_LIBRARY_MAJOR = 2;

/** Constants from rdma/fabric.h, fi_domain.h, fi_endpoint.h, fi_eq.h, fi_errno.h (libfabric's names without `FI_`). */
export const FI = {
  // access flags (u64, all below 2^32): what a registration or operation may do
  /** FI_READ: the buffer may receive the data of this side's RMA reads. */
  READ: 0x100,
  /** FI_WRITE: the buffer may be the source of this side's RMA writes. */
  WRITE: 0x200,
  /** FI_RECV: the buffer may receive messages. */
  RECV: 0x400,
  /** FI_SEND: the buffer may be the source of messages. */
  SEND: 0x800,
  /** FI_TRANSMIT (= FI_SEND): bind a queue for transmit completions. */
  TRANSMIT: 0x800,
  /** FI_REMOTE_READ: peers may read the buffer with RMA. */
  REMOTE_READ: 0x1000,
  /** FI_REMOTE_WRITE: peers may write the buffer with RMA. */
  REMOTE_WRITE: 0x2000,
  // capabilities (bit 47 and up need BigInt)
  /** FI_MSG: two-sided messages. */
  MSG: 0x2n,
  /** FI_RMA: one-sided reads and writes. */
  RMA: 0x4n,
  /** FI_TAGGED: tagged messages. */
  TAGGED: 0x8n,
  /** FI_ATOMIC: remote atomic operations. */
  ATOMIC: 0x10n,
  /** FI_SOURCE (a capability): receives report their source address. */
  SOURCE_CAP: 1n << 57n,
  /** FI_DIRECTED_RECV: a receive may name the source it matches. */
  DIRECTED_RECV: 1n << 59n,
  /** FI_HMEM: device (GPU) memory. */
  HMEM: 1n << 47n,
  // getinfo flags
  /** FI_SOURCE: node/service name the local address. */
  SOURCE: 1n << 57n,
  // op flags
  /** FI_DELIVERY_COMPLETE: complete once the data is in the target's memory. */
  DELIVERY_COMPLETE: 1n << 28n,
  /** FI_TRANSMIT_COMPLETE: complete once the data left this side. */
  TRANSMIT_COMPLETE: 1n << 27n,
  /** FI_COMPLETION: generate a completion entry. */
  COMPLETION: 1n << 24n,
  /** FI_PEEK: a receive that only looks for a matching message (its length, tag, source). */
  PEEK: 1n << 19n,
  /** FI_CLAIM: a peeked message is kept for (then received by) a receive with the same context. */
  CLAIM: 1n << 59n,
  /** FI_DISCARD: with FI_CLAIM, drop the claimed message. */
  DISCARD: 1n << 58n,
  // mode bits
  /** FI_CONTEXT: operations carry a struct fi_context the provider may use. */
  CONTEXT: 1n << 59n,
  /** FI_CONTEXT2: the same with struct fi_context2. */
  CONTEXT2: 1n << 52n,
  // mr_mode bits
  /** FI_MR_LOCAL: local buffers must be registered too (pass their descriptor). */
  MR_LOCAL: 0x4,
  /** FI_MR_RAW: keys wider than 64 bits (not supported here). */
  MR_RAW: 0x8,
  /** FI_MR_VIRT_ADDR: peers address by virtual address, not by offset. */
  MR_VIRT_ADDR: 0x10,
  /** FI_MR_ALLOCATED: only mapped memory may be registered. */
  MR_ALLOCATED: 0x20,
  /** FI_MR_PROV_KEY: the provider picks the keys. */
  MR_PROV_KEY: 0x40,
  /** FI_MR_MMU_NOTIFY: the application says when mappings change. */
  MR_MMU_NOTIFY: 0x80,
  /** FI_MR_RMA_EVENT: registrations can count RMA events. */
  MR_RMA_EVENT: 0x100,
  /** FI_MR_ENDPOINT: registrations are bound to an endpoint and enabled. */
  MR_ENDPOINT: 0x200,
  /** FI_MR_HMEM: device memory must be registered. */
  MR_HMEM: 0x400,
  // enums
  /** FI_EP_MSG: connected endpoints. */
  EP_MSG: 1,
  /** FI_EP_DGRAM: unreliable datagrams. */
  EP_DGRAM: 2,
  /** FI_EP_RDM: reliable datagrams (what Endpoint opens). */
  EP_RDM: 3,
  /** FI_AV_MAP: address vector entries are provider addresses. */
  AV_MAP: 1,
  /** FI_AV_TABLE: address vector entries are indices. */
  AV_TABLE: 2,
  /** FI_CQ_FORMAT_DATA: completion entries with flags, length, buffer and data. */
  CQ_FORMAT_DATA: 3,
  /** FI_CQ_FORMAT_TAGGED: FI_CQ_FORMAT_DATA and the message's tag. */
  CQ_FORMAT_TAGGED: 4,
  /** FI_WAIT_NONE: no wait object (completions are polled). */
  WAIT_NONE: 0,
  /** FI_PROGRESS_AUTO: the provider progresses on its own. */
  PROGRESS_AUTO: 1,
  /** FI_PROGRESS_MANUAL: progress happens only inside calls (poll the queue). */
  PROGRESS_MANUAL: 2,
  /** FI_THREAD_SAFE: any call from any thread. */
  THREAD_SAFE: 1,
  /** FI_THREAD_FID: one thread per object at a time. */
  THREAD_FID: 2,
  /** FI_THREAD_DOMAIN: one thread per domain at a time. */
  THREAD_DOMAIN: 3,
  /** FI_THREAD_COMPLETION: one thread per completion queue. */
  THREAD_COMPLETION: 4,
  /** FI_THREAD_ENDPOINT: one thread per endpoint. */
  THREAD_ENDPOINT: 5,
  /** FI_ENABLE: the fi_control command that enables an object. */
  ENABLE: 6,
  /** FI_TYPE_INFO: fi_tostr of a struct fi_info. */
  TYPE_INFO: 0,
  /** FI_UINT64 (enum fi_datatype): an unsigned 64-bit word, what remote atomics work on. */
  UINT64: 7,
  /** FI_SUM (enum fi_op): add (fi_fetch_atomic). */
  SUM: 2,
  /** FI_CSWAP (enum fi_op): compare and swap where equal (fi_compare_atomic). */
  CSWAP: 12,
  // errors (positive)
  /** FI_EAGAIN: try again (a full queue, no completion yet). */
  EAGAIN: 11,
  /** FI_EAVAIL: an error completion is waiting (read it with fi_cq_readerr). */
  EAVAIL: 259,
  /** FI_ENOKEY: a requested key is in use or not valid. */
  ENOKEY: 266,
  /** FI_ETRUNC: the data was truncated. */
  ETRUNC: 265,
  /** FI_ENOMSG: no message matched (a peek). */
  ENOMSG: 42,
  /** FI_ENOSYS: not implemented by the provider. */
  ENOSYS: 38,
  /** FI_ENODATA: nothing matches (fi_getinfo found no provider). */
  ENODATA: 61,
  /** FI_ECANCELED: the operation was canceled. */
  ECANCELED: 125,
  /** FI_EACCES: access denied (a bad key or access flags). */
  EACCES: 13,
  /** FI_ETIMEDOUT: timed out. */
  ETIMEDOUT: 110,
} as const;

/** The enum values above, by their C names: test/ffi/layout.test.ts checks them against the headers. */
export const ENUM_VALUES: Readonly<Record<string, number>> = { FI_UINT64: FI.UINT64, FI_SUM: FI.SUM, FI_CSWAP: FI.CSWAP };

/** Names of the mr_mode bits, for printing. */
export const MR_MODE_NAMES: ReadonlyArray<readonly [number, string]> = [
  [0x1, "FI_MR_UNSPEC/BASIC"], [0x2, "FI_MR_SCALABLE"], [FI.MR_LOCAL, "FI_MR_LOCAL"], [FI.MR_RAW, "FI_MR_RAW"],
  [FI.MR_VIRT_ADDR, "FI_MR_VIRT_ADDR"], [FI.MR_ALLOCATED, "FI_MR_ALLOCATED"], [FI.MR_PROV_KEY, "FI_MR_PROV_KEY"],
  [FI.MR_MMU_NOTIFY, "FI_MR_MMU_NOTIFY"], [FI.MR_RMA_EVENT, "FI_MR_RMA_EVENT"], [FI.MR_ENDPOINT, "FI_MR_ENDPOINT"],
  [FI.MR_HMEM, "FI_MR_HMEM"],
];
