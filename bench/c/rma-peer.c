// rma-peer: alloctools' C reference for RMA, the same way Endpoint uses libfabric: FI_EP_RDM, caps
// FI_MSG|FI_RMA, the same mr_mode and threading hints, FI_DELIVERY_COMPLETE in tx_attr->op_flags,
// FI_AV_TABLE, an FI_CQ_FORMAT_DATA completion queue without wait object, busy polling.
//
//   rma-peer target    <provider> [--node N]
//       Registers a buffer and prints one JSON line {name, address, key, length, virt}; then polls
//       its completion queue (that is all a passive target does) until stdin closes.
//   rma-peer initiator <provider> --name HEX --address A --key K --length L [--node N]
//                      --test lat-write|lat-read|rate|bw|check --size S --iterations I
//                      [--window W] [--pause-ms P] [--no-delivery-complete] [--timeout-ms T]
//       Runs one test against a target and prints one JSON line; exit 1 with {"error"} on failure.
//       check: writes a pattern, reads it back into other memory and compares, I times, pausing P ms
//       between rounds (so that an idle target must keep progressing on its own).
//   rma-peer mr <provider> [--node N] --size S --iterations I [--threads T]
//       fi_mr_reg + fi_close of S bytes, I times; prints ns per pair. --threads 2 starts an idle
//       second thread first: glibc then leaves its single-threaded fast paths (malloc without arena
//       locks), as in every Bun process (JIT and GC threads) and every HPX or GHEX process.
//
// Build: cc -O2 -o rma-peer rma-peer.c -lfabric -lpthread
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include "fabric-common.h"
#include "fabric-endpoint.h"

#define TARGET_BYTES ((size_t)8 << 20)
#define CQ_BATCH 16

static struct fid_mr *register_memory(void *buffer, size_t length, uint64_t key) {
  struct fid_mr *mr;
  int ret = fi_mr_reg(domain, buffer, length, FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE, 0, key, 0, &mr, NULL);
  if (ret) fail("fi_mr_reg", ret);
  if (info->domain_attr->mr_mode & FI_MR_ENDPOINT) {
    if ((ret = fi_mr_bind(mr, &ep->fid, 0))) fail("fi_mr_bind", ret);
    if ((ret = fi_mr_enable(mr))) fail("fi_mr_enable", ret);
  }
  return mr;
}

// Closes the registration, then what open_rdm_endpoint opened, then frees the memory.
static void close_fabric(struct fid_mr *mr, void *buffer) {
  fi_close(&mr->fid);
  close_rdm_endpoint();
  free(buffer);
}

// Reads completions; returns how many, fails on an error completion.
static int read_completions(void) {
  struct fi_cq_data_entry entries[CQ_BATCH];
  ssize_t n = fi_cq_read(cq, entries, CQ_BATCH);
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
  open_rdm_endpoint(argv[2], option(argc, argv, "--node", NULL), FI_MSG | FI_RMA, FI_CQ_FORMAT_DATA, 1, 1);
  void *buffer;
  if (posix_memalign(&buffer, 4096, TARGET_BYTES)) fail("posix_memalign", ENOMEM);
  memset(buffer, 0xa5, TARGET_BYTES);
  struct fid_mr *mr = register_memory(buffer, TARGET_BYTES, 1);
  char name[256];
  size_t name_length = sizeof name;
  int ret = fi_getname(&ep->fid, name, &name_length);
  if (ret) fail("fi_getname", ret);
  int virt = (info->domain_attr->mr_mode & FI_MR_VIRT_ADDR) != 0;
  printf("{\"ready\":true,\"provider\":\"%s\",\"name\":\"", info->fabric_attr->prov_name);
  for (size_t i = 0; i < name_length; i++) printf("%02x", (unsigned char)name[i]);
  printf("\",\"address\":\"%" PRIu64 "\",\"key\":\"%" PRIu64 "\",\"length\":%zu,\"virt\":%d,\"pid\":%d}\n",
         virt ? (uint64_t)(uintptr_t)buffer : 0, fi_mr_key(mr), TARGET_BYTES, virt, (int)getpid());
  fflush(stdout);
  struct pollfd input = { .fd = 0, .events = POLLIN };
  for (unsigned long turn = 0;; turn++) {
    read_completions();
    // stdin closing (or any line on it) ends the target; checked every 4096 turns.
    if ((turn & 4095) == 0 && poll(&input, 1, 0) > 0) break;
  }
  close_fabric(mr, buffer);
  return 0;
}

