/* SPDX-License-Identifier: MIT */
/*
 * The intake ring: one producer's queue of invalidations and fences.
 *
 * Single producer (the thread that owns the iovt_queue). One consumer at a
 * time: consumers serialise on the queue's `draining` flag (drain.c), so a
 * ring never sees two pops at once, but successive pops may come from
 * different threads (a worker, then the producer itself draining inline).
 *
 * Two backends behind one small ops table, chosen per queue:
 *  - wfcq (ring_wfcq.c): liburcu's wait-free concurrent queue carrying
 *    chunks of 32 items; the producer fills the tail chunk in place and
 *    enqueues a node only once per chunk; drained chunks come back to the
 *    producer through a liburcu wait-free stack. No DPDK needed.
 *  - rte_ring (engine/dpdk/ring_rte.c, in libiovt-dpdk): DPDK's ring of
 *    16-byte elements, single-producer/single-consumer, on plain memory (no
 *    EAL needed); the core reaches it through engine/glue.h.
 * Both are bounded by `capacity` items: push() takes what fits.
 */
#ifndef IOVT_INTAKE_RING_H
#define IOVT_INTAKE_RING_H

#include <stdint.h>

enum item_kind { ITEM_PSI = 1, ITEM_DSI, ITEM_GLOBAL, ITEM_FENCE };

/* 16 bytes: DPDK's element rings copy it in two 8-byte moves. */
struct intake_item {
	uint64_t arg;   /* PSI: first IOVA of the block; FENCE: its ticket */
	uint16_t did;
	uint8_t kind;   /* enum item_kind */
	uint8_t am;     /* PSI: mask order */
	uint8_t ih;     /* PSI: the invalidation hint (counted) */
	uint8_t pad[3];
};

struct intake_ring;

struct intake_ring_ops {
	/* Producer: appends up to n items, returns how many fit. */
	unsigned (*push)(struct intake_ring *r, const struct intake_item *it, unsigned n);
	/* Consumer: takes up to max items, returns how many. Fewer than max
	 * only when no more were there: with the producer not pushing (the
	 * poster draining its own ring), a short pop leaves the ring empty. */
	unsigned (*pop)(struct intake_ring *r, struct intake_item *out, unsigned max);
	/* Items in the ring now (a racy snapshot). */
	unsigned (*count)(const struct intake_ring *r);
	void (*destroy)(struct intake_ring *r);
};

struct intake_ring {
	const struct intake_ring_ops *ops;
	unsigned capacity;
};

/* Each returns NULL on ENOMEM (or on a capacity the backend cannot take). */
struct intake_ring *intake_ring_wfcq_create(unsigned capacity);
struct intake_ring *intake_ring_rte_create(unsigned capacity); /* libiovt-dpdk */

#endif
