/* SPDX-License-Identifier: MIT */
/*
 * Orphans and RAM removal: the twenty-third session's review (a helper's
 * reproducers; each case but two-orphans and stress failed before its fix).
 *
 *  orphan-prefix      a MULTI_UNMAP (or UNMAP_ALL) sink with EXACT_UNMAPPED
 *                     that, at detach or destroy, removes extent A (region 0)
 *                     and stops at B (region 1, "another process's mapping":
 *                     type1 before 6.3 answers 0 with *unmapped = |A|, DPDK
 *                     -EBUSY with |A|). A, asked again alone, answered 0 with
 *                     nothing removed and was kept as refused: removing
 *                     region 0 was -EBUSY for good, the sink holding nothing
 *                     there. The prefix a failed merged call reports is gone.
 *  orphan-nomem-short a type1-before-6.3 refusal (0, nothing removed) at the
 *                     detach with no memory to copy what it refused: the
 *                     orphan was the whole record, asked without the
 *                     exact-count flag, took the same refusal for success,
 *                     and the removal returned 0 with region 1 mapped. Now
 *                     -EBUSY while it refuses, 0 once it gives in, and the
 *                     orphan goes with its last region (sink destroyed once).
 *  orphan-failed-all  an exact-count sink's UNMAP at the detach fails having
 *                     removed the whole extent, and says so: gone (as
 *                     resolve_group reads it), not an orphan's refused
 *                     extent that the removal asks again for good.
 *  purge-enomem-counted  the removal's purge cannot list a domain's extents
 *                     in the region (a vector growth fails): -EBUSY, now
 *                     counted as no_memory (domain and engine).
 *  take-enomem-counted  the removal cannot copy the region array: -ENOMEM,
 *                     now counted as no_memory.
 *  two-orphans        a detach's and a destroy's orphans over overlapping
 *                     regions, one giving in, the region re-added and removed
 *                     again, each sink destroyed exactly once.
 *  stress             control calls (attach of a sink that refuses at random
 *                     and posts from its UNMAP, detach, destroy, RAM remove
 *                     and re-add) against threads that fence and translate.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/alloc.h"
#include "common/vec.h"
#include "guestsim.h"
#include "iovt.h"
#include "iovt_model.h"

CHECK_SEED_STORAGE;

#define K 0x1000ull
#define M1 0x100000ull
#define DID 1

#include "flat_fixture.h"

/* ---- a type1-like sink over the model: mappings at IOVA >= 1 MiB are
 * "pinned" (another process's) while `pin` is set ---- */
static struct iovt_sink inner;
static int pin, destroyed;
static int pin_partial; /* 0: type1 < 6.3 (0, short *unmapped); 1: DPDK (-EBUSY + prefix) */

static int p_map(void *c, const struct iovt_extent *m)
{
	(void)c;
	return inner.ops->map(inner.ctx, m);
}

static int p_unmap(void *c, uint64_t iova, uint64_t size, uint64_t *done)
{
	(void)c;
	*done = 0;
	uint64_t end = iova + size;
	if (!pin || end <= M1)
		return inner.ops->unmap(inner.ctx, iova, size, done);
	if (iova < M1) {
		int rc = inner.ops->unmap(inner.ctx, iova, M1 - iova, done);
		if (rc)
			return rc;
	}
	return pin_partial ? -EBUSY : 0; /* stopped at the pinned mapping */
}

static int p_unmap_all(void *c, uint64_t *done)
{
	return p_unmap(c, 0, 1ull << 48, done);
}

static void p_destroy(void *c)
{
	(void)c;
	destroyed++;
}

static struct iovt_sink_ops p_ops = { .map = p_map,
				      .unmap = p_unmap,
				      .unmap_all = p_unmap_all,
				      .destroy = p_destroy };

static uint64_t err_sum(const struct iovt_stats *s)
{
	uint64_t n = 0;
	for (int k = 0; k < IOVT_ERR_KIND_COUNT; k++)
		n += s->errors[k];
	return n;
}

