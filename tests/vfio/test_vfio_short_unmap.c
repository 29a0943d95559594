/* SPDX-License-Identifier: MIT */
/*
 * `vfio-type1-short-unmap`: the type1 sink over a fake container behind
 * ioctl() with the rule of kernels before 6.3 (vfio_dma_do_unmap stops at a
 * mapping another process made and still answers 0, with the size it got
 * to: a fork after mapping, DPDK multi-process). The engine took such a
 * success as whole and dropped from its record mappings the kernel still
 * held; every later MAP there met -EEXIST (found by review). Now the sink
 * says its count is exact (IOVT_SINK_EXACT_UNMAPPED): the record keeps what
 * is still held, the fence returns -EBUSY, and the retry completes once the
 * other process lets go.
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
	bool foreign, used;
} km[MAX_MAPS];
static bool foreign_mode;

static int held(void)
{
	int n = 0;
	for (int i = 0; i < MAX_MAPS; i++)
		n += km[i].used;
	return n;
}

/* The fake container: MAP (EEXIST on overlap), UNMAP ascending, stopping at
 * a foreign mapping with success and the bytes removed so far. */
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
				km[i] = (struct fmap){ m->iova, m->size, foreign_mode, true };
				return 0;
			}
		errno = ENOSPC;
		return -1;
	}
	if (req == VFIO_IOMMU_UNMAP_DMA) {
		struct vfio_iommu_type1_dma_unmap *u = arg;
		uint64_t last = u->iova + u->size - 1, done = 0;
		for (;;) {
			int best = -1;
			for (int i = 0; i < MAX_MAPS; i++)
				if (km[i].used && km[i].iova >= u->iova && km[i].iova <= last &&
				    (best < 0 || km[i].iova < km[best].iova))
					best = i;
			if (best < 0 || km[best].foreign)
				break;
			done += km[best].size;
			km[best].used = false;
		}
		u->size = done;
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

int main(void)
{
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
	CHECK(s.caps.flags & IOVT_SINK_EXACT_UNMAPPED);
	CHECK_EQ(iovt_notifier_attach(d, IOVT_NOTIFY_IOTLB_EVENTS, &s, &n), 0);

	/* Two mappings made "by another process" (a fork after mapping). */
	foreign_mode = true;
	CHECK_EQ(gs_map(gd, 0x100000, g->gpa + 0x200000, 0x1000, IOVT_PERM_RW, GS_LEAF_4K), 0);
	CHECK_EQ(gs_map(gd, 0x300000, g->gpa + 0x400000, 0x1000, IOVT_PERM_RW, GS_LEAF_4K), 0);
	CHECK_EQ(iovt_invalidate_dsi(e, 1), 0);
	CHECK_EQ(iovt_fence(e), 0);
	foreign_mode = false;
	CHECK_EQ(held(), 2);
	CHECK_EQ(extents(d), 2);

	/* The guest unmaps both: the kernel answers 0 having removed nothing.
	 * The record keeps both (it is what the kernel holds), the fence says
	 * so, and translate still answers what the device can reach. */
	CHECK_EQ(gs_unmap(gd, 0x100000, 0x1000), 0);
	CHECK_EQ(gs_unmap(gd, 0x300000, 0x1000), 0);
	CHECK_EQ(iovt_invalidate_dsi(e, 1), 0);
	CHECK_EQ(iovt_fence(e), -EBUSY);
	CHECK_EQ(held(), 2);
	CHECK_EQ(extents(d), 2);
	struct iovt_stats st;
	iovt_domain_stats_get(d, &st);
	CHECK(st.errors[IOVT_ERR_SINK_UNMAP] >= 1);

	/* The other process lets go; the retry (no new invalidation) removes
	 * them, and the guest can map the IOVA again. */
	for (int i = 0; i < MAX_MAPS; i++)
		km[i].foreign = false;
	CHECK_EQ(iovt_fence(e), 0);
	CHECK_EQ(held(), 0);
	CHECK_EQ(extents(d), 0);
	CHECK_EQ(gs_map(gd, 0x100000, g->gpa + 0x500000, 0x1000, IOVT_PERM_RW, GS_LEAF_4K), 0);
	CHECK_EQ(iovt_invalidate_psi(e, 1, 0x100000, 0, false), 0);
	CHECK_EQ(iovt_fence(e), 0);
	CHECK_EQ(held(), 1);
	CHECK_EQ(extents(d), 1);

	CHECK_EQ(iovt_notifier_detach(n), 0);
	CHECK_EQ(held(), 0);
	CHECK_EQ(iovt_domain_destroy(d), 0);
	iovt_engine_destroy(e);
	gs_domain_destroy(gd);
	gs_destroy(gs);
	iovt_thread_unregister();
	printf("vfio-type1-short-unmap: a short successful UNMAP kept in the record, retried: ok\n");
	return 0;
}
