// tagged-peer: a libfabric peer in C that talks to alloctools' Endpoint knowing only the wire
// format written in docs/messaging.md ("## libfabric"): FI_EP_RDM with FI_TAGGED, the 32-bit tag
// in the low half of the 64-bit libfabric tag (high half 0), a receive's mask in the low half of
// `ignore`, no header in the payload, the sender known by its fi_addr_t (FI_SOURCE); and remote
// atomics on 64-bit words (fi_fetch_atomic FI_SUM, FI_ATOMIC_READ, FI_UINT64) at the address and
// key of a RemoteRegion. It never links the library and shares no code with it.
//
//   tagged-peer <provider> [--node N]
//
// Prints {"ready":true,"name":"<hex>","inject":<tx_attr->inject_size>} and reads one command per
// line on stdin, answering each with one JSON line (exit 1 with {"error"} on failure):
//   insert <hex name>                          -> {"peer":<fi_addr_t>}
//   send <peer> <tag> <seed> <size>...         fi_tinject up to inject_size, else fi_tsend; one at a time -> {"ok":true}
//   recv <peer|-1> <tag> <ignore> <capacity> <seed> <count>
//                                              fi_trecv count times (FI_ADDR_UNSPEC for -1); message i is
//                                              checked against the pattern of seed + i
//                                              -> {"got":[{"length","tag","source","mismatch","guard"}...]}
//   fetchadd <peer> <address> <key> <count>    fi_fetch_atomic(FI_SUM, FI_UINT64) of 1, count times -> {"values":[...]}
//   read <peer> <address> <key>                fi_fetch_atomic(FI_ATOMIC_READ, FI_UINT64) -> {"value":"<u64>"}
//
// Build: cc -O2 -I bench/c -o tagged-peer tagged-peer.c -lfabric
#define _GNU_SOURCE
#include <inttypes.h>
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

#define BUFFER_BYTES ((size_t)80 << 20)
#define GUARD_BYTES 4096
#define SENTINEL 0xa5

static struct fi_info *info;
static struct fid_fabric *fabric;
static struct fid_domain *domain;
static struct fid_ep *ep;
static struct fid_cq *cq;
static struct fid_av *av;
static struct fid_mr *mr;
static unsigned char *buffer;
static uint64_t results[2];
static struct fid_mr *results_mr;

// The test pattern: byte i of the message with seed s (test/rma/pattern.ts).
static unsigned char pattern_byte(unsigned seed, size_t i) {
  return (unsigned char)((i * 131 + seed * 17 + (i >> 8) * 7 + 1) & 0xff);
}

static void open_fabric(const char *provider, const char *node) {
  struct fi_info *hints = fi_allocinfo();
  hints->caps = FI_TAGGED | FI_SOURCE | FI_DIRECTED_RECV | FI_ATOMIC;
  hints->ep_attr->type = FI_EP_RDM;
  hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY;
  hints->fabric_attr->prov_name = strdup(provider);
  int ret = fi_getinfo(FI_VERSION(1, 17), node, NULL, node ? FI_SOURCE : 0, hints, &info);
  fi_freeinfo(hints);
  if (ret) fail("fi_getinfo", ret);
  if ((ret = fi_fabric(info->fabric_attr, &fabric, NULL))) fail("fi_fabric", ret);
  if ((ret = fi_domain(fabric, info, &domain, NULL))) fail("fi_domain", ret);
  if ((ret = fi_endpoint(domain, info, &ep, NULL))) fail("fi_endpoint", ret);
  struct fi_cq_attr cq_attr = { .size = 256, .format = FI_CQ_FORMAT_TAGGED, .wait_obj = FI_WAIT_NONE };
  if ((ret = fi_cq_open(domain, &cq_attr, &cq, NULL))) fail("fi_cq_open", ret);
  struct fi_av_attr av_attr = { .type = FI_AV_TABLE, .count = 16 };
  if ((ret = fi_av_open(domain, &av_attr, &av, NULL))) fail("fi_av_open", ret);
  if ((ret = fi_ep_bind(ep, &cq->fid, FI_TRANSMIT | FI_RECV))) fail("fi_ep_bind cq", ret);
  if ((ret = fi_ep_bind(ep, &av->fid, 0))) fail("fi_ep_bind av", ret);
  if ((ret = fi_enable(ep))) fail("fi_enable", ret);
  // Local buffers are registered: providers with FI_MR_LOCAL need their descriptors.
  if (posix_memalign((void **)&buffer, 4096, BUFFER_BYTES + GUARD_BYTES)) fail("posix_memalign", -FI_ENOMEM);
  if ((ret = fi_mr_reg(domain, buffer, BUFFER_BYTES + GUARD_BYTES, FI_SEND | FI_RECV, 0, 1, 0, &mr, NULL))) fail("fi_mr_reg", ret);
  if ((ret = fi_mr_reg(domain, results, sizeof results, FI_READ | FI_WRITE, 0, 2, 0, &results_mr, NULL))) fail("fi_mr_reg results", ret);
}

