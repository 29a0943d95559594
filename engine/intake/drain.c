/* SPDX-License-Identifier: MIT */
/*
 * The drainer's side of a queue: items become per-domain pending ranges
 * (coalescing across every queue that posts to a domain), fences become
 * syncs of the domains the queue touched since its previous fence.
 *
 * Whoever holds a queue's drain flag runs this: the producer itself at a
 * fence (inline), a worker, a poller, or iovt_fence. The flag serialises
 * drainers of one queue, which is what keeps one queue's items in order.
 */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <string.h>

#include "common/futex.h"
#include "common/probes.h"
#include "common/rcu.h"
#include "engine_internal.h"

#define BURST 32u

bool queue_try_drain_begin(struct iovt_queue *q)
{
	int expected = 0;
	return atomic_load_explicit(&q->draining, memory_order_relaxed) == 0 &&
	       atomic_compare_exchange_strong_explicit(&q->draining, &expected, 1,
						       memory_order_acquire, memory_order_relaxed);
}

void queue_drain_end(struct iovt_queue *q)
{
	atomic_store_explicit(&q->draining, 0, memory_order_release);
}

void domain_add_pending(struct iovt_domain *d, uint64_t first, uint64_t last, bool all)
{
	pthread_mutex_lock(&d->pending_lock);
	if (all)
		range_set_add_all(&d->pending);
	else
		range_set_add(&d->pending, first, last);
	pthread_mutex_unlock(&d->pending_lock);
	domain_mark_dirty(d);
}

/* Sends the raw (coalesced, possibly oversized) ranges to UNMAP-only notifiers. */
static int notify_raw(struct iovt_domain *d, const struct range_set *todo)
{
	struct iovt_notifier *n;
	struct range all = { 0, domain_top(d) };
	const struct range *r = todo->all ? &all : todo->r;
	size_t nr = todo->all ? 1 : todo->n;
	int first_err = 0;

	cds_list_for_each_entry(n, &d->notifiers, link) {
		for (size_t i = 0; i < nr; i++) {
			uint64_t done = 0;
			int rc = n->sink.ops->unmap(n->sink.ctx, r[i].first, r[i].last - r[i].first + 1,
						    &done);
			STAT_ADD(d, raw_unmap_calls, 1);
			if (rc && !first_err)
				first_err = rc;
		}
	}
	return first_err;
}

/*
 * Finds a domain, takes a reference inside a read-side section, leaves the
 * section, and only then waits for its sync_lock: no thread ever waits for a
 * mutex inside a read-side section, so a holder of sync_lock may wait for a
 * grace period without deadlock (ARCHITECTURE.md, "Lifetimes and locks"). A
 * sync walks and calls sinks for microseconds to milliseconds; a read-side
 * section that long would also make every grace period wait for it.
 * NULL: no such domain. Release with domain_sync_unlock.
 */
struct iovt_domain *domain_sync_lock(struct iovt_engine *e, uint16_t did)
{
	struct iovt_domain *d = domain_get_did(e, did);
	if (d)
		pthread_mutex_lock(&d->sync_lock);
	return d;
}

void domain_sync_unlock(struct iovt_domain *d)
{
	pthread_mutex_unlock(&d->sync_lock);
	domain_put(d);
}

/* The most extents the MAP sink's record may hold (engine cap, sink cap). */
static uint64_t extent_limit(const struct iovt_domain *d)
{
	uint64_t limit = d->engine->cfg.max_extents_per_domain;
	uint32_t sink_max = d->map_notifier ? d->map_notifier->sink.caps.max_mappings : 0;
	if (sink_max && (!limit || sink_max < limit))
		limit = sink_max;
	return limit;
}

static bool cap_has_room(const struct iovt_domain *d)
{
	uint64_t limit = extent_limit(d);
	return !limit || !d->tree || shadow_tree_count(d->tree) < limit;
}

/*
 * Moves up to `budget` pages of span from the front of `from` into `todo`
 * (a range may be split: windows grow to whole extents anyway). Returns the
 * pages moved. What is left stays for the next sync.
 */
