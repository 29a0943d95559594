/* SPDX-License-Identifier: MIT */
/* Guest view: walk a window of the guest's VT-d table and fold the leaves
 * into runs (maximal stretches one sink MAP could carry). */
#include <errno.h>

#include "common/rcu.h"
#include "sync/sync.h"

/* What both walks' visitors count errors into (first member of each: one
 * error visitor serves both). */
struct walk_errors {
	struct sync_stats *st;
	int err;  /* the first error of the walk */
	bool cut; /* the walk budget ran out inside the walk */
	uint64_t cut_at; /* ...at this IOVA: nothing from it on was read */
};

struct view_walk {
	struct walk_errors e;
	const struct sync_target *t;
	struct sync_scratch *s;
	uint64_t first, last;
	struct guest_ram_region region; /* the last one found: leaves cluster */
	bool have_region;
};

static int walk_error_to_errno(enum vtd_error why)
{
	switch (why) {
	case VTD_ERR_LOOP:
		return -ELOOP;
	case VTD_ERR_BUDGET:
		return -E2BIG;
	default:
		return -EFAULT;
	}
}

static enum iovt_err_kind walk_error_kind(enum vtd_error why)
{
	switch (why) {
	case VTD_ERR_RESERVED:
		return IOVT_ERR_PT_RESERVED;
	case VTD_ERR_LARGE_PAGE:
		return IOVT_ERR_PT_LARGE_PAGE;
	case VTD_ERR_TABLE_OUTSIDE_RAM:
		return IOVT_ERR_PT_OUTSIDE_RAM;
	case VTD_ERR_LOOP:
		return IOVT_ERR_PT_LOOP;
	case VTD_ERR_BUDGET:
		return IOVT_ERR_WALK_BUDGET;
	default:
		return IOVT_ERR_BAD_INVALIDATION;
	}
}

/* The first error of a walk is the one reported. */
static void keep_first(int *slot, int err)
{
	if (!*slot)
		*slot = err;
}

/* Appends one piece, extending the last run when it continues it. */
static int push_piece(struct sync_scratch *s, const struct iovt_extent *p)
{
	if (s->runs.n) {
		struct iovt_extent *last = &s->runs.v[s->runs.n - 1];
		if (run_continues(last, p)) {
			last->size += p->size;
			return 0;
		}
	}
	return vec_push(&s->runs, *p);
}

static int on_leaf(void *arg, const struct vtd_leaf *leaf)
{
	struct view_walk *w = arg;
	uint64_t iova = leaf->iova, end = leaf->iova + leaf->size; /* end exclusive */

	/* Clip to the window: what lies outside belongs to other extents. */
	if (iova < w->first)
		iova = w->first;
	if (end - 1 > w->last)
		end = w->last + 1;

	/* Split at guest RAM region boundaries; parts in holes are not mapped.
	 * A hole is skipped in one step to the next region (not page by page: a
	 * hostile guest's 1 GiB leaves into holes would cost 2^18 steps each,
	 * work the walk budget does not bound), and counted once per leaf — per
	 * page of a merged run of 4 KiB entries (leaf->entries: each was one). */
	bool hole_counted = false;
	while (iova < end) {
		uint64_t gpa = leaf->gpa + (iova - leaf->iova);
		struct guest_ram_region *rr = &w->region;
		if (!(w->have_region && gpa - rr->gpa < rr->size))
			w->have_region = vtd_leaf_ram_find(w->t->ram, leaf, gpa, rr);
		if (!w->have_region) {
			struct guest_ram_region next;
			/* next.gpa > gpa here: gpa is in a hole. */
			bool resumes = guest_ram_find_next(w->t->ram, gpa, &next) && next.gpa - gpa < end - iova;
			uint64_t skip = resumes ? next.gpa - gpa : end - iova;
			uint64_t leaves = leaf->entries > 1 ? skip >> 12 : !hole_counted;
			if (leaves) {
				w->e.st->errors[IOVT_ERR_LEAF_OUTSIDE_RAM] += leaves;
				keep_first(&w->e.err, -EFAULT);
				hole_counted = true;
			}
			if (!resumes)
				break; /* RAM resumes past the leaf's (clipped) end, or never */
			iova += skip;
			continue;
		}
		const struct guest_ram_region r = *rr;
		uint64_t avail = r.gpa + r.size - gpa;
		uint64_t len = end - iova < avail ? end - iova : avail;
		struct iovt_extent p = {
			.iova = iova,
			.size = len,
			.gpa = gpa,
			.hva = r.hva + (gpa - r.gpa),
			.perm = leaf->perm,
			.region = r.id,
		};
		if (push_piece(w->s, &p))
			return -ENOMEM;
		iova += len;
	}
	return 0;
}

