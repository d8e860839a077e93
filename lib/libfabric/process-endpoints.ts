// The libfabric endpoints of this process, across its threads (Workers). libfabric's shm finds a
// peer that is an endpoint of the same process by name, in a list global to the process, and then
// uses that endpoint's own mapping of its region (util_shm.c, smr_map_to_region): an initiator
// writes its commands into the target's mapping, the target its responses into the initiator's.
// One endpoint's close unmaps memory another endpoint, of any thread, may still touch. So every
// thread maps one table, in a file of its own in /dev/shm named after the process, that says for
// each endpoint of the process:
// - whether it is open (operations towards a closed one are refused);
// - how many operations of the process are aimed at it and not yet let go of (its close waits
//   for them, bounded);
// - whether it was kept: closed by its owner while an endpoint of another thread is open and could
//   still touch its memory (it had contact with the process's endpoints, or operations in
//   transport), its native objects left open, with their handles here. A kept endpoint is closed
//   when its domain closes and no endpoint of the process is open any more (nothing can progress
//   towards it then), or at the process's exit. Endpoints of one thread need none of this: a
//   close's drain turns the others of its thread.
import { existsSync, readFileSync, rmSync } from "node:fs";
import { threadId } from "node:worker_threads";
import { toArrayBuffer, type Pointer } from "bun:ffi";
import { currentThread, threadAlive, type ThreadIdentity } from "../sharing/thread-liveness.ts";
import * as libc from "../../ffi/libc.ts";

/** Entries (endpoints open or kept at once, in the whole process). */
const ENTRIES = 1024;
/**
 * 32-bit words per entry (18 used, offsets below): 128 bytes, two cache lines of its own, so that
 * threads counting operations towards their own endpoints never share a line.
 */
const ENTRY_WORDS = 32;
const TABLE_BYTES = ENTRIES * ENTRY_WORDS * 4;

/** Words of an entry. */
const STATE = 0;
const INCOMING = 1;
const GENERATION = 2;
const HASH_LOW = 3;
const HASH_HIGH = 4;
/** Set once an operation was tried between this endpoint and another of the process (either way). */
const ENTANGLED = 13;
/** The thread that opened the endpoint (worker_threads' threadId + 1), its kernel id and start time. */
const THREAD = 14;
const KERNEL_THREAD = 15;
const KERNEL_THREAD_START = 16;
/** 1 for an endpoint whose peers of this process use its own mapping (shm): only these can touch a kept one. */
const SHARES_MAPPINGS = 17;
/** Native handles of the endpoint (low, high halves): endpoint, completion queue, address vector, domain. */
const HANDLES = 5;

/** Entry states. */
const FREE = 0;
const OPEN = 1;
const CLAIMING = 2;
const KEPT = 3;

/** An endpoint of this process, as another endpoint's peer: its entry and that entry's generation then. */
export class LocalPeer {
  /** Whether an operation was tried towards it (the entries are marked entangled then). */
  tried = false;
  constructor(readonly entry: number, readonly generation: number) {}
}

/** The native objects of an endpoint. */
export interface EndpointHandles {
  readonly endpoint: number;
  readonly completionQueue: number;
  readonly addressVector: number;
  readonly domain: number;
}

/** This thread's mapping of the process's table. */
export class ProcessEndpoints {
  readonly path: string;
  private readonly words: Int32Array;

  constructor(path: string) {
    this.path = path;
    const address = libc.mapSharedFile(this.path, TABLE_BYTES);
    this.words = new Int32Array(toArrayBuffer(address as Pointer, 0, TABLE_BYTES));
  }

  /** Takes an entry for an open endpoint named `name`; -1 when the table is full (the endpoint then goes untracked). */
  claim(name: Uint8Array, handles: EndpointHandles, sharesMappings: boolean): number {
    const words = this.words;
    const [low, high] = nameHash(name);
    const thread = currentThread();
    for (let entry = 0; entry < ENTRIES; entry++) {
      const at = entry * ENTRY_WORDS;
      if (Atomics.compareExchange(words, at + STATE, FREE, CLAIMING) !== FREE) continue;
      Atomics.store(words, at + INCOMING, 0);
      Atomics.store(words, at + ENTANGLED, 0);
      Atomics.store(words, at + THREAD, threadId + 1);
      Atomics.store(words, at + KERNEL_THREAD, thread.id);
      Atomics.store(words, at + KERNEL_THREAD_START, thread.start);
      Atomics.store(words, at + SHARES_MAPPINGS, sharesMappings ? 1 : 0);
      this.writeHandles(entry, handles);
      Atomics.add(words, at + GENERATION, 1);
      Atomics.store(words, at + HASH_LOW, low);
      Atomics.store(words, at + HASH_HIGH, high);
      Atomics.store(words, at + STATE, OPEN);
      return entry;
    }
    return -1;
  }

