/* SPDX-License-Identifier: MIT */
/*
 * tree-enomem: the shadow tree when allocations fail (engine/common/alloc.h
 * fault hook). Random inserts and removals of extents of every alignment,
 * with a share of the tree's allocations refused — including the holders
 * that retire emptied tables, so emptied tables stay linked and are reused.
 * After every operation the tree must equal a model (a page bitmap of what
 * was inserted successfully): an insert that fails changes nothing, a
 * removal always removes, and no lookup ever returns a removed extent.
 * Every allocation point of the B+-tree is reached under faults: the first
 * leaf, a leaf copied to compact or grow, a split (two leaves and the
 * internal nodes above), a leaf boundary moved for a crossing extent, an
 * empty leaf unlinked (a removal that cannot afford it leaves the leaf
 * linked and empty: shadow_tree_verify returns -7, which is valid), a
 * shrunk leaf, and the retirement batch. After every operation the tree's
 * structure is checked too (shadow_tree_verify). Under ASan a use-after-free
 * in those paths also fails it.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/alloc.h"
#include "common/rcu.h"
#include "tree/shadow_tree.h"

CHECK_SEED_STORAGE;

#define K 0x1000ull
#define SPAN (8ull << 30) /* 8 GiB of IOVA: 1 GiB, 2 MiB and 4 KiB chunks */
#define PAGES (SPAN / K)

static uint64_t rng;
static unsigned fail_percent;
static uint64_t refused;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static bool fault(size_t size)
{
	(void)size;
	if (rnd() % 100 < fail_percent) {
		refused++;
		return true;
	}
	return false;
}

struct ext {
	uint64_t iova, size;
};

static struct ext *live;
static size_t nlive;

static const struct ext *model_find(uint64_t a)
{
	for (size_t i = 0; i < nlive; i++)
		if (a >= live[i].iova && a - live[i].iova < live[i].size)
			return &live[i];
	return NULL;
}

static void check_point(struct shadow_tree *t, uint64_t a)
{
	struct iovt_extent x;
	const struct ext *m = model_find(a);
	iovt_rcu_read_lock();
	bool hit = shadow_tree_lookup(t, a, &x);
	iovt_rcu_read_unlock();
	CHECK_EQ(hit, m != NULL);
	if (hit) {
		CHECK_EQ(x.iova, m->iova);
		CHECK_EQ(x.size, m->size);
		CHECK_EQ(x.gpa, m->iova + 0x100000000ull);
	}
}

static uint64_t pick_size(void)
{
	switch (rnd() % 4) {
	case 0: return K * (1 + rnd() % 16);
	case 1: return 2ull << 20;                        /* a whole 2 MiB chunk */
	case 2: return (2ull << 20) * (1 + rnd() % 3) + K * (rnd() % 600);
	default: return 1ull << 30;                       /* a whole 1 GiB chunk */
	}
}

static uint64_t empty_leaves, cross_ok, cross_enomem;

/*
 * Dense one-page extents two pages apart (full leaves, splits, a tree of
 * height 3), then pairs removed and replaced by one extent over both: where
 * the pair straddled a leaf boundary the boundary must move, and emptied
 * leaves are unlinked — each under 30% refused allocations. The tree must
 * equal the model after each step.
 */
