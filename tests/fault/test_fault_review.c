/* SPDX-License-Identifier: MIT */
/*
 * fault-review: the sink-failure scenarios the thirteenth session's review
 * found (`test_fault_review CASE`), each asserting the contract the review
 * saw broken; each failed before its fix.
 *
 *  dsi-enomem     a DSI whose plan runs out of memory: the whole domain
 *                 was retried as a range, 2^16 pages a fence, so a page at
 *                 64 GiB reached the device 256 fences later (each of them
 *                 returning 0). Now the retry is the whole domain at once.
 *  multi-unmap-prefix  an iommufd-like sink (IOVT_SINK_PARTIAL_UNCOUNTED:
 *                 no byte count on failure) fails a multi-mapping UNMAP after
 *                 removing its first mapping: the record kept it, so a
 *                 guest that mapped it again at the same place was told
 *                 nothing (device != guest, fences returning 0), or every
 *                 retry of the span hit -ENOENT.
 *  multi-unmap-prefix-enomem[-remap]  the same failed UNMAP, and the
 *                 extent-by-extent resolution that follows it runs out of
 *                 memory collecting the group (twenty-second session's
 *                 review): the record kept the removed mapping, so a guest
 *                 that mapped it again was told nothing (-remap: device !=
 *                 guest with fences returning 0), or the retry's short
 *                 UNMAP dropped the wrong extent from the record and every
 *                 later fence returned -ENOENT. Now the resolution
 *                 allocates nothing.
 *  lost-mapping   a mapping the sink lost behind the engine's back (another
 *                 user of the iommufd IOAS unmapped it; alone, or first of
 *                 a group): the guest's UNMAP of it answered -ENOENT, the
 *                 record kept it and every later fence returned -ENOENT
 *                 (twenty-second session's review). Now an UNMAP that an
 *                 IOVT_SINK_UNMAP_EMPTY_ERR sink finds empty takes the span
 *                 out of the record (counted).
 *  map-enomem     the record cannot take a MAP (the tree's allocation
 *                 fails) and the sink refuses the UNMAP that took it back:
 *                 the device held a mapping the record did not, every
 *                 retry sent the MAP again (-EEXIST), and after the guest
 *                 unmapped the page the device kept it with fences
 *                 returning 0. Now the record takes the extent first, and
 *                 a MAP it cannot take is not sent.
 *  detach-unmap-all  a detach whose unmap-all stops at a busy mapping (as
 *                 iommufd and DPDK do): every mapping after it stayed in
 *                 the device after the notifier was gone. Now one UNMAP per
 *                 extent follows, and only the busy one stays.
 *  detach-multi-unmap  a detach (or destroy) through one multi-UNMAP of a
 *                 sink without unmap_all: its pages, calls and errors are
 *                 counted exactly (a counter check, added by a mutation
 *                 audit; no defect of its own).
 *  queue-enomem   a queue whose allocation fails (the queue, or its ring;
 *                 a thread's first post creates its implicit queue the
 *                 same way): -ENOMEM was returned but counted nowhere
 *                 (noticed in the twenty-fourth session). Now each is one
 *                 errors[NO_MEMORY] of the engine; a post after the fault
 *                 still works.
 *  capped-retry   capped spans (past the sink's cap) inside a span retried
 *                 after a failed multi-UNMAP: the retry mapped them but
 *                 they stayed "capped", and once the cap was full again
 *                 every fence returned -ENOSPC with the device equal to
 *                 the guest.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "common/alloc.h" /* iovt_alloc_fault */
#include "common/vec.h"   /* iovt_vec_fault */
#include "guestsim.h"
#include "iovt.h"
#include "iovt_model.h"

CHECK_SEED_STORAGE;

#define K 0x1000ull
#define M1 0x100000ull
#define M2 0x200000ull

