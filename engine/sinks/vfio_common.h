/* SPDX-License-Identifier: MIT */
/*
 * What the three real sinks (VFIO type1, iommufd, DPDK) share: the context
 * header (info, counters), the MAP checks made before any kernel call, the
 * timing of kernel calls. No rte headers here: dpdk_vfio_sink.c includes it.
 */
#ifndef IOVT_SINKS_VFIO_COMMON_H
#define IOVT_SINKS_VFIO_COMMON_H

#include <stdint.h>
#include <time.h>

#include "iovt.h"
#include "iovt_vfio.h"

/* Every real sink's context starts with this. */
struct vfio_sink_base {
	struct iovt_vfio_sink_info info;
	struct iovt_vfio_sink_counters own;   /* used when cfg->counters is NULL */
	struct iovt_vfio_sink_counters *cnt;  /* own or the host's */
};

extern const struct iovt_sink_ops vfio_type1_sink_ops;
extern const struct iovt_sink_ops iommufd_sink_ops;
extern const struct iovt_sink_ops dpdk_vfio_sink_ops; /* libiovt-dpdk */

static inline void vfio_cnt_add(uint64_t *field, uint64_t v)
{
	__atomic_fetch_add(field, v, __ATOMIC_RELAXED);
}

static inline void vfio_cnt_errno(struct vfio_sink_base *b, int err)
{
	__atomic_store_n(&b->cnt->last_errno, (int64_t)(err < 0 ? -err : err), __ATOMIC_RELAXED);
}

static inline uint64_t vfio_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The counters one kind of kernel call feeds (map, unmap or unmap_all). */
struct vfio_call_cnt {
	uint64_t *calls, *errors, *ns;
};
#define VFIO_MAP_CNT(c) ((struct vfio_call_cnt){ &(c)->map_calls, &(c)->map_errors, &(c)->map_ns })
#define VFIO_UNMAP_CNT(c) \
	((struct vfio_call_cnt){ &(c)->unmap_calls, &(c)->unmap_errors, &(c)->unmap_ns })
#define VFIO_UNMAP_ALL_CNT(c) \
	((struct vfio_call_cnt){ &(c)->unmap_all_calls, &(c)->unmap_all_errors, &(c)->unmap_all_ns })

/* Accounts a kernel call begun at t0 (vfio_now_ns) that returned rc (0 or a
 * negative errno): its time, the call, a failure and its errno. Returns rc. */
static inline int vfio_call_done(struct vfio_sink_base *b, struct vfio_call_cnt k, uint64_t t0,
				 int rc)
{
	vfio_cnt_add(k.ns, vfio_now_ns() - t0);
	vfio_cnt_add(k.calls, 1);
	if (rc) {
		vfio_cnt_add(k.errors, 1);
		vfio_cnt_errno(b, rc);
	}
	return rc;
}

/* A call the sink refuses without asking the kernel (what the kernel would
 * say): counted as refused, errno set. Returns err (negative). */
int vfio_refuse(struct vfio_sink_base *b, int err);

/* Fills b->info and b->cnt from cfg for a sink that does not query the
 * kernel (cfg->no_query, or DPDK). unmap_all as given. -EINVAL on bad
 * ranges/page sizes. */
int vfio_base_from_config(struct vfio_sink_base *b, const struct iovt_vfio_sink_config *cfg,
			  bool unmap_all);
/* Points b->cnt at cfg->counters or b->own, zeroed. */
void vfio_base_counters(struct vfio_sink_base *b, const struct iovt_vfio_sink_config *cfg);

/* The MAP checks: 0, or -EINVAL (counted as refused, last_errno set). */
int vfio_check_map(struct vfio_sink_base *b, const struct iovt_extent *m);
/* Alignment checks for an UNMAP: 0 or -EINVAL (refused). */
int vfio_check_unmap(struct vfio_sink_base *b, uint64_t iova, uint64_t size);

/* Sorts and validates ranges in place (ascending, disjoint, first <= last).
 * 0 or -EPROTO. */
int vfio_ranges_normalise(struct iovt_vfio_iova_range *r, uint32_t n);

/* caps.max_mappings from the kernel's limit (0: none) and the config's. */
uint32_t vfio_max_mappings(uint32_t kernel, const struct iovt_vfio_sink_config *cfg);

#endif