static uint64_t take_budget(struct range_set *todo, struct range_set *from, uint64_t top,
			    uint64_t budget, struct iovt_domain *d)
{
	uint64_t moved = 0;
	size_t used = 0;

	if (from->all) {
		from->all = false;
		from->n = 0;
		if (range_set_add(from, 0, top)) {
			range_set_add_all(todo); /* no memory: retry everything now */
			range_set_clear(from);
			return budget;
		}
	}
	for (; used < from->n && moved < budget; used++) {
		struct range *r = &from->r[used];
		uint64_t pages = ((r->last - r->first) >> IOVT_PAGE_SHIFT) + 1;
		if (pages > budget - moved) {
			uint64_t last = r->first + ((budget - moved) << IOVT_PAGE_SHIFT) - 1;
			range_set_add(todo, r->first, last);
			r->first = last + 1;
			moved = budget;
			break;
		}
		range_set_add(todo, r->first, r->last);
		moved += pages;
	}
	STAT_ADD(d, retry_ranges, used + (moved == budget && used < from->n));
	memmove(from->r, from->r + used, (from->n - used) * sizeof(from->r[0]));
	from->n -= used;
	if (!range_set_empty(from))
		STAT_ADD(d, retry_deferred, 1);
	return moved;
}

/*
 * Applies the domain's pending ranges plus a bounded share of the spans that
 * failed before; the caller holds sync_lock. Whoever holds it is the
 * domain's single writer: a second drainer that finds the lock taken waits,
 * then finds its ranges already taken and applied by the first — which is
 * why a fence may return as soon as it has passed through the lock.
 *
 * Work per sync is what was invalidated plus at most IOVT_RETRY_BUDGET_PAGES
 * of retried span: spans a sink refused (`retry`) every time, spans the
 * extent cap kept out (`capped`) only while the cap has room — never the
 * whole history of a guest that maps past the cap at every fence.
 */
int domain_sync_locked(struct iovt_domain *d, struct sync_scratch *s, struct range_set *todo,
		       bool *retry_left)
{
	int rc = 0;

	if (atomic_load_explicit(&d->dead, memory_order_relaxed))
		goto out;
	pthread_mutex_lock(&d->pending_lock);
	range_set_take(todo, &d->pending);
	pthread_mutex_unlock(&d->pending_lock);

	uint64_t top = domain_top(d);
	uint64_t budget = IOVT_RETRY_BUDGET_PAGES;
	if (todo->all) {
		range_set_clear(&d->retry); /* a whole-domain sync covers them */
		range_set_clear(&d->capped);
	} else if (!range_set_empty(&d->retry)) {
		budget -= take_budget(todo, &d->retry, top, budget, d);
	}
	/* Two passes at most: the second only when this sync's UNMAPs made
	 * room under the cap for spans it had kept out. */
	for (int pass = 0; pass < 2; pass++) {
		if (budget && !todo->all && !range_set_empty(&d->capped) && cap_has_room(d))
			budget -= take_budget(todo, &d->capped, top, budget, d);
		if (range_set_empty(todo))
			break;
		if (pass == 0)
			rc = notify_raw(d, todo); /* retried spans of a MAP sink are no news to them */
		if (d->map_notifier) {
			struct sync_target t;
			struct sync_stats st = { 0 };
			struct range all = { 0, top };
			domain_sync_target(d, &t);
			int src = todo->all ? sync_ranges(&t, &all, 1, s, &st, &d->retry)
					    : sync_ranges(&t, todo->r, todo->n, s, &st, &d->retry);
			domain_fold_stats(d, &st);
			if (src && !rc)
				rc = src;
		}
		range_set_clear(todo);
	}
	/* Spans still kept out by the cap: the domain is not equal to the
	 * guest view, and every fence that syncs it says so (no re-walk). */
	if (!rc && !range_set_empty(&d->capped))
		rc = -ENOSPC;
out:;
	/* Capped spans keep the domain on the fences' lists even without room:
	 * a sync of it then costs a lock and says -ENOSPC, nothing more. */
	bool left = !range_set_empty(&d->retry) || !range_set_empty(&d->capped);
	if (left)
		domain_mark_dirty(d); /* iovt_fence retries it */
	if (retry_left)
		*retry_left = left;
	return rc;
}

/* The same, taking the lock; the caller holds a reference (iovt_fence: the dirty queue's). */
int domain_sync(struct iovt_domain *d, struct sync_scratch *s, struct range_set *todo,
		bool *retry_left)
{
	pthread_mutex_lock(&d->sync_lock);
	int rc = domain_sync_locked(d, s, todo, retry_left);
	pthread_mutex_unlock(&d->sync_lock);
	return rc;
}

static void touch(struct drain_state *ds, uint16_t did)
{
	uint64_t bit = 1ull << (did & 63);
	if (ds->touched_bits[did >> 6] & bit)
		return;
	if (vec_push(&ds->touched, did)) {
		ds->touched_all = true; /* no memory for the list: sync everything */
		return;
	}
	ds->touched_bits[did >> 6] |= bit;
}

