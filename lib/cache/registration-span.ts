// Which bytes of a large buffer a registration covers. A buffer above wholeBufferBytes is not
// registered whole: a view registers the pages it touches, clipped to the buffer, and a wider view
// later replaces that registration with one that covers both, at least twice as long (a buffer
// walked through in order then costs log n registrations, not n).
import * as libc from "../../ffi/libc.ts";

/** The span computed last (fields, not an array: a miss allocates nothing for it). */
export class RegistrationSpan {
  start = 0;
  end = 0;
  /** Address of the buffer's first byte and its length, for the page rounding below. */
  private address = 0;
  private total = 0;

  /**
   * The span for a view of `length` bytes at `offset` of a buffer of `total` bytes at `address`:
   * the view's pages, joined with the registration `[oldStart, oldEnd)` it replaces (none when
   * empty) and at least doubled. Into `start` and `end`.
   */
  compute(address: number, total: number, offset: number, length: number, oldStart: number, oldEnd: number): void {
    this.address = address;
    this.total = total;
    let start = this.pageDown(offset);
    let end = this.pageUp(offset + length);
    if (oldEnd > oldStart) {
      start = Math.min(start, oldStart);
      end = Math.max(end, oldEnd);
      const want = 2 * (oldEnd - oldStart);
      if (end - start < want) {
        if (offset >= oldStart) end = this.pageUp(start + want);
        else start = this.pageDown(end - want);
      }
    }
    this.start = start;
    this.end = end;
  }

  /** The buffer offset of the page boundary at or below `at`, not below the buffer's start. */
  private pageDown(at: number): number {
    const page = libc.pageSize;
    return Math.max(0, Math.floor((this.address + at) / page) * page - this.address);
  }

  /** The buffer offset of the page boundary at or above `at`, not past the buffer's end. */
  private pageUp(at: number): number {
    const page = libc.pageSize;
    return Math.min(this.total, Math.ceil((this.address + at) / page) * page - this.address);
  }
}
