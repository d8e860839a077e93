/* The C reference of the atomics bench over MPI: on the window MpiProvider makes (a dynamic window,
 * MPI_Win_create_dynamic + MPI_Win_attach of page-aligned memory + MPI_Win_lock_all, with
 * osc_rdma_max_attach set to 4096 as MpiProvider sets it), rank 0 times one operation at a time on
 * a 64-bit word of rank 1, each waited for with MPI_Win_flush(1) before the next:
 *   fetchAdd:    MPI_Fetch_and_op(1, MPI_UINT64_T, MPI_SUM) + MPI_Win_flush
 *   compareSwap: MPI_Compare_and_swap(MPI_UINT64_T) expecting the value the last one found and
 *                swapping in that plus one, + MPI_Win_flush
 * Rank 1 waits in a blocking MPI_Barrier meanwhile: its MPI progress performs the atomics (osc/rdma
 * over vader emulates them at the target). Rank 0 prints one JSON line per operation, as
 * bench/c/latency-samples.h formats it.
 * Usage: mpirun -n 2 mpi-atomics <fetchAdd,compareSwap> <iterations> <warmup> */
#define _GNU_SOURCE
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "latency-samples.h"

static MPI_Win win;
static MPI_Aint target;

static uint64_t atomic_once(int compare_swap, uint64_t operand, uint64_t compare) {
  uint64_t found;
  if (compare_swap) MPI_Compare_and_swap(&operand, &compare, &found, MPI_UINT64_T, 1, target, win);
  else MPI_Fetch_and_op(&operand, &found, MPI_UINT64_T, 1, target, MPI_SUM, win);
  MPI_Win_flush(1, win);
  return found;
}

static void measure(const char *operation, long iterations, long warmup) {
  int compare_swap = strcmp(operation, "compareSwap") == 0;
  double *samples = malloc(sizeof(double) * (size_t)iterations);
  uint64_t found = atomic_once(0, 0, 0);
  for (long i = -warmup; i < iterations; i++) {
    double start = now_ns();
    found = atomic_once(compare_swap, compare_swap ? found + 1 : 1, found);
    if (i >= 0) samples[i] = now_ns() - start;
  }
  print_samples(operation, samples, iterations);
  free(samples);
}

int main(int argc, char **argv) {
  setenv("OMPI_MCA_osc_rdma_max_attach", "4096", 0);
  int provided, rank, size;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (argc < 4 || size != 2) {
    if (rank == 0) printf("{\"error\":\"usage: mpirun -n 2 mpi-atomics <fetchAdd,compareSwap> <iterations> <warmup>\"}\n");
    MPI_Finalize();
    return 2;
  }
  long iterations = atol(argv[2]), warmup = atol(argv[3]);
  size_t length = 4096;
  char *memory = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  memset(memory, 0, length);
  MPI_Win_create_dynamic(MPI_INFO_NULL, MPI_COMM_WORLD, &win);
  MPI_Win_attach(win, memory, (MPI_Aint)length);
  MPI_Aint mine, addresses[2];
  MPI_Get_address(memory, &mine);
  MPI_Allgather(&mine, 1, MPI_AINT, addresses, 1, MPI_AINT, MPI_COMM_WORLD);
  target = addresses[1];
  MPI_Win_lock_all(0, win);
  if (rank == 0) {
    char *saved, *list = strdup(argv[1]);
    for (char *operation = strtok_r(list, ",", &saved); operation != NULL; operation = strtok_r(NULL, ",", &saved)) {
      if (strcmp(operation, "fetchAdd") != 0 && strcmp(operation, "compareSwap") != 0) {
        printf("{\"error\":\"unknown operation %s: fetchAdd or compareSwap\"}\n", operation);
        break;
      }
      measure(operation, iterations, warmup);
    }
    free(list);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  MPI_Win_unlock_all(win);
  MPI_Win_detach(win, memory);
  MPI_Win_free(&win);
  MPI_Finalize();
  return 0;
}
