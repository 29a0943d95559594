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
#include "domain/domain.h"

#define BURST 32u
/* drain_fence's first pop: one item is the strict-mode PSI + wait, two are not */
#define FIRST_POP 2u
/* The `final` of iovt_fence's drains: a fence with no ticket (see drain);
 * FINAL_ALONE: the same from fence_alone, which runs without the control
 * lock and so leaves fence_synced (read under it) alone. */
#define FINAL_UNTICKETED UINT64_MAX
#define FINAL_ALONE (UINT64_MAX - 1)
static inline bool unticketed(uint64_t t) { return t >= FINAL_ALONE; }

/*
 * The drain flag is a try-lock, so whoever tries first after a release wins:
 * a producer fencing back to back retakes it within nanoseconds, and
 * iovt_fence (or queue destroy) spinning for it could wait for as long as
 * the producer keeps fencing. A waiting control path therefore raises
 * drain_wanted, and every other drainer stands aside while it is up (a
 * poster then waits for its ticket, which the control path's drain
 * publishes).
 */
bool queue_try_drain_begin(struct iovt_queue *q)
{
	int expected = 0;
	return atomic_load_explicit(&q->drain_wanted, memory_order_relaxed) == 0 &&
	       atomic_load_explicit(&q->draining, memory_order_relaxed) == 0 &&
	       atomic_compare_exchange_strong_explicit(&q->draining, &expected, 1,
						       memory_order_acquire, memory_order_relaxed);
}

void queue_drain_begin_wait(struct iovt_queue *q)
{
	int expected = 0;
	atomic_fetch_add_explicit(&q->drain_wanted, 1, memory_order_seq_cst);
	while (!atomic_compare_exchange_weak_explicit(&q->draining, &expected, 1, memory_order_acquire,
						      memory_order_relaxed)) {
		expected = 0;
		sched_yield(); /* the holder is mid-burst or mid-sync: it lets go soon */
	}
	atomic_fetch_sub_explicit(&q->drain_wanted, 1, memory_order_relaxed);
}

void queue_drain_end(struct iovt_queue *q)
{
	atomic_store_explicit(&q->draining, 0, memory_order_release);
}

/*
 * A DID into the queue's set for its next fence. The bit always goes in;
 * the list (the fence's order, and no scan of 8 KiB of bits) only when it
 * can grow. Without memory for it the fence walks the bits instead
 * (touched_overflow), and that is counted. It set touched_all before, which
 * the fence turned into a pass over every domain through this same touch:
 * failing again, it synced nothing and published its ticket, the PSI not
 * applied (found by review: intake-touched-oom).
 */
static void touch(struct drain_state *ds, uint16_t did)
{
	uint64_t bit = 1ull << (did & 63);
	if (ds->touched_bits[did >> 6] & bit)
		return;
	ds->touched_bits[did >> 6] |= bit;
	if (__builtin_expect(!ds->touched_overflow && vec_push(&ds->touched, did), 0)) {
		ds->touched_overflow = true;
		ENGINE_STAT_ADD(caa_container_of(ds, struct iovt_queue, drain)->engine,
				errors[IOVT_ERR_NO_MEMORY], 1);
	}
}

/* The fence's sync of one listed DID (its bit cleared first; set again
 * when its spans failed: the next fence retries it). */
static int fence_sync_did(struct iovt_engine *e, struct drain_state *ds, uint16_t did,
			  uint64_t ticket)
{
	ds->touched_bits[did >> 6] &= ~(1ull << (did & 63));
	bool ref;
	struct iovt_domain *d = domain_sync_lock(e, did, &ref);
	if (!d)
		return 0;
	bool retry;
	int rc = domain_sync_locked_carry(d, &ds->scratch, &ds->todo, &retry, NULL);
	if (ticket == FINAL_UNTICKETED)
		d->fence_synced = atomic_load_explicit(&e->fence_seq, memory_order_relaxed);
	domain_sync_unlock(d, ref);
	if (retry)
		ds->touched_bits[did >> 6] |= 1ull << (did & 63);
	return rc;
}

