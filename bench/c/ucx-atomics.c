/* ucx-atomics: the C reference of the atomics bench over UCX, opened the way UcxProvider and
 * UcxEndpoint open theirs: ucp_init with UCP_FEATURE_TAG | RMA | AMO64 and mt_workers_shared, a
 * worker in UCS_THREAD_MODE_SINGLE, an ep without error handling, ucp_atomic_op_nbx on one 64-bit
 * word (ucp_dt_make_contig(8), a reply buffer), then ucp_worker_progress until the request is done.
 *
 *   ucx-atomics target <UCX_TLS> <UCX_NET_DEVICES or -> [--allocate]
 *       Maps a page holding the counter (--allocate: UCP_MEM_MAP_ALLOCATE, UCX's own memory, as
 *       UcxProvider's pool blocks over shared memory; else page-aligned memory of its own), prints
 *       one JSON line {name, address, rkey} (worker address and packed rkey in hex), then
 *       busy-progresses its worker (tcp and memory UCX did not allocate: the atomics are emulated
 *       here) until stdin closes.
 *   ucx-atomics initiator <UCX_TLS> <UCX_NET_DEVICES or -> --name HEX --address A --rkey HEX
 *               --operations fetchAdd,compareSwap --iterations I --warmup W
 *       For each operation: W, then I operations on the counter, each waited for before the next,
 *       each timed alone; one JSON line {ok, operation, iterations, p50, mean, p99} (ns,
 *       bench/c/latency-samples.h). fetchAdd is UCP_ATOMIC_OP_ADD of 1; compareSwap is
 *       UCP_ATOMIC_OP_CSWAP expecting the value the last one found and swapping in that plus one.
 *
 * Build: cc -O2 -o ucx-atomics ucx-atomics.c -lucp -lucs (bench/c/build.ts does it) */
#define _GNU_SOURCE
#include <inttypes.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucp/api/ucp.h>
#include "latency-samples.h"

#define TARGET_BYTES 4096

static ucp_context_h context;
static ucp_worker_h worker;

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

static void open_worker(const char *transports, const char *net_devices) {
  ucp_config_t *config;
  ucs_status_t status = ucp_config_read(NULL, NULL, &config);
  if (status != UCS_OK) fail("ucp_config_read", status);
  ucp_config_modify(config, "TLS", transports);
  if (strcmp(net_devices, "-") != 0) ucp_config_modify(config, "NET_DEVICES", net_devices);
  ucp_params_t params = {
    .field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED,
    .features = UCP_FEATURE_TAG | UCP_FEATURE_RMA | UCP_FEATURE_AMO64,
    .mt_workers_shared = 1,
  };
  status = ucp_init(&params, config, &context);
  ucp_config_release(config);
  if (status != UCS_OK) fail("ucp_init", status);
  ucp_worker_params_t worker_params = { .field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE, .thread_mode = UCS_THREAD_MODE_SINGLE };
  if ((status = ucp_worker_create(context, &worker_params, &worker)) != UCS_OK) fail("ucp_worker_create", status);
}

static void print_hex(const void *bytes, size_t length) {
  for (size_t i = 0; i < length; i++) printf("%02x", ((const uint8_t *)bytes)[i]);
}

static size_t from_hex(const char *hex, uint8_t *out, size_t capacity) {
  size_t n = strlen(hex) / 2;
  if (n > capacity) n = capacity;
  for (size_t i = 0; i < n; i++) sscanf(hex + 2 * i, "%2hhx", &out[i]);
  return n;
}

static int run_target(int argc, char **argv) {
  open_worker(argv[2], argv[3]);
  int allocate = 0;
  for (int i = 4; i < argc; i++) allocate |= strcmp(argv[i], "--allocate") == 0;
  void *own = NULL;
  if (!allocate && posix_memalign(&own, 4096, TARGET_BYTES)) fail("posix_memalign", UCS_ERR_NO_MEMORY);
  if (own != NULL) memset(own, 0, TARGET_BYTES);
  ucp_mem_map_params_t map = {
    .field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH | UCP_MEM_MAP_PARAM_FIELD_FLAGS | UCP_MEM_MAP_PARAM_FIELD_PROT,
    .address = own, .length = TARGET_BYTES, .flags = allocate ? UCP_MEM_MAP_ALLOCATE : 0,
    .prot = UCP_MEM_MAP_PROT_LOCAL_READ | UCP_MEM_MAP_PROT_LOCAL_WRITE | UCP_MEM_MAP_PROT_REMOTE_READ | UCP_MEM_MAP_PROT_REMOTE_WRITE,
  };
  ucp_mem_h memory;
  ucs_status_t status = ucp_mem_map(context, &map, &memory);
  if (status != UCS_OK) fail("ucp_mem_map", status);
  ucp_mem_attr_t attributes = { .field_mask = UCP_MEM_ATTR_FIELD_ADDRESS };
  if ((status = ucp_mem_query(memory, &attributes)) != UCS_OK) fail("ucp_mem_query", status);
  memset(attributes.address, 0, 8);
  void *rkey;
  size_t rkey_length;
  if ((status = ucp_rkey_pack(context, memory, &rkey, &rkey_length)) != UCS_OK) fail("ucp_rkey_pack", status);
  ucp_address_t *address;
  size_t address_length;
  if ((status = ucp_worker_get_address(worker, &address, &address_length)) != UCS_OK) fail("ucp_worker_get_address", status);
  printf("{\"name\":\"");
  print_hex(address, address_length);
  printf("\",\"address\":\"%" PRIu64 "\",\"rkey\":\"", (uint64_t)(uintptr_t)attributes.address);
  print_hex(rkey, rkey_length);
  printf("\",\"allocated\":%s}\n", allocate ? "true" : "false");
  fflush(stdout);
  struct pollfd input = { .fd = 0, .events = POLLIN };
  for (unsigned long turn = 0;; turn++) {
    ucp_worker_progress(worker);
    // stdin closing (or any line on it) ends the target; checked every 4096 turns.
    if ((turn & 4095) == 0 && poll(&input, 1, 0) > 0) break;
  }
  ucp_rkey_buffer_release(rkey);
  ucp_worker_release_address(worker, address);
  ucp_mem_unmap(context, memory);
  ucp_worker_destroy(worker);
  ucp_cleanup(context);
  free(own);
  return 0;
}

