/* SPDX-License-Identifier: MIT */
/*
 * Apply: UNMAP groups first (a new mapping may reuse their IOVAs), then MAPs.
 * The tree follows the sink call by call, so it always records exactly what
 * the sink holds, also when a call fails:
 *  - UNMAP ok: the group's extents leave the tree.
 *  - UNMAP failed: nothing leaves, unless the sink reports a partial removal
 *    (IOVT_SINK_PARTIAL_UNMAP), then the whole extents inside the reported
 *    prefix leave. The span is retried at the next fence.
 *  - MAP failed: nothing enters; retried. MAP ok but the tree cannot take the
 *    extent (ENOMEM): the mapping is taken back from the sink.
 * After a failed UNMAP a planned MAP may collide with an extent that stayed;
 * such MAPs are not sent (they would be -EEXIST) but retried.
 */
#include <errno.h>

#include "common/probes.h"
#include "sync/sync.h"

static int note(int *first_err, int err)
{
	if (!*first_err)
		*first_err = err;
	return err;
}

static int count_removed(void *arg, const struct iovt_extent *e)
{
	*(uint64_t *)arg += e->size >> IOVT_PAGE_SHIFT;
	return 0;
}

static int first_hit(void *arg, const struct iovt_extent *e)
{
	(void)arg;
	(void)e;
	return 1;
}

/* Removes from the tree the whole extents inside [first, first+bytes). */
static uint64_t forget_prefix(struct shadow_tree *tree, uint64_t first, uint64_t bytes)
{
	uint64_t pages = 0, at = first;
	struct iovt_extent e;
	while (at < first + bytes && shadow_tree_lookup(tree, at, &e)) {
		if (e.iova + e.size > first + bytes)
			break;
		shadow_tree_remove_range(tree, e.iova, e.iova + e.size - 1, count_removed, &pages);
		at = e.iova + e.size;
	}
	return pages;
}

static int apply_unmaps(const struct sync_target *t, struct sync_scratch *s,
			struct sync_stats *st, struct range_set *retry, int *first_err)
{
	const struct iovt_sink *sink = t->sink;
	bool failed = false;

	for (size_t i = 0; i < s->unmaps.n; i++) {
		const struct plan_unmap *g = &s->unmaps.v[i];
		uint64_t done = 0;
		uint64_t size = g->last - g->first + 1;
		IOVT_PROBE3(sink_unmap, g->first, size, g->pages);
		int rc = sink->ops->unmap(sink->ctx, g->first, size, &done);
		st->unmap_calls++;
		if (rc == 0) {
			uint64_t pages = 0;
			shadow_tree_remove_range(t->tree, g->first, g->last, count_removed, &pages);
			st->pages_unmapped += pages;
			continue;
		}
		failed = true;
		st->errors[IOVT_ERR_SINK_UNMAP]++;
		note(first_err, rc);
		if ((sink->caps.flags & IOVT_SINK_PARTIAL_UNMAP) && done)
			st->pages_unmapped += forget_prefix(t->tree, g->first, done);
		if (range_set_add(retry, g->first, g->last))
			note(first_err, -ENOMEM);
	}
	return failed;
}

static void apply_maps(const struct sync_target *t, struct sync_scratch *s, struct sync_stats *st,
		       struct range_set *retry, int *first_err, bool check_overlap)
{
	const struct iovt_sink *sink = t->sink;

	for (size_t i = 0; i < s->maps.n; i++) {
		const struct iovt_extent *m = &s->maps.v[i];
		uint64_t last = m->iova + m->size - 1;
		if (check_overlap && shadow_tree_iterate(t->tree, m->iova, last, first_hit, NULL)) {
			range_set_add(retry, m->iova, last);
			continue;
		}
		if (t->max_extents && shadow_tree_count(t->tree) >= t->max_extents) {
			st->errors[IOVT_ERR_EXTENT_CAP]++;
			note(first_err, -ENOSPC);
			range_set_add(retry, m->iova, last);
			continue;
		}
		IOVT_PROBE3(sink_map, m->iova, m->size, m->hva);
		int rc = sink->ops->map(sink->ctx, m);
		st->map_calls++;
		if (rc) {
			st->errors[IOVT_ERR_SINK_MAP]++;
			note(first_err, rc);
			range_set_add(retry, m->iova, last);
			continue;
		}
		rc = shadow_tree_insert(t->tree, m);
		if (rc) {
			/* The record cannot hold it: take it back so sink == record. */
			uint64_t done = 0;
			note(first_err, rc);
			st->unmap_calls++;
			if (sink->ops->unmap(sink->ctx, m->iova, m->size, &done))
				st->errors[IOVT_ERR_SINK_UNMAP]++;
			range_set_add(retry, m->iova, last);
			continue;
		}
		st->pages_mapped += m->size >> IOVT_PAGE_SHIFT;
	}
}

int apply_plan(const struct sync_target *t, struct sync_scratch *s, struct sync_stats *st,
	       struct range_set *retry)
{
	int first_err = 0;
	bool unmap_failed = apply_unmaps(t, s, st, retry, &first_err);
	apply_maps(t, s, st, retry, &first_err, unmap_failed);
	vec_clear(&s->unmaps);
	vec_clear(&s->maps);
	return first_err;
}
