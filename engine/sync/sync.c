/* SPDX-License-Identifier: MIT */
/* Orchestration of one domain's sync: ranges → windows → view → diff → apply. */
#include <errno.h>

#include "common/probes.h"
#include "common/sink_call.h"
#include "sync/sync.h"

void sync_scratch_free(struct sync_scratch *s)
{
	vec_free(&s->windows);
	vec_free(&s->runs);
	vec_free(&s->old);
	vec_free(&s->unmaps);
	vec_free(&s->maps);
}

/* Marks where left-out extents were (see push_old); diff_window reads it. */
static int push_dropped_marker(struct sync_scratch *s)
{
	struct iovt_extent m = { .size = 0 };
	s->old_dropped = false;
	return vec_push(&s->old, m) ? -ENOMEM : 0;
}

/* push_old's rule for one extent: the first run not ending at or before e
 * (from cursor *run, runs up to end) begins where e does and maps all of
 * it as e says; then e is kept and that run begins past it. (The tree's
 * side makes the same comparison inside its leaves:
 * shadow_tree_iterate_unkept_w.) */
static inline bool kept_by_run(struct iovt_extent **run, struct iovt_extent *end,
			       const struct iovt_extent *e)
{
	struct iovt_extent *r = *run;
	while (r < end && extent_end(r) <= e->iova)
		r++;
	*run = r;
	if (r < end && r->iova == e->iova && still_mapped(r, e)) {
		r->iova += e->size;
		r->gpa += e->size;
		r->hva += e->size;
		r->size -= e->size; /* 0: the run is all kept (the cursor moves on) */
		return true;
	}
	return false;
}

/*
 * Collects a window's old extents for diff_window, leaving out each one a
 * run begins with — diff_window would keep it and map nothing of that part
 * of the run — and moving that run's start past it instead (the run's
 * remainder is what the diff still has to map around later kept extents).
 * A PSI over a 2 MiB window of unchanged 4 KiB extents no longer copies
 * and diffs every one of them (perf, map4k-psi2m: copying them was a
 * quarter of the engine, the diff another sixth), whether each is a run of
 * its own (scattered GPAs) or the guest's run holds many (contiguous GPAs,
 * mapped a page at a time). An extent inside a run past its start goes to
 * the diff as before. The one thing a kept extent still tells the diff,
 * that no UNMAP group may span it, a zero-size marker says for a stretch of
 * them. Extents come in IOVA order, runs are sorted and disjoint: one cursor.
 * This is the one-extent form (build_windows' lookup); a window's tree walk
 * makes the same comparison inside the leaves (shadow_tree_iterate_unkept_w).
 */
static int push_old(struct sync_scratch *s, const struct iovt_extent *e)
{
	if (s->runs.n) { /* runs.v may be NULL without runs */
		struct iovt_extent *run = s->runs.v + s->old_ri;
		bool kept = kept_by_run(&run, s->runs.v + s->runs.n, e);
		s->old_ri = (size_t)(run - s->runs.v);
		if (kept) {
			s->old_dropped = true;
			return 0;
		}
	}
	if (s->old_dropped && push_dropped_marker(s))
		return -ENOMEM;
	return vec_push(&s->old, *e) ? -ENOMEM : 0;
}

/* The tree's side of push_old over a whole window (shadow_tree_iterate_unkept_w
 * makes the same comparison in the leaves, without a call per kept extent):
 * an extent it did not leave out, after the marker for those it did. */
static int push_unkept(void *arg, const struct iovt_extent *e, bool dropped_before)
{
	struct sync_scratch *s = arg;
	if (dropped_before && push_dropped_marker(s))
		return -ENOMEM;
	return vec_push(&s->old, *e) ? -ENOMEM : 0;
}

static int any_extent(void *arg, const struct iovt_extent *e)
{
	(void)arg;
	(void)e;
	return 1;
}

/*
 * Grows each range to the whole extents at its ends (a sink mapping is
 * changed whole or not at all, so its survivors must be seen) and merges
 * ranges that then overlap or touch.
 */
