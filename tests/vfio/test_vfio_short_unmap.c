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
 *
 * `vfio-type1-compat-unmap` (argument `compat`, and `compat-old`): the type1 sink over an iommufd-provided
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
 *
 * `vfio-type1-short-unmap-5.10` (argument `5.10`): vfio_iommu_type1 as in
 * Linux 5.10 and 5.11 (Debian 11), found by reading the kernel's history:
 * vfio_dma_do_unmap takes the mappings of the range in the order its tree
 * search from the root meets them, not ascending, and still stops at
 * another process's with success. One UNMAP over own A, foreign F and own
 * B (B met first) removed B and answered 4 KiB: read as an ascending
 * prefix, the record dropped A, which the kernel still held, and kept B,
 * which it had removed. This fake removes in descending order and, as
 * those kernels, lacks VFIO_UNMAP_ALL (5.12's series), which is how the
 * sink, now asking the kernel (no no_query here), knows to unmap one
 * mapping per call. After every fence the record must be what the kernel
 * holds.
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
	bool stuck, used; /* stuck: cannot be removed now (another process's, busy) */
} km[MAX_MAPS];
static bool stuck_mode;
/* The kernel behind /dev/vfio/vfio: vfio_iommu_type1 before 6.3, or
 * iommufd's compat container (since afb47765f923, or before it). */
static enum { K_TYPE1, K_COMPAT, K_COMPAT_OLD, K_TYPE1_510 } kernel;

static int held(void)
{
	int n = 0;
	for (int i = 0; i < MAX_MAPS; i++)
		n += km[i].used;
	return n;
}

/* The fake container: MAP (EEXIST on overlap), UNMAP ascending. type1
 * stops at a stuck mapping with success and the bytes removed so far;
 * compat fails there (-EBUSY) and at a mapping that crosses the range
 * (-ENOENT), and writes the bytes removed so far either way; its empty
 * range answers 0, or -ENOENT (old). */