/* ---- a wrapper sink with hand-made failures ---- */
struct wrap {
	struct iovt_sink inner;
	struct iovt_model_sink *model;
	int arm_tree_enomem;    /* after the next successful MAP, the allocator fails */
	int fail_unmaps;        /* the next n UNMAPs fail (nothing removed, 0 reported) */
	int iommufd_prefix;     /* the next UNMAP removes its first mapping, fails, reports 0 */
	int arm_vec_enomem;     /* with iommufd_prefix: the next vector growth fails */
	int busy_all;           /* the mapping at busy_iova is busy: unmap_all stops there */
	uint64_t busy_iova;
	uint64_t unmap_calls;   /* unmap() and unmap_all() calls received (iovt_stats::unmap_calls) */
};

static __attribute__((unused)) bool always_fail(size_t s)
{
	(void)s;
	return true;
}

static bool vec_always(size_t s)
{
	(void)s;
	return true;
}

static int w_map(void *ctx, const struct iovt_extent *m)
{
	struct wrap *w = ctx;
	int rc = w->inner.ops->map(w->inner.ctx, m);
	if (!rc && w->arm_tree_enomem) {
		w->arm_tree_enomem = 0;
		iovt_alloc_fault = always_fail; /* the tree insert that follows fails */
	}
	return rc;
}

static int w_unmap(void *ctx, uint64_t iova, uint64_t size, uint64_t *unmapped)
{
	struct wrap *w = ctx;
	w->unmap_calls++;
	iovt_alloc_fault = NULL;
	iovt_vec_fault = NULL;
	if (w->busy_all && w->busy_iova - iova < size) {
		*unmapped = 0;
		return -EBUSY; /* the busy mapping refuses every UNMAP that reaches it */
	}
	if (w->fail_unmaps) {
		w->fail_unmaps--;
		*unmapped = 0;
		return -EIO;
	}
	if (w->iommufd_prefix) {
		w->iommufd_prefix = 0;
		struct iovt_extent first;
		CHECK(iovt_model_sink_dump(w->model, iova, &first, 1) == 1);
		uint64_t done = 0;
		CHECK(w->inner.ops->unmap(w->inner.ctx, first.iova, first.size, &done) == 0);
		*unmapped = 0; /* as engine/sinks/iommufd_sink.c: no reply on failure */
		if (w->arm_vec_enomem) {
			w->arm_vec_enomem = 0;
			iovt_vec_fault = vec_always; /* the resolution's first growth fails */
		}
		return -EBUSY;
	}
	return w->inner.ops->unmap(w->inner.ctx, iova, size, unmapped);
}

/* Unmap-all as iommufd and DPDK fail it: stops at a busy mapping (the
 * second), having removed the ones before it. */
static int w_unmap_all(void *ctx, uint64_t *unmapped)
{
	struct wrap *w = ctx;
	struct iovt_extent e[64];
	w->unmap_calls++;
	size_t n = iovt_model_sink_dump(w->model, 0, e, 64);
	*unmapped = 0;
	for (size_t i = 0; i < n && i < 64; i++) {
		if (w->busy_all && e[i].iova == w->busy_iova)
			return -EBUSY;
		uint64_t done = 0;
		CHECK(w->inner.ops->unmap(w->inner.ctx, e[i].iova, e[i].size, &done) == 0);
		*unmapped += done;
	}
	return 0;
}

static const struct iovt_sink_ops w_ops = { .map = w_map, .unmap = w_unmap, .unmap_all = w_unmap_all };

struct world {
	struct guestsim *gs;
	struct gs_domain *gd;
	struct iovt_engine *e;
	struct iovt_domain *d;
	struct iovt_notifier *n;
	struct iovt_model_sink *model;
	struct wrap w;
	struct iovt_sink sink;
};

