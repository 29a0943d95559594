/* SPDX-License-Identifier: MIT */
/*
 * The DPDK sink: rte_vfio_container_dma_map / rte_vfio_container_dma_unmap.
 * Built only with the `dpdk` feature, into the separate DPDK library (its
 * cflags force -march and -include rte_config.h on whatever includes rte
 * headers; nothing else in libiovt does).
 *
 * DPDK's unmap wants the host address as well, and DPDK keeps its own table
 * of user mappings (VFIO_MAX_USER_MEM_MAPS, 256 in 22.11) which it will not
 * split on type1. So the sink remembers what it mapped (a sorted array, at
 * most max_mappings entries) and turns one UNMAP range into one rte call per
 * whole mapping inside it: MULTI_UNMAP at the sink level, and PARTIAL_UNMAP
 * (a failure reports the mappings removed before it). A range that would
 * bisect a remembered mapping is -EINVAL before any call, as type1 would say.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <rte_errno.h>
#include <rte_vfio.h>

#include "sinks/vfio_common.h"

#define DPDK_USER_MAPS 256u

struct dpdk_map {
	uint64_t iova, size, hva;
};

struct dpdk_sink {
	struct vfio_sink_base base; /* first: the accessors cast ctx to it */
	int container_fd;
	uint32_t cap;
	uint32_t n;
	struct dpdk_map *v; /* sorted by iova, disjoint */
	bool upgrade_to_rw; /* cfg->dpdk_upgrade_to_rw */
};

/* The new bool sits in the padding before page_sizes: no layout change. */
_Static_assert(offsetof(struct iovt_vfio_sink_config, dpdk_upgrade_to_rw) == 7 &&
		       offsetof(struct iovt_vfio_sink_config, page_sizes) == 8,
	       "iovt_vfio_sink_config's layout moved");

static int rte_err(void)
{
	return rte_errno > 0 ? -rte_errno : -EIO;
}

