/* SPDX-License-Identifier: MIT */
/*
 * The domain's sync entry: what every drainer, iovt_fence, set_root and RAM
 * removal calls down into. Pending ranges (shared by every queue), the
 * bounded retry of failed and capped spans, the raw ranges for UNMAP-only
 * notifiers, and the MAP sink's sync (engine/sync). Knows nothing of queues.
 *
 * Locks: sync_lock (the domain's single writer: tree, sinks, retry sets)
 * > pending_lock (drainers adding vs the sync taking). Taken only outside
 * read-side sections, and a holder waits for no grace period.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>

#include "common/futex.h"
#include "common/rcu.h"
#include "common/sink_call.h"
#include "domain/domain.h"
#include "tree/shadow_tree.h"

void domain_sync_target(struct iovt_domain *d, struct sync_target *t)
{
	struct iovt_engine *e = d->engine;
	/* Field by field: a compound literal zeroed the 88 bytes first with a
	 * rep stos (slow to start: 3% of a one-page fence). Every field is
	 * set; a field added to either struct must be added here. */
	t->ram = e->ram;
	t->tree = d->tree;
	t->sink = d->map_notifier ? &d->map_notifier->sink : NULL;
	t->walk.root_gpa = d->root_gpa;
	t->walk.addr_width = d->addr_width;
	t->walk.host_width = e->cfg.host_addr_width;
	t->walk.allow_2m = d->allow_2m;
	t->walk.merge_4k = false; /* the guest view sets it per walk */
	t->walk.allow_1g = d->allow_1g;
	t->walk.first = 0; /* set per window */
	t->walk.last = 0;
	t->walk.budget = e->cfg.walk_budget;
	t->walk_spent = 0;
	t->cut_before = NULL;
	t->cut_now = NULL;
	t->max_extents = e->cfg.max_extents_per_domain;
	t->capped = &d->capped;
}

void domain_fold_stats(struct iovt_domain *d, struct sync_stats *st)
{
	DSTAT_ADD_OWNED(d, ranges, st->windows);
	DSTAT_ADD_OWNED(d, ptes, st->ptes);
	st->windows = st->ptes = 0;
	if (st->map_calls | st->unmap_calls) {
		DSTAT_ADD_OWNED(d, map_calls, st->map_calls);
		DSTAT_ADD_OWNED(d, unmap_calls, st->unmap_calls);
		DSTAT_ADD_OWNED(d, pages_mapped, st->pages_mapped);
		DSTAT_ADD_OWNED(d, pages_unmapped, st->pages_unmapped);
		st->map_calls = st->unmap_calls = st->pages_mapped = st->pages_unmapped = 0;
	}
	uint64_t any = 0;
#pragma GCC unroll 16
	for (int k = 0; k < IOVT_ERR_KIND_COUNT; k++)
		any |= st->errors[k]; /* unrolled: one OR each, not 13 branches */
	for (int k = 0; any && k < IOVT_ERR_KIND_COUNT; k++)
		if (st->errors[k]) {
			STAT_ADD(d, errors[k], st->errors[k]);
			st->errors[k] = 0;
		}
}

/*
 * What a full range set did (range_set.max ranges: a flood of disjoint
 * PSIs widens a neighbour instead of growing) and an allocation it could
 * not make (the set became `all`): bounded, nothing lost, and counted
 * (both went uncounted; found by review). Rare: one compare when neither.
 */
static void set_overflow(struct iovt_domain *d, uint64_t widened, bool oom)
{
	if (widened)
		STAT_ADD(d, pending_widened, widened);
	if (oom)
		STAT_ADD(d, errors[IOVT_ERR_NO_MEMORY], 1);
}

static void add_batch(struct iovt_domain *d, struct range_set *s, const struct pend_batch *b)
{
	if (b->all) {
		range_set_add_all(s);
		return;
	}
	const uint64_t widened = s->forced_merges;
	bool oom = false;
	for (unsigned i = 0; i < b->n; i++)
		oom |= range_set_add(s, b->r[i].first, b->r[i].last) != 0;
	if (__builtin_expect(oom || s->forced_merges != widened, 0))
		set_overflow(d, s->forced_merges - widened, oom);
}

/* A retried span into the sync's set: an allocation that fails counts;
 * a widening does not (pending_widened is what the guest's invalidations
 * did: a domain with many failing spans widened on every sync; review). */
static void add_retried(struct iovt_domain *d, struct range_set *todo, uint64_t first, uint64_t last)
{
	if (__builtin_expect(range_set_add(todo, first, last) != 0, 0))
		set_overflow(d, 0, true);
}