static uint32_t model_max;
static void world_init(struct world *x, enum iovt_model_flavor fl, bool multi, uint32_t extra_flags)
{
	memset(x, 0, sizeof(*x));
	x->gs = gs_create(1, 512 * M2, 32 * M2);
	CHECK(x->gs);
	const struct gs_region *r = gs_region(x->gs, 0);
	CHECK(iovt_engine_create(NULL, &x->e) == 0);
	CHECK(iovt_guest_ram_add(x->e, r->gpa, r->size, r->hva, NULL) == 0);
	x->gd = gs_domain_create(x->gs, 48, true, false);
	CHECK(x->gd);
	struct iovt_domain_config dc = { .did = 3, .root_gpa = gs_domain_root(x->gd),
					 .addr_width = 48, .allow_2m = true };
	CHECK(iovt_domain_create(x->e, &dc, &x->d) == 0);
	struct iovt_model_config mc = { .flavor = fl, .multi_unmap = multi, .max_mappings = model_max };
	CHECK(iovt_model_sink_create(&mc, &x->model, &x->w.inner) == 0);
	x->w.model = x->model;
	x->sink.ops = &w_ops;
	x->sink.ctx = &x->w;
	x->sink.caps = x->w.inner.caps;
	x->sink.caps.flags &= ~IOVT_SINK_UNMAP_ALL;
	x->sink.caps.flags |= extra_flags;
	x->sink.name = "wrap";
	CHECK(iovt_notifier_attach(x->d, IOVT_NOTIFY_IOTLB_EVENTS, &x->sink, &x->n) == 0);
}

static void world_destroy(struct world *x)
{
	iovt_engine_destroy(x->e);
	iovt_model_sink_destroy(x->model);
	gs_destroy(x->gs);
}

static void psi(struct world *x, uint64_t iova, uint64_t size)
{
	uint64_t first = iova >> 12, last = (iova + size - 1) >> 12;
	unsigned am = 0;
	while ((first >> am) != (last >> am))
		am++;
	CHECK(iovt_invalidate_psi(x->e, 3, (first >> am) << (12 + am), am, false) == 0);
}

static __attribute__((unused)) uint64_t rejected(struct world *x)
{
	struct iovt_model_stats ms;
	iovt_model_sink_stats(x->model, &ms);
	return ms.rejected_calls;
}

static __attribute__((unused)) void show(struct world *x, const char *what, uint64_t iova)
{
	struct iovt_extent t, m;
	int rc = iovt_translate(x->d, iova, &t);
	bool held = iovt_model_sink_find(x->model, iova, &m);
	uint64_t gpa;
	uint32_t perm;
	bool guest = gs_truth_lookup(x->gd, iova, &gpa, &perm);
	printf("  %s 0x%" PRIx64 ": guest %s, record %s, device %s\n", what, iova,
	       guest ? "maps" : "-", rc ? "-" : "holds", held ? "holds" : "-");
}


/* The device equals the guest over [lo, hi). */
static void device_is_guest(struct world *x, uint64_t lo, uint64_t hi, const char *when)
{
	for (uint64_t a = lo; a < hi; a += K) {
		uint64_t gpa;
		uint32_t perm;
		struct iovt_extent m;
		bool g = gs_truth_lookup(x->gd, a, &gpa, &perm), h = iovt_model_sink_find(x->model, a, &m);
		if (g != h || (g && m.gpa + (a - m.iova) != gpa)) {
			fprintf(stderr, "%s: device != guest at 0x%" PRIx64 "\n", when, a);
			CHECK(0);
		}
	}
}

static uint64_t vec_fail_left;
static bool vec_fail(size_t b)
{
	(void)b;
	return vec_fail_left ? (vec_fail_left--, true) : false;
}

static void case_dsi_enomem(void)
{
	struct world x;
	world_init(&x, IOVT_MODEL_TYPE1, true, 0);
	const uint64_t hi = 1ull << 36; /* 64 GiB: the 257th slice of 2^16 pages */
	CHECK(gs_map(x.gd, 0, 16 * M1, K, IOVT_PERM_RW, GS_LEAF_4K) == 0);
	CHECK(gs_map(x.gd, hi, 20 * M1, K, IOVT_PERM_RW, GS_LEAF_4K) == 0);
	CHECK(iovt_invalidate_dsi(x.e, 3) == 0);
	vec_fail_left = 1000;
	iovt_vec_fault = vec_fail;
	CHECK_EQ(iovt_fence(x.e), -ENOMEM);
	iovt_vec_fault = NULL;
	struct iovt_stats dst;
	iovt_domain_stats_get(x.d, &dst);
	CHECK_EQ(dst.errors[IOVT_ERR_NO_MEMORY], 1);
	/* the next fence retries the whole domain: both pages reach the device */
	CHECK_EQ(iovt_fence(x.e), 0);
	struct iovt_extent m;
	CHECK(iovt_model_sink_find(x.model, 0, &m));
	CHECK(iovt_model_sink_find(x.model, hi, &m));
	device_is_guest(&x, 0, 2 * M1, "dsi-enomem");
	device_is_guest(&x, hi, hi + 2 * M1, "dsi-enomem");
	printf("dsi-enomem: the whole domain retried by the next fence\n");
	world_destroy(&x);
}

