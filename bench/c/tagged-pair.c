// tagged-pair: alloctools' C reference for tagged messages over libfabric, both sides of the loops
// the messaging bench times (bench/suites/messaging.ts). It opens libfabric as Endpoint does
// (FI_EP_RDM; caps FI_MSG|FI_RMA|FI_TAGGED|FI_SOURCE|FI_DIRECTED_RECV|FI_ATOMIC, the library's
// first capability tier; FI_THREAD_SAFE; the same mr_mode bits; FI_DELIVERY_COMPLETE in the
// default op_flags; one FI_CQ_FORMAT_TAGGED completion queue without wait object; FI_AV_TABLE),
// registers one buffer, and busy-polls. Messages are what a C programmer writes: fi_tinject up to
// tx_attr->inject_size, fi_tsend above it, fi_trecv into one buffer; the tag is the wire format's
// (docs/messaging.md: 32 bits in the low half).
//
//   tagged-pair responder <provider> [--node N] TESTS
//       Prints {"ready":true,"name":"<hex>","inject":<inject_size>}, takes the initiator's name
//       from its first message (tag HELLO), runs the tests' other side, prints {"ok":true}.
//   tagged-pair initiator <provider> --name HEX [--node N] TESTS
//       Sends its name to the responder, runs the tests, prints one JSON line for each.
//
// TESTS is a sequence of groups, run in order by one pair (a process pair costs ~0.3 s of
// fi_getinfo each), every one after W untimed iterations of itself:
//   lat S I W       ping-pong: the initiator sends S bytes and waits for its send, then posts its
//                   receive and waits for the answer; the responder waits in a posted receive, then
//                   answers the same way (the order of Endpoint's sendSync then recvSync). Each of the
//                   I iterations is timed: {"medianNs": half round trip p50, "meanNs", "p99Ns"}.
//   window S N I W  osu_bw's loop: per iteration the initiator posts N sends of S bytes from one
//                   buffer, waits for all, then receives a 4-byte ack; the responder posts N receives
//                   into one buffer, waits for all, and sends the ack. {"seconds", "mbPerSec" (1e6
//                   bytes), "messagesPerSec"}.
// Exit 1 with {"error"} on failure.
//
// Build: cc -O2 -I bench/c -o tagged-pair tagged-pair.c -lfabric
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_tagged.h>
#include "fabric-common.h"
#include "fabric-endpoint.h"

// The capabilities Endpoint asks for first (its first tier).
#define CAPS (FI_MSG | FI_RMA | FI_TAGGED | FI_SOURCE | FI_DIRECTED_RECV | FI_ATOMIC)
#define HELLO_TAG 1
#define DATA_TAG 7
#define ACK_TAG 8
#define ACK_BYTES 4
#define MAX_WINDOW 1024
#define CQ_BATCH 64

static struct fid_mr *mr;
static void *desc;
static unsigned char *buffer;
static size_t inject_size;
static fi_addr_t peer;
// Completions owed: sends (not injects) and receives posted and not yet read.
static long pending;

// The endpoint, and one buffer of `bytes` registered for sends and receives (its desc for every message).
static void open_fabric(const char *provider, const char *node, size_t bytes) {
  int ret;
  open_rdm_endpoint(provider, node, CAPS, FI_CQ_FORMAT_TAGGED, 1, 1);
  inject_size = info->tx_attr->inject_size;
  if (posix_memalign((void **)&buffer, 4096, bytes)) fail("posix_memalign", -FI_ENOMEM);
  memset(buffer, 0x5a, bytes);
  if ((ret = fi_mr_reg(domain, buffer, bytes, FI_SEND | FI_RECV, 0, 1, 0, &mr, NULL))) fail("fi_mr_reg", ret);
  if (info->domain_attr->mr_mode & FI_MR_ENDPOINT) {
    if ((ret = fi_mr_bind(mr, &ep->fid, 0))) fail("fi_mr_bind", ret);
    if ((ret = fi_mr_enable(mr))) fail("fi_mr_enable", ret);
  }
  desc = fi_mr_desc(mr);
}

static void close_fabric(void) {
  fi_close(&mr->fid);
  close_rdm_endpoint();
  free(buffer);
}

