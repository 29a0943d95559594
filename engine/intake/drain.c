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
 * Finds a domain and takes its sync_lock, leaving the read-side section as
 * soon as the lock is held: a sync walks and calls sinks for microseconds to
 * milliseconds, and a reader that long makes every grace period (the tree's
 * call_rcu retirements) wait and then be woken by this thread's unlock.
 * iovt_domain_destroy passes through sync_lock after its grace period, so
 * the domain outlives the lock hold. NULL: no such domain.
 */
struct iovt_domain *domain_sync_lock(struct iovt_engine *e, uint16_t did)
{
	iovt_rcu_read_lock();
	struct iovt_domain *d = iovt_domain_lookup(e, did);
	if (d)
		pthread_mutex_lock(&d->sync_lock);
	iovt_rcu_read_unlock();
	return d;
}

/*
 * Applies the domain's pending ranges (and the spans that failed before) to
 * its notifiers; the caller holds sync_lock. Whoever holds it is the
 * domain's single writer: a second drainer that finds the lock taken waits,
 * then finds its ranges already taken and applied by the first — which is
 * why a fence may return as soon as it has passed through the lock.
 */
int domain_sync_locked(struct iovt_domain *d, struct sync_scratch *s, struct range_set *todo,
		       bool *retry_left)
{
	int rc = 0;

	if (d->dead)
		goto out;
	pthread_mutex_lock(&d->pending_lock);
	range_set_take(todo, &d->pending);
	pthread_mutex_unlock(&d->pending_lock);

	if (d->retry.all)
		range_set_add_all(todo);
	for (size_t i = 0; i < d->retry.n && !todo->all; i++)
		range_set_add(todo, d->retry.r[i].first, d->retry.r[i].last);
	range_set_clear(&d->retry);
	if (range_set_empty(todo))
		goto out;

	rc = notify_raw(d, todo);
	if (d->map_notifier) {
		struct sync_target t;
		struct sync_stats st = { 0 };
		struct range all = { 0, domain_top(d) };
		domain_sync_target(d, &t);
		int src = todo->all ? sync_ranges(&t, &all, 1, s, &st, &d->retry)
				    : sync_ranges(&t, todo->r, todo->n, s, &st, &d->retry);
		domain_fold_stats(d, &st);
		if (src && !rc)
			rc = src;
		if (!range_set_empty(&d->retry))
			domain_mark_dirty(d); /* iovt_fence retries it */
	}
	range_set_clear(todo);
out:
	if (retry_left)
		*retry_left = !range_set_empty(&d->retry);
	return rc;
}

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

static void untouch_all(struct drain_state *ds)
{
	for (size_t i = 0; i < ds->touched.n; i++)
		ds->touched_bits[ds->touched.v[i] >> 6] = 0;
	vec_clear(&ds->touched);
	ds->touched_all = false;
}

/* A fence item: sync what this queue touched, then publish its ticket. Outside any read-side section. */
static void apply_fence(struct iovt_queue *q, uint64_t ticket, bool inline_fence)
{
	struct iovt_engine *e = q->engine;
	struct drain_state *ds = &q->drain;
	int err = 0;

	IOVT_PROBE1(fence_begin, ticket);
	if (ds->touched_all) {
		/* After a global invalidation (rare): every domain, one read-side
		 * section for the walk over the table. */
		struct cds_lfht_iter it;
		struct cds_lfht_node *node;
		untouch_all(ds);
		iovt_rcu_read_lock();
		cds_lfht_for_each(e->domains, &it, node) {
			struct iovt_domain *d = caa_container_of(node, struct iovt_domain, hnode);
			bool retry;
			int rc = domain_sync(d, &ds->scratch, &ds->todo, &retry);
			if (rc && !err)
				err = rc;
			if (retry)
				touch(ds, d->did); /* this queue's next fence retries it */
		}
		iovt_rcu_read_unlock();
	} else {
		size_t n = ds->touched.n;
		for (size_t i = 0; i < n; i++) {
			uint16_t did = ds->touched.v[i];
			ds->touched_bits[did >> 6] &= ~(1ull << (did & 63));
			struct iovt_domain *d = domain_sync_lock(e, did);
			if (!d)
				continue;
			bool retry;
			int rc = domain_sync_locked(d, &ds->scratch, &ds->todo, &retry);
			pthread_mutex_unlock(&d->sync_lock);
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
	unsigned n, psi, dsi;
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
	g->d = NULL;
	g->n = g->psi = g->dsi = 0;
	g->all = false;
}

static void gather_item(struct iovt_queue *q, struct gather *g, const struct intake_item *it)
{
	if (!g->d || g->did != it->did) {
		gather_flush(g);
		struct iovt_domain *d = iovt_domain_lookup(q->engine, it->did);
		if (!d) {
			/* Destroyed between post and drain: the host's own race. */
			ENGINE_STAT_ADD(q->engine, errors[IOVT_ERR_UNKNOWN_DOMAIN], 1);
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
		if (rc && !first_err)
			first_err = rc;
	}
	cds_wfcq_destroy(&h, &t);
	IOVT_PROBE1(fence_end, first_err);
	pthread_mutex_unlock(&e->control_lock);
	return first_err;
}