/*
 * Counts an accepted batch of invalidations: into the domain's intake
 * counters (pending_lock held: it owns them), or, for a batch a fence
 * carried straight into its sync, into carried_* (sync_lock held: it owns
 * those); into the engine's once the domain's counters were folded
 * (destroyed meanwhile).
 */
static void count_batch(struct iovt_domain *d, const struct pend_batch *c, bool folded,
			bool carried)
{
	if (!(c->psi | c->dsi))
		return; /* a control path's ranges: nothing to count */
	if (folded) {
		/* d was destroyed after the post: the batch does nothing (the
		 * destroy unmapped everything) and is stale, as count_stale
		 * counts an item whose domain left the table before its drain
		 * (iovt.h: "counted in stale_domain"; lifecycle-stale-during-
		 * destroy). */
		struct iovt_engine *e = d->engine;
		ENGINE_STAT_ADD(e, stale_domain, c->psi + c->dsi);
		ENGINE_STAT_ADD(e, invalidations, c->psi + c->dsi);
		ENGINE_STAT_ADD(e, psi, c->psi);
		ENGINE_STAT_ADD(e, dsi, c->dsi);
		ENGINE_STAT_ADD(e, ih, c->ih);
		return;
	}
	/* load + store: one owner (see struct stat_counters) */
	struct stat_counters *st = &d->stats;
	OWNED_ADD(carried ? &st->carried_invalidations : &st->invalidations, c->psi + c->dsi);
	if (c->psi)
		OWNED_ADD(carried ? &st->carried_psi : &st->psi, c->psi);
	if (c->dsi)
		OWNED_ADD(carried ? &st->carried_dsi : &st->dsi, c->dsi);
	if (c->ih)
		OWNED_ADD(carried ? &st->carried_ih : &st->ih, c->ih);
}

void domain_pend(struct iovt_domain *d, const struct pend_batch *b)
{
	pthread_mutex_lock(&d->pending_lock);
	add_batch(d, &d->pending, b);
	atomic_store_explicit(&d->pending_any, true, memory_order_relaxed);
	count_batch(d, b, d->stats_folded, false);
	pthread_mutex_unlock(&d->pending_lock);
	/* pending_any, then `queued`: with fence_locked's fence after it
	 * clears `queued`, one of the two sees the other's store (drain.c). */
	atomic_thread_fence(memory_order_seq_cst);
	domain_mark_dirty(d);
}

void domain_fold_into_engine(struct iovt_domain *d)
{
	struct stat_counters *e = &d->engine->stats, *s = &d->stats;
#define FOLD(f, stats_field)                                                                 \
	atomic_fetch_add_explicit(&e->f, atomic_load_explicit(&s->f, memory_order_relaxed), \
				  memory_order_relaxed);
	pthread_mutex_lock(&d->pending_lock);
	DOMAIN_INTAKE_COUNTERS(FOLD)
	d->stats_folded = true; /* later intake counts go to the engine (domain_pend) */
	pthread_mutex_unlock(&d->pending_lock);
	/* The sync counters: sync_lock is held and d is dead, no sync writes them again. */
	DOMAIN_SYNC_COUNTERS(FOLD)
#undef FOLD
}

void domain_add_pending(struct iovt_domain *d, uint64_t first, uint64_t last, bool all)
{
	struct range r = { first, last };
	domain_pend(d, &(struct pend_batch){ .r = &r, .n = 1, .all = all });
}

/*
 * Drops the IOTLB's translations over what the guest invalidated, before the
 * fence that waits for it can complete (engine/iotlb: a fill that walked
 * before this never publishes after it: it gives its slot up or is killed). Only the guest's
 * ranges: the retried spans are the sink's business, not the guest's.
 */
static void todo_span(const void *arg, size_t i, uint64_t *first, uint64_t *last)
{
	const struct range_set *todo = arg;
	*first = todo->r[i].first;
	*last = todo->r[i].last;
}

static void iotlb_drop(struct iovt_domain *d, const struct range_set *todo)
{
	uint64_t n = 0;
	if (todo->all)
		n = iotlb_flush(&d->iotlb);
	else if (todo->n == 1)
		n = iotlb_invalidate(&d->iotlb, todo->r[0].first, todo->r[0].last);
	else if (todo->n)
		n = iotlb_invalidate_n(&d->iotlb, todo->n, todo_span, todo); /* one full sweep at most */
	if (n)
		DSTAT_ADD_OWNED(d, iotlb_invalidated, n);
}

