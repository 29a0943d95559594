/* SPDX-License-Identifier: MIT */
/*
 * The domain room: a domain's lifetime (lifetime.c) and its sync entry
 * (sync_entry.c). Intake (drainers, iovt_fence) and the composition (the
 * public API: engine.c, domain.c, invalidate.c) call down into it; it calls
 * only engine/sync,
 * engine/tree and the sinks — never intake.
 *
 * Synchronization table (caller's context → what the function may do):
 *
 *   function                 read side?  locks held on entry   waits for
 *   domain_find_rcu          required    any                   nothing
 *   domain_tryget            required*   any                   nothing
 *   domain_get_did           no          any                   nothing
 *   domain_put               either      any                   nothing (call_rcu)
 *   domain_mark_dirty        either*     any                   nothing
 *   domain_pend/_add_pending either*     not pending_lock      pending_lock
 *   domain_sync_lock         no          none of d's           sync_lock
 *   domain_sync_trylock_rcu  required    none of d's           nothing (a try)
 *   domain_sync_hold_rcu     required    none of d's           nothing (a try)
 *   domain_sync[_locked]     no          [sync_lock]           sync/pending_lock, sinks
 *   domain_ram_purge         no          control_lock          sync_lock, sinks
 *   (* or the caller holds a reference)
 *
 * No function here waits for a grace period; none waits for a mutex inside a
 * read-side section (domain_sync_trylock_rcu only tries one).
 */
#ifndef IOVT_DOMAIN_DOMAIN_H
#define IOVT_DOMAIN_DOMAIN_H

#include "engine_internal.h"

/* A node of the DID table as a domain (an iteration under RCU). */
static inline struct iovt_domain *domain_of_node(struct cds_lfht_node *node)
{
	struct iovt_domain *d = caa_container_of(node, struct iovt_domain, hnode);
	iovt_tsan_consume(d); /* published by liburcu: TSan cannot see that edge */
	return d;
}

/* Lifetime (lifetime.c). */
struct iovt_domain *domain_find_rcu(struct iovt_engine *e, uint16_t did); /* no reference */
bool domain_tryget(struct iovt_domain *d);     /* +1 unless already 0 */
void domain_put(struct iovt_domain *d);        /* -1; at 0 freed after a grace period */
struct iovt_domain *domain_get_did(struct iovt_engine *e, uint16_t did); /* +1 or NULL */
int domain_table_add(struct iovt_engine *e, struct iovt_domain *d);     /* -EEXIST, -ENOMEM; control lock */
void domain_table_del(struct iovt_engine *e, struct iovt_domain *d);    /* control lock */
void domain_table_free(struct iovt_engine *e);                          /* engine destroy */
uint64_t domain_objects_now(void);             /* iovt_stats.domain_objects */
/* The last IOVA of the domain's width. */
static inline uint64_t domain_top(const struct iovt_domain *d) { return (1ull << d->addr_width) - 1; }
void domain_mark_dirty(struct iovt_domain *d);  /* queue for the next iovt_fence (+1 ref) */
/* Until no thread is inside domain_mark_dirty on its way to the list (a
 * fence's wait before it looks at the list; engine_internal.h,
 * dirty_marking). */
void engine_wait_dirty_marking(struct iovt_engine *e);
/* Orphans (domain.c): unmaps what each still holds into guest RAM region
 * `region` (iovt_guest_ram_remove, control lock, after its grace period);
 * 0 or the first refusal's errno. */
int engine_orphans_purge(struct iovt_engine *e, uint32_t region);
/* Engine destroy: every orphan freed, its sink's destroy called. */
void engine_orphans_free(struct iovt_engine *e);
/* Test hook: called between a mark's `queued` exchange and its enqueue. */
extern void (*domain_test_mark_dirty_gap)(struct iovt_domain *d);
void domain_free(struct iovt_domain *d);        /* the memory: never published, or no reader left */
void domain_unqueue(struct iovt_domain *d);     /* destroy: off the dirty queue (control lock) */
void dirty_put_all(struct iovt_engine *e);      /* engine destroy: the queue's references */
void dirty_take_all(struct iovt_engine *e, struct __cds_wfcq_head *h, struct cds_wfcq_tail *t);
struct cds_wfcq_node *dirty_next(struct __cds_wfcq_head *h, struct cds_wfcq_tail *t); /* NULL: empty */

