/* SPDX-License-Identifier: MIT */
/*
 * The producer's side of a queue: checking and posting items, fences and
 * waiting for them, and each thread's implicit queue for iovt_invalidate_*.
 *
 * A producer touches only its own queue: the ring (single producer), its own
 * counters, and — read-only — the engine's domain generation and the worker
 * it may wake. It takes no lock another producer or a drainer holds.
 */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/futex.h"
#include "common/probes.h"
#include "common/rcu.h"
#include "common/sink_call.h"
#include "domain/domain.h"
#include "glue.h"

#define DEFAULT_CAPACITY 4096u
#define MAX_CAPACITY (1u << 24)
#define SPINS_BEFORE_YIELD 128u
#define SPINS_BEFORE_SLEEP 256u

static void queue_table_free_rcu(struct rcu_head *h)
{
	iovt_rcu_callback_enter();
	free(caa_container_of(h, struct queue_table, rcu));
}

/* Publishes a new table: the old one's queues in their order, less `drop`,
 * then `add` at the end (fence_locked walks it by index: drain.c). Under
 * queues_lock. */
static int queue_table_replace(struct iovt_engine *e, struct iovt_queue *add, struct iovt_queue *drop)
{
	struct queue_table *old = e->queues;
	unsigned n = old ? old->n : 0;
	struct queue_table *t = malloc(sizeof(*t) + (n + 1) * sizeof(t->q[0]));
	if (!t)
		return -ENOMEM;
	t->n = 0;
	for (unsigned i = 0; i < n; i++)
		if (old->q[i] != drop)
			t->q[t->n++] = old->q[i];
	if (add)
		t->q[t->n++] = add;
	iovt_rcu_assign(e->queues, t);
	if (old)
		iovt_call_rcu(&old->rcu, queue_table_free_rcu);
	return 0;
}

static void queue_free(struct iovt_queue *q)
{
	q->ring->ops->destroy(q->ring);
	sync_scratch_free(&q->drain.scratch);
	range_set_free(&q->drain.todo);
	vec_free(&q->drain.touched);
	free(q);
}

int iovt_queue_create(struct iovt_engine *e, const struct iovt_queue_config *cfg,
		      struct iovt_queue **out)
{
	struct iovt_queue_config c = cfg ? *cfg : (struct iovt_queue_config){ 0 };
	if (!c.capacity)
		c.capacity = DEFAULT_CAPACITY;
	if (c.capacity < 2 || c.capacity > MAX_CAPACITY) {
		ENGINE_STAT_ADD(e, errors[IOVT_ERR_BAD_ARGUMENT], 1);
		return -EINVAL;
	}
	enum iovt_queue_backend b = c.backend;
	/* rte_ring by default when libiovt-dpdk is loaded (it registers it). */
	struct intake_ring *(*rte_create)(unsigned) = dpdk_glue()->ring_create;
	if (b == IOVT_QUEUE_DEFAULT)
		b = rte_create ? IOVT_QUEUE_RTE_RING : IOVT_QUEUE_WFCQ;

	/* Every -ENOMEM below is counted (errors[NO_MEMORY]): a thread's
	 * first post creates its implicit queue here and reports the failure
	 * to a guest path that may not log it (uncounted until the
	 * twenty-fifth session). */
	struct iovt_queue *q = iovt_aligned_alloc(64, sizeof(*q));
	if (!q) {
		ENGINE_STAT_ADD(e, errors[IOVT_ERR_NO_MEMORY], 1);
		return -ENOMEM;
	}
	memset(q, 0, sizeof(*q));
	switch (b) {
	case IOVT_QUEUE_WFCQ:
		q->ring = intake_ring_wfcq_create(c.capacity);
		break;
	case IOVT_QUEUE_RTE_RING:
		if (!rte_create) {
			free(q);
			ENGINE_STAT_ADD(e, errors[IOVT_ERR_BAD_ARGUMENT], 1);
			return -ENOTSUP;
		}
		q->ring = rte_create(c.capacity);
		break;
	default:
		free(q);
		ENGINE_STAT_ADD(e, errors[IOVT_ERR_BAD_ARGUMENT], 1);
		return -EINVAL;
	}
	if (!q->ring) {
		free(q);
		ENGINE_STAT_ADD(e, errors[IOVT_ERR_NO_MEMORY], 1);
		return -ENOMEM;
	}
	q->engine = e;
	q->group = c.group;
	q->handoff = c.handoff;
	range_set_init(&q->drain.todo, 0);

