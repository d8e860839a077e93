// One RDM endpoint opened the way Endpoint opens it, for the libfabric C references that run one
// endpoint per process (rma-peer.c, tagged-pair.c, fabric-atomics.c): FI_EP_RDM, FI_THREAD_SAFE,
// the mr_mode bits the library offers, FI_DELIVERY_COMPLETE in the default op_flags when asked,
// one completion queue without wait object, an FI_AV_TABLE. Include after fabric-common.h.
#ifndef ALLOCTOOLS_BENCH_FABRIC_ENDPOINT_H
#define ALLOCTOOLS_BENCH_FABRIC_ENDPOINT_H

#include <rdma/fabric.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>

// The mr_mode bits LibfabricProvider offers in its hints.
#define OFFERED_MR_MODE (FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_ENDPOINT | FI_MR_MMU_NOTIFY)

static struct fi_info *info;
static struct fid_fabric *fabric;
static struct fid_domain *domain;
static struct fid_ep *ep;
static struct fid_cq *cq;
static struct fid_av *av;

// Fabric and domain for `caps` on `provider` (`node` for IP providers, else NULL); with
// `endpoint_too`, the endpoint, its CQ of `cq_format` and its AV as well, enabled.
static inline void open_rdm_endpoint(const char *provider, const char *node, uint64_t caps, enum fi_cq_format cq_format,
                                     int delivery_complete, int endpoint_too) {
  struct fi_info *hints = fi_allocinfo();
  hints->caps = caps;
  hints->ep_attr->type = FI_EP_RDM;
  hints->domain_attr->threading = FI_THREAD_SAFE;
  hints->domain_attr->mr_mode = OFFERED_MR_MODE;
  hints->fabric_attr->prov_name = strdup(provider);
  int ret = fi_getinfo(FI_VERSION(1, 17), node, NULL, node ? FI_SOURCE : 0, hints, &info);
  fi_freeinfo(hints);
  if (ret) fail("fi_getinfo", ret);
  if ((ret = fi_fabric(info->fabric_attr, &fabric, NULL))) fail("fi_fabric", ret);
  if ((ret = fi_domain(fabric, info, &domain, NULL))) fail("fi_domain", ret);
  if (!endpoint_too) return;
  if (delivery_complete) info->tx_attr->op_flags |= FI_DELIVERY_COMPLETE;
  if ((ret = fi_endpoint(domain, info, &ep, NULL))) fail("fi_endpoint", ret);
  struct fi_cq_attr cq_attr = { .size = 256, .format = cq_format, .wait_obj = FI_WAIT_NONE };
  if ((ret = fi_cq_open(domain, &cq_attr, &cq, NULL))) fail("fi_cq_open", ret);
  struct fi_av_attr av_attr = { .type = FI_AV_TABLE, .count = 64 };
  if ((ret = fi_av_open(domain, &av_attr, &av, NULL))) fail("fi_av_open", ret);
  if ((ret = fi_ep_bind(ep, &cq->fid, FI_TRANSMIT | FI_RECV))) fail("fi_ep_bind cq", ret);
  if ((ret = fi_ep_bind(ep, &av->fid, 0))) fail("fi_ep_bind av", ret);
  if ((ret = fi_enable(ep))) fail("fi_enable", ret);
}

// Closes what open_rdm_endpoint opened, children before parents (registrations are the caller's, closed first).
static inline void close_rdm_endpoint(void) {
  if (ep) fi_close(&ep->fid);
  if (cq) fi_close(&cq->fid);
  if (av) fi_close(&av->fid);
  fi_close(&domain->fid);
  fi_close(&fabric->fid);
  fi_freeinfo(info);
}

#endif