static size_t from_hex(const char *hex, unsigned char *out, size_t capacity) {
  size_t n = strlen(hex) / 2;
  if (n > capacity) n = capacity;
  for (size_t i = 0; i < n; i++) sscanf(hex + 2 * i, "%2hhx", &out[i]);
  return n;
}

static unsigned char pattern_byte(unsigned seed, size_t i) { return (unsigned char)(i * 131 + seed * 17 + 1); }

static int run_initiator(int argc, char **argv) {
  const char *test = option(argc, argv, "--test", "lat-write");
  size_t size = strtoull(option(argc, argv, "--size", "64"), NULL, 10);
  long iterations = strtol(option(argc, argv, "--iterations", "1000"), NULL, 10);
  int window = atoi(option(argc, argv, "--window", "64"));
  int pause_ms = atoi(option(argc, argv, "--pause-ms", "0"));
  double timeout = atof(option(argc, argv, "--timeout-ms", "5000")) / 1000;
  uint64_t remote_address = strtoull(option(argc, argv, "--address", "0"), NULL, 10);
  uint64_t key = strtoull(option(argc, argv, "--key", "0"), NULL, 10);
  size_t remote_length = strtoull(option(argc, argv, "--length", "0"), NULL, 10);
  if (size == 0 || size > remote_length || window < 1) fail("size/window", EINVAL);
  open_rdm_endpoint(argv[2], option(argc, argv, "--node", NULL), FI_MSG | FI_RMA, FI_CQ_FORMAT_DATA, !flag(argc, argv, "--no-delivery-complete"), 1);

  unsigned char peer_name[256];
  size_t peer_length = from_hex(option(argc, argv, "--name", ""), peer_name, sizeof peer_name);
  fi_addr_t peer;
  if (fi_av_insert(av, peer_name, 1, &peer, 0, NULL) != 1) fail("fi_av_insert", EINVAL);
  (void)peer_length;

  // Source and sink: two halves of one registration.
  unsigned char *buffer;
  if (posix_memalign((void **)&buffer, 4096, 2 * size)) fail("posix_memalign", ENOMEM);
  memset(buffer, 0, 2 * size);
  struct fid_mr *mr = register_memory(buffer, 2 * size, 1000);
  void *desc = fi_mr_desc(mr);
  unsigned char *source = buffer, *sink = buffer + size;

  // One operation at a time: post (again while -FI_EAGAIN), then poll until its completion.
  #define POST_AND_WAIT(call, what) do { \
      double deadline_ = now_seconds() + timeout; ssize_t r_; \
      while ((r_ = (call)) == -FI_EAGAIN) { read_completions(); if (now_seconds() > deadline_) fail(what " timed out", ETIMEDOUT); } \
      if (r_) fail(what, (int)r_); \
      while (read_completions() == 0) if (now_seconds() > deadline_) fail(what " timed out", ETIMEDOUT); \
    } while (0)

  // Connect (the first operation to a tcp peer meets -FI_EAGAIN) before timing.
  POST_AND_WAIT(fi_write(ep, source, 1, desc, peer, remote_address, key, NULL), "fi_write");
  double start = now_seconds();
  if (strcmp(test, "lat-write") == 0) {
    for (long i = 0; i < iterations; i++) POST_AND_WAIT(fi_write(ep, source, size, desc, peer, remote_address, key, NULL), "fi_write");
  } else if (strcmp(test, "lat-read") == 0) {
    for (long i = 0; i < iterations; i++) POST_AND_WAIT(fi_read(ep, sink, size, desc, peer, remote_address, key, NULL), "fi_read");
  } else if (strcmp(test, "rate") == 0 || strcmp(test, "bw") == 0) {
    // A window of writes in flight: post while there is room, then read completions.
    long posted = 0, done = 0;
    double deadline = now_seconds() + timeout + iterations * 0.001;
    while (done < iterations) {
      while (posted < iterations && posted - done < window) {
        ssize_t r = fi_write(ep, source, size, desc, peer, remote_address, key, NULL);
        if (r == -FI_EAGAIN) break;
        if (r) fail("fi_write", (int)r);
        posted++;
      }
      done += read_completions();
      if (now_seconds() > deadline) fail("window timed out", ETIMEDOUT);
    }
  } else if (strcmp(test, "check") == 0) {
    for (long i = 0; i < iterations; i++) {
      if (pause_ms > 0 && i > 0) usleep(pause_ms * 1000);
      for (size_t b = 0; b < size; b++) source[b] = pattern_byte((unsigned)i, b);
      memset(sink, 0, size);
      POST_AND_WAIT(fi_write(ep, source, size, desc, peer, remote_address, key, NULL), "fi_write");
      POST_AND_WAIT(fi_read(ep, sink, size, desc, peer, remote_address, key, NULL), "fi_read");
      if (memcmp(source, sink, size) != 0) fail("read back differs from what was written", EIO);
    }
  } else {
    fail("unknown --test", EINVAL);
  }
  double seconds = now_seconds() - start;
  printf("{\"ok\":true,\"test\":\"%s\",\"provider\":\"%s\",\"bytes\":%zu,\"iterations\":%ld,\"window\":%d,"
         "\"seconds\":%.9f,\"usecPerOp\":%.4f,\"mbPerSec\":%.2f}\n",
         test, info->fabric_attr->prov_name, size, iterations, window, seconds, seconds * 1e6 / iterations,
         (double)size * iterations / seconds / 1e6);
  fflush(stdout);
  close_fabric(mr, buffer);
  return 0;
}