/*
 * Consecutive items for one domain are gathered (b, its ranges in r) and
 * added to its pending set under one lock hold, or carried by the fence
 * that follows them; counters are folded once per gathering.
 */
struct gather {
	struct drain_state *ds;
	struct iovt_domain *d;
	uint16_t did;
	bool ref;            /* a carried d: a reference held (else its sync_lock) */
	struct pend_batch b; /* b.r == r */
	struct range r[BURST];
};

/*
 * The queue fence's USDT probes, out of line: a fence is applied in two
 * places (apply_fence, and drain_fence's one-PSI way), and each probe must
 * be one note (perf/check-probes.sh). A call each when not traced.
 */
static __attribute__((noinline)) void probe_fence_begin(uint64_t ticket)
{
	IOVT_PROBE1(queue_fence_begin, ticket);
}

static __attribute__((noinline)) void probe_fence_end(int err)
{
	IOVT_PROBE1(queue_fence_end, err);
}

/*
 * A fence's end, its syncs done: its ticket published, its error left for
 * the queue's producer. Nothing for iovt_fence's (unticketed): its caller
 * gets the error; no ticket, no count.
 */
static inline void fence_publish(struct iovt_queue *q, uint64_t ticket, bool inline_fence, int err)
{
	if (unticketed(ticket))
		return;
	if (err) {
		int none = 0;
		atomic_compare_exchange_strong(&q->err, &none, err);
	}
	/* the drain flag owns these (iovt_stats_get: fences = engine + inline + drained) */
	if (inline_fence)
		OWNED_ADD(&q->drain.ctr.fences_inline, 1);
	else
		OWNED_ADD(&q->drain.ctr.fences_drained, 1);
	atomic_store_explicit(&q->fences_done, ticket, memory_order_release);
	/* Only the producer waits on a queue's tickets (iovt.h): when it is
	 * the drainer, no one sleeps on done_word, and the locked add that
	 * orders the wake-up against a sleeper is not needed. */
	if (!inline_fence) {
		atomic_fetch_add_explicit(&q->done_word, 1, memory_order_seq_cst);
		if (atomic_load_explicit(&q->waiters, memory_order_seq_cst))
			futex_wake_all(&q->done_word);
	}
}

/*
 * A fence item: sync what this queue touched, then publish its ticket.
 * Outside any read-side section. `carry` (may be NULL; its sync_lock held,
 * or a reference when carry->ref): the domain whose invalidations came
 * right before the fence, not yet in its
 * pending set nor on the queue's list — they go straight into its sync,
 * first (no pending_lock hold, no DID lookup, no list entry: the vCPU's
 * PSI + wait).
 */