	/* The table's own lock, not the control lock: a thread's first post
	 * creates its implicit queue here, and that post may come from a sink
	 * callback of a control call or a locked fence holding the control
	 * lock on this very thread (found by review: such a sink deadlocked).
	 * A new queue moves no invalidation, so fence_alone's control_seq has
	 * nothing to see; a destroy takes both locks. */
	pthread_mutex_lock(&e->queues_lock);
	int rc = queue_table_replace(e, q, NULL);
	pthread_mutex_unlock(&e->queues_lock);
	if (rc) {
		queue_free(q);
		ENGINE_STAT_ADD(e, errors[IOVT_ERR_NO_MEMORY], 1); /* the table's copy */
		return rc;
	}
	*out = q;
	return 0;
}

/* A queue's counters as folded into the engine's so far. */
struct queue_counters_snap {
	uint64_t fences_inline, fences_drained, fences_alone, queue_items;
};

/* Adds what c's counters gained since *folded (zero at first) to the
 * engine's, and moves *folded up to them. */
static void queue_counters_fold(struct iovt_engine *e, const struct queue_counters *c,
				struct queue_counters_snap *folded)
{
	const struct queue_counters_snap v = {
		atomic_load(&c->fences_inline), atomic_load(&c->fences_drained),
		atomic_load(&c->fences_alone), atomic_load(&c->queue_items),
	};
	const uint64_t fi = v.fences_inline - folded->fences_inline;
	const uint64_t fd = v.fences_drained - folded->fences_drained;
	ENGINE_STAT_ADD(e, fences, fi + fd + (v.fences_alone - folded->fences_alone));
	ENGINE_STAT_ADD(e, fences_inline, fi);
	ENGINE_STAT_ADD(e, fences_drained, fd);
	ENGINE_STAT_ADD(e, queue_items, v.queue_items - folded->queue_items);
	*folded = v;
}

void iovt_queue_destroy(struct iovt_queue *q)
{
	if (!q)
		return; /* as iovt_engine_destroy(NULL) */
	struct iovt_engine *e = q->engine;

	pthread_mutex_lock(&e->control_lock);
	/* Before q leaves the table: fence_alone must not miss the leftovers
	 * in between. */
	bool moving = control_move_begin(e);
	pthread_mutex_lock(&e->queues_lock);
	while (queue_table_replace(e, NULL, q))
		sched_yield(); /* a table of n - 1 pointers: memory comes back */
	/* Out of the table, iovt_stats_get no longer sums its counters: they
	 * become the engine's now, and what they gain until the end of this
	 * call later (folded at the end only, the engine's fences and
	 * queue_items went back by the queue's whole history while this call
	 * waited for its drainers: found by review). */
	struct queue_counters *c = &q->drain.ctr;
	struct queue_counters_snap folded = { 0 };
	queue_counters_fold(e, c, &folded);
	pthread_mutex_unlock(&e->queues_lock);
	/* Leftovers go to the domains' pending sets; fences in it complete. */
	queue_drain_begin_wait(q);
	queue_drain(q, UINT_MAX);
	queue_drain_end(q);
	/* The leftovers are pending and their domains dirty: visible. */
	control_move_end(e, moving);
	pthread_mutex_unlock(&e->control_lock);
	/* A poller that found q on the list before it left may still hold it. */
	iovt_synchronize_rcu();
	while (atomic_load(&q->draining))
		sched_yield();
	/* What its counters gained since they were folded (the drain above, a
	 * poller that still held it): no drainer is left. */
	queue_counters_fold(e, c, &folded);
	queue_free(q);
}

void engine_destroy_queues(struct iovt_engine *e)
{
	struct queue_table *t = e->queues;
	if (!t)
		return;
	for (unsigned i = 0; i < t->n; i++)
		queue_free(t->q[i]);
	e->queues = NULL;
	free(t); /* the engine's last grace period has passed (iovt_engine_destroy) */
}

