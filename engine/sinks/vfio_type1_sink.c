/* SPDX-License-Identifier: MIT */
/*
 * The VFIO type1v2 container sink: VFIO_IOMMU_MAP_DMA / VFIO_IOMMU_UNMAP_DMA
 * on a container fd the host owns. Written from <linux/vfio.h>.
 *
 * type1v2 rules (as the kernel answers them, tests/vfio-guest proves them):
 * any overlapping MAP is -EEXIST; an UNMAP that bisects a mapping is -EINVAL
 * and removes nothing; an UNMAP over several whole mappings and gaps removes
 * them all and returns their bytes; an empty UNMAP succeeds with 0 bytes;
 * MAP outside the usable IOVA ranges (the MSI window, above the IOMMU's
 * width) is -EINVAL (we refuse it first); the dma_avail+1st mapping -ENOSPC.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include <linux/vfio.h>

#include "sinks/vfio_common.h"

_Static_assert(sizeof(struct iovt_vfio_sink_counters) % sizeof(uint64_t) == 0,
	       "counters are read one 64-bit word at a time");

struct type1_sink {
	struct vfio_sink_base base; /* first: the accessors cast ctx to it */
	int fd;
};

static int type1_map(void *ctx, const struct iovt_extent *m)
{
	struct type1_sink *s = ctx;
	int rc = vfio_check_map(&s->base, m);
	if (rc)
		return rc;
	struct vfio_iommu_type1_dma_map map = {
		.argsz = sizeof(map),
		.flags = ((m->perm & IOVT_PERM_R) ? VFIO_DMA_MAP_FLAG_READ : 0) |
			 ((m->perm & IOVT_PERM_W) ? VFIO_DMA_MAP_FLAG_WRITE : 0),
		.vaddr = m->hva,
		.iova = m->iova,
		.size = m->size,
	};
	uint64_t t0 = vfio_now_ns();
	rc = ioctl(s->fd, VFIO_IOMMU_MAP_DMA, &map) ? -errno : 0;
	if (vfio_call_done(&s->base, VFIO_MAP_CNT(s->base.cnt), t0, rc))
		return rc;
	vfio_cnt_add(&s->base.cnt->bytes_mapped, m->size);
	return 0;
}

static int type1_unmap_call(struct type1_sink *s, uint64_t iova, uint64_t size, uint32_t flags,
			    uint64_t *unmapped, struct vfio_call_cnt k)
{
	struct vfio_iommu_type1_dma_unmap un = {
		.argsz = sizeof(un),
		.flags = flags,
		.iova = iova,
		.size = size,
	};
	uint64_t t0 = vfio_now_ns();
	int rc = ioctl(s->fd, VFIO_IOMMU_UNMAP_DMA, &un) ? -errno : 0;
	if (vfio_call_done(&s->base, k, t0, rc)) {
		/* vfio_iommu_type1 checks before it removes and writes no reply
		 * on failure (un.size stays the request: nothing removed). The
		 * /dev/vfio/vfio of iommufd (CONFIG_IOMMUFD_VFIO_CONTAINER),
		 * which the sink cannot tell from it, removes whole mappings in
		 * order up to the first it cannot and writes their size on
		 * failure too (found by review: vfio-type1-compat-unmap). */
		*unmapped = (flags & VFIO_DMA_UNMAP_FLAG_ALL) || un.size < size ? un.size : 0;
		return rc;
	}
	*unmapped = un.size;
	vfio_cnt_add(&s->base.cnt->bytes_unmapped, un.size);
	return 0;
}

static int type1_unmap(void *ctx, uint64_t iova, uint64_t size, uint64_t *unmapped)
{
	struct type1_sink *s = ctx;
	struct iovt_vfio_sink_counters *c = s->base.cnt;
	*unmapped = 0;
	int rc = vfio_check_unmap(&s->base, iova, size);
	if (rc)
		return rc;
	return type1_unmap_call(s, iova, size, 0, unmapped, VFIO_UNMAP_CNT(c));
}

static int type1_unmap_all(void *ctx, uint64_t *unmapped)
{
	struct type1_sink *s = ctx;
	struct iovt_vfio_sink_counters *c = s->base.cnt;
	*unmapped = 0;
	if (!s->base.info.unmap_all)
		return -EOPNOTSUPP;
	int rc = type1_unmap_call(s, 0, 0, VFIO_DMA_UNMAP_FLAG_ALL, unmapped, VFIO_UNMAP_ALL_CNT(c));
	if (!rc)
		vfio_cnt_add(&c->unmap_all_bytes, *unmapped);
	return rc;
}

