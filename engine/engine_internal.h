/* SPDX-License-Identifier: MIT */
/* The composition's private structures: engine, domains, notifiers. */
#ifndef IOVT_ENGINE_INTERNAL_H
#define IOVT_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>

#include "common/rcu.h"
#include "common/synclock.h"

#include <urcu/list.h>
#include <urcu/rculfhash.h>
#include <urcu/wfcqueue.h>

#include "iovt.h"
#include "intake/ring.h"
#include "sync/sync.h"
#include "iotlb/iotlb.h"

/*
 * Counters, read with relaxed atomic loads so that a snapshot needs no lock.
 * Who writes which (a read-modify-write costs ~20 cycles, a fence path used
 * to make ~35 of them; ARCHITECTURE.md "Counters"):
 *  - a domain's sync counters (ranges, ptes, map/unmap/raw_unmap calls,
 *    pages_*, retry_*, iotlb_invalidated, ram_purged): its sync_lock holder,
 *    with a plain load + store (DSTAT_ADD_OWNED);
 *  - a domain's intake counters (invalidations, psi, dsi, ih): the
 *    pending_lock holder, load + store (domain_pend); those a fence carried
 *    into its sync (carried_*): the sync_lock holder;
 *  - both only in the domain: the engine's figure is its own counters plus
 *    every live domain's plus every queue's (iovt_stats_get); a destroyed
 *    domain's are folded into the engine's under both locks (stats_folded);
 *  - errors[] and the readers' counters (translate, IOTLB): atomic adds to
 *    the domain and the engine (rare, or written by many readers at once);
 *  - a queue's fence counters: its drain-flag holder (struct queue_counters).
 */
struct stat_counters {
	_Atomic uint64_t invalidations, psi, dsi, global, fences;
	_Atomic uint64_t ranges, ptes, map_calls, unmap_calls, raw_unmap_calls;
	_Atomic uint64_t pages_mapped, pages_unmapped;
	_Atomic uint64_t queue_items, queue_full_waits, fences_inline, fences_drained;
	_Atomic uint64_t ih, stale_domain, retry_ranges, retry_deferred, ram_purged;
	_Atomic uint64_t iotlb_invalidated; /* misses, evictions, hits: counted by the IOTLB itself */
	_Atomic uint64_t translate_noent, translate_eacces, translate_fault;
	_Atomic uint64_t pending_widened; /* STAT_ADD: domain and engine (rare) */
	/* Invalidations a fence carried straight into its sync (the inline
	 * drainer's PSI + wait): counted by the sync_lock holder, not under
	 * pending_lock, and added to invalidations/psi/dsi/ih when read. */
	_Atomic uint64_t carried_invalidations, carried_psi, carried_dsi, carried_ih;
	_Atomic uint64_t errors[IOVT_ERR_KIND_COUNT];
};

struct iovt_notifier {
	struct cds_list_head link;    /* domain->notifiers; an orphan's: engine->orphans */
	struct iovt_domain *domain;   /* NULL once an orphan */
	unsigned flags;
	struct iovt_sink sink;
	/* An orphan (a MAP notifier whose sink refused UNMAPs at its detach
	 * or its domain's destroy): the extents it may still hold (control
	 * lock). See domain.c, "Orphans". */
	struct shadow_tree *orphan_tree;  /* the extents it refused (NULL: none) */
	/* Without memory to record a refusal, nothing more was asked: the
	 * retired record, whose extents from orphan_from on it still holds
	 * (those below it are gone, or in orphan_tree: removed from this one
	 * at the first purge, once no reader can hold it, and orphan_from
	 * then 0). NULL: none. */
	struct shadow_tree *orphan_rest;
	uint64_t orphan_from;
};

/*
 * A domain's lifetime (ARCHITECTURE.md, "Lifetimes and locks"):
 *  - `refs` counts holders: the creator's handle (consumed by destroy), each
 *    iovt_domain_lookup/get, a drainer between lookup and unlock, and the
 *    dirty queue while the domain is on it. The memory is freed by call_rcu
 *    after the last put, so a reader in a read-side section that found it
 *    in the table may still read it (and tryget fails once refs hit 0).
 *  - `dead` is set by destroy under sync_lock, before it unlinks the
 *    domain: notifiers and tree are gone, every sync and control call on it
 *    is a no-op or -ENODEV from then on.
 */