/* The domain's address width, cached per queue until a domain goes away. 0: unknown. */
static __attribute__((noinline)) unsigned domain_width_slow(struct iovt_queue *q, uint16_t did,
							    uint64_t gen)
{
	struct iovt_engine *e = q->engine;
	iovt_rcu_read_lock(); /* d may be freed as soon as we leave it */
	struct iovt_domain *d = domain_find_rcu(e, did);
	unsigned w = d ? d->addr_width : 0;
	iovt_rcu_read_unlock();
	if (w) {
		q->width = w;
		q->width_did = did;
		q->width_gen = gen;
	}
	return w;
}

static inline unsigned domain_width(struct iovt_queue *q, uint16_t did)
{
	uint64_t gen = atomic_load_explicit(&q->engine->domain_gen, memory_order_acquire);
	if (__builtin_expect(q->width && q->width_did == did && q->width_gen == gen, 1))
		return q->width;
	return domain_width_slow(q, did, gen);
}

static __attribute__((noinline, cold)) void count_bad(struct iovt_engine *e, uint16_t did)
{
	iovt_rcu_read_lock();
	struct iovt_domain *d = domain_find_rcu(e, did);
	if (d)
		STAT_ADD(d, errors[IOVT_ERR_BAD_INVALIDATION], 1);
	else
		ENGINE_STAT_ADD(e, errors[IOVT_ERR_BAD_INVALIDATION], 1);
	iovt_rcu_read_unlock();
}

static int psi_post(struct iovt_queue *q, uint16_t did, uint64_t addr, unsigned am, bool ih,
		    struct intake_item *out);

/* Checks one invalidation and encodes it. 0, -ENOENT or -EINVAL (counted). */
static int encode(struct iovt_queue *q, const struct iovt_inval *v, struct intake_item *it)
{
	struct iovt_engine *e = q->engine;

	if (__builtin_expect(v->pad[0] | v->pad[1] | v->pad[2], 0)) {
		/* room for later fields: an old caller's zeros must mean "none" */
		ENGINE_STAT_ADD(e, errors[IOVT_ERR_BAD_INVALIDATION], 1);
		return -EINVAL;
	}
	switch (v->kind) {
	case IOVT_INVAL_PSI:
		return psi_post(q, v->did, v->addr, v->am, v->ih, it);
	case IOVT_INVAL_DSI:
		if (!domain_width(q, v->did)) {
			ENGINE_STAT_ADD(e, errors[IOVT_ERR_UNKNOWN_DOMAIN], 1);
			return -ENOENT;
		}
		IOVT_PROBE1(dsi, v->did);
		*it = (struct intake_item){ .did = v->did, .kind = ITEM_DSI };
		return 0;
	case IOVT_INVAL_GLOBAL:
		*it = (struct intake_item){ .kind = ITEM_GLOBAL };
		return 0;
	default:
		ENGINE_STAT_ADD(e, errors[IOVT_ERR_BAD_INVALIDATION], 1);
		return -EINVAL;
	}
}

/*
 * Without memory for the thread's queue, or from inside a sink callback
 * where a queue would have to be made or a full one waited for
 * (common/sink_call.h), the invalidation goes straight to the domain's
 * pending set (a drainer's lock, briefly): never lost; iovt_fence syncs it.
 */
int intake_post_direct(struct iovt_engine *e, const struct iovt_inval *v)
{
	int rc = 0;
	iovt_rcu_read_lock();
	struct iovt_domain *d = domain_find_rcu(e, v->did);
	if (v->kind == IOVT_INVAL_GLOBAL) {
		pend_item_direct(e, NULL, &(struct intake_item){ .kind = ITEM_GLOBAL });
	} else if (!d) {
		ENGINE_STAT_ADD(e, errors[IOVT_ERR_UNKNOWN_DOMAIN], 1);
		rc = -ENOENT;
	} else if (v->kind == IOVT_INVAL_DSI) {
		pend_item_direct(e, d, &(struct intake_item){ .did = v->did, .kind = ITEM_DSI });
	} else if (v->am > IOVT_PSI_MAX_AM || v->addr > domain_top(d)) {
		STAT_ADD(d, errors[IOVT_ERR_BAD_INVALIDATION], 1);
		rc = -EINVAL;
	} else {
		/* encoded as psi_post does: the block's first IOVA */
		struct intake_item it = { .arg = psi_block(v->addr, v->am, UINT64_MAX).first,
					  .did = v->did, .kind = ITEM_PSI, .am = v->am, .ih = v->ih != 0 };
		pend_item_direct(e, d, &it);
	}
	iovt_rcu_read_unlock();
	return rc;
}

