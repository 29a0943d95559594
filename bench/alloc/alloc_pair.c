/* SPDX-License-Identifier: MIT */
/*
 * The engine's hot-path allocation (an extent or a table: iovt_zalloc +
 * iovt_free on a shard arena, no thread cache) through its private jemalloc,
 * side by side in one process with the same calls through the system
 * libjemalloc (mallocx/sdallocx, its own arena, same flags): what the
 * private copy costs (README "Packaging and embedding").
 * Run: iovt-alloc-bench [rounds]   prints ns per alloc+free pair, min of rounds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <jemalloc/jemalloc.h>

#include "common/alloc.h"

#define WINDOW 64
#define N 2000000

static double now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

static void *slots[WINDOW];

static double engine_pairs(iovt_arena_t a, size_t size)
{
	double t0 = now_ns();
	for (unsigned i = 0; i < N; i++) {
		void **s = &slots[i % WINDOW];
		iovt_free(a, *s, size);
		*s = iovt_zalloc(a, size);
	}
	double t = (now_ns() - t0) / N;
	for (unsigned i = 0; i < WINDOW; i++) {
		iovt_free(a, slots[i], size);
		slots[i] = NULL;
	}
	return t;
}

static double system_pairs(unsigned arena, size_t size)
{
	int fl = MALLOCX_ARENA(arena) | MALLOCX_TCACHE_NONE;
	double t0 = now_ns();
	for (unsigned i = 0; i < N; i++) {
		void **s = &slots[i % WINDOW];
		if (*s)
			sdallocx(*s, size, fl);
		*s = mallocx(size, fl | MALLOCX_ZERO);
	}
	double t = (now_ns() - t0) / N;
	for (unsigned i = 0; i < WINDOW; i++) {
		if (slots[i])
			sdallocx(slots[i], size, fl);
		slots[i] = NULL;
	}
	return t;
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 7;
	iovt_arena_t ea = iovt_arena_create();
	unsigned sa = 0;
	size_t sz = sizeof(sa);
	if (!ea || mallctl("arenas.create", &sa, &sz, NULL, 0)) {
		fprintf(stderr, "alloc-bench: no arenas\n");
		return 1;
	}
	const size_t sizes[] = { 48, 512 };
	for (unsigned k = 0; k < 2; k++) {
		double be = 1e30, bs = 1e30;
		for (int r = 0; r < rounds; r++) { /* alternate: same noise for both */
			double e = engine_pairs(ea, sizes[k]), s = system_pairs(sa, sizes[k]);
			be = e < be ? e : be;
			bs = s < bs ? s : bs;
		}
		printf("alloc+free %4zu B: engine (private jemalloc) %.1f ns, system libjemalloc %.1f ns, ratio %.2f\n",
		       sizes[k], be, bs, be / bs);
	}
	return 0;
}