static int prefix_one(int unmap_all, int partial, int destroy)
{
	struct flat f;
	struct iovt_model_sink *m;
	struct iovt_notifier *n;
	struct iovt_extent x;

	flat_init(&f);
	CHECK_EQ(iovt_model_sink_create(&(struct iovt_model_config){ .multi_unmap = true }, &m,
					&inner),
		 0);
	/* The caps of iovt_vfio.h's sinks: type1 (whose native kernel answers an
	 * empty range 0) and DPDK. */
	struct iovt_sink s = { .ops = &p_ops, .name = "pinned" };
	s.caps = inner.caps;
	s.caps.flags = (unmap_all ? IOVT_SINK_UNMAP_ALL : IOVT_SINK_MULTI_UNMAP) |
		       IOVT_SINK_EXACT_UNMAPPED | IOVT_SINK_PARTIAL_UNMAP |
		       (partial ? 0 : IOVT_SINK_PARTIAL_UNCOUNTED | IOVT_SINK_UNMAP_EMPTY_ERR);
	pin_partial = partial;
	CHECK_EQ(iovt_notifier_attach(f.d, IOVT_NOTIFY_IOTLB_EVENTS, &s, &n), 0);
	CHECK_EQ(iovt_model_sink_count(m), 2);
	pin = 1;
	destroyed = 0;
	int rc = destroy ? iovt_domain_destroy(f.d) : iovt_notifier_detach(n);
	CHECK(rc < 0);
	CHECK_EQ(destroyed, 0);
	/* The sink holds B only: nothing into region 0. */
	CHECK_EQ(iovt_model_sink_count(m), 1);
	CHECK(!iovt_model_sink_find(m, 0, &x));
	CHECK(iovt_model_sink_find(m, M1, &x));
	int r0 = iovt_guest_ram_remove(f.e, f.r0);
	printf("  unmap_all=%d partial=%d destroy=%d: remove(region 0, nothing mapped there) = %d\n",
	       unmap_all, partial, destroy, r0);
	/* The region 1 side still refused, as it should be. */
	CHECK_EQ(iovt_guest_ram_remove(f.e, f.r1), -EBUSY);
	pin = 0;
	CHECK_EQ(iovt_guest_ram_remove(f.e, f.r1), 0);
	flat_fini(&f);
	CHECK_EQ(destroyed, 1);
	iovt_model_sink_destroy(m);
	return r0;
}

static void case_orphan_prefix(void)
{
	int bad = 0;
	for (int ua = 0; ua < 2; ua++)
		for (int partial = 0; partial < 2; partial++)
			for (int destroy = 0; destroy < 2; destroy++)
				bad += prefix_one(ua, partial, destroy) != 0;
	CHECK_EQ(bad, 0);
	printf("orphan-prefix: a region the orphan's sink no longer maps can be removed\n");
}

/* ---- a failed UNMAP that says it removed all of it ---- */
static int fa_unmap(void *c, uint64_t iova, uint64_t size, uint64_t *done)
{
	(void)c;
	int rc = inner.ops->unmap(inner.ctx, iova, size, done);
	return rc ? rc : *done == size ? -EIO : 0; /* removed all of it, yet an error */
}

/* An exact-count sink (no UNMAP_EMPTY_ERR) whose UNMAP at the detach fails
 * after removing the whole extent and says so: gone, as resolve_group reads
 * it. Kept as refused, it made an orphan that the removal asked again, whose
 * empty answer (0, nothing removed) was a refusal: -EBUSY for good. */