/*
 * A full ring inside a sink callback: the rest goes to the pending sets
 * (intake_post_direct). The ring may be the one this very thread is
 * draining for the fence that called the sink, which only it could drain
 * (5000 posts from a sink hung so; found by review), and draining another
 * inline would run syncs inside a sync. A fence item cannot go that way
 * (iovt.h: a sink callback does not post fences): it waits as before.
 */
static unsigned divert_rest(struct iovt_queue *q, const struct intake_item *it, unsigned n,
			    unsigned done)
{
	iovt_rcu_read_lock();
	for (; done < n && it[done].kind != ITEM_FENCE; done++) /* checked at post: accepted */
		pend_item_direct(q->engine, domain_find_rcu(q->engine, it[done].did), &it[done]);
	iovt_rcu_read_unlock();
	return done;
}

/* push_all's wait, out of line: the ring was full (done < n items went in). */
static __attribute__((noinline)) void push_rest(struct iovt_queue *q, const struct intake_item *it,
						unsigned n, unsigned done)
{
	struct intake_ring *r = q->ring;
	ENGINE_STAT_ADD(q->engine, queue_full_waits, 1);
	if (in_sink_callback() && (done = divert_rest(q, it, n, done)) == n)
		return;
	queue_kick(q);
	for (unsigned spins = 0; done < n; spins++) {
		if (!q->handoff && queue_try_drain_begin(q)) {
			q->drain.draining_inline = true; /* fences met: the poster's own */
			queue_drain(q, r->capacity);
			q->drain.draining_inline = false;
			queue_drain_end(q);
		} else if (spins < SPINS_BEFORE_SLEEP) {
			cpu_relax();
		} else {
			queue_kick(q);
			sched_yield();
		}
		done += r->ops->push(r, it + done, n - done);
	}
}

/* Pushes every item, waiting (and helping) while the ring is full. */
static inline __attribute__((always_inline)) void push_all(struct iovt_queue *q,
							   const struct intake_item *it, unsigned n)
{
	struct intake_ring *r = q->ring;
	unsigned done = r->ops->push(r, it, n);

	if (__builtin_expect(done < n, 0))
		push_rest(q, it, n, done);
	/* Past half full, wake the worker so that the ring keeps room; below
	 * that, plain invalidations wait for a fence (the coalescing window). */
	q->posted_since_check += n;
	if (__builtin_expect(q->posted_since_check >= r->capacity / 4, 0)) {
		q->posted_since_check = 0;
		if (r->ops->count(r) > r->capacity / 2)
			queue_kick(q);
	}
}

int iovt_queue_post(struct iovt_queue *q, const struct iovt_inval *v, unsigned n)
{
	struct intake_item buf[32];
	unsigned k = 0;
	int first_err = 0;

	if (n == 1) {
		/* One item (the vCPU's PSI, iovt_invalidate_*): no batch loop. */
		int rc = encode(q, v, &buf[0]);
		if (!rc)
			push_all(q, buf, 1);
		return rc;
	}
	for (unsigned i = 0; i < n; i++) {
		int rc = encode(q, &v[i], &buf[k]);
		if (rc) {
			if (!first_err)
				first_err = rc;
			continue;
		}
		if (++k == 32) {
			push_all(q, buf, k);
			k = 0;
		}
	}
	if (k)
		push_all(q, buf, k);
	return first_err;
}

/*
 * One PSI: its checks (0, -ENOENT or -EINVAL, counted) and its item, pushed
 * (out NULL: iovt_queue_psi, iovt_invalidate_psi) or stored in *out for a
 * batch (encode). The vCPU's strict-mode unmap takes it straight, without
 * the iovt_inval round trip, the kind switch and the batch loop (callgrind,
 * fence/map_unmap_1: ~181 -> ~109 instructions a post, the ring's included).
 * One function for both: its USDT note must be the only one named psi
 * (perf/check-probes.sh).
 */
