/* SPDX-License-Identifier: MIT */
#include "scenarios.h"

#include <stdio.h>
#include <string.h>

#include "guestsim.h"
#include "world.h"

#define K 0x1000ull
#define M2 0x200000ull
#define G1 0x40000000ull

static uint64_t scaled(double scale, uint64_t n)
{
	uint64_t v = (uint64_t)(n * scale);
	return v ? v : 1;
}

static struct world_config base_config(void)
{
	return (struct world_config){
		.domains = 1, .addr_width = 48, .allow_2m = true, .allow_1g = true,
		.regions = 2, .region_size = G1, .flavor = IOVT_MODEL_TYPE1,
		.multi_unmap = true, .max_mappings = 65535, .unmap_cost_ns = 14000,
		.judge = true,
	};
}

/* Folds the engine's counters and the judges' verdicts into *out. */
static int finish(struct world *w, struct side_result *out)
{
	struct iovt_stats st;
	struct world_totals t;
	int bad;

	iovt_stats_get(world_engine(w), &st);
	world_totals(w, &t);
	t.mismatches += world_full_check(w);
	out->invalidations = st.invalidations;
	out->fences = st.fences;
	out->ranges = st.ranges_coalesced;
	out->ptes_walked = st.ptes_walked;
	out->map_calls = t.map_calls;
	out->unmap_calls = t.unmap_calls;
	out->sink_calls = t.map_calls + t.unmap_calls;
	out->oracle_min_calls = t.oracle_min_calls;
	out->rejected_calls = t.rejected_calls;
	out->mismatches = t.mismatches;
	out->est_sink_ns = t.charged_ns;
	for (int k = 0; k < IOVT_ERR_KIND_COUNT; k++)
		out->errors += st.errors[k];
	out->engine_s = t.engine_ns / 1e9;
	bad = t.rejected_calls || t.mismatches || t.oracle_excess || t.fence_errors;
	world_destroy(w);
	return bad;
}

/*
 * Linux strict mode (a VT-d guest in caching mode): per DMA buffer of 1-32
 * pages, one MAP per physically contiguous piece (pieces often in descending
 * physical order), one PSI over the request and a wait; at completion one
 * unmap of the whole request, a PSI with ih=1 and a wait. IOVAs are
 * allocated top-down below 4 GiB and reused heavily.
 */
static int run_strict_dma(double scale, struct side_result *out)
{
	struct world_config cfg = base_config();
	struct world *w;
	uint64_t s = 0x5eed1ull;
	if (world_create(&cfg, &w))
		return -1;
	enum { SLOTS = 64, SLOT_PAGES = 32, DEPTH = 16 };
	uint64_t rgpa, rsize;
	world_region(w, 1, &rgpa, &rsize);
	uint64_t data_pages = world_region_data_size(w, 1) / K;
	struct { uint64_t iova, pages; } inflight[DEPTH] = { 0 };
	int head = 0;
	uint64_t requests = scaled(scale, 100000);

	for (uint64_t r = 0; r < requests; r++) {
		/* Complete the oldest request first (a queue of DEPTH in flight). */
		if (inflight[head].pages) {
			world_unmap(w, 0, inflight[head].iova, inflight[head].pages * K);
			world_invalidate_range(w, 0, inflight[head].iova, inflight[head].pages * K, 5, true);
			world_fence(w);
		}
		uint64_t slot = (r % SLOTS);
		uint64_t iova = (4ull << 30) - (slot + 1) * SLOT_PAGES * K;
		uint64_t pages = 1 + gs_rand(&s) % 32;
		/* Physical pieces in descending order, 1-8 pages each. */
		uint64_t off = 0, gpage = gs_rand(&s) % (data_pages - 64) + 32;
		while (off < pages) {
			uint64_t len = 1 + gs_rand(&s) % 8;
			if (len > pages - off)
				len = pages - off;
			world_map(w, 0, iova + off * K, rgpa + gpage * K, len * K, IOVT_PERM_RW, 0);
			off += len;
			gpage = gpage > 40 ? gpage - len - gs_rand(&s) % 4 : gpage + 64;
		}
		world_invalidate_range(w, 0, iova, pages * K, 5, false);
		world_fence(w);
		inflight[head].iova = iova;
		inflight[head].pages = pages;
		head = (head + 1) % DEPTH;
	}
	return finish(w, out);
}

/* Memory mapped in 4 KiB pieces, each invalidated by a 2 MiB PSI (am=9)
 * and a wait; then the whole block unmapped under one 2 MiB PSI. */
static int run_map4k_psi2m(double scale, struct side_result *out)
{
	struct world_config cfg = base_config();
	struct world *w;
	if (world_create(&cfg, &w))
		return -1;
	uint64_t rgpa, rsize;
	world_region(w, 1, &rgpa, &rsize);
	uint64_t blocks = scaled(scale, 64);
	for (uint64_t b = 0; b < blocks; b++) {
		uint64_t iova = 0x100000000ull + (b % 8) * M2;
		uint64_t gpa = rgpa + (b % 64) * M2;
		for (uint64_t p = 0; p < 512; p++) {
			world_map(w, 0, iova + p * K, gpa + p * K, K, IOVT_PERM_RW, K);
			world_psi(w, 0, iova, 9, false);
			world_fence(w);
		}
		world_unmap(w, 0, iova, M2);
		world_psi(w, 0, iova, 9, true);
		world_fence(w);
	}
	return finish(w, out);
}

/* DSIs on a large domain that did not change: every one walks it all and
 * must send nothing. */
static int run_dsi_unchanged(double scale, struct side_result *out)
{
	struct world_config cfg = base_config();
	struct world *w;
	uint64_t s = 0xd51ull;
	if (world_create(&cfg, &w))
		return -1;
	uint64_t rgpa, rsize;
	world_region(w, 1, &rgpa, &rsize);
	uint64_t data_pages = world_region_data_size(w, 1) / K;
	/* 16384 scattered 4 KiB mappings and 64 MiB in 2 MiB pages. */
	for (uint64_t i = 0; i < 16384; i++)
		world_map(w, 0, 0x10000000ull + i * K, rgpa + (gs_rand(&s) % data_pages) * K, K,
			  IOVT_PERM_RW, 0);
	world_map(w, 0, 0x200000000ull, rgpa, 64ull << 20, IOVT_PERM_R, 0);
	world_dsi(w, 0);
	world_fence(w);
	uint64_t dsis = scaled(scale, 500);
	for (uint64_t i = 0; i < dsis; i++) {
		world_dsi(w, 0);
		world_fence(w);
	}
	return finish(w, out);
}

const struct scenario scenarios[] = {
	{ "strict-dma", "Linux strict mode: map pieces + PSI + wait, unmap + PSI(ih) + wait per DMA buffer",
	  run_strict_dma },
	{ "map4k-psi2m", "4 KiB maps each invalidated by a 2 MiB PSI, unmapped in 2 MiB", run_map4k_psi2m },
	{ "dsi-unchanged", "repeated DSIs on a large unchanged domain (must send nothing)",
	  run_dsi_unchanged },
	{ 0 },
};