static int build_windows(const struct sync_target *t, const struct range *ranges, size_t n,
			 struct sync_scratch *s)
{
	vec_clear(&s->windows);
	s->one_old = -1;
	for (size_t i = 0; i < n; i++) {
		struct range w = ranges[i];
		struct iovt_extent e;
		bool found = shadow_tree_lookup_w(t->tree, w.first, &e);
		if (found)
			w.first = e.iova;
		/* What the first lookup already says about `last`: the extent at
		 * `first` reaches it, or no extent holds first's page (extents are
		 * whole pages). A one-page PSI needs one lookup. */
		uint64_t known = found ? e.iova + e.size - 1 : w.first | (IOVT_PAGE_SIZE - 1);
		if (w.last <= known) {
			if (found)
				w.last = known;
			if (n == 1) {
				/* The window is e, or one page that holds no extent:
				 * its old extents are known without a second descent
				 * (sync_ranges). The strict guest's one-page PSI. */
				s->one_old = found;
				if (found)
					s->one_ext = e;
			}
		} else if (shadow_tree_lookup_w(t->tree, w.last, &e)) {
			w.last = e.iova + e.size - 1;
		}
		if (s->windows.n) {
			struct range *prev = &s->windows.v[s->windows.n - 1];
			if (prev->last + 1 >= w.first) {
				if (w.last > prev->last)
					prev->last = w.last;
				continue;
			}
		}
		if (vec_push(&s->windows, w))
			return -ENOMEM;
	}
	return 0;
}

/* The `window` probe, one ELF note for both ways a window is synced
 * (perf/check-probes.sh: perf takes one note per name). */
static __attribute__((noinline)) void probe_window(uint64_t first, uint64_t last)
{
	IOVT_PROBE2(window, first, last);
}

/*
 * Out of memory before any call of a plan: nothing of it is applied (the
 * plan is dropped) and its ranges are retried at the next fence, never
 * lost. Returns rc.
 */
static int retry_all(const struct sync_target *t, struct sync_scratch *s, struct sync_stats *st,
		     struct range_set *retry, const struct range *r, size_t n, int rc)
{
	if (rc == -ENOMEM)
		st->errors[IOVT_ERR_NO_MEMORY]++;
	const uint64_t top = target_top(t);
	for (size_t j = 0; j < n; j++) {
		/* The whole domain (a DSI, an attach's replay) as the set's
		 * `all`, which the next sync takes whole: as a range it went
		 * through the retry budget, 2^16 pages a fence (a 48-bit
		 * domain recovered in up to 2^20 fences; found by review). */
		if (r[j].first == 0 && r[j].last >= top)
			range_set_add_all(retry);
		else
			range_set_add(retry, r[j].first, r[j].last);
	}
	vec_clear(&s->old);
	vec_clear(&s->unmaps);
	vec_clear(&s->maps);
	return rc;
}

/* A window guest_view skipped (GUEST_VIEW_SKIPPED) into the retry set: the
 * walk's error, or -ENOMEM counted as retry_all counts it (iovt.h) when the
 * set cannot grow (it then becomes `all`: a whole-domain retry). */
static int retry_skipped(struct range_set *retry, uint64_t first, uint64_t last,
			 struct sync_stats *st, int walk_err)
{
	if (__builtin_expect(range_set_add(retry, first, last) != 0, 0)) {
		st->errors[IOVT_ERR_NO_MEMORY]++;
		return -ENOMEM;
	}
	return walk_err;
}

/*
 * One range of exactly one page whose extent, if any, is that page: the
 * window is the page, so the plan is at most one UNMAP (the old extent,
 * unless the page still maps the same) and one MAP (the page, if the guest
 * maps it) — decided here without the windows, runs, old-extent list and
 * diff of the general path, which give the same plan (the differential
 * tests run both: every one-page PSI comes this way). The strict guest's
 * PSI + wait: those stages were ~300 of ~2,470 instructions (callgrind).
 * One difference, under memory pressure only: with nothing to change this
 * path allocates nothing, where build_windows could fail with -ENOMEM and
 * retry the range.
 */
