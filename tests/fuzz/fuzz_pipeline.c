/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the whole pipeline judged by the model sink and the
 * oracle. The input is a little program of guest edits, invalidations and
 * fences over a small IOVA window (so edits collide); every fence must leave
 * the model sink equal to the guest view with calls == the oracle minimum.
 * Invalidations always cover the edits (a well-behaved guest); hostile
 * guests have targets of their own.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_input.h"
#include "world.h"

#define K 0x1000ull
#define M2 0x200000ull

static struct world *w;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct reader r = { data, size };
	struct world_config cfg = {
		.domains = 2, .addr_width = 39, .allow_2m = true, .allow_1g = false,
		.regions = 2, .region_size = 16 * M2, .flavor = IOVT_MODEL_TYPE1,
		.multi_unmap = true, .max_mappings = 1u << 16, .judge = true,
	};
	if (world_create(&cfg, &w))
		abort();
	uint64_t rgpa[2], rsize[2];
	for (unsigned i = 0; i < 2; i++) {
		world_region(w, i, &rgpa[i], &rsize[i]);
		rsize[i] = world_region_data_size(w, i);
	}
	/* Pending edits: invalidated before the next fence. */
	struct { unsigned dom; uint64_t iova, size; } edits[64];
	unsigned nedits = 0;

	while (r.n) {
		unsigned op = take_bits(&r, 3);
		unsigned dom = take_bits(&r, 1);
		uint64_t iova = 0x40000000ull + (uint64_t)take_bits(&r, 12) * K; /* 16 MiB window */
		uint64_t pages = 1 + take_bits(&r, 9);
		switch (op) {
		case 0: case 1: case 2: { /* map */
			unsigned reg = take_bits(&r, 1);
			uint64_t gpage = take_bits(&r, 12) % (rsize[reg] / K);
			if ((gpage + pages) * K > rsize[reg])
				pages = rsize[reg] / K - gpage;
			uint64_t policy = take_bits(&r, 2) == 0 ? K : 0;
			unsigned perm = 1 + take_bits(&r, 2) % 3;
			if (pages && world_map(w, dom, iova, rgpa[reg] + gpage * K, pages * K, perm, policy))
				abort();
			break;
		}
		case 3: case 4: /* unmap */
			if (world_unmap(w, dom, iova, pages * K))
				abort();
			break;
		case 5: /* an extra, possibly oversized PSI */
			world_psi(w, dom, iova, take_bits(&r, 4), take_bits(&r, 1));
			continue;
		case 6: /* DSI or global */
			if (take_bits(&r, 1))
				world_dsi(w, dom);
			else
				world_global(w);
			continue;
		default: /* fence */
			for (unsigned i = 0; i < nedits; i++)
				world_invalidate_range(w, edits[i].dom, edits[i].iova, edits[i].size, 12, false);
			nedits = 0;
			if (world_fence(w))
				abort();
			continue;
		}
		if (nedits == 64) {
			for (unsigned i = 0; i < nedits; i++)
				world_invalidate_range(w, edits[i].dom, edits[i].iova, edits[i].size, 12, false);
			nedits = 0;
		}
		edits[nedits].dom = dom;
		edits[nedits].iova = iova;
		edits[nedits].size = pages * K;
		nedits++;
	}
	for (unsigned i = 0; i < nedits; i++)
		world_invalidate_range(w, edits[i].dom, edits[i].iova, edits[i].size, 12, false);
	if (world_fence(w) || world_full_check(w))
		abort();
	world_destroy(w);
	w = NULL;
	return 0;
}
