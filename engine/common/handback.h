/* SPDX-License-Identifier: MIT */
/*
 * What a reuser of retired memory needs (engine/tree/node_pool.c's tree
 * nodes; the IOTLB's line recycler shared it until its lines moved into
 * its tables, the twenty-fifth session): a per-thread owner
 * whose batches come back from their call_rcu callbacks, the owner's bound
 * on what it keeps and how that bound grows, and the owner's references.
 * Each keeps its own batch type, back list and count of what it holds.
 *
 * The bound grows only with the thread's own need: it doubles, up to a
 * ceiling, each time the thread found nothing to reuse after a callback
 * had freed one of its batches for want of room (the thread needed what
 * was freed). Relaxed: a heuristic and a bound (one callback thread).
 *
 * Synchronization:
 *   handback_init, handback_dry     the owner thread
 *   handback_dropped                a callback
 *   handback_ref, handback_put      any holder (the thread, a batch)
 */
#ifndef IOVT_COMMON_HANDBACK_H
#define IOVT_COMMON_HANDBACK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct handback {
	_Atomic uint32_t allowance; /* the bound: written by the owner thread, read by callbacks */
	_Atomic uint32_t dropped;   /* a callback freed a batch for want of room, not yet seen */
	_Atomic uint32_t refs;      /* the thread's + one per batch it has out */
};

static inline void handback_init(struct handback *h, uint32_t allowance)
{
	atomic_init(&h->allowance, allowance);
	atomic_init(&h->dropped, 0);
	atomic_init(&h->refs, 1);
}

static inline uint32_t handback_allowance(const struct handback *h)
{
	return atomic_load_explicit(&h->allowance, memory_order_relaxed);
}

/* A callback freed a batch because the owner held its allowance. */
static inline void handback_dropped(struct handback *h)
{
	if (!atomic_load_explicit(&h->dropped, memory_order_relaxed))
		atomic_store_explicit(&h->dropped, 1, memory_order_relaxed);
}

static __attribute__((noinline, unused)) void handback_grow(struct handback *h, uint32_t ceil)
{
	atomic_store_explicit(&h->dropped, 0, memory_order_relaxed);
	uint32_t a = atomic_load_explicit(&h->allowance, memory_order_relaxed);
	if (a < ceil)
		atomic_store_explicit(&h->allowance, 2 * a, memory_order_relaxed);
}

/* The owner found nothing to reuse: its allowance doubles (up to ceil)
 * when a callback dropped a batch since it last looked. */
static inline void handback_dry(struct handback *h, uint32_t ceil)
{
	if (atomic_load_explicit(&h->dropped, memory_order_relaxed))
		handback_grow(h, ceil);
}

static inline void handback_ref(struct handback *h)
{
	atomic_fetch_add_explicit(&h->refs, 1, memory_order_relaxed);
}

/* True when that was the last reference. acq_rel: the last put sees every
 * push the other holders made before their put (the owner's free then
 * frees what they pushed). */
static inline bool handback_put(struct handback *h)
{
	return atomic_fetch_sub_explicit(&h->refs, 1, memory_order_acq_rel) == 1;
}

#endif