static bool sync_page(const struct sync_target *t, uint64_t iova, struct sync_scratch *s,
		      struct sync_stats *st, struct range_set *retry, int *rcp)
{
	struct iovt_extent old, run;
	bool found = shadow_tree_lookup_w(t->tree, iova, &old);
	if (found && (old.iova != iova || old.size != IOVT_PAGE_SIZE))
		return false; /* the extent is wider than the page: so is the window */
	probe_window(iova, iova + IOVT_PAGE_SIZE - 1);
	int walk_err = 0;
	int seen = guest_view_page(t, iova, &run, s, st, &walk_err);
	if (__builtin_expect(seen == GUEST_VIEW_SKIPPED, 0)) {
		/* a later pass's budget ran out: kept as recorded, retried */
		st->windows++;
		*rcp = retry_skipped(retry, iova, iova + IOVT_PAGE_SIZE - 1, st, walk_err);
		return true;
	}
	const bool rest = seen == GUEST_VIEW_REST; /* cut again: unmapped, retried */
	bool have = seen == 1;
	/* Nothing to change: the page is kept as recorded, or neither recorded
	 * nor mapped (an oversized PSI's tail, a strict guest's PSI over space
	 * it left unmapped): no plan to apply (apply_plan's call and its two
	 * empty passes were ~30 of psi_unmapped's ~1,070 instructions). */
	if (found ? have && still_mapped(&run, &old) : !have) {
		st->windows++;
		*rcp = rest ? retry_skipped(retry, iova, iova + IOVT_PAGE_SIZE - 1, st, walk_err)
			    : walk_err;
		return true;
	}
	if (found) {
		struct plan_unmap g = { iova, iova + IOVT_PAGE_SIZE - 1, 1 };
		if (vec_push(&s->unmaps, g))
			goto nomem;
	}
	if (have) {
		if (vec_reserve1(&s->maps))
			goto nomem;
		/* Field by field: on_page_leaf has just stored run a field at
		 * a time, and the struct copy's 16-byte loads would wait for
		 * those stores to reach the cache (a failed store forward). */
		_Static_assert(sizeof(struct iovt_extent) == 40, "every field of the run is copied");
		struct iovt_extent *m = &s->maps.v[s->maps.n++];
		m->iova = __atomic_load_n(&run.iova, __ATOMIC_RELAXED);
		m->size = __atomic_load_n(&run.size, __ATOMIC_RELAXED);
		m->gpa = __atomic_load_n(&run.gpa, __ATOMIC_RELAXED);
		m->hva = __atomic_load_n(&run.hva, __ATOMIC_RELAXED);
		m->perm = __atomic_load_n(&run.perm, __ATOMIC_RELAXED);
		m->region = __atomic_load_n(&run.region, __ATOMIC_RELAXED);
	}
	st->windows++; /* as sync_ranges: a window whose plan could be made */
	int rc = apply_plan(t, s, st, retry);
	*rcp = walk_err ? walk_err : rc; /* the walk came first */
	if (rest && retry_skipped(retry, iova, iova + IOVT_PAGE_SIZE - 1, st, 0))
		*rcp = -ENOMEM;
	return true;
nomem:
	*rcp = retry_all(t, s, st, retry, &(struct range){ iova, iova + IOVT_PAGE_SIZE - 1 }, 1, -ENOMEM);
	return true;
}

/* sync_small's bounds: a range of at most this many pages (a PSI of am
 * <= 6), holding at most this many extents (more are rare there: the
 * general path, which does not copy the unchanged ones, and the
 * collection's wasted copies stay few). */
#define SMALL_PAGES 64u
#define SMALL_OLD 32u

/*
 * push_old over extents already in s->old[0..k-1], in place: those a run
 * begins with (and maps as they say) leave, that run starting past them;
 * a zero-size marker stands where any left, as push_old's. Never longer
 * than before: a marker takes the place of at least one extent that left.
 */