void domain_iotlb_flush(struct iovt_domain *d)
{
	DSTAT_ADD_OWNED(d, iotlb_invalidated, iotlb_flush(&d->iotlb));
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
			int rc = sink_unmap(&n->sink, r[i].first, r[i].last - r[i].first + 1, &done);
			DSTAT_ADD_OWNED(d, raw_unmap_calls, 1);
			if (!rc)
				continue;
			/* A refusal is counted as any sink's (errors[]; the
			 * fence or the RAM removal returns it): it was
			 * returned and counted nowhere (found by review:
			 * lifecycle-raw-refused-counted). */
			STAT_ADD(d, errors[IOVT_ERR_SINK_UNMAP], 1);
			if (!first_err)
				first_err = rc;
		}
	}
	return first_err;
}

/*
 * Finds a domain and locks its sync_lock, without a reference when the lock
 * is free (domain_sync_trylock_rcu, inside the finding section), else with
 * one: a reference taken inside the section, the section left, and only then
 * the wait for sync_lock — no thread ever waits for a mutex inside a
 * read-side section, so a holder of sync_lock may wait for a grace period
 * without deadlock (ARCHITECTURE.md, "Lifetimes and locks"). A sync walks
 * and calls sinks for microseconds to milliseconds; a read-side section that
 * long would also make every grace period wait for it.
 * NULL: no such domain. *ref: whether a reference is held. Release with
 * domain_sync_unlock(d, *ref).
 */
struct iovt_domain *domain_sync_lock(struct iovt_engine *e, uint16_t did, bool *ref)
{
	iovt_rcu_read_lock();
	struct iovt_domain *d = domain_find_rcu(e, did);
	*ref = false; /* also when there is no such domain */
	if (d && !domain_sync_hold_rcu(d, ref))
		d = NULL; /* being freed */
	iovt_rcu_read_unlock();
	if (*ref)
		domain_lock_drainer(d);
	return d;
}

void domain_sync_unlock(struct iovt_domain *d, bool ref)
{
	if (ref) {
		sync_lock_release(&d->sync_lock);
		domain_put(d);
		return;
	}
	/* Without a reference only the lock kept d allocated (see
	 * domain_sync_trylock_rcu): the release reads d->sync_lock after its
	 * store, so it runs in a read-side section begun while we held the
	 * lock — destroy's free waits a grace period after taking it. */
	iovt_rcu_read_lock();
	sync_lock_release(&d->sync_lock);
	iovt_rcu_read_unlock();
}

/*
 * The drainer's fast way in: no reference (a locked add and a locked
 * subtract per sync, ~15% of a one-page PSI + wait). Why the lock alone
 * keeps d allocated: d's count reaches 0 only after destroy's creator put,
 * which follows the section where destroy sets `dead` under sync_lock (or
 * engine destroy, when no drainer runs). Holding the lock and seeing d
 * alive, we know destroy has not passed that section and cannot until we
 * unlock, so the free (a grace period after the last put) comes after our
 * unlock. A queued control call (control_waiting) gets the usual fair way:
 * the caller falls back to domain_tryget + domain_lock_drainer.
 */
bool domain_sync_trylock_rcu(struct iovt_domain *d)
{
	if (atomic_load_explicit(&d->control_waiting, memory_order_relaxed) ||
	    !sync_lock_try(&d->sync_lock))
		return false;
	/* Set under sync_lock: our acquire saw it if destroy got there first. */
	if (atomic_load_explicit(&d->dead, memory_order_relaxed)) {
		sync_lock_release(&d->sync_lock);
		return false;
	}
	return true;
}

/*
 * In a read-side section, d found there: holds d past the section — by its
 * sync_lock when a try takes it (*ref false), else by a reference (*ref
 * true; the caller locks outside the section). false: d is being freed.
 */
bool domain_sync_hold_rcu(struct iovt_domain *d, bool *ref)
{
	*ref = false;
	if (domain_sync_trylock_rcu(d))
		return true;
	*ref = domain_tryget(d);
	return *ref;
}

