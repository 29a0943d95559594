/* SPDX-License-Identifier: MIT */
/*
 * A world to test and benchmark the engine in: a simulated guest (guestsim:
 * RAM regions, real VT-d tables, a truth model), an engine fed from it, one
 * strict model sink per domain, and the judges run at every fence:
 *  - the model sink must equal the guest truth over everything touched since
 *    the last fence (and everywhere, on a full check);
 *  - the calls the model received must equal the oracle's minimum;
 *  - the model must have rejected nothing.
 * Used by the differential test, the fuzz target and the storm driver.
 */
#ifndef IOVT_TESTS_WORLD_H
#define IOVT_TESTS_WORLD_H

#include <stdbool.h>
#include <stdint.h>

#include "iovt.h"
#include "iovt_model.h"

struct world_config {
	unsigned domains;        /* 1..64 */
	unsigned addr_width;     /* 39, 48 or 57 */
	bool allow_2m, allow_1g;
	unsigned regions;        /* guest RAM regions (1..4), holes between them */
	uint64_t region_size;    /* bytes each, 2 MiB multiple */
	enum iovt_model_flavor flavor;
	bool multi_unmap;
	uint32_t max_mappings;   /* model sink limit; 0: 65535 */
	uint64_t unmap_cost_ns;  /* model sink charge per UNMAP */
	uint64_t map_cost_ns;    /* model sink charge per MAP (0: none) */
	bool judge;              /* run the checks at every fence */
	bool full_check_every_fence;
	/* Drive the QEMU-style baseline (bench/baseline) instead of the engine:
	 * one baseline per domain on the same model sinks; invalidations are
	 * processed when posted, the fence is a no-op. The judges still check
	 * the sinks (mismatches, rejected calls); the oracle's minimum is only
	 * recorded (oracle_min_calls vs calls_judged), never a failure.
	 * Only in worlds built with IOVT_WORLD_BASELINE (the storm driver's);
	 * elsewhere world_create returns -ENOTSUP. */
	bool baseline;
};

struct world_totals {
	uint64_t fences;
	uint64_t map_calls, unmap_calls; /* received by the model sinks */
	uint64_t oracle_min_calls;       /* sum over judged fences */
	uint64_t calls_judged;           /* calls at judged fences (compare with the oracle) */
	uint64_t mismatches;             /* pages where model != truth at fences */
	uint64_t oracle_excess;          /* fences where calls != oracle */
	uint64_t rejected_calls;
	uint64_t charged_ns;
	uint64_t fence_errors;
	uint64_t engine_ns;               /* time spent inside iovt_* calls (judges excluded), less each call's clock read,
					   * plus deferred_ns */
	uint64_t deferred_ns;             /* engine side: CPU time of liburcu's call_rcu thread since the world was
					   * created (the engine's retired nodes and lines freed there, grace periods
					   * included; the baseline frees inside its calls; found by review) */
	uint64_t sink_ns;                 /* of which inside the model sinks' calls (each
					   * with world_clock_read_ns() of its timer added) */
	/* Invalidation-to-fence latency: per fence that had invalidations, from
	 * the first invalidation posted after the previous fence to the fence's
	 * return (judges excluded). Percentiles over every sample. */
	uint64_t latency_samples;
	uint64_t latency_p50_ns, latency_p99_ns, latency_max_ns;
	/* Process peak RSS (getrusage ru_maxrss) when world_totals is called: a
	 * process-wide high-water mark, not this world's own. */
	uint64_t peak_rss_bytes;
	/* The structure that mirrors the sinks, all domains: bytes and entries
	 * now, bytes per extent. Engine: iovt_stats shadow_bytes / extents.
	 * Baseline: GTree node + DMAMap malloc chunk per tree entry. */
	uint64_t shadow_bytes, extents;
	uint64_t bytes_per_extent;
	/* Their highest values sampled after each world_fence (0 where the
	 * scenario never calls it; only in the storm driver's build, with
	 * IOVT_WORLD_BASELINE: the tests' world does not sample). */
	uint64_t peak_shadow_bytes, peak_extents;
};

struct world;

int world_create(const struct world_config *cfg, struct world **out);
void world_destroy(struct world *w);

/* NULL in baseline mode (as world_domain). */
struct iovt_engine *world_engine(struct world *w);
/* The baseline of domain dom (baseline mode), else NULL. */
struct baseline;
struct baseline *world_baseline(struct world *w, unsigned dom);
/* Counters for either mode: the engine's iovt_stats_get, or the sum over the
 * baselines (ranges_coalesced = walks, fences = world fences). */
void world_stats(struct world *w, struct iovt_stats *out);
/* The cost of one clock read, which each timed sink call adds to sink_ns
 * (its timer's part outside the interval it measures); measured once. */
uint64_t world_clock_read_ns(void);
uint16_t world_did(const struct world *w, unsigned dom);
struct iovt_domain *world_domain(struct world *w, unsigned dom);
/* Guest RAM region i (for choosing data GPAs). Table pages live at the end of region 0. */
void world_region(const struct world *w, unsigned i, uint64_t *gpa, uint64_t *size);
/* Bytes of region 0 usable for data (the rest holds page tables). */
uint64_t world_region_data_size(const struct world *w, unsigned i);

/* Guest edits: write the VT-d table (and the truth). policy: 0 largest pages,
 * else a forced leaf size in bytes (4K, 2M or 1G). */
int world_map(struct world *w, unsigned dom, uint64_t iova, uint64_t gpa, uint64_t size,
	      uint32_t perm, uint64_t policy);
int world_unmap(struct world *w, unsigned dom, uint64_t iova, uint64_t size);

/* Invalidations, straight to the engine (or the baseline, processed now). */
int world_psi(struct world *w, unsigned dom, uint64_t addr, unsigned am, bool ih);
/* A PSI for a DID that may name no domain (-ENOENT, counted as
 * unknown_domain on both sides, timed like every invalidation). */
int world_psi_did(struct world *w, uint16_t did, uint64_t addr, unsigned am, bool ih);
int world_dsi(struct world *w, unsigned dom);
int world_global(struct world *w);
/* PSIs covering [iova, iova+size) the way Linux issues them: one PSI of the
 * smallest aligned power-of-two block when am <= max_am, else a DSI. */
int world_invalidate_range(struct world *w, unsigned dom, uint64_t iova, uint64_t size,
			   unsigned max_am, bool ih);

/*
 * The invalidation wait: iovt_fence, then (cfg.judge) the judges. Returns the
 * number of failed judgements (0 when all is well), printing the first few.
 */
int world_fence(struct world *w);
/* Compares every domain's model sink with the guest truth everywhere. */
uint64_t world_full_check(struct world *w);

void world_totals(const struct world *w, struct world_totals *out);
struct iovt_model_sink *world_model(struct world *w, unsigned dom);

#endif
