/* SPDX-License-Identifier: MIT */
/* Shared by the real sinks: the GET_INFO parser, the MAP checks made before
 * any kernel call, the counters and info accessors (the stateless
 * helpers are in vfio_base.c). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <linux/vfio.h>

#include "glue.h"
#include "sinks/vfio_common.h"

#define U64_ALL (~0ull)

/* The lowest set bit of v (0 for 0). */
static uint64_t lowest_bit(uint64_t v)
{
	return v & (~v + 1);
}

int iovt_vfio_type1_parse_info(const void *buf, size_t len, struct iovt_vfio_sink_info *out)
{
	struct vfio_iommu_type1_info info;
	const unsigned char *p = buf;
	/* Fields up to and including iova_pgsizes: the reply of kernels before
	 * the capability chain existed. */
	const size_t fixed = offsetof(struct vfio_iommu_type1_info, cap_offset);

	if (!buf || !out || len < fixed)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	memset(&info, 0, sizeof(info));
	memcpy(&info, p, len < sizeof(info) ? len : sizeof(info));

	out->page_sizes = 1ull << 12;
	if (info.flags & VFIO_IOMMU_INFO_PGSIZES) {
		/* No sizes, or one below 4 KiB (no IOMMU has those): malformed. */
		if (!info.iova_pgsizes || (info.iova_pgsizes & 0xfffull))
			return -EPROTO;
		out->page_sizes = info.iova_pgsizes;
	}
	out->iova_alignment = lowest_bit(out->page_sizes);

	if ((info.flags & VFIO_IOMMU_INFO_CAPS) && len >= sizeof(info) && info.cap_offset) {
		uint64_t off = info.cap_offset;
		while (off) {
			struct vfio_info_cap_header h;
			if (off < sizeof(info) || off % 4 || off > len || len - off < sizeof(h))
				return -EPROTO;
			memcpy(&h, p + off, sizeof(h));
			if (h.id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE) {
				struct vfio_iommu_type1_info_cap_iova_range c;
				const size_t hdr = offsetof(struct vfio_iommu_type1_info_cap_iova_range,
							    iova_ranges);
				if (len - off < hdr)
					return -EPROTO;
				memcpy(&c, p + off, hdr);
				if ((uint64_t)c.nr_iovas * sizeof(struct vfio_iova_range) > len - off - hdr)
					return -EPROTO;
				uint32_t keep = c.nr_iovas;
				if (keep == 0) /* nothing usable: no IOMMU says that */
					return -EPROTO;
				if (keep > IOVT_VFIO_MAX_RANGES) {
					keep = IOVT_VFIO_MAX_RANGES;
					out->ranges_truncated = true;
				}
				for (uint32_t i = 0; i < keep; i++) {
					struct vfio_iova_range r;
					memcpy(&r, p + off + hdr + i * sizeof(r), sizeof(r));
					out->ranges[i].first = r.start;
					out->ranges[i].last = r.end;
				}
				out->nr_ranges = keep;
				out->ranges_reported = true;
			} else if (h.id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL) {
				struct vfio_iommu_type1_info_dma_avail c;
				if (len - off < sizeof(c))
					return -EPROTO;
				memcpy(&c, p + off, sizeof(c));
				out->dma_avail = c.avail;
			}
			/* Forward only: a chain that points back (or at itself) is a loop. */
			if (h.next && h.next <= off)
				return -EPROTO;
			off = h.next;
		}
	}
	if (out->ranges_reported) {
		if (vfio_ranges_normalise(out->ranges, out->nr_ranges))
			return -EPROTO;
	} else {
		out->nr_ranges = 1;
		out->ranges[0] = (struct iovt_vfio_iova_range){ 0, U64_ALL };
	}
	return 0;
}

static struct vfio_sink_base *base_of(const struct iovt_sink *s)
{
	if (!s || !s->ctx)
		return NULL;
	if (s->ops == &vfio_type1_sink_ops || s->ops == &iommufd_sink_ops)
		return s->ctx;
	if (s->ops == dpdk_glue()->vfio_sink_ops) /* libiovt-dpdk's, when loaded */
		return s->ctx;
	return NULL;
}

int iovt_vfio_sink_counters(const struct iovt_sink *sink, struct iovt_vfio_sink_counters *out)
{
	struct vfio_sink_base *b = base_of(sink);
	if (!b || !out)
		return -EINVAL;
	const uint64_t *src = (const uint64_t *)b->cnt;
	uint64_t *dst = (uint64_t *)out;
	/* Every field is 64 bits wide: copy them one atomic load at a time. */
	for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
	return 0;
}

int iovt_vfio_sink_info(const struct iovt_sink *sink, struct iovt_vfio_sink_info *out)
{
	struct vfio_sink_base *b = base_of(sink);
	if (!b || !out)
		return -EINVAL;
	*out = b->info;
	return 0;
}

void iovt_vfio_sink_free(struct iovt_sink *sink)
{
	if (!sink || !sink->ops)
		return;
	if (sink->ops->destroy)
		sink->ops->destroy(sink->ctx);
	sink->ops = NULL;
	sink->ctx = NULL;
}
