/* SPDX-License-Identifier: MIT */
/*
 * The simple intake (iovt_invalidate_*, iovt_fence) on top of the queues:
 * each calling thread posts to its own implicit queue, and iovt_fence drains
 * every queue and syncs every dirty domain (engine/intake/drain.c).
 */
#include <errno.h>
#include <sched.h>

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
		.capped = &d->capped,
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

/*
 * Queues the domain for the next iovt_fence, once. The queue holds a
 * reference (the caller holds one, or is in a read-side section that found
 * the domain): a domain destroyed meanwhile stays allocated until iovt_fence
 * or engine destroy takes it off and puts it.
 */
void domain_mark_dirty(struct iovt_domain *d)
{
	if (atomic_load_explicit(&d->queued, memory_order_relaxed) ||
	    atomic_load_explicit(&d->dead, memory_order_relaxed))
		return;
	if (!domain_tryget(d))
		return; /* being freed: nothing left to apply */
	if (!atomic_exchange_explicit(&d->queued, 1, memory_order_acq_rel)) {
		/* enqueue does not clear `next`: a node dequeued before must be reset. */
		cds_wfcq_node_init(&d->dirty);
		cds_wfcq_enqueue(&d->engine->dirty_head, &d->engine->dirty_tail, &d->dirty);
	} else {
		domain_put(d);
	}
}

/*
 * The dirty queue's consumer side (control lock: the only consumer). An
 * enqueuer between its tail exchange and its link store makes liburcu's
 * blocking splice/dequeue spin and then sleep 10 ms in poll(); a drainer
 * preempted there must not cost iovt_fence that. Yield instead: the link
 * store is the enqueuer's very next instruction.
 */
void dirty_take_all(struct iovt_engine *e, struct cds_wfcq_head *h, struct cds_wfcq_tail *t)
{
	cds_wfcq_init(h, t);
	while (__cds_wfcq_splice_nonblocking(h, t, &e->dirty_head, &e->dirty_tail) ==
	       CDS_WFCQ_RET_WOULDBLOCK)
		sched_yield();
}

struct cds_wfcq_node *dirty_next(struct cds_wfcq_head *h, struct cds_wfcq_tail *t)
{
	struct cds_wfcq_node *node;
	while ((node = __cds_wfcq_dequeue_nonblocking(h, t)) == CDS_WFCQ_WOULDBLOCK)
		sched_yield();
	return node;
}

/*
 * Without memory for the thread's queue, the invalidation goes straight to
 * the domain's pending set (a drainer's lock, briefly): never lost.
 */
static int post_direct(struct iovt_engine *e, const struct iovt_inval *v)
{
	int rc = 0;
	iovt_rcu_read_lock();
	struct iovt_domain *d = domain_find_rcu(e, v->did);
	if (v->kind == IOVT_INVAL_GLOBAL) {
		ENGINE_STAT_ADD(e, invalidations, 1);
		ENGINE_STAT_ADD(e, global, 1);
		domains_pend_all(e);
	} else if (!d) {
		ENGINE_STAT_ADD(e, errors[IOVT_ERR_UNKNOWN_DOMAIN], 1);
		rc = -ENOENT;
	} else if (v->kind == IOVT_INVAL_DSI) {
		STAT_ADD(d, invalidations, 1);
		STAT_ADD(d, dsi, 1);
		domain_add_pending(d, 0, 0, true);
	} else if (v->am > IOVT_PSI_MAX_AM || v->addr > domain_top(d)) {
		STAT_ADD(d, errors[IOVT_ERR_BAD_INVALIDATION], 1);
		rc = -EINVAL;
	} else {
		struct range b = psi_block(v->addr, v->am, domain_top(d));
		STAT_ADD(d, invalidations, 1);
		STAT_ADD(d, psi, 1);
		if (v->ih)
			STAT_ADD(d, ih, 1);
		domain_add_pending(d, b.first, b.last, false);
	}
	iovt_rcu_read_unlock();
	return rc;
}

static int post_one(struct iovt_engine *e, const struct iovt_inval *v)
{
	struct iovt_queue *q = thread_queue(e);
	return q ? iovt_queue_post(q, v, 1) : post_direct(e, v);
}

int iovt_invalidate_psi(struct iovt_engine *e, uint16_t did, uint64_t addr, unsigned am, bool ih)
{
	struct iovt_inval v = { .addr = addr, .did = did, .kind = IOVT_INVAL_PSI,
				.am = am > 255 ? 255 : (uint8_t)am, .ih = ih };
	return post_one(e, &v);
}

int iovt_invalidate_dsi(struct iovt_engine *e, uint16_t did)
{
	struct iovt_inval v = { .did = did, .kind = IOVT_INVAL_DSI };
	return post_one(e, &v);
}

int iovt_invalidate_global(struct iovt_engine *e)
{
	struct iovt_inval v = { .kind = IOVT_INVAL_GLOBAL };
	return post_one(e, &v);
}

int iovt_fence(struct iovt_engine *e)
{
	return engine_fence_all(e);
}
