/* SPDX-License-Identifier: MIT */
/*
 * The wfcq intake ring: liburcu's wait-free concurrent queue, carrying chunks.
 *
 * One wfcqueue node per item would cost an enqueue (an atomic exchange) and
 * a node per invalidation. Instead the producer fills the tail chunk in
 * place — a 16-byte copy and a release store of the chunk's count — and
 * enqueues a node only when it starts a new chunk. The consumer reads up to
 * the count it observes; a chunk that is not full is still the producer's,
 * so the consumer leaves it at the head until it fills. Full, drained chunks
 * go back to the producer on a liburcu wait-free stack (consumer pushes,
 * the single producer takes them all at once), so steady state allocates
 * nothing.
 *
 * Neither side ever waits for the other. liburcu's "blocking" calls spin
 * while a concurrent enqueue or push is between its exchange and its link
 * store, and after ten tries sleep 10 ms in poll(): a producer or consumer
 * preempted in that window would stall a vCPU's post or a worker's drain.
 * So the consumer dequeues with the non-blocking call (WOULDBLOCK: the
 * producer is mid-enqueue of a later chunk; stop, the next pop gets it),
 * and the producer walks the popped free list with the non-blocking next
 * (an unlinked node stays in `reclaim` for later; meanwhile a new chunk
 * is allocated).
 */
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <urcu/wfcqueue.h>
#include <urcu/wfstack.h>

#include "common/rcu.h"
#include "common/alloc.h"
#include "intake/ring.h"

#ifdef IOVT_TSAN
/* liburcu's queue and stack are not instrumented: say what they order. */
#define handed_over(p) __tsan_release(p)
#define taken_over(p) __tsan_acquire(p)
#else
#define handed_over(p) ((void)(p))
#define taken_over(p) ((void)(p))
#endif

#define CHUNK_ITEMS 32u

struct chunk {
	struct cds_wfcq_node node;   /* in the queue: producer -> consumer */
	struct cds_wfs_node free;    /* on the free stack: consumer -> producer */
	struct chunk *next_spare;    /* producer's private free list */
	_Atomic uint32_t n;          /* items written; release by the producer */
	uint32_t head;               /* items consumed (consumer) */
	struct intake_item it[CHUNK_ITEMS];
};

struct ring_wfcq {
	struct intake_ring base;
	struct __cds_wfcq_head head;
	struct cds_wfcq_tail tail;
	struct __cds_wfs_stack freed;
	/* producer */
	alignas(64) struct chunk *last;   /* the chunk being filled (already queued) */
	struct chunk *spare;
	struct cds_wfs_node *reclaim;      /* popped free list, not yet walked */
	_Atomic uint64_t pushed;
	/* consumer */
	alignas(64) struct chunk *cur;    /* dequeued, not yet drained */
	_Atomic uint64_t popped;
};

/* One item (a vCPU's PSI, popped by its own fence) is two moves, not a
 * call to memcpy with a variable length (~20 instructions). */
static inline void copy_items(struct intake_item *to, const struct intake_item *from, unsigned m)
{
	if (m == 1)
		*to = *from;
	else
		memcpy(to, from, m * sizeof(*to));
}

/* Moves freed chunks to the spare list, as far as their links are visible. Producer. */
static void reclaim_chunks(struct ring_wfcq *r)
{
	if (!r->reclaim) {
		struct cds_wfs_head *h = __cds_wfs_pop_all(&r->freed);
		r->reclaim = h ? cds_wfs_first(h) : NULL;
	}
	struct cds_wfs_node *node = r->reclaim;
	while (node) {
		struct cds_wfs_node *next = cds_wfs_next_nonblocking(node);
		if (next == CDS_WFS_WOULDBLOCK)
			break; /* its pusher is between exchange and link: later */
		struct chunk *c = caa_container_of(node, struct chunk, free);
		taken_over(c);
		c->next_spare = r->spare;
		r->spare = c;
		node = next;
	}
	r->reclaim = node;
}

static struct chunk *take_chunk(struct ring_wfcq *r)
{
	if (!r->spare)
		reclaim_chunks(r);
	struct chunk *c = r->spare;
	if (c)
		r->spare = c->next_spare;
	else if (!(c = iovt_aligned_alloc(64, sizeof(*c))))
		return NULL;
	atomic_store_explicit(&c->n, 0, memory_order_relaxed);
	c->head = 0;
	cds_wfcq_node_init(&c->node);
	handed_over(c);
	cds_wfcq_enqueue(&r->head, &r->tail, &c->node);
	return c;
}

static __attribute__((noinline)) unsigned push_many(struct ring_wfcq *r, const struct intake_item *it,
						     unsigned n)
{
	struct intake_ring *base = &r->base;
	uint64_t pushed = atomic_load_explicit(&r->pushed, memory_order_relaxed);
	uint64_t used = pushed - atomic_load_explicit(&r->popped, memory_order_acquire);
	unsigned room = base->capacity - (unsigned)used;
	if (n > room)
		n = room;
	for (unsigned done = 0; done < n;) {
		struct chunk *c = r->last;
		uint32_t k = c ? atomic_load_explicit(&c->n, memory_order_relaxed) : CHUNK_ITEMS;
		if (k == CHUNK_ITEMS) {
			if (!(c = take_chunk(r))) {
				n = done;
				break;
			}
			r->last = c;
			k = 0;
		}
		unsigned m = CHUNK_ITEMS - k < n - done ? CHUNK_ITEMS - k : n - done;
		copy_items(&c->it[k], &it[done], m);
		atomic_store_explicit(&c->n, k + m, memory_order_release);
		done += m;
	}
	atomic_store_explicit(&r->pushed, pushed + n, memory_order_release);
	return n;
}

