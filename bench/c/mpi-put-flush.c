/* The C reference of the mpi bench: MPI_Put of `bytes` bytes + MPI_Win_flush to rank 1, on a
 * dynamic window (MPI_Win_create_dynamic, MPI_Win_attach, MPI_Win_lock_all): the window
 * MpiProvider makes. Run with 2 ranks: rank 0 writes, rank 1 only exposes memory (and sleeps).
 * Usage: mpirun -n 2 mpi-put-flush <bytes> <batches> <batch size>
 * Prints one line: {"bytes":..,"p50":..,"p99":..,"avg":..,"samples":..} in ns per operation,
 * each sample the mean of one batch (so clock reads stay out of the figure). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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

int main(int argc, char **argv) {
  int provided, rank, size;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (argc < 4 || size != 2) {
    if (rank == 0) fprintf(stderr, "usage: mpirun -n 2 %s <bytes> <batches> <batch size>\n", argv[0]);
    MPI_Finalize();
    return 2;
  }
  int bytes = atoi(argv[1]), batches = atoi(argv[2]), batch = atoi(argv[3]);
  /* Page-aligned memory, as a pool block is. */
  size_t length = 1 << 16;
  char *memory = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  memset(memory, rank, length);
  MPI_Win win;
  MPI_Win_create_dynamic(MPI_INFO_NULL, MPI_COMM_WORLD, &win);
  MPI_Win_attach(win, memory, (MPI_Aint)length);
  MPI_Aint mine, addresses[2];
  MPI_Get_address(memory, &mine);
  MPI_Allgather(&mine, 1, MPI_AINT, addresses, 1, MPI_AINT, MPI_COMM_WORLD);
  MPI_Win_lock_all(0, win);
  double *samples = malloc(sizeof(double) * (size_t)batches);
  if (rank == 0) {
    char *source = memory + length / 2;
    for (int i = 0; i < batch * 16; i++) { /* warm-up */
      MPI_Put(source, bytes, MPI_BYTE, 1, addresses[1], bytes, MPI_BYTE, win);
      MPI_Win_flush(1, win);
    }
    for (int b = 0; b < batches; b++) {
      double start = now_ns();
      for (int i = 0; i < batch; i++) {
        MPI_Put(source, bytes, MPI_BYTE, 1, addresses[1], bytes, MPI_BYTE, win);
        MPI_Win_flush(1, win);
      }
      samples[b] = (now_ns() - start) / batch;
    }
    qsort(samples, (size_t)batches, sizeof(double), by_value);
    double sum = 0;
    for (int b = 0; b < batches; b++) sum += samples[b];
    printf("{\"bytes\":%d,\"p50\":%.1f,\"p99\":%.1f,\"avg\":%.1f,\"samples\":%d,\"batch\":%d}\n", bytes, samples[batches / 2],
           samples[(int)(batches * 0.99)], sum / batches, batches, batch);
    fflush(stdout);
    /* A nonblocking barrier matches only a nonblocking barrier: rank 1 uses MPI_Ibarrier. */
    MPI_Request request;
    MPI_Ibarrier(MPI_COMM_WORLD, &request);
    MPI_Wait(&request, MPI_STATUS_IGNORE);
  } else {
    /* The target only exposes memory: poll the barrier every 1 ms and leave the core to the writer. */
    MPI_Request request;
    int done = 0;
    struct timespec millisecond = {0, 1000000};
    MPI_Ibarrier(MPI_COMM_WORLD, &request);
    for (;;) {
      MPI_Test(&request, &done, MPI_STATUS_IGNORE);
      if (done) break;
      nanosleep(&millisecond, NULL);
    }
  }
  MPI_Win_unlock_all(win);
  MPI_Win_detach(win, memory);
  MPI_Win_free(&win);
  free(samples);
  MPI_Finalize();
  return 0;
}
