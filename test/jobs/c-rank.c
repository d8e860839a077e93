/* A rank in C that joins a job of Bun ranks through PMIx, following docs/jobs.md ("Joining from a
 * rank that is not Bun"): it makes the calls test/jobs/agent.ts's "basics" scenario makes (a
 * barrier, allgather 0 of rank * 37 pattern bytes, allgather 1 of 256 KiB on rank 1 and 3 bytes
 * elsewhere, two barriers) and checks every rank's bytes. Prints "c rank <r> of <n>: ok" and
 * exits 0, or says what differed and exits 1. */
#include <pmix.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pmix_proc_t me;
static unsigned allgathers = 0;

static void fail(const char *what, pmix_status_t status) {
    fprintf(stderr, "c rank %u: %s failed: %s (%d)\n", me.rank, what, PMIx_Error_string(status), status);
    PMIx_Abort(1, what, NULL, 0);
    exit(1);
}

static void barrier(void) {
    pmix_status_t status = PMIx_Fence(NULL, 0, NULL, 0);
    if (status != PMIX_SUCCESS) fail("PMIx_Fence", status);
}

/* Allgather number `allgathers`: put, commit, fence collecting data; returns every rank's bytes. */
static pmix_value_t **allgather(const unsigned char *bytes, size_t length, uint32_t size) {
    char key[64];
    snprintf(key, sizeof key, "alloctools.allgather.%u", allgathers++);
    pmix_value_t value;
    PMIX_VALUE_CONSTRUCT(&value);
    value.type = PMIX_BYTE_OBJECT;
    value.data.bo.bytes = (char *)bytes;
    value.data.bo.size = length;
    pmix_status_t status = PMIx_Put(PMIX_GLOBAL, key, &value);
    if (status != PMIX_SUCCESS) fail("PMIx_Put", status);
    if ((status = PMIx_Commit()) != PMIX_SUCCESS) fail("PMIx_Commit", status);
    pmix_info_t collect;
    bool yes = true;
    PMIX_INFO_LOAD(&collect, PMIX_COLLECT_DATA, &yes, PMIX_BOOL);
    if ((status = PMIx_Fence(NULL, 0, &collect, 1)) != PMIX_SUCCESS) fail("PMIx_Fence (collect)", status);
    pmix_value_t **all = calloc(size, sizeof *all);
    for (uint32_t r = 0; r < size; r++) {
        pmix_proc_t peer;
        PMIX_LOAD_PROCID(&peer, me.nspace, r);
        if ((status = PMIx_Get(&peer, key, NULL, 0, &all[r])) != PMIX_SUCCESS) fail("PMIx_Get", status);
        if (all[r]->type != PMIX_BYTE_OBJECT) fail("PMIx_Get (not a byte object)", PMIX_ERR_TYPE_MISMATCH);
    }
    return all;
}

static unsigned char *pattern(uint32_t rank, size_t *length) {
    *length = rank * 37;
    unsigned char *bytes = malloc(*length + 1);
    for (size_t i = 0; i < *length; i++) bytes[i] = (unsigned char)((rank + i) & 0xff);
    return bytes;
}

int main(void) {
    pmix_status_t status = PMIx_Init(&me, NULL, 0);
    if (status != PMIX_SUCCESS) { fprintf(stderr, "PMIx_Init: %s\n", PMIx_Error_string(status)); return 1; }
    pmix_proc_t job;
    PMIX_LOAD_PROCID(&job, me.nspace, PMIX_RANK_WILDCARD);
    pmix_value_t *value;
    if ((status = PMIx_Get(&job, PMIX_JOB_SIZE, NULL, 0, &value)) != PMIX_SUCCESS) fail("PMIx_Get(PMIX_JOB_SIZE)", status);
    uint32_t size = value->data.uint32;
    PMIX_VALUE_RELEASE(value);

    barrier();
    size_t length;
    unsigned char *mine = pattern(me.rank, &length);
    pmix_value_t **all = allgather(mine, length, size);
    int bad = 0;
    for (uint32_t r = 0; r < size; r++) {
        size_t expected_length;
        unsigned char *expected = pattern(r, &expected_length);
        if (all[r]->data.bo.size != expected_length || (expected_length > 0 && memcmp(all[r]->data.bo.bytes, expected, expected_length) != 0)) {
            fprintf(stderr, "c rank %u: allgather 0: rank %u gave %zu bytes, expected %zu\n", me.rank, r, all[r]->data.bo.size, expected_length);
            bad = 1;
        }
        free(expected);
        PMIX_VALUE_RELEASE(all[r]);
    }
    free(all);
    size_t big_length = me.rank == 1 ? 256 * 1024 : 3;
    unsigned char *big = malloc(big_length);
    memset(big, (int)me.rank + 1, big_length);
    all = allgather(big, big_length, size);
    for (uint32_t r = 0; r < size; r++) {
        size_t expected_length = r == 1 ? 256 * 1024 : 3;
        int same = all[r]->data.bo.size == expected_length;
        for (size_t i = 0; same && i < expected_length; i++) same = (unsigned char)all[r]->data.bo.bytes[i] == r + 1;
        if (!same) { fprintf(stderr, "c rank %u: allgather 1: rank %u's bytes differ\n", me.rank, r); bad = 1; }
        PMIX_VALUE_RELEASE(all[r]);
    }
    free(all);
    barrier();
    barrier();
    if (!bad) printf("c rank %u of %u: ok\n", me.rank, size);
    fflush(stdout);
    PMIx_Finalize(NULL, 0);
    return bad;
}
