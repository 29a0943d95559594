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
#ifdef IOVT_HAVE_DPDK
extern const struct iovt_sink_ops dpdk_vfio_sink_ops;
#endif

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
