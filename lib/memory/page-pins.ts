// Page pinning for the host provider, counted per page: two registrations of the same buffer pin
// its pages once, and deregistering one leaves them pinned for the other (as NIC drivers count
// get_user_pages). mlock itself does not count: one munlock unpins a page however often it was
// locked. The counts are per thread; registrations of one buffer from two Workers are not counted
// against each other.
import * as libc from "../../ffi/libc.ts";

/** Registrations holding each page, by page address. */
const holders = new Map<number, number>();

/** The whole pages that [address, address + length) touches: [start, length]. */
export function pageSpan(address: number, length: number): [number, number] {
  const page = libc.pageSize;
  const start = Math.floor(address / page) * page;
  return [start, Math.ceil((address + length) / page) * page - start];
}

/** Pins the pages of [address, address + length) for one more registration. */
export function pinPages(address: number, length: number): void {
  const [start, len] = pageSpan(address, length);
  libc.mlock(start, len); // first: a refused mlock leaves the counts alone
  const page = libc.pageSize;
  for (let pageAddress = start; pageAddress < start + len; pageAddress += page) {
    holders.set(pageAddress, (holders.get(pageAddress) ?? 0) + 1);
  }
}

/** Drops one registration's hold; pages no registration holds any more are unpinned. */
export function unpinPages(address: number, length: number): void {
  const [start, len] = pageSpan(address, length);
  const page = libc.pageSize;
  let run = -1; // start of a run of pages to munlock
  for (let pageAddress = start; pageAddress <= start + len; pageAddress += page) {
    const remaining = pageAddress < start + len ? (holders.get(pageAddress) ?? 1) - 1 : 1;
    if (remaining > 0) {
      if (pageAddress < start + len) holders.set(pageAddress, remaining);
      if (run >= 0) libc.munlock(run, pageAddress - run);
      run = -1;
    } else {
      holders.delete(pageAddress);
      if (run < 0) run = pageAddress;
    }
  }
}