  /** The open endpoint of this process named `name`, as a peer, or null. */
  find(name: Uint8Array): LocalPeer | null {
    const words = this.words;
    const [low, high] = nameHash(name);
    for (let entry = 0; entry < ENTRIES; entry++) {
      const at = entry * ENTRY_WORDS;
      if (Atomics.load(words, at + STATE) !== OPEN) continue;
      if (Atomics.load(words, at + HASH_LOW) !== low || Atomics.load(words, at + HASH_HIGH) !== high) continue;
      return new LocalPeer(entry, Atomics.load(words, at + GENERATION));
    }
    return null;
  }

  /** Whether `peer` is still the open endpoint it was when inserted. */
  isOpen(peer: LocalPeer): boolean {
    const at = peer.entry * ENTRY_WORDS;
    return Atomics.load(this.words, at + GENERATION) === peer.generation && Atomics.load(this.words, at + STATE) === OPEN;
  }

  /** An operation aimed at `peer` was posted (`delta` 1) or let go of (-1). */
  count(peer: LocalPeer, delta: number): void {
    const at = peer.entry * ENTRY_WORDS;
    if (Atomics.load(this.words, at + GENERATION) === peer.generation) Atomics.add(this.words, at + INCOMING, delta);
  }

  /**
   * An operation is being tried from endpoint `entry` towards `peer`: on shm even a post pushed
   * back may have left a command in the peer's queue (the first contact sends this endpoint's
   * name), so from now on each may touch the other's memory.
   */
  entangle(entry: number, peer: LocalPeer): void {
    peer.tried = true;
    if (entry >= 0) Atomics.store(this.words, entry * ENTRY_WORDS + ENTANGLED, 1);
    Atomics.store(this.words, peer.entry * ENTRY_WORDS + ENTANGLED, 1);
  }

  /** Whether `entry` was entangled with another endpoint of the process (see entangle). */
  entangled(entry: number): boolean {
    return Atomics.load(this.words, entry * ENTRY_WORDS + ENTANGLED) !== 0;
  }

  /** Operations of this process aimed at `entry` and not yet let go of. */
  incoming(entry: number): number {
    return Atomics.load(this.words, entry * ENTRY_WORDS + INCOMING);
  }

  /** The endpoint of `entry` closed for good: its entry is free. */
  release(entry: number): void {
    Atomics.store(this.words, entry * ENTRY_WORDS + STATE, FREE);
  }

  /** The endpoint of `entry` closed, but its native objects stay open for now (see the file header). */
  keep(entry: number): void {
    Atomics.store(this.words, entry * ENTRY_WORDS + STATE, KEPT);
  }

  /** Whether an endpoint of the process that could progress towards a kept one (an shm endpoint) is open. */
  anyOpen(): boolean {
    for (let entry = 0; entry < ENTRIES; entry++) if (this.openSharingMappings(entry)) return true;
    return false;
  }

  /**
   * Whether an endpoint of another thread is open: one that may progress later, on its own, towards
   * an endpoint of this thread (this thread's own endpoints are turned by its close's drain).
   */
  openInOtherThreads(): boolean {
    const own = threadId + 1;
    for (let entry = 0; entry < ENTRIES; entry++) {
      if (this.openSharingMappings(entry) && Atomics.load(this.words, entry * ENTRY_WORDS + THREAD) !== own) return true;
    }
    return false;
  }

  private openSharingMappings(entry: number): boolean {
    const at = entry * ENTRY_WORDS;
    return Atomics.load(this.words, at + STATE) === OPEN && Atomics.load(this.words, at + SHARES_MAPPINGS) === 1;
  }

  /** Takes the kept endpoints of `domain` out of the table and returns their handles, for their domain's close. */
  takeKept(domain: number): EndpointHandles[] {
    return this.take((entry) => Atomics.load(this.words, entry * ENTRY_WORDS + STATE) === KEPT && this.handles(entry).domain === domain);
  }

  /**
   * Takes the open endpoints of `domain` whose thread has exited (a Worker terminated before it
   * closed them: nothing can progress them any more) and returns their handles, to close.
   */
  takeOrphans(domain: number): EndpointHandles[] {
    return this.take((entry) => this.openOn(entry, domain) && !threadAlive(this.kernelThread(entry)));
  }

