// fabric-atomics: the C reference of the atomics bench over libfabric, opened the way Endpoint opens
// its endpoint: FI_EP_RDM with the caps of alloctools' first tier (FI_MSG | FI_RMA | FI_TAGGED |
// FI_SOURCE | FI_DIRECTED_RECV | FI_ATOMIC), FI_THREAD_SAFE, the same mr_mode bits,
// FI_DELIVERY_COMPLETE in tx_attr->op_flags, FI_AV_TABLE, an FI_CQ_FORMAT_TAGGED completion queue
// read with fi_cq_readfrom, busy polling. The operand and result are plain (unregistered) memory, as
// the engine's cells are.
//
//   fabric-atomics target <provider> [--node N]
//       Registers a page holding the counter and prints one JSON line {name, address, key, length};
//       then polls its completion queue (rxm and shm apply atomics in the target's progress) until
//       stdin closes.
//   fabric-atomics initiator <provider> --name HEX --address A --key K [--node N]
//                  --operations fetchAdd,compareSwap --iterations I --warmup W
//       For each operation listed: W, then I operations on the target's counter, each waited for
//       before the next, each timed alone; one JSON line {ok, operation, iterations, p50, mean, p99}
//       (ns per operation, bench/c/latency-samples.h).
//       fetchAdd is fi_fetch_atomic(FI_SUM, FI_UINT64) of 1; compareSwap is fi_compare_atomic(FI_CSWAP,
//       FI_UINT64) expecting the value the last one found and swapping in that plus one.
//
// Build: cc -O2 -o fabric-atomics fabric-atomics.c -lfabric (bench/c/build.ts does it)
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <rdma/fabric.h>
#include <rdma/fi_atomic.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_tagged.h>
#include "fabric-common.h"
#include "fabric-endpoint.h"
#include "latency-samples.h"

// The capabilities Endpoint asks for first (its first tier).
#define CAPS (FI_MSG | FI_RMA | FI_TAGGED | FI_SOURCE | FI_DIRECTED_RECV | FI_ATOMIC)
#define TARGET_BYTES 4096
#define CQ_BATCH 16

// Reads completions (with their source, as Endpoint does); how many; exits on an error completion.
static int read_completions(void) {
  struct fi_cq_tagged_entry entries[CQ_BATCH];
  fi_addr_t sources[CQ_BATCH];
  ssize_t n = fi_cq_readfrom(cq, entries, CQ_BATCH, sources);
  if (n > 0) return (int)n;
  if (n == -FI_EAGAIN) return 0;
  if (n == -FI_EAVAIL) {
    struct fi_cq_err_entry err = { 0 };
    fi_cq_readerr(cq, &err, 0);
    char text[256];
    printf("{\"error\":\"completion: %s; provider: %s\"}\n", fi_strerror(err.err),
           fi_cq_strerror(cq, err.prov_errno, err.err_data, text, sizeof text));
    fflush(stdout);
    exit(1);
  }
  fail("fi_cq_read", (int)n);
  return 0;
}

static int run_target(int argc, char **argv) {
  open_rdm_endpoint(argv[2], option(argc, argv, "--node", NULL), CAPS, FI_CQ_FORMAT_TAGGED, 1, 1);
  void *buffer;
  if (posix_memalign(&buffer, 4096, TARGET_BYTES)) fail("posix_memalign", ENOMEM);
  memset(buffer, 0, TARGET_BYTES);
  struct fid_mr *mr;
  int ret = fi_mr_reg(domain, buffer, TARGET_BYTES, FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE, 0, 1, 0, &mr, NULL);
  if (ret) fail("fi_mr_reg", ret);
  if (info->domain_attr->mr_mode & FI_MR_ENDPOINT) {
    if ((ret = fi_mr_bind(mr, &ep->fid, 0))) fail("fi_mr_bind", ret);
    if ((ret = fi_mr_enable(mr))) fail("fi_mr_enable", ret);
  }
  char name[256];
  size_t name_length = sizeof name;
  if ((ret = fi_getname(&ep->fid, name, &name_length))) fail("fi_getname", ret);
  int virt = (info->domain_attr->mr_mode & FI_MR_VIRT_ADDR) != 0;
  printf("{\"provider\":\"%s\",\"name\":\"", info->fabric_attr->prov_name);
  for (size_t i = 0; i < name_length; i++) printf("%02x", (unsigned char)name[i]);
  printf("\",\"address\":\"%" PRIu64 "\",\"key\":\"%" PRIu64 "\",\"length\":%d}\n",
         virt ? (uint64_t)(uintptr_t)buffer : 0, fi_mr_key(mr), TARGET_BYTES);
  fflush(stdout);
  struct pollfd input = { .fd = 0, .events = POLLIN };
  for (unsigned long turn = 0;; turn++) {
    read_completions();
    // stdin closing (or any line on it) ends the target; checked every 4096 turns.
    if ((turn & 4095) == 0 && poll(&input, 1, 0) > 0) break;
  }
  fi_close(&mr->fid);
  close_rdm_endpoint();
  free(buffer);
  return 0;
}