static void case_capped_retry(void)
{
	struct world x;
	model_max = 3;
	world_init(&x, IOVT_MODEL_TYPE1, true, 0);
	model_max = 0;
	CHECK(gs_map(x.gd, 0, 16 * M1, K, IOVT_PERM_RW, GS_LEAF_4K) == 0);       /* A */
	CHECK(gs_map(x.gd, 128 * K, 20 * M1, K, IOVT_PERM_RW, GS_LEAF_4K) == 0); /* C */
	CHECK(gs_map(x.gd, M1, 24 * M1, K, IOVT_PERM_RW, GS_LEAF_4K) == 0);      /* D */
	psi(&x, 0, K);
	psi(&x, 128 * K, K);
	psi(&x, M1, K);
	CHECK_EQ(iovt_fence(x.e), 0);
	CHECK(gs_map(x.gd, 32 * K, 28 * M1, K, IOVT_PERM_RW, GS_LEAF_4K) == 0); /* S1 */
	CHECK(gs_map(x.gd, 64 * K, 32 * M1, K, IOVT_PERM_RW, GS_LEAF_4K) == 0); /* S2 */
	psi(&x, 32 * K, K);
	psi(&x, 64 * K, K);
	CHECK_EQ(iovt_fence(x.e), -ENOSPC); /* S1, S2 past the cap */
	CHECK(gs_unmap(x.gd, 0, K) == 0);
	CHECK(gs_unmap(x.gd, 128 * K, K) == 0);
	psi(&x, 0, K);
	psi(&x, 128 * K, K);
	x.w.fail_unmaps = 1; /* the multi-UNMAP of A..C fails: its span is retried */
	CHECK(iovt_fence(x.e) != 0);
	int rc = 0;
	for (int i = 0; i < 4; i++)
		rc = iovt_fence(x.e);
	device_is_guest(&x, 0, 2 * M1, "capped-retry");
	CHECK_EQ(iovt_model_sink_count(x.model), 3);
	CHECK_EQ(rc, 0); /* the device equals the guest: nothing is capped */
	printf("capped-retry: spans a retry mapped leave the capped set\n");
	world_destroy(&x);
}

static void case_map_enomem(void)
{
	struct world x;
	world_init(&x, IOVT_MODEL_TYPE1, false, 0);
	CHECK(gs_map(x.gd, 16 * K, 16 * M1, K, IOVT_PERM_RW, GS_LEAF_4K) == 0);
	psi(&x, 16 * K, K);
	x.w.fail_unmaps = 1; /* a take-back, if any, is refused */
	iovt_alloc_fault = always_fail; /* the record's node cannot be allocated */
	int rc = iovt_fence(x.e);
	iovt_alloc_fault = NULL;
	x.w.fail_unmaps = 0;
	CHECK(rc != 0);
	struct iovt_stats dst;
	iovt_domain_stats_get(x.d, &dst);
	CHECK(dst.errors[IOVT_ERR_NO_MEMORY] > 0); /* counted, not only returned */
	struct iovt_extent t, m;
	bool held = iovt_model_sink_find(x.model, 16 * K, &m);
	CHECK_EQ(iovt_translate(x.d, 16 * K, &t) == 0, held); /* record == device */
	CHECK_EQ(iovt_fence(x.e), 0); /* the retry maps it */
	CHECK(iovt_model_sink_find(x.model, 16 * K, &m));
	CHECK(iovt_translate(x.d, 16 * K, &t) == 0);
	CHECK_EQ(rejected(&x), 0);
	CHECK(gs_unmap(x.gd, 16 * K, K) == 0);
	psi(&x, 16 * K, K);
	CHECK_EQ(iovt_fence(x.e), 0);
	CHECK(!iovt_model_sink_find(x.model, 16 * K, &m));
	CHECK_EQ(iovt_model_sink_count(x.model), 0);
	CHECK_EQ(rejected(&x), 0);
	printf("map-enomem: a MAP the record cannot take is not sent\n");
	world_destroy(&x);
}