static void drop_kept(struct sync_scratch *s, size_t k)
{
	struct iovt_extent *old = s->old.v, *run = s->runs.v, *end = s->runs.v + s->runs.n;
	size_t j = 0;
	bool dropped = false;
	for (size_t i = 0; i < k; i++) {
		/* In place: a marker goes below i (a record before it left),
		 * and a record moves down only when j < i. Copying each one out
		 * first was ~10 instructions a record (callgrind, perm-churn:
		 * 3,667 -> 3,617 a flip). */
		const struct iovt_extent *e = &old[i];
		if (kept_by_run(&run, end, e)) {
			dropped = true;
			continue;
		}
		if (dropped) {
			old[j++] = (struct iovt_extent){ .size = 0 };
			dropped = false;
		}
		if (j != i)
			old[j] = *e;
		j++;
	}
	if (dropped)
		old[j++] = (struct iovt_extent){ .size = 0 };
	s->old.n = j;
}

bool sync_test_count_small;
uint64_t sync_test_small[3];

/*
 * sync_small's plan from the k old extents in s->old and the runs: what
 * drop_kept and diff_window make of them. Two cases need neither, and they
 * are a strict guest's two PSIs (callgrind: ~150 of strict-dma's ~3,360
 * instructions a PSI): nothing recorded in the window, so every run is one
 * MAP (the runs become the MAPs: the vectors are swapped); nothing mapped
 * in it, so every extent goes, in one UNMAP when the sink takes several
 * mappings at once (no kept extent between them), else one each.
 */
static int plan_small(struct sync_scratch *s, size_t k, bool multi)
{
	if (__builtin_expect(sync_test_count_small, 0))
		sync_test_small[!k ? 0 : !s->runs.n ? 1 : 2]++;
	if (!k) {
		struct iovt_extent *v = s->maps.v; /* empty: apply_plan clears it */
		size_t cap = s->maps.cap;
		s->maps.v = s->runs.v;
		s->maps.n = s->runs.n;
		s->maps.cap = s->runs.cap;
		s->runs.v = v;
		s->runs.n = 0;
		s->runs.cap = cap;
		return 0;
	}
	if (!s->runs.n) {
		const struct iovt_extent *o = s->old.v;
		if (multi) {
			uint64_t pages = 0;
			for (size_t i = 0; i < k; i++)
				pages += o[i].size >> IOVT_PAGE_SHIFT;
			struct plan_unmap g = { o[0].iova, extent_end(&o[k - 1]) - 1, pages };
			if (vec_push(&s->unmaps, g))
				return -ENOMEM;
		} else {
			for (size_t i = 0; i < k; i++) {
				struct plan_unmap g = { o[i].iova, extent_end(&o[i]) - 1,
							o[i].size >> IOVT_PAGE_SHIFT };
				if (vec_push(&s->unmaps, g))
					return -ENOMEM;
			}
		}
		s->old.n = 0; /* consumed, as diff_window leaves it */
		return 0;
	}
	bool group_open = false;
	drop_kept(s, k);
	return diff_window(s, 0, 0, multi, &group_open);
}

/*
 * One range of at most SMALL_PAGES pages (a strict guest's buffer, a
 * permission flip): its old extents collected in one pass of the tree
 * (shadow_tree_collect_w), the window grown to the first and last of them,
 * walked, and the extents a run keeps dropped from the copies (drop_kept).
 * The general path's build_windows looks both ends up first and then
 * iterates the window: three searches of the tree where this makes one
 * (callgrind: ~570 of strict-dma's ~3,740 instructions a PSI, ~900 of
 * perm-churn's ~3,900 a flip, went to those). The same window, extents and
 * plan: the extents overlapping the range are those overlapping the
 * window grown to whole extents. false: more than SMALL_OLD extents, the
 * general path (nothing done).
 */