static int apply_fence(struct iovt_queue *q, uint64_t ticket, bool inline_fence, struct gather *carry)
{
	struct iovt_engine *e = q->engine;
	struct drain_state *ds = &q->drain;
	int err = 0;
	int carried = -1; /* the DID synced with the carry */

	probe_fence_begin(ticket);
	if (carry && carry->d) {
		struct iovt_domain *d = carry->d;
		carry->d = NULL;
		bool retry;
		if (carry->ref)
			domain_lock_drainer(d);
		err = domain_sync_locked_carry(d, &ds->scratch, &ds->todo, &retry, &carry->b);
		if (ticket == FINAL_UNTICKETED)
			d->fence_synced = atomic_load_explicit(&e->fence_seq, memory_order_relaxed);
		domain_sync_unlock(d, carry->ref);
		carried = carry->did;
		if (retry)
			touch(ds, carry->did); /* spans failed: this queue's next fence retries */
		else /* listed by an earlier gathering? Its ranges were pending: synced now */
			ds->touched_bits[carry->did >> 6] &= ~(1ull << (carry->did & 63));
	}
	if (ds->touched_all) {
		/* After a global invalidation (rare): every domain now in the
		 * table joins the list, in a read-side section that waits for
		 * nothing; the syncs run below, outside it. */
		struct cds_lfht_iter it;
		struct cds_lfht_node *node;
		ds->touched_all = false;
		iovt_rcu_read_lock();
		cds_lfht_for_each(e->domains, &it, node) {
			/* Not the one the carry synced: listed again, it stayed on
			 * the list for the next fence (a lock and an empty sync;
			 * found by review). Its failed spans listed it above. */
			uint16_t did = domain_of_node(node)->did;
			if ((int)did != carried)
				touch(ds, did);
		}
		iovt_rcu_read_unlock();
	}
	if (__builtin_expect(!ds->touched_overflow, 1)) {
		size_t n = ds->touched.n;
		for (size_t i = 0; i < n; i++) {
			uint16_t did = ds->touched.v[i];
			if (did == carried)
				continue; /* synced above; listed still only if spans failed */
			int rc = fence_sync_did(e, ds, did, ticket);
			if (rc && !err)
				err = rc;
		}
		/* Keep the DIDs still marked (their spans failed) for the next fence. */
		size_t kept = 0;
		for (size_t i = 0; i < n; i++) {
			uint16_t did = ds->touched.v[i];
			if (ds->touched_bits[did >> 6] & (1ull << (did & 63)))
				ds->touched.v[kept++] = did;
		}
		ds->touched.n = kept;
	} else {
		/* The list missed DIDs: the bits are the set. Each word as it
		 * was, so that a DID marked again (its spans failed) waits for
		 * the next fence; then the list is made again from the bits. */
		for (unsigned w = 0; w < 65536 / 64; w++) {
			for (uint64_t bits = ds->touched_bits[w]; bits; bits &= bits - 1) {
				uint16_t did = (uint16_t)(w * 64 + (unsigned)__builtin_ctzll(bits));
				if (did == carried)
					continue;
				int rc = fence_sync_did(e, ds, did, ticket);
				if (rc && !err)
					err = rc;
			}
		}
		ds->touched.n = 0;
		ds->touched_overflow = false;
		for (unsigned w = 0; w < 65536 / 64 && !ds->touched_overflow; w++)
			for (uint64_t bits = ds->touched_bits[w]; bits; bits &= bits - 1)
				if (vec_push(&ds->touched, (uint16_t)(w * 64 + (unsigned)__builtin_ctzll(bits)))) {
					ds->touched_overflow = true; /* counted when it first failed */
					break;
				}
	}
	fence_publish(q, ticket, inline_fence, err);
	probe_fence_end(err); /* every queue_fence_begin has its end */
	return err;
}

static void gather_reset(struct gather *g)
{
	g->d = NULL;
	g->b = (struct pend_batch){ .r = g->r };
}

/* Into the pending set: the domain joins the queue's list for its next
 * fence. (Ranges a fence carries are synced by it: they never join.) */
static void gather_flush(struct gather *g)
{
	struct iovt_domain *d = g->d;
	if (!d)
		return;
	touch(g->ds, g->did);
	domain_pend(d, &g->b);
	gather_reset(g);
}

/*
 * An item accepted at post with nothing left to do at drain: its domain was
 * destroyed (the destroy unmapped everything), or re-created narrower than
 * the PSI the producer checked. Accepted all the same, and stale — not an
 * error of the guest's.
 */
static void count_stale(struct iovt_engine *e, const struct intake_item *it)
{
	ENGINE_STAT_ADD(e, invalidations, 1);
	ENGINE_STAT_ADD(e, stale_domain, 1);
	if (it->kind == ITEM_DSI)
		ENGINE_STAT_ADD(e, dsi, 1);
	else
		ENGINE_STAT_ADD(e, psi, 1);
	if (it->ih)
		ENGINE_STAT_ADD(e, ih, 1);
}

/*
 * One accepted item straight into its domain's pending set (d: its domain
 * as found now, NULL when gone), as gather_item and gather_flush would make
 * of it at the drain and counted the same way (a domain destroyed, or
 * re-created narrower than the PSI, since the post is stale, not an error
 * of the guest's), but joining no queue's list: iovt_fence syncs it
 * (iovt.h). Never a fence. Inside a read-side section.
 */
