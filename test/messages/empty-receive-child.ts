// receive() of a 0-byte message, in a child process (it crashed the process on sockets):
// `bun empty-receive-child.ts <tcp|shm|udp|sockets>`. Prints one JSON line: what each receive got.
import { ANY_SOURCE } from "../../lib/index.ts";
import { Group, SHM, SOCKETS, TCP, UDP } from "./message-pair.ts";

const c = { tcp: TCP, shm: SHM, udp: UDP, sockets: SOCKETS }[process.argv[2] ?? "tcp"]!;
const group = new Group(c, 2);
const a = group.endpoint(0);
const b = group.endpoint(1);
const source = group.pool(0).getRegion(1);
const got: { length: number; tag: number; viewLength: number; fromPool: boolean }[] = [];
for (const late of [false, true]) {
  const sent = a.send(source, 0, group.peer(0, 1), 3);
  if (late) await Bun.sleep(20);
  const message = await b.receive(ANY_SOURCE, 3);
  await sent;
  got.push({ length: message.length, tag: message.tag, viewLength: message.view.length, fromPool: group.pool(1).indexOf(message.region) >= 0 });
  message.release();
}
group.pool(0).releaseRegion(source);
group.close();
console.log(JSON.stringify(got));
