/* SPDX-License-Identifier: MIT */
/*
 * A domain's lifetime: the DID table, references, the dirty queue.
 *
 * Rules (ARCHITECTURE.md, "Lifetimes and locks"):
 *  - found lock-free under RCU (domain_find_rcu: no reference, valid until
 *    the read-side section ends), or with a reference (domain_get_did,
 *    domain_tryget) that outlives the section;
 *  - freed by call_rcu after the last domain_put, so a finder still inside
 *    its section may read it, and tryget fails once the count is 0;
 *  - the dirty queue holds a reference while the domain is on it.
 * Nothing here takes a lock or waits for a grace period.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>

#include "common/rcu.h"
#include "domain/domain.h"

static int match_did(struct cds_lfht_node *node, const void *key)
{
	const struct iovt_domain *d = caa_container_of(node, struct iovt_domain, hnode);
	iovt_tsan_consume(d); /* liburcu published it: TSan cannot see that edge */
	return d->did == *(const uint16_t *)key;
}

static unsigned long hash_did(uint16_t did)
{
	/* Fibonacci hashing spreads dense DIDs over the buckets. */
	return (unsigned long)(did * 0x9E3779B97F4A7C15ull);
}

/* The domain with that DID; caller in a read-side section, no reference. */
struct iovt_domain *domain_find_rcu(struct iovt_engine *e, uint16_t did)
{
	struct iovt_domain *_Atomic *page = atomic_load_explicit(&e->did_dir[did >> 8], memory_order_acquire);
	if (!page)
		return NULL;
	/* acquire pairs with the release store of domain_table_add: the domain's
	 * fields are initialised before it can be found (what rcu_dereference
	 * gives, spelled so that TSan sees it) */
	return atomic_load_explicit(&page[did & 255], memory_order_acquire);
}

bool domain_tryget(struct iovt_domain *d)
{
	uint32_t r = atomic_load_explicit(&d->refs, memory_order_relaxed);
	do {
		if (!r)
			return false; /* the last holder let go: it is being freed */
	} while (!atomic_compare_exchange_weak_explicit(&d->refs, &r, r + 1, memory_order_acquire,
							memory_order_relaxed));
	return true;
}

/* Domain objects of the process not yet freed (iovt_stats.domain_objects).
 * Process-wide: a domain may outlive its engine (a reference put late). */
static _Atomic uint64_t domain_objects;

uint64_t domain_objects_now(void)
{
	return atomic_load_explicit(&domain_objects, memory_order_relaxed);
}

void domain_free(struct iovt_domain *d)
{
	range_set_free(&d->pending);
	range_set_free(&d->retry);
	range_set_free(&d->capped);
	range_set_free(&d->cut);
	range_set_free(&d->cut_prev);
	iotlb_free(&d->iotlb);
	pthread_mutex_destroy(&d->pending_lock);
	free(d);
}

static void domain_free_rcu(struct rcu_head *h)
{
	atomic_fetch_sub_explicit(&domain_objects, 1, memory_order_relaxed);
	iovt_rcu_callback_enter();
	/* no reader left: a grace period after the last put */
	domain_free(caa_container_of(h, struct iovt_domain, rcu));
}

void domain_put(struct iovt_domain *d)
{
	/* Release: every use of d by this holder happens before the free. The
	 * free itself waits a grace period: lock-free finders (drainers, the
	 * producers' width check) may still be looking at it. */
	if (atomic_fetch_sub_explicit(&d->refs, 1, memory_order_acq_rel) == 1)
		iovt_call_rcu(&d->rcu, domain_free_rcu);
}

struct iovt_domain *domain_get_did(struct iovt_engine *e, uint16_t did)
{
	iovt_rcu_read_lock();
	struct iovt_domain *d = domain_find_rcu(e, did);
	if (d && !domain_tryget(d))
		d = NULL;
	iovt_rcu_read_unlock();
	return d;
}

/* Links a new domain into the DID table: -EEXIST if the DID is taken. Control lock. */
int domain_table_add(struct iovt_engine *e, struct iovt_domain *d)
{
	/* The page first: once in the hash table the domain may be seen. */
	struct iovt_domain *_Atomic *page = atomic_load_explicit(&e->did_dir[d->did >> 8], memory_order_relaxed);
	if (!page) {
		page = calloc(256, sizeof(*page));
		if (!page)
			return -ENOMEM;
		atomic_store_explicit(&e->did_dir[d->did >> 8], page, memory_order_release);
	}
	iovt_tsan_publish(d);
	atomic_fetch_add_explicit(&domain_objects, 1, memory_order_relaxed); /* undone if refused */
	iovt_rcu_read_lock();
	struct cds_lfht_node *got =
		cds_lfht_add_unique(e->domains, hash_did(d->did), match_did, &d->did, &d->hnode);
	iovt_rcu_read_unlock();
	if (got != &d->hnode) {
		atomic_fetch_sub_explicit(&domain_objects, 1, memory_order_relaxed);
		return -EEXIST;
	}
	atomic_store_explicit(&page[d->did & 255], d, memory_order_release);
	return 0;
}

/* Unlinks a domain from both tables (control lock); finders inside a
 * read-side section may still hold it (freed a grace period after the last put). */