// Reads up to CQ_BATCH completions; returns how many; fails on an error completion.
static int read_completions(void) {
  struct fi_cq_tagged_entry entries[CQ_BATCH];
  ssize_t n = fi_cq_read(cq, entries, CQ_BATCH);
  if (n > 0) return (int)n;
  if (n == -FI_EAGAIN) return 0;
  if (n == -FI_EAVAIL) {
    struct fi_cq_err_entry err = { 0 };
    fi_cq_readerr(cq, &err, 0);
    printf("{\"error\":\"completion: %s (len %zu, olen %zu)\"}\n", fi_strerror(err.err), err.len, err.olen);
    fflush(stdout);
    exit(1);
  }
  fail("fi_cq_read", (int)n);
  return 0;
}

// Posts until the call is not -FI_EAGAIN (a connection being made, a full queue), progressing meanwhile.
#define POST(what, call)                                   \
  do {                                                     \
    ssize_t ret_;                                          \
    while ((ret_ = (call)) == -FI_EAGAIN) pending -= read_completions(); \
    if (ret_) fail(what, (int)ret_);                       \
  } while (0)

static void wait_all(void) {
  while (pending > 0) pending -= read_completions();
}

static void send_message(size_t size, uint64_t tag) {
  if (size <= inject_size) {
    POST("fi_tinject", fi_tinject(ep, buffer, size, peer, tag));
  } else {
    POST("fi_tsend", fi_tsend(ep, buffer, size, desc, peer, tag, NULL));
    pending++;
  }
}

