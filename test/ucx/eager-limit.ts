// UCX's eager limit for tagged sends, as ucx_info reports it for a context like UcxProvider's (tag,
// RMA and atomics features) on the given transports: the largest message sent eagerly; one byte
// more goes by rendezvous. ucx_info prints the switch as `tag_send: 0..<egr/short>..N..<rndv>..(inf)`,
// N being the smallest rendezvous size (src/ucp/core/ucp_ep.c, ucp_ep_config_print_proto).
import { spawnSync } from "bun";

/**
 * The eager limit of ucp_tag_send_nbx between two workers on `transports` (and `netDevices`), in
 * one process ("self") or between processes of this host ("intra").
 */
export function eagerLimit(transports: string, netDevices: string | undefined, placement: "self" | "intra"): number {
  const env: Record<string, string> = { ...process.env, UCX_TLS: transports } as Record<string, string>;
  if (netDevices !== undefined) env.UCX_NET_DEVICES = netDevices;
  else delete env.UCX_NET_DEVICES;
  const run = spawnSync(["ucx_info", "-u", "tra", "-e", "-P", placement], { env, stdout: "pipe", stderr: "pipe" });
  const text = run.stdout.toString();
  const line = /^#\s+tag_send: (.*)$/m.exec(text)?.[1];
  const rendezvous = line === undefined ? undefined : /\.\.(\d+)\.\.<rndv>/.exec(line)?.[1];
  if (rendezvous === undefined) throw new Error(`ucx_info -u tra -e (UCX_TLS=${transports}) printed no rendezvous threshold: ${text}${run.stderr.toString()}`);
  return Number(rendezvous) - 1;
}
