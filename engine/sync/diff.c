/* SPDX-License-Identifier: MIT */
/*
 * Diff: the shadow's extents against the guest's runs over one window, into
 * a plan of UNMAP groups and MAP pieces (see sync.h for the rule).
 *
 * Both inputs are sorted and each run is maximal, so an unchanged extent lies
 * inside exactly one run at the same offset: one forward pass over each list
 * decides every extent, and a second pass cuts the runs around the kept ones.
 */
#include "sync/sync.h"

int diff_window(struct sync_scratch *s, size_t old_from, size_t run_from, bool multi_unmap,
		bool *group_open)
{
	size_t ri = run_from;
	size_t nkept = 0;

	/* Pass 1: keep or remove each old extent; group removals into UNMAPs. */
	for (size_t oi = old_from; oi < s->old.n; oi++) {
		const struct iovt_extent *o = &s->old.v[oi];
		if (!o->size) {
			/* Unchanged extents were here: a kept extent ends the group. */
			*group_open = false;
			continue;
		}
		while (ri < s->runs.n && extent_end(&s->runs.v[ri]) <= o->iova)
			ri++;
		if (ri < s->runs.n && still_mapped(&s->runs.v[ri], o)) {
			/* Kept: compact it to the front of the window's old[] (already visited). */
			s->old.v[old_from + nkept++] = *o;
			*group_open = false;
			continue;
		}
		uint64_t pages = o->size >> IOVT_PAGE_SHIFT;
		if (multi_unmap && *group_open) {
			struct plan_unmap *g = &s->unmaps.v[s->unmaps.n - 1];
			g->last = extent_end(o) - 1;
			g->pages += pages;
		} else {
			struct plan_unmap g = { .first = o->iova, .last = extent_end(o) - 1, .pages = pages };
			if (vec_push(&s->unmaps, g))
				return -ENOMEM;
			*group_open = true;
		}
	}

	/* Pass 2: every run minus the kept extents inside it, one MAP per piece. */
	size_t ki = old_from, kend = old_from + nkept;
	for (size_t r = run_from; r < s->runs.n; r++) {
		const struct iovt_extent *run = &s->runs.v[r];
		uint64_t cursor = run->iova;
		while (cursor < extent_end(run)) {
			while (ki < kend && extent_end(&s->old.v[ki]) <= cursor)
				ki++;
			uint64_t stop = extent_end(run);
			if (ki < kend && s->old.v[ki].iova < stop)
				stop = s->old.v[ki].iova;
			if (stop > cursor) {
				uint64_t off = cursor - run->iova;
				struct iovt_extent m = *run;
				m.iova = cursor;
				m.size = stop - cursor;
				m.hva += off;
				m.gpa += off;
				if (vec_push(&s->maps, m))
					return -ENOMEM;
			}
			if (ki < kend && s->old.v[ki].iova < extent_end(run))
				cursor = extent_end(&s->old.v[ki]);
			else
				cursor = extent_end(run);
		}
	}
	s->old.n = old_from; /* the window's extents are consumed */
	return 0;
}
