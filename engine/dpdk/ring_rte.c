/* SPDX-License-Identifier: MIT */
/*
 * The rte_ring intake ring: DPDK's ring of 16-byte elements, single producer
 * and single consumer (consumers take turns under the queue's flag, each
 * hand-over ordered by that flag's acquire/release).
 *
 * rte_ring_init on our own cache-aligned memory instead of rte_ring_create:
 * no memzone, no name registry, so it works before (or without) rte_eal_init
 * and a queue's name need not be unique.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_ring.h>
#include <rte_ring_elem.h>

#include "intake/ring.h"

struct ring_rte {
	struct intake_ring base;
	struct rte_ring *r;
};

static unsigned rte_push(struct intake_ring *base, const struct intake_item *it, unsigned n)
{
	struct ring_rte *r = (struct ring_rte *)base;
	return rte_ring_sp_enqueue_burst_elem(r->r, it, sizeof(*it), n, NULL);
}

static unsigned rte_pop(struct intake_ring *base, struct intake_item *out, unsigned max)
{
	struct ring_rte *r = (struct ring_rte *)base;
	return rte_ring_sc_dequeue_burst_elem(r->r, out, sizeof(*out), max, NULL);
}

static unsigned rte_count(const struct intake_ring *base)
{
	const struct ring_rte *r = (const struct ring_rte *)base;
	/* rte_ring_count() reads the tails with plain loads; drainers and
	 * iovt_fence call this while the producer moves prod.tail, so read them
	 * atomically (same arithmetic: a snapshot, exact for the owner). */
	uint32_t prod = __atomic_load_n(&r->r->prod.tail, __ATOMIC_ACQUIRE);
	uint32_t cons = __atomic_load_n(&r->r->cons.tail, __ATOMIC_ACQUIRE);
	uint32_t n = (prod - cons) & r->r->mask;
	return n > r->r->capacity ? r->r->capacity : n;
}

static void rte_destroy(struct intake_ring *base)
{
	struct ring_rte *r = (struct ring_rte *)base;
	free(r->r);
	free(r);
}

static const struct intake_ring_ops rte_ops = {
	.push = rte_push,
	.pop = rte_pop,
	.count = rte_count,
	.destroy = rte_destroy,
};

struct intake_ring *intake_ring_rte_create(unsigned capacity)
{
	_Static_assert(sizeof(struct intake_item) % 4 == 0, "rte_ring elements are 4-byte multiples");
	/* EXACT_SZ: `capacity` usable slots in a power-of-two ring one larger. */
	ssize_t bytes = rte_ring_get_memsize_elem(sizeof(struct intake_item),
						  rte_align32pow2(capacity + 1));
	if (bytes < 0)
		return NULL;
	struct ring_rte *r = calloc(1, sizeof(*r));
	size_t sz = ((size_t)bytes + RTE_CACHE_LINE_SIZE - 1) & ~(size_t)(RTE_CACHE_LINE_SIZE - 1);
	/* aligned_alloc itself: libiovt-dpdk cannot see libiovt's internal
	 * fault hook (iovt_aligned_alloc's); sz is already a multiple. */
	void *mem = aligned_alloc(RTE_CACHE_LINE_SIZE, sz);
	if (!r || !mem) {
		free(r);
		free(mem);
		return NULL;
	}
	/* The header only: rte_ring_init sets it up, and a slot is written
	 * before it is read. Zeroing all 64-128 KiB cost a thread's first post
	 * microseconds (and every page at once); untouched, pages come as the
	 * ring first wraps through them. */
	memset(mem, 0, sizeof(struct rte_ring));
	r->r = mem;
	if (rte_ring_init(r->r, "iovt-intake", capacity,
			  RING_F_SP_ENQ | RING_F_SC_DEQ | RING_F_EXACT_SZ) != 0) {
		free(mem);
		free(r);
		return NULL;
	}
	r->base.ops = &rte_ops;
	r->base.capacity = capacity;
	return &r->base;
}
