/* SPDX-License-Identifier: MIT */
/*
 * Apply: UNMAP groups first (a new mapping may reuse their IOVAs), then MAPs.
 * The tree follows the sink call by call, so it always records exactly what
 * the sink holds, also when a call fails:
 *  - UNMAP ok: the group's extents leave the tree.
 *  - UNMAP failed: nothing leaves, unless the sink reports a partial removal
 *    (IOVT_SINK_PARTIAL_UNMAP), then the whole extents inside the reported
 *    prefix leave. The span is retried at the next fence.
 *  - MAP: the extent enters the tree first, then the sink is called; a tree
 *    that cannot take it (ENOMEM) means no call (retried); a MAP that fails
 *    takes it out again (retried).
 * After a failed UNMAP a planned MAP may collide with an extent that stayed;
 * such MAPs are not sent (they would be -EEXIST) but retried.
 */
#include <errno.h>

#include "common/probes.h"
#include "common/sink_call.h"
#include "sync/sync.h"

static int note(int *first_err, int err)
{
	if (!*first_err)
		*first_err = err;
	return err;
}

static int first_hit(void *arg, const struct iovt_extent *e)
{
	(void)arg;
	(void)e;
	return 1;
}

/*
 * A partial UNMAP removed a prefix, in IOVA order, of the whole extents of
 * the group [first, last] and reported their bytes (the sum of their sizes,
 * as iommufd's `length` and iovt.h's *unmapped: gaps are not counted). A
 * multi-unmap group may span gaps, so the prefix is found by walking the
 * group's extents and adding their sizes, not by treating the bytes as a
 * span from `first` (which would stop at the first gap and leave in the
 * record extents the sink no longer holds).
 */
struct prefix_walk {
	uint64_t budget; /* bytes reported removed, not yet matched to extents */
	uint64_t end;    /* one past the last whole extent of the prefix; 0: none */
};

static int prefix_step(void *arg, const struct iovt_extent *e)
{
	struct prefix_walk *p = arg;
	if (e->size > p->budget)
		return 1;
	p->budget -= e->size;
	p->end = e->iova + e->size;
	return p->budget == 0;
}

static uint64_t forget_prefix(struct shadow_tree *tree, uint64_t first, uint64_t last,
			      uint64_t bytes)
{
	struct prefix_walk p = { bytes, 0 };
	uint64_t pages = 0;
	shadow_tree_iterate(tree, first, last, prefix_step, &p);
	if (p.end)
		shadow_tree_remove_count(tree, first, p.end - 1, &pages);
	return pages;
}

int unmap_alone(const struct iovt_sink *sink, const struct iovt_extent *e, struct sync_stats *st,
		uint64_t *done)
{
	*done = 0;
	int rc = sink_unmap(sink, e->iova, e->size, done);
	rc = short_success(sink, rc, *done, e->size); /* after the call: *done is its answer */
	st->unmap_calls++;
	if (rc == -ENOENT && (sink->caps.flags & IOVT_SINK_UNMAP_EMPTY_ERR))
		return 1;
	if (rc)
		st->errors[IOVT_ERR_SINK_UNMAP]++;
	/* A failure that counts all of it removed (a sink whose count on
	 * failure apply_unmaps trusts): gone, as resolve_group reads it; kept
	 * as refused, an orphan's region stayed busy for good (review). */
	if (rc < 0 && *done >= e->size &&
	    (sink->caps.flags & (IOVT_SINK_PARTIAL_UNMAP | IOVT_SINK_EXACT_UNMAPPED)))
		return 0;
	return rc;
}

/*
 * A failed UNMAP of several extents from a sink that may have removed part
 * of its range without saying how much (IOVT_SINK_PARTIAL_UNCOUNTED:
 * iommufd writes no reply on failure, yet removes whole mappings in order
 * and stops at the first it cannot): each extent the record still holds
 * there is unmapped alone. Removed (also a failure that counts all of it),
 * or not held (-ENOENT from a sink with IOVT_SINK_UNMAP_EMPTY_ERR), it
 * leaves the record; refused, it stays (the group's span is retried). Before
 * this the removed prefix stayed in the record: a guest that mapped it again
 * at the same place was told nothing (the diff kept it) and its device
 * faulted, or every retry hit -ENOENT on it (found by review:
 * fault-multi-unmap-prefix). A group of one extent is left as it is: the
 * sink stopped at its first mapping, so it removed nothing.
 *
 * No allocation: the extents are taken RESOLVE_CHUNK at a time into the
 * stack. A vector here could fail, and the record then kept the mapping
 * the failed call had removed (found by the twenty-second session's review:
 * fault-multi-unmap-prefix-enomem).
 */
#define RESOLVE_CHUNK 16

