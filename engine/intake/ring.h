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

#include <stddef.h>
#include <stdint.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

_Static_assert(sizeof(struct intake_item) == 16, "an item is 16 bytes");

/*
 * Writes an item in one 16-byte store where the ISA has one: both rings
 * copy an item with 16-byte loads (DPDK's element copy, the wfcq chunk's
 * struct copy), and a 16-byte load cannot be forwarded from the narrower
 * stores a field-by-field initialiser makes: the push would wait for them
 * to reach the cache (perf, fence/map_unmap_1: the ring's copy of the
 * post's item).
 */
static inline void intake_item_set(struct intake_item *it, uint64_t arg, uint16_t did, uint8_t kind,
				   uint8_t am, uint8_t ih)
{
#if defined(__SSE2__) && defined(__ORDER_LITTLE_ENDIAN__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	_Static_assert(offsetof(struct intake_item, did) == 8 && offsetof(struct intake_item, kind) == 10 &&
			       offsetof(struct intake_item, am) == 11 && offsetof(struct intake_item, ih) == 12,
		       "intake_item_set's layout");
	const uint64_t hi = did | (uint64_t)kind << 16 | (uint64_t)am << 24 | (uint64_t)ih << 32;
	_mm_storeu_si128((__m128i *)(void *)it, _mm_set_epi64x((long long)hi, (long long)arg));
#else
	*it = (struct intake_item){ .arg = arg, .did = did, .kind = kind, .am = am, .ih = ih };
#endif
}

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
