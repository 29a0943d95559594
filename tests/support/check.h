/* SPDX-License-Identifier: MIT */
/* Minimal assertions for iovt's C tests: print where and what, then exit 1. */
#ifndef IOVT_TESTS_CHECK_H
#define IOVT_TESTS_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

extern uint64_t check_seed; /* printed with every failure when nonzero */

#define CHECK(cond)                                                                      \
	do {                                                                             \
		if (!(cond)) {                                                           \
			fprintf(stderr, "%s:%d: CHECK failed: %s (seed %" PRIu64 ")\n", __FILE__, \
				__LINE__, #cond, check_seed);                            \
			exit(1);                                                         \
		}                                                                        \
	} while (0)

#define CHECK_EQ(a, b)                                                                     \
	do {                                                                               \
		uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                           \
		if (a_ != b_) {                                                            \
			fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (0x%" PRIx64      \
					" vs 0x%" PRIx64 ", seed %" PRIu64 ")\n",           \
				__FILE__, __LINE__, #a, #b, a_, b_, check_seed);           \
			exit(1);                                                           \
		}                                                                          \
	} while (0)

/* Seed from $IOVT_SEED, else from the clock; printed once. */
static inline uint64_t check_pick_seed(const char *test)
{
	const char *s = getenv("IOVT_SEED");
	uint64_t seed;
	if (s && *s) {
		seed = strtoull(s, NULL, 0);
	} else {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20);
	}
	check_seed = seed;
	printf("%s: seed %" PRIu64 " (rerun with IOVT_SEED=%" PRIu64 ")\n", test, seed, seed);
	return seed;
}

/* Sanitizer builds (ASan, TSan: gcc's and clang's spellings) run several
 * times slower: long tests shorten their runs under them. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CHECK_SLOW_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CHECK_SLOW_BUILD 1
#endif
#endif

/* Scale factor for long runs: $IOVT_TEST_SCALE (default 1.0; sanitizer builds use less). */
static inline double check_scale(void)
{
	const char *s = getenv("IOVT_TEST_SCALE");
	double f = s ? atof(s) : 1.0;
	return f > 0 ? f : 1.0;
}

#define CHECK_SEED_STORAGE uint64_t check_seed

#endif
