/* SPDX-License-Identifier: MIT */
/* The vhost-like translate workload of iovt-translate-bench
 * (translate_impls.hh) as plain timed runs with a C interface, for the
 * storm driver's `translate` section. */
#ifndef IOVT_BENCH_TRANSLATE_RUN_H
#define IOVT_BENCH_TRANSLATE_RUN_H

#ifdef __cplusplus
extern "C" {
#endif

enum translate_impl { TRANSLATE_ENGINE, TRANSLATE_QEMU, TRANSLATE_DPDK, TRANSLATE_IMPLS };

/* One timed run. Every field is filled by both kinds of run. */
struct translate_figures {
	double lookups_per_s; /* all reader threads together */
	double hit_rate;      /* engine: its IOTLB counters; baselines: their own */
	double p99_ns;        /* per lookup, 1 lookup pair in 64 timed */
	double miss_ns;       /* miss run: time per lookup when every lookup misses */
	double inval_kops;    /* invalidator's unmap+map pairs per second (0: none) */
	double inval_target_kops; /* the pace it was given (0: none, or flat out) */
	double inval_dry;     /* 1: IOVT_TRANSLATE_INVAL_DRY (the pace, no invalidation) */
};

/* "engine", "qemu", "dpdk". */
const char *translate_impl_name(enum translate_impl impl);

/* threads readers (1 or 2) for `seconds` over a pool of `pool` buffers,
 * with the strict-mode invalidator thread when inval. 0, or -1 when the
 * setup failed. */
int translate_vhost_run(enum translate_impl impl, unsigned pool, unsigned threads, int inval,
			double seconds, struct translate_figures *out);

/* Every lookup a miss (a cyclic scan of 64K pages, larger than every
 * cache), one thread, for `seconds`: miss_ns and lookups_per_s. */
int translate_miss_run(enum translate_impl impl, double seconds, struct translate_figures *out);

#ifdef __cplusplus
}
#endif

#endif
