/* SPDX-License-Identifier: MIT */
/*
 * differential: random guest page-table edits (all leaf sizes, remaps,
 * permission flips, several RAM regions), random invalidations (exact,
 * oversized, DSI, global, repeated) and fences. After every fence the world
 * checks that each model sink equals the guest view, that the model rejected
 * nothing and that the calls equal the oracle's minimum.
 * >= 1M operations at scale 1 (IOVT_TEST_SCALE shrinks it for sanitizers).
 */
#include <string.h>

#include "check.h"
#include "guestsim.h"
#include "world.h"

CHECK_SEED_STORAGE;

#define K 0x1000ull
#define M2 0x200000ull
#define G1 0x40000000ull

static uint64_t rnd(uint64_t *s, uint64_t n)
{
	return n ? gs_rand(s) % n : 0;
}

struct edit {
	unsigned dom;
	uint64_t iova, size;
};

/* A random target: usually continuing the last one (host-contiguous runs). */
static uint64_t pick_gpa(struct world *w, uint64_t *s, uint64_t size, uint64_t align,
			 uint64_t *last_end)
{
	unsigned nreg = 3;
	uint64_t gpa, rsize;
	for (unsigned r = 0; *last_end && r < nreg; r++) {
		/* Continue the last target only if it stays inside its region's data. */
		world_region(w, r, &gpa, &rsize);
		rsize = world_region_data_size(w, r);
		if (*last_end >= gpa && *last_end + size <= gpa + rsize && rnd(s, 3) == 0 &&
		    (*last_end % align) == 0)
			return *last_end;
	}
	unsigned r = (unsigned)rnd(s, nreg);
	world_region(w, r, &gpa, &rsize);
	rsize = world_region_data_size(w, r);
	if (size > rsize)
		size = rsize;
	uint64_t slots = (rsize - size) / align + 1;
	return gpa + rnd(s, slots) * align;
}

static uint64_t pick_size(uint64_t *s, uint64_t *align)
{
	switch (rnd(s, 12)) {
	case 0:
		*align = M2;
		return M2 * (1 + rnd(s, 3));
	case 1:
		*align = rnd(s, 40) == 0 ? G1 : M2;
		return *align == G1 ? G1 : M2 + K * rnd(s, 600);
	default:
		*align = K;
		return K * (1 + rnd(s, rnd(s, 4) ? 8 : 96));
	}
}

int main(void)
{
	uint64_t seed = check_pick_seed("differential");
	uint64_t s = seed;
	uint64_t target_ops = (uint64_t)(1000000 * check_scale());
	struct world_config cfg = {
		.domains = 3, .addr_width = 48, .allow_2m = true, .allow_1g = true,
		.regions = 3, .region_size = 3 * G1, .flavor = IOVT_MODEL_TYPE1,
		.multi_unmap = true, .max_mappings = 1u << 20, .judge = true,
	};
	struct world *w;
	CHECK(world_create(&cfg, &w) == 0);

	/* Each domain works in a 2 GiB IOVA window so edits collide often. */
	const uint64_t base[3] = { 0x7f000000000ull, 0x40000000ull, 0xfff00000000ull };
	const uint64_t span = 2 * G1;
	uint64_t ops = 0, fences = 0, last_end = 0;
	struct edit edits[16];

	while (ops < target_ops) {
		int nedits = 1 + (int)rnd(&s, 6);
		for (int i = 0; i < nedits; i++) {
			struct edit *e = &edits[i];
			uint64_t align;
			e->dom = (unsigned)rnd(&s, cfg.domains);
			e->size = pick_size(&s, &align);
			e->iova = base[e->dom] + (rnd(&s, (span - e->size) / align)) * align;
			if (rnd(&s, 3) == 0) {
				CHECK(world_unmap(w, e->dom, e->iova, e->size) == 0);
			} else {
				uint64_t gpa = pick_gpa(w, &s, e->size, align, &last_end);
				uint32_t perm = rnd(&s, 5) ? IOVT_PERM_RW : (uint32_t)(1 + rnd(&s, 2));
				uint64_t policy = 0;
				switch (rnd(&s, 6)) {
				case 0: policy = K; break;                 /* 2M replaced by 4K leaves */
				case 1: policy = (align >= M2) ? M2 : 0; break;
				default: break;
				}
				CHECK(world_map(w, e->dom, e->iova, gpa, e->size, perm, policy) == 0);
				last_end = gpa + e->size;
			}
			ops++;
		}
		/* Invalidate every edit, in one of several guest styles. */
		for (int i = 0; i < nedits; i++) {
			struct edit *e = &edits[i];
			switch (rnd(&s, 64)) {
			case 0:
			case 1:
				world_dsi(w, e->dom);
				break;
			case 2:
				world_global(w);
				break;
			case 3:
			case 4:
			case 5:
			case 6:
			case 7:
			case 8: /* oversized, as below */
			case 9: /* oversized: a few orders more than needed */
				world_invalidate_range(w, e->dom, e->iova, e->size, 9 + (unsigned)rnd(&s, 12), rnd(&s, 2));
				world_invalidate_range(w, e->dom, e->iova & ~(M2 - 1), M2 << rnd(&s, 4), 30, false);
				break;
			case 10:
			case 11: /* repeated */
				world_invalidate_range(w, e->dom, e->iova, e->size, 20, false);
				world_invalidate_range(w, e->dom, e->iova, e->size, 20, false);
				break;
			default:
				world_invalidate_range(w, e->dom, e->iova, e->size, 20, rnd(&s, 2));
				break;
			}
			ops++;
		}
		/* Noise: PSIs over untouched space change nothing. */
		if (rnd(&s, 4) == 0) {
			unsigned d = (unsigned)rnd(&s, cfg.domains);
			world_psi(w, d, base[d] + rnd(&s, span / K) * K, (unsigned)rnd(&s, 12), false);
			ops++;
		}
		CHECK_EQ(world_fence(w), 0);
		ops++;
		fences++;
		if (fences % 5000 == 0)
			CHECK_EQ(world_full_check(w), 0);
	}
	CHECK_EQ(world_full_check(w), 0);

	struct world_totals t;
	world_totals(w, &t);
	printf("differential: %lu ops, %lu fences, %lu maps, %lu unmaps, oracle %lu, "
	       "rejected %lu, mismatches %lu\n",
	       ops, t.fences, t.map_calls, t.unmap_calls, t.oracle_min_calls, t.rejected_calls,
	       t.mismatches);
	CHECK_EQ(t.rejected_calls, 0);
	CHECK_EQ(t.mismatches, 0);
	CHECK_EQ(t.oracle_excess, 0);
	CHECK_EQ(t.calls_judged, t.oracle_min_calls);
	CHECK(t.map_calls > 0 && t.unmap_calls > 0);
	world_destroy(w);
	return 0;
}