static size_t from_hex(const char *hex, unsigned char *out, size_t capacity) {
  size_t n = strlen(hex) / 2;
  if (n > capacity) n = capacity;
  for (size_t i = 0; i < n; i++) sscanf(hex + 2 * i, "%2hhx", &out[i]);
  return n;
}

static fi_addr_t peer;
static uint64_t remote_address, key;
// Operand, compare value and result, as the engine's cell lays them out.
static uint64_t cell[3];
static double timeout;

// Posts (again while -FI_EAGAIN) and polls until its completion; the value found.
static uint64_t atomic_once(int compare_swap) {
  double deadline = now_seconds() + timeout;
  ssize_t ret;
  for (;;) {
    ret = compare_swap
      ? fi_compare_atomic(ep, &cell[0], 1, NULL, &cell[1], NULL, &cell[2], NULL, peer, remote_address, key, FI_UINT64, FI_CSWAP, NULL)
      : fi_fetch_atomic(ep, &cell[0], 1, NULL, &cell[2], NULL, peer, remote_address, key, FI_UINT64, FI_SUM, NULL);
    if (ret != -FI_EAGAIN) break;
    read_completions();
    if (now_seconds() > deadline) fail("atomic post timed out", -FI_ETIMEDOUT);
  }
  if (ret) fail(compare_swap ? "fi_compare_atomic" : "fi_fetch_atomic", (int)ret);
  while (read_completions() == 0)
    if (now_seconds() > deadline) fail("atomic completion timed out", -FI_ETIMEDOUT);
  return cell[2];
}

// `warmup`, then `iterations` timed operations; prints their line.
static void measure(const char *operation, long iterations, long warmup) {
  int compare_swap = strcmp(operation, "compareSwap") == 0;
  if (!compare_swap && strcmp(operation, "fetchAdd") != 0) fail("--operations takes fetchAdd and compareSwap", -FI_EINVAL);
  double *samples = malloc(sizeof(double) * (size_t)iterations);
  cell[0] = 0;
  uint64_t found = atomic_once(0);
  for (long i = -warmup; i < iterations; i++) {
    // compareSwap: expect what the last one found, swap in one more (it succeeds with one initiator).
    cell[1] = found;
    cell[0] = compare_swap ? found + 1 : 1;
    double start = now_ns();
    found = atomic_once(compare_swap);
    if (i >= 0) samples[i] = now_ns() - start;
  }
  print_samples(operation, samples, iterations);
  free(samples);
}

static int run_initiator(int argc, char **argv) {
  char operations[256];
  snprintf(operations, sizeof operations, "%s", option(argc, argv, "--operations", "fetchAdd"));
  long iterations = strtol(option(argc, argv, "--iterations", "1000"), NULL, 10);
  long warmup = strtol(option(argc, argv, "--warmup", "100"), NULL, 10);
  timeout = atof(option(argc, argv, "--timeout-ms", "10000")) / 1000;
  remote_address = strtoull(option(argc, argv, "--address", "0"), NULL, 10);
  key = strtoull(option(argc, argv, "--key", "0"), NULL, 10);
  if (iterations < 1 || warmup < 0) fail("--iterations, --warmup", -FI_EINVAL);
  open_rdm_endpoint(argv[2], option(argc, argv, "--node", NULL), CAPS, FI_CQ_FORMAT_TAGGED, 1, 1);
  unsigned char peer_name[256];
  size_t peer_length = from_hex(option(argc, argv, "--name", ""), peer_name, sizeof peer_name);
  if (peer_length == 0 || fi_av_insert(av, peer_name, 1, &peer, 0, NULL) != 1) fail("fi_av_insert", -FI_EINVAL);
  for (char *saved, *operation = strtok_r(operations, ",", &saved); operation != NULL; operation = strtok_r(NULL, ",", &saved))
    measure(operation, iterations, warmup);
  close_rdm_endpoint();
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: fabric-atomics target|initiator <provider> [options] (see the header of fabric-atomics.c)\n");
    return 2;
  }
  if (strcmp(argv[1], "target") == 0) return run_target(argc, argv);
  if (strcmp(argv[1], "initiator") == 0) return run_initiator(argc, argv);
  fprintf(stderr, "unknown mode %s\n", argv[1]);
  return 2;
}
