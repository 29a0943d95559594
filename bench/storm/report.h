/* SPDX-License-Identifier: MIT */
/* The storm driver's results: one record per scenario and side (engine,
 * and the QEMU-style baseline), written as JSON and as readable tables. */
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
	double engine_s;        /* inside iovt_* calls only (sink calls included) */
	double sink_s;          /* of which inside the model sink */
	double own_s;           /* engine_s - sink_s: the side's own CPU; 0 where not measurable */
	double cpu_s;
	uint64_t est_sink_ns;   /* model sink's charged per-call cost */
	uint64_t peak_rss_bytes;   /* process peak RSS at the end of this side's run */
	uint64_t bytes_per_extent; /* mirror structure per extent (baseline; engine 0: not exported) */
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
	struct side_result engine;
	struct side_result baseline; /* the QEMU-style baseline (bench/baseline), same scenario */
};

/* Writes {"machine": {...}, "scenarios": [...]}. Returns 0 or -errno. */
int report_write_json(const char *path, const struct scenario_result *r, int n);
void report_print_table(FILE *out, const struct scenario_result *r, int n);

#endif
