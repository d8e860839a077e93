// The counters of one endpoint's operations (stats()): posts, retries, outcomes, bytes by kind,
// and, with options.latency, each kind's latencies from post to completion.
import { LatencyHistogram } from "./latency-histogram.ts";
import type { Operation } from "./operation.ts";
import type { RmaEndpointStats } from "./rma-endpoint.ts";

/** One shape, fields set here; the engine increments them in place. */
export class OperationCounters {
  posted = 0;
  retried = 0;
  completed = 0;
  failed = 0;
  timedOut = 0;
  bytesWritten = 0;
  bytesRead = 0;
  bytesSent = 0;
  bytesReceived = 0;
  /** Latencies by kind (options.latency), else null: nothing is timed. */
  readonly latency: LatencyHistogram | null;
  private readonly timeoutMs: number;

  constructor(latency: boolean, timeoutMs: number) {
    this.latency = latency ? new LatencyHistogram() : null;
    this.timeoutMs = timeoutMs;
  }

  /** A completed operation: its bytes by kind, and (asked for) its latency. */
  complete(op: Operation): void {
    this.completed++;
    switch (op.kind) {
      case "write": this.bytesWritten += op.length; break;
      case "read": this.bytesRead += op.length; break;
      case "send": this.bytesSent += op.length; break;
      case "recv": case "receive": this.bytesReceived += op.resultLength; break;
      default: break;
    }
    // A finite deadline is its post time plus timeoutMs; a receive() has none (it waits for a message).
    if (this.latency !== null && op.deadline !== Infinity) this.latency.record(op.kind, performance.now() - (op.deadline - this.timeoutMs));
  }

  /** A snapshot for stats(). */
  snapshot(): RmaEndpointStats {
    const counts = {
      posted: this.posted, retried: this.retried, completed: this.completed, failed: this.failed, timedOut: this.timedOut,
      bytesWritten: this.bytesWritten, bytesRead: this.bytesRead, bytesSent: this.bytesSent, bytesReceived: this.bytesReceived,
    };
    return this.latency === null ? counts : { ...counts, latency: this.latency.summary() };
  }
}