/* One item into the chunk being filled, with room for it: the vCPU's PSI.
 * The same stores as push_many, in the same order, without its loop (its
 * frame and loop were ~70 instructions a post against rte_ring's ~10). */
static unsigned wfcq_push(struct intake_ring *base, const struct intake_item *it, unsigned n)
{
	struct ring_wfcq *r = caa_container_of(base, struct ring_wfcq, base);
	struct chunk *c = r->last;
	if (n == 1 && c) {
		uint32_t k = atomic_load_explicit(&c->n, memory_order_relaxed);
		uint64_t pushed = atomic_load_explicit(&r->pushed, memory_order_relaxed);
		if (k < CHUNK_ITEMS &&
		    pushed - atomic_load_explicit(&r->popped, memory_order_acquire) < base->capacity) {
			c->it[k] = *it;
			atomic_store_explicit(&c->n, k + 1, memory_order_release);
			atomic_store_explicit(&r->pushed, pushed + 1, memory_order_release);
			return 1;
		}
	}
	return push_many(r, it, n);
}

static __attribute__((noinline)) unsigned pop_many(struct ring_wfcq *r, struct intake_item *out,
						    unsigned max)
{
	unsigned got = 0;

	while (got < max) {
		struct chunk *c = r->cur;
		if (!c) {
			struct cds_wfcq_node *node = __cds_wfcq_dequeue_nonblocking(&r->head, &r->tail);
			if (!node || node == CDS_WFCQ_WOULDBLOCK)
				break; /* empty, or the next chunk is still being linked */
			c = r->cur = caa_container_of(node, struct chunk, node);
			taken_over(c);
		}
		uint32_t n = atomic_load_explicit(&c->n, memory_order_acquire);
		if (c->head < n) {
			unsigned m = n - c->head < max - got ? n - c->head : max - got;
			copy_items(&out[got], &c->it[c->head], m);
			c->head += m;
			got += m;
		} else if (c->head == CHUNK_ITEMS) {
			/* Full and drained: the producer has moved on. */
			r->cur = NULL;
			cds_wfs_node_init(&c->free);
			handed_over(c);
			cds_wfs_push(&r->freed, &c->free);
		} else {
			break; /* the producer's chunk, drained for now */
		}
	}
	if (got)
		atomic_store_explicit(&r->popped,
				      atomic_load_explicit(&r->popped, memory_order_relaxed) + got,
				      memory_order_release);
	return got;
}

/* Everything there, when it all sits in the chunk the producer is filling
 * (not full: no later chunk holds anything): pop_many's result without its
 * loop. With the producer not pushing, n is all there is. */
static unsigned wfcq_pop(struct intake_ring *base, struct intake_item *out, unsigned max)
{
	struct ring_wfcq *r = caa_container_of(base, struct ring_wfcq, base);
	struct chunk *c = r->cur;
	if (c) {
		uint32_t n = atomic_load_explicit(&c->n, memory_order_acquire);
		uint32_t h = c->head;
		if (n < CHUNK_ITEMS && n - h <= max) {
			if (n == h)
				return 0;
			copy_items(out, &c->it[h], n - h);
			c->head = n;
			atomic_store_explicit(&r->popped,
					      atomic_load_explicit(&r->popped, memory_order_relaxed) + (n - h),
					      memory_order_release);
			return n - h;
		}
	}
	return pop_many(r, out, max);
}

static unsigned wfcq_count(const struct intake_ring *base)
{
	const struct ring_wfcq *r = caa_container_of(base, struct ring_wfcq, base);
	/* popped first: pushed read after it is never below it. Read the other
	 * way, a consumer popping in between made the difference wrap to ~2^32
	 * (a locked iovt_fence then drained a streaming producer's queue for
	 * as long as it streamed; found by review). Clamped as the rte ring's. */
	uint64_t popped = atomic_load_explicit(&r->popped, memory_order_acquire);
	uint64_t n = atomic_load_explicit(&r->pushed, memory_order_acquire) - popped;
	return (unsigned)(n < base->capacity ? n : base->capacity);
}

static void wfcq_destroy(struct intake_ring *base)
{
	struct ring_wfcq *r = caa_container_of(base, struct ring_wfcq, base);
	struct cds_wfcq_node *node;
	struct cds_wfs_node *fn, *next;

	free(r->cur);
	while ((node = __cds_wfcq_dequeue_blocking(&r->head, &r->tail)))
		free(caa_container_of(node, struct chunk, node));
	reclaim_chunks(r); /* no pusher left: every link is visible */
	struct cds_wfs_head *h = __cds_wfs_pop_all(&r->freed);
	cds_wfs_for_each_blocking_safe(h, fn, next)
		free(caa_container_of(fn, struct chunk, free));
	while (r->spare) {
		struct chunk *c = r->spare;
		r->spare = c->next_spare;
		free(c);
	}
	free(r);
}

static const struct intake_ring_ops wfcq_ops = {
	.push = wfcq_push,
	.pop = wfcq_pop,
	.count = wfcq_count,
	.destroy = wfcq_destroy,
};

struct intake_ring *intake_ring_wfcq_create(unsigned capacity)
{
	struct ring_wfcq *r = iovt_aligned_alloc(64, sizeof(*r));
	if (!r)
		return NULL;
	memset(r, 0, sizeof(*r));
	r->base.ops = &wfcq_ops;
	r->base.capacity = capacity;
	__cds_wfcq_init(&r->head, &r->tail);
	__cds_wfs_init(&r->freed);
	return &r->base;
}