static void *idle_thread(void *unused) {
  for (;;) pause();
  return unused;
}

static int run_registration(int argc, char **argv) {
  size_t size = strtoull(option(argc, argv, "--size", "4096"), NULL, 10);
  long iterations = strtol(option(argc, argv, "--iterations", "100000"), NULL, 10);
  long threads = strtol(option(argc, argv, "--threads", "1"), NULL, 10);
  for (long t = 1; t < threads; t++) {
    pthread_t thread;
    if (pthread_create(&thread, NULL, idle_thread, NULL)) fail("pthread_create", EAGAIN);
  }
  open_rdm_endpoint(argv[2], option(argc, argv, "--node", NULL), FI_MSG | FI_RMA, FI_CQ_FORMAT_DATA, 1, 0); // registration only
  void *buffer;
  if (posix_memalign(&buffer, 4096, size)) fail("posix_memalign", ENOMEM);
  memset(buffer, 0, size);
  uint64_t access = FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE;
  double start = now_seconds();
  for (long i = 0; i < iterations; i++) {
    struct fid_mr *mr;
    int ret = fi_mr_reg(domain, buffer, size, access, 0, (uint64_t)i + 1, 0, &mr, NULL);
    if (ret) fail("fi_mr_reg", ret);
    if ((ret = fi_close(&mr->fid))) fail("fi_close", ret);
  }
  double seconds = now_seconds() - start;
  printf("{\"ok\":true,\"test\":\"mr\",\"provider\":\"%s\",\"bytes\":%zu,\"iterations\":%ld,\"threads\":%ld,\"nsPerPair\":%.2f}\n",
         info->fabric_attr->prov_name, size, iterations, threads, seconds * 1e9 / iterations);
  close_rdm_endpoint();
  free(buffer);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: rma-peer target|initiator|mr <provider> [options] (see the header of rma-peer.c)\n");
    return 2;
  }
  if (strcmp(argv[1], "target") == 0) return run_target(argc, argv);
  if (strcmp(argv[1], "initiator") == 0) return run_initiator(argc, argv);
  if (strcmp(argv[1], "mr") == 0) return run_registration(argc, argv);
  fprintf(stderr, "unknown mode %s\n", argv[1]);
  return 2;
}