void domain_table_del(struct iovt_engine *e, struct iovt_domain *d)
{
	struct iovt_domain *_Atomic *page = atomic_load_explicit(&e->did_dir[d->did >> 8], memory_order_relaxed);
	if (page && atomic_load_explicit(&page[d->did & 255], memory_order_relaxed) == d)
		atomic_store_explicit(&page[d->did & 255], NULL, memory_order_release);
	iovt_rcu_read_lock();
	cds_lfht_del(e->domains, &d->hnode);
	iovt_rcu_read_unlock();
}

/* Engine destroy: the pages of the DID table (no reader left). */
void domain_table_free(struct iovt_engine *e)
{
	for (unsigned i = 0; i < 256; i++)
		free((void *)atomic_load_explicit(&e->did_dir[i], memory_order_relaxed));
}

/*
 * Queues the domain for the next iovt_fence, once. The queue holds a
 * reference (the caller holds one, or is in a read-side section that found
 * the domain): a domain destroyed meanwhile stays allocated until iovt_fence
 * or engine destroy takes it off and puts it.
 */
void (*domain_test_mark_dirty_gap)(struct iovt_domain *d);

void domain_mark_dirty(struct iovt_domain *d)
{
	struct iovt_engine *e = d->engine;
	/* Acquire: `queued` set by a marker still on its way to the list
	 * (below) is seen with that marker's count in dirty_marking, which
	 * this drainer's flag release then carries to the fences. */
	if (atomic_load_explicit(&d->queued, memory_order_acquire) ||
	    atomic_load_explicit(&d->dead, memory_order_relaxed))
		return;
	if (!domain_tryget(d))
		return; /* being freed: nothing left to apply */
	/* Counted before the exchange (its release orders the two). */
	atomic_fetch_add_explicit(&e->dirty_marking, 1, memory_order_relaxed);
	if (!atomic_exchange_explicit(&d->queued, 1, memory_order_acq_rel)) {
		if (__builtin_expect(domain_test_mark_dirty_gap != NULL, 0))
			domain_test_mark_dirty_gap(d); /* a preemption here (test hook) */
		/* enqueue does not clear `next`: a node dequeued before must be reset. */
		cds_wfcq_node_init(&d->dirty);
		cds_wfcq_enqueue(&e->dirty_head, &e->dirty_tail, &d->dirty);
		/* After the enqueue: a fence that reads 0 here sees the node. */
		atomic_fetch_sub_explicit(&e->dirty_marking, 1, memory_order_release);
	} else {
		atomic_fetch_sub_explicit(&e->dirty_marking, 1, memory_order_release);
		domain_put(d);
	}
}

void engine_wait_dirty_marking(struct iovt_engine *e)
{
	/* A marker is a few instructions from its enqueue and takes no lock
	 * there: only a preemption makes this wait. */
	while (atomic_load_explicit(&e->dirty_marking, memory_order_acquire))
		sched_yield();
}

/*
 * Takes a destroyed domain off the dirty queue and drops the queue's
 * reference (control lock: the queue's only consumer is iovt_fence, which
 * holds it). Without this a host that only ever waits on its own queues
 * (never iovt_fence) would keep every destroyed domain until engine
 * destroy. A drainer that read `dead` just before destroy set it may still
 * queue it once more: that reference goes at the next iovt_fence.
 */
void domain_unqueue(struct iovt_domain *d)
{
	struct iovt_engine *e = d->engine;
	struct __cds_wfcq_head h;
	struct cds_wfcq_tail t;
	struct cds_wfcq_node *node;
	bool found = false;

	if (!atomic_load(&d->queued))
		return;
	/* The other domains are off the list until put back: an iovt_fence
	 * of its own thread's work (fence_alone) must not take the list's
	 * emptiness for "nothing pending" meanwhile (control_lock held). */
	bool moving = control_move_begin(e);
	dirty_take_all(e, &h, &t);
	while ((node = dirty_next(&h, &t))) {
		if (node == &d->dirty) {
			found = true;
			continue;
		}
		cds_wfcq_node_init(node);
		cds_wfcq_enqueue(&e->dirty_head, &e->dirty_tail, node);
	}
	control_move_end(e, moving);
	if (found) {
		atomic_store(&d->queued, 0);
		domain_put(d);
	}
}

/* Engine destroy (nothing else runs): drops the dirty queue's references. */
void dirty_put_all(struct iovt_engine *e)
{
	struct __cds_wfcq_head h;
	struct cds_wfcq_tail t;
	struct cds_wfcq_node *node;

	dirty_take_all(e, &h, &t);
	while ((node = dirty_next(&h, &t))) {
		struct iovt_domain *d = caa_container_of(node, struct iovt_domain, dirty);
		atomic_store(&d->queued, 0);
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
void dirty_take_all(struct iovt_engine *e, struct __cds_wfcq_head *h, struct cds_wfcq_tail *t)
{
	__cds_wfcq_init(h, t); /* no mutex: only this thread uses it */
	while (__cds_wfcq_splice_nonblocking(h, t, &e->dirty_head, &e->dirty_tail) ==
	       CDS_WFCQ_RET_WOULDBLOCK)
		sched_yield();
}

struct cds_wfcq_node *dirty_next(struct __cds_wfcq_head *h, struct cds_wfcq_tail *t)
{
	struct cds_wfcq_node *node;
	while ((node = __cds_wfcq_dequeue_nonblocking(h, t)) == CDS_WFCQ_WOULDBLOCK)
		sched_yield();
	return node;
}