struct iovt_domain {
	struct cds_lfht_node hnode;   /* engine->domains, keyed by did */
	struct rcu_head rcu;
	_Atomic uint32_t refs;
	_Atomic bool dead;
	struct cds_wfcq_node dirty;   /* engine->dirty queue while pending */
	_Atomic int queued;           /* on the dirty queue (holds a reference) */
	struct iovt_engine *engine;
	struct cds_list_head link;    /* engine->domain_list (control lock) */

	uint16_t did;
	unsigned addr_width;
	bool allow_2m, allow_1g;
	uint64_t root_gpa;

	/* The record of what the MAP sink holds; NULL without a MAP notifier.
	 * Published with rcu_assign for iovt_translate. */
	struct shadow_tree *tree;
	struct iovt_notifier *map_notifier;
	struct cds_list_head notifiers; /* UNMAP-only ones */

	/* Translations for iovt_translate when there is no MAP notifier
	 * (engine/iotlb): filled by readers, dropped by the sync_lock holder. */
	struct iotlb iotlb;
	/* The IOTLB fill's walk parameters but root and range (translate_fill),
	 * set at create: a copy built on the stack at each miss was read back
	 * by iotlb_fill with 16-byte loads over its scalar stores, a failed
	 * store forward per miss. */
	struct vtd_walk_params fill_walk;

	/* Lock order: engine control_lock > a queue's draining flag > sync_lock
	 * > pending_lock. Producers take none of them. */
	struct sync_lock sync_lock;     /* the one thread syncing: tree, sink, retry (common/synclock.h) */
	_Atomic uint32_t control_waiting; /* control calls waiting for sync_lock (domain_lock_control) */
	pthread_mutex_t pending_lock;   /* drainers adding vs the sync taking */
	struct range_set pending;
	/* pending is not empty (written under pending_lock): a sync that reads
	 * false skips pending_lock. Ranges added after that look belong to a
	 * drainer whose own fence syncs the domain after this one (it needs
	 * sync_lock), or to iovt_fence's dirty list. */
	_Atomic bool pending_any;
	struct range_set retry;         /* spans whose sink calls failed (sync_lock) */
	struct range_set capped;        /* spans not mapped for the extent cap (sync_lock) */
	/* Windows the walk budget cut short and a sync put in `retry` (not its
	 * error: earlier windows had spent part of the budget): those of the
	 * last sync (cut_prev) and of this one (cut). One cut again by the next
	 * sync is synced up to the cut and only its rest retried, marked again
	 * (sync.h, GUEST_VIEW_REST; guest_view.c walk_cut_way; sync_lock). */
	struct range_set cut, cut_prev;
	uint64_t retry_cursor, capped_cursor; /* where the next retry starts (sync_lock) */
	/* The iovt_fence (engine fence_seq) whose queue drains last synced it:
	 * written and read only by iovt_fence callers (control_lock). */
	uint64_t fence_synced;

	struct stat_counters stats;
	bool stats_folded;              /* pending_lock: counters moved into the engine's (destroy) */
};

/* A queue's fence counters: written by its drain flag's holder (load + store),
 * summed into the engine's by iovt_stats_get, folded in at queue destroy. */
struct queue_counters {
	_Atomic uint64_t fences_inline, fences_drained, queue_items;
	_Atomic uint64_t fences_alone; /* iovt_fence calls that drained only this queue (fence_alone) */
};

/* What a queue's drainer needs; used only by the holder of the queue's flag. */
struct drain_state {
	struct sync_scratch scratch;
	struct range_set todo;
	VEC(uint16_t) touched;          /* DIDs posted to since the last fence */
	uint64_t touched_bits[65536 / 64]; /* the same set: always complete */
	bool touched_all;               /* a global invalidation: every domain */
	bool touched_overflow;          /* the list missed DIDs (no memory): the bits are the set */
	bool global_pending;            /* a global drained, its pass over the domains not made yet */
	struct queue_counters ctr;
	/* The producer drains at its own fence. Apart from the three flags
	 * above: the fence's fast path tests those in one 4-byte load just
	 * after the poster stored this byte, and a load over a narrower
	 * store still in the store buffer waits for it to reach the cache
	 * (perf: ~3% of fence/map_unmap_1 on that load). */
	bool draining_inline;
};