static int fake_unmap(struct vfio_iommu_type1_dma_unmap *u)
{
	uint64_t first = u->iova, last = u->iova + u->size - 1, done = 0;
	int rc = 0;
	if (u->flags & VFIO_DMA_UNMAP_FLAG_ALL) {
		first = 0;
		last = ~0ull;
	}
	for (;;) {
		int best = -1;
		const bool down = kernel == K_TYPE1_510; /* not ascending: descending here */
		for (int i = 0; i < MAX_MAPS; i++)
			if (km[i].used && km[i].iova <= last && km[i].iova + km[i].size - 1 >= first &&
			    ((kernel != K_TYPE1 && !down) || km[i].iova >= first) &&
			    (best < 0 || (down ? km[i].iova > km[best].iova : km[i].iova < km[best].iova)))
				best = i;
		if (best < 0)
			break;
		if (km[best].stuck) {
			rc = kernel == K_TYPE1 || down ? 0 : EBUSY;
			break;
		}
		if (km[best].iova < first || km[best].iova + km[best].size - 1 > last) {
			rc = ENOENT;
			break;
		}
		done += km[best].size;
		km[best].used = false;
	}
	if (!rc && !done && kernel == K_COMPAT_OLD)
		rc = ENOENT;
	u->size = done; /* compat: written on failure too (vfio_compat.c) */
	if (rc) {
		errno = rc;
		return -1;
	}
	return 0;
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
				km[i] = (struct fmap){ m->iova, m->size, stuck_mode, true };
				return 0;
			}
		errno = ENOSPC;
		return -1;
	}
	if (req == VFIO_IOMMU_UNMAP_DMA)
		return fake_unmap(arg);
	if (req == VFIO_CHECK_EXTENSION) { /* only the 5.10 world queries */
		unsigned long ext = (unsigned long)(uintptr_t)arg;
		return ext == VFIO_TYPE1v2_IOMMU ? 1 : ext == VFIO_UNMAP_ALL ? kernel != K_TYPE1_510 : 0;
	}
	if (req == VFIO_IOMMU_GET_INFO) { /* 4 KiB pages, no capability chain */
		struct vfio_iommu_type1_info *in = arg;
		in->argsz = sizeof(*in);
		in->flags = VFIO_IOMMU_INFO_PGSIZES;
		in->iova_pgsizes = 0x1000;
		in->cap_offset = 0;
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

struct world {
	struct guestsim *gs;
	const struct gs_region *g;
	struct gs_domain *gd;
	struct iovt_engine *e;
	struct iovt_domain *d;
	struct iovt_notifier *n;
};

static void world_init(struct world *w)
{
	w->gs = gs_create(1, 64 << 21, 8 << 21);
	CHECK(w->gs);
	w->g = gs_region(w->gs, 0);
	CHECK_EQ(iovt_engine_create(NULL, &w->e), 0);
	CHECK_EQ(iovt_guest_ram_add(w->e, w->g->gpa, w->g->size, w->g->hva, NULL), 0);
	w->gd = gs_domain_create(w->gs, 48, true, false);
	CHECK(w->gd);
	struct iovt_domain_config dc = { .did = 1, .root_gpa = gs_domain_root(w->gd), .addr_width = 48 };
	CHECK_EQ(iovt_domain_create(w->e, &dc, &w->d), 0);
	struct iovt_vfio_sink_config cfg = { .no_query = kernel != K_TYPE1_510 };
	struct iovt_sink s;
	CHECK_EQ(iovt_vfio_type1_sink_init(&s, FAKE_FD, &cfg), 0);
	CHECK(s.caps.flags & IOVT_SINK_EXACT_UNMAPPED);
	CHECK_EQ(iovt_notifier_attach(w->d, IOVT_NOTIFY_IOTLB_EVENTS, &s, &w->n), 0);
}

static void world_fini(struct world *w)
{
	CHECK_EQ(iovt_notifier_detach(w->n), 0);
	CHECK_EQ(held(), 0);
	CHECK_EQ(iovt_domain_destroy(w->d), 0);
	iovt_engine_destroy(w->e);
	gs_domain_destroy(w->gd);
	gs_destroy(w->gs);
}

/* vfio-type1-short-unmap */
static void short_main(struct world *w)
{
	struct iovt_engine *e = w->e;
	struct iovt_domain *d = w->d;
	struct gs_domain *gd = w->gd;
	const struct gs_region *g = w->g;

	/* Two mappings made "by another process" (a fork after mapping). */
	stuck_mode = true;
	CHECK_EQ(gs_map(gd, 0x100000, g->gpa + 0x200000, 0x1000, IOVT_PERM_RW, GS_LEAF_4K), 0);
	CHECK_EQ(gs_map(gd, 0x300000, g->gpa + 0x400000, 0x1000, IOVT_PERM_RW, GS_LEAF_4K), 0);
	CHECK_EQ(iovt_invalidate_dsi(e, 1), 0);
	CHECK_EQ(iovt_fence(e), 0);
	stuck_mode = false;
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
		km[i].stuck = false;
	CHECK_EQ(iovt_fence(e), 0);
	CHECK_EQ(held(), 0);
	CHECK_EQ(extents(d), 0);
	CHECK_EQ(gs_map(gd, 0x100000, g->gpa + 0x500000, 0x1000, IOVT_PERM_RW, GS_LEAF_4K), 0);
	CHECK_EQ(iovt_invalidate_psi(e, 1, 0x100000, 0, false), 0);
	CHECK_EQ(iovt_fence(e), 0);
	CHECK_EQ(held(), 1);
	CHECK_EQ(extents(d), 1);

	world_fini(w);
	printf("vfio-type1-short-unmap: a short successful UNMAP kept in the record, retried: ok\n");
}

/* vfio-type1-compat-unmap */
static void compat_main(struct world *w)
{
	struct iovt_engine *e = w->e;
	struct iovt_domain *d = w->d;
	struct gs_domain *gd = w->gd;
	const struct gs_region *g = w->g;
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
			km[i].stuck = true;
	CHECK_EQ(gs_unmap(gd, 0x100000, 0x2000), 0);
	CHECK_EQ(iovt_invalidate_dsi(e, 1), 0);
	int rc = iovt_fence(e);
	printf("fence 1: %d; kernel holds %d, record %llu\n", rc, held(),
	       (unsigned long long)extents(d));
	CHECK(rc != 0);
	CHECK_EQ(extents(d), (uint64_t)held()); /* the busy one, in both */

	for (int i = 0; i < MAX_MAPS; i++)
		km[i].stuck = false;
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
	CHECK_EQ(held(), 1);
	CHECK_EQ(extents(d), 1);
	CHECK_EQ(rc, 0);
	/* and the guest's unmap of it, for the teardown's empty container */
	CHECK_EQ(gs_unmap(gd, 0x101000, 0x1000), 0);
	CHECK_EQ(iovt_invalidate_psi(e, 1, 0x101000, 0, false), 0);
	CHECK_EQ(iovt_fence(e), 0);
	world_fini(w);
	printf("vfio-type1-compat-unmap%s: record == kernel after every fence: ok\n",
	       kernel == K_COMPAT_OLD ? " (old)" : "");
}

/* Does the record say iova is mapped exactly when the fake kernel holds it? */
static void check_same(struct iovt_domain *d, const uint64_t *iova, int n, const char *when)
{
	for (int k = 0; k < n; k++) {
		bool kern = false;
		for (int i = 0; i < MAX_MAPS; i++)
			kern |= km[i].used && iova[k] - km[i].iova < km[i].size;
		struct iovt_extent x;
		bool rec = iovt_translate(d, iova[k], &x) == 0;
		printf("  %s: 0x%llx kernel %d record %d\n", when, (unsigned long long)iova[k], kern, rec);
		CHECK_EQ(rec, kern);
	}
}

/* vfio-type1-short-unmap-5.10 */
static void old_main(struct world *w)
{
	struct iovt_engine *e = w->e;
	struct iovt_domain *d = w->d;
	struct gs_domain *gd = w->gd;
	const struct gs_region *g = w->g;
	const uint64_t iova[3] = { 0x100000, 0x101000, 0x102000 }; /* A, F (foreign), B */
	for (int k = 0; k < 3; k++) {
		stuck_mode = k == 1;
		CHECK_EQ(gs_map(gd, iova[k], g->gpa + 0x200000 * (k + 1), 0x1000, IOVT_PERM_RW,
				GS_LEAF_4K), 0);
		CHECK_EQ(iovt_invalidate_psi(e, 1, iova[k], 0, false), 0);
		CHECK_EQ(iovt_fence(e), 0);
	}
	stuck_mode = false;
	CHECK_EQ(held(), 3);
	CHECK_EQ(extents(d), 3);
	/* The guest unmaps all three: F stays (another process's). */
	CHECK_EQ(gs_unmap(gd, iova[0], 0x3000), 0);
	CHECK_EQ(iovt_invalidate_dsi(e, 1), 0);
	int rc = iovt_fence(e);
	printf("fence: %d; kernel holds %d, record %llu\n", rc, held(), (unsigned long long)extents(d));
	check_same(d, iova, 3, "F held");
	CHECK_EQ(rc, -EBUSY);
	/* F let go: the retry empties both. */
	for (int i = 0; i < MAX_MAPS; i++)
		km[i].stuck = false;
	CHECK_EQ(iovt_fence(e), 0);
	check_same(d, iova, 3, "let go");
	CHECK_EQ(held(), 0);
	world_fini(w);
	printf("vfio-type1-short-unmap-5.10: record == kernel after every fence: ok\n");
}

int main(int argc, char **argv)
{
	const char *m = argc > 1 ? argv[1] : "";
	iovt_thread_register();
	struct world w;
	kernel = !strcmp(m, "compat")	   ? K_COMPAT
		 : !strcmp(m, "compat-old") ? K_COMPAT_OLD
		 : !strcmp(m, "5.10")	   ? K_TYPE1_510
					   : K_TYPE1;
	world_init(&w);
	if (kernel == K_TYPE1)
		short_main(&w);
	else if (kernel == K_TYPE1_510)
		old_main(&w);
	else
		compat_main(&w);
	iovt_thread_unregister();
	return 0;
}