static __attribute__((noinline)) int psi_post(struct iovt_queue *q, uint16_t did, uint64_t addr,
					      unsigned am, bool ih, struct intake_item *out)
{
	unsigned w = domain_width(q, did);
	if (__builtin_expect(!w, 0)) {
		ENGINE_STAT_ADD(q->engine, errors[IOVT_ERR_UNKNOWN_DOMAIN], 1);
		return -ENOENT;
	}
	if (__builtin_expect(am > IOVT_PSI_MAX_AM || addr > (1ull << w) - 1, 0)) {
		count_bad(q->engine, did);
		return -EINVAL;
	}
	/* Address bits below the mask are ignored, as the hardware does: an
	 * unaligned PSI is served as the aligned block containing addr. */
	struct intake_item it;
	intake_item_set(&it, psi_block(addr, am, UINT64_MAX).first, did, ITEM_PSI, (uint8_t)am, ih ? 1 : 0);
	IOVT_PROBE3(psi, did, it.arg, am);
	if (out) {
		*out = it;
		return 0;
	}
	push_all(q, &it, 1);
	return 0;
}

int queue_post_psi(struct iovt_queue *q, uint16_t did, uint64_t addr, unsigned am, bool ih)
{
	return psi_post(q, did, addr, am, ih, NULL);
}

int iovt_queue_psi(struct iovt_queue *q, uint16_t did, uint64_t addr, unsigned am, bool ih)
{
	return queue_post_psi(q, did, addr, am, ih);
}

int iovt_queue_dsi(struct iovt_queue *q, uint16_t did)
{
	struct iovt_inval v = { .did = did, .kind = IOVT_INVAL_DSI };
	return iovt_queue_post(q, &v, 1);
}

static uint64_t post_fence(struct iovt_queue *q)
{
	struct intake_item it = { .arg = ++q->fences_posted, .kind = ITEM_FENCE };
	push_all(q, &it, 1);
	return it.arg;
}

bool iovt_queue_fence_done(const struct iovt_queue *q, uint64_t ticket)
{
	return atomic_load_explicit(&q->fences_done, memory_order_acquire) >= ticket;
}

/* The error of fences completed since the last call (one per queue). Most
 * fences have none to report: a load, not a locked exchange. */
static int take_err(struct iovt_queue *q)
{
	if (!atomic_load_explicit(&q->err, memory_order_acquire))
		return 0;
	return atomic_exchange_explicit(&q->err, 0, memory_order_acq_rel);
}

/*
 * Waits for a ticket. Draining inline when the flag is free is both the
 * fast path (the vCPU's PSI + wait: no hand-off, no wakeup) and what keeps
 * a fence from waiting on a worker that is asleep or busy elsewhere.
 */
static int wait_ticket(struct iovt_queue *q, uint64_t ticket, bool may_drain)
{
	if (!may_drain)
		queue_kick(q);
	for (unsigned spins = 0; !iovt_queue_fence_done(q, ticket); spins++) {
		if (may_drain && queue_try_drain_begin(q)) {
			q->drain.draining_inline = true;
			queue_drain(q, UINT_MAX);
			q->drain.draining_inline = false;
			queue_drain_end(q);
			continue;
		}
		/* A few pauses while a drainer holds the flag (mid-burst, it
		 * finishes in that time), then yields: on a busy machine the
		 * drainer may need this very CPU, and a yield with nothing else
		 * to run is just a slower spin. With the flag free no drainer
		 * is running: a hand-off queue's worker has yet to be scheduled,
		 * so pausing only holds the CPU it may need; yield at once
		 * (multi-producer-workers, 4 producers and 2 workers on 2 CPUs,
		 * 12 runs each: p50 8-14 -> 4-7 us, p99 43-50 -> 32-51 us). */
		if (spins < SPINS_BEFORE_YIELD &&
		    atomic_load_explicit(&q->draining, memory_order_relaxed)) {
			cpu_relax();
			continue;
		}
		if (spins < SPINS_BEFORE_SLEEP) {
			sched_yield();
			continue;
		}
		uint32_t word = atomic_load_explicit(&q->done_word, memory_order_seq_cst);
		atomic_fetch_add_explicit(&q->waiters, 1, memory_order_seq_cst);
		if (!iovt_queue_fence_done(q, ticket))
			futex_wait_for(&q->done_word, word, 1000000);
		atomic_fetch_sub_explicit(&q->waiters, 1, memory_order_relaxed);
	}
	return take_err(q);
}