struct iovt_queue {
	struct iovt_engine *engine;
	struct intake_ring *ring;
	unsigned group;
	bool handoff;
	bool implicit;                  /* a thread's queue for iovt_invalidate_* */

	/* Producer side: the one posting thread. */
	alignas(64) uint64_t fences_posted;
	uint64_t posted_since_check;
	uint64_t width_gen;             /* e->domain_gen when the cache was filled */
	uint16_t width_did;
	unsigned width;                 /* 0: cache empty */

	/* Shared. */
	alignas(64) _Atomic int draining;      /* the drain flag: one drainer at a time */
	_Atomic uint32_t drain_wanted;         /* a control path waits for the flag (queue_drain_begin_wait) */
	_Atomic uint64_t fences_done;          /* tickets 1..fences_done have completed */
	_Atomic uint32_t done_word;            /* futex word: bumps with fences_done (not with those the producer drained itself) */
	_Atomic uint32_t waiters;              /* threads asleep on done_word */
	_Atomic int err;                       /* a fence error no fence call returned yet */

	alignas(64) struct drain_state drain;  /* the flag holder's */
};

/* The engine's queues: an array replaced whole on create/destroy (rare), so
 * drainers iterate a stable snapshot under RCU. */
struct queue_table {
	struct rcu_head rcu;
	unsigned n;
	struct iovt_queue *q[];
};

#define IOVT_MAX_WORKERS 64

struct worker {
	alignas(64) _Atomic uint32_t seq;      /* bumped by kicks; futex word */
	_Atomic uint32_t sleeping;
	_Atomic uint32_t naps;         /* idle sleeps ended (white-box tests: it woke) */
	pthread_t thread;
	struct iovt_engine *engine;
	unsigned idx, count;           /* worker idx of count */
};

struct iovt_engine {
	pthread_mutex_t control_lock;   /* control calls and iovt_fence */
	/* Never taken inside a read-side section, and no holder of a lock
	 * below it (sync_lock, pending_lock, a drain flag) waits for it. */
	uint64_t id;                    /* unique in the process: keys thread-local caches */
	struct cds_list_head live_link; /* on the list of live engines (intake/queue.c) */
	_Atomic uint64_t domain_gen;    /* bumped when a domain goes away */
	struct queue_table *queues;     /* every iovt_queue: RCU, replaced whole (queues_lock) */
	/* The queue table's writers: a create takes it alone, a destroy inside
	 * the control lock (lock order: control_lock > queues_lock). Held
	 * around the table's copy only: no sink is ever called under it. */
	pthread_mutex_t queues_lock;
	/* Workers' and lcore pollers' start and stop, never with the control
	 * lock: a worker's exit releases its implicit queue under the control
	 * lock while stop joins it (found by review: a stop joining under the
	 * control lock deadlocked with a worker that had posted from a sink). */
	pthread_mutex_t workers_lock;
	struct iovt_config cfg;
	struct guest_ram *ram;
	struct cds_lfht *domains;       /* every domain, for iteration (RCU) */
	/* DID -> domain for lookups: 256 pages of 256 slots, a page allocated on
	 * its first domain (control lock) and kept until engine destroy; slots
	 * published/cleared with release stores, read under RCU. Two dependent
	 * loads instead of a hash lookup on every drained item and fence. */
	struct iovt_domain *_Atomic *_Atomic did_dir[256];
	struct cds_list_head domain_list;
	/* MAP notifiers detached (or of destroyed domains) whose sinks refused
	 * to drop some mappings: kept, with those extents, until a guest RAM
	 * removal has them unmapped or engine destroy (control lock). */
	struct cds_list_head orphans;
	struct cds_wfcq_head dirty_head;
	struct cds_wfcq_tail dirty_tail;
	struct sync_scratch scratch;    /* control lock */
	struct range_set todo;          /* control lock */
	/* iovt_fence calls so far: written under the control lock by a load
	 * and a store (no locked add per fence), read racily by
	 * iovt_stats_get, which counts them as `fences`. */
	_Atomic uint64_t fence_seq;
	/* Odd while a control-lock holder moves invalidations that fence_alone
	 * cannot see: a locked iovt_fence (from its start: it splices the
	 * dirty list, then syncs what it took), iovt_queue_destroy (the
	 * queue leaves the table before its leftovers reach the pending sets)
	 * or a domain destroy's domain_unqueue (the dirty list taken, the
	 * others put back); +1 at the start and +1 at the end of each move
	 * (control_move_begin/end). fence_alone reads it before and after its
	 * looks and takes the locked way if it was odd or moved: a flag read
	 * last missed a move that ended between its looks and that read
	 * (found by review). Written under the control lock. */
	_Atomic unsigned control_seq;
	/* Threads inside domain_mark_dirty between its `queued` exchange and
	 * the enqueue that follows it. A drainer that finds `queued` set
	 * leaves the domain to the list, and releases its queue's flag: a
	 * fence that then saw that queue idle and the list empty returned
	 * without the drainer's ranges (found by review: a marker holding
	 * no flag and no control lock — a bridge sink's PSI posted from a
	 * control call's sync — preempted there). Both fences wait for this
	 * to be 0 before their look at the list: a marker the drainer saw is
	 * counted here before its exchange, and leaves after its enqueue
	 * (domain_mark_dirty). */
	_Atomic uint32_t dirty_marking;
	_Atomic uint64_t global_passes; /* domains_pend_all's passes (white-box tests) */
	struct stat_counters stats;     /* engine-wide (also for unknown domains) */

