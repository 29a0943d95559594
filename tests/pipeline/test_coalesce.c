/* SPDX-License-Identifier: MIT */
/* coalesce: the pending-range set against a page bitmap. */
#include <string.h>

#include "check.h"
#include "guestsim.h" /* gs_rand */
#include "sync/coalesce.h"

CHECK_SEED_STORAGE;

static void check_sorted_disjoint(const struct range_set *s)
{
	for (size_t i = 0; i < s->n; i++) {
		CHECK(s->r[i].first <= s->r[i].last);
		if (i)
			CHECK(s->r[i - 1].last + 1 < s->r[i].first); /* not even touching */
	}
}

static void fixed_cases(void)
{
	struct range_set s;
	range_set_init(&s, 4);
	CHECK(range_set_empty(&s));
	range_set_add(&s, 0x1000, 0x1fff);
	range_set_add(&s, 0x3000, 0x3fff);
	CHECK_EQ(s.n, 2);
	range_set_add(&s, 0x2000, 0x2fff); /* touches both: one range */
	CHECK_EQ(s.n, 1);
	CHECK_EQ(s.r[0].first, 0x1000);
	CHECK_EQ(s.r[0].last, 0x3fff);
	range_set_add(&s, 0, UINT64_MAX);
	CHECK_EQ(s.n, 1);
	CHECK_EQ(s.r[0].last, UINT64_MAX);
	range_set_clear(&s);
	/* The cap: a fifth range widens its nearest neighbour. */
	for (int i = 0; i < 5; i++)
		range_set_add(&s, (uint64_t)i << 20, ((uint64_t)i << 20) + 0xfff);
	CHECK_EQ(s.n, 4);
	CHECK_EQ(s.forced_merges, 1);
	check_sorted_disjoint(&s);
	range_set_add_all(&s);
	CHECK(s.all && !range_set_empty(&s));
	range_set_add(&s, 5, 6);
	CHECK(s.all);
	range_set_free(&s);
}

/* Random adds: the set's union equals the union of what was added (a
 * superset only where the cap forced merges, which this run avoids). */
static void random_cases(uint64_t seed)
{
	enum { PAGES = 4096 };
	static unsigned char want[PAGES];
	for (int round = 0; round < 2000; round++) {
		struct range_set s;
		range_set_init(&s, 1u << 20);
		memset(want, 0, sizeof(want));
		int adds = 1 + (int)(gs_rand(&seed) % 40);
		for (int i = 0; i < adds; i++) {
			uint64_t a = gs_rand(&seed) % PAGES, len = 1 + gs_rand(&seed) % 64;
			if (a + len > PAGES)
				len = PAGES - a;
			memset(&want[a], 1, len);
			range_set_add(&s, a << 12, ((a + len) << 12) - 1);
		}
		check_sorted_disjoint(&s);
		for (uint64_t p = 0; p < PAGES; p++) {
			int in = 0;
			for (size_t i = 0; i < s.n; i++)
				in |= (p << 12) >= s.r[i].first && (p << 12) <= s.r[i].last;
			CHECK_EQ(in, want[p]);
		}
		range_set_free(&s);
	}
}

/* range_set_remove against a page bitmap: adds and removes at random. */
static void remove_cases(uint64_t seed)
{
	enum { PAGES = 2048 };
	static unsigned char want[PAGES];
	uint64_t r = seed | 1;
	struct range_set s;
	range_set_init(&s, 0);
	memset(want, 0, sizeof(want));
	for (int it = 0; it < 20000; it++) {
		r ^= r << 13, r ^= r >> 7, r ^= r << 17;
		uint64_t a = r % PAGES, len = 1 + (r >> 20) % 64;
		if (a + len > PAGES)
			len = PAGES - a;
		bool add = (r >> 40) % 3 != 0;
		if (add)
			CHECK(range_set_add(&s, a * 4096, (a + len) * 4096 - 1) == 0);
		else
			range_set_remove(&s, a * 4096, (a + len) * 4096 - 1);
		memset(want + a, add, len);
		check_sorted_disjoint(&s);
		for (uint64_t p = 0, k = 0; p < PAGES; p++) {
			while (k < s.n && s.r[k].last < p * 4096)
				k++;
			bool in = k < s.n && s.r[k].first <= p * 4096;
			CHECK_EQ(in, want[p]);
		}
	}
	/* edges: the top of the space, a whole range, an "all" set */
	range_set_clear(&s);
	CHECK(range_set_add(&s, 0, UINT64_MAX) == 0);
	range_set_remove(&s, 4096, UINT64_MAX);
	CHECK(s.n == 1 && s.r[0].first == 0 && s.r[0].last == 4095);
	range_set_add_all(&s);
	range_set_remove(&s, 0, 4095);
	CHECK(s.all);
	range_set_free(&s);
}

int main(void)
{
	uint64_t seed = check_pick_seed("coalesce");
	fixed_cases();
	remove_cases(seed);
	random_cases(seed);
	printf("coalesce: ok\n");
	return 0;
}