static void case_orphan_failed_all(void)
{
	struct flat f;
	struct iovt_model_sink *m;
	struct iovt_notifier *n;
	static struct iovt_sink_ops ops = { .map = p_map, .unmap = fa_unmap, .destroy = p_destroy };

	flat_init(&f);
	CHECK_EQ(iovt_model_sink_create(&(struct iovt_model_config){ .multi_unmap = true }, &m,
					&inner),
		 0);
	struct iovt_sink s = { .ops = &ops, .caps = inner.caps, .name = "failed-all" };
	s.caps.flags = IOVT_SINK_EXACT_UNMAPPED | IOVT_SINK_PARTIAL_UNMAP; /* one UNMAP an extent */
	CHECK_EQ(iovt_notifier_attach(f.d, IOVT_NOTIFY_IOTLB_EVENTS, &s, &n), 0);
	CHECK_EQ(iovt_model_sink_count(m), 2);
	destroyed = 0;
	struct iovt_stats a, b;
	iovt_stats_get(f.e, &a);
	int rc = iovt_notifier_detach(n);
	iovt_stats_get(f.e, &b);
	int r1 = iovt_guest_ram_remove(f.e, f.r1);
	printf("  detach = %d (sink_unmap errors +%llu), sink destroyed %d, sink holds %llu; "
	       "remove(region 1) = %d\n",
	       rc, (unsigned long long)(b.errors[IOVT_ERR_SINK_UNMAP] - a.errors[IOVT_ERR_SINK_UNMAP]),
	       destroyed, (unsigned long long)iovt_model_sink_count(m), r1);
	CHECK_EQ(iovt_model_sink_count(m), 0);
	CHECK_EQ(b.errors[IOVT_ERR_SINK_UNMAP] - a.errors[IOVT_ERR_SINK_UNMAP], 2); /* counted */
	CHECK_EQ(rc, 0);      /* nothing held: no orphan */
	CHECK_EQ(destroyed, 1);
	CHECK_EQ(r1, 0);
	flat_fini(&f);
	iovt_model_sink_destroy(m);
	printf("orphan-failed-all: a failed UNMAP that removed all of it leaves no orphan\n");
}

/* ---- superset + short refusal ---- */
static int s_refuse;

static int s_unmap(void *c, uint64_t iova, uint64_t size, uint64_t *done)
{
	(void)c;
	if (s_refuse) {
		*done = 0;
		return 0; /* type1 < 6.3: stopped at another process's mapping */
	}
	return inner.ops->unmap(inner.ctx, iova, size, done);
}

static bool no_memory(size_t size)
{
	(void)size;
	return true;
}

static void case_orphan_superset_short(void)
{
	struct flat f;
	struct iovt_model_sink *m;
	struct iovt_notifier *n;
	struct iovt_extent x;
	static struct iovt_sink_ops ops = { .map = p_map, .unmap = s_unmap, .destroy = p_destroy };

	flat_init(&f);
	CHECK_EQ(iovt_model_sink_create(&(struct iovt_model_config){ .multi_unmap = true }, &m,
					&inner),
		 0);
	struct iovt_sink s = { .ops = &ops, .caps = inner.caps, .name = "short" };
	s.caps.flags = IOVT_SINK_EXACT_UNMAPPED; /* one UNMAP per extent */
	CHECK_EQ(iovt_notifier_attach(f.d, IOVT_NOTIFY_IOTLB_EVENTS, &s, &n), 0);
	s_refuse = 1;
	destroyed = 0;
	iovt_alloc_fault = no_memory; /* no copy of the refused extents: a superset */
	int rc = iovt_notifier_detach(n);
	iovt_alloc_fault = NULL;
	CHECK_EQ(rc, (uint64_t)-EBUSY);
	CHECK_EQ(destroyed, 0);
	CHECK(iovt_model_sink_find(m, M1, &x)); /* still mapped into region 1 */
	int r1 = iovt_guest_ram_remove(f.e, f.r1);
	bool still = iovt_model_sink_find(m, M1, &x);
	printf("  remove(region 1) = %d, sink still maps IOVA 1 MiB -> gpa %#llx: %d\n", r1,
	       (unsigned long long)x.gpa, still);
	CHECK(!(r1 == 0 && still));
	CHECK_EQ(r1, (uint64_t)-EBUSY);
	/* The sink gives in: region 1 goes; the orphan lives on for region 0,
	 * then goes with it (its sink destroyed once). */
	s_refuse = 0;
	CHECK_EQ(iovt_guest_ram_remove(f.e, f.r1), 0);
	CHECK(!iovt_model_sink_find(m, M1, &x));
	CHECK(iovt_model_sink_find(m, 0, &x));
	CHECK_EQ(destroyed, 0);
	CHECK_EQ(iovt_guest_ram_remove(f.e, f.r0), 0);
	CHECK_EQ(iovt_model_sink_count(m), 0);
	CHECK_EQ(destroyed, 1);
	flat_fini(&f);
	iovt_model_sink_destroy(m);
	printf("orphan-nomem-short: -EBUSY while the orphan's sink holds the mapping, 0 once it "
	       "gives in\n");
}