static void crossing_phase(struct shadow_tree *t)
{
	enum { N = 3000 };
	static uint8_t state[N]; /* 0 absent, 1 one page at 2j+1, 3 three pages (even j) */
	fail_percent = 30;
	for (uint64_t j = 0; j < N; j++) {
		struct iovt_extent e = { (2 * j + 1) * K, K, (2 * j + 1) * K + 0x100000000ull, 0, 3, 1 };
		iovt_alloc_fault = fault;
		int rc = shadow_tree_insert(t, &e);
		iovt_alloc_fault = NULL;
		CHECK(rc == 0 || rc == -ENOMEM);
		state[j] = rc == 0;
	}
	CHECK(shadow_tree_height(t) >= 3);
	for (uint64_t j = 0; j + 1 < N; j += 2) {
		iovt_alloc_fault = fault;
		long n = shadow_tree_remove_range(t, (2 * j + 1) * K, (2 * j + 3) * K, NULL, NULL);
		CHECK_EQ(n, state[j] + state[j + 1]);
		struct iovt_extent e = { (2 * j + 1) * K, 3 * K, (2 * j + 1) * K + 0x100000000ull, 0, 3, 1 };
		int rc = shadow_tree_insert(t, &e);
		iovt_alloc_fault = NULL;
		CHECK(rc == 0 || rc == -ENOMEM);
		cross_ok += rc == 0;
		cross_enomem += rc == -ENOMEM;
		state[j] = rc == 0 ? 3 : 0;
		state[j + 1] = 0;
		int v = shadow_tree_verify(t);
		CHECK(v == 0 || v == -7);
		empty_leaves += v == -7;
		for (uint64_t i = j; i < j + 4 && i < N; i++) {
			struct iovt_extent x;
			for (uint64_t pg = 2 * i; pg < 2 * i + 2; pg++) {
				bool h = shadow_tree_lookup(t, pg * K, &x);
				bool want = (state[i] == 1 && pg == 2 * i + 1) || (state[i] == 3 && pg >= 2 * i + 1) ||
					    (i >= 1 && state[i - 1] == 3 && pg <= 2 * i + 1);
				CHECK_EQ(h, want);
			}
		}
	}
	uint64_t want = 0;
	for (uint64_t j = 0; j < N; j++)
		want += state[j] != 0;
	CHECK_EQ(shadow_tree_remove_range(t, 0, 3 * N * K, NULL, NULL), (long)want);
	shadow_tree_flush(t);
}

/*
 * Deterministic: with every allocation refused, a removal that empties a
 * leaf cannot copy its parent to unlink it, so the empty leaf stays linked
 * (a valid state, shadow_tree_verify says -7) and every lookup still works.
 * The random phases reach that state only for some seeds.
 */
static void empty_leaf_phase(struct shadow_tree *t)
{
	enum { N = 256 };
	for (uint64_t j = 0; j < N; j++) {
		struct iovt_extent e = { 4 * j * K, K, 4 * j * K + 0x100000000ull, 0, 3, 1 };
		CHECK_EQ(shadow_tree_insert(t, &e), 0);
	}
	CHECK(shadow_tree_height(t) >= 2);
	fail_percent = 100;
	bool seen = false;
	for (uint64_t j = 0; j < N; j++) {
		iovt_alloc_fault = fault;
		long n = shadow_tree_remove_range(t, 4 * j * K, 4 * j * K + K - 1, NULL, NULL);
		iovt_alloc_fault = NULL;
		CHECK_EQ(n, 1);
		int v = shadow_tree_verify(t);
		CHECK(v == 0 || v == -7);
		if (v == -7) {
			seen = true;
			empty_leaves++;
		}
		/* (not in the random phases' model: looked up directly) */
		CHECK(!shadow_tree_lookup(t, 4 * j * K, NULL));
		if (j + 1 < N)
			CHECK(shadow_tree_lookup(t, 4 * (j + 1) * K, NULL));
	}
	CHECK(seen);
	CHECK_EQ(shadow_tree_count(t), 0);
	shadow_tree_flush(t);
}