static ucp_ep_h ep;
static ucp_rkey_h rkey;
static uint64_t remote_address;
// Operand, compare value and result, as the engine's cell lays them out.
static uint64_t cell[3];

// Posts and progresses until done; the value found.
static uint64_t atomic_once(int compare_swap) {
  ucp_request_param_t param = { .op_attr_mask = UCP_OP_ATTR_FIELD_DATATYPE | UCP_OP_ATTR_FIELD_REPLY_BUFFER,
                                .datatype = ucp_dt_make_contig(8), .reply_buffer = &cell[2] };
  void *request;
  if (compare_swap) {
    cell[2] = cell[0]; // CSWAP: the reply buffer holds the value to swap in, then the value found
    request = ucp_atomic_op_nbx(ep, UCP_ATOMIC_OP_CSWAP, &cell[1], 1, remote_address, rkey, &param);
  } else {
    request = ucp_atomic_op_nbx(ep, UCP_ATOMIC_OP_ADD, &cell[0], 1, remote_address, rkey, &param);
  }
  if (request == NULL) return cell[2];
  if (UCS_PTR_IS_ERR(request)) fail("ucp_atomic_op_nbx", UCS_PTR_STATUS(request));
  ucs_status_t status;
  while ((status = ucp_request_check_status(request)) == UCS_INPROGRESS) ucp_worker_progress(worker);
  ucp_request_free(request);
  if (status != UCS_OK) fail("ucp_atomic_op_nbx completion", status);
  return cell[2];
}

static void measure(const char *operation, long iterations, long warmup) {
  int compare_swap = strcmp(operation, "compareSwap") == 0;
  if (!compare_swap && strcmp(operation, "fetchAdd") != 0) fail("--operations takes fetchAdd and compareSwap", UCS_ERR_INVALID_PARAM);
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
  remote_address = strtoull(option(argc, argv, "--address", "0"), NULL, 10);
  if (iterations < 1 || warmup < 0) fail("--iterations, --warmup", UCS_ERR_INVALID_PARAM);
  open_worker(argv[2], argv[3]);
  static uint8_t name[8192], blob[8192];
  if (from_hex(option(argc, argv, "--name", ""), name, sizeof name) == 0) fail("--name", UCS_ERR_INVALID_PARAM);
  if (from_hex(option(argc, argv, "--rkey", ""), blob, sizeof blob) == 0) fail("--rkey", UCS_ERR_INVALID_PARAM);
  ucp_ep_params_t ep_params = { .field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE,
                                .address = (const ucp_address_t *)name, .err_mode = UCP_ERR_HANDLING_MODE_NONE };
  ucs_status_t status = ucp_ep_create(worker, &ep_params, &ep);
  if (status != UCS_OK) fail("ucp_ep_create", status);
  if ((status = ucp_ep_rkey_unpack(ep, blob, &rkey)) != UCS_OK) fail("ucp_ep_rkey_unpack", status);
  for (char *saved, *operation = strtok_r(operations, ",", &saved); operation != NULL; operation = strtok_r(NULL, ",", &saved))
    measure(operation, iterations, warmup);
  ucp_rkey_destroy(rkey);
  ucp_request_param_t close_params = { .op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS, .flags = UCP_EP_CLOSE_FLAG_FORCE };
  void *request = ucp_ep_close_nbx(ep, &close_params);
  if (UCS_PTR_IS_PTR(request)) {
    while (ucp_request_check_status(request) == UCS_INPROGRESS) ucp_worker_progress(worker);
    ucp_request_free(request);
  }
  ucp_worker_destroy(worker);
  ucp_cleanup(context);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: ucx-atomics target|initiator <UCX_TLS> <UCX_NET_DEVICES or -> [options] (see the header of ucx-atomics.c)\n");
    return 2;
  }
  if (strcmp(argv[1], "target") == 0) return run_target(argc, argv);
  if (strcmp(argv[1], "initiator") == 0) return run_initiator(argc, argv);
  fprintf(stderr, "unknown mode %s\n", argv[1]);
  return 2;
}
