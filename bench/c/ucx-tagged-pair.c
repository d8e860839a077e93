// ucx-tagged-pair: alloctools' C reference for tagged messages over UCX, both sides of the loops the
// messaging bench times (bench/suites/messaging.ts), the UCX twin of tagged-pair.c. It opens UCP
// with the tag feature and one single-threaded worker, as UcxEndpoint does, and busy-progresses.
// Messages are what a C programmer writes: ucp_tag_send_nbx and ucp_tag_recv_nbx from and into one
// buffer, each request waited for by ucp_worker_progress; tags follow docs/messaging.md's UCX wire
// format ((tag << 32) | sender id, the id FNV-1a 32 of the sender's worker address; receives from
// the peer match all 64 bits).
//
//   ucx-tagged-pair responder <UCX_TLS> [--net-devices D] TESTS
//       Prints {"ready":true,"name":"<hex worker address>"}, takes the initiator's address from
//       its first message (tag HELLO, from any sender), runs the tests' other side, prints {"ok":true}.
//   ucx-tagged-pair initiator <UCX_TLS> --name HEX [--net-devices D] TESTS
//       Sends its address to the responder, runs the tests, prints one JSON line for each.
// TESTS and the JSON lines are tagged-pair.c's: lat S I W (ping-pong), window S N I W (osu_bw).
//
// Build: cc -O2 -o ucx-tagged-pair ucx-tagged-pair.c -lucp -lucs
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ucp/api/ucp.h>

#define HELLO_TAG 1ull
#define DATA_TAG 7ull
#define ACK_TAG 8ull
#define BYE_TAG 9ull
#define ACK_BYTES 4
#define MAX_WINDOW 1024
#define MAX_ADDRESS 4096

static ucp_context_h context;
static ucp_worker_h worker;
static ucp_ep_h ep;
static unsigned char *buffer;
static uint32_t own_id, peer_id;
static ucp_address_t *own_address;
static size_t own_address_length;

static void fail(const char *what, ucs_status_t status) {
  printf("{\"error\":\"%s: %s\"}\n", what, ucs_status_string(status));
  fflush(stdout);
  exit(1);
}

static const char *option(int argc, char **argv, const char *name, const char *fallback) {
  for (int i = 0; i + 1 < argc; i++)
    if (strcmp(argv[i], name) == 0) return argv[i + 1];
  return fallback;
}

static double now_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static uint32_t sender_id(const unsigned char *address, size_t length) {
  uint32_t id = 2166136261u;
  for (size_t i = 0; i < length; i++) {
    id ^= address[i];
    id *= 16777619u;
  }
  return id;
}

static void open_ucp(const char *transports, const char *net_devices, size_t bytes) {
  setenv("UCX_TLS", transports, 1);
  if (net_devices) setenv("UCX_NET_DEVICES", net_devices, 1);
  ucp_config_t *config;
  ucs_status_t status = ucp_config_read(NULL, NULL, &config);
  if (status != UCS_OK) fail("ucp_config_read", status);
  ucp_params_t params = { .field_mask = UCP_PARAM_FIELD_FEATURES, .features = UCP_FEATURE_TAG };
  status = ucp_init(&params, config, &context);
  ucp_config_release(config);
  if (status != UCS_OK) fail("ucp_init", status);
  ucp_worker_params_t worker_params = { .field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE, .thread_mode = UCS_THREAD_MODE_SINGLE };
  if ((status = ucp_worker_create(context, &worker_params, &worker)) != UCS_OK) fail("ucp_worker_create", status);
  if ((status = ucp_worker_get_address(worker, &own_address, &own_address_length)) != UCS_OK) fail("ucp_worker_get_address", status);
  own_id = sender_id((const unsigned char *)own_address, own_address_length);
  if (posix_memalign((void **)&buffer, 4096, bytes)) fail("posix_memalign", UCS_ERR_NO_MEMORY);
  memset(buffer, 0x5a, bytes);
}

static ucs_status_t wait_request(void *request) {
  if (request == NULL) return UCS_OK;
  if (UCS_PTR_IS_ERR(request)) return UCS_PTR_STATUS(request);
  ucs_status_t status;
  while ((status = ucp_request_check_status(request)) == UCS_INPROGRESS) ucp_worker_progress(worker);
  ucp_request_free(request);
  return status;
}