void pend_item_direct(struct iovt_engine *e, struct iovt_domain *d, const struct intake_item *it)
{
	if (it->kind == ITEM_GLOBAL) {
		ENGINE_STAT_ADD(e, invalidations, 1);
		ENGINE_STAT_ADD(e, global, 1);
		domains_pend_all(e);
	} else if (!d) {
		count_stale(e, it);
	} else if (it->kind == ITEM_DSI) {
		domain_pend(d, &(struct pend_batch){ .all = true, .dsi = 1 });
	} else {
		struct range b = psi_block(it->arg, it->am, domain_top(d));
		if (b.first > b.last)
			count_stale(e, it);
		else
			domain_pend(d, &(struct pend_batch){ .r = &b, .n = 1, .psi = 1, .ih = it->ih });
	}
}

static void gather_item(struct iovt_queue *q, struct gather *g, const struct intake_item *it)
{
	if (!g->d || g->did != it->did) {
		gather_flush(g);
		struct iovt_domain *d = domain_find_rcu(q->engine, it->did);
		if (!d) {
			count_stale(q->engine, it);
			return;
		}
		g->d = d;
		g->did = it->did;
	}
	if (it->kind == ITEM_DSI) {
		g->b.all = true;
		g->b.dsi++;
		return;
	}
	if (g->b.all) {
		g->b.psi++;
		g->b.ih += it->ih;
		return;
	}
	struct range b = psi_block(it->arg, it->am, domain_top(g->d));
	if (b.first > b.last) {
		count_stale(q->engine, it); /* an older, wider domain of this DID */
		return;
	}
	g->b.psi++;
	g->b.ih += it->ih;
	struct range *prev = g->b.n ? &g->r[g->b.n - 1] : NULL;
	if (prev && prev->last + 1 >= b.first && prev->first <= b.first) {
		if (b.last > prev->last)
			prev->last = b.last; /* the common streaming case: adjacent blocks */
	} else {
		g->r[g->b.n++] = b;
	}
}

void domains_pend_all(struct iovt_engine *e)
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *node;
	atomic_fetch_add_explicit(&e->global_passes, 1, memory_order_relaxed);
	cds_lfht_for_each(e->domains, &it, node)
		domain_add_pending(domain_of_node(node), 0, 0, true);
}

/*
 * A global invalidation at the drain: counted now, its pass over the domains
 * (a pending-set lock and a dirty mark each) made once per drain pass
 * (global_flush), however many globals the pass met: a guest's flood of N
 * globals cost N passes over every domain (the host sets the count) before.
 * Nothing reads a pending set before the pass ends but a fence, and each
 * fence item flushes first: the fence that waits for a global still finds
 * every domain pending, and its IOTLB entries dropped (VT-d: before the wait
 * completes; a domain created between the global and the flush is synced
 * once more than needed).
 */
static void post_global(struct iovt_queue *q)
{
	ENGINE_STAT_ADD(q->engine, invalidations, 1);
	ENGINE_STAT_ADD(q->engine, global, 1);
	q->drain.global_pending = true;
	q->drain.touched_all = true;
}

/* The pass post_global left for later (inside a read-side section). The
 * flag lives in the drain state, on the line drain_in reads first: a
 * compare with memory, where a local flag cost ~3 instructions a drain. */
static inline void global_flush(struct iovt_queue *q)
{
	if (__builtin_expect(q->drain.global_pending, 0)) {
		q->drain.global_pending = false;
		domains_pend_all(q->engine);
	}
}

/*
 * The fence item's work in the middle of a burst (read-side section held, g
 * the gathering just before it): the last domain's gathered ranges ride
 * along with the fence, its sync_lock taken here when free (no reference:
 * domain_sync_trylock_rcu), else with a reference; else the domain is going
 * away: the usual way. Returns inside a new section, or, when `last`, in
 * none (the drain's final fence: g is empty after it either way).
 */
