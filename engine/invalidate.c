/* SPDX-License-Identifier: MIT */
/*
 * Intake of invalidations and the fence that applies them.
 *
 * Producers (vCPU threads) only touch the target domain's pending set under
 * its own lock, and push the domain once onto the engine's wait-free dirty
 * queue (liburcu wfcqueue). The fence takes the control lock, splices the
 * dirty queue and syncs each domain found there.
 */
#include <errno.h>

#include "common/probes.h"
#include "common/rcu.h"
#include "engine_internal.h"

void domain_sync_target(struct iovt_domain *d, struct sync_target *t)
{
	struct iovt_engine *e = d->engine;
	*t = (struct sync_target){
		.ram = e->ram,
		.tree = d->tree,
		.sink = d->map_notifier ? &d->map_notifier->sink : NULL,
		.walk = {
			.root_gpa = d->root_gpa,
			.addr_width = d->addr_width,
			.host_width = e->cfg.host_addr_width,
			.allow_2m = d->allow_2m,
			.allow_1g = d->allow_1g,
			.budget = e->cfg.walk_budget,
		},
		.max_extents = e->cfg.max_extents_per_domain,
	};
}

void domain_fold_stats(struct iovt_domain *d, const struct sync_stats *st)
{
	STAT_ADD(d, ranges, st->windows);
	STAT_ADD(d, ptes, st->ptes);
	STAT_ADD(d, map_calls, st->map_calls);
	STAT_ADD(d, unmap_calls, st->unmap_calls);
	STAT_ADD(d, pages_mapped, st->pages_mapped);
	STAT_ADD(d, pages_unmapped, st->pages_unmapped);
	for (int k = 0; k < IOVT_ERR_KIND_COUNT; k++)
		if (st->errors[k])
			STAT_ADD(d, errors[k], st->errors[k]);
}

/* Queues the domain for the next fence, once. */
void domain_mark_dirty(struct iovt_domain *d)
{
	if (!atomic_exchange_explicit(&d->queued, 1, memory_order_acq_rel)) {
		/* enqueue does not clear `next`: a node dequeued before must be reset. */
		cds_wfcq_node_init(&d->dirty);
		cds_wfcq_enqueue(&d->engine->dirty_head, &d->engine->dirty_tail, &d->dirty);
	}
}

/* Takes the domain off the dirty queue (control lock: no fence runs). */
void domain_unqueue(struct iovt_domain *d)
{
	struct iovt_engine *e = d->engine;
	struct cds_wfcq_head h;
	struct cds_wfcq_tail t;
	struct cds_wfcq_node *node;

	if (!atomic_load(&d->queued))
		return;
	cds_wfcq_init(&h, &t);
	cds_wfcq_splice_blocking(&h, &t, &e->dirty_head, &e->dirty_tail);
	while ((node = cds_wfcq_dequeue_blocking(&h, &t))) {
		if (node != &d->dirty) {
			cds_wfcq_node_init(node);
			cds_wfcq_enqueue(&e->dirty_head, &e->dirty_tail, node);
		}
	}
	cds_wfcq_destroy(&h, &t);
	atomic_store(&d->queued, 0);
}

static void engine_error(struct iovt_engine *e, enum iovt_err_kind k)
{
	atomic_fetch_add_explicit(&e->stats.errors[k], 1, memory_order_relaxed);
}

/*
 * Adds [first, last] (or everything) to the domain's pending set. Never
 * fails: an allocation failure inside the set widens it to a DSI, so an
 * invalidation is never lost.
 */
static void post(struct iovt_domain *d, uint64_t first, uint64_t last, bool all)
{
	pthread_mutex_lock(&d->pending_lock);
	if (all)
		range_set_add_all(&d->pending);
	else
		range_set_add(&d->pending, first, last);
	pthread_mutex_unlock(&d->pending_lock);
	domain_mark_dirty(d);
}

