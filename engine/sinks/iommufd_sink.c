/* SPDX-License-Identifier: MIT */
/*
 * The iommufd IOAS sink: IOMMU_IOAS_MAP (FIXED_IOVA) / IOMMU_IOAS_UNMAP on an
 * IOAS the host owns. Written from the iommufd uAPI (sinks/iommufd_abi.h).
 *
 * iommufd differs from type1: an UNMAP of an empty range is -ENOENT, so is
 * one that bisects a mapping; the kernel removes whole mappings (areas) in
 * ascending order and stops at the first it cannot remove, so a failed
 * multi-mapping UNMAP may have removed a prefix (IOVT_SINK_PARTIAL_UNMAP) —
 * and reports no byte count when it fails (the reply is written only on
 * success), so *unmapped is 0 then (IOVT_SINK_PARTIAL_UNCOUNTED: the engine
 * finds the prefix by unmapping each of the range's extents alone). unmap-all is iova 0, length U64_MAX and
 * succeeds on an empty IOAS.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "sinks/iommufd_abi.h"
#include "sinks/vfio_common.h"

struct iommufd_sink {
	struct vfio_sink_base base; /* first: the accessors cast ctx to it */
	int fd;
	uint32_t ioas;
};

static int ifd_map(void *ctx, const struct iovt_extent *m)
{
	struct iommufd_sink *s = ctx;
	int rc = vfio_check_map(&s->base, m);
	if (rc)
		return rc;
	struct iommu_ioas_map map = {
		.size = sizeof(map),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA |
			 ((m->perm & IOVT_PERM_R) ? IOMMU_IOAS_MAP_READABLE : 0) |
			 ((m->perm & IOVT_PERM_W) ? IOMMU_IOAS_MAP_WRITEABLE : 0),
		.ioas_id = s->ioas,
		.user_va = m->hva,
		.length = m->size,
		.iova = m->iova,
	};
	uint64_t t0 = vfio_now_ns();
	rc = ioctl(s->fd, IOMMU_IOAS_MAP, &map) ? -errno : 0;
	if (vfio_call_done(&s->base, VFIO_MAP_CNT(s->base.cnt), t0, rc))
		return rc;
	vfio_cnt_add(&s->base.cnt->bytes_mapped, m->size);
	return 0;
}

static int ifd_unmap_call(struct iommufd_sink *s, uint64_t iova, uint64_t length,
			  uint64_t *unmapped, struct vfio_call_cnt k)
{
	struct iommu_ioas_unmap un = {
		.size = sizeof(un),
		.ioas_id = s->ioas,
		.iova = iova,
		.length = length,
	};
	uint64_t t0 = vfio_now_ns();
	int rc = ioctl(s->fd, IOMMU_IOAS_UNMAP, &un) ? -errno : 0;
	if (vfio_call_done(&s->base, k, t0, rc)) {
		*unmapped = 0; /* the kernel wrote no reply */
		return rc;
	}
	*unmapped = un.length;
	vfio_cnt_add(&s->base.cnt->bytes_unmapped, un.length);
	return 0;
}

static int ifd_unmap(void *ctx, uint64_t iova, uint64_t size, uint64_t *unmapped)
{
	struct iommufd_sink *s = ctx;
	struct iovt_vfio_sink_counters *c = s->base.cnt;
	*unmapped = 0;
	int rc = vfio_check_unmap(&s->base, iova, size);
	if (rc)
		return rc;
	return ifd_unmap_call(s, iova, size, unmapped, VFIO_UNMAP_CNT(c));
}

static int ifd_unmap_all(void *ctx, uint64_t *unmapped)
{
	struct iommufd_sink *s = ctx;
	struct iovt_vfio_sink_counters *c = s->base.cnt;
	*unmapped = 0;
	if (!s->base.info.unmap_all)
		return -EOPNOTSUPP;
	int rc = ifd_unmap_call(s, 0, UINT64_MAX, unmapped, VFIO_UNMAP_ALL_CNT(c));
	if (!rc)
		vfio_cnt_add(&c->unmap_all_bytes, *unmapped);
	return rc;
}