static int fence_in_burst(struct iovt_queue *q, struct gather *g, uint64_t ticket, bool inline_fence,
			  bool last)
{
	struct gather *carry = NULL;
	if (g->d && domain_sync_hold_rcu(g->d, &g->ref))
		carry = g;
	else
		gather_flush(g);
	iovt_rcu_read_unlock();
	int err = apply_fence(q, ticket, inline_fence, carry);
	if (carry)
		gather_reset(g);
	if (!last)
		iovt_rcu_read_lock();
	return err;
}

/*
 * A drain's end, both ways (drain_in, drain_fence): `total` items popped;
 * a final fence is counted as the item it would have been when it has a
 * ticket, and gives its error to iovt_fence's caller when it has none.
 */
static inline unsigned drain_done(struct iovt_queue *q, unsigned total, uint64_t final, int err,
				  int *final_err)
{
	if (final) {
		if (unticketed(final))
			*final_err = err;
		else
			total++;
	}
	if (total)
		OWNED_ADD(&q->drain.ctr.queue_items, total);
	return total;
}

/*
 * drain's body, entered inside a read-side section the caller took for it
 * (fence_alone: one section from its look at the queues on); it leaves it.
 * See drain.
 */
static unsigned drain_in(struct iovt_queue *q, unsigned budget, uint64_t final, int *final_err,
			 const struct intake_item *pre, unsigned npre)
{
	struct intake_item buf[BURST];
	struct gather g; /* r[] is written before it is read: only the head is set */
	gather_reset(&g);
	g.ds = &q->drain;
	unsigned total = 0;
	bool inline_fence = q->drain.draining_inline;

	/* A locked iovt_fence drains another thread's queue up to the count
	 * it read first (all posted before the call): a pop that comes back
	 * short is no proof of an empty ring there. The wfcq ring cannot hand
	 * out a full chunk while its producer is between linking the next one
	 * and storing the link; stopping then returned the fence before up to
	 * a chunk of earlier PSIs (found by review, shown under gdb). The
	 * producer's next instruction is that store: yield until it lands. */
	const bool counted = final == FINAL_UNTICKETED;
	while (total < budget) {
		unsigned want, n;
		const struct intake_item *items = buf;
		if (pre) {
			/* drain_fence's pop of FIRST_POP items, taken as the first burst */
			want = FIRST_POP;
			n = npre;
			items = pre;
			pre = NULL;
		} else {
			want = budget - total < BURST ? budget - total : BURST;
			n = q->ring->ops->pop(q->ring, buf, want);
		}
		if (!n && counted && budget != UINT_MAX) {
			sched_yield();
			continue;
		}
		if (!n)
			break;
		if (total) {
			/* A new burst, a new section (g's domain goes with the old one). */
			gather_flush(&g);
			iovt_rcu_read_unlock();
			iovt_rcu_read_lock();
		}
		for (unsigned i = 0; i < n; i++) {
			const struct intake_item *it = &items[i];
			switch (it->kind) {
			case ITEM_PSI:
			case ITEM_DSI:
				if (g.b.n == BURST)
					gather_flush(&g);
				gather_item(q, &g, it);
				break;
			case ITEM_GLOBAL:
				gather_flush(&g);
				post_global(q);
				break;
			case ITEM_FENCE:
				global_flush(q);
				fence_in_burst(q, &g, it->arg, inline_fence, false);
				break;
			}
		}
		total += n;
		if (final && !counted && n < want)
			break; /* the poster's own ring: a short burst emptied it */
	}
	global_flush(q);
	int err = 0;
	if (final) {
		/* Leaves the section, and g empty: nothing to flush. */
		err = fence_in_burst(q, &g, final, inline_fence, true);
	} else {
		gather_flush(&g);
		iovt_rcu_read_unlock();
	}
	return drain_done(q, total, final, err, final_err);
}

/*
 * Pops up to `budget` items in bursts, one read-side section per burst
 * (domain pointers in `g`), left for each fence: syncs run outside (see
 * domain_sync_lock). `final` (nonzero): a fence after the last item, never
 * posted (queue_drain_fence); FINAL_UNTICKETED: iovt_fence's, which
 * publishes no ticket and returns its error (*final_err) instead of leaving
 * it for the queue's producer.
 */
