// The rows of the messaging bench, by case: the suite (bench/suites/messaging.ts) records every one
// of them, a value or a note saying why there is none, and test/bench/messaging.test.ts checks
// that all are there. One place for the names, so the two cannot drift apart.

/** Messages in flight in the window tests (osu_bw's window, the issue's). */
export const WINDOW = 64;
/** The latency and message-rate message size. */
export const SMALL = 64;
export const MiB = 1 << 20;
/** The bandwidth message sizes. */
export const BANDWIDTH_SIZES = [MiB, 4 * MiB] as const;

export type Transport = "libfabric" | "ucx" | "mpi";
export type Form = "sync" | "promise";

/** One transport configuration and the C anchors it is measured against. */
export interface MessagingCase {
  readonly label: string;
  readonly transport: Transport;
  /** libfabric provider name or UCX_TLS. */
  readonly what: string;
  /** Latency anchors, each a C program measured in the same run. */
  readonly latencyAnchors: readonly string[];
  /** The bandwidth and message-rate anchors. */
  readonly windowAnchors: readonly string[];
  /** The latency target for sendSync/recvSync, or null where it sets none. */
  readonly latencyTarget: number | null;
}

export const FI_PINGPONG = "fi_pingpong -e rdm -m tagged";
export const TAGGED_PAIR = "C tagged-pair";
export const TAG_LAT = "ucx_perftest tag_lat";
export const TAG_BW = "ucx_perftest tag_bw";
export const UCX_PAIR = "C ucx-tagged-pair";
export const MPI_PING_PONG = "C MPI_Send/MPI_Recv";
export const MPI_OSU_BW = "C osu_bw loop";

export const CASES: readonly MessagingCase[] = [
  { label: "libfabric tcp", transport: "libfabric", what: "tcp", latencyAnchors: [FI_PINGPONG, TAGGED_PAIR], windowAnchors: [TAGGED_PAIR], latencyTarget: 1.2 },
  { label: "libfabric shm", transport: "libfabric", what: "shm", latencyAnchors: [FI_PINGPONG, TAGGED_PAIR], windowAnchors: [TAGGED_PAIR], latencyTarget: 1.2 },
  { label: "MPI", transport: "mpi", what: "ob1", latencyAnchors: [MPI_PING_PONG], windowAnchors: [MPI_OSU_BW], latencyTarget: 1.2 },
  { label: "UCX shm", transport: "ucx", what: "posix,cma", latencyAnchors: [TAG_LAT, UCX_PAIR], windowAnchors: [UCX_PAIR, TAG_BW], latencyTarget: 1.5 },
  { label: "UCX tcp", transport: "ucx", what: "tcp", latencyAnchors: [TAG_LAT, UCX_PAIR], windowAnchors: [UCX_PAIR, TAG_BW], latencyTarget: null },
];

/** The promise forms' target, on every transport. */
export const PROMISE_TARGET = 1.6;
export const BANDWIDTH_TARGET = 0.9;
export const RATE_TARGET = 0.8;

const FORM_NAME: Record<Form, string> = { sync: "sendSync/recvSync", promise: "send/recv awaited" };
const sizeName = (bytes: number) => (bytes >= MiB ? `${bytes / MiB} MiB` : `${bytes} B`);

/** Row names of a case. */
export const row = {
  latency: (c: MessagingCase, form: Form) => `${c.label}: ${FORM_NAME[form]} ${SMALL} B half round trip`,
  latencyMean: (c: MessagingCase, form: Form) => `${c.label}: ${FORM_NAME[form]} ${SMALL} B half round trip mean`,
  anchorLatency: (c: MessagingCase, anchor: string) => `${c.label}: ${anchor} ${SMALL} B half round trip`,
  latencyRatio: (c: MessagingCase, form: Form, anchor: string) => `${c.label}: ${FORM_NAME[form]} / ${anchor}`,
  bandwidth: (c: MessagingCase, bytes: number) => `${c.label}: bandwidth ${sizeName(bytes)} window ${WINDOW}`,
  anchorBandwidth: (c: MessagingCase, anchor: string, bytes: number) => `${c.label}: ${anchor} bandwidth ${sizeName(bytes)} window ${WINDOW}`,
  bandwidthRatio: (c: MessagingCase, bytes: number, anchor: string) => `${c.label}: bandwidth ${sizeName(bytes)} / ${anchor}`,
  rate: (c: MessagingCase) => `${c.label}: message rate ${SMALL} B window ${WINDOW}`,
  anchorRate: (c: MessagingCase, anchor: string) => `${c.label}: ${anchor} message rate ${SMALL} B window ${WINDOW}`,
  rateRatio: (c: MessagingCase, anchor: string) => `${c.label}: message rate ${SMALL} B / ${anchor}`,
  cells: (c: MessagingCase) => `${c.label}: heap cells per sendSync+recvSync pair`,
};

/** Every row a case records, with its unit. */
export function caseRows(c: MessagingCase): { name: string; unit: string }[] {
  const rows: { name: string; unit: string }[] = [];
  for (const form of ["sync", "promise"] as const) rows.push({ name: row.latency(c, form), unit: "ns" }, { name: row.latencyMean(c, form), unit: "ns" });
  for (const anchor of c.latencyAnchors) rows.push({ name: row.anchorLatency(c, anchor), unit: "ns" });
  for (const form of ["sync", "promise"] as const) for (const anchor of c.latencyAnchors) rows.push({ name: row.latencyRatio(c, form, anchor), unit: "×" });
  for (const bytes of BANDWIDTH_SIZES) {
    rows.push({ name: row.bandwidth(c, bytes), unit: "MB/s" });
    for (const anchor of c.windowAnchors) rows.push({ name: row.anchorBandwidth(c, anchor, bytes), unit: "MB/s" }, { name: row.bandwidthRatio(c, bytes, anchor), unit: "×" });
  }
  rows.push({ name: row.rate(c), unit: "msg/s" });
  for (const anchor of c.windowAnchors) rows.push({ name: row.anchorRate(c, anchor), unit: "msg/s" }, { name: row.rateRatio(c, anchor), unit: "×" });
  rows.push({ name: row.cells(c), unit: "cells" });
  return rows;
}

/** Every row of the suite. */
export const allRows = (): { name: string; unit: string }[] => CASES.flatMap(caseRows);
