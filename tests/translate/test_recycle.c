/* SPDX-License-Identifier: MIT */
/*
 * translate-recycle: the IOTLB line recycler's allowance (engine/iotlb/
 * recycle.h), the bound on what a thread keeps of the lines it retired.
 *  - A thread that only retires (an invalidator's sweeps) keeps the
 *    minimum, however many of its batches the callbacks had to free.
 *  - A thread that runs dry after a callback freed one of its batches
 *    doubles its allowance, up to the ceiling and never past it.
 *  - A thread never holds more handed-back batches than its allowance:
 *    exactly that many batches of fills are reused, the next one is not.
 *  - What is held is counted (recycle_held_bytes, iovt_stats::
 *    iotlb_pool_bytes) to the batch, and all threads together hold no more
 *    than the global bound.
 * Lines are handed back only after their grace period: urcu_memb_barrier
 * waits for every callback. The counts are exact because the engine queues
 * its callbacks on liburcu's one default call_rcu thread (with several, a
 * bound may be passed by one batch per extra thread: recycle.c), and
 * because no callback runs during take(): every retire() hands over whole
 * batches and the barrier drains them.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <urcu/urcu-memb.h>

#include "check.h"
#include "common/alloc.h"
#include "iotlb/recycle.h"

CHECK_SEED_STORAGE;

/* Retires `batches` full batches of fresh lines (not from recycle_new:
 * only a fill may change the allowance, and this is no fill). */
static void retire(unsigned batches)
{
	for (unsigned i = 0; i < batches * RECYCLE_BATCH; i++) {
		struct recycle_batch *b = recycle_room();
		CHECK(b != NULL);
		void *line = iovt_alloc(0, 64);
		CHECK(line != NULL);
		recycle_retire(b, line);
	}
}

/* n fills, each line dropped again (never published). */
static void take(unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		void *line = recycle_new();
		CHECK(line != NULL);
		recycle_free(line);
	}
}

int main(void)
{
	urcu_memb_register_thread();

	CHECK_EQ(recycle_test_allowance(), 0); /* no batch yet */
	/* A retirer (an invalidator's sweeps): 16 batches, RECYCLE_HOLD_MIN
	 * handed back, the rest freed; it never fills, so never runs dry: it
	 * keeps RECYCLE_HOLD_MIN. */
	const uint64_t batch_bytes = RECYCLE_BATCH * 64ull;
	retire(16);
	urcu_memb_barrier();
	CHECK_EQ(recycle_test_allowance(), RECYCLE_HOLD_MIN);
	CHECK_EQ(recycle_held_bytes(), RECYCLE_HOLD_MIN * batch_bytes);

	unsigned a = RECYCLE_HOLD_MIN;
	for (int round = 0; round < 10; round++) {
		if (round) {
			retire(a + 8); /* 8 more than it may keep: freed */
			urcu_memb_barrier();
		}
		/* Exactly `a` batches were handed back: that many fills reuse
		 * lines, and the allowance stays... */
		take(a * RECYCLE_BATCH);
		CHECK_EQ(recycle_test_allowance(), a);
		/* ...until the next fill runs dry after batches were freed. */
		take(1);
		unsigned next = 2 * a < RECYCLE_HOLD_CEIL ? 2 * a : RECYCLE_HOLD_CEIL;
		CHECK_EQ(recycle_test_allowance(), next);
		/* Dry again, nothing freed since: no growth. */
		take(5);
		CHECK_EQ(recycle_test_allowance(), next);
		a = next;
	}
	CHECK_EQ(a, RECYCLE_HOLD_CEIL);
	CHECK_EQ(recycle_held_bytes(), 0); /* every batch handed back was used up */

	/* The global bound: 3 batches for all threads, whatever this one's
	 * allowance (RECYCLE_HOLD_CEIL) would admit; counted until used up. */
	recycle_test_global_ceiling(3);
	retire(10);
	urcu_memb_barrier();
	CHECK_EQ(recycle_held_bytes(), 3 * batch_bytes);
	recycle_test_global_ceiling(0);
	take(RECYCLE_BATCH + 1); /* one batch used up, the next begun: still counted */
	CHECK_EQ(recycle_held_bytes(), 2 * batch_bytes);
	take(2 * RECYCLE_BATCH - 1);
	CHECK_EQ(recycle_held_bytes(), 0);

	urcu_memb_unregister_thread();
	printf("translate-recycle: ok (allowance %u..%u batches of %u lines)\n", RECYCLE_HOLD_MIN,
	       RECYCLE_HOLD_CEIL, RECYCLE_BATCH);
	return 0;
}