static unsigned drain(struct iovt_queue *q, unsigned budget, uint64_t final, int *final_err)
{
	iovt_rcu_read_lock();
	return drain_in(q, budget, final, final_err, NULL, 0);
}

/*
 * drain_in for the poster's own fence at the end of its ring (`final`: the
 * inline queue fence's ticket, or fence_alone's FINAL_ALONE; the producer is
 * the caller, so a short pop means an empty ring), with the strict-mode
 * vCPU's PSI + wait taken straight: when nothing else waits for the fence
 * (no domain listed by an earlier one, no global pass) and the ring holds
 * that one PSI, its domain's sync_lock free, the PSI is synced as the
 * fence's carry without the burst loop, the gathering and the fence item's
 * general steps — what drain_in, fence_in_burst and apply_fence come to for
 * it; an empty ring, the fence alone, the same way. Anything else goes on
 * through drain_in with what was popped. Same section rules as drain_in
 * (entered inside one, leaves it).
 */
static inline __attribute__((always_inline)) unsigned drain_fence(struct iovt_queue *q, unsigned budget,
								   uint64_t final, int *final_err)
{
	struct drain_state *ds = &q->drain;
	/* budget >= FIRST_POP: a ring holds at least two items (iovt_queue_create) */
	if (ds->touched.n || ds->touched_all || ds->global_pending || ds->touched_overflow)
		return drain_in(q, budget, final, final_err, NULL, 0);
	struct intake_item two[FIRST_POP];
	const unsigned n = q->ring->ops->pop(q->ring, two, FIRST_POP);
	struct iovt_domain *d = NULL;
	struct range b = { 1, 0 };
	if (n == 1 && two[0].kind == ITEM_PSI && (d = domain_find_rcu(q->engine, two[0].did)))
		b = psi_block(two[0].arg, two[0].am, domain_top(d));
	if (n && (b.first > b.last || !domain_sync_trylock_rcu(d)))
		return drain_in(q, budget, final, final_err, two, n);
	iovt_rcu_read_unlock();
	/* The fence: after the PSI, or alone (an empty ring: nothing else to do) */
	probe_fence_begin(final);
	int err = 0;
	if (n) {
		bool retry;
		const struct pend_batch pb = { .r = &b, .n = 1, .psi = 1, .ih = two[0].ih };
		err = domain_sync_locked_carry(d, &ds->scratch, &ds->todo, &retry, &pb);
		domain_sync_unlock(d, false);
		if (retry)
			touch(ds, two[0].did); /* spans failed: this queue's next fence retries */
	}
	fence_publish(q, final, ds->draining_inline, err);
	probe_fence_end(err);
	return drain_done(q, n, final, err, final_err);
}

unsigned queue_drain(struct iovt_queue *q, unsigned budget) { return drain(q, budget, 0, NULL); }

void queue_drain_fence(struct iovt_queue *q, uint64_t ticket)
{
	iovt_rcu_read_lock();
	(void)drain_fence(q, UINT_MAX, ticket, NULL);
}

/*
 * iovt_fence without the control lock, when only the caller's own implicit
 * queue has work: every other queue empty and idle, and no dirty domain.
 * Then the locked way would do exactly this — drain that queue with a
 * fence after its last item — and the mutex pair, the dirty-list splice
 * and the visit of every queue are the legacy PSI + wait's difference to
 * iovt_queue_fence (~25 ns of ~115). The implicit queue is drained as
 * iovt_queue_fence drains it, which is safe beside every control call.
 *
 * Order: the other queues first, then the dirty list. A drainer of another
 * queue sets its flag before it pops (an acquire CAS), marks its domains
 * dirty, then releases the flag: a ring seen empty because it popped is
 * either seen still draining, or its release is seen (acquire load) and
 * then its dirty marks are too. Something posted or marked after these
 * loads was not posted before this call. Work a control-lock holder is
 * moving is invisible to these looks — a locked fence's spliced dirty
 * list, a destroyed queue's leftovers — so it makes control_seq odd, and
 * then the locked way waits for it as it always did (a review found both
 * windows). false: take the locked way (nothing was done).
 */
