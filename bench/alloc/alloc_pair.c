/* SPDX-License-Identifier: MIT */
/*
 * The engine's hot-path allocation (an extent or a table: zeroed alloc +
 * sized free on a shard arena, no thread cache), side by side in one process:
 *   private  the same mallocx/sdallocx calls into the engine's private copy
 *            (iovt_je_*, what alloc.c calls now)
 *   system   mallocx/sdallocx of the system libjemalloc (what alloc.c called
 *            before), its own arena, same flags
 *   engine   iovt_zalloc/iovt_free (the private copy plus the fault hook)
 * (README "Packaging and embedding").
 * Run: iovt-alloc-bench [rounds]   prints ns per alloc+free pair, min of rounds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <jemalloc/jemalloc.h>

#include "common/alloc.h"

void *iovt_je_mallocx(size_t size, int flags);
void iovt_je_sdallocx(void *ptr, size_t size, int flags);
int iovt_je_mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen);

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

#define PAIRS(name, mx, sdx)                                               \
	static double name(unsigned arena, size_t size)                    \
	{                                                                  \
		int fl = MALLOCX_ARENA(arena) | MALLOCX_TCACHE_NONE;       \
		double t0 = now_ns();                                      \
		for (unsigned i = 0; i < N; i++) {                         \
			void **s = &slots[i % WINDOW];                     \
			if (*s)                                            \
				sdx(*s, size, fl);                         \
			*s = mx(size, fl | MALLOCX_ZERO);                  \
		}                                                          \
		double t = (now_ns() - t0) / N;                            \
		for (unsigned i = 0; i < WINDOW; i++) {                    \
			if (slots[i])                                      \
				sdx(slots[i], size, fl);                   \
			slots[i] = NULL;                                   \
		}                                                          \
		return t;                                                  \
	}
PAIRS(system_pairs, mallocx, sdallocx)
PAIRS(private_pairs, iovt_je_mallocx, iovt_je_sdallocx)

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 7;
	iovt_arena_t ea = iovt_arena_create();
	unsigned sa = 0, pa = 0;
	size_t sz = sizeof(sa);
	if (!ea || mallctl("arenas.create", &sa, &sz, NULL, 0) ||
	    iovt_je_mallctl("arenas.create", &pa, &sz, NULL, 0)) {
		fprintf(stderr, "alloc-bench: no arenas\n");
		return 1;
	}
	const size_t sizes[] = { 48, 512 };
	for (unsigned k = 0; k < 2; k++) {
		double be = 1e30, bs = 1e30, bp = 1e30;
		for (int r = 0; r < rounds; r++) { /* interleaved: the same noise for all */
			double p = private_pairs(pa, sizes[k]), s = system_pairs(sa, sizes[k]);
			double e = engine_pairs(ea, sizes[k]);
			bp = p < bp ? p : bp;
			bs = s < bs ? s : bs;
			be = e < be ? e : be;
		}
		printf("alloc+free %4zu B (min of %d x %d): private %.1f ns, system %.1f ns, "
		       "private/system %.2f; engine path %.1f ns\n",
		       sizes[k], rounds, N, bp, bs, bp / bs, be);
	}
	return 0;
}
