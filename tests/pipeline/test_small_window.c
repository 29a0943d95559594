/* SPDX-License-Identifier: MIT */
/*
 * small-window: the sync's small path (engine/sync/sync.c, sync_small and
 * plan_small) under a strict guest's traffic, judged after every fence.
 * Buffers of 1-32 pages in 1-8-page pieces (scattered GPAs: several
 * extents a buffer) are mapped, flipped between R and RW in part, remapped
 * elsewhere in part, and unmapped, each change under one PSI of the
 * smallest block that covers it (at most 32 pages here; the small path
 * takes up to 64) and a wait. The three ways of planning such a window all come up: nothing
 * recorded in it (the runs are the MAPs), nothing mapped in it (every
 * extent goes, one UNMAP or one each), and both (the diff). The world
 * checks the model sink against the guest, the calls against the oracle's
 * minimum and that nothing was rejected; with and without multi-unmap.
 */
#include <string.h>

#include "check.h"
#include "guestsim.h"
#include "sync/sync.h" /* sync_test_small: the small path's plans, by way */
#include "world.h"

CHECK_SEED_STORAGE;

#define K 0x1000ull
#define G1 0x40000000ull

static uint64_t rnd(uint64_t *s, uint64_t n)
{
	return n ? gs_rand(s) % n : 0;
}

enum { SLOTS = 48, SLOT_PAGES = 32 };

static void run(bool multi, uint64_t *s, uint64_t steps)
{
	struct world_config cfg = {
		.domains = 1, .addr_width = 48, .allow_2m = true, .allow_1g = true,
		.regions = 2, .region_size = G1, .flavor = IOVT_MODEL_TYPE1,
		.multi_unmap = multi, .max_mappings = 1u << 16, .judge = true,
	};
	struct world *w;
	CHECK(world_create(&cfg, &w) == 0);
	memset(sync_test_small, 0, sizeof(sync_test_small));
	sync_test_count_small = true;
	uint64_t gpa, rsize;
	world_region(w, 1, &gpa, &rsize);
	const uint64_t data_pages = world_region_data_size(w, 1) / K;
	const uint64_t io = 0x40000000ull;
	uint64_t pages[SLOTS] = { 0 }; /* a slot's buffer length, 0: none */
	static uint64_t where[SLOTS][SLOT_PAGES]; /* each page's GPA, 0: not mapped */
	memset(where, 0, sizeof(where));

	for (uint64_t i = 0; i < steps; i++) {
		const uint64_t slot = rnd(s, SLOTS), at = io + slot * SLOT_PAGES * K;
		uint64_t first, n;
		if (!pages[slot]) {
			/* map a buffer in pieces, each elsewhere (descending, or not) */
			n = 1 + rnd(s, SLOT_PAGES);
			for (uint64_t off = 0; off < n;) {
				uint64_t len = 1 + rnd(s, 8);
				if (len > n - off)
					len = n - off;
				uint64_t g = gpa + rnd(s, data_pages - len) * K;
				CHECK(world_map(w, 0, at + off * K, g, len * K, IOVT_PERM_RW, K) == 0);
				for (uint64_t p = 0; p < len; p++)
					where[slot][off + p] = g + p * K;
				off += len;
			}
			pages[slot] = n;
			first = 0;
		} else {
			first = rnd(s, pages[slot]);
			n = 1 + rnd(s, pages[slot] - first);
			switch (rnd(s, 4)) {
			case 0: /* unmap it all */
				first = 0;
				n = pages[slot];
				CHECK(world_unmap(w, 0, at, n * K) == 0);
				for (uint64_t p = 0; p < n; p++)
					where[slot][p] = 0;
				pages[slot] = 0;
				break;
			case 1: /* a part flips permission (the same pages; holes stay) */
				for (uint64_t p = first; p < first + n; p++)
					if (where[slot][p])
						CHECK(world_map(w, 0, at + p * K, where[slot][p], K,
								rnd(s, 2) ? IOVT_PERM_R : IOVT_PERM_RW, K) == 0);
				break;
			case 2: { /* a part moves elsewhere */
				uint64_t g = gpa + rnd(s, data_pages - n) * K;
				CHECK(world_map(w, 0, at + first * K, g, n * K, IOVT_PERM_RW, K) == 0);
				for (uint64_t p = 0; p < n; p++)
					where[slot][first + p] = g + p * K;
				break;
			}
			default: /* a part goes */
				CHECK(world_unmap(w, 0, at + first * K, n * K) == 0);
				for (uint64_t p = 0; p < n; p++)
					where[slot][first + p] = 0;
				break;
			}
		}
		/* unmaps with the invalidation hint, as a strict guest sends them */
		CHECK(world_invalidate_range(w, 0, at + first * K, n * K, 5, rnd(s, 2)) == 0);
		CHECK_EQ(world_fence(w), 0);
	}
	CHECK_EQ(world_full_check(w), 0);
	/* each way of planning a small window ran (they are the test's point) */
	printf("small-window (multi %d): plans: %lu nothing recorded, %lu nothing mapped, %lu diffed\n",
	       multi, sync_test_small[0], sync_test_small[1], sync_test_small[2]);
	for (int k = 0; k < 3; k++)
		CHECK(sync_test_small[k] > steps / 20);
	struct world_totals t;
	world_totals(w, &t);
	printf("small-window (multi %d): %lu maps, %lu unmaps, oracle %lu, rejected %lu, "
	       "mismatches %lu\n",
	       multi, t.map_calls, t.unmap_calls, t.oracle_min_calls, t.rejected_calls, t.mismatches);
	CHECK_EQ(t.rejected_calls, 0);
	CHECK_EQ(t.mismatches, 0);
	CHECK_EQ(t.oracle_excess, 0);
	CHECK(t.map_calls > 0 && t.unmap_calls > 0);
	sync_test_count_small = false;
	world_destroy(w);
}

int main(void)
{
	uint64_t seed = check_pick_seed("small-window");
	uint64_t s = seed;
	uint64_t steps = (uint64_t)(200000 * check_scale());
	if (steps < 500)
		steps = 500;
	run(true, &s, steps);
	run(false, &s, steps);
	return 0;
}