/* Both walks' error visitor: a span the walk could not read is counted by
 * kind, the first error kept; the span is simply not mapped; go on. */
static int on_error(void *arg, uint64_t iova, uint64_t size, enum vtd_error why)
{
	struct walk_errors *e = arg;
	(void)iova;
	(void)size;
	e->st->errors[walk_error_kind(why)]++;
	keep_first(&e->err, walk_error_to_errno(why));
	if (why == VTD_ERR_BUDGET && !e->cut) {
		e->cut = true;
		e->cut_at = iova; /* report() clamps it into the window */
	}
	return 0;
}

/*
 * After a walk: one refused outright (-EINVAL: bad widths or range) counts
 * as a bad invalidation; the walk's first error goes to *walk_err. true:
 * refused, nothing it saw is trustworthy.
 */
static bool walk_done(struct walk_errors *e, int rc, int *walk_err)
{
	bool refused = rc == -EINVAL;
	if (refused) {
		e->st->errors[IOVT_ERR_BAD_INVALIDATION]++;
		keep_first(&e->err, -EINVAL);
	}
	if (walk_err)
		keep_first(walk_err, e->err);
	return refused;
}

/*
 * The sync's budget for one walk (sync.h, walk_left): false when it is
 * spent, the window then a budget error without a walk. A sync of many
 * windows read up to the budget in each (1024 pending ranges over a table
 * DAG: 1024 budgets of entries, and as many runs held for the plan, per
 * fence; found by review).
 */
static bool walk_budget_take(struct sync_scratch *s, struct vtd_walk_params *p,
			     struct sync_stats *st, int *walk_err)
{
	if (__builtin_expect(!s->walk_left, 0)) { /* earlier walks spent it: retried */
		st->errors[IOVT_ERR_WALK_BUDGET]++;
		if (walk_err)
			keep_first(walk_err, -E2BIG);
		return false;
	}
	p->budget = s->walk_left == UINT64_MAX ? 0 : s->walk_left;
	return true;
}

static void walk_budget_spent(struct sync_scratch *s, uint64_t read)
{
	if (s->walk_left != UINT64_MAX)
		s->walk_left -= read < s->walk_left ? read : s->walk_left;
}

enum cut_way {
	CUT_NONE,  /* not cut, or the walk's error: what was read is synced */
	CUT_WHOLE, /* retried whole: nothing of it kept (GUEST_VIEW_SKIPPED) */
	CUT_REST,  /* what was read is synced, the rest retried (s->rest) */
};

/* A walk the budget cut short, begun on `had` entries: retried (the window
 * kept as recorded) when earlier walks of the sync had spent part of the
 * budget; the walk's own error when it had all of it (sync.h). Before, a
 * span taken from the capped or retry sets that the guest's windows below
 * it left ~40 entries for was cut, unmapped past the cut and never retried
 * (found by the twenty-sixth session's read: 557 of 600 pages; hostile
 * budget-cap-first-pass). */
