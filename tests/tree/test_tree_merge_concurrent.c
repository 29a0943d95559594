/* SPDX-License-Identifier: MIT */
/*
 * Leaf merges (leaf_merge) while readers look. Pinned one-page extents at
 * every fourth page stay in the tree for the whole phase; the writer fills
 * the pages between them (splits: the tree grows to two or three levels)
 * and removes them again in a random order, a page or a pair at a time, so
 * that the thinned leaves merge with their siblings, on the right or on
 * the left, and with few pinned extents the root's last two leaves merge
 * and the root collapses. Readers look up and translate pinned pages (an
 * extent present during the whole lookup: always found, exactly) and walk
 * the whole space (every pinned extent once, ascending; whatever else
 * shows is exactly what was inserted there).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "common/rcu.h"
#include "tree/shadow_tree.h"

CHECK_SEED_STORAGE;

#define K4 0x1000ull
#define G1 0x40000000ull
#define NREADERS 2

static struct shadow_tree *T;
static unsigned npin;
static int stop;
static unsigned started; /* readers past their first lookup */
static uint64_t reads[NREADERS], walks[NREADERS];

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1Dull;
}

static struct iovt_extent ext(uint64_t page, uint64_t pages)
{
	uint64_t a = page * K4;
	return (struct iovt_extent){ .iova = a, .size = pages * K4, .gpa = a + G1,
				     .hva = a ^ 0x5555000ull, .perm = 3, .region = (uint32_t)(page & 0xffff) };
}

struct walk { uint64_t prev; unsigned pins; bool any; };

static int walk_check(void *arg, const struct iovt_extent *e)
{
	struct walk *w = arg;
	uint64_t page = e->iova / K4;
	CHECK(!w->any || e->iova > w->prev);
	w->any = true;
	w->prev = e->iova;
	if (page % 4 == 0) {
		CHECK(page / 4 < npin);
		struct iovt_extent x = ext(page, 1);
		CHECK(memcmp(e, &x, sizeof(x)) == 0);
		w->pins++;
	} else {
		struct iovt_extent x = ext(page, e->size / K4);
		CHECK(e->size == K4 || (page % 4 == 1 && e->size == 2 * K4));
		CHECK(memcmp(e, &x, sizeof(x)) == 0);
	}
	return 0;
}

static void *reader(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	uint64_t r = check_seed * 13 + id + 1, n = 0, nw = 0;
	urcu_memb_register_thread();
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		uint64_t x = rnd(&r), page = 4 * ((x >> 8) % npin), a = page * K4 + (x >> 40) % K4;
		struct iovt_extent o, want = ext(page, 1);
		iovt_rcu_read_lock();
		bool h = x & 1 ? shadow_tree_translate(T, a, &o, 4096) : shadow_tree_lookup(T, a, &o);
		iovt_rcu_read_unlock();
		CHECK(h);
		CHECK(memcmp(&o, &want, sizeof(o)) == 0);
		if ((x & 31) == 0) {
			struct walk w = { 0, 0, false };
			iovt_rcu_read_lock();
			CHECK_EQ(shadow_tree_iterate(T, 0, ~0ull, walk_check, &w), 0);
			iovt_rcu_read_unlock();
			CHECK_EQ(w.pins, npin);
			nw++;
		}
		if (n++ == 0)
			__atomic_add_fetch(&started, 1, __ATOMIC_RELEASE);
	}
	urcu_memb_unregister_thread();
	reads[id] = n;
	walks[id] = nw;
	return NULL;
}

