/* SPDX-License-Identifier: MIT */
/* The storm driver's results: per scenario and side (engine, and the
 * QEMU-style baseline) one record per repetition, written as JSON (through
 * jansson) and as readable tables (medians over the repetitions). */
#ifndef IOVT_BENCH_REPORT_H
#define IOVT_BENCH_REPORT_H

#include <stdint.h>
#include <stdio.h>

struct side_result {
	uint64_t invalidations;
	uint64_t fences;
	uint64_t ranges;        /* ranges walked after coalescing */
	uint64_t ptes_walked;
	uint64_t sink_calls;    /* map_calls + unmap_calls */
	uint64_t map_calls, unmap_calls;
	uint64_t oracle_min_calls;
	uint64_t rejected_calls;
	uint64_t mismatches;    /* model sink vs guest view differences at fences */
	uint64_t errors;
	double wall_s;          /* whole scenario, judges included */
	double engine_s;        /* inside iovt_* calls only (sink calls included), less each call's clock read */
	double sink_s;          /* of which inside the model sink */
	double own_s;           /* engine_s - sink_s: the side's own CPU; 0 where not measurable */
	double deferred_s;      /* engine side: liburcu's call_rcu thread's CPU (the engine's deferred
				 * frees and their grace periods), included in engine_s and own_s */
	double cpu_s;
	double est_sink_s;      /* model sink's charged per-call cost */
	uint64_t peak_rss_bytes;   /* process peak RSS at the end of this side's run */
	/* The structure that mirrors the sinks, at the end of the scenario, all
	 * domains: the engine's shadows (iovt_stats shadow_bytes / extents), the
	 * baseline's GTree nodes + DMAMap malloc chunks / tree entries. */
	uint64_t shadow_bytes, extents;
	uint64_t bytes_per_extent; /* shadow_bytes / extents (0 when empty) */
	/* Their highest values, sampled after every fence of the world (the
	 * multi-producer scenarios fence on their own threads: there, the
	 * value after the world's one final fence, the end value). */
	uint64_t peak_shadow_bytes, peak_extents;
	/* Engine: retired tree nodes held for reuse when the side ended
	 * (iovt_stats::node_pool_bytes: process-wide, not in shadow_bytes).
	 * Baseline: 0. iotlb_pool_bytes: iovt_stats::iotlb_pool_bytes, 0 on
	 * both sides since the IOTLB's lines live in its tables (kept: a
	 * JSON key). */
	uint64_t node_pool_bytes, iotlb_pool_bytes;
	uint64_t latency_p50_ns;   /* first invalidation after a fence -> fence return */
	uint64_t latency_p99_ns;
	/* Engine intake (iovt_stats; baseline 0): items drained from queues, posts
	 * that found their queue full, queue fences applied by their poster
	 * (inline) or by a worker / poller / iovt_fence (drained). */
	uint64_t queue_items, queue_full_waits, fences_inline, fences_drained;
};

struct scenario_result {
	const char *name;
	const char *what;
	int reps;                  /* runs below, per side */
	struct side_result *engine;   /* [reps] */
	struct side_result *baseline; /* [reps]: the QEMU-style baseline (bench/baseline) */
};

/* One translate configuration (bench/translate's vhost-like workload) over
 * its repetitions; see translate_run.h. */
struct translate_point {
	const char *workload;      /* "vhost", or "miss" (a cyclic scan of 64K pages: every lookup misses) */
	const char *impl;          /* "engine", "qemu", "dpdk" */
	unsigned pool, threads;
	int inval;                 /* 1: with the strict-mode invalidator thread */
	int reps;
	struct translate_figures *runs; /* [reps] */
};

/* What the run was: the JSON "context" block (Google Benchmark's idea). */
struct report_context {
	double scale;
	int repetitions;
	const char *replay;        /* the trace replayed, or NULL */
};

/* Writes {"context": {...}, "machine": {...}, "scenarios": [...],
 * "translate": [...]} (translate left out when nt is 0). 0 or -errno. */
int report_write_json(const char *path, const struct report_context *ctx,
		      const struct scenario_result *r, int n,
		      const struct translate_point *t, int nt);
/* The tables, from the medians over the repetitions. */
void report_print_table(FILE *out, const struct scenario_result *r, int n);
void report_print_translate(FILE *out, const struct translate_point *t, int nt);

/* The per-field median of runs[0..n) (counts and times alike). */
void report_median(const struct side_result *runs, int n, struct side_result *out);

#endif
