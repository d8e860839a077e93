// rma-threads: how RMA message rate scales with threads in one process, in C, for the Workers
// bench (bench/suites/workers.ts). Each thread opens its own endpoint, completion queue and address
// vector, like an Endpoint in each Worker, on one shared domain (FI_THREAD_SAFE, as a shared pool's
// Workers do) or on a domain of its own, and writes `size` bytes to its own address with `window`
// writes in flight and FI_DELIVERY_COMPLETE, busy-polling its completion queue.
//
//   rma-threads <provider> --threads T --writes N [--size S] [--window W] [--own-domains]
//       Prints one JSON line: {"ok":true, "threads", "writesPerSecond"} (all threads together,
//       timed from a common start to the last thread's end); {"error"} and exit 1 on failure.
//
// Build: cc -O2 -o rma-threads rma-threads.c -lfabric -lpthread
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include "fabric-common.h"

#define MAX_THREADS 16
#define CQ_BATCH 64

static struct fi_info *info;
static struct fid_fabric *fabric;
static struct fid_domain *shared_domain;
static long writes_per_thread;
static size_t size;
static int window;
static pthread_barrier_t start_line;

// One thread's endpoint on `domain`, writing to itself.
struct lane {
  struct fid_domain *domain;
  /** Requested key (unique per thread: a shared domain without provider keys needs it). */
  uint64_t key;
  // When this lane left the start line and when it finished: the main thread may be descheduled
  // past the barrier until every lane is done, so the run is timed from the lanes' own clocks.
  double started;
  double finished;
};

static void open_domain(struct fid_domain **domain) {
  int ret = fi_domain(fabric, info, domain, NULL);
  if (ret) fail("fi_domain", ret);
}

