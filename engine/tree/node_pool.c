/* SPDX-License-Identifier: MIT */
/* Retired shadow-tree nodes: handed back to the thread that retired them
 * after a grace period and reused there (see node_pool.h). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "common/alloc.h"
#include "common/handback.h"
#include "common/poison.h"
#include "tree/node_pool.h"

#define POISON IOVT_POISON
#define UNPOISON IOVT_UNPOISON

/* A thread's: the batches handed back to it, and its pooled nodes. */
struct npool_owner {
	_Atomic(struct npool_batch *) back; /* pushed by callbacks after their grace period */
	_Atomic uint32_t back_nodes;    /* nodes on back */
	_Atomic uint32_t pooled;        /* nodes in cls[] (written by the thread only) */
	struct handback hb;             /* back_nodes + pooled bound (nodes), drops, references (one per batch not yet done) */
	_Atomic bool alive;             /* its thread has not exited */
	/* Pooled nodes by size class (thread only): pointer arrays, not
	 * lists linked through the nodes, so a take touches no node line
	 * (a retired node is cold: a link written into each cost a miss per
	 * node on top of the one its reuse takes). */
	struct {
		void **p;
		uint32_t n, cap;
	} cls[NPOOL_CLASSES];
	struct npool_batch *spare;      /* an emptied batch, the next npool_batch_new (thread only) */
};

static size_t g_bytes[NPOOL_CLASSES];
static __thread struct npool_owner *me;
static pthread_key_t owner_key;
static pthread_once_t owner_once = PTHREAD_ONCE_INIT;
/* Bytes on every back list and in every pool: one relaxed RMW per node
 * handed out (a per-thread counter and a registry of threads to sum them
 * put a mutex in every stats read, which blocks on nothing). */
static _Atomic uint64_t g_held;
/* All threads together hold at most this (npool_test_global_ceiling). */
static _Atomic uint64_t g_ceil = NPOOL_GLOBAL_CEIL;
void (*npool_test_before_push)(void);

void npool_init(const size_t bytes[NPOOL_CLASSES])
{
	for (unsigned c = 0; c < NPOOL_CLASSES; c++)
		g_bytes[c] = bytes[c];
}

static void batch_free_nodes(struct npool_batch *b, bool poisoned)
{
	for (uint32_t i = 0; i < b->n; i++) {
		if (poisoned)
			UNPOISON(b->p[i], g_bytes[b->cls[i]]);
		iovt_free(0, b->p[i], g_bytes[b->cls[i]]);
	}
	iovt_free(0, b, sizeof(*b));
}

/* Frees what the pool holds: what the last batches brought and the thread
 * did not use (a size it does not allocate now). */
static void pool_drop(struct npool_owner *o)
{
	if (!atomic_load_explicit(&o->pooled, memory_order_relaxed))
		return;
	uint64_t bytes = 0;
	for (unsigned c = 0; c < NPOOL_CLASSES; c++) {
		for (uint32_t i = 0; i < o->cls[c].n; i++) {
			UNPOISON(o->cls[c].p[i], g_bytes[c]);
			iovt_free(0, o->cls[c].p[i], g_bytes[c]);
		}
		bytes += o->cls[c].n * g_bytes[c];
		o->cls[c].n = 0;
	}
	atomic_store_explicit(&o->pooled, 0, memory_order_relaxed);
	atomic_fetch_sub_explicit(&g_held, bytes, memory_order_relaxed);
}

/* Room for one more node of class c; false: no memory for it. */
static bool class_room(struct npool_owner *o, unsigned c)
{
	if (o->cls[c].n < o->cls[c].cap)
		return true;
	uint32_t cap = o->cls[c].cap ? 2 * o->cls[c].cap : 64;
	void **p = iovt_alloc(0, cap * sizeof(void *));
	if (!p)
		return false;
	for (uint32_t i = 0; i < o->cls[c].n; i++)
		p[i] = o->cls[c].p[i];
	if (o->cls[c].p)
		iovt_free(0, o->cls[c].p, o->cls[c].cap * sizeof(void *));
	o->cls[c].p = p;
	o->cls[c].cap = cap;
	return true;
}

/* Everything handed back so far, sorted into the class arrays: one
 * exchange (callbacks only push, only this thread takes: no ABA). */