static void post_receive(size_t size, uint64_t tag) {
  POST("fi_trecv", fi_trecv(ep, buffer, size, desc, peer, tag, 0, NULL));
  pending++;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void print_name(void) {
  unsigned char name[256];
  size_t length = sizeof name;
  int ret = fi_getname(&ep->fid, name, &length);
  if (ret) fail("fi_getname", ret);
  printf("{\"ready\":true,\"provider\":\"%s\",\"inject\":%zu,\"name\":\"", info->fabric_attr->prov_name, inject_size);
  for (size_t i = 0; i < length; i++) printf("%02x", name[i]);
  printf("\"}\n");
  fflush(stdout);
}

static size_t from_hex(const char *hex, unsigned char *out, size_t capacity) {
  size_t n = strlen(hex) / 2;
  if (n > capacity) n = capacity;
  for (size_t i = 0; i < n; i++) sscanf(hex + 2 * i, "%2hhx", &out[i]);
  return n;
}

static void insert(const unsigned char *name) {
  if (fi_av_insert(av, name, 1, &peer, 0, NULL) != 1) fail("fi_av_insert", -FI_EINVAL);
}

// The responder learns the initiator's name from its first message, received from any source.
static void accept_initiator(void) {
  struct fi_cq_tagged_entry entry;
  ssize_t ret;
  while ((ret = fi_trecv(ep, buffer, 256, desc, FI_ADDR_UNSPEC, HELLO_TAG, 0, NULL)) == -FI_EAGAIN) read_completions();
  if (ret) fail("fi_trecv hello", (int)ret);
  for (;;) {
    ssize_t n = fi_cq_read(cq, &entry, 1);
    if (n == 1) break;
    if (n != -FI_EAGAIN) fail("fi_cq_read hello", (int)n);
  }
  unsigned char name[256];
  memcpy(name, buffer, entry.len < sizeof name ? entry.len : sizeof name);
  insert(name);
}

static void greet_responder(const char *hex) {
  unsigned char name[256];
  from_hex(hex, name, sizeof name);
  insert(name);
  size_t length = 256;
  int ret = fi_getname(&ep->fid, buffer, &length);
  if (ret) fail("fi_getname", ret);
  POST("fi_tsend hello", fi_tsend(ep, buffer, length, desc, peer, HELLO_TAG, NULL));
  pending++;
  wait_all();
}

// One ping-pong iteration of either side.
static void ping_pong(int initiator, size_t size) {
  if (initiator) {
    send_message(size, DATA_TAG);
    wait_all();
    post_receive(size, DATA_TAG);
    wait_all();
  } else {
    post_receive(size, DATA_TAG);
    wait_all();
    send_message(size, DATA_TAG);
    wait_all();
  }
}

// One osu_bw iteration of either side: a window of messages one way, an ack back.
static void window_round(int initiator, size_t size, int window) {
  if (initiator) {
    for (int i = 0; i < window; i++) send_message(size, DATA_TAG);
    wait_all();
    post_receive(ACK_BYTES, ACK_TAG);
    wait_all();
  } else {
    for (int i = 0; i < window; i++) post_receive(size, DATA_TAG);
    wait_all();
    send_message(ACK_BYTES, ACK_TAG);
    wait_all();
  }
}

static void report_latency(double *samples, size_t size, long iterations) {
  double sum = 0;
  for (long i = 0; i < iterations; i++) sum += samples[i];
  qsort(samples, (size_t)iterations, sizeof(double), by_value);
  printf("{\"ok\":true,\"test\":\"lat\",\"provider\":\"%s\",\"bytes\":%zu,\"iterations\":%ld,\"medianNs\":%.1f,\"meanNs\":%.1f,\"p99Ns\":%.1f}\n",
         info->fabric_attr->prov_name, size, iterations, samples[(iterations - 1) / 2] / 2, sum / iterations / 2,
         samples[(long)(iterations * 0.99)] / 2);
  fflush(stdout);
}

static void latency_test(int initiator, size_t size, long iterations, long warmup) {
  double *samples = malloc(sizeof(double) * (size_t)iterations);
  for (long i = 0; i < warmup; i++) ping_pong(initiator, size);
  for (long i = 0; i < iterations; i++) {
    double start = now_seconds();
    ping_pong(initiator, size);
    samples[i] = (now_seconds() - start) * 1e9;
  }
  if (initiator) report_latency(samples, size, iterations);
  free(samples);
}

static void window_test(int initiator, size_t size, int window, long iterations, long warmup) {
  for (long i = 0; i < warmup; i++) window_round(initiator, size, window);
  double start = now_seconds();
  for (long i = 0; i < iterations; i++) window_round(initiator, size, window);
  double seconds = now_seconds() - start;
  if (initiator) {
    double messages = (double)iterations * window;
    printf("{\"ok\":true,\"test\":\"window\",\"provider\":\"%s\",\"bytes\":%zu,\"window\":%d,\"iterations\":%ld,\"seconds\":%.9f,"
           "\"mbPerSec\":%.2f,\"messagesPerSec\":%.1f}\n",
           info->fabric_attr->prov_name, size, window, iterations, seconds, messages * size / seconds / 1e6, messages / seconds);
    fflush(stdout);
  }
}

// The index of the first test group (the first "lat" or "window" argument), or argc.
static int first_test(int argc, char **argv) {
  for (int a = 3; a < argc; a++)
    if (strcmp(argv[a], "lat") == 0 || strcmp(argv[a], "window") == 0) return a;
  return argc;
}

// The largest message of the tests, for the buffer; fails on a malformed group.
static size_t largest_message(int argc, char **argv) {
  size_t largest = 4096;
  for (int a = first_test(argc, argv); a < argc;) {
    int window_group = strcmp(argv[a], "window") == 0;
    int length = window_group ? 5 : 4;
    if ((!window_group && strcmp(argv[a], "lat") != 0) || a + length > argc) fail("test groups (lat S I W | window S N I W)", -FI_EINVAL);
    size_t size = strtoull(argv[a + 1], NULL, 10);
    if (window_group && (atoi(argv[a + 2]) < 1 || atoi(argv[a + 2]) > MAX_WINDOW)) fail("window (1..1024)", -FI_EINVAL);
    if (size > largest) largest = size;
    a += length;
  }
  return largest;
}

int main(int argc, char **argv) {
  if (argc < 3 || (strcmp(argv[1], "responder") != 0 && strcmp(argv[1], "initiator") != 0)) {
    fprintf(stderr, "usage: tagged-pair responder|initiator <provider> [options] tests (see the header of tagged-pair.c)\n");
    return 2;
  }
  int initiator = strcmp(argv[1], "initiator") == 0;
  open_fabric(argv[2], option(argc, argv, "--node", NULL), largest_message(argc, argv));
  if (initiator) {
    greet_responder(option(argc, argv, "--name", ""));
  } else {
    print_name();
    accept_initiator();
  }
  for (int a = first_test(argc, argv); a < argc;) {
    if (strcmp(argv[a], "lat") == 0) {
      latency_test(initiator, strtoull(argv[a + 1], NULL, 10), atol(argv[a + 2]), atol(argv[a + 3]));
      a += 4;
    } else {
      window_test(initiator, strtoull(argv[a + 1], NULL, 10), atoi(argv[a + 2]), atol(argv[a + 3]), atol(argv[a + 4]));
      a += 5;
    }
  }
  if (!initiator) printf("{\"ok\":true}\n");
  fflush(stdout);
  close_fabric();
  return 0;
}