static void type1_destroy(void *ctx)
{
	free(ctx);
}

const struct iovt_sink_ops vfio_type1_sink_ops = {
	.map = type1_map,
	.unmap = type1_unmap,
	.unmap_all = type1_unmap_all,
	.destroy = type1_destroy,
};

/* VFIO_IOMMU_GET_INFO with a buffer that grows to what the kernel asks for. */
static int type1_query(struct type1_sink *s)
{
	size_t len = sizeof(struct vfio_iommu_type1_info) + 1024;
	for (int tries = 0; tries < 4; tries++) {
		struct vfio_iommu_type1_info *info = calloc(1, len);
		if (!info)
			return -ENOMEM;
		info->argsz = (uint32_t)len;
		if (ioctl(s->fd, VFIO_IOMMU_GET_INFO, info)) {
			int rc = -errno;
			free(info);
			return rc;
		}
		if (info->argsz > len) { /* the chain did not fit: ask again */
			len = info->argsz;
			free(info);
			continue;
		}
		int rc = iovt_vfio_type1_parse_info(info, info->argsz < sizeof(*info) ? sizeof(*info)
										      : info->argsz,
						    &s->base.info);
		free(info);
		return rc;
	}
	return -EPROTO;
}

int iovt_vfio_type1_sink_init(struct iovt_sink *out, int container_fd,
			      const struct iovt_vfio_sink_config *cfg)
{
	if (!out)
		return -EINVAL;
	if (container_fd < 0)
		return -EBADF;
	struct type1_sink *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->fd = container_fd;
	vfio_base_counters(&s->base, cfg);
	int rc;
	/* One UNMAP over several mappings only where the kernel removes them
	 * in ascending order and a short answer's size is the bytes of that
	 * prefix (apply.c's forget_prefix): vfio_iommu_type1 since Linux 5.12,
	 * the series that also brought VFIO_UNMAP_ALL, which is how it is told
	 * apart. Before it (5.10, Debian 11's kernel) vfio_dma_do_unmap took the
	 * mappings in the order of its tree's search from the root, and stopped
	 * at another process's with success: the record then dropped a mapping
	 * the kernel still held and kept one it had removed (found by a review
	 * of the kernel's history; vfio-type1-short-unmap-5.10). One call per
	 * mapping is exact there: a 0-byte answer means that mapping is held.
	 * With no_query the host, which queried, says so (no_multi_unmap). */
	bool multi = !(cfg && cfg->no_multi_unmap);
	if (cfg && cfg->no_query) {
		rc = vfio_base_from_config(&s->base, cfg, false);
	} else {
		rc = ioctl(container_fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU);
		if (rc < 0)
			rc = -errno;
		else if (rc == 0)
			rc = -ENODEV;
		else
			rc = type1_query(s);
		if (!rc)
			s->base.info.unmap_all =
				ioctl(container_fd, VFIO_CHECK_EXTENSION, VFIO_UNMAP_ALL) > 0;
		multi &= s->base.info.unmap_all;
	}
	if (rc) {
		free(s);
		return rc;
	}
	if (cfg && cfg->no_unmap_all)
		s->base.info.unmap_all = false;
	*out = (struct iovt_sink){
		.ops = &vfio_type1_sink_ops,
		.ctx = s,
		.caps = {
			.flags = (multi ? IOVT_SINK_MULTI_UNMAP : 0) |
				 (s->base.info.unmap_all ? IOVT_SINK_UNMAP_ALL : 0) |
				 /* iommufd's compat container: a failed UNMAP may
				 * have removed a prefix (counted in its reply,
				 * and if not, one UNMAP per extent follows), and
				 * an empty range may answer -ENOENT (kernels
				 * before afb47765f923). Free for vfio_iommu_type1,
				 * which does neither. */
				 IOVT_SINK_EXACT_UNMAPPED | IOVT_SINK_PARTIAL_UNMAP |
				 IOVT_SINK_PARTIAL_UNCOUNTED | IOVT_SINK_UNMAP_EMPTY_ERR,
			.max_mappings = vfio_max_mappings(s->base.info.dma_avail, cfg),
			.page_sizes = s->base.info.page_sizes,
		},
		.name = "vfio-type1",
	};
	return 0;
}