static void *post_send(const void *data, size_t size, uint64_t tag) {
  ucp_request_param_t param = { 0 };
  void *request = ucp_tag_send_nbx(ep, data, size, (tag << 32) | own_id, &param);
  if (UCS_PTR_IS_ERR(request)) fail("ucp_tag_send_nbx", UCS_PTR_STATUS(request));
  return request;
}

static void *post_receive(void *data, size_t size, uint64_t tag) {
  ucp_request_param_t param = { 0 };
  void *request = ucp_tag_recv_nbx(worker, data, size, (tag << 32) | peer_id, 0xffffffffffffffffull, &param);
  if (UCS_PTR_IS_ERR(request)) fail("ucp_tag_recv_nbx", UCS_PTR_STATUS(request));
  return request;
}

static void connect_to(const unsigned char *address) {
  ucp_ep_params_t params = { .field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS, .address = (const ucp_address_t *)address };
  ucs_status_t status = ucp_ep_create(worker, &params, &ep);
  if (status != UCS_OK) fail("ucp_ep_create", status);
}

// The responder learns the initiator's address from its first message, received from any sender.
static void accept_initiator(void) {
  static unsigned char address[MAX_ADDRESS];
  ucp_request_param_t param = { .op_attr_mask = UCP_OP_ATTR_FIELD_RECV_INFO };
  ucp_tag_recv_info_t info = { 0 };
  // recv_info is filled only when the receive completes at once; otherwise the request tells it.
  param.recv_info.tag_info = &info;
  void *request = ucp_tag_recv_nbx(worker, address, sizeof address, HELLO_TAG << 32, 0xffffffff00000000ull, &param);
  if (UCS_PTR_IS_ERR(request)) fail("ucp_tag_recv_nbx hello", UCS_PTR_STATUS(request));
  if (request != NULL) {
    ucs_status_t status;
    while ((status = ucp_tag_recv_request_test(request, &info)) == UCS_INPROGRESS) ucp_worker_progress(worker);
    ucp_request_free(request);
    if (status != UCS_OK) fail("hello", status);
  }
  peer_id = sender_id(address, info.length);
  connect_to(address);
}

static void greet_responder(const char *hex) {
  static unsigned char address[MAX_ADDRESS];
  size_t length = strlen(hex) / 2;
  if (length > sizeof address) length = sizeof address;
  for (size_t i = 0; i < length; i++) sscanf(hex + 2 * i, "%2hhx", &address[i]);
  peer_id = sender_id(address, length);
  connect_to(address);
  ucs_status_t status = wait_request(post_send(own_address, own_address_length, HELLO_TAG));
  if (status != UCS_OK) fail("hello", status);
}

static void print_name(void) {
  printf("{\"ready\":true,\"name\":\"");
  for (size_t i = 0; i < own_address_length; i++) printf("%02x", ((unsigned char *)own_address)[i]);
  printf("\"}\n");
  fflush(stdout);
}

static void check(const char *what, ucs_status_t status) {
  if (status != UCS_OK) fail(what, status);
}

// One ping-pong iteration of either side, in the order of UcxEndpoint's sendSync then recvSync.
static void ping_pong(int initiator, size_t size) {
  if (initiator) {
    check("send", wait_request(post_send(buffer, size, DATA_TAG)));
    check("receive", wait_request(post_receive(buffer, size, DATA_TAG)));
  } else {
    check("receive", wait_request(post_receive(buffer, size, DATA_TAG)));
    check("send", wait_request(post_send(buffer, size, DATA_TAG)));
  }
}