static unsigned allocs_left;
static bool fail_after(size_t s)
{
	(void)s;
	if (!allocs_left)
		return true;
	allocs_left--;
	return false;
}

static void case_queue_enomem(void)
{
	struct world x;
	world_init(&x, IOVT_MODEL_TYPE1, false, 0);
	struct iovt_stats a, b;
	struct iovt_queue *q = NULL;
	/* The engine's own ring (rte_ring's memory is DPDK's glue's, outside
	 * the fault hook). */
	const struct iovt_queue_config qc = { .backend = IOVT_QUEUE_WFCQ };
	for (unsigned ok = 0; ok < 2; ok++) { /* the queue's allocation, then its ring's */
		iovt_stats_get(x.e, &a);
		allocs_left = ok;
		iovt_alloc_fault = fail_after;
		int rc = iovt_queue_create(x.e, &qc, &q);
		iovt_alloc_fault = NULL;
		CHECK_EQ(rc, (uint64_t)-ENOMEM);
		iovt_stats_get(x.e, &b);
		CHECK_EQ(b.errors[IOVT_ERR_NO_MEMORY], a.errors[IOVT_ERR_NO_MEMORY] + 1);
	}
	CHECK_EQ(iovt_queue_create(x.e, &qc, &q), 0); /* memory again: it works */
	CHECK(gs_map(x.gd, 16 * K, 16 * M1, K, IOVT_PERM_RW, GS_LEAF_4K) == 0);
	CHECK_EQ(iovt_queue_psi(q, 3, 16 * K, 0, false), 0);
	CHECK_EQ(iovt_queue_fence(q), 0);
	struct iovt_extent m;
	CHECK(iovt_model_sink_find(x.model, 16 * K, &m));
	iovt_queue_destroy(q);
	printf("queue-enomem: both failures counted, the next queue works\n");
	world_destroy(&x);
}

static void case_detach_unmap_all(void)
{
	struct world x;
	world_init(&x, IOVT_MODEL_TYPE1, true, IOVT_SINK_UNMAP_ALL);
	for (unsigned i = 0; i < 8; i++)
		CHECK(gs_map(x.gd, i * 64 * K, 16 * M1 + i * 2 * K, K, IOVT_PERM_RW, GS_LEAF_4K) == 0);
	psi(&x, 0, 512 * K);
	CHECK_EQ(iovt_fence(x.e), 0);
	CHECK_EQ(iovt_model_sink_count(x.model), 8);
	x.w.busy_all = 1;
	x.w.busy_iova = 64 * K; /* the second */
	struct iovt_stats a, b;
	iovt_domain_stats_get(x.d, &a);
	CHECK(iovt_notifier_detach(x.n) != 0);
	x.n = NULL;
	iovt_domain_stats_get(x.d, &b);
	/* counted: the failed unmap-all, and the busy mapping's own UNMAP */
	CHECK_EQ(b.errors[IOVT_ERR_SINK_UNMAP] - a.errors[IOVT_ERR_SINK_UNMAP], 2);
	/* unmap-all, then one UNMAP for each of the 8 extents */
	CHECK_EQ(b.unmap_calls - a.unmap_calls, 9);
	/* the first (by unmap-all) and the six after the busy one: one page each */
	CHECK_EQ(b.pages_unmapped - a.pages_unmapped, 7);
	/* the first went with unmap-all, the second is busy, the rest went one by one */
	CHECK_EQ(iovt_model_sink_count(x.model), 1);
	struct iovt_extent m;
	CHECK(iovt_model_sink_find(x.model, 64 * K, &m));
	printf("detach-unmap-all: a failed unmap-all is followed by one UNMAP per extent\n");
	world_destroy(&x);
}

/* A multi-UNMAP sink without unmap_all holding three extents (9 pages, with
 * gaps between them), detached (or its domain destroyed): one UNMAP from
 * the first to the last removes them all, and the counters say so (the
 * detached domain's, or after a destroy the engine's, into which it folded). */
