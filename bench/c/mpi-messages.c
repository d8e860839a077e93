/* The C reference of the messaging bench over MPI: the loops MpiEndpoint's side runs
 * (bench/messaging/mpi-rank.ts), written as a C programmer writes them, 2 ranks under mpirun.
 *
 *   mpirun -n 2 mpi-messages lat <bytes> <iterations> <warmup>
 *       osu_latency's loop: rank 0 MPI_Send then MPI_Recv, rank 1 MPI_Recv then MPI_Send, the same
 *       tag and one buffer; after <warmup> untimed iterations, each iteration is timed. Rank 0
 *       prints {"test":"lat","bytes","iterations","medianNs","meanNs","p99Ns"}: half round trips,
 *       meanNs being osu_latency's figure (all the time over 2 × iterations).
 *   mpirun -n 2 mpi-messages window <bytes> <window> <iterations> <warmup>
 *       osu_bw's loop: per iteration rank 0 posts <window> MPI_Isend of <bytes> from one buffer,
 *       MPI_Waitall, then MPI_Recv of a 4-byte ack; rank 1 posts <window> MPI_Irecv into one
 *       buffer, MPI_Waitall, then MPI_Send of the ack. Rank 0 prints {"test":"window","bytes",
 *       "window","iterations","seconds","mbPerSec" (1e6 bytes, as osu_bw),"messagesPerSec"}.
 * Several tests may follow one another on one command line (each a group of its arguments), so
 * one job runs them all. Tags: 7 for data, 8 for the ack (bench/messaging/loops.ts uses the same). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define DATA_TAG 7
#define ACK_TAG 8
#define ACK_BYTES 4
#define MAX_WINDOW 1024

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void latency(int rank, char *buffer, int bytes, long iterations, long warmup) {
  double *samples = malloc(sizeof(double) * (size_t)iterations);
  int peer = 1 - rank;
  MPI_Barrier(MPI_COMM_WORLD);
  for (long i = 0; i < warmup + iterations; i++) {
    double start = MPI_Wtime();
    if (rank == 0) {
      MPI_Send(buffer, bytes, MPI_BYTE, peer, DATA_TAG, MPI_COMM_WORLD);
      MPI_Recv(buffer, bytes, MPI_BYTE, peer, DATA_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else {
      MPI_Recv(buffer, bytes, MPI_BYTE, peer, DATA_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      MPI_Send(buffer, bytes, MPI_BYTE, peer, DATA_TAG, MPI_COMM_WORLD);
    }
    if (i >= warmup) samples[i - warmup] = (MPI_Wtime() - start) * 1e9;
  }
  if (rank == 0) {
    double sum = 0;
    for (long i = 0; i < iterations; i++) sum += samples[i];
    qsort(samples, (size_t)iterations, sizeof(double), by_value);
    printf("{\"test\":\"lat\",\"bytes\":%d,\"iterations\":%ld,\"medianNs\":%.1f,\"meanNs\":%.1f,\"p99Ns\":%.1f}\n", bytes, iterations,
           samples[(iterations - 1) / 2] / 2, sum / iterations / 2, samples[(long)(iterations * 0.99)] / 2);
    fflush(stdout);
  }
  free(samples);
}

static void window_round(int rank, char *buffer, int bytes, int window, MPI_Request *requests) {
  int peer = 1 - rank;
  if (rank == 0) {
    for (int i = 0; i < window; i++) MPI_Isend(buffer, bytes, MPI_BYTE, peer, DATA_TAG, MPI_COMM_WORLD, &requests[i]);
    MPI_Waitall(window, requests, MPI_STATUSES_IGNORE);
    MPI_Recv(buffer, ACK_BYTES, MPI_BYTE, peer, ACK_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  } else {
    for (int i = 0; i < window; i++) MPI_Irecv(buffer, bytes, MPI_BYTE, peer, DATA_TAG, MPI_COMM_WORLD, &requests[i]);
    MPI_Waitall(window, requests, MPI_STATUSES_IGNORE);
    MPI_Send(buffer, ACK_BYTES, MPI_BYTE, peer, ACK_TAG, MPI_COMM_WORLD);
  }
}

static void windowed(int rank, char *buffer, int bytes, int window, long iterations, long warmup) {
  MPI_Request requests[MAX_WINDOW];
  MPI_Barrier(MPI_COMM_WORLD);
  for (long i = 0; i < warmup; i++) window_round(rank, buffer, bytes, window, requests);
  double start = MPI_Wtime();
  for (long i = 0; i < iterations; i++) window_round(rank, buffer, bytes, window, requests);
  double seconds = MPI_Wtime() - start;
  if (rank == 0) {
    double messages = (double)iterations * window;
    printf("{\"test\":\"window\",\"bytes\":%d,\"window\":%d,\"iterations\":%ld,\"seconds\":%.9f,\"mbPerSec\":%.2f,\"messagesPerSec\":%.1f}\n", bytes,
           window, iterations, seconds, messages * bytes / seconds / 1e6, messages / seconds);
    fflush(stdout);
  }
}

int main(int argc, char **argv) {
  int provided, rank, size;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size != 2) {
    if (rank == 0) fprintf(stderr, "usage: mpirun -n 2 %s lat <bytes> <iterations> <warmup> | window <bytes> <window> <iterations> <warmup> ...\n", argv[0]);
    MPI_Finalize();
    return 2;
  }
  /* One page-aligned buffer of the largest size, as the library's side uses one pooled region. */
  size_t length = 4 << 20;
  char *buffer = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  memset(buffer, 0x5a, length);
  int status = 0;
  for (int a = 1; a < argc;) {
    if (strcmp(argv[a], "lat") == 0 && a + 3 < argc) {
      latency(rank, buffer, atoi(argv[a + 1]), atol(argv[a + 2]), atol(argv[a + 3]));
      a += 4;
    } else if (strcmp(argv[a], "window") == 0 && a + 4 < argc && atoi(argv[a + 2]) <= MAX_WINDOW) {
      windowed(rank, buffer, atoi(argv[a + 1]), atoi(argv[a + 2]), atol(argv[a + 3]), atol(argv[a + 4]));
      a += 5;
    } else {
      if (rank == 0) printf("{\"error\":\"bad arguments at %s\"}\n", argv[a]);
      status = 2;
      break;
    }
  }
  MPI_Barrier(MPI_COMM_WORLD);
  munmap(buffer, length);
  MPI_Finalize();
  return status;
}