  /** The threads (worker_threads' threadId) other than this one whose endpoints on `domain` are open. */
  openElsewhere(domain: number): number[] {
    const threads: number[] = [];
    for (let entry = 0; entry < ENTRIES; entry++) {
      if (!this.openOn(entry, domain)) continue;
      const thread = Atomics.load(this.words, entry * ENTRY_WORDS + THREAD) - 1;
      if (thread !== threadId) threads.push(thread);
    }
    return threads;
  }

  private openOn(entry: number, domain: number): boolean {
    return Atomics.load(this.words, entry * ENTRY_WORDS + STATE) === OPEN && this.handles(entry).domain === domain;
  }

  /** The entries `wanted` selects, taken (freed) one by one with a compare-and-swap; their handles. */
  private take(wanted: (entry: number) => boolean): EndpointHandles[] {
    const taken: EndpointHandles[] = [];
    for (let entry = 0; entry < ENTRIES; entry++) {
      if (!wanted(entry)) continue;
      const state = Atomics.load(this.words, entry * ENTRY_WORDS + STATE);
      if (Atomics.compareExchange(this.words, entry * ENTRY_WORDS + STATE, state, CLAIMING) !== state) continue;
      taken.push(this.handles(entry));
      Atomics.add(this.words, entry * ENTRY_WORDS + GENERATION, 1);
      Atomics.store(this.words, entry * ENTRY_WORDS + STATE, FREE);
    }
    return taken;
  }

  private writeHandles(entry: number, handles: EndpointHandles): void {
    const at = entry * ENTRY_WORDS + HANDLES;
    const values = [handles.endpoint, handles.completionQueue, handles.addressVector, handles.domain];
    for (let i = 0; i < values.length; i++) {
      this.words[at + 2 * i] = values[i]! >>> 0;
      this.words[at + 2 * i + 1] = Math.floor(values[i]! / 4294967296);
    }
  }

  private handles(entry: number): EndpointHandles {
    const at = entry * ENTRY_WORDS + HANDLES;
    const value = (i: number) => (this.words[at + 2 * i]! >>> 0) + (this.words[at + 2 * i + 1]! >>> 0) * 4294967296;
    return { endpoint: value(0), completionQueue: value(1), addressVector: value(2), domain: value(3) };
  }

  private kernelThread(entry: number): ThreadIdentity {
    return { id: Atomics.load(this.words, entry * ENTRY_WORDS + KERNEL_THREAD), start: Atomics.load(this.words, entry * ENTRY_WORDS + KERNEL_THREAD_START) };
  }

  /** Removes the table's file (the process is exiting: no thread opens an endpoint any more). */
  unlink(): void {
    rmSync(this.path, { force: true });
  }
}

let table: ProcessEndpoints | null = null;
let tablePath = "";

/** The table's file: /dev/shm, named after this process (pid and start time: no later process reuses it). */
function pathOfTable(): string {
  tablePath ||= `/dev/shm/alloctools-endpoints-${process.pid}-${processStartTime()}`;
  return tablePath;
}

/**
 * This thread's mapping of the process's table, made on first use. The main thread removes the
 * file when the process exits (a table a Worker made first is left to `alloctools doctor --clean`).
 */
export function processEndpoints(): ProcessEndpoints {
  if (table === null) {
    const made = new ProcessEndpoints(pathOfTable());
    table = made;
    if (Bun.isMainThread) process.on("exit", () => made.unlink());
  }
  return table;
}

/** The table if some thread of this process made it, else null (nothing to look at). */
export function existingProcessEndpoints(): ProcessEndpoints | null {
  if (table === null && !existsSync(pathOfTable())) return null;
  return processEndpoints();
}

/** The process's start time in clock ticks (/proc/self/stat field 22): with the pid, a name no later process reuses. */
function processStartTime(): string {
  const stat = readFileSync("/proc/self/stat", "latin1");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? "0";
}

/** Two 32-bit FNV-1a hashes of `name` (different offsets): 64 bits to tell endpoint names apart. */
function nameHash(name: Uint8Array): [number, number] {
  let low = 0x811c9dc5;
  let high = 0x050c5d1f;
  for (let i = 0; i < name.length; i++) {
    low = Math.imul(low ^ name[i]!, 0x01000193);
    high = Math.imul(high ^ name[i]!, 0x01000193);
  }
  return [low | 0, high | 0];
}