static enum cut_way walk_cut_way(const struct sync_target *t, const struct walk_errors *e,
				 uint64_t had, uint64_t first, uint64_t last)
{
	if (__builtin_expect(!e->cut, 1) || had >= t->walk.budget)
		return CUT_NONE;
	/* Longer than one sync's retry budget: it would come back in slices
	 * over up to 2^20 fences (a PSI of half a 48-bit domain behind one
	 * page; found by review: budget-cut-huge). The walk's error. */
	if ((last - first) >> IOVT_PAGE_SHIFT >= IOVT_RETRY_BUDGET_PAGES)
		return CUT_NONE;
	/* Cut short by the previous sync too. Retried whole again, a window
	 * the guest's windows below it always leave too little for was never
	 * synced (its old mappings stayed) and every fence read the whole
	 * budget (found by review: budget-cut-starved). Dropped past the cut
	 * as the walk's error, a capped span lost its rest for good, nothing
	 * in the record there for the guest to invalidate again (budget-cut-
	 * twice). So what was read is synced, the rest is unmapped and retried
	 * — the rest alone, marked again: each further cut maps a little more,
	 * and nothing stale is kept meanwhile. */
	bool again = t->cut_before && range_set_overlaps(t->cut_before, first, last);
	uint64_t from = again ? e->cut_at : first;
	if (t->cut_now)
		(void)range_set_add(t->cut_now, from, last); /* ENOMEM: `all`, every window's second */
	return again ? CUT_REST : CUT_WHOLE;
}

/*
 * The domain's walk parameters for one walk, field by field, each a scalar
 * load: domain_sync_target has just stored them one by one (8-, 4- and
 * 1-byte stores), and the 16-byte loads a struct copy is compiled into
 * cannot be forwarded from narrower stores still in the store buffer: each
 * waits for them to reach the cache (perf, fence/map_unmap_1: the copy's
 * loads; the IOTLB fill had the same stall, ARCHITECTURE.md). first, last
 * and budget are set by the caller.
 */
static inline __attribute__((always_inline)) void walk_params_of(struct vtd_walk_params *p,
								 const struct vtd_walk_params *w)
{
	_Static_assert(sizeof(struct vtd_walk_params) == 48,
		       "a field added to vtd_walk_params is copied here too");
	p->root_gpa = __atomic_load_n(&w->root_gpa, __ATOMIC_RELAXED);
	p->addr_width = __atomic_load_n(&w->addr_width, __ATOMIC_RELAXED);
	p->host_width = __atomic_load_n(&w->host_width, __ATOMIC_RELAXED);
	p->allow_2m = __atomic_load_n(&w->allow_2m, __ATOMIC_RELAXED);
	p->allow_1g = __atomic_load_n(&w->allow_1g, __ATOMIC_RELAXED);
	p->merge_4k = false;
}

/* A window the sync's budget did not reach: retried; one cut short by the
 * previous sync keeps that mark for the sync that walks it. */
static void unreached(const struct sync_target *t, uint64_t first, uint64_t last)
{
	if (t->cut_before && t->cut_now && range_set_overlaps(t->cut_before, first, last))
		(void)range_set_add(t->cut_now, first, last);
}

int guest_view_runs(const struct sync_target *t, uint64_t first, uint64_t last,
		    struct sync_scratch *s, struct sync_stats *st, int *walk_err)
{
	static const struct vtd_walk_ops ops = { .leaf = on_leaf, .error = on_error };
	struct view_walk w = { .e = { .st = st }, .t = t, .s = s, .first = first, .last = last };
	struct vtd_walk_params p;
	walk_params_of(&p, &t->walk);
	struct vtd_walk_stats ws = { 0 };
	size_t runs_before = s->runs.n;

