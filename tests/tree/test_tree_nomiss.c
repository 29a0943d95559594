/* SPDX-License-Identifier: MIT */
/*
 * tree-nomiss: no false miss of a NON-pinned extent. tree-concurrent checks
 * misses only for pinned extents; here every extent whose insert returned
 * before a reader began and whose removal had not begun when it ended must
 * be found, by lookup, translate (the lookup cache) and iterate, while the
 * one writer inserts and removes (crossing inserts, splits, merges) with a
 * share of its allocations refused (empty leaves left linked, unlinked by a
 * later crossing insert). Per slot a word: 0 absent (or a removal begun),
 * else the unique stamp taken after its insert returned; a reader that
 * reads the same nonzero word before and after its call must hit.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "check.h"
#include "common/alloc.h"
#include "common/rcu.h"
#include "tree/shadow_tree.h"

CHECK_SEED_STORAGE;

#define K4 0x1000ull
#define NSLOT 6000
#define NREADERS 2

static uint64_t s_iova[NSLOT], s_size[NSLOT];
static uint64_t st[NSLOT];
static uint64_t gone[NSLOT]; /* stamp after a removal returned; 0 once an insert begins */
static uint64_t stampc = 1;
static int stop;
static struct shadow_tree *T;
static __thread int is_writer;
static uint64_t wrng = 1;
static unsigned fail_pct = 8;
static uint64_t CELL = 16; /* pages per slot cell; IOVT_CELL */

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1Dull;
}

static int faults_on;
static bool fault(size_t size)
{
	(void)size;
	return is_writer && __atomic_load_n(&faults_on, __ATOMIC_RELAXED) && rnd(&wrng) % 100 < fail_pct;
}

static uint64_t ld(uint64_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }

struct itst { uint64_t lo, hi; unsigned char *seen; };
static int it_visit(void *arg, const struct iovt_extent *e)
{
	struct itst *s = arg;
	/* which slot: cells of 16 pages */
	uint64_t k = e->iova / (CELL * K4);
	CHECK(k < NSLOT);
	CHECK_EQ(e->iova, s_iova[k]);
	s->seen[k] = 1;
	return 0;
}

static uint64_t checks, gchecks;

static void *reader(void *arg)
{
	uint64_t r = check_seed * 7 + (uintptr_t)arg + 1;
	unsigned id = (unsigned)(uintptr_t)arg;
	static __thread unsigned char seen[NSLOT];
	static __thread uint64_t before[NSLOT];
	urcu_memb_register_thread();
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		uint64_t x = rnd(&r);
		if (x % 16) {
			unsigned k = (unsigned)((x >> 8) % NSLOT);
			uint64_t a = s_iova[k] + (rnd(&r) % s_size[k]);
			uint64_t s1 = ld(&st[k]), g1 = ld(&gone[k]);
			struct iovt_extent o;
			iovt_rcu_read_lock();
			bool h = (x >> 40) & 1 ? shadow_tree_translate(T, a, &o, id ? 65536 : 256)
					       : shadow_tree_lookup(T, a, &o);
			iovt_rcu_read_unlock();
			uint64_t s2 = ld(&st[k]), g2 = ld(&gone[k]);
			if (g1 && g1 == g2) {
				__atomic_fetch_add(&gchecks, 1, __ATOMIC_RELAXED);
				if (h) {
					fprintf(stderr, "removed extent returned: slot %u at 0x%llx (%s)\n", k,
						(unsigned long long)a, (x >> 40) & 1 ? "translate" : "lookup");
					CHECK(!h);
				}
			}
			if (h) {
				CHECK_EQ(o.iova, s_iova[k]);
				CHECK_EQ(o.size, s_size[k]);
			}
			if (s1 && s1 == s2) {
				__atomic_fetch_add(&checks, 1, __ATOMIC_RELAXED);
				if (!h) {
					fprintf(stderr, "false miss: slot %u iova 0x%llx size 0x%llx at 0x%llx (%s)\n",
						k, (unsigned long long)s_iova[k], (unsigned long long)s_size[k],
						(unsigned long long)a, (x >> 40) & 1 ? "translate" : "lookup");
					CHECK(h);
				}
			}
		} else {
			unsigned k0 = (unsigned)((x >> 8) % NSLOT), n = 1 + (unsigned)(x >> 32) % 200;
			if (k0 + n > NSLOT)
				n = NSLOT - k0;
			for (unsigned i = 0; i < n; i++) {
				before[k0 + i] = ld(&st[k0 + i]);
				seen[k0 + i] = 0;
			}
			struct itst s = { s_iova[k0], s_iova[k0 + n - 1] + CELL * K4 - 1, seen };
			iovt_rcu_read_lock();
			shadow_tree_iterate(T, s.lo, s.hi, it_visit, &s);
			iovt_rcu_read_unlock();
			for (unsigned i = 0; i < n; i++) {
				uint64_t s2 = ld(&st[k0 + i]);
				if (before[k0 + i] && before[k0 + i] == s2 && !seen[k0 + i]) {
					fprintf(stderr, "iterate missed slot %u\n", k0 + i);
					CHECK(0);
				}
			}
		}
	}
	urcu_memb_unregister_thread();
	return NULL;
}