static void case_detach_multi_unmap(void)
{
	for (int destroy = 0; destroy < 2; destroy++) {
		struct world x;
		world_init(&x, IOVT_MODEL_TYPE1, true, 0); /* MULTI_UNMAP, no UNMAP_ALL */
		CHECK(!(x.sink.caps.flags & IOVT_SINK_UNMAP_ALL));
		CHECK(x.sink.caps.flags & IOVT_SINK_MULTI_UNMAP);
		CHECK(gs_map(x.gd, 0, 16 * M1, K, IOVT_PERM_RW, GS_LEAF_4K) == 0);
		CHECK(gs_map(x.gd, 64 * K, 20 * M1, 3 * K, IOVT_PERM_RW, GS_LEAF_4K) == 0);
		CHECK(gs_map(x.gd, 256 * K, 24 * M1, 5 * K, IOVT_PERM_RW, GS_LEAF_4K) == 0);
		psi(&x, 0, 512 * K);
		CHECK_EQ(iovt_fence(x.e), 0);
		CHECK_EQ(iovt_model_sink_count(x.model), 3);
		struct iovt_stats a, b, ea, eb;
		iovt_domain_stats_get(x.d, &a);
		iovt_stats_get(x.e, &ea);
		const uint64_t calls0 = x.w.unmap_calls;
		if (destroy) {
			CHECK_EQ(iovt_domain_destroy(x.d), 0);
			x.d = NULL;
		} else {
			CHECK_EQ(iovt_notifier_detach(x.n), 0);
			iovt_domain_stats_get(x.d, &b);
			CHECK_EQ(b.pages_unmapped - a.pages_unmapped, 9);
			CHECK_EQ(b.unmap_calls - a.unmap_calls, 1);
			CHECK_EQ(b.errors[IOVT_ERR_SINK_UNMAP] - a.errors[IOVT_ERR_SINK_UNMAP], 0);
		}
		x.n = NULL;
		iovt_stats_get(x.e, &eb);
		CHECK_EQ(eb.pages_unmapped - ea.pages_unmapped, 9);
		CHECK_EQ(eb.unmap_calls - ea.unmap_calls, 1);
		CHECK_EQ(eb.errors[IOVT_ERR_SINK_UNMAP] - ea.errors[IOVT_ERR_SINK_UNMAP], 0);
		CHECK_EQ(x.w.unmap_calls - calls0, 1); /* one call for all three */
		CHECK_EQ(iovt_model_sink_count(x.model), 0);
		world_destroy(&x);
	}
	printf("detach-multi-unmap: one multi-UNMAP, its pages counted\n");
}

/* iommufd's flags; A and B mapped and fenced, then both unmapped by the
 * guest and invalidated (the fence is the case's). */
static void two_mapped_then_unmapped(struct world *x, uint32_t extra_flags)
{
	world_init(x, IOVT_MODEL_IOMMUFD, true, extra_flags);
	CHECK(gs_map(x->gd, 0, 16 * M1, K, IOVT_PERM_RW, GS_LEAF_4K) == 0);      /* A */
	CHECK(gs_map(x->gd, 64 * K, 20 * M1, K, IOVT_PERM_RW, GS_LEAF_4K) == 0); /* B */
	psi(x, 0, 128 * K);
	CHECK_EQ(iovt_fence(x->e), 0);
	CHECK(gs_unmap(x->gd, 0, 128 * K) == 0);
	psi(x, 0, 128 * K);
}