/* ---- the removal's no-memory refusal is counted ---- */
static int vec_fail_left;
static bool vec_fail_once(size_t b)
{
	(void)b;
	if (vec_fail_left > 0) {
		vec_fail_left--;
		return true;
	}
	return false;
}

static void case_purge_enomem_counted(void)
{
	struct flat f;
	struct iovt_model_sink *m;
	struct iovt_notifier *n;
	struct iovt_sink s;
	struct iovt_stats e0, e1, d0, d1;

	flat_init(&f);
	CHECK_EQ(iovt_model_sink_create(&(struct iovt_model_config){ .multi_unmap = true }, &m, &s),
		 0);
	CHECK_EQ(iovt_notifier_attach(f.d, IOVT_NOTIFY_IOTLB_EVENTS, &s, &n), 0);
	iovt_stats_get(f.e, &e0);
	iovt_domain_stats_get(f.d, &d0);
	vec_fail_left = 1;
	iovt_vec_fault = vec_fail_once;
	int rc = iovt_guest_ram_remove(f.e, f.r1);
	iovt_vec_fault = NULL;
	iovt_stats_get(f.e, &e1);
	iovt_domain_stats_get(f.d, &d1);
	printf("  remove = %d (fault used: %d); errors engine %llu -> %llu, domain %llu -> %llu\n",
	       rc, vec_fail_left == 0, (unsigned long long)err_sum(&e0),
	       (unsigned long long)err_sum(&e1), (unsigned long long)err_sum(&d0),
	       (unsigned long long)err_sum(&d1));
	CHECK_EQ(rc, (uint64_t)-EBUSY);
	CHECK(err_sum(&e1) > err_sum(&e0));
	CHECK_EQ(e1.errors[IOVT_ERR_NO_MEMORY] - e0.errors[IOVT_ERR_NO_MEMORY], 1);
	CHECK_EQ(d1.errors[IOVT_ERR_NO_MEMORY] - d0.errors[IOVT_ERR_NO_MEMORY], 1);
	flat_fini(&f);
	iovt_model_sink_destroy(m);
	printf("purge-enomem-counted: the removal's -EBUSY for memory is counted\n");
}

/* guest_ram_take's copy of the region array cannot be allocated: -ENOMEM,
 * and no counter moves. */
static void case_take_enomem_counted(void)
{
	struct flat f;
	struct iovt_stats e0, e1;

	flat_init(&f);
	iovt_stats_get(f.e, &e0);
	iovt_alloc_fault = no_memory;
	int rc = iovt_guest_ram_remove(f.e, f.r1);
	iovt_alloc_fault = NULL;
	iovt_stats_get(f.e, &e1);
	printf("  remove = %d; errors engine %llu -> %llu\n", rc, (unsigned long long)err_sum(&e0),
	       (unsigned long long)err_sum(&e1));
	CHECK_EQ(rc, (uint64_t)-ENOMEM);
	CHECK(err_sum(&e1) > err_sum(&e0));
	CHECK_EQ(e1.errors[IOVT_ERR_NO_MEMORY] - e0.errors[IOVT_ERR_NO_MEMORY], 1);
	flat_fini(&f);
	printf("take-enomem-counted: the removal's -ENOMEM is counted\n");
}

/* Two orphans (detach and destroy) over the same regions; one gives in,
 * the region re-added and removed again; destroy() once per sink. */
struct two_ctx { struct iovt_model_sink *m; struct iovt_sink in; int refuse, destroyed; };
static int t_map(void *c, const struct iovt_extent *x)
{
	struct two_ctx *t = c;
	return t->in.ops->map(t->in.ctx, x);
}
static int t_unmap(void *c, uint64_t iova, uint64_t size, uint64_t *done)
{
	struct two_ctx *t = c;
	*done = 0;
	if (t->refuse)
		return -EIO;
	return t->in.ops->unmap(t->in.ctx, iova, size, done);
}
static void t_destroy(void *c)
{
	((struct two_ctx *)c)->destroyed++;
}