static bool fence_alone(struct iovt_engine *e, int *err)
{
	struct iovt_queue *mine = thread_queue_find(e);
	if (!mine)
		return false;
	bool alone = true;
	/* Before every look below: a move under way (odd), or one that ran
	 * while they were made (the value moved), sends it the locked way. */
	const unsigned seq = atomic_load_explicit(&e->control_seq, memory_order_acquire);
	/* The table and its queues are freed a grace period after; the section
	 * goes on into the drain's (one section, not two: drain_in). */
	iovt_rcu_read_lock();
	if (seq & 1)
		goto locked_way;
	struct queue_table *qt = iovt_rcu_dereference(e->queues);
	for (unsigned i = 0; qt && i < qt->n && alone; i++) {
		struct iovt_queue *q = qt->q[i];
		if (q != mine && (q->ring->ops->count(q->ring) ||
				  atomic_load_explicit(&q->draining, memory_order_acquire)))
			alone = false;
	}
	/* A marker on its way to the list, first (engine_internal.h,
	 * dirty_marking): one that a drainer seen idle above left to it is
	 * counted here, or has enqueued before it left. */
	if (!alone || atomic_load_explicit(&e->dirty_marking, memory_order_acquire) ||
	    !cds_wfcq_empty(&e->dirty_head, &e->dirty_tail))
		goto locked_way;
	/* Last: a locked fence that spliced the dirty list (emptying it), a
	 * queue destroy that took its queue out of the table or a domain
	 * destroy that took the list made control_seq odd first, before that
	 * exchange or that publication; the fence makes this load see it (or
	 * the end of that move) once one of them was seen. */
	atomic_thread_fence(memory_order_acquire);
	if (atomic_load_explicit(&e->control_seq, memory_order_relaxed) != seq ||
	    !queue_try_drain_begin(mine))
		goto locked_way;
	/* At most a ring's worth: all that was posted before (only this thread
	 * posts to its implicit queue, and the ring holds no more), and a bound
	 * if a sink callback of this very fence posts again (a review found the
	 * unbounded drain). A load, not the ring's count through its ops. */
	(void)drain_fence(mine, mine->ring->capacity, FINAL_ALONE, err); /* sets *err, leaves the section */
	OWNED_ADD(&mine->drain.ctr.fences_alone, 1); /* the drain flag owns it */
	queue_drain_end(mine);
	return true;
locked_way:
	iovt_rcu_read_unlock();
	return false;
}

/* Out of line: the slow way, kept out of engine_fence_all's fast path
 * (inlined, its per-queue read-side loop cost fence_alone 6 instructions). */
static __attribute__((noinline)) int fence_locked(struct iovt_engine *e);

int engine_fence_all(struct iovt_engine *e)
{
	int err;
	IOVT_PROBE1(fence_begin, 0);
	if (!fence_alone(e, &err))
		err = fence_locked(e);
	IOVT_PROBE1(fence_end, err);
	return err;
}

/*
 * iovt_fence's locked way: drains every queue, then syncs every dirty
 * domain (those the queues fed, retries, root changes). Control lock: one
 * at a time, and no control call changes domains meanwhile.
 */
