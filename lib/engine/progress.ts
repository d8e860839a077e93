// Background progress for every endpoint of this thread, on the event loop (no threads).
//
// tcp, udp and shm (offset mode) make progress only when someone reads the completion queue:
// an initiator's completions, the target's incoming data and the connection handshake all wait on
// it. So while any operation is pending anywhere in the thread, the engine polls *every* open
// endpoint (that is what lets two endpoints of one thread talk), busily with setImmediate (~1 µs
// a turn) for low latency, falling back to a 1 ms timer when nothing has completed for a while
// (a hung operation waiting for its timeout should not burn a core).
//
// Endpoints progress in the background by default ("auto"): with nothing pending, they are turned
// by an unref'd timer (it never keeps the process alive), every 1 ms after activity, backing off
// to every 8 ms while nothing happens. A target that only exposes memory thus serves its peers
// without being asked; startProgress(intervalMs) asks for more (a ref'd timer, or every event-loop
// turn with 0), and an endpoint opened with `progress: "manual"` is turned only when pending work
// or startProgress() asks for it.
//
// Every turn decides the next one from the state after the turn, every reason at once: operations
// still pending, the smallest interval asked for, and endpoints progressing automatically.
// (Deciding from the state before the turn dropped the interval whenever the turn completed the
// last pending operation, and a target that had completed operations of its own stopped
// progressing for good.)

import { AllocToolsRangeError } from "../errors.ts";

/** What the engine needs from an endpoint. */
export interface Progressable {
  /** Operations posted or waiting to be posted. */
  readonly pendingCount: number;
  /** Poll interval asked for with startProgress(), or -1 when not asked. */
  readonly progressInterval: number;
  /** Whether the endpoint progresses in the background with nothing pending (options.progress "auto"). */
  readonly autoProgress?: boolean;
  /** One progress turn: post what waits, read completions, expire timed-out operations. Never throws. */
  pump(now: number): number;
}

/** Busy polling stops after this long without a completion (ms). */
const BUSY_WINDOW_MS = 50;
/** Timer period while operations are pending but nothing completes (ms). */
const SLOW_PERIOD_MS = 1;
/** Automatic background progress: every 1 ms after activity, backing off to every 8 ms (ms). */
const AUTO_FIRST_MS = 1;
const AUTO_MOST_MS = 8;

class ProgressEngine {
  /** An array, not a Set: iterating it by index allocates nothing (synchronous waits pump it per spin). */
  private readonly endpoints: Progressable[] = [];
  private scheduled = false;
  /** Set while the next turn waits on a timer rather than setImmediate. */
  private timer: ReturnType<typeof setTimeout> | null = null;
  private lastActivity = 0;
  /** The automatic background period now (ms): doubles while nothing completes, back to 1 on activity. */
  private autoPeriod = AUTO_FIRST_MS;
  private readonly tick = (): void => this.run();

  add(ep: Progressable): void {
    if (this.endpoints.includes(ep)) return;
    this.endpoints.push(ep);
    if (ep.autoProgress === true && !this.scheduled) this.schedule(performance.now());
  }

  remove(ep: Progressable): void {
    const i = this.endpoints.indexOf(ep);
    if (i >= 0) this.endpoints.splice(i, 1);
  }

  /** An operation was posted or progress was asked for: make sure a turn is coming soon. */
  wake(): void {
    this.lastActivity = performance.now();
    this.autoPeriod = AUTO_FIRST_MS;
    if (this.timer !== null) {
      // A slow turn is booked: bring it forward.
      clearTimeout(this.timer);
      this.timer = null;
      this.scheduled = false;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.tick);
  }

  /**
   * One turn of every endpoint of this thread, now, on the calling thread: what a synchronous
   * wait runs, since the peer it waits for may be another endpoint of this thread. Returns the
   * number of completions read.
   */
  pumpAll(now: number): number {
    const endpoints = this.endpoints;
    let completed = 0;
    for (let i = 0; i < endpoints.length; i++) completed += endpoints[i]!.pump(now);
    if (completed > 0) this.lastActivity = now;
    return completed;
  }

  private run(): void {
    this.scheduled = false;
    this.timer = null;
    const now = performance.now();
    let pending = 0;
    for (const ep of this.endpoints) pending += ep.pendingCount;
    let completed = 0;
    for (const ep of this.endpoints) {
      // With something pending anywhere, every endpoint turns (its peer may be here); otherwise
      // those that asked for background progress, or progress automatically.
      if (pending > 0 || ep.progressInterval >= 0 || ep.autoProgress === true) completed += ep.pump(now);
    }
    if (completed > 0) {
      this.lastActivity = now;
      this.autoPeriod = AUTO_FIRST_MS;
    } else {
      this.autoPeriod = Math.min(this.autoPeriod * 2, AUTO_MOST_MS);
    }
    this.schedule(now);
  }

  /** Books the next turn from the state after this one: pending operations, intervals, automatic progress. */
  private schedule(now: number): void {
    let pending = 0;
    let interval = -1;
    let auto = false;
    for (const ep of this.endpoints) {
      pending += ep.pendingCount;
      const i = ep.progressInterval;
      if (i >= 0 && (interval < 0 || i < interval)) interval = i;
      if (ep.autoProgress === true) auto = true;
    }
    if (pending > 0) {
      const busy = now - this.lastActivity < BUSY_WINDOW_MS;
      if (busy || interval === 0) this.immediate();
      else this.later(interval > 0 ? Math.min(interval, SLOW_PERIOD_MS) : SLOW_PERIOD_MS, true);
    } else if (interval === 0) {
      this.immediate();
    } else if (interval > 0) {
      this.later(auto ? Math.min(interval, this.autoPeriod) : interval, true);
    } else if (auto) {
      this.later(this.autoPeriod, false);
    }
  }

  private immediate(): void {
    this.scheduled = true;
    setImmediate(this.tick);
  }

  /** A timer turn; one that does not keep the process alive when `keepAlive` is false. */
  private later(ms: number, keepAlive: boolean): void {
    this.scheduled = true;
    const timer = setTimeout(this.tick, ms);
    if (!keepAlive) timer.unref();
    this.timer = timer;
  }
}

/**
 * A polling interval (`startProgress(intervalMs)`, `MpiJob.barrierAsync(intervalMs)`), checked:
 * milliseconds between turns, a finite number ≥ 0 (0: every event-loop turn). Throws
 * AllocToolsRangeError otherwise.
 */
export function checkProgressInterval(intervalMs: number): number {
  if (!Number.isFinite(intervalMs) || intervalMs < 0) throw new AllocToolsRangeError(`intervalMs must be a non-negative number, got ${intervalMs}`);
  return intervalMs;
}

/** The one engine of this thread (endpoints of one thread share its event loop anyway). */
export const progressEngine = new ProgressEngine();
