// Background progress for every Endpoint of this process, on the event loop (no threads).
//
// tcp, udp and shm (offset mode) make progress only when someone reads the completion queue:
// an initiator's completions, the target's incoming data and the connection handshake all wait on
// it. So while any operation is pending anywhere in the process, the engine polls *every* open
// endpoint (that is what lets two endpoints of one process talk), busily with setImmediate (~1 µs
// a turn) for low latency, falling back to a 1 ms timer when nothing has completed for a while
// (a hung operation waiting for its timeout should not burn a core). With nothing pending, only
// endpoints that asked for it with startProgress() (a target that just exposes memory) are polled,
// every `intervalMs`.

/** What the engine needs from an endpoint. */
export interface Progressable {
  /** Operations posted or waiting to be posted. */
  readonly pendingCount: number;
  /** Poll interval asked for with startProgress(), or -1 when not asked. */
  readonly progressInterval: number;
  /** One progress turn: post what waits, read completions, expire timed-out operations. Never throws. */
  pump(now: number): number;
}

/** Busy polling stops after this long without a completion (ms). */
const BUSY_WINDOW_MS = 50;

class ProgressEngine {
  private readonly endpoints = new Set<Progressable>();
  private scheduled = false;
  /** Set while the next turn waits on a timer rather than setImmediate. */
  private timer: ReturnType<typeof setTimeout> | null = null;
  private lastActivity = 0;
  private readonly tick = (): void => this.run();

  add(ep: Progressable): void {
    this.endpoints.add(ep);
  }

  remove(ep: Progressable): void {
    this.endpoints.delete(ep);
  }

  /** An operation was posted or progress was asked for: make sure a turn is coming. */
  wake(): void {
    this.lastActivity = performance.now();
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

  private run(): void {
    this.scheduled = false;
    this.timer = null;
    const now = performance.now();
    let pending = 0;
    for (const ep of this.endpoints) pending += ep.pendingCount;
    let interval = -1;
    if (pending > 0) {
      let completed = 0;
      for (const ep of this.endpoints) completed += ep.pump(now);
      if (completed > 0) this.lastActivity = now;
      pending = 0;
      for (const ep of this.endpoints) pending += ep.pendingCount;
      // The last operation just completed: endpoints that asked for progress keep getting it.
      if (pending === 0) for (const ep of this.endpoints) if (ep.progressInterval >= 0 && (interval < 0 || ep.progressInterval < interval)) interval = ep.progressInterval;
    } else {
      for (const ep of this.endpoints) {
        const i = ep.progressInterval;
        if (i < 0) continue;
        if (ep.pump(now) > 0) this.lastActivity = now;
        if (interval < 0 || i < interval) interval = i;
      }
    }
    if (pending > 0) {
      this.scheduled = true;
      if (now - this.lastActivity < BUSY_WINDOW_MS) setImmediate(this.tick);
      else this.timer = setTimeout(this.tick, 1);
    } else if (interval >= 0) {
      this.scheduled = true;
      if (interval === 0) setImmediate(this.tick);
      else this.timer = setTimeout(this.tick, interval);
    }
  }
}

/** The one engine of this process (endpoints of one process share the event loop anyway). */
export const progressEngine = new ProgressEngine();