/* sync_lock held: spans a sync left for a later one (failed calls, the cap). */
bool domain_spans_left(const struct iovt_domain *d)
{
	return !range_set_empty(&d->retry) || !range_set_empty(&d->capped);
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
 * Moves up to `budget` pages of span from `from` into `todo`, starting at
 * *cursor (just past what the previous sync took) and wrapping around, so
 * that spans that keep failing cannot starve the others; a range may be
 * split (windows grow to whole extents anyway). Returns the pages moved.
 * What is left stays for the next sync.
 */
static uint64_t take_budget(struct range_set *todo, struct range_set *from, uint64_t *cursor,
			    uint64_t budget, struct iovt_domain *d)
{
	uint64_t moved = 0;
	size_t n, start = 0, cnt = 0;
	bool split = false;

	if (!budget || range_set_empty(from))
		return 0;
	if (from->all) {
		/* Only an ENOMEM makes a retry set "all": one whole-domain sync
		 * (bounded by the walk budget) beats 2^(aw-28) slices of it. */
		range_set_add_all(todo);
		range_set_clear(from);
		DSTAT_ADD_OWNED(d, retry_ranges, 1);
		return budget;
	}
	/* Spans that fail again merge back with their neighbours: cut at the
	 * cursor so that the take starts there, not at the merged start. */
	(void)range_set_split_at(from, *cursor); /* ENOMEM: start at the range's first */
	n = from->n;
	while (start < n && from->r[start].last < *cursor)
		start++;
	if (start == n)
		start = 0;
	while (cnt < n && moved < budget) {
		struct range *r = &from->r[(start + cnt) % n];
		uint64_t pages = ((r->last - r->first) >> IOVT_PAGE_SHIFT) + 1;
		if (pages > budget - moved) {
			uint64_t last = r->first + ((budget - moved) << IOVT_PAGE_SHIFT) - 1;
			add_retried(d, todo, r->first, last);
			r->first = last + 1; /* the rest stays */
			*cursor = r->first;
			moved = budget;
			split = true;
			break;
		}
		add_retried(d, todo, r->first, r->last);
		*cursor = r->last + 1;
		moved += pages;
		cnt++;
	}
	DSTAT_ADD_OWNED(d, retry_ranges, cnt + split);
	size_t kept = 0;
	for (size_t k = 0; k < n; k++)
		if ((k + n - start) % n >= cnt)
			from->r[kept++] = from->r[k];
	from->n = kept;
	if (!range_set_empty(from))
		DSTAT_ADD_OWNED(d, retry_deferred, 1);
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
	return domain_sync_locked_carry(d, s, todo, retry_left, NULL);
}

int domain_sync_locked_carry(struct iovt_domain *d, struct sync_scratch *s, struct range_set *todo,
			     bool *retry_left, const struct pend_batch *b)
{
	int rc = 0;

	/* `dead` is set under sync_lock, with the counters folded (destroy). */
	bool dead = atomic_load_explicit(&d->dead, memory_order_relaxed);
	if (b)
		count_batch(d, b, dead, true); /* accepted, dead domain or not */
	if (dead)
		goto out;
	/* What other drainers left pending. A relaxed look is enough: ranges
	 * added after it are their drainer's, whose own fence syncs the domain
	 * after this sync lets go of sync_lock (struct iovt_domain). Most
	 * fences find nothing and skip the lock. */
	bool pending = atomic_load_explicit(&d->pending_any, memory_order_relaxed);
	if (b && b->n == 1 && !b->all && !pending && d->map_notifier &&
	    cds_list_empty(&d->notifiers) && !domain_spans_left(d)) {
		/* The vCPU's PSI + wait with nothing else to do: one range, no
		 * failed spans, no UNMAP-only notifier, the IOTLB unused (MAP
		 * notifier) — what the steps below come to, without the
		 * range-set copy, the budget and the passes (~110 of ~2,300
		 * instructions of a one-page PSI + wait). Under memory pressure
		 * only it differs: no range_set_add that could fail into a
		 * whole-domain sync. */
		struct sync_target t;
		domain_sync_target(d, &t);
		rc = sync_ranges(&t, b->r, 1, s, &s->st, &d->retry);
		domain_fold_stats(d, &s->st);
		goto synced;
	}
	if (pending) {
		pthread_mutex_lock(&d->pending_lock);
		range_set_take(todo, &d->pending);
		atomic_store_explicit(&d->pending_any, false, memory_order_relaxed);
		pthread_mutex_unlock(&d->pending_lock);
	} else {
		range_set_clear(todo);
	}
	if (b)
		add_batch(d, todo, b);
	/* With a MAP notifier, iovt_translate answers from the shadow tree and
	 * never reads the IOTLB: no sweep (it bumped a shared generation with a
	 * locked add on every fence). Detaching the MAP notifier flushes the
	 * IOTLB (retire_map_notifier), so translations cached before the attach,
	 * or by fills that walked before it, are never returned afterwards. */
	if (!d->map_notifier)
		iotlb_drop(d, todo);

	uint64_t top = domain_top(d);
	uint64_t budget = IOVT_RETRY_BUDGET_PAGES;
	/* UNMAP-only notifiers get what the guest invalidated, nothing more:
	 * spans retried for the MAP sink are no news to them. */
	if (!range_set_empty(todo) && !cds_list_empty(&d->notifiers))
		rc = notify_raw(d, todo);
	if (todo->all) {
		range_set_clear(&d->retry); /* a whole-domain sync covers them */
		range_set_clear(&d->capped);
	} else {
		/* What the guest invalidated again is synced now: drop it from the
		 * failure sets (the sync puts back what still fails) — else a
		 * span the guest unmapped since could stay "capped" forever. */
		bool retry_any = !range_set_empty(&d->retry), capped_any = !range_set_empty(&d->capped);
		for (size_t i = 0; (retry_any || capped_any) && i < todo->n; i++) {
			if (retry_any)
				range_set_remove(&d->retry, todo->r[i].first, todo->r[i].last);
			if (capped_any)
				range_set_remove(&d->capped, todo->r[i].first, todo->r[i].last);
		}
		/* Half the budget is kept for capped spans when they can go in. */
		bool capped_next = !range_set_empty(&d->capped) && cap_has_room(d);
		uint64_t rb = capped_next ? budget / 2 : budget;
		if (!range_set_empty(&d->retry)) {
			budget -= take_budget(todo, &d->retry, &d->retry_cursor, rb, d);
			if (todo->all) /* the retry set was `all`: a whole-domain sync */
				range_set_clear(&d->capped);
			/* The retried spans are synced now too: capped spans
			 * inside them leave the set as well (the sync puts back
			 * what the cap still refuses). Left there, a span a
			 * retry had mapped stayed "capped" once the cap was full
			 * again, and every fence returned -ENOSPC (found by
			 * review). */
			for (size_t i = 0; capped_any && i < todo->n; i++)
				range_set_remove(&d->capped, todo->r[i].first, todo->r[i].last);
		}
	}
	/* Two passes at most: the second only when this sync's UNMAPs made
	 * room under the cap for spans it had kept out. One walk budget for
	 * both (iovt.h, walk_budget: the entries one sync reads): the second
	 * pass gets what the first left, and none left leaves the capped
	 * spans in their set (a fresh budget let one fence read up to twice
	 * walk_budget; found by review, hostile-budget-cap-passes). A window
	 * of either pass that the budget cuts short goes to the retry set
	 * (guest_view_runs: every window but a first pass's first one and one
	 * longer than IOVT_RETRY_BUDGET_PAGES; cut again, only its rest). */
	uint64_t walk_left = 0;
	/* The previous sync's cut windows; this sync records its own. */
	struct range_set cut_tmp = d->cut_prev;
	d->cut_prev = d->cut;
	d->cut = cut_tmp;
	range_set_clear(&d->cut);
	for (int pass = 0; pass < 2; pass++) {
		if (pass && !walk_left)
			break;
		if (!todo->all && !range_set_empty(&d->capped) && cap_has_room(d))
			budget -= take_budget(todo, &d->capped, &d->capped_cursor, budget, d);
		if (range_set_empty(todo))
			break;
		if (d->map_notifier) {
			struct sync_target t;
			struct range all = { 0, top };
			domain_sync_target(d, &t);
			if (pass && t.walk.budget) /* 0: no bound */
				t.walk_spent = t.walk.budget - walk_left;
			t.cut_before = &d->cut_prev;
			t.cut_now = &d->cut;
			int src = todo->all ? sync_ranges(&t, &all, 1, s, &s->st, &d->retry)
					    : sync_ranges(&t, todo->r, todo->n, s, &s->st, &d->retry);
			walk_left = s->walk_left;
			domain_fold_stats(d, &s->st);
			if (src && !rc)
				rc = src;
		}
		range_set_clear(todo);
	}
synced:
	/* Spans still kept out by the cap: the domain is not equal to the
	 * guest view, and every fence that syncs it says so (no re-walk). */
	if (!rc && !range_set_empty(&d->capped))
		rc = -ENOSPC;
out:;
	/* Capped spans keep the domain on the fences' lists even without room:
	 * a sync of it then costs a lock and says -ENOSPC, nothing more. */
	bool left = domain_spans_left(d);
	if (left)
		domain_mark_dirty(d); /* iovt_fence retries it */
	if (retry_left)
		*retry_left = left;
	return rc;
}

/* A DSI and its wait, now (set_root, a refused RAM removal); sync_lock held. */
int domain_sync_all_locked(struct iovt_domain *d, struct sync_scratch *s, struct range_set *todo)
{
	pthread_mutex_lock(&d->pending_lock);
	range_set_add_all(&d->pending);
	atomic_store_explicit(&d->pending_any, true, memory_order_relaxed);
	pthread_mutex_unlock(&d->pending_lock);
	return domain_sync_locked(d, s, todo, NULL);
}

void domain_lock_control(struct iovt_domain *d)
{
	atomic_fetch_add_explicit(&d->control_waiting, 1, memory_order_seq_cst);
	sync_lock_take(&d->sync_lock);
	atomic_fetch_sub_explicit(&d->control_waiting, 1, memory_order_relaxed);
}

void domain_lock_drainer(struct iovt_domain *d)
{
	/* Spins only while a control call is queued and not yet in: it takes
	 * the lock at the holder's next unlock. Nothing that holds sync_lock
	 * waits for this loop, so it cannot deadlock. */
	for (unsigned spins = 0; atomic_load_explicit(&d->control_waiting, memory_order_seq_cst);
	     spins++) {
		if (spins < 64)
			cpu_relax();
		else
			sched_yield();
	}
	sync_lock_take(&d->sync_lock);
}

/* The same, taking the lock; the caller holds a reference (iovt_fence: the dirty queue's). */
int domain_sync(struct iovt_domain *d, struct sync_scratch *s, struct range_set *todo,
		bool *retry_left)
{
	domain_lock_drainer(d);
	int rc = domain_sync_locked(d, s, todo, retry_left);
	sync_lock_release(&d->sync_lock);
	return rc;
}

static int push_region_extent(void *arg, const struct iovt_extent *x)
{
	struct sync_scratch *s = ((void **)arg)[0];
	uint32_t region = *(const uint32_t *)((void **)arg)[1];
	if (x->region != region)
		return 0;
	struct plan_unmap g = { x->iova, x->iova + x->size - 1, x->size >> IOVT_PAGE_SHIFT };
	return vec_push(&s->unmaps, g) ? -ENOMEM : 0;
}

/*
 * Guest RAM `region` is gone (iovt_guest_ram_remove, control lock, after
 * the grace period): unmaps every extent into it from the MAP sink and
 * tells UNMAP-only notifiers to drop the whole domain (they cache
 * translations we cannot enumerate). 0, or the sink's error when an UNMAP
 * was refused (that extent stays, recorded: record == sink).
 */
int domain_ram_purge(struct iovt_domain *d, uint32_t region, struct sync_scratch *s)
{
	int rc = 0;

	domain_lock_control(d);
	if (atomic_load_explicit(&d->dead, memory_order_relaxed))
		goto out;
	/* After the grace period: no fill can still walk the old map. */
	domain_iotlb_flush(d);
	rc = notify_raw(d, &(struct range_set){ .all = true });
	if (!d->map_notifier)
		goto out;
	vec_clear(&s->unmaps);
	vec_clear(&s->maps);
	void *arg[2] = { s, &region };
	int r = shadow_tree_iterate(d->tree, 0, domain_top(d), push_region_extent, arg);
	if (r) {
		/* no memory to list the region's extents: nothing was asked, the
		 * removal fails (-EBUSY) — counted (it was not: review) */
		STAT_ADD(d, errors[IOVT_ERR_NO_MEMORY], 1);
		vec_clear(&s->unmaps);
		if (!rc)
			rc = r;
		goto out;
	}
	uint64_t before = shadow_tree_count(d->tree);
	struct sync_target t;
	struct sync_stats st = { 0 };
	struct range_set failed;
	range_set_init(&failed, 0);
	domain_sync_target(d, &t);
	r = apply_plan(&t, s, &st, &failed);
	domain_fold_stats(d, &st);
	/* what the sink really unmapped (a refused UNMAP stays recorded) */
	DSTAT_ADD_OWNED(d, ram_purged, before - shadow_tree_count(d->tree));
	if (!r && !range_set_empty(&failed))
		r = -EBUSY;
	if (r && !rc)
		rc = r;
	range_set_free(&failed);
out:
	/* its UNMAP list may have grown with the region's extents: a one-page
	 * sync on this scratch does not trim (sync_ranges) */
	sync_scratch_trim(s);
	sync_lock_release(&d->sync_lock);
	return rc;
}