static __attribute__((noinline)) int fence_locked(struct iovt_engine *e)
{
	struct __cds_wfcq_head h;
	struct cds_wfcq_tail t;
	struct cds_wfcq_node *node;
	int first_err = 0;

	pthread_mutex_lock(&e->control_lock);
	bool moving = control_move_begin(e); /* before the splice */
	uint64_t seq = atomic_load_explicit(&e->fence_seq, memory_order_relaxed) + 1;
	atomic_store_explicit(&e->fence_seq, seq, memory_order_relaxed); /* the `fences` count */
	/* The control lock pins every queue and every domain (destroyed only
	 * under it), not the queue table: a create replaces it under its own
	 * lock (a sink callback's first post, iovt_queue_create). Each queue
	 * is looked up again by index inside a short read-side section (the
	 * drain below runs syncs, outside any): a create keeps the order and
	 * appends, and only a destroy, excluded here, removes. */
	for (unsigned qi = 0;; qi++) {
		iovt_rcu_read_lock();
		struct queue_table *qt = iovt_rcu_dereference(e->queues);
		struct iovt_queue *q = qt && qi < qt->n ? qt->q[qi] : NULL;
		iovt_rcu_read_unlock();
		if (!q)
			break;
		/* What was posted before this call is in the ring now (or being
		 * applied by the flag's holder): drain that much, not whatever a
		 * producer keeps posting meanwhile (control_lock is held). */
		unsigned posted = q->ring->ops->count(q->ring);
		if (!posted && !atomic_load(&q->draining))
			continue;
		/* One CAS when the flag is free (no other control path raises
		 * drain_wanted: they hold control_lock too), else first in line. */
		if (!queue_try_drain_begin(q))
			queue_drain_begin_wait(q);
		/* A drainer that held the flag meanwhile applied some of them:
		 * what is left of them is at most what the ring holds now (the
		 * drain below waits for every item it counts: drain_in). */
		unsigned now = q->ring->ops->count(q->ring);
		if (now < posted)
			posted = now;
		/* With a fence after them (no ticket: the producer did not post
		 * it): the last domain's ranges go straight into its sync, and
		 * the domains this queue touched are synced here — not through
		 * the pending sets and the dirty queue below (a lock, a list
		 * entry and a reference each: ~10% of a one-page PSI + fence). */
		int rc = 0;
		(void)drain(q, posted, FINAL_UNTICKETED, &rc);
		queue_drain_end(q);
		/* What was posted after the count (a hand-off producer's fence,
		 * or any producer's iovt_queue_fence_post) is its worker's: a
		 * worker that found the flag held here skipped the queue and may
		 * be asleep, and that fence waited for its idle timeout, 50 ms
		 * (found by review: first for hand-off queues, then for the
		 * others' asynchronous fences). The fence: the flag's release,
		 * then the count (a worker's last poll may fall between them:
		 * with store-load reordering each could miss the other). */
		atomic_thread_fence(memory_order_seq_cst);
		if (q->ring->ops->count(q->ring))
			queue_kick(q);
		if (rc && !first_err)
			first_err = rc;
	}

	/* The queues' drainers have let go: a domain one of them left to a
	 * marker still on its way is on the list once this returns. */
	engine_wait_dirty_marking(e);
	dirty_take_all(e, &h, &t);
	while ((node = dirty_next(&h, &t))) {
		struct iovt_domain *d = caa_container_of(node, struct iovt_domain, dirty);
		atomic_store_explicit(&d->queued, 0, memory_order_release);
		/* Before any look at pending_any (here, or domain_sync's): a
		 * drainer sets it and then reads `queued` to list the domain
		 * again (domain_pend, with the other fence). Without this pair
		 * both loads could read the old values (store-load reordering,
		 * x86 included): the domain left the list with ranges pending
		 * and a later iovt_fence returned without them (found by
		 * review; not reproduced: a window of a few store-buffer
		 * cycles). */
		atomic_thread_fence(memory_order_seq_cst);
		int rc = 0;
		if (d->fence_synced == seq && !atomic_load_explicit(&d->pending_any, memory_order_relaxed)) {
			/* A queue's drain above synced it (its failed spans
			 * included) and nothing came since: another sync would
			 * retry them twice in one iovt_fence. Listed for the next
			 * one if spans are left (as that sync did, but we took the
			 * list since). */
			domain_lock_drainer(d);
			bool left = domain_spans_left(d);
			sync_lock_release(&d->sync_lock);
			if (left)
				domain_mark_dirty(d);
		} else {
			rc = domain_sync(d, &e->scratch, &e->todo, NULL);
		}
		domain_put(d); /* the dirty queue's reference */
		if (rc && !first_err)
			first_err = rc;
	}
	control_move_end(e, moving); /* all synced */
	pthread_mutex_unlock(&e->control_lock);
	return first_err;
}