static void case_two_orphans(void)
{
	struct flat f;
	static struct iovt_sink_ops ops = { .map = t_map, .unmap = t_unmap, .destroy = t_destroy };
	struct two_ctx t[2] = { 0 };
	struct iovt_domain *d2;
	struct iovt_notifier *n[2];

	flat_init(&f);
	struct iovt_domain_config dc = { .did = DID + 1, .root_gpa = gs_domain_root(f.gd),
					 .addr_width = 48 };
	CHECK_EQ(iovt_domain_create(f.e, &dc, &d2), 0);
	struct iovt_domain *ds[2] = { f.d, d2 };
	for (int i = 0; i < 2; i++) {
		CHECK_EQ(iovt_model_sink_create(&(struct iovt_model_config){ .multi_unmap = true },
						&t[i].m, &t[i].in), 0);
		struct iovt_sink s = { .ops = &ops, .ctx = &t[i], .caps = t[i].in.caps };
		s.caps.flags = IOVT_SINK_MULTI_UNMAP;
		CHECK_EQ(iovt_notifier_attach(ds[i], IOVT_NOTIFY_IOTLB_EVENTS, &s, &n[i]), 0);
		CHECK_EQ(iovt_model_sink_count(t[i].m), 2);
		t[i].refuse = 1;
	}
	CHECK_EQ(iovt_notifier_detach(n[0]), (uint64_t)-EIO);
	CHECK_EQ(iovt_domain_destroy(d2), (uint64_t)-EIO);
	CHECK_EQ(iovt_guest_ram_remove(f.e, f.r1), -EBUSY);
	t[1].refuse = 0;
	CHECK_EQ(iovt_guest_ram_remove(f.e, f.r1), -EBUSY); /* t[0] still refuses */
	CHECK_EQ(iovt_model_sink_count(t[1].m), 1);
	t[0].refuse = 0;
	CHECK_EQ(iovt_guest_ram_remove(f.e, f.r1), 0);
	CHECK_EQ(iovt_model_sink_count(t[0].m), 1);
	const struct gs_region *g1 = gs_region(f.gs, 1);
	CHECK_EQ(iovt_guest_ram_add(f.e, g1->gpa, g1->size, g1->hva, NULL), 0);
	CHECK_EQ(iovt_guest_ram_remove(f.e, f.r1), 0);
	CHECK_EQ(t[0].destroyed + t[1].destroyed, 0);
	t[0].refuse = 1;
	CHECK_EQ(iovt_guest_ram_remove(f.e, f.r0), -EBUSY);
	CHECK_EQ(t[1].destroyed, 1); /* its last extent went */
	flat_fini(&f);
	CHECK_EQ(t[0].destroyed, 1);
	CHECK_EQ(t[1].destroyed, 1);
	for (int i = 0; i < 2; i++)
		iovt_model_sink_destroy(t[i].m);
	printf("two-orphans: ok\n");
}

/* Stress: fences and translations while one control thread attaches a sink
 * that refuses at random, detaches or destroys/re-creates the domain, and
 * removes/re-adds region 1 (alarm: a hang). */