int main(void)
{
	check_seed = check_pick_seed("tree-nomiss");
	wrng = check_seed | 1;
	const char *sc = getenv("IOVT_TEST_SCALE");
	double scale = sc ? atof(sc) : 1.0;
	uint64_t ops = (uint64_t)(3000000 * scale);
	uint64_t r = check_seed + 99;
	if (getenv("IOVT_FAIL_PCT")) /* 0: no hook, so the node pool reuses nodes */
		fail_pct = (unsigned)atoi(getenv("IOVT_FAIL_PCT"));
	if (getenv("IOVT_CELL"))
		CELL = strtoull(getenv("IOVT_CELL"), NULL, 0);
	for (unsigned k = 0; k < NSLOT; k++) {
		/* cells of 16 pages; an extent anywhere in its cell: leaf
		 * boundaries fall between cells at random, so inserts cross */
		uint64_t off = rnd(&r) % 2 ? 0 : rnd(&r) % (CELL / 2), sz = 1 + rnd(&r) % (CELL - off);
		s_iova[k] = (uint64_t)k * CELL * K4 + off * K4;
		s_size[k] = sz * K4;
	}
	urcu_memb_register_thread();
	T = shadow_tree_create(48);
	CHECK(T);
	is_writer = 1;
	for (unsigned k = 1; k < NSLOT; k += 2)
		gone[k] = __atomic_fetch_add(&stampc, 1, __ATOMIC_SEQ_CST);
	for (unsigned k = 0; k < NSLOT; k += 2) {
		struct iovt_extent e = { s_iova[k], s_size[k], k * K4, k * K4, 3, 0 };
		CHECK_EQ(shadow_tree_insert(T, &e), 0);
		__atomic_store_n(&st[k], __atomic_fetch_add(&stampc, 1, __ATOMIC_SEQ_CST), __ATOMIC_SEQ_CST);
	}
	if (fail_pct)
		iovt_alloc_fault = fault; /* set before any reader runs; refuses the writer's only */
	pthread_t th[NREADERS];
	for (uintptr_t i = 0; i < NREADERS; i++)
		CHECK(pthread_create(&th[i], NULL, reader, (void *)i) == 0);
	__atomic_store_n(&faults_on, 1, __ATOMIC_RELAXED);
	uint64_t enomem = 0;
	for (uint64_t i = 0; i < ops; i++) {
		unsigned k = (unsigned)(rnd(&r) % NSLOT);
		if (ld(&st[k])) {
			__atomic_store_n(&st[k], 0, __ATOMIC_SEQ_CST);
			CHECK_EQ(shadow_tree_remove_range(T, s_iova[k], s_iova[k] + s_size[k] - 1, NULL, NULL), 1);
			__atomic_store_n(&gone[k], __atomic_fetch_add(&stampc, 1, __ATOMIC_SEQ_CST), __ATOMIC_SEQ_CST);
		} else {
			struct iovt_extent e = { s_iova[k], s_size[k], k * K4, k * K4, 3, 0 };
			__atomic_store_n(&gone[k], 0, __ATOMIC_SEQ_CST);
			int rc = shadow_tree_insert(T, &e);
			if (rc == -ENOMEM) {
				enomem++;
				continue;
			}
			CHECK_EQ(rc, 0);
			__atomic_store_n(&st[k], __atomic_fetch_add(&stampc, 1, __ATOMIC_SEQ_CST), __ATOMIC_SEQ_CST);
		}
		if (i % 64 == 0)
			shadow_tree_flush(T);
	}
	__atomic_store_n(&faults_on, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < NREADERS; i++)
		pthread_join(th[i], NULL);
	int v = shadow_tree_verify(T);
	CHECK(v == 0 || v == -7);
	printf("tree-nomiss: %llu ops, %llu ENOMEM, %llu checks, %llu absent checks, height %u\n", (unsigned long long)ops,
	       (unsigned long long)enomem, (unsigned long long)checks, (unsigned long long)gchecks, shadow_tree_height(T));
	shadow_tree_destroy(T);
	urcu_memb_unregister_thread();
	return 0;
}