static bool sync_small(const struct sync_target *t, const struct range *r, struct sync_scratch *s,
		       struct sync_stats *st, struct range_set *retry, bool multi, int *rcp)
{
	if ((r->last - r->first) >> IOVT_PAGE_SHIFT >= SMALL_PAGES)
		return false;
	vec_clear(&s->old);
	if (vec_reserve(&s->old, SMALL_OLD))
		return false; /* the general path meets the same -ENOMEM and retries */
	size_t k = shadow_tree_collect_w(t->tree, r->first, r->last, s->old.v, SMALL_OLD);
	if (k > SMALL_OLD)
		return false;
	uint64_t first = r->first, last = r->last;
	if (k) {
		if (s->old.v[0].iova < first)
			first = s->old.v[0].iova;
		if (extent_end(&s->old.v[k - 1]) - 1 > last)
			last = extent_end(&s->old.v[k - 1]) - 1;
	}
	probe_window(first, last);
	vec_clear(&s->runs);
	int walk_err = 0;
	int rc = guest_view_runs(t, first, last, s, st, &walk_err);
	if (rc == GUEST_VIEW_SKIPPED) {
		/* a later pass's budget ran out (sync.h): kept as recorded, retried */
		st->windows++;
		*rcp = retry_skipped(retry, first, last, st, walk_err);
		return true;
	}
	const bool rest = rc == GUEST_VIEW_REST; /* cut again: synced to the cut, the rest retried */
	if (rest)
		rc = 0;
	if (!rc)
		rc = plan_small(s, k, multi);
	if (rc) { /* out of memory mid-plan */
		*rcp = retry_all(t, s, st, retry, r, 1, rc);
		return true;
	}
	st->windows++;
	rc = apply_plan(t, s, st, retry);
	*rcp = walk_err ? walk_err : rc; /* the walk came first */
	if (rest && retry_skipped(retry, s->rest.first, s->rest.last, st, 0))
		*rcp = -ENOMEM;
	return true;
}

static int sync_ranges_in(const struct sync_target *t, const struct range *ranges, size_t n,
			  struct sync_scratch *s, struct sync_stats *st, struct range_set *retry)
{
	bool multi = t->sink->caps.flags & IOVT_SINK_MULTI_UNMAP;
	if (n == 1) {
		int rc;
		if (sync_small(t, &ranges[0], s, st, retry, multi, &rc))
			return rc;
	}
	bool group_open = false;
	int walk_err = 0;
	int rc = build_windows(t, ranges, n, s);
	if (rc)
		return retry_all(t, s, st, retry, ranges, n, rc);

	for (size_t k = 0; k < s->windows.n; k++) {
		const struct range *w = &s->windows.v[k];
		/* An UNMAP group may span the gap only if no extent lives there. */
		if (k > 0 && group_open &&
		    shadow_tree_iterate_w(t->tree, s->windows.v[k - 1].last + 1, w->first - 1,
					any_extent, NULL))
			group_open = false;

		probe_window(w->first, w->last);
		vec_clear(&s->runs);
		vec_clear(&s->old);
		rc = guest_view_runs(t, w->first, w->last, s, st, &walk_err);
		if (rc == GUEST_VIEW_SKIPPED) {
			/* The sync's walk budget ran out before this window was
			 * done, earlier windows having spent part of it (sync.h):
			 * it keeps its record and is retried at the next fence,
			 * within the retry budget — a span taken from the retry or
			 * capped sets is not lost, and nothing is unmapped unseen
			 * (found by review). An UNMAP group cannot span it. */
			if (range_set_add(retry, w->first, w->last))
				return retry_all(t, s, st, retry, ranges, n, -ENOMEM);
			group_open = false;
			st->windows++;
			continue;
		}
		if (rc == GUEST_VIEW_REST) {
			/* Cut again (sync.h): synced up to the cut, the rest of
			 * its record unmapped by the diff below, the rest retried. */
			if (range_set_add(retry, s->rest.first, s->rest.last))
				return retry_all(t, s, st, retry, ranges, n, -ENOMEM);
			rc = 0;
		}
		s->old_ri = 0;
		s->old_dropped = false;
		if (!rc && s->one_old >= 0)
			rc = s->one_old ? push_old(s, &s->one_ext) : 0; /* build_windows' lookup */
		else if (!rc)
			rc = shadow_tree_iterate_unkept_w(t->tree, w->first, w->last, s->runs.v,
							  s->runs.n, &s->old_ri, &s->old_dropped,
							  push_unkept, s);
		if (!rc && s->old_dropped)
			rc = push_dropped_marker(s);
		if (!rc)
			rc = diff_window(s, 0, 0, multi, &group_open);
		if (rc) /* out of memory mid-plan */
			return retry_all(t, s, st, retry, ranges, n, rc);
		st->windows++;
	}
	rc = apply_plan(t, s, st, retry);
	return walk_err ? walk_err : rc; /* the first error met: the walks come before the calls */
}