	if (!walk_budget_take(s, &p, st, walk_err)) {
		unreached(t, first, last);
		return GUEST_VIEW_SKIPPED;
	}
	const uint64_t had = p.budget;
	p.first = first;
	p.last = last;
	p.merge_4k = true; /* on_leaf folds them into runs anyway */
	iovt_rcu_read_lock();
	/* A window inside one 2 MiB block (the strict guest's PSI, a buffer's
	 * pages): one descent and the leaf table's scan; any other window:
	 * vtd_walk_block hands it to vtd_walk. */
	int rc = vtd_walk_block(t->ram, &p, &ops, &w, &ws);
	iovt_rcu_read_unlock();
	st->ptes += ws.entries_read;
	walk_budget_spent(s, ws.entries_read);
	if (rc < 0 && rc != -EINVAL)
		return rc; /* -ENOMEM from a visitor */
	if (walk_done(&w.e, rc, walk_err)) {
		s->runs.n = runs_before; /* nothing trustworthy was seen */
		return 0;
	}
	switch (walk_cut_way(t, &w.e, had, first, last)) {
	case CUT_WHOLE:
		s->runs.n = runs_before;
		return GUEST_VIEW_SKIPPED;
	case CUT_REST:
		s->rest = (struct range){ w.e.cut_at, last };
		return GUEST_VIEW_REST;
	default:
		return 0;
	}
}

/*
 * guest_view_page's walk: the leaf over the one page, clipped to it. A
 * region is 4 KiB granular, so the page is in one region or in a hole.
 * Its own small state, not a view_walk: filling that one was a fifth of
 * the wrapper's cost.
 */
struct page_view {
	struct walk_errors e;
	const struct guest_ram *ram;
	struct iovt_extent *run;
	uint64_t iova;
	bool have;
};

static int on_page_leaf(void *arg, const struct vtd_leaf *leaf)
{
	struct page_view *pv = arg;
	uint64_t gpa = leaf->gpa + (pv->iova - leaf->iova);
	struct guest_ram_region r;
	if (!vtd_leaf_ram_find(pv->ram, leaf, gpa, &r)) {
		pv->e.st->errors[IOVT_ERR_LEAF_OUTSIDE_RAM]++;
		keep_first(&pv->e.err, -EFAULT);
		return 0;
	}
	*pv->run = (struct iovt_extent){
		.iova = pv->iova,
		.size = IOVT_PAGE_SIZE,
		.gpa = gpa,
		.hva = r.hva + (gpa - r.gpa),
		.perm = leaf->perm,
		.region = r.id,
	};
	pv->have = true;
	return 0;
}

int guest_view_page(const struct sync_target *t, uint64_t iova, struct iovt_extent *run,
		    struct sync_scratch *s, struct sync_stats *st, int *walk_err)
{
	static const struct vtd_walk_ops ops = { .leaf = on_page_leaf, .error = on_error };
	struct page_view pv = { .e = { .st = st }, .ram = t->ram, .run = run, .iova = iova };
	struct vtd_walk_params p;
	walk_params_of(&p, &t->walk);
	struct vtd_walk_stats ws = { 0 };

	if (!walk_budget_take(s, &p, st, walk_err)) {
		unreached(t, iova, iova + IOVT_PAGE_SIZE - 1);
		return GUEST_VIEW_SKIPPED;
	}
	const uint64_t had = p.budget;
	p.first = iova;
	p.last = iova + IOVT_PAGE_SIZE - 1;
	iovt_rcu_read_lock();
	int rc = vtd_walk_block(t->ram, &p, &ops, &pv, &ws);
	iovt_rcu_read_unlock();
	st->ptes += ws.entries_read;
	walk_budget_spent(s, ws.entries_read);
	if (walk_done(&pv.e, rc, walk_err))
		pv.have = false; /* nothing trustworthy was seen */
	else
		switch (walk_cut_way(t, &pv.e, had, iova, iova + IOVT_PAGE_SIZE - 1)) {
		case CUT_WHOLE:
			return GUEST_VIEW_SKIPPED;
		case CUT_REST: /* nothing of the page was read: not mapped, retried */
			s->rest = (struct range){ iova, iova + IOVT_PAGE_SIZE - 1 };
			return GUEST_VIEW_REST;
		default:
			break;
		}
	return pv.have;
}