static void close_fabric(void) {
  fi_close(&mr->fid);
  fi_close(&results_mr->fid);
  fi_close(&ep->fid);
  fi_close(&cq->fid);
  fi_close(&av->fid);
  fi_close(&domain->fid);
  fi_close(&fabric->fid);
  fi_freeinfo(info);
  free(buffer);
}

// Polls until one completion arrives; fails on an error completion. `source` gets its fi_addr_t.
static void wait_completion(struct fi_cq_tagged_entry *entry, fi_addr_t *source) {
  for (;;) {
    ssize_t n = fi_cq_readfrom(cq, entry, 1, source);
    if (n == 1) return;
    if (n == -FI_EAGAIN) continue;
    if (n == -FI_EAVAIL) {
      struct fi_cq_err_entry err = { 0 };
      fi_cq_readerr(cq, &err, 0);
      printf("{\"error\":\"completion: %s (len %zu, olen %zu)\"}\n", fi_strerror(err.err), err.len, err.olen);
      fflush(stdout);
      exit(1);
    }
    fail("fi_cq_readfrom", (int)n);
  }
}

// Posts with `post` until it is not -FI_EAGAIN (a connection being made), progressing meanwhile.
#define POST(what, call)                                             \
  do {                                                               \
    ssize_t ret_;                                                    \
    while ((ret_ = (call)) == -FI_EAGAIN) {                          \
      struct fi_cq_tagged_entry spare_;                              \
      if (fi_cq_read(cq, &spare_, 0) < -FI_EAGAIN) break;            \
    }                                                                \
    if (ret_) fail(what, (int)ret_);                                 \
  } while (0)

static void do_send(fi_addr_t peer, uint64_t tag, unsigned seed, size_t size) {
  for (size_t i = 0; i < size; i++) buffer[i] = pattern_byte(seed, i);
  if (size <= info->tx_attr->inject_size) {
    POST("fi_tinject", fi_tinject(ep, buffer, size, peer, tag));
    return; // no completion: the buffer is reusable at once
  }
  struct fi_cq_tagged_entry entry;
  fi_addr_t source;
  POST("fi_tsend", fi_tsend(ep, buffer, size, fi_mr_desc(mr), peer, tag, NULL));
  wait_completion(&entry, &source);
}

static void do_recv(fi_addr_t peer, uint64_t tag, uint64_t ignore, size_t capacity, unsigned seed, int count) {
  printf("{\"got\":[");
  for (int k = 0; k < count; k++) {
    memset(buffer, SENTINEL, capacity + GUARD_BYTES);
    struct fi_cq_tagged_entry entry;
    fi_addr_t source = FI_ADDR_NOTAVAIL;
    POST("fi_trecv", fi_trecv(ep, buffer, capacity, fi_mr_desc(mr), peer, tag, ignore, NULL));
    wait_completion(&entry, &source);
    long mismatch = -1, guard = -1;
    for (size_t i = 0; i < entry.len && mismatch < 0; i++)
      if (buffer[i] != pattern_byte(seed + k, i)) mismatch = (long)i;
    for (size_t i = entry.len; i < capacity + GUARD_BYTES && guard < 0; i++)
      if (buffer[i] != SENTINEL) guard = (long)i;
    printf("%s{\"length\":%zu,\"tag\":%" PRIu64 ",\"source\":%" PRId64 ",\"mismatch\":%ld,\"guard\":%ld}",
           k ? "," : "", entry.len, entry.tag, source == FI_ADDR_NOTAVAIL ? (int64_t)-1 : (int64_t)source, mismatch, guard);
  }
  printf("]}\n");
}