static void case_multi_unmap_prefix(void)
{
	for (int remap_both = 0; remap_both < 2; remap_both++) {
		struct world x;
		two_mapped_then_unmapped(&x, IOVT_SINK_PARTIAL_UNMAP | IOVT_SINK_PARTIAL_UNCOUNTED);
		struct iovt_stats a, b;
		iovt_domain_stats_get(x.d, &a);
		const uint64_t calls0 = x.w.unmap_calls;
		x.w.iommufd_prefix = 1; /* one UNMAP for A..B: A goes, then it fails */
		CHECK(iovt_fence(x.e) != 0);
		iovt_domain_stats_get(x.d, &b);
		/* the group's call, then one per extent: A (-ENOENT: gone) and B */
		CHECK_EQ(x.w.unmap_calls - calls0, 3);
		CHECK_EQ(b.unmap_calls - a.unmap_calls, x.w.unmap_calls - calls0);
		CHECK_EQ(b.errors[IOVT_ERR_SINK_UNMAP] - a.errors[IOVT_ERR_SINK_UNMAP], 1);
		CHECK_EQ(b.pages_unmapped - a.pages_unmapped, 2);
		/* the guest maps B (and A) again, at the same places */
		if (remap_both)
			CHECK(gs_map(x.gd, 0, 16 * M1, K, IOVT_PERM_RW, GS_LEAF_4K) == 0);
		CHECK(gs_map(x.gd, 64 * K, 20 * M1, K, IOVT_PERM_RW, GS_LEAF_4K) == 0);
		psi(&x, 0, 128 * K);
		int rc = 0;
		for (int i = 0; i < 3; i++)
			rc = iovt_fence(x.e);
		CHECK_EQ(rc, 0);
		iovt_domain_stats_get(x.d, &b);
		CHECK_EQ(b.unmap_calls - a.unmap_calls, x.w.unmap_calls - calls0); /* no more UNMAPs */
		device_is_guest(&x, 0, 2 * M1, "multi-unmap-prefix");
		/* the record is the device: translate answers what it holds */
		for (uint64_t a = 0; a < 128 * K; a += K) {
			struct iovt_extent t, m;
			bool held = iovt_model_sink_find(x.model, a, &m);
			CHECK_EQ(iovt_translate(x.d, a, &t) == 0, held);
		}
		world_destroy(&x);
	}
	printf("multi-unmap-prefix: the removed prefix left the record\n");
}

/* Every page of [lo, hi): the record (translate, from the shadow) holds it
 * exactly when the device (the model) does. */
static void record_is_device(struct world *x, uint64_t lo, uint64_t hi)
{
	for (uint64_t a = lo; a < hi; a += K) {
		struct iovt_extent t, m;
		bool held = iovt_model_sink_find(x->model, a, &m);
		if ((iovt_translate(x->d, a, &t) == 0) != held) {
			fprintf(stderr, "record != device at 0x%" PRIx64 "\n", a);
			CHECK(0);
		}
	}
}

static void dump(struct world *x, uint64_t lo, uint64_t hi)
{
	for (uint64_t a = lo; a < hi; a += 64 * K)
		show(x, "at", a);
}

/* iommufd's flags: a multi-mapping UNMAP removes A, then fails reporting
 * nothing; the resolution that follows finds no memory for a vector. Then
 * (remap) the guest maps A again, or does nothing; after a few fences the
 * device, the record and the guest agree, and the last fence returns 0. */
static void case_multi_unmap_prefix_enomem(int remap)
{
	struct world x;
	two_mapped_then_unmapped(&x, IOVT_SINK_PARTIAL_UNMAP | IOVT_SINK_PARTIAL_UNCOUNTED |
					     IOVT_SINK_EXACT_UNMAPPED);
	x.w.iommufd_prefix = 1;
	x.w.arm_vec_enomem = 1;
	int rc = iovt_fence(x.e);
	iovt_vec_fault = NULL;
	printf("fence after prefix+enomem: %d\n", rc);
	dump(&x, 0, 128 * K);
	if (remap) {
		CHECK(gs_map(x.gd, 0, 16 * M1, K, IOVT_PERM_RW, GS_LEAF_4K) == 0);
		psi(&x, 0, K);
	}
	for (int i = 0; i < 6; i++)
		rc = iovt_fence(x.e);
	printf("after 6 fences: %d\n", rc);
	dump(&x, 0, 128 * K);
	device_is_guest(&x, 0, 2 * M1, "multi-unmap-prefix-enomem");
	record_is_device(&x, 0, 128 * K);
	CHECK_EQ(rc, 0);
	world_destroy(&x);
	printf("ok\n");
}