#include <pthread.h>
#include <unistd.h>
static atomic_int st_stop;
static struct iovt_engine *st_e;
static int st_rand_unmap(void *c, uint64_t iova, uint64_t size, uint64_t *done)
{
	struct two_ctx *t = c;
	*done = 0;
	if (rand() % 3 == 0) {
		(void)iovt_invalidate_dsi(st_e, DID); /* a callback that posts */
		return -EIO;
	}
	return t->in.ops->unmap(t->in.ctx, iova, size, done);
}
static atomic_int st_destroyed, st_created;
static void st_destroy(void *c)
{
	struct two_ctx *t = c;
	atomic_fetch_add(&st_destroyed, 1);
	CHECK_EQ(t->destroyed, 0);
	t->destroyed = 1;
	free(t);
}
static void *st_fencer(void *p)
{
	(void)p;
	iovt_thread_register();
	while (!atomic_load(&st_stop)) {
		(void)iovt_invalidate_dsi(st_e, DID);
		(void)iovt_fence(st_e);
		struct iovt_domain *d = iovt_domain_lookup(st_e, DID);
		if (d) {
			struct iovt_extent x;
			(void)iovt_translate(d, M1, &x);
			iovt_domain_put(d);
		}
	}
	iovt_thread_unregister();
	return NULL;
}
static void case_stress(void)
{
	struct flat f;
	static struct iovt_sink_ops ops = { .map = t_map, .unmap = st_rand_unmap, .destroy = st_destroy };
	struct iovt_model_sink *m;
	struct iovt_sink in;
	flat_init(&f);
	st_e = f.e;
	alarm(60);
	CHECK_EQ(iovt_model_sink_create(&(struct iovt_model_config){ .multi_unmap = true,
		.max_mappings = 1u << 30 }, &m, &in), 0);
	/* one model per attach would be exact; the model is shared, unmaps of
	 * what another sink holds answer 0 */
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, st_fencer, NULL);
	const struct gs_region *g1 = gs_region(f.gs, 1);
	struct iovt_notifier *n = NULL;
	unsigned ops_done = 0, removed = 0;
	struct iovt_domain *d = f.d;
	for (int it = 0; it < 3000; it++, ops_done++) {
		switch (rand() % 4) {
		case 0:
			if (!n) {
				struct two_ctx *t = calloc(1, sizeof(*t));
				t->in = in;
				struct iovt_sink s = { .ops = &ops, .ctx = t, .caps = in.caps };
				s.caps.flags = IOVT_SINK_MULTI_UNMAP;
				if (iovt_notifier_attach(d, IOVT_NOTIFY_IOTLB_EVENTS, &s, &n) && !n)
					free(t);
				else
					atomic_fetch_add(&st_created, 1);
			}
			break;
		case 1:
			if (n)
				(void)iovt_notifier_detach(n);
			n = NULL;
			break;
		case 2: {
			(void)iovt_domain_destroy(d);
			n = NULL;
			struct iovt_domain_config dc = { .did = DID, .root_gpa = gs_domain_root(f.gd),
							 .addr_width = 48 };
			CHECK_EQ(iovt_domain_create(f.e, &dc, &d), 0);
			break;
		}
		case 3:
			if (iovt_guest_ram_remove(f.e, f.r1) == 0) {
				removed++;
				CHECK_EQ(iovt_guest_ram_add(f.e, g1->gpa, g1->size, g1->hva, NULL), 0);
			}
			break;
		}
	}
	atomic_store(&st_stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	flat_fini(&f);
	printf("stress: %u ops, %u removals, %d sinks, %d destroyed\n", ops_done, removed,
	       atomic_load(&st_created), atomic_load(&st_destroyed));
	CHECK_EQ(atomic_load(&st_created), atomic_load(&st_destroyed));
	iovt_model_sink_destroy(m);
}

int main(int argc, char **argv)
{
	const char *c = argc > 1 ? argv[1] : "";
	check_pick_seed("lifecycle-orphans");
	iovt_thread_register();
	if (!strcmp(c, "orphan-prefix"))
		case_orphan_prefix();
	else if (!strcmp(c, "orphan-failed-all"))
		case_orphan_failed_all();
	else if (!strcmp(c, "orphan-nomem-short"))
		case_orphan_superset_short();
	else if (!strcmp(c, "purge-enomem-counted"))
		case_purge_enomem_counted();
	else if (!strcmp(c, "stress"))
		case_stress();
	else if (!strcmp(c, "two-orphans"))
		case_two_orphans();
	else if (!strcmp(c, "take-enomem-counted"))
		case_take_enomem_counted();
	else {
		fprintf(stderr, "usage: %s CASE\n", argv[0]);
		return 2;
	}
	iovt_thread_unregister();
	return 0;
}
