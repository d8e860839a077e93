// The library initiator of the atomics bench, a process of its own (as the C initiator is), against
// a target process started by bench/suites/atomics.ts:
//   bun bench/atomics/initiator.ts fabric <provider> --name HEX --address A --key K [--node N] \
//       --forms fetchAddSync,... --iterations I --warmup W
//   bun bench/atomics/initiator.ts ucx <UCX_TLS> <UCX_NET_DEVICES or -> --name HEX --address A --rkey HEX \
//       --forms ... --iterations I --warmup W
// One JSON line per form (bench/atomics/forms.ts); {"error"} and exit 1 on failure.
import { Endpoint, LibfabricProvider, RemoteRegion, UcxEndpoint, UcxProvider } from "../../lib/index.ts";
import { measureAll, parseForms, type Form } from "./forms.ts";

const argv = process.argv.slice(2);
const option = (name: string): string | undefined => {
  const i = argv.indexOf(`--${name}`);
  return i < 0 ? undefined : argv[i + 1];
};
const required = (name: string): string => {
  const value = option(name);
  if (value === undefined) throw new Error(`--${name} is required`);
  return value;
};
const fromHex = (hex: string) => new Uint8Array(Buffer.from(hex, "hex"));
const WORD_BYTES = 8;

function overLibfabric(providerName: string, forms: Form[], iterations: number, warmup: number): void {
  const node = option("node");
  const provider = LibfabricProvider.open({ provider: providerName, ...(node ? { node } : {}) });
  const endpoint = new Endpoint(provider, { timeoutMs: 30_000 });
  try {
    const peer = endpoint.insert(fromHex(required("name")));
    const word = new RemoteRegion(BigInt(required("address")), BigInt(required("key")), WORD_BYTES);
    measureAll(endpoint, forms, peer, word, iterations, warmup);
  } finally {
    endpoint.close();
    provider.close();
  }
}

function overUcx(transports: string, netDevices: string, forms: Form[], iterations: number, warmup: number): void {
  const provider = UcxProvider.open({ transports, ...(netDevices !== "-" ? { netDevices } : {}) });
  const endpoint = new UcxEndpoint(provider, { timeoutMs: 30_000 });
  try {
    const peer = endpoint.insert(fromHex(required("name")));
    const word = new RemoteRegion(BigInt(required("address")), 0n, WORD_BYTES, fromHex(required("rkey")));
    measureAll(endpoint, forms, peer, word, iterations, warmup);
  } finally {
    endpoint.close();
    provider.close();
  }
}

try {
  const [transport, name] = argv;
  const forms = parseForms(option("forms") ?? "fetchAddSync");
  const iterations = Number(option("iterations") ?? 1000);
  const warmup = Number(option("warmup") ?? 100);
  if (transport === "fabric") overLibfabric(name!, forms, iterations, warmup);
  else if (transport === "ucx") overUcx(name!, argv[2]!, forms, iterations, warmup);
  else throw new Error(`transport ${transport}: fabric or ucx`);
} catch (e) {
  console.log(JSON.stringify({ error: (e as Error).message }));
  process.exit(1);
}