static uint64_t fetch(fi_addr_t peer, uint64_t address, uint64_t key, enum fi_op op) {
  struct fi_cq_tagged_entry entry;
  fi_addr_t source;
  results[0] = 1;
  POST("fi_fetch_atomic", fi_fetch_atomic(ep, &results[0], 1, fi_mr_desc(results_mr), &results[1], fi_mr_desc(results_mr),
                                          peer, address, key, FI_UINT64, op, NULL));
  wait_completion(&entry, &source);
  return results[1];
}

static size_t from_hex(const char *hex, unsigned char *out, size_t capacity) {
  size_t n = strlen(hex) / 2;
  if (n > capacity) n = capacity;
  for (size_t i = 0; i < n; i++) sscanf(hex + 2 * i, "%2hhx", &out[i]);
  return n;
}

int main(int argc, char **argv) {
  if (argc < 2) fail("usage: tagged-peer <provider> [--node N]", -FI_EINVAL);
  open_fabric(argv[1], option(argc, argv, "--node", NULL));
  char name[256];
  size_t name_length = sizeof name;
  int ret = fi_getname(&ep->fid, name, &name_length);
  if (ret) fail("fi_getname", ret);
  printf("{\"ready\":true,\"name\":\"");
  for (size_t i = 0; i < name_length; i++) printf("%02x", (unsigned char)name[i]);
  printf("\",\"inject\":%zu}\n", info->tx_attr->inject_size);
  fflush(stdout);

  static char line[1 << 16];
  while (fgets(line, sizeof line, stdin)) {
    char *words[64];
    int n = 0;
    for (char *w = strtok(line, " \n"); w && n < 64; w = strtok(NULL, " \n")) words[n++] = w;
    if (n == 0) continue;
    if (!strcmp(words[0], "insert") && n == 2) {
      unsigned char address[256];
      size_t length = from_hex(words[1], address, sizeof address);
      (void)length;
      fi_addr_t peer;
      if ((ret = fi_av_insert(av, address, 1, &peer, 0, NULL)) != 1) fail("fi_av_insert", ret);
      printf("{\"peer\":%" PRIu64 "}\n", peer);
    } else if (!strcmp(words[0], "send") && n >= 4) {
      for (int i = 4; i < n; i++) do_send(strtoull(words[1], 0, 10), strtoull(words[2], 0, 10), (unsigned)atoi(words[3]) + (i - 4), strtoull(words[i], 0, 10));
      printf("{\"ok\":true}\n");
    } else if (!strcmp(words[0], "recv") && n == 7) {
      long peer = strtol(words[1], 0, 10);
      do_recv(peer < 0 ? FI_ADDR_UNSPEC : (fi_addr_t)peer, strtoull(words[2], 0, 10), strtoull(words[3], 0, 10),
              strtoull(words[4], 0, 10), (unsigned)atoi(words[5]), atoi(words[6]));
    } else if (!strcmp(words[0], "fetchadd") && n == 5) {
      int count = atoi(words[4]);
      printf("{\"values\":[");
      for (int i = 0; i < count; i++)
        printf("%s%" PRIu64, i ? "," : "", fetch(strtoull(words[1], 0, 10), strtoull(words[2], 0, 10), strtoull(words[3], 0, 10), FI_SUM));
      printf("]}\n");
    } else if (!strcmp(words[0], "read") && n == 4) {
      printf("{\"value\":\"%" PRIu64 "\"}\n", fetch(strtoull(words[1], 0, 10), strtoull(words[2], 0, 10), strtoull(words[3], 0, 10), FI_ATOMIC_READ));
    } else {
      fail("unknown command", -FI_EINVAL);
    }
    fflush(stdout);
  }
  close_fabric();
  return 0;
}