int main(void)
{
	rng = check_pick_seed("tree-enomem") | 1;
	double scale = check_scale();
	unsigned ops = (unsigned)(20000 * scale);
	if (ops < 2000)
		ops = 2000;
	iovt_thread_register();
	live = calloc(4096, sizeof(*live));
	CHECK(live);
	struct shadow_tree *t = shadow_tree_create(48);
	CHECK(t);
	uint64_t inserts = 0, enomem = 0, removals = 0;
	for (unsigned op = 0; op < ops; op++) {
		fail_percent = (op / 1000) % 2 ? 30 : 5; /* phases of scarce and very scarce memory */
		uint64_t size = pick_size();
		uint64_t align = size >= (1ull << 30) ? (1ull << 30) : size >= (2ull << 20) && rnd() % 2 ? (2ull << 20) : K;
		uint64_t iova = (rnd() % (SPAN - size)) & ~(align - 1);
		if (rnd() % 3 && nlive < 4096) {
			struct iovt_extent e = { .iova = iova, .size = size, .gpa = iova + 0x100000000ull,
						 .hva = iova, .perm = 3, .region = 1 };
			iovt_alloc_fault = fault;
			int rc = shadow_tree_insert(t, &e);
			iovt_alloc_fault = NULL;
			bool overlap = false;
			for (size_t i = 0; i < nlive; i++)
				if (iova < live[i].iova + live[i].size && live[i].iova < iova + size)
					overlap = true;
			if (overlap) {
				CHECK(rc == -EEXIST || rc == -ENOMEM); /* the node is allocated first */
			} else if (rc == -ENOMEM) {
				enomem++;
			} else {
				CHECK_EQ(rc, 0);
				live[nlive++] = (struct ext){ iova, size };
				inserts++;
			}
			check_point(t, iova);
			check_point(t, iova + size - 1);
		} else if (nlive) {
			size_t k = rnd() % nlive;
			struct ext x = live[k];
			iovt_alloc_fault = fault; /* removal needs no memory: table holders may fail */
			long n = shadow_tree_remove_range(t, x.iova, x.iova + x.size - 1, NULL, NULL);
			iovt_alloc_fault = NULL;
			CHECK_EQ(n, 1);
			live[k] = live[--nlive];
			removals++;
			check_point(t, x.iova);
			check_point(t, x.iova + x.size - 1);
			check_point(t, x.iova + (x.size / 2 & ~(K - 1)));
		}
		for (int i = 0; i < 8; i++)
			check_point(t, (rnd() % PAGES) * K);
		CHECK_EQ(shadow_tree_count(t), nlive);
		int v = shadow_tree_verify(t);
		CHECK(v == 0 || v == -7);
		empty_leaves += v == -7;
		if (op % 64 == 0)
			shadow_tree_flush(t);
	}
	/* Refill where tables were kept empty, then drain all of it. */
	while (nlive) {
		struct ext x = live[--nlive];
		CHECK_EQ(shadow_tree_remove_range(t, x.iova, x.iova + x.size - 1, NULL, NULL), 1);
		check_point(t, x.iova);
	}
	CHECK_EQ(shadow_tree_count(t), 0);
	crossing_phase(t);
	CHECK_EQ(shadow_tree_count(t), 0);
	empty_leaf_phase(t);
	CHECK(inserts > 100 && enomem > 10 && removals > 100 && refused > 100);
	if (!(empty_leaves > 0 && cross_ok > 100 && cross_enomem > 10))
		printf("coverage: empty_leaves %llu cross_ok %llu cross_enomem %llu\n", (unsigned long long)empty_leaves,
		       (unsigned long long)cross_ok, (unsigned long long)cross_enomem);
	CHECK(empty_leaves > 0 && cross_ok > 100 && cross_enomem > 10);
	shadow_tree_destroy(t);
	free(live);
	printf("tree-enomem: %u ops: %llu inserts, %llu refused for ENOMEM, %llu removals, %llu allocations refused, "
	       "%llu states with an empty leaf linked; crossing: %llu inserted, %llu ENOMEM\n",
	       ops, (unsigned long long)inserts, (unsigned long long)enomem, (unsigned long long)removals,
	       (unsigned long long)refused, (unsigned long long)empty_leaves,
	       (unsigned long long)cross_ok, (unsigned long long)cross_enomem);
	iovt_thread_unregister();
	return 0;
}