static void take_back(struct npool_owner *o)
{
	struct npool_batch *b = atomic_exchange_explicit(&o->back, NULL, memory_order_acquire);
	pool_drop(o);
	uint32_t nodes = 0, kept = 0;
	uint64_t unkept = 0;
	while (b) {
		struct npool_batch *next = b->next;
		for (uint32_t i = 0; i < b->n; i++) {
			unsigned c = b->cls[i];
			if (class_room(o, c)) {
				o->cls[c].p[o->cls[c].n++] = b->p[i];
				kept++;
			} else { /* no memory for the array: freed, as without a pool */
				UNPOISON(b->p[i], g_bytes[c]);
				iovt_free(0, b->p[i], g_bytes[c]);
				unkept += g_bytes[c];
			}
		}
		nodes += b->n;
		if (!o->spare) {
			b->n = 0;
			o->spare = b;
		} else {
			iovt_free(0, b, sizeof(*b));
		}
		b = next;
	}
	/* Moved from back to pooled: the pool's total never dips below
	 * what is held (pooled first), so a callback never over-admits. */
	atomic_store_explicit(&o->pooled, atomic_load_explicit(&o->pooled, memory_order_relaxed) + kept,
			      memory_order_relaxed);
	atomic_fetch_sub_explicit(&o->back_nodes, nodes, memory_order_relaxed);
	if (unkept)
		atomic_fetch_sub_explicit(&g_held, unkept, memory_order_relaxed);
}

void *npool_get(unsigned c)
{
	struct npool_owner *o = me;
	/* While a fault hook is set the pool hands nothing out: every node
	 * then comes from iovt_alloc, which asks the hook once (node_pool.h). */
	if (!o || __builtin_expect(iovt_alloc_fault != NULL, 0))
		return NULL;
	if (!o->cls[c].n) {
		if (atomic_load_explicit(&o->back, memory_order_relaxed))
			take_back(o);
		if (!o->cls[c].n) {
			handback_dry(&o->hb, NPOOL_HOLD_CEIL);
			return NULL;
		}
	}
	uint32_t n = --o->cls[c].n;
	void *x = o->cls[c].p[n];
	if (n) /* the class's next one: its line is cold (retired a grace period ago) */
		__builtin_prefetch(o->cls[c].p[n - 1], 1);
	atomic_store_explicit(&o->pooled, atomic_load_explicit(&o->pooled, memory_order_relaxed) - 1,
			      memory_order_relaxed);
	atomic_fetch_sub_explicit(&g_held, g_bytes[c], memory_order_relaxed);
	UNPOISON(x, g_bytes[c]);
	return x;
}

/* Frees what was handed back and not taken (poisoned). */
static void back_free(struct npool_owner *o)
{
	/* seq_cst: the exit's against a late push (batch_back) */
	struct npool_batch *b = atomic_exchange_explicit(&o->back, NULL, memory_order_seq_cst);
	while (b) {
		struct npool_batch *next = b->next;
		uint64_t bytes = 0;
		for (uint32_t i = 0; i < b->n; i++)
			bytes += g_bytes[b->cls[i]];
		atomic_fetch_sub_explicit(&o->back_nodes, b->n, memory_order_relaxed);
		atomic_fetch_sub_explicit(&g_held, bytes, memory_order_relaxed);
		batch_free_nodes(b, true);
		b = next;
	}
}

/* The thread is gone and so is every batch it owned: what was pushed
 * after its exit, then the owner. */
static void owner_free(struct npool_owner *o)
{
	back_free(o);
	iovt_free(0, o, sizeof(*o));
}

static void owner_put(struct npool_owner *o)
{
	if (handback_put(&o->hb))
		owner_free(o);
}

/* A batch's grace period is over: no reader holds its nodes. The push is a
 * release (seq_cst: see its end), the owner's exchange (take_back) an
 * acquire: the owner's writes into a reused node come after everything
 * this callback saw, which (the grace period, iovt_rcu_callback_enter)
 * includes every read-side section that could have held it. The bound is racy by at most one batch: only
 * this callback pushes (liburcu's one default call_rcu thread), the owner
 * only lowers what it reads. */