/* Index of the first mapping with iova + size > addr (may be n). */
static uint32_t lower(const struct dpdk_sink *s, uint64_t addr)
{
	uint32_t lo = 0, hi = s->n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (s->v[mid].iova + s->v[mid].size - 1 < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int dpdk_map(void *ctx, const struct iovt_extent *m)
{
	struct dpdk_sink *s = ctx;
	int rc = vfio_check_map(&s->base, m);
	if (rc)
		return rc;
	uint32_t i = lower(s, m->iova);
	if (i < s->n && s->v[i].iova <= m->iova + m->size - 1)
		return vfio_refuse(&s->base, -EEXIST);
	if (s->n >= s->cap)
		return vfio_refuse(&s->base, -ENOSPC);
	/* rte_vfio maps read+write: DPDK's API has no permissions. A narrower
	 * grant is refused unless the host allowed the upgrade (a review found
	 * read-only extents mapped writable, silently). */
	if (m->perm != IOVT_PERM_RW && !s->upgrade_to_rw)
		return vfio_refuse(&s->base, -EPERM);
	uint64_t t0 = vfio_now_ns();
	rte_errno = 0;
	rc = rte_vfio_container_dma_map(s->container_fd, m->hva, m->iova, m->size) ? rte_err() : 0;
	if (vfio_call_done(&s->base, VFIO_MAP_CNT(s->base.cnt), t0, rc))
		return rc;
	memmove(&s->v[i + 1], &s->v[i], (s->n - i) * sizeof(*s->v));
	s->v[i] = (struct dpdk_map){ m->iova, m->size, m->hva };
	s->n++;
	vfio_cnt_add(&s->base.cnt->bytes_mapped, m->size);
	return 0;
}

/* Removes s->v[i, j) one rte call each; stops at the first failure. */
static int dpdk_unmap_span(struct dpdk_sink *s, uint32_t i, uint32_t j, uint64_t *unmapped,
			   struct vfio_call_cnt cnt)
{
	uint32_t k = i;
	int rc = 0;
	for (; k < j; k++) {
		const struct dpdk_map *d = &s->v[k];
		uint64_t t0 = vfio_now_ns();
		rte_errno = 0;
		rc = rte_vfio_container_dma_unmap(s->container_fd, d->hva, d->iova, d->size)
			     ? rte_err() : 0;
		if (vfio_call_done(&s->base, cnt, t0, rc))
			break;
		*unmapped += d->size;
	}
	memmove(&s->v[i], &s->v[k], (s->n - k) * sizeof(*s->v));
	s->n -= k - i;
	vfio_cnt_add(&s->base.cnt->bytes_unmapped, *unmapped);
	return rc;
}

static int dpdk_unmap(void *ctx, uint64_t iova, uint64_t size, uint64_t *unmapped)
{
	struct dpdk_sink *s = ctx;
	struct iovt_vfio_sink_counters *c = s->base.cnt;
	*unmapped = 0;
	int rc = vfio_check_unmap(&s->base, iova, size);
	if (rc)
		return rc;
	uint64_t last = iova + size - 1;
	uint32_t i = lower(s, iova), j = i;
	while (j < s->n && s->v[j].iova <= last)
		j++;
	/* A mapping across either end would be bisected: refused, as type1 would. */
	if ((i < s->n && s->v[i].iova < iova) ||
	    (j > i && s->v[j - 1].iova + s->v[j - 1].size - 1 > last))
		return vfio_refuse(&s->base, -EINVAL);
	return dpdk_unmap_span(s, i, j, unmapped, VFIO_UNMAP_CNT(c));
}

static int dpdk_unmap_all(void *ctx, uint64_t *unmapped)
{
	struct dpdk_sink *s = ctx;
	struct iovt_vfio_sink_counters *c = s->base.cnt;
	*unmapped = 0;
	int rc = dpdk_unmap_span(s, 0, s->n, unmapped, VFIO_UNMAP_ALL_CNT(c));
	if (!rc)
		vfio_cnt_add(&c->unmap_all_bytes, *unmapped);
	return rc;
}

static void dpdk_destroy(void *ctx)
{
	struct dpdk_sink *s = ctx;
	free(s->v);
	free(s);
}

const struct iovt_sink_ops dpdk_vfio_sink_ops = {
	.map = dpdk_map,
	.unmap = dpdk_unmap,
	.unmap_all = dpdk_unmap_all,
	.destroy = dpdk_destroy,
};

int iovt_dpdk_vfio_sink_init(struct iovt_sink *out, int container_fd,
			     const struct iovt_vfio_sink_config *cfg)
{
	if (!out)
		return -EINVAL;
	if (container_fd < 0 && container_fd != RTE_VFIO_DEFAULT_CONTAINER_FD)
		return -EBADF;
	struct dpdk_sink *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->container_fd = container_fd;
	s->upgrade_to_rw = cfg && cfg->dpdk_upgrade_to_rw;
	vfio_base_counters(&s->base, cfg);
	int rc = vfio_base_from_config(&s->base, cfg, !(cfg && cfg->no_unmap_all));
	s->cap = vfio_max_mappings(DPDK_USER_MAPS, cfg);
	if (!rc) {
		s->v = calloc(s->cap, sizeof(*s->v));
		if (!s->v)
			rc = -ENOMEM;
	}
	if (rc) {
		free(s->v);
		free(s);
		return rc;
	}
	*out = (struct iovt_sink){
		.ops = &dpdk_vfio_sink_ops,
		.ctx = s,
		.caps = {
			.flags = (cfg && cfg->no_multi_unmap ? 0 : IOVT_SINK_MULTI_UNMAP) |
				 (s->base.info.unmap_all ? IOVT_SINK_UNMAP_ALL : 0) |
				 IOVT_SINK_PARTIAL_UNMAP | IOVT_SINK_EXACT_UNMAPPED,
			.max_mappings = s->cap,
			.page_sizes = s->base.info.page_sizes,
		},
		.name = "dpdk-vfio",
	};
	return 0;
}