int iovt_queue_fence(struct iovt_queue *q)
{
	/* The vCPU's PSI + wait: with the drain flag free, drain the ring and
	 * apply the fence right after its last item, without pushing and
	 * popping a fence item. The ticket is the one post_fence would have
	 * given: the ring held every earlier one, and only this thread posts. */
	if (!q->handoff && queue_try_drain_begin(q)) {
		q->drain.draining_inline = true;
		queue_drain_fence(q, ++q->fences_posted);
		q->drain.draining_inline = false;
		queue_drain_end(q);
		return take_err(q);
	}
	return wait_ticket(q, post_fence(q), !q->handoff);
}

uint64_t iovt_queue_fence_post(struct iovt_queue *q)
{
	uint64_t t = post_fence(q);
	queue_kick(q);
	return t;
}

int iovt_queue_fence_wait(struct iovt_queue *q, uint64_t ticket)
{
	/* A ticket not handed out yet would be waited for forever (found by
	 * review). fences_posted is the producer's, and so is this call. */
	if (__builtin_expect(ticket > q->fences_posted, 0)) {
		ENGINE_STAT_ADD(q->engine, errors[IOVT_ERR_BAD_ARGUMENT], 1);
		return -EINVAL;
	}
	return wait_ticket(q, ticket, !q->handoff);
}

/*
 * Each thread's implicit queue per engine, found through a small cache
 * (engine_internal.h), most recently used first: the legacy calls of a
 * thread that uses one engine find its queue in slot 0, inline. Engine ids
 * are never reused, so a stale entry can never match. A thread releases its
 * implicit queues at iovt_thread_unregister (and the least recently used one
 * when its cache is full), so threads that come and go leave nothing behind.
 * The engine may be gone by then: the list of live engines says, and
 * holding its lock keeps iovt_engine_destroy from starting meanwhile.
 */
__thread struct thread_queue_slot thread_queues[THREAD_QUEUES];

static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static CDS_LIST_HEAD(live_engines);

void engine_live_add(struct iovt_engine *e)
{
	pthread_mutex_lock(&live_lock);
	cds_list_add(&e->live_link, &live_engines);
	pthread_mutex_unlock(&live_lock);
}

void engine_live_remove(struct iovt_engine *e)
{
	pthread_mutex_lock(&live_lock);
	cds_list_del(&e->live_link);
	pthread_mutex_unlock(&live_lock);
}

static void release_thread_queue(unsigned slot)
{
	uint64_t id = thread_queues[slot].engine_id;
	struct iovt_queue *q = thread_queues[slot].q;
	thread_queues[slot].engine_id = 0;
	thread_queues[slot].q = NULL;
	if (!id)
		return;
	pthread_mutex_lock(&live_lock);
	struct cds_list_head *pos;
	cds_list_for_each(pos, &live_engines) {
		if (caa_container_of(pos, struct iovt_engine, live_link)->id == id) {
			iovt_queue_destroy(q); /* leftovers go to the pending sets */
			break;
		}
	}
	pthread_mutex_unlock(&live_lock);
}

void thread_queues_release(void)
{
	for (unsigned i = 0; i < THREAD_QUEUES; i++)
		release_thread_queue(i);
}

/* Slots 0..upto-1 move down one; `s` goes first. */
static void to_front(unsigned upto, struct thread_queue_slot s)
{
	memmove(&thread_queues[1], &thread_queues[0], upto * sizeof(thread_queues[0]));
	thread_queues[0] = s;
}

struct iovt_queue *thread_queue_find_rest(struct iovt_engine *e)
{
	for (unsigned i = 1; i < THREAD_QUEUES; i++) {
		if (thread_queues[i].engine_id == e->id) {
			struct thread_queue_slot hit = thread_queues[i];
			to_front(i, hit);
			return hit.q;
		}
	}
	return NULL;
}

struct iovt_queue *thread_queue_make(struct iovt_engine *e)
{
	struct iovt_queue *found = thread_queue_find_rest(e);
	if (found)
		return found;
	/* No queue is made or evicted inside a sink callback (locks the
	 * caller may hold; common/sink_call.h): the pending set takes it. */
	if (in_sink_callback())
		return NULL;
	/* This thread's first post to e: the least recently used slot goes
	 * (after the queue exists: a failed create evicts nothing). */
	struct iovt_queue *q;
	if (iovt_queue_create(e, NULL, &q))
		return NULL;
	q->implicit = true;
	release_thread_queue(THREAD_QUEUES - 1);
	to_front(THREAD_QUEUES - 1, (struct thread_queue_slot){ .engine_id = e->id, .q = q });
	return q;
}
