/* SPDX-License-Identifier: MIT */
/* IOTLB entry lines: retired in per-thread batches, handed back to their
 * thread after a grace period and reused there (see recycle.h). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "common/alloc.h"
#include "common/handback.h"
#include "common/poison.h"
#include "common/rcu.h"
#include "iotlb/recycle.h"

#define POISON(p) IOVT_POISON((p), 64)
#define UNPOISON(p) IOVT_UNPOISON((p), 64)

#define LINE 64
#define AHEAD 8 /* lines prefetched ahead of their reuse */

struct owner;

struct recycle_batch {
	struct rcu_head rcu;
	struct recycle_batch *next;  /* on an owner's back or ready list */
	struct owner *owner;
	uint32_t n;
	void *line[RECYCLE_BATCH];
};

/* A thread's: what it retires, and what it got back. */
struct owner {
	_Atomic(struct recycle_batch *) back; /* pushed by callbacks after their grace period */
	_Atomic uint32_t held;          /* batches on back (a bound, not exact) */
	struct handback hb;             /* held's bound (in batches), drops, references (one per batch in flight) */
	struct recycle_batch *cur;      /* being filled by recycle_retire (thread only) */
	struct recycle_batch *ready;    /* taken from back: lines to reuse (thread only) */
	struct recycle_batch *spare;    /* an emptied batch, the next cur (thread only) */
};

static __thread struct owner *me;
/* Batches handed back and not yet used up, all threads (recycle_held_bytes:
 * counted to the batch, one RMW per 4096 lines), and their bound. */
static _Atomic uint64_t g_batches;
static _Atomic uint64_t g_ceil = RECYCLE_GLOBAL_CEIL;
static pthread_key_t owner_key;
static pthread_once_t owner_once = PTHREAD_ONCE_INIT;

static void line_free(void *p)
{
	iovt_free(0, p, LINE);
}

void *recycle_new(void)
{
	struct owner *o = me;
	if (o) {
		struct recycle_batch *b = o->ready;
		if (!b && atomic_load_explicit(&o->back, memory_order_relaxed)) {
			/* Everything handed back so far, in one exchange (no ABA:
			 * callbacks only push, only this thread takes). */
			b = atomic_exchange_explicit(&o->back, NULL, memory_order_acquire);
			uint32_t k = 0;
			for (struct recycle_batch *x = b; x; x = x->next)
				k++;
			atomic_fetch_sub_explicit(&o->held, k, memory_order_relaxed);
			o->ready = b;
		}
		if (b) {
			void *p = b->line[--b->n];
			/* The line handed out AHEAD calls later (see recycle.h);
			 * every batch on the list is full. */
			if (b->n >= AHEAD)
				__builtin_prefetch(b->line[b->n - AHEAD], 1);
			else if (b->next)
				__builtin_prefetch(b->next->line[RECYCLE_BATCH - AHEAD + b->n], 1);
			if (!b->n) {
				atomic_fetch_sub_explicit(&g_batches, 1, memory_order_relaxed);
				o->ready = b->next;
				if (!o->spare)
					o->spare = b;
				else
					iovt_free(0, b, sizeof(*b));
			}
			UNPOISON(p);
			return p;
		}
	}
	if (o)
		handback_dry(&o->hb, RECYCLE_HOLD_CEIL);
	/* The plain 64-byte class: 64-aligned regions in page-aligned slabs
	 * (not mallocx with MALLOCX_ALIGN: its slow path cost ~275
	 * instructions a miss under callgrind). Plain malloc in sanitizer
	 * builds: 16-aligned, slower, as correct. */
	return iovt_alloc(0, LINE);
}

void recycle_free(void *line)
{
	line_free(line);
}

static void batch_free_lines(struct recycle_batch *b, bool poisoned)
{
	for (uint32_t i = 0; i < b->n; i++) {
		if (poisoned)
			UNPOISON(b->line[i]);
		line_free(b->line[i]);
	}
	iovt_free(0, b, sizeof(*b));
}

/* A batch that was handed back (counted in g_batches, poisoned), freed. */
static void batch_free_held(struct recycle_batch *b)
{
	atomic_fetch_sub_explicit(&g_batches, 1, memory_order_relaxed);
	batch_free_lines(b, true);
}

/* The thread is gone and so is every batch it had in flight. */
static void owner_free(struct owner *o)
{
	struct recycle_batch *b = atomic_exchange_explicit(&o->back, NULL, memory_order_acquire);
	while (b) {
		struct recycle_batch *next = b->next;
		batch_free_held(b);
		b = next;
	}
	iovt_free(0, o, sizeof(*o));
}