static void batch_back(struct rcu_head *h)
{
	iovt_rcu_callback_enter();
	struct npool_batch *b = caa_container_of(h, struct npool_batch, rcu);
	struct npool_owner *o = b->owner;
	uint32_t held = atomic_load_explicit(&o->back_nodes, memory_order_relaxed) +
			atomic_load_explicit(&o->pooled, memory_order_relaxed);
	const bool room = held + b->n <= handback_allowance(&o->hb);
	uint64_t bytes = 0;
	for (uint32_t i = 0; i < b->n; i++)
		bytes += g_bytes[b->cls[i]];
	if (atomic_load_explicit(&o->alive, memory_order_relaxed) && room &&
	    atomic_load_explicit(&g_held, memory_order_relaxed) + bytes <=
		    atomic_load_explicit(&g_ceil, memory_order_relaxed)) {
		if (__builtin_expect(npool_test_before_push != NULL, 0))
			npool_test_before_push();
		for (uint32_t i = 0; i < b->n; i++)
			POISON(b->p[i], g_bytes[b->cls[i]]);
		atomic_fetch_add_explicit(&o->back_nodes, b->n, memory_order_relaxed);
		atomic_fetch_add_explicit(&g_held, bytes, memory_order_relaxed);
		struct npool_batch *top = atomic_load_explicit(&o->back, memory_order_relaxed);
		do
			b->next = top;
		while (!atomic_compare_exchange_weak_explicit(&o->back, &top, b, memory_order_seq_cst,
							      memory_order_relaxed));
		/* The thread may have exited since the check above: its exit
		 * (alive, then back_free, both seq_cst) then missed this push
		 * unless this load sees it gone; freed here, not held for a dead
		 * thread until its last batch is done (found by review:
		 * tree-pool's `late`). */
		if (!atomic_load_explicit(&o->alive, memory_order_seq_cst))
			back_free(o);
	} else {
		batch_free_nodes(b, false);
		/* Only the thread's own bound lets it grow: past the global
		 * one a larger allowance would not help. */
		if (!room)
			handback_dropped(&o->hb);
	}
	owner_put(o); /* after the push: the last put frees what was pushed */
}

void npool_batch_flush(struct npool_batch *b)
{
	iovt_call_rcu(&b->rcu, batch_back);
}

void npool_batch_free(struct npool_batch *b)
{
	struct npool_owner *o = b->owner;
	batch_free_nodes(b, false);
	owner_put(o);
}

/* Thread exit (no engine lock held, no read-side section): the pool goes;
 * batches still owned elsewhere hold the owner until they are done. */
static void owner_thread_exit(void *p)
{
	struct npool_owner *o = p;
	me = NULL;
	atomic_store_explicit(&o->alive, false, memory_order_seq_cst);
	back_free(o);
	pool_drop(o);
	for (unsigned c = 0; c < NPOOL_CLASSES; c++)
		if (o->cls[c].p)
			iovt_free(0, o->cls[c].p, o->cls[c].cap * sizeof(void *));
	if (o->spare)
		iovt_free(0, o->spare, sizeof(*o->spare));
	o->spare = NULL;
	owner_put(o);
}

static void owner_key_init(void)
{
	if (pthread_key_create(&owner_key, owner_thread_exit))
		abort();
}

static struct npool_owner *owner_get(void)
{
	struct npool_owner *o = me;
	if (__builtin_expect(o != NULL, 1))
		return o;
	pthread_once(&owner_once, owner_key_init);
	o = iovt_alloc(0, sizeof(*o));
	if (!o)
		return NULL;
	atomic_init(&o->back, NULL);
	atomic_init(&o->back_nodes, 0);
	atomic_init(&o->pooled, 0);
	handback_init(&o->hb, NPOOL_HOLD_MIN);
	atomic_init(&o->alive, true);
	for (unsigned c = 0; c < NPOOL_CLASSES; c++) {
		o->cls[c].p = NULL;
		o->cls[c].n = o->cls[c].cap = 0;
	}
	o->spare = NULL;
	if (pthread_setspecific(owner_key, o)) {
		iovt_free(0, o, sizeof(*o));
		return NULL;
	}
	me = o;
	return o;
}

struct npool_batch *npool_batch_new(void)
{
	struct npool_owner *o = owner_get();
	if (!o)
		return NULL;
	/* The spare too is withheld while a fault hook is set (npool_get). */
	struct npool_batch *b = iovt_alloc_fault ? NULL : o->spare;
	if (b)
		o->spare = NULL;
	else if (!(b = iovt_alloc(0, sizeof(*b))))
		return NULL;
	b->n = 0;
	b->owner = o;
	handback_ref(&o->hb);
	return b;
}

uint64_t npool_held_bytes(void)
{
	return atomic_load_explicit(&g_held, memory_order_relaxed);
}

void npool_test_global_ceiling(uint64_t bytes)
{
	atomic_store_explicit(&g_ceil, bytes ? bytes : NPOOL_GLOBAL_CEIL, memory_order_relaxed);
}

unsigned npool_test_allowance(void)
{
	return me ? handback_allowance(&me->hb) : 0;
}
