// What the libfabric C programs of bench/c/ share: the one error path (a JSON line, exit 1), their
// command-line options and a monotonic clock. Included by every libfabric C program of bench/c/.
#ifndef ALLOCTOOLS_BENCH_FABRIC_COMMON_H
#define ALLOCTOOLS_BENCH_FABRIC_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <rdma/fi_errno.h>

// Prints {"error": "<what>: <fi_strerror> (<ret>)"} and exits 1; `ret` is a (negative) fi errno.
static void fail(const char *what, int ret) {
  printf("{\"error\":\"%s: %s (%d)\"}\n", what, fi_strerror(ret < 0 ? -ret : ret), ret);
  fflush(stdout);
  exit(1);
}

// The value after `name` on the command line, else `fallback`.
static const char *option(int argc, char **argv, const char *name, const char *fallback) {
  for (int i = 0; i + 1 < argc; i++)
    if (strcmp(argv[i], name) == 0) return argv[i + 1];
  return fallback;
}

// Whether `name` is on the command line.
static inline int flag(int argc, char **argv, const char *name) {
  for (int i = 0; i < argc; i++)
    if (strcmp(argv[i], name) == 0) return 1;
  return 0;
}

static double now_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

#endif