/* A mapping the sink lost behind the engine's back (another user of the
 * iommufd IOAS unmapped it), alone and then first of a group of two: after
 * the guest unmaps both, a few fences leave the device, the record and the
 * guest equal, and the last fence returns 0. */
static void case_lost_mapping(void)
{
	for (int two = 0; two < 2; two++) {
		struct world x;
		world_init(&x, IOVT_MODEL_IOMMUFD, true,
			   IOVT_SINK_PARTIAL_UNMAP | IOVT_SINK_PARTIAL_UNCOUNTED | IOVT_SINK_EXACT_UNMAPPED);
		CHECK(gs_map(x.gd, 0, 16 * M1, K, IOVT_PERM_RW, GS_LEAF_4K) == 0); /* A */
		if (two)
			CHECK(gs_map(x.gd, 64 * K, 20 * M1, K, IOVT_PERM_RW, GS_LEAF_4K) == 0); /* B */
		psi(&x, 0, 128 * K);
		CHECK_EQ(iovt_fence(x.e), 0);
		uint64_t done = 0;
		CHECK(x.w.inner.ops->unmap(x.w.inner.ctx, 0, K, &done) == 0); /* A lost */
		CHECK(gs_unmap(x.gd, 0, 128 * K) == 0);
		struct iovt_stats a, b;
		iovt_domain_stats_get(x.d, &a);
		psi(&x, 0, 128 * K);
		int rc = 0;
		for (int i = 0; i < 4; i++) {
			rc = iovt_fence(x.e);
			printf("lost-mapping(%d) fence %d: %d\n", two, i, rc);
		}
		iovt_domain_stats_get(x.d, &b);
		printf("lost-mapping(%d): sink_unmap errors +%llu, unmap calls +%llu, pages unmapped +%llu\n",
		       two, (unsigned long long)(b.errors[IOVT_ERR_SINK_UNMAP] - a.errors[IOVT_ERR_SINK_UNMAP]),
		       (unsigned long long)(b.unmap_calls - a.unmap_calls),
		       (unsigned long long)(b.pages_unmapped - a.pages_unmapped));
		/* Alone: A's UNMAP answers -ENOENT, counted once. Two: the group's
		 * call removes B only (short: counted, A taken as its prefix), and
		 * the retry's UNMAP of B answers -ENOENT (counted). */
		CHECK_EQ(b.errors[IOVT_ERR_SINK_UNMAP] - a.errors[IOVT_ERR_SINK_UNMAP], two ? 2 : 1);
		CHECK_EQ(b.unmap_calls - a.unmap_calls, two ? 2 : 1);
		CHECK_EQ(b.pages_unmapped - a.pages_unmapped, two ? 2 : 1);
		device_is_guest(&x, 0, 2 * M1, "lost-mapping");
		record_is_device(&x, 0, 128 * K);
		CHECK_EQ(rc, 0);
		world_destroy(&x);
	}
	printf("ok\n");
}

int main(int argc, char **argv)
{
	const char *c = argc > 1 ? argv[1] : "";
	check_pick_seed("fault-review");
	iovt_thread_register();
	if (!strcmp(c, "dsi-enomem"))
		case_dsi_enomem();
	else if (!strcmp(c, "capped-retry"))
		case_capped_retry();
	else if (!strcmp(c, "multi-unmap-prefix"))
		case_multi_unmap_prefix();
	else if (!strcmp(c, "multi-unmap-prefix-enomem"))
		case_multi_unmap_prefix_enomem(0);
	else if (!strcmp(c, "multi-unmap-prefix-enomem-remap"))
		case_multi_unmap_prefix_enomem(1);
	else if (!strcmp(c, "lost-mapping"))
		case_lost_mapping();
	else if (!strcmp(c, "map-enomem"))
		case_map_enomem();
	else if (!strcmp(c, "detach-unmap-all"))
		case_detach_unmap_all();
	else if (!strcmp(c, "detach-multi-unmap"))
		case_detach_multi_unmap();
	else if (!strcmp(c, "queue-enomem"))
		case_queue_enomem();
	else {
		fprintf(stderr, "usage: %s CASE (see the file's head)\n", argv[0]);
		return 2;
	}
	iovt_thread_unregister();
	return 0;
}