/* Elements a scratch vector keeps between syncs (512 KiB of extents): a
 * larger one, grown by one large sync, is freed after it instead of held
 * for the life of its queue or engine (found by review: a hostile DSI left
 * its 1.3 GiB of runs allocated). */
#define SCRATCH_KEEP (1u << 14)

void sync_scratch_trim(struct sync_scratch *s)
{
	if (__builtin_expect(s->runs.cap > SCRATCH_KEEP, 0))
		vec_free(&s->runs);
	if (__builtin_expect(s->maps.cap > SCRATCH_KEEP, 0))
		vec_free(&s->maps);
	if (__builtin_expect(s->old.cap > SCRATCH_KEEP, 0))
		vec_free(&s->old);
	if (__builtin_expect(s->unmaps.cap > SCRATCH_KEEP, 0))
		vec_free(&s->unmaps);
	if (__builtin_expect(s->windows.cap > SCRATCH_KEEP, 0))
		vec_free(&s->windows);
}

int sync_ranges(const struct sync_target *t, const struct range *ranges, size_t n,
		struct sync_scratch *s, struct sync_stats *st, struct range_set *retry)
{
	/* One budget of page-table entries for the whole sync, less what its
	 * earlier passes read (sync.h). */
	s->walk_left = !t->walk.budget ? UINT64_MAX
		       : t->walk_spent < t->walk.budget ? t->walk.budget - t->walk_spent
							: 0;
	int rc;
	/* A one-page range without the trim: sync_page pushes one element at
	 * most, and a vector grown past SCRATCH_KEEP by an earlier sync, or a
	 * RAM removal's purge (domain_ram_purge), was trimmed at its end (~15
	 * of a one-page PSI + wait's instructions). */
	if (n == 1 && !(ranges[0].first & (IOVT_PAGE_SIZE - 1)) &&
	    ranges[0].last == ranges[0].first + IOVT_PAGE_SIZE - 1 &&
	    sync_page(t, ranges[0].first, s, st, retry, &rc))
		return rc;
	rc = sync_ranges_in(t, ranges, n, s, st, retry);
	sync_scratch_trim(s);
	return rc;
}

/* sync_unmap_everything's visitors: the span of all the extents, and one
 * UNMAP per extent (no allocation: the calls are made from the walk of the
 * record, which they do not change). */
struct whole_span {
	uint64_t first, last, pages;
	bool any;
};

static int span_each(void *arg, const struct iovt_extent *e)
{
	struct whole_span *w = arg;
	if (!w->any)
		w->first = e->iova;
	w->any = true;
	w->last = e->iova + e->size - 1;
	w->pages += e->size >> IOVT_PAGE_SHIFT;
	return 0;
}

struct unmap_each {
	const struct iovt_sink *sink;
	struct sync_stats *st;
	int rc; /* the first error */
	struct shadow_tree *kept; /* the refused extents (made at the first) */
	unsigned width;           /* its address width */
	uint64_t prefix;          /* bytes a failed merged call reported removed */
	bool stopped;             /* a refused extent found no room in `kept` */
	uint64_t from;            /* then: it, and every extent from it on, still held */
};

static int unmap_each(void *arg, const struct iovt_extent *e)
{
	struct unmap_each *u = arg;
	if (u->prefix) {
		/* Whole extents inside the prefix a failed merged call reported
		 * removed (in IOVA order, as forget_prefix reads it): gone.
		 * Asked again, an exact-count sink answers 0 having removed
		 * nothing — a refusal — and the region stayed busy for good
		 * (found by review: lifecycle-orphan-prefix). */
		if (e->size <= u->prefix) {
			u->prefix -= e->size;
			u->st->pages_unmapped += e->size >> IOVT_PAGE_SHIFT;
			return 0;
		}
		u->prefix = 0;
	}
	uint64_t done;
	int rc = unmap_alone(u->sink, e, u->st, &done);
	if (!rc)
		u->st->pages_unmapped += e->size >> IOVT_PAGE_SHIFT;
	else if (rc < 0) {
		if (!u->rc)
			u->rc = rc; /* (1: already gone, a failed call before removed it) */
		if (!u->kept)
			u->kept = shadow_tree_create(u->width);
		if (!u->kept || shadow_tree_insert(u->kept, e)) {
			/* No room to say what it refused: nothing more is asked,
			 * so the record from here on is exactly what it holds. */
			u->stopped = true;
			u->from = e->iova;
			return 1;
		}
	}
	return 0;
}