/* One phase: npin pinned pages, `cycles` fill/drain rounds of the gaps. */
static void phase(unsigned pins, unsigned cycles, uint64_t *r)
{
	npin = pins;
	stop = 0;
	started = 0;
	T = shadow_tree_create(48);
	CHECK(T);
	for (unsigned k = 0; k < pins; k++) {
		struct iovt_extent e = ext(4 * k, 1);
		CHECK_EQ(shadow_tree_insert(T, &e), 0);
	}
	pthread_t rt[NREADERS];
	for (unsigned i = 0; i < NREADERS; i++)
		CHECK(pthread_create(&rt[i], NULL, reader, (void *)(uintptr_t)i) == 0);
	/* The readers are reading before the writer starts: on a loaded
	 * machine it once ran all its cycles before either was scheduled, and
	 * the check that they read anything failed (this session's review). */
	while (__atomic_load_n(&started, __ATOMIC_ACQUIRE) < NREADERS)
		sched_yield();
	const unsigned ng = pins; /* gaps: pages 4k+1..4k+3 after pinned k */
	unsigned *order = calloc(ng, sizeof(*order));
	uint8_t *shape = calloc(ng, 1);
	CHECK(order && shape);
	unsigned max_h = 0, min_h = 99;
	for (unsigned c = 0; c < cycles; c++) {
		/* fill: ascending, descending or random order of the gaps */
		unsigned mode = (unsigned)(rnd(r) % 3);
		for (unsigned k = 0; k < ng; k++)
			order[k] = mode == 1 ? ng - 1 - k : k;
		if (mode == 2)
			for (unsigned k = ng - 1; k > 0; k--) {
				unsigned j = (unsigned)(rnd(r) % (k + 1)), tmp = order[k];
				order[k] = order[j];
				order[j] = tmp;
			}
		for (unsigned k = 0; k < ng; k++) {
			unsigned g = order[k];
			shape[g] = (uint8_t)(rnd(r) % 3); /* 0: 4k+1, 4k+2, 4k+3; 1: [4k+1, 4k+2], 4k+3; 2: 4k+2 */
			if (shape[g] == 0 || shape[g] == 2) {
				struct iovt_extent e = ext(4 * g + 2, 1);
				CHECK_EQ(shadow_tree_insert(T, &e), 0);
			}
			if (shape[g] == 0) {
				struct iovt_extent e = ext(4 * g + 1, 1);
				CHECK_EQ(shadow_tree_insert(T, &e), 0);
			}
			if (shape[g] == 1) {
				struct iovt_extent e = ext(4 * g + 1, 2);
				CHECK_EQ(shadow_tree_insert(T, &e), 0);
			}
			if (shape[g] != 2) {
				struct iovt_extent e = ext(4 * g + 3, 1);
				CHECK_EQ(shadow_tree_insert(T, &e), 0);
			}
		}
		CHECK_EQ(shadow_tree_verify(T), 0);
		unsigned h = shadow_tree_height(T);
		max_h = h > max_h ? h : max_h;
		/* drain: random order; a gap's pages one by one or all at once */
		for (unsigned k = ng - 1; k > 0; k--) {
			unsigned j = (unsigned)(rnd(r) % (k + 1)), tmp = order[k];
			order[k] = order[j];
			order[j] = tmp;
		}
		for (unsigned k = 0; k < ng; k++) {
			uint64_t g = order[k], want = shape[g] == 0 ? 3 : shape[g] == 1 ? 2 : 1;
			if (rnd(r) & 1) {
				CHECK_EQ(shadow_tree_remove_range(T, (4 * g + 1) * K4, (4 * g + 4) * K4 - 1, NULL, NULL),
					 (long)want);
			} else {
				long got = 0;
				for (uint64_t p = 4 * g + 1; p < 4 * g + 4; p++)
					got += shadow_tree_remove_range(T, p * K4, p * K4, NULL, NULL);
				CHECK_EQ(got, (long)want);
			}
			if ((k & 63) == 0)
				shadow_tree_flush(T);
		}
		CHECK_EQ(shadow_tree_count(T), pins);
		CHECK_EQ(shadow_tree_verify(T), 0); /* a root merged down to one child collapsed, ... */
		h = shadow_tree_height(T);
		min_h = h < min_h ? h : min_h;
	}
	__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < NREADERS; i++)
		pthread_join(rt[i], NULL);
	CHECK_EQ(shadow_tree_verify(T), 0);
	printf("tree-merge-concurrent: %u pinned, %u cycles, height %u..%u, reads %" PRIu64 "+%" PRIu64
	       ", walks %" PRIu64 "+%" PRIu64 "\n",
	       pins, cycles, min_h, max_h, reads[0], reads[1], walks[0], walks[1]);
	CHECK(reads[0] + reads[1] > 0);
	free(order);
	free(shape);
	shadow_tree_destroy(T);
}

int main(void)
{
	uint64_t seed = check_pick_seed("tree-merge-concurrent");
	check_seed = seed ? seed : 1;
	uint64_t r = check_seed * 5 + 11;
	unsigned scale = 1;
#ifdef CHECK_SLOW_BUILD
	scale = 10;
#endif
	static const unsigned pins[] = { 2, 5, 8, 10, 30, 300, 3000 };
	static const unsigned cycles[] = { 40000, 40000, 30000, 25000, 8000, 800, 80 };
	/* The writer reads the lookup cache's table under a read-side section
	 * (shadow_tree.h): a registered reader, as the engine's are. */
	urcu_memb_register_thread();
	for (unsigned i = 0; i < sizeof(pins) / sizeof(pins[0]); i++)
		phase(pins[i], cycles[i] / scale, &r);
	urcu_memb_unregister_thread();
	return 0;
}