/* A fence item: sync what this queue touched, then publish its ticket. Outside any read-side section. */
static void apply_fence(struct iovt_queue *q, uint64_t ticket, bool inline_fence)
{
	struct iovt_engine *e = q->engine;
	struct drain_state *ds = &q->drain;
	int err = 0;

	IOVT_PROBE1(fence_begin, ticket);
	if (ds->touched_all) {
		/* After a global invalidation (rare): every domain now in the
		 * table joins the list, in a read-side section that waits for
		 * nothing; the syncs run below, outside it. */
		struct cds_lfht_iter it;
		struct cds_lfht_node *node;
		ds->touched_all = false;
		iovt_rcu_read_lock();
		cds_lfht_for_each(e->domains, &it, node)
			touch(ds, caa_container_of(node, struct iovt_domain, hnode)->did);
		iovt_rcu_read_unlock();
	}
	{
		size_t n = ds->touched.n;
		for (size_t i = 0; i < n; i++) {
			uint16_t did = ds->touched.v[i];
			ds->touched_bits[did >> 6] &= ~(1ull << (did & 63));
			struct iovt_domain *d = domain_sync_lock(e, did);
			if (!d)
				continue;
			bool retry;
			int rc = domain_sync_locked(d, &ds->scratch, &ds->todo, &retry);
			domain_sync_unlock(d);
			if (rc && !err)
				err = rc;
			if (retry)
				ds->touched_bits[did >> 6] |= 1ull << (did & 63);
		}
		/* Keep the DIDs still marked (their spans failed) for the next fence. */
		size_t kept = 0;
		for (size_t i = 0; i < n; i++) {
			uint16_t did = ds->touched.v[i];
			if (ds->touched_bits[did >> 6] & (1ull << (did & 63)))
				ds->touched.v[kept++] = did;
		}
		ds->touched.n = kept;
	}
	if (err) {
		int none = 0;
		atomic_compare_exchange_strong(&q->err, &none, err);
	}
	ENGINE_STAT_ADD(e, fences, 1);
	if (inline_fence)
		ENGINE_STAT_ADD(e, fences_inline, 1);
	else
		ENGINE_STAT_ADD(e, fences_drained, 1);
	atomic_store_explicit(&q->fences_done, ticket, memory_order_release);
	atomic_fetch_add_explicit(&q->done_word, 1, memory_order_seq_cst);
	if (atomic_load_explicit(&q->waiters, memory_order_seq_cst))
		futex_wake_all(&q->done_word);
	IOVT_PROBE1(fence_end, err);
}

/*
 * Consecutive items for one domain are gathered and added to its pending
 * set under one lock hold; counters are folded once per gathering.
 */
struct gather {
	struct iovt_domain *d;
	uint16_t did;
	unsigned n, psi, dsi, ih;
	bool all;
	struct range r[BURST];
};

static void gather_flush(struct gather *g)
{
	struct iovt_domain *d = g->d;
	if (!d)
		return;
	pthread_mutex_lock(&d->pending_lock);
	if (g->all)
		range_set_add_all(&d->pending);
	else
		for (unsigned i = 0; i < g->n; i++)
			range_set_add(&d->pending, g->r[i].first, g->r[i].last);
	pthread_mutex_unlock(&d->pending_lock);
	domain_mark_dirty(d);
	STAT_ADD(d, invalidations, g->psi + g->dsi);
	if (g->psi)
		STAT_ADD(d, psi, g->psi);
	if (g->dsi)
		STAT_ADD(d, dsi, g->dsi);
	if (g->ih)
		STAT_ADD(d, ih, g->ih);
	g->d = NULL;
	g->n = g->psi = g->dsi = g->ih = 0;
	g->all = false;
}