int iovt_invalidate_psi(struct iovt_engine *e, uint16_t did, uint64_t addr, unsigned am, bool ih)
{
	(void)ih;
	iovt_rcu_read_lock();
	struct iovt_domain *d = iovt_domain_lookup(e, did);
	int rc = 0;
	if (!d) {
		engine_error(e, IOVT_ERR_UNKNOWN_DOMAIN);
		rc = -ENOENT;
	} else if (am > IOVT_PSI_MAX_AM || addr > domain_top(d)) {
		STAT_ADD(d, errors[IOVT_ERR_BAD_INVALIDATION], 1);
		rc = -EINVAL;
	} else {
		uint64_t span = IOVT_PAGE_SIZE << am;
		uint64_t first = addr & ~(span - 1);
		uint64_t last = first + (span - 1);
		if (last > domain_top(d) || last < first)
			last = domain_top(d);
		/* Address bits below the mask are ignored, as the hardware does:
		 * an unaligned PSI is served as the aligned block containing addr. */
		IOVT_PROBE3(psi, did, first, last);
		STAT_ADD(d, invalidations, 1);
		STAT_ADD(d, psi, 1);
		post(d, first, last, false);
	}
	iovt_rcu_read_unlock();
	return rc;
}

int iovt_invalidate_dsi(struct iovt_engine *e, uint16_t did)
{
	iovt_rcu_read_lock();
	struct iovt_domain *d = iovt_domain_lookup(e, did);
	int rc = 0;
	if (!d) {
		engine_error(e, IOVT_ERR_UNKNOWN_DOMAIN);
		rc = -ENOENT;
	} else {
		IOVT_PROBE1(dsi, did);
		STAT_ADD(d, invalidations, 1);
		STAT_ADD(d, dsi, 1);
		post(d, 0, 0, true);
	}
	iovt_rcu_read_unlock();
	return rc;
}

int iovt_invalidate_global(struct iovt_engine *e)
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *node;

	atomic_fetch_add_explicit(&e->stats.invalidations, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&e->stats.global, 1, memory_order_relaxed);
	iovt_rcu_read_lock();
	cds_lfht_for_each(e->domains, &it, node)
		post(caa_container_of(node, struct iovt_domain, hnode), 0, 0, true);
	iovt_rcu_read_unlock();
	return 0;
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

/* Syncs one domain's pending work. Control lock held. */
static int sync_domain(struct iovt_domain *d, struct range_set *todo)
{
	struct iovt_engine *e = d->engine;
	int rc = 0;

	atomic_store_explicit(&d->queued, 0, memory_order_release);
	pthread_mutex_lock(&d->pending_lock);
	range_set_take(todo, &d->pending);
	pthread_mutex_unlock(&d->pending_lock);

	/* Spans that failed last time are retried with the new work. */
	if (d->retry.all)
		range_set_add_all(todo);
	for (size_t i = 0; i < d->retry.n && !todo->all; i++)
		range_set_add(todo, d->retry.r[i].first, d->retry.r[i].last);
	range_set_clear(&d->retry);
	if (range_set_empty(todo))
		return 0;

	rc = notify_raw(d, todo);
	if (d->map_notifier) {
		struct sync_target t;
		struct sync_stats st = { 0 };
		struct range all = { 0, domain_top(d) };
		domain_sync_target(d, &t);
		int src = todo->all ? sync_ranges(&t, &all, 1, &e->scratch, &st, &d->retry)
				    : sync_ranges(&t, todo->r, todo->n, &e->scratch, &st, &d->retry);
		domain_fold_stats(d, &st);
		if (src && !rc)
			rc = src;
		if (!range_set_empty(&d->retry))
			domain_mark_dirty(d); /* the next fence retries */
	}
	range_set_clear(todo);
	return rc;
}

int iovt_fence(struct iovt_engine *e)
{
	struct cds_wfcq_head h;
	struct cds_wfcq_tail t;
	struct cds_wfcq_node *node;
	struct range_set todo;
	int first_err = 0;

	range_set_init(&todo, 0);
	pthread_mutex_lock(&e->control_lock);
	atomic_fetch_add_explicit(&e->stats.fences, 1, memory_order_relaxed);
	IOVT_PROBE1(fence_begin, 0);
	cds_wfcq_init(&h, &t);
	cds_wfcq_splice_blocking(&h, &t, &e->dirty_head, &e->dirty_tail);
	while ((node = cds_wfcq_dequeue_blocking(&h, &t))) {
		struct iovt_domain *d = caa_container_of(node, struct iovt_domain, dirty);
		int rc = sync_domain(d, &todo);
		if (rc && !first_err)
			first_err = rc;
	}
	cds_wfcq_destroy(&h, &t);
	IOVT_PROBE1(fence_end, first_err);
	pthread_mutex_unlock(&e->control_lock);
	range_set_free(&todo);
	return first_err;
}
