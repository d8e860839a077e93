/* A C rank in a job with alloctools (Bun) ranks, for test/mpi/settings.test.ts. It follows the
 * note of docs/rma.md for C ranks: before MPI_Win_create_dynamic, every rank allgathers its
 * osc_rdma_max_attach (read with MPI_T), and when the values differ no rank creates the window.
 * When they agree it makes the window MpiProvider makes (dynamic, lock_all), attaches a page,
 * allgathers that page's address the way MpiJob.allgather does (lengths, then MPI_Allgatherv),
 * lets the Bun ranks write their stamps into it, writes its own stamp into each Bun rank's page,
 * and prints one line: C-RANK {"rank":..,"maxAttach":..,"values":[..],"refused":..,"received":[..],"wrote":..}.
 * Usage (under mpirun, with Bun ranks running test/mpi/agent.ts c-peer): settings-rank */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define SLOT 64

/* The note of docs/rma.md: this rank's osc_rdma_max_attach through MPI_T, -1 when unreadable. */
static int osc_rdma_max_attach(void) {
  int provided, index, count, value = -1;
  unsigned long long read = 0; /* wide enough for any integer control variable */
  MPI_T_cvar_handle handle;
  if (MPI_T_init_thread(MPI_THREAD_SINGLE, &provided) != MPI_SUCCESS) return -1;
  if (MPI_T_cvar_get_index("osc_rdma_max_attach", &index) == MPI_SUCCESS &&
      MPI_T_cvar_handle_alloc(index, NULL, &handle, &count) == MPI_SUCCESS) {
    if (MPI_T_cvar_read(handle, &read) == MPI_SUCCESS) value = read > 0x7fffffff ? 0x7fffffff : (int)read;
    MPI_T_cvar_handle_free(&handle);
  }
  MPI_T_finalize();
  return value;
}

int main(int argc, char **argv) {
  int provided, rank, size;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int mine = osc_rdma_max_attach();
  int *values = malloc(sizeof(int) * (size_t)size);
  MPI_Allgather(&mine, 1, MPI_INT, values, 1, MPI_INT, MPI_COMM_WORLD);
  int refused = 0;
  for (int r = 0; r < size; r++) refused |= values[r] != mine;
  printf("C-RANK {\"rank\":%d,\"maxAttach\":%d,\"values\":[", rank, mine);
  for (int r = 0; r < size; r++) printf("%s%d", r ? "," : "", values[r]);
  printf("],\"refused\":%s", refused ? "true" : "false");
  if (refused) { /* every rank saw the same values: none creates the window */
    printf("}\n");
    fflush(stdout);
    MPI_Finalize();
    return 0;
  }

  size_t length = 4096;
  char *page = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  memset(page, 0, length);
  MPI_Win win;
  MPI_Win_create_dynamic(MPI_INFO_NULL, MPI_COMM_WORLD, &win);
  MPI_Win_lock_all(0, win);
  MPI_Win_attach(win, page, (MPI_Aint)length);
  /* MpiJob.allgather: every rank's length, then the bytes (here 8: the page's address, little-endian). */
  MPI_Aint address;
  MPI_Get_address(page, &address);
  int eight = 8, *lengths = malloc(sizeof(int) * (size_t)size), *displacements = malloc(sizeof(int) * (size_t)size);
  MPI_Allgather(&eight, 1, MPI_INT, lengths, 1, MPI_INT, MPI_COMM_WORLD);
  for (int r = 0, at = 0; r < size; r++) { displacements[r] = at; at += lengths[r]; }
  uint64_t *addresses = malloc(sizeof(uint64_t) * (size_t)size);
  uint64_t own = (uint64_t)address;
  MPI_Allgatherv(&own, 8, MPI_BYTE, addresses, lengths, displacements, MPI_BYTE, MPI_COMM_WORLD);
  MPI_Barrier(MPI_COMM_WORLD); /* the Bun ranks write into slot <their rank> of this page */
  char stamp[SLOT];
  int wrote = 0;
  for (int r = 0; r < size; r++) {
    if (r == rank) continue;
    memset(stamp, 0, SLOT);
    snprintf(stamp, SLOT, "from C rank %d to rank %d", rank, r);
    if (MPI_Put(stamp, SLOT, MPI_BYTE, r, (MPI_Aint)addresses[r], SLOT, MPI_BYTE, win) == MPI_SUCCESS &&
        MPI_Win_flush(r, win) == MPI_SUCCESS) wrote++;
  }
  MPI_Barrier(MPI_COMM_WORLD); /* the C stamps are in */
  printf(",\"received\":[");
  for (int r = 0; r < size; r++) printf("%s\"%.*s\"", r ? "," : "", SLOT - 1, r == rank ? "" : page + r * SLOT);
  printf("],\"wrote\":%d}\n", wrote);
  fflush(stdout);
  MPI_Win_unlock_all(win);
  MPI_Win_detach(win, page);
  MPI_Win_free(&win);
  MPI_Finalize();
  return 0;
}