	void *ext_pollers;              /* glue.c: libiovt-dpdk's lcore pollers (workers_lock) */
	void (*ext_pollers_stop)(void *set);
	_Atomic unsigned nworkers;      /* running engine workers (kicks read it) */
	_Atomic bool workers_stop;
	struct worker workers[IOVT_MAX_WORKERS];
};

/* The block a PSI names: the 2^am pages aligned on their size that hold
 * addr, clipped to top (am 52 wraps the span to 0: everything). */
static inline struct range psi_block(uint64_t addr, unsigned am, uint64_t top)
{
	uint64_t span = IOVT_PAGE_SIZE << am;
	struct range r = { addr & ~(span - 1), 0 };
	r.last = r.first + (span - 1);
	if (r.last > top || r.last < r.first)
		r.last = top;
	return r;
}
/* Intake (engine/intake/). */
void domains_pend_all(struct iovt_engine *e);  /* a global invalidation; RCU read side */
bool queue_try_drain_begin(struct iovt_queue *q);   /* fails while a control path wants it */
void queue_drain_begin_wait(struct iovt_queue *q);  /* iovt_fence, queue destroy: first in line */
void queue_drain_end(struct iovt_queue *q);
unsigned queue_drain(struct iovt_queue *q, unsigned budget);    /* drain flag held */
/* Drains everything, then applies fence `ticket` as if it had been posted
 * last (the poster's inline fence: no fence item through the ring). The
 * poster holds the drain flag: nothing else enters its ring meanwhile. */
void queue_drain_fence(struct iovt_queue *q, uint64_t ticket);
void queue_kick(struct iovt_queue *q);                          /* wake its worker */
extern long workers_test_idle_ns; /* tests: the workers' idle sleep (0: 50 ms) */
/* tests: called by iovt_workers_start between the threads' start and the
 * publication of their number */
extern void (*workers_test_before_publish)(struct iovt_engine *e);
/* Tests: called by iovt_guest_ram_remove between its grace period and the purge. */
extern void (*engine_test_ram_purging)(void);
void engine_destroy_queues(struct iovt_engine *e);
/* iovt_queue_psi's body: iovt_invalidate_psi posts through it too. */
int queue_post_psi(struct iovt_queue *q, uint16_t did, uint64_t addr, unsigned am, bool ih);
int engine_fence_all(struct iovt_engine *e);                    /* iovt_fence */
/* An invalidation straight into its domain's pending set (no queue): the
 * legacy calls of a thread without a queue (no memory, or inside a sink
 * callback, where none is made). */
int intake_post_direct(struct iovt_engine *e, const struct iovt_inval *v);
/* An accepted item into its domain's pending set (d, NULL when gone) as the
 * drain would gather it (drain.c): intake_post_direct's, and a full ring's
 * rest inside a sink callback. Inside a read-side section. */
