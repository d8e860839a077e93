/* A bound on a blocking call made while the process exits (MPI_Finalize waits for every rank).
 * ffi/exit-watchdog.ts compiles it with bun:ffi's cc. alloctools_watchdog_arm copies a message and
 * starts a one-shot real-time timer; if the timer fires before alloctools_watchdog_disarm, the
 * SIGALRM handler writes the message to stderr and lets SIGALRM end the process as its default
 * action does, so the launcher sees a rank killed by a signal and ends the job. The handler runs
 * on whichever thread the kernel picks and calls only async-signal-safe functions; no JavaScript
 * runs in it. No system headers: the few declarations are spelled out (TinyCC, Linux x86-64 and
 * aarch64 layouts). */
typedef void (*alloctools_handler_t)(int);
alloctools_handler_t signal(int signum, alloctools_handler_t handler);
int raise(int signum);
long write(int fd, const void *buffer, unsigned long count);
struct alloctools_timeval { long seconds; long microseconds; };
struct alloctools_itimerval { struct alloctools_timeval interval; struct alloctools_timeval value; };
int setitimer(int which, const struct alloctools_itimerval *next, struct alloctools_itimerval *previous);

#define ALLOCTOOLS_SIGALRM 14
#define ALLOCTOOLS_ITIMER_REAL 0
#define ALLOCTOOLS_MESSAGE_MAX 2048

static char message[ALLOCTOOLS_MESSAGE_MAX];
static unsigned long message_length;

static void on_alarm(int signum) {
  write(2, message, message_length);
  signal(signum, (alloctools_handler_t)0); /* SIG_DFL */
  raise(signum);
}

/* Arms the timer for `milliseconds`; returns 0, or -1 when the timer could not be set. */
int alloctools_watchdog_arm(const char *text, unsigned long length, unsigned int milliseconds) {
  struct alloctools_itimerval timer = { { 0, 0 }, { milliseconds / 1000, (milliseconds % 1000) * 1000L } };
  if (length > ALLOCTOOLS_MESSAGE_MAX) length = ALLOCTOOLS_MESSAGE_MAX;
  for (unsigned long i = 0; i < length; i++) message[i] = text[i];
  message_length = length;
  signal(ALLOCTOOLS_SIGALRM, on_alarm);
  return setitimer(ALLOCTOOLS_ITIMER_REAL, &timer, 0);
}

/* Stops the timer and gives SIGALRM its default action back. */
void alloctools_watchdog_disarm(void) {
  struct alloctools_itimerval stop = { { 0, 0 }, { 0, 0 } };
  setitimer(ALLOCTOOLS_ITIMER_REAL, &stop, 0);
  signal(ALLOCTOOLS_SIGALRM, (alloctools_handler_t)0);
}