static void owner_put(struct owner *o)
{
	if (handback_put(&o->hb))
		owner_free(o);
}

/* A batch's grace period is over: no reader holds its lines. Orderings:
 * the push is a release, the owner's exchange (recycle_new) an acquire, so
 * the owner's writes into a reused line come after everything this
 * callback saw, which (the grace period, iovt_rcu_callback_enter) includes
 * every read-side section that could have held the line; b->next and the
 * poisoning travel the same way. `held` is relaxed: it is only a bound
 * (with N callback threads, N may pass the check together: N - 1 over;
 * the engine uses liburcu's one default call_rcu thread). */
static void batch_back(struct rcu_head *h)
{
	iovt_rcu_callback_enter();
	struct recycle_batch *b = caa_container_of(h, struct recycle_batch, rcu);
	struct owner *o = b->owner;
	const bool room = atomic_load_explicit(&o->held, memory_order_relaxed) <
			  handback_allowance(&o->hb);
	if (room && atomic_load_explicit(&g_batches, memory_order_relaxed) <
			    atomic_load_explicit(&g_ceil, memory_order_relaxed)) {
		atomic_fetch_add_explicit(&o->held, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&g_batches, 1, memory_order_relaxed);
		for (uint32_t i = 0; i < b->n; i++)
			POISON(b->line[i]);
		struct recycle_batch *top = atomic_load_explicit(&o->back, memory_order_relaxed);
		do
			b->next = top;
		while (!atomic_compare_exchange_weak_explicit(&o->back, &top, b, memory_order_release,
							      memory_order_relaxed));
	} else {
		batch_free_lines(b, false);
		/* Only the thread's own bound lets it grow (recycle.h). */
		if (!room)
			handback_dropped(&o->hb);
	}
	owner_put(o); /* after the push: the last put frees what was pushed */
}

/* Thread exit (it holds no engine lock and is in no read-side section). */
static void owner_thread_exit(void *p)
{
	struct owner *o = p;
	me = NULL;
	if (o->cur) {
		if (o->cur->n)
			iovt_synchronize_rcu();
		batch_free_lines(o->cur, false);
	}
	while (o->ready) {
		struct recycle_batch *next = o->ready->next;
		batch_free_held(o->ready);
		o->ready = next;
	}
	iovt_free(0, o->spare, sizeof(*o->spare));
	o->cur = o->spare = NULL;
	owner_put(o); /* the batches in flight hold o; the last one frees it */
}

static void owner_key_init(void)
{
	if (pthread_key_create(&owner_key, owner_thread_exit))
		abort();
}

struct recycle_batch *recycle_room(void)
{
	struct owner *o = me;
	if (__builtin_expect(o && o->cur, 1))
		return o->cur;
	if (!o) {
		pthread_once(&owner_once, owner_key_init);
		o = iovt_alloc(0, sizeof(*o));
		if (!o)
			return NULL;
		atomic_init(&o->back, NULL);
		atomic_init(&o->held, 0);
		handback_init(&o->hb, RECYCLE_HOLD_MIN);
		o->cur = o->ready = o->spare = NULL;
		if (pthread_setspecific(owner_key, o)) {
			iovt_free(0, o, sizeof(*o));
			return NULL;
		}
		me = o;
	}
	struct recycle_batch *b = o->spare;
	if (b)
		o->spare = NULL;
	else if (!(b = iovt_alloc(0, sizeof(*b))))
		return NULL;
	b->n = 0;
	b->owner = o;
	o->cur = b;
	return b;
}

void recycle_retire(struct recycle_batch *b, void *line)
{
	b->line[b->n++] = line;
	if (b->n == RECYCLE_BATCH) {
		struct owner *o = b->owner;
		o->cur = NULL;
		handback_ref(&o->hb);
		iovt_call_rcu(&b->rcu, batch_back);
	}
}

uint64_t recycle_held_bytes(void)
{
	return atomic_load_explicit(&g_batches, memory_order_relaxed) * RECYCLE_BATCH * 64;
}

void recycle_test_global_ceiling(unsigned batches)
{
	atomic_store_explicit(&g_ceil, batches ? batches : RECYCLE_GLOBAL_CEIL, memory_order_relaxed);
}

unsigned recycle_test_allowance(void)
{
	return me ? handback_allowance(&me->hb) : 0;
}