static void *run_lane(void *argument) {
  struct lane *lane = argument;
  struct fid_ep *ep;
  struct fid_cq *cq;
  struct fid_av *av;
  int ret;
  if ((ret = fi_endpoint(lane->domain, info, &ep, NULL))) fail("fi_endpoint", ret);
  struct fi_cq_attr cq_attr = { .size = 256, .format = FI_CQ_FORMAT_DATA, .wait_obj = FI_WAIT_NONE };
  if ((ret = fi_cq_open(lane->domain, &cq_attr, &cq, NULL))) fail("fi_cq_open", ret);
  struct fi_av_attr av_attr = { .type = FI_AV_TABLE, .count = 4 };
  if ((ret = fi_av_open(lane->domain, &av_attr, &av, NULL))) fail("fi_av_open", ret);
  if ((ret = fi_ep_bind(ep, &cq->fid, FI_TRANSMIT | FI_RECV))) fail("fi_ep_bind cq", ret);
  if ((ret = fi_ep_bind(ep, &av->fid, 0))) fail("fi_ep_bind av", ret);
  if ((ret = fi_enable(ep))) fail("fi_enable", ret);

  unsigned char *buffer;
  if (posix_memalign((void **)&buffer, 4096, 2 * size * window)) fail("posix_memalign", ENOMEM);
  memset(buffer, 0, 2 * size * window);
  struct fid_mr *mr;
  ret = fi_mr_reg(lane->domain, buffer, 2 * size * window, FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE, 0, lane->key, 0, &mr, NULL);
  if (ret) fail("fi_mr_reg", ret);
  if (info->domain_attr->mr_mode & FI_MR_ENDPOINT) fail("FI_MR_ENDPOINT providers are not measured here", -FI_ENOSYS);
  void *desc = fi_mr_desc(mr);
  uint64_t key = fi_mr_key(mr);
  uint64_t base = (info->domain_attr->mr_mode & FI_MR_VIRT_ADDR) ? (uint64_t)(uintptr_t)buffer : 0;

  char name[256];
  size_t name_length = sizeof name;
  if ((ret = fi_getname(&ep->fid, name, &name_length))) fail("fi_getname", ret);
  fi_addr_t self;
  if (fi_av_insert(av, name, 1, &self, 0, NULL) != 1) fail("fi_av_insert", -FI_EINVAL);

  pthread_barrier_wait(&start_line);
  lane->started = now_seconds();
  long posted = 0, done = 0;
  struct fi_cq_data_entry entries[CQ_BATCH];
  while (done < writes_per_thread) {
    while (posted < writes_per_thread && posted - done < window) {
      size_t slot = (size_t)(posted % window) * size;
      ssize_t r = fi_write(ep, buffer + slot, size, desc, self, base + size * window + slot, key, NULL);
      if (r == -FI_EAGAIN) break;
      if (r) fail("fi_write", (int)r);
      posted++;
    }
    ssize_t n = fi_cq_read(cq, entries, CQ_BATCH);
    if (n > 0) done += n;
    else if (n != -FI_EAGAIN) fail("fi_cq_read", (int)n);
  }
  lane->finished = now_seconds();
  fi_close(&mr->fid);
  fi_close(&ep->fid);
  fi_close(&cq->fid);
  fi_close(&av->fid);
  free(buffer);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: rma-threads <provider> --threads T --writes N [--size S] [--window W] [--own-domains]\n");
    return 2;
  }
  int threads = atoi(option(argc, argv, "--threads", "1"));
  writes_per_thread = atol(option(argc, argv, "--writes", "100000"));
  size = strtoull(option(argc, argv, "--size", "64"), NULL, 10);
  window = atoi(option(argc, argv, "--window", "16"));
  int own_domains = flag(argc, argv, "--own-domains");
  if (threads < 1 || threads > MAX_THREADS || size == 0 || window < 1) fail("--threads/--size/--window", -FI_EINVAL);

  struct fi_info *hints = fi_allocinfo();
  hints->caps = FI_MSG | FI_RMA;
  hints->ep_attr->type = FI_EP_RDM;
  hints->domain_attr->threading = FI_THREAD_SAFE;
  hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY;
  hints->fabric_attr->prov_name = strdup(argv[1]);
  int ret = fi_getinfo(FI_VERSION(1, 17), NULL, NULL, 0, hints, &info);
  fi_freeinfo(hints);
  if (ret) fail("fi_getinfo", ret);
  info->tx_attr->op_flags |= FI_DELIVERY_COMPLETE;
  if ((ret = fi_fabric(info->fabric_attr, &fabric, NULL))) fail("fi_fabric", ret);
  if (!own_domains) open_domain(&shared_domain);

  struct lane lanes[MAX_THREADS];
  pthread_t ids[MAX_THREADS];
  pthread_barrier_init(&start_line, NULL, threads + 1);
  for (int t = 0; t < threads; t++) {
    lanes[t].domain = shared_domain;
    lanes[t].key = (uint64_t)t + 1;
    if (own_domains) open_domain(&lanes[t].domain);
    if (pthread_create(&ids[t], NULL, run_lane, &lanes[t])) fail("pthread_create", -FI_EAGAIN);
  }
  pthread_barrier_wait(&start_line);
  double first = 0, last = 0;
  for (int t = 0; t < threads; t++) {
    pthread_join(ids[t], NULL);
    if (t == 0 || lanes[t].started < first) first = lanes[t].started;
    if (lanes[t].finished > last) last = lanes[t].finished;
    if (own_domains) fi_close(&lanes[t].domain->fid);
  }
  printf("{\"ok\":true,\"provider\":\"%s\",\"threads\":%d,\"ownDomains\":%s,\"size\":%zu,\"window\":%d,\"writesPerSecond\":%.0f}\n",
         info->fabric_attr->prov_name, threads, own_domains ? "true" : "false", size, window,
         (double)writes_per_thread * threads / (last - first));
  if (!own_domains) fi_close(&shared_domain->fid);
  fi_close(&fabric->fid);
  fi_freeinfo(info);
  return 0;
}
