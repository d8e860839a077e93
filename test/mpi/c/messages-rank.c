/* A rank in C that talks to MpiEndpoint ranks knowing only MPI, docs/messaging.md ("MPI") and
 * docs/rma.md ("C ranks"): messages are MPI_BYTE on MPI_COMM_WORLD, the tag is the MPI tag, the
 * source the rank; remote atomics are MPI_UINT64_T accumulate operations on the job's dynamic
 * window, at the word's address. The Bun side is test/mpi/interop-scenarios.ts; run as the last
 * rank, every rank with the same osc_rdma_max_attach:
 *   mpirun -x OMPI_MCA_osc_rdma_max_attach=4096 -n 2 bun test/mpi/messages-agent.ts c-peer : -n 1 messages-rank
 * Collective calls, in the Bun ranks' order: MPI_Allgather of osc_rdma_max_attach, then
 * MPI_Win_create_dynamic + MPI_Win_lock_all (MpiProvider.open), three MPI_Barrier,
 * MPI_Win_unlock_all + MPI_Win_free (MpiProvider.close).
 * Prints "c peer: ok, <n> messages, <n> atomics" and exits 0, or says what differed and exits 1. */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

enum { END_TAG = 1, ADDRESS_TAG = 2, VALUES_TAG = 4, ADDS = 10000, LARGEST = 4 << 20 };

static int rank;

static void fail(const char *what, long detail) {
    fprintf(stderr, "c peer (rank %d): %s (%ld)\n", rank, what, detail);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

static void check(const char *what, int code) {
    if (code != MPI_SUCCESS) fail(what, code);
}

/* This rank's osc_rdma_max_attach, -1 when MPI_T cannot read it (docs/rma.md, "C ranks"). */
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

/* The collective MpiProvider.open() makes before its window: every rank's osc_rdma_max_attach. */
static void agree_on_max_attach(int size) {
    int mine = osc_rdma_max_attach();
    int *values = malloc(sizeof(int) * (size_t)size);
    check("MPI_Allgather (osc_rdma_max_attach)", MPI_Allgather(&mine, 1, MPI_INT, values, 1, MPI_INT, MPI_COMM_WORLD));
    for (int r = 0; r < size; r++) if (values[r] != mine) fail("the ranks disagree on osc_rdma_max_attach; this rank has", mine);
    free(values);
}

/* The payload of a message with tag `seed`: byte i is (seed + i) mod 251 (test/mpi/rank-context.ts). */
static void fill(unsigned char *bytes, int length, int seed) {
    for (int i = 0; i < length; i++) bytes[i] = (unsigned char)((seed + i) % 251);
}

static long mismatch(const unsigned char *bytes, int length, int seed) {
    for (int i = 0; i < length; i++) if (bytes[i] != (unsigned char)((seed + i) % 251)) return i;
    return -1;
}

/* Takes rank 0's messages (any tag) and answers each on tag + 1 with the pattern of tag + 1. */
static int answer_messages(void) {
    unsigned char *in = malloc(LARGEST), *out = malloc(LARGEST);
    int messages = 0;
    for (;;) {
        MPI_Status status;
        int length;
        check("MPI_Recv", MPI_Recv(in, LARGEST, MPI_BYTE, 0, MPI_ANY_TAG, MPI_COMM_WORLD, &status));
        check("MPI_Get_count", MPI_Get_count(&status, MPI_BYTE, &length));
        if (status.MPI_SOURCE != 0) fail("a message from another rank than 0", status.MPI_SOURCE);
        if (status.MPI_TAG == END_TAG) break;
        long at = mismatch(in, length, status.MPI_TAG);
        if (at >= 0) fail("a message's bytes differ from the pattern of its tag, at byte", at);
        fill(out, length, status.MPI_TAG + 1);
        check("MPI_Send", MPI_Send(out, length, MPI_BYTE, 0, status.MPI_TAG + 1, MPI_COMM_WORLD));
        messages++;
    }
    free(in);
    free(out);
    return messages;
}

/* Adds 1 to rank 0's counter ADDS times, reading it (MPI_NO_OP) every 100 adds: never backwards. */
static void add_to_counter(MPI_Win win, MPI_Aint address, uint64_t *values) {
    uint64_t one = 1, seen, last = 0;
    for (int i = 0; i < ADDS; i++) {
        check("MPI_Fetch_and_op", MPI_Fetch_and_op(&one, &values[i], MPI_UINT64_T, 0, address, MPI_SUM, win));
        check("MPI_Win_flush", MPI_Win_flush(0, win));
        if (i % 100 != 0) continue;
        check("MPI_Fetch_and_op (MPI_NO_OP)", MPI_Fetch_and_op(NULL, &seen, MPI_UINT64_T, 0, address, MPI_NO_OP, win));
        check("MPI_Win_flush", MPI_Win_flush(0, win));
        if (seen < last || seen <= values[i] || seen > 2 * ADDS) fail("the counter read back out of order", (long)seen);
        last = seen;
    }
}

int main(int argc, char **argv) {
    int provided, size;
    check("MPI_Init_thread", MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided));
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    agree_on_max_attach(size);
    MPI_Win win;
    check("MPI_Win_create_dynamic", MPI_Win_create_dynamic(MPI_INFO_NULL, MPI_COMM_WORLD, &win));
    check("MPI_Win_lock_all", MPI_Win_lock_all(0, win));

    int messages = answer_messages();

    uint64_t address;
    check("MPI_Recv (address)", MPI_Recv(&address, 8, MPI_BYTE, 0, ADDRESS_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
    uint64_t *values = calloc(ADDS, sizeof *values);
    check("MPI_Barrier 1", MPI_Barrier(MPI_COMM_WORLD));
    add_to_counter(win, (MPI_Aint)address, values);
    check("MPI_Send (values)", MPI_Send(values, ADDS * 8, MPI_BYTE, 0, VALUES_TAG, MPI_COMM_WORLD));
    check("MPI_Barrier 2", MPI_Barrier(MPI_COMM_WORLD));
    uint64_t final;
    check("MPI_Fetch_and_op (final)", MPI_Fetch_and_op(NULL, &final, MPI_UINT64_T, 0, (MPI_Aint)address, MPI_NO_OP, win));
    check("MPI_Win_flush", MPI_Win_flush(0, win));
    if (final != 2 * ADDS) fail("the counter's final value is not 2 x ADDS", (long)final);
    check("MPI_Barrier 3", MPI_Barrier(MPI_COMM_WORLD));

    check("MPI_Win_unlock_all", MPI_Win_unlock_all(win));
    check("MPI_Win_free", MPI_Win_free(&win));
    free(values);
    printf("c peer: ok, %d messages, %d atomics\n", messages, ADDS);
    fflush(stdout);
    MPI_Finalize();
    return 0;
}