/*
 * The record is being retired (unpublished by the caller, freed after a
 * grace period): its extents are read, never removed, so that a translate
 * that loaded it before it was unpublished keeps finding what the guest
 * maps, not the holes an emptying left (lifecycle-attach-translate). No
 * allocation: one call for everything (a multi-unmap sink), else one per
 * extent from the walk of the record; a merged call that fails is followed
 * by one call per extent, so that what the sink could remove goes (an
 * iommufd that stopped at a busy mapping removed a prefix and said
 * nothing; an allocation failure sent no call at all before: found by
 * review). Returns 0 or the first error.
 */
int sync_unmap_everything(const struct sync_target *t, struct sync_stats *st,
			  struct shadow_tree **kept, bool *stopped, uint64_t *from)
{
	*kept = NULL;
	*stopped = false;
	*from = 0;
	const struct iovt_sink *sink = t->sink;
	const uint64_t top = target_top(t);

	if (shadow_tree_count(t->tree) == 0)
		return 0;
	int first = 0;
	/* What a failed merged call removed, in IOVA order, when the sink says
	 * (as apply_unmaps trusts it: forget_prefix). */
	uint64_t prefix = 0;
	const bool counted = sink->caps.flags & (IOVT_SINK_PARTIAL_UNMAP | IOVT_SINK_EXACT_UNMAPPED);
	if ((sink->caps.flags & IOVT_SINK_UNMAP_ALL) && sink->ops->unmap_all) {
		uint64_t done = 0;
		int rc = sink_unmap_all(sink, &done);
		st->unmap_calls++;
		if (!rc && (sink->caps.flags & IOVT_SINK_EXACT_UNMAPPED)) {
			struct whole_span w = { 0 }; /* what it should have removed */
			shadow_tree_iterate_w(t->tree, 0, top, span_each, &w);
			rc = short_success(sink, rc, done, w.pages << IOVT_PAGE_SHIFT);
		}
		if (!rc) {
			st->pages_unmapped += done >> IOVT_PAGE_SHIFT;
			return 0;
		}
		/* iommufd and DPDK stop at the first mapping they cannot
		 * remove: one call per extent follows, as after a failed
		 * merged call (found by review: everything after a busy
		 * mapping stayed mapped). */
		st->errors[IOVT_ERR_SINK_UNMAP]++;
		first = rc;
		prefix = counted ? done : 0;
	} else if ((sink->caps.flags & IOVT_SINK_MULTI_UNMAP) && shadow_tree_count(t->tree) > 1) {
		/* One call from the first extent to the last: it bisects nothing. */
		struct whole_span w = { 0 };
		shadow_tree_iterate_w(t->tree, 0, top, span_each, &w);
		uint64_t done = 0;
		int rc = sink_unmap(sink, w.first, w.last - w.first + 1, &done);
		rc = short_success(sink, rc, done, w.pages << IOVT_PAGE_SHIFT);
		st->unmap_calls++;
		if (!rc) {
			st->pages_unmapped += w.pages;
			return 0;
		}
		st->errors[IOVT_ERR_SINK_UNMAP]++;
		first = rc;
		prefix = counted ? done : 0;
	}
	struct unmap_each u = { sink, st, 0, NULL, t->walk.addr_width, prefix, false, 0 };
	shadow_tree_iterate_w(t->tree, 0, top, unmap_each, &u);
	*kept = u.kept;
	*stopped = u.stopped;
	*from = u.from;
	return first ? first : u.rc;
}