// One osu_bw iteration of either side: a window of messages one way, an ack back.
static void window_round(int initiator, size_t size, int window) {
  void *requests[MAX_WINDOW];
  if (initiator) {
    for (int i = 0; i < window; i++) requests[i] = post_send(buffer, size, DATA_TAG);
    for (int i = 0; i < window; i++) check("send", wait_request(requests[i]));
    check("ack", wait_request(post_receive(buffer, ACK_BYTES, ACK_TAG)));
  } else {
    for (int i = 0; i < window; i++) requests[i] = post_receive(buffer, size, DATA_TAG);
    for (int i = 0; i < window; i++) check("receive", wait_request(requests[i]));
    check("ack", wait_request(post_send(buffer, ACK_BYTES, ACK_TAG)));
  }
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void latency_test(int initiator, size_t size, long iterations, long warmup) {
  double *samples = malloc(sizeof(double) * (size_t)iterations);
  for (long i = 0; i < warmup; i++) ping_pong(initiator, size);
  for (long i = 0; i < iterations; i++) {
    double start = now_seconds();
    ping_pong(initiator, size);
    samples[i] = (now_seconds() - start) * 1e9;
  }
  if (initiator) {
    double sum = 0;
    for (long i = 0; i < iterations; i++) sum += samples[i];
    qsort(samples, (size_t)iterations, sizeof(double), by_value);
    printf("{\"ok\":true,\"test\":\"lat\",\"bytes\":%zu,\"iterations\":%ld,\"medianNs\":%.1f,\"meanNs\":%.1f,\"p99Ns\":%.1f}\n", size, iterations,
           samples[(iterations - 1) / 2] / 2, sum / iterations / 2, samples[(long)(iterations * 0.99)] / 2);
    fflush(stdout);
  }
  free(samples);
}

static void window_test(int initiator, size_t size, int window, long iterations, long warmup) {
  for (long i = 0; i < warmup; i++) window_round(initiator, size, window);
  double start = now_seconds();
  for (long i = 0; i < iterations; i++) window_round(initiator, size, window);
  double seconds = now_seconds() - start;
  if (initiator) {
    double messages = (double)iterations * window;
    printf("{\"ok\":true,\"test\":\"window\",\"bytes\":%zu,\"window\":%d,\"iterations\":%ld,\"seconds\":%.9f,\"mbPerSec\":%.2f,\"messagesPerSec\":%.1f}\n",
           size, window, iterations, seconds, messages * size / seconds / 1e6, messages / seconds);
    fflush(stdout);
  }
}

static int first_test(int argc, char **argv) {
  for (int a = 3; a < argc; a++)
    if (strcmp(argv[a], "lat") == 0 || strcmp(argv[a], "window") == 0) return a;
  return argc;
}

static size_t largest_message(int argc, char **argv) {
  size_t largest = 4096;
  for (int a = first_test(argc, argv); a < argc;) {
    int window_group = strcmp(argv[a], "window") == 0;
    int length = window_group ? 5 : 4;
    if ((!window_group && strcmp(argv[a], "lat") != 0) || a + length > argc) fail("test groups (lat S I W | window S N I W)", UCS_ERR_INVALID_PARAM);
    if (window_group && (atoi(argv[a + 2]) < 1 || atoi(argv[a + 2]) > MAX_WINDOW)) fail("window (1..1024)", UCS_ERR_INVALID_PARAM);
    size_t size = strtoull(argv[a + 1], NULL, 10);
    if (size > largest) largest = size;
    a += length;
  }
  return largest;
}

// Both sides end together: the initiator's BYE tells the responder the tests are over, so that
// neither closes its endpoint while the other still needs it.
static void close_ucp(int initiator) {
  if (initiator) check("bye", wait_request(post_send(buffer, 0, BYE_TAG)));
  else check("bye", wait_request(post_receive(buffer, 0, BYE_TAG)));
  ucp_request_param_t param = { .op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS, .flags = UCP_EP_CLOSE_FLAG_FORCE };
  wait_request(ucp_ep_close_nbx(ep, &param));
  ucp_worker_release_address(worker, own_address);
  ucp_worker_destroy(worker);
  ucp_cleanup(context);
  free(buffer);
}

int main(int argc, char **argv) {
  if (argc < 3 || (strcmp(argv[1], "responder") != 0 && strcmp(argv[1], "initiator") != 0)) {
    fprintf(stderr, "usage: ucx-tagged-pair responder|initiator <UCX_TLS> [options] tests (see the header of ucx-tagged-pair.c)\n");
    return 2;
  }
  int initiator = strcmp(argv[1], "initiator") == 0;
  open_ucp(argv[2], option(argc, argv, "--net-devices", NULL), largest_message(argc, argv));
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
  close_ucp(initiator);
  if (!initiator) printf("{\"ok\":true}\n");
  fflush(stdout);
  return 0;
}