static void resolve_group(const struct sync_target *t, const struct plan_unmap *g,
			  struct sync_stats *st)
{
	const struct iovt_sink *sink = t->sink;
	struct iovt_extent v[RESOLVE_CHUNK];
	uint64_t cur = g->first;
	for (bool first = true;; first = false) {
		size_t n = shadow_tree_collect_w(t->tree, cur, g->last, v, RESOLVE_CHUNK);
		const bool more = n > RESOLVE_CHUNK;
		if (more)
			n = RESOLVE_CHUNK;
		if (!n || (first && n == 1 && !more))
			return;
		for (size_t i = 0; i < n; i++) {
			uint64_t done;
			if (unmap_alone(sink, &v[i], st, &done) < 0)
				continue; /* still held: the retry unmaps it */
			/* gone: the group's failed call removed it and counted nothing,
			 * or this one failed having removed all of it (unmap_alone:
			 * this sink has IOVT_SINK_PARTIAL_UNMAP, attach checks it) */
			shadow_tree_remove_count(t->tree, v[i].iova, v[i].iova + v[i].size - 1,
						 &st->pages_unmapped);
		}
		const uint64_t last = v[n - 1].iova + (v[n - 1].size - 1);
		if (!more || last >= g->last)
			return;
		cur = last + 1;
	}
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
		int rc = sink_unmap(sink, g->first, size, &done);
		rc = short_success(sink, rc, done, g->pages << IOVT_PAGE_SHIFT);
		st->unmap_calls++;
		if (rc == 0) {
			shadow_tree_remove_count(t->tree, g->first, g->last, &st->pages_unmapped);
			continue;
		}
		if (rc == -ENOENT && (sink->caps.flags & IOVT_SINK_UNMAP_EMPTY_ERR)) {
			/* The sink holds nothing there (its UNMAP of an empty range
			 * fails): neither does the record now. A mapping lost
			 * behind the engine's back (another user of the iommufd
			 * IOAS unmapped it) kept the span failing at every fence,
			 * -ENOENT for good (found by review: fault-lost-mapping).
			 * Counted, not retried: the device is what the guest asked. */
			st->errors[IOVT_ERR_SINK_UNMAP]++;
			shadow_tree_remove_count(t->tree, g->first, g->last, &st->pages_unmapped);
			continue;
		}
		failed = true;
		st->errors[IOVT_ERR_SINK_UNMAP]++;
		note(first_err, rc);
		if ((sink->caps.flags & (IOVT_SINK_PARTIAL_UNMAP | IOVT_SINK_EXACT_UNMAPPED)) && done)
			st->pages_unmapped += forget_prefix(t->tree, g->first, g->last, done);
		else if ((sink->caps.flags & IOVT_SINK_PARTIAL_UNCOUNTED) && g->pages > 1)
			resolve_group(t, g, st);
		if (range_set_add(retry, g->first, g->last))
			note(first_err, -ENOMEM);
	}
	return failed;
}

static void apply_maps(const struct sync_target *t, struct sync_scratch *s, struct sync_stats *st,
		       struct range_set *retry, int *first_err, bool check_overlap)
{
	if (!s->maps.n)
		return; /* an UNMAP-only plan (a strict guest's unmap PSI) */
	const struct iovt_sink *sink = t->sink;
	/* The sink's own limit too: a MAP it would refuse (-ENOSPC) is not sent. */
	uint64_t limit = t->max_extents;
	if (sink->caps.max_mappings && (!limit || sink->caps.max_mappings < limit))
		limit = sink->caps.max_mappings;

	/* The record's extents, read once: this loop is its only writer now */
	uint64_t count = limit ? shadow_tree_count(t->tree) : 0;

	for (size_t i = 0; i < s->maps.n; i++) {
		const struct iovt_extent *m = &s->maps.v[i];
		uint64_t last = m->iova + m->size - 1;
		if (check_overlap && shadow_tree_iterate_w(t->tree, m->iova, last, first_hit, NULL)) {
			range_set_add(retry, m->iova, last);
			continue;
		}
		if (limit && count >= limit) {
			st->errors[IOVT_ERR_EXTENT_CAP]++;
			note(first_err, -ENOSPC);
			range_set_add(t->capped ? t->capped : retry, m->iova, last);
			continue;
		}
		/* Recorded first, then sent: a record that cannot take it
		 * (ENOMEM) keeps the MAP from being sent at all, and one the
		 * sink refuses leaves the record again (a removal never fails
		 * for memory). Sent first, the MAP had to be taken back when
		 * the record could not take it, and a take-back the sink
		 * refused left it holding a mapping the record did not (found
		 * by review). A reader meanwhile may see the extent before the
		 * sink holds it: the guest's own mapping, which translate may
		 * answer between an invalidation and its wait. */
		int rc = shadow_tree_insert(t->tree, m);
		if (rc) {
			/* -EINVAL / -EEXIST cannot come: runs stay below the
			 * record's extent size (sync.h, RUN_BREAK) and a plan's
			 * MAPs never overlap what the record keeps. */
			if (rc == -ENOMEM)
				st->errors[IOVT_ERR_NO_MEMORY]++;
			note(first_err, rc);
			range_set_add(retry, m->iova, last);
			continue;
		}
		IOVT_PROBE3(sink_map, m->iova, m->size, m->hva);
		rc = sink_map(sink, m);
		st->map_calls++;
		if (rc) {
			shadow_tree_remove_range(t->tree, m->iova, last, NULL, NULL);
			st->errors[IOVT_ERR_SINK_MAP]++;
			note(first_err, rc);
			range_set_add(retry, m->iova, last);
			continue;
		}
		st->pages_mapped += m->size >> IOVT_PAGE_SHIFT;
		count++;
	}
}

int apply_plan(const struct sync_target *t, struct sync_scratch *s, struct sync_stats *st,
	       struct range_set *retry)
{
	int first_err = 0;
	bool unmap_failed = apply_unmaps(t, s, st, retry, &first_err);
	apply_maps(t, s, st, retry, &first_err, unmap_failed);
	/* No flush here: the tree hands its retired nodes to call_rcu when its
	 * batch is full (61 nodes, ~31 KiB at most per tree) and when it is
	 * retired or destroyed. A flush per sync made a 1-page map/unmap pay a
	 * call_rcu (and a wakeup of the call_rcu thread) every few fences:
	 * fence/map_unmap_1 mean 282 -> 243 ns, pieces_1_32 p50 571 -> 411 ns. */
	vec_clear(&s->unmaps);
	vec_clear(&s->maps);
	return first_err;
}