static void ifd_destroy(void *ctx)
{
	free(ctx);
}

const struct iovt_sink_ops iommufd_sink_ops = {
	.map = ifd_map,
	.unmap = ifd_unmap,
	.unmap_all = ifd_unmap_all,
	.destroy = ifd_destroy,
};

/* IOMMU_IOAS_IOVA_RANGES: the kernel answers -EMSGSIZE with num_iovas set
 * when the array is too small; ask again with room for them all. */
static int ifd_query(struct iommufd_sink *s)
{
	struct iovt_vfio_sink_info *in = &s->base.info;
	uint32_t room = 8;
	for (int tries = 0; tries < 4; tries++) {
		struct iommu_iova_range *r = calloc(room, sizeof(*r));
		if (!r)
			return -ENOMEM;
		struct iommu_ioas_iova_ranges q = {
			.size = sizeof(q),
			.ioas_id = s->ioas,
			.num_iovas = room,
			.allowed_iovas = (uintptr_t)r,
		};
		if (ioctl(s->fd, IOMMU_IOAS_IOVA_RANGES, &q)) {
			int rc = -errno;
			free(r);
			if (rc == -EMSGSIZE && q.num_iovas > room) {
				room = q.num_iovas;
				continue;
			}
			return rc;
		}
		memset(in, 0, sizeof(*in));
		uint32_t keep = q.num_iovas;
		if (keep == 0) {
			free(r);
			return -EPROTO; /* nothing mappable: no IOMMU says that (type1's parse agrees) */
		}
		if (keep > IOVT_VFIO_MAX_RANGES) {
			keep = IOVT_VFIO_MAX_RANGES;
			in->ranges_truncated = true;
		}
		for (uint32_t i = 0; i < keep; i++)
			in->ranges[i] = (struct iovt_vfio_iova_range){ r[i].start, r[i].last };
		free(r);
		in->nr_ranges = keep;
		in->ranges_reported = true;
		if (vfio_ranges_normalise(in->ranges, keep))
			return -EPROTO;
		uint64_t align = q.out_iova_alignment;
		if (align < 4096 || (align & (align - 1)))
			align = 4096; /* 0 or nonsense: the CPU page */
		in->iova_alignment = align;
		in->page_sizes = ~(align - 1); /* IOAS maps any multiple of its alignment */
		in->unmap_all = true;
		return 0;
	}
	return -EPROTO;
}

int iovt_iommufd_sink_init(struct iovt_sink *out, int iommufd_fd, uint32_t ioas_id,
			   const struct iovt_vfio_sink_config *cfg)
{
	if (!out)
		return -EINVAL;
	if (iommufd_fd < 0)
		return -EBADF;
	struct iommufd_sink *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->fd = iommufd_fd;
	s->ioas = ioas_id;
	vfio_base_counters(&s->base, cfg);
	int rc = (cfg && cfg->no_query) ? vfio_base_from_config(&s->base, cfg, true) : ifd_query(s);
	if (rc) {
		free(s);
		return rc;
	}
	if (cfg && cfg->no_unmap_all)
		s->base.info.unmap_all = false;
	*out = (struct iovt_sink){
		.ops = &iommufd_sink_ops,
		.ctx = s,
		.caps = {
			.flags = (cfg && cfg->no_multi_unmap ? 0 : IOVT_SINK_MULTI_UNMAP) |
				 (s->base.info.unmap_all ? IOVT_SINK_UNMAP_ALL : 0) |
				 IOVT_SINK_UNMAP_EMPTY_ERR | IOVT_SINK_PARTIAL_UNMAP |
				 IOVT_SINK_PARTIAL_UNCOUNTED | IOVT_SINK_EXACT_UNMAPPED,
			.max_mappings = vfio_max_mappings(0, cfg),
			.page_sizes = s->base.info.page_sizes,
		},
		.name = "iommufd",
	};
	return 0;
}