/* Sync entry (sync_entry.c). */
void domain_sync_target(struct iovt_domain *d, struct sync_target *t);
void domain_fold_stats(struct iovt_domain *d, struct sync_stats *st); /* and zeroes *st */
void domain_iotlb_flush(struct iovt_domain *d); /* sync_lock held: counted, table drops too */
void domain_add_pending(struct iovt_domain *d, uint64_t first, uint64_t last, bool all);
/* Invalidations accepted for one domain: their ranges (or everything) and
 * their counts, as a drainer gathers them (or one legacy post). */
struct pend_batch {
	const struct range *r;
	unsigned n;
	bool all;
	unsigned psi, dsi, ih;
};
/* Adds b's ranges to the pending set and counts them under pending_lock,
 * which owns the intake counters; queues d for iovt_fence. */
void domain_pend(struct iovt_domain *d, const struct pend_batch *b);
/* domain_sync_locked, adding b's ranges to what it takes from the pending
 * set instead of going through it (a fence's own invalidations: the inline
 * drainer's fast path). b is counted by the sync_lock holder (carried_*);
 * pending_lock is taken only when other drainers left ranges (pending_any).
 * b may be NULL. */
int domain_sync_locked_carry(struct iovt_domain *d, struct sync_scratch *s, struct range_set *todo,
			     bool *retry_left, const struct pend_batch *b);
/* Destroy: moves d's counters into the engine's (sync_lock held, d dead). */
void domain_fold_into_engine(struct iovt_domain *d);

/* sync_lock held, and a reference when *ref */
struct iovt_domain *domain_sync_lock(struct iovt_engine *e, uint16_t did, bool *ref);
void domain_sync_unlock(struct iovt_domain *d, bool ref); /* unlock; -1 ref when ref */
/* In a read-side section, d found there: takes sync_lock if that needs no
 * wait and d is alive — and then d stays allocated without a reference
 * until domain_sync_unlock(d, false), after the section ends. */
bool domain_sync_trylock_rcu(struct iovt_domain *d);
/* Either of the two: the lock by a try, else a reference (*ref); false if
 * d is being freed. Read-side section, d found there. */
bool domain_sync_hold_rcu(struct iovt_domain *d, bool *ref);
bool domain_spans_left(const struct iovt_domain *d); /* sync_lock held */
int domain_sync_locked(struct iovt_domain *d, struct sync_scratch *s, struct range_set *todo,
		       bool *retry_left);
int domain_sync(struct iovt_domain *d, struct sync_scratch *s, struct range_set *todo,
		bool *retry_left);
int domain_sync_all_locked(struct iovt_domain *d, struct sync_scratch *s, struct range_set *todo);
int domain_ram_purge(struct iovt_domain *d, uint32_t region, struct sync_scratch *s);

/*
 * sync_lock for a control call (destroy, detach, attach, set_root, RAM
 * purge) or for a drainer. A mutex hands itself to whoever asks first after
 * an unlock, and a producer that fences back to back asks again within
 * nanoseconds: under a fence storm a control call could wait for seconds
 * (measured: a RAM removal got sync_lock 1-3 times in 3 s against one
 * producer). Drainers therefore let a waiting control call in first; the
 * wait ends as soon as the control call holds the lock.
 */
void domain_lock_control(struct iovt_domain *d);
void domain_lock_drainer(struct iovt_domain *d);

/* Composition (domain.c): engine destroy frees notifiers and tree, no sink called. */
void domain_teardown(struct iovt_domain *d);

#endif