static void gather_item(struct iovt_queue *q, struct gather *g, const struct intake_item *it)
{
	if (!g->d || g->did != it->did) {
		gather_flush(g);
		struct iovt_domain *d = domain_find_rcu(q->engine, it->did);
		if (!d) {
			/* Accepted at post, destroyed before the drain: the destroy
			 * unmapped everything, so there is nothing left to
			 * invalidate. Counted as accepted (at post), and here as
			 * `stale_domain`, not as an error of the guest's. */
			struct iovt_engine *e = q->engine;
			ENGINE_STAT_ADD(e, invalidations, 1);
			ENGINE_STAT_ADD(e, stale_domain, 1);
			if (it->kind == ITEM_DSI)
				ENGINE_STAT_ADD(e, dsi, 1);
			else
				ENGINE_STAT_ADD(e, psi, 1);
			if (it->ih)
				ENGINE_STAT_ADD(e, ih, 1);
			return;
		}
		g->d = d;
		g->did = it->did;
		touch(&q->drain, it->did);
	}
	if (it->kind == ITEM_DSI) {
		g->all = true;
		g->dsi++;
		return;
	}
	g->psi++;
	g->ih += it->ih;
	if (g->all)
		return;
	struct range b = psi_block(it->arg, it->am, domain_top(g->d));
	struct range *prev = g->n ? &g->r[g->n - 1] : NULL;
	if (prev && prev->last + 1 >= b.first && prev->first <= b.first) {
		if (b.last > prev->last)
			prev->last = b.last; /* the common streaming case: adjacent blocks */
	} else {
		g->r[g->n++] = b;
	}
}

void domains_pend_all(struct iovt_engine *e)
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *node;
	cds_lfht_for_each(e->domains, &it, node)
		domain_add_pending(caa_container_of(node, struct iovt_domain, hnode), 0, 0, true);
}

static void post_global(struct iovt_queue *q)
{
	ENGINE_STAT_ADD(q->engine, invalidations, 1);
	ENGINE_STAT_ADD(q->engine, global, 1);
	domains_pend_all(q->engine);
	q->drain.touched_all = true;
}

unsigned queue_drain(struct iovt_queue *q, unsigned budget)
{
	struct intake_item buf[BURST];
	struct gather g = { 0 };
	unsigned total = 0;
	bool inline_fence = q->drain.draining_inline;

	while (total < budget) {
		unsigned want = budget - total < BURST ? budget - total : BURST;
		unsigned n = q->ring->ops->pop(q->ring, buf, want);
		if (!n)
			break;
		/* A read-side section per burst (domain pointers in `g`), left
		 * for each fence: syncs run outside (see domain_sync_lock). */
		iovt_rcu_read_lock();
		for (unsigned i = 0; i < n; i++) {
			const struct intake_item *it = &buf[i];
			switch (it->kind) {
			case ITEM_PSI:
			case ITEM_DSI:
				if (g.n == BURST)
					gather_flush(&g);
				gather_item(q, &g, it);
				break;
			case ITEM_GLOBAL:
				gather_flush(&g);
				post_global(q);
				break;
			case ITEM_FENCE:
				gather_flush(&g);
				iovt_rcu_read_unlock();
				apply_fence(q, it->arg, inline_fence);
				iovt_rcu_read_lock();
				break;
			}
		}
		gather_flush(&g);
		iovt_rcu_read_unlock();
		total += n;
	}
	if (total)
		ENGINE_STAT_ADD(q->engine, queue_items, total);
	return total;
}

/*
 * iovt_fence: drains every queue, then syncs every dirty domain (those the
 * queues fed, retries, root changes). Control lock: one at a time, and no
 * control call changes domains meanwhile.
 */
int engine_fence_all(struct iovt_engine *e)
{
	struct cds_wfcq_head h;
	struct cds_wfcq_tail t;
	struct cds_wfcq_node *node;
	int first_err = 0;

	pthread_mutex_lock(&e->control_lock);
	ENGINE_STAT_ADD(e, fences, 1);
	IOVT_PROBE1(fence_begin, 0);
	/* The control lock pins the queue table (replaced only under it) and
	 * every domain (destroyed only under it): no read-side section needed. */
	struct queue_table *qt = iovt_rcu_dereference(e->queues);
	for (unsigned qi = 0; qt && qi < qt->n; qi++) {
		struct iovt_queue *q = qt->q[qi];
		if (!q->ring->ops->count(q->ring) && !atomic_load(&q->draining))
			continue;
		while (!queue_try_drain_begin(q))
			sched_yield(); /* another drainer is in a burst: it is short */
		queue_drain(q, UINT_MAX);
		queue_drain_end(q);
	}

	dirty_take_all(e, &h, &t);
	while ((node = dirty_next(&h, &t))) {
		struct iovt_domain *d = caa_container_of(node, struct iovt_domain, dirty);
		atomic_store_explicit(&d->queued, 0, memory_order_release);
		int rc = domain_sync(d, &e->scratch, &e->todo, NULL);
		domain_put(d); /* the dirty queue's reference */
		if (rc && !first_err)
			first_err = rc;
	}
	cds_wfcq_destroy(&h, &t);
	IOVT_PROBE1(fence_end, first_err);
	pthread_mutex_unlock(&e->control_lock);
	return first_err;
}
