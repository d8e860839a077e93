// A bound on a blocking call made while the process exits: MPI_Finalize from the exit hook of
// ffi/mpi.ts waits for every rank, and a rank that left early would wait for ever. The timer and
// its SIGALRM handler are C (exit-watchdog.c, compiled by bun:ffi's cc at first use): the main
// thread is blocked in the call, so no JavaScript could run. When cc cannot build it, a bare
// timer with SIGALRM's default action bounds the call just the same, and the message is written
// before the call instead of when the bound is reached.
import { cc, dlopen, FFIType } from "bun:ffi";
import { writeSync } from "node:fs";

const SIGALRM = 14;
const ITIMER_REAL = 0;

let compiled: ReturnType<typeof compile> | null | undefined;

function compile() {
  return cc({
    source: `${import.meta.dir}/exit-watchdog.c`,
    symbols: {
      alloctools_watchdog_arm: { args: [FFIType.ptr, FFIType.u64, FFIType.u32], returns: FFIType.i32 },
      alloctools_watchdog_disarm: { args: [], returns: FFIType.void },
    },
  }).symbols;
}

/** The C watchdog, or null when bun:ffi's cc cannot build it here. */
function watchdog(): ReturnType<typeof compile> | null {
  if (compiled === undefined) {
    try {
      compiled = compile();
    } catch {
      compiled = null;
    }
  }
  return compiled;
}

/**
 * Runs `call` with a bound of `milliseconds` (0: no bound): past it, `message` goes to stderr and
 * SIGALRM ends the process (its default action; a handler of SIGALRM is replaced meanwhile). For
 * use while the process exits, when nothing else is left to do.
 */
export function boundedAtExit<T>(milliseconds: number, message: string, call: () => T): T {
  if (milliseconds <= 0) return call();
  const text = Buffer.from(message.endsWith("\n") ? message : `${message}\n`);
  const timer = watchdog();
  if (timer === null) return boundedWithoutCompiler(milliseconds, message, call);
  timer.alloctools_watchdog_arm(text, text.length, Math.min(milliseconds, 0xffff_ffff));
  try {
    return call();
  } finally {
    timer.alloctools_watchdog_disarm();
  }
}

/**
 * @internal boundedAtExit where bun:ffi's cc cannot build the handler: setitimer with SIGALRM's
 * default action; the message is said before the call, as what happens if the process ends so.
 */
export function boundedWithoutCompiler<T>(milliseconds: number, message: string, call: () => T): T {
  const text = Buffer.from(message.endsWith("\n") ? message : `${message}\n`);
  const libc = dlopen("libc.so.6", {
    // int setitimer(int which, const struct itimerval *new, struct itimerval *old)
    setitimer: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
    // sighandler_t signal(int signum, sighandler_t handler)
    signal: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.ptr },
  }).symbols;
  const timer = new BigInt64Array([0n, 0n, BigInt(Math.floor(milliseconds / 1000)), BigInt((milliseconds % 1000) * 1000)]);
  try {
    writeSync(2, Buffer.concat([Buffer.from("(if this process ends with SIGALRM:) "), text]));
  } catch { /* stderr closed */ }
  libc.signal(SIGALRM, null);
  libc.setitimer(ITIMER_REAL, timer, null);
  try {
    return call();
  } finally {
    libc.setitimer(ITIMER_REAL, new BigInt64Array(4), null);
  }
}
