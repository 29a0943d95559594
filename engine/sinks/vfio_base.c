/* SPDX-License-Identifier: MIT */
/*
 * The real sinks' stateless helpers: the MAP/UNMAP checks made before any
 * kernel call, counters, ranges. Built into libiovt and, as a private copy,
 * into libiovt-dpdk (the DPDK sink uses them; nothing here has state, so two
 * copies cannot disagree).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sinks/vfio_common.h"

#define U64_ALL (~0ull)

static int range_cmp(const void *a, const void *b)
{
	const struct iovt_vfio_iova_range *x = a, *y = b;
	return x->first < y->first ? -1 : x->first > y->first;
}

int vfio_ranges_normalise(struct iovt_vfio_iova_range *r, uint32_t n)
{
	qsort(r, n, sizeof(*r), range_cmp);
	for (uint32_t i = 0; i < n; i++) {
		if (r[i].first > r[i].last)
			return -EPROTO;
		if (i && r[i].first <= r[i - 1].last)
			return -EPROTO;
	}
	return 0;
}

static uint64_t lowest_bit(uint64_t v)
{
	return v & (~v + 1);
}

void vfio_base_counters(struct vfio_sink_base *b, const struct iovt_vfio_sink_config *cfg)
{
	b->cnt = (cfg && cfg->counters) ? cfg->counters : &b->own;
	memset(b->cnt, 0, sizeof(*b->cnt));
}

int vfio_base_from_config(struct vfio_sink_base *b, const struct iovt_vfio_sink_config *cfg,
			  bool unmap_all)
{
	struct iovt_vfio_sink_info *in = &b->info;
	memset(in, 0, sizeof(*in));
	in->page_sizes = (cfg && cfg->page_sizes) ? cfg->page_sizes : (1ull << 12);
	in->iova_alignment = lowest_bit(in->page_sizes);
	if (in->iova_alignment < (1ull << 12))
		return -EINVAL;
	if (cfg && cfg->nr_ranges) {
		if (!cfg->ranges || cfg->nr_ranges > IOVT_VFIO_MAX_RANGES)
			return -EINVAL;
		memcpy(in->ranges, cfg->ranges, cfg->nr_ranges * sizeof(*in->ranges));
		in->nr_ranges = cfg->nr_ranges;
		in->ranges_reported = true;
		if (vfio_ranges_normalise(in->ranges, in->nr_ranges))
			return -EINVAL;
	} else {
		in->nr_ranges = 1;
		in->ranges[0] = (struct iovt_vfio_iova_range){ 0, U64_ALL };
	}
	in->unmap_all = unmap_all;
	return 0;
}

uint32_t vfio_max_mappings(uint32_t kernel, const struct iovt_vfio_sink_config *cfg)
{
	uint32_t want = cfg ? cfg->max_mappings : 0;
	if (!kernel)
		return want;
	return (want && want < kernel) ? want : kernel;
}

int vfio_refuse(struct vfio_sink_base *b, int err)
{
	vfio_cnt_add(&b->cnt->refused, 1);
	vfio_cnt_errno(b, err);
	return err;
}

int vfio_check_map(struct vfio_sink_base *b, const struct iovt_extent *m)
{
	uint64_t mask = b->info.iova_alignment - 1;
	if (!m || m->size == 0 || ((m->iova | m->size | m->hva) & mask) ||
	    !(m->perm & IOVT_PERM_RW))
		return vfio_refuse(b, -EINVAL);
	uint64_t last = m->iova + m->size - 1;
	if (last < m->iova)
		return vfio_refuse(b, -EINVAL);
	/* The usable range holding iova must hold the last byte too. */
	for (uint32_t i = 0; i < b->info.nr_ranges; i++) {
		const struct iovt_vfio_iova_range *r = &b->info.ranges[i];
		if (m->iova < r->first)
			break;
		if (m->iova <= r->last)
			return last <= r->last ? 0 : vfio_refuse(b, -EINVAL);
	}
	return vfio_refuse(b, -EINVAL);
}

int vfio_check_unmap(struct vfio_sink_base *b, uint64_t iova, uint64_t size)
{
	uint64_t mask = b->info.iova_alignment - 1;
	if (size == 0 || ((iova | size) & mask) || iova + size - 1 < iova)
		return vfio_refuse(b, -EINVAL);
	return 0;
}
