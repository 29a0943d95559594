/* SPDX-License-Identifier: MIT */
/*
 * vfio-type1-compat-unmap: the type1 sink over an iommufd-provided
 * /dev/vfio/vfio (CONFIG_IOMMUFD_VFIO_CONTAINER, Linux's
 * drivers/iommu/iommufd/vfio_compat.c), a fake container behind ioctl()
 * that follows its rules: an UNMAP removes whole areas in ascending order,
 * stops at the first that cannot go (-EBUSY here) and writes the size it
 * removed into the reply also on failure; an empty range answers 0 / size
 * 0, or -ENOENT before Linux commit afb47765f923 (`old`). Its
 * VFIO_CHECK_EXTENSION(TYPE1v2) and (UNMAP_ALL) answer 1, so the sink
 * cannot tell it from vfio_iommu_type1. Two adjacent mappings, the second
 * busy, both unmapped by the guest: after each fence the record must be
 * what the fake kernel holds, and once the busy one lets go, nothing; the
 * guest's next map of that page must reach it. The sink took a failure for
 * "nothing removed" (as vfio_iommu_type1, which writes no reply then): the
 * record kept the removed first mapping, the retry's short UNMAP made the
 * engine drop the wrong one, and every later fence failed (found by the
 * twenty-second session's review).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/vfio.h>

#include "check.h"
#include "guestsim.h"
#include "iovt.h"
#include "iovt_vfio.h"

CHECK_SEED_STORAGE;

#define FAKE_FD 1000
#define MAX_MAPS 64

static struct fmap {
	uint64_t iova, size;
	bool busy, used;
} km[MAX_MAPS];
static bool empty_enoent; /* compat before afb47765f923 */
static unsigned unmap_calls;

static int held(void)
{
	int n = 0;
	for (int i = 0; i < MAX_MAPS; i++)
		n += km[i].used;
	return n;
}

int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	va_start(ap, req);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	if (fd != FAKE_FD) {
		errno = ENOTTY;
		return -1;
	}
	if (req == VFIO_IOMMU_MAP_DMA) {
		struct vfio_iommu_type1_dma_map *m = arg;
		for (int i = 0; i < MAX_MAPS; i++)
			if (km[i].used && m->iova < km[i].iova + km[i].size &&
			    km[i].iova < m->iova + m->size) {
				errno = EEXIST;
				return -1;
			}
		for (int i = 0; i < MAX_MAPS; i++)
			if (!km[i].used) {
				km[i] = (struct fmap){ m->iova, m->size, false, true };
				return 0;
			}
		errno = ENOSPC;
		return -1;
	}
	if (req == VFIO_IOMMU_UNMAP_DMA) {
		struct vfio_iommu_type1_dma_unmap *u = arg;
		uint64_t first = u->iova, last = u->iova + u->size - 1, done = 0;
		int rc = 0;
		unmap_calls++;
		if (u->flags & VFIO_DMA_UNMAP_FLAG_ALL) {
			first = 0;
			last = ~0ull;
		}
		for (;;) {
			int best = -1;
			for (int i = 0; i < MAX_MAPS; i++)
				if (km[i].used && km[i].iova <= last &&
				    km[i].iova + km[i].size - 1 >= first &&
				    (best < 0 || km[i].iova < km[best].iova))
					best = i;
			if (best < 0)
				break;
			if (km[best].busy) {
				rc = EBUSY;
				break;
			}
			if (km[best].iova < first || km[best].iova + km[best].size - 1 > last) {
				rc = ENOENT;
				break;
			}
			done += km[best].size;
			km[best].used = false;
		}
		if (!rc && !done && empty_enoent)
			rc = ENOENT;
		u->size = done; /* written on failure too (vfio_compat.c) */
		if (rc) {
			errno = rc;
			return -1;
		}
		return 0;
	}
	errno = ENOTTY;
	return -1;
}

