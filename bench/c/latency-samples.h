// Per-operation latency samples of the atomics bench's C programs, reported as the library side
// reports them (bench/atomics/initiator.ts): one JSON line {ok, operation, iterations, p50, mean,
// p99}, nanoseconds per operation, each operation timed alone with CLOCK_MONOTONIC.
#ifndef ALLOCTOOLS_BENCH_LATENCY_SAMPLES_H
#define ALLOCTOOLS_BENCH_LATENCY_SAMPLES_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

// Sorts `samples` and prints the line; the percentiles are the sorted samples at n/2 and 99n/100.
static void print_samples(const char *operation, double *samples, long n) {
  qsort(samples, (size_t)n, sizeof(double), by_value);
  double sum = 0;
  for (long i = 0; i < n; i++) sum += samples[i];
  printf("{\"ok\":true,\"operation\":\"%s\",\"iterations\":%ld,\"p50\":%.1f,\"mean\":%.1f,\"p99\":%.1f}\n", operation, n,
         samples[n / 2], sum / n, samples[(long)(n * 0.99)]);
  fflush(stdout);
}

#endif
