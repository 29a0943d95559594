/* SPDX-License-Identifier: MIT */
/*
 * The oracle: the fewest sink calls, among stable plans, that turn `before`
 * into the guest view (see iovt_model.h for the definition).
 *
 * It judges the engine's diff and batcher, so it shares no code with them and
 * is written the plain way: one 4 KiB page at a time through the guest
 * callback. Cost is O(pages in touched ranges and changed extents, times
 * log n_before) — clarity over speed, but never quadratic.
 */
#include <errno.h>
#include <stdlib.h>

#include "iovt.h"
#include "iovt_model.h"

#define PG IOVT_PAGE_SIZE
#define PG_MASK (IOVT_PAGE_SIZE - 1)

struct ival {
	uint64_t first, last; /* inclusive, page aligned first, last = page end - 1 */
};

static int cmp_ival(const void *a, const void *b)
{
	const struct ival *x = a, *y = b;
	if (x->first != y->first)
		return x->first < y->first ? -1 : 1;
	return x->last < y->last ? -1 : x->last > y->last;
}

/* Sorts and merges overlapping or adjacent intervals in place; returns the new
 * count. Adjacent ones merge too, so a page run never straddles two entries. */
static size_t merge_ivals(struct ival *v, size_t n)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), cmp_ival);
	size_t k = 0;
	for (size_t i = 1; i < n; i++) {
		if (v[k].last == UINT64_MAX || v[i].first <= v[k].last + 1) {
			if (v[i].last > v[k].last)
				v[k].last = v[i].last;
		} else {
			v[++k] = v[i];
		}
	}
	return k + 1;
}

/* Index of the extent of `before` containing iova, or n. */
static size_t extent_at(const struct iovt_extent *b, size_t n, uint64_t iova)
{
	size_t lo = 0, hi = n; /* first extent with iova > target */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (b[mid].iova <= iova)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return n;
	const struct iovt_extent *e = &b[lo - 1];
	return iova - e->iova < e->size ? lo - 1 : n;
}

/* Does [first, last] meet any of the merged (sorted, disjoint) intervals? */
static bool overlaps_any(const struct ival *v, size_t n, uint64_t first, uint64_t last)
{
	size_t lo = 0, hi = n; /* first interval with last >= first */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v[mid].last < first)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && v[lo].first <= last;
}

/* Every page of e still in the guest view with the same target. */
static bool extent_unchanged(const struct iovt_oracle_input *in, const struct iovt_extent *e)
{
	for (uint64_t off = 0; off < e->size; off += PG) {
		struct iovt_extent g;
		if (!in->guest(in->guest_arg, e->iova + off, &g))
			return false;
		if (g.hva != e->hva + off || g.gpa != e->gpa + off || g.perm != e->perm ||
		    g.region != e->region)
			return false;
	}
	return true;
}

int iovt_oracle_min_calls(const struct iovt_oracle_input *in, struct iovt_oracle_result *out)
{
	if (!in || !out || !in->guest || (in->n_before && !in->before) ||
	    (in->n_touched && !in->touched))
		return -EINVAL;
	const struct iovt_extent *b = in->before;
	size_t nb = in->n_before;

	/* 1. `before` sorted and disjoint (and well formed). */
	for (size_t i = 0; i < nb; i++) {
		if (b[i].size == 0 || (b[i].iova & PG_MASK) || (b[i].size & PG_MASK) ||
		    b[i].iova + b[i].size - 1 < b[i].iova)
			return -EINVAL;
		if (i && b[i].iova < b[i - 1].iova + b[i - 1].size)
			return -EINVAL;
	}

	int rc = -ENOMEM;
	bool *invalid = calloc(nb ? nb : 1, sizeof(*invalid));
	struct ival *touched = malloc((in->n_touched ? in->n_touched : 1) * sizeof(*touched));
	struct ival *todo = NULL;
	if (!invalid || !touched)
		goto out;

	/* Touched ranges widened to whole pages, then merged. */
	for (size_t i = 0; i < in->n_touched; i++) {
		uint64_t f = in->touched[i][0], l = in->touched[i][1];
		if (f > l) {
			rc = -EINVAL;
			goto out;
		}
		touched[i].first = f & ~PG_MASK;
		touched[i].last = l | PG_MASK;
	}
	size_t nt = merge_ivals(touched, in->n_touched);

	/* 2. Candidates: extents meeting a touched range; invalid when a page
	 * changed. Outside touched ranges the guest equals `before`. */
	uint64_t n_invalid = 0;
	for (size_t i = 0; i < nb; i++) {
		if (overlaps_any(touched, nt, b[i].iova, b[i].iova + b[i].size - 1) &&
		    !extent_unchanged(in, &b[i])) {
			invalid[i] = true;
			n_invalid++;
		}
	}

	/* 3. Unmaps: each invalid extent alone, or with multi_unmap one per run
	 * of invalid extents not separated by a kept one (gaps don't matter). */
	uint64_t unmaps = 0;
	for (size_t i = 0; i < nb; i++) {
		if (!invalid[i])
			continue;
		if (!in->multi_unmap || i == 0 || !invalid[i - 1])
			unmaps++;
	}

	/* 4. Maps: pages of (touched ∪ invalid extents), present in the guest
	 * and not under a kept extent, counted as maximal mappable runs. */
	todo = malloc((nt + n_invalid + 1) * sizeof(*todo));
	if (!todo)
		goto out;
	size_t nd = 0;
	for (size_t i = 0; i < nt; i++)
		todo[nd++] = touched[i];
	for (size_t i = 0; i < nb; i++)
		if (invalid[i])
			todo[nd++] = (struct ival){b[i].iova, b[i].iova + b[i].size - 1};
	nd = merge_ivals(todo, nd);

	uint64_t maps = 0;
	for (size_t k = 0; k < nd; k++) {
		bool have_prev = false; /* the page just before p is in P */
		struct iovt_extent prev = {0};
		uint64_t p = todo[k].first;
		for (;;) {
			struct iovt_extent g;
			size_t ei = extent_at(b, nb, p);
			bool in_p = (ei == nb || invalid[ei]) && in->guest(in->guest_arg, p, &g);
			if (in_p) {
				/* a run breaks at every 8 TiB-aligned IOVA too, as the
				 * engine's (sync.h, RUN_BREAK: the record's extent size) */
				bool cont = have_prev && g.hva == prev.hva + PG && g.gpa == prev.gpa + PG &&
					    g.perm == prev.perm && g.region == prev.region &&
					    (p & ((1ull << 43) - 1));
				if (!cont)
					maps++;
				prev = g;
			}
			have_prev = in_p;
			if (todo[k].last - p < PG) /* p was the interval's last page */
				break;
			p += PG;
		}
	}

	out->min_unmaps = unmaps;
	out->min_maps = maps;
	out->min_calls = unmaps + maps;
	out->kept = nb - n_invalid;
	rc = 0;
out:
	free(invalid);
	free(touched);
	free(todo);
	return rc;
}