static uint64_t extents(struct iovt_domain *d)
{
	struct iovt_stats st;
	iovt_domain_stats_get(d, &st);
	return st.extents;
}

int main(int argc, char **argv)
{
	empty_enoent = argc > 1 && !strcmp(argv[1], "old");
	iovt_thread_register();
	struct guestsim *gs = gs_create(1, 64 << 21, 8 << 21);
	CHECK(gs);
	const struct gs_region *g = gs_region(gs, 0);
	struct iovt_engine *e;
	struct iovt_domain *d;
	struct iovt_notifier *n = NULL;
	CHECK_EQ(iovt_engine_create(NULL, &e), 0);
	CHECK_EQ(iovt_guest_ram_add(e, g->gpa, g->size, g->hva, NULL), 0);
	struct gs_domain *gd = gs_domain_create(gs, 48, true, false);
	CHECK(gd);
	struct iovt_domain_config dc = { .did = 1, .root_gpa = gs_domain_root(gd), .addr_width = 48 };
	CHECK_EQ(iovt_domain_create(e, &dc, &d), 0);
	struct iovt_vfio_sink_config cfg = { .no_query = true };
	struct iovt_sink s;
	CHECK_EQ(iovt_vfio_type1_sink_init(&s, FAKE_FD, &cfg), 0);
	CHECK_EQ(iovt_notifier_attach(d, IOVT_NOTIFY_IOTLB_EVENTS, &s, &n), 0);

	/* Two adjacent extents (HVAs not contiguous: two kernel mappings). */
	CHECK_EQ(gs_map(gd, 0x100000, g->gpa + 0x200000, 0x1000, IOVT_PERM_RW, GS_LEAF_4K), 0);
	CHECK_EQ(gs_map(gd, 0x101000, g->gpa + 0x400000, 0x1000, IOVT_PERM_RW, GS_LEAF_4K), 0);
	CHECK_EQ(iovt_invalidate_dsi(e, 1), 0);
	CHECK_EQ(iovt_fence(e), 0);
	CHECK_EQ(held(), 2);
	CHECK_EQ(extents(d), 2);

	/* The second is busy (another thread's unmap of it in flight, an
	 * area lock, an access that does not let go). */
	for (int i = 0; i < MAX_MAPS; i++)
		if (km[i].used && km[i].iova == 0x101000)
			km[i].busy = true;
	CHECK_EQ(gs_unmap(gd, 0x100000, 0x2000), 0);
	CHECK_EQ(iovt_invalidate_dsi(e, 1), 0);
	int rc = iovt_fence(e);
	printf("fence 1: %d; kernel holds %d, record %llu (unmap calls %u)\n", rc, held(),
	       (unsigned long long)extents(d), unmap_calls);
	CHECK(rc != 0);
	CHECK_EQ(extents(d), (uint64_t)held()); /* the busy one, in both */

	for (int i = 0; i < MAX_MAPS; i++)
		km[i].busy = false;
	for (int k = 2; k <= 5; k++) {
		rc = iovt_fence(e);
		printf("fence %d: %d; kernel holds %d, record %llu\n", k, rc, held(),
		       (unsigned long long)extents(d));
	}
	/* The guest maps 0x101000 again: does the device get it? */
	CHECK_EQ(gs_map(gd, 0x101000, g->gpa + 0x600000, 0x1000, IOVT_PERM_RW, GS_LEAF_4K), 0);
	CHECK_EQ(iovt_invalidate_psi(e, 1, 0x101000, 0, false), 0);
	for (int k = 0; k < 3; k++) {
		rc = iovt_fence(e);
		printf("after remap, fence: %d; kernel holds %d, record %llu\n", rc, held(),
		       (unsigned long long)extents(d));
	}
	int ok = held() == 1 && extents(d) == 1 && rc == 0;
	printf("%s\n", ok ? "CONSISTENT" : "DIVERGED: the record is not what the kernel holds");
	return ok ? 0 : 1;
}