struct intake_item;
void pend_item_direct(struct iovt_engine *e, struct iovt_domain *d, const struct intake_item *it);
/* The calling thread's implicit queues (queue.c), most recently used first. */
#define THREAD_QUEUES 4
struct thread_queue_slot {
	uint64_t engine_id; /* 0: free */
	struct iovt_queue *q;
};
extern __thread struct thread_queue_slot thread_queues[THREAD_QUEUES];
struct iovt_queue *thread_queue_find_rest(struct iovt_engine *e); /* slots 1..: to the front */
struct iovt_queue *thread_queue_make(struct iovt_engine *e);      /* the same, else a new one */
/* The implicit queue, or NULL: none made (iovt_fence). */
static inline struct iovt_queue *thread_queue_find(struct iovt_engine *e)
{
	if (__builtin_expect(thread_queues[0].engine_id == e->id, 1))
		return thread_queues[0].q;
	return thread_queue_find_rest(e);
}
/* The implicit queue, made on this thread's first post to e; NULL: no memory. */
static inline struct iovt_queue *thread_queue(struct iovt_engine *e)
{
	if (__builtin_expect(thread_queues[0].engine_id == e->id, 1))
		return thread_queues[0].q;
	return thread_queue_make(e);
}
void engine_live_add(struct iovt_engine *e);    /* iovt_engine_create */
void engine_live_remove(struct iovt_engine *e); /* first thing in iovt_engine_destroy */
void thread_queues_release(void);               /* iovt_thread_unregister */

#define ENGINE_STAT_ADD(e, field, v) \
	atomic_fetch_add_explicit(&(e)->stats.field, (v), memory_order_relaxed)

/*
 * The counters only a domain holds (struct stat_counters' comment): X(its
 * field, the iovt_stats field it adds to). The intake ones are owned by
 * pending_lock, the sync ones by sync_lock. One list for the engine's sum
 * (iovt_stats_get) and the fold at destroy (domain_fold_into_engine).
 */
#define DOMAIN_INTAKE_COUNTERS(X) \
	X(invalidations, invalidations) X(psi, psi) X(dsi, dsi) X(ih, ih)
#define DOMAIN_SYNC_COUNTERS(X)                                                        \
	X(ranges, ranges_coalesced) X(ptes, ptes_walked) X(map_calls, map_calls)        \
	X(unmap_calls, unmap_calls) X(raw_unmap_calls, raw_unmap_calls)                 \
	X(pages_mapped, pages_mapped) X(pages_unmapped, pages_unmapped)                 \
	X(retry_ranges, retry_ranges) X(retry_deferred, retry_deferred)                 \
	X(iotlb_invalidated, iotlb_invalidated) X(ram_purged, ram_purged)                \
	X(carried_invalidations, invalidations) X(carried_psi, psi)                     \
	X(carried_dsi, dsi) X(carried_ih, ih)

/* A counter only one thread writes at a time (the lock that owns it is held):
 * no locked instruction. Readers load it relaxed. */
#define OWNED_ADD(ptr, v) \
	atomic_store_explicit((ptr), atomic_load_explicit((ptr), memory_order_relaxed) + (v), \
			      memory_order_relaxed)
#define DSTAT_ADD_OWNED(d, field, v) OWNED_ADD(&(d)->stats.field, (v))

/* Domain and engine, atomic adds: errors[] and the readers' counters only. */
#define STAT_ADD(d, field, v)                                                               \
	do {                                                                                \
		atomic_fetch_add_explicit(&(d)->stats.field, (v), memory_order_relaxed);     \
		atomic_fetch_add_explicit(&(d)->engine->stats.field, (v), memory_order_relaxed); \
	} while (0)

/* A move of invalidations out of fence_alone's sight (control lock held;
 * see control_seq). begin returns false when one is already under way (the
 * same lock holder, nested: domain_unqueue inside a locked fence), and
 * that one ends it. The odd value is visible before the move's own
 * publication (a release store or an exchange that follows it). */
static inline bool control_move_begin(struct iovt_engine *e)
{
	unsigned v = atomic_load_explicit(&e->control_seq, memory_order_relaxed);
	if (v & 1)
		return false;
	atomic_store_explicit(&e->control_seq, v + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_seq_cst);
	return true;
}

static inline void control_move_end(struct iovt_engine *e, bool began)
{
	if (began)
		atomic_store_explicit(&e->control_seq,
				      atomic_load_explicit(&e->control_seq, memory_order_relaxed) + 1,
				      memory_order_release);
}

#endif
