/* SPDX-License-Identifier: MIT */
/*
 * Concurrency: reader threads translate (and iterate) while writers insert
 * and remove. The tree has one writer at a time (shadow_tree.h); the two
 * writer threads take turns on a mutex, as drainers take a domain's
 * sync_lock, so readers see the updates of both interleaved.
 *
 * Linearizability check: every insert gets a unique id u, encoded in the
 * extent (gpa = u << 12, hva = mix(iova, u), region = u mod 2^24). A global
 * sequence is stamped before each insert begins (ins[u]) and after each
 * removal has unlinked (rem[u]); a reader stamps before (rs) and after (re)
 * its lookup. Any extent a reader sees must satisfy ins[u] < re and
 * rem[u] >= rs (a stamp is fetch_add's old value), and be exactly what was
 * inserted at that slot.
 * Pinned extents, inserted before readers start and never removed, must
 * always be found (no false misses), by lookup and by iterate.
 * Half the lookups go through shadow_tree_translate (the lookup cache:
 * tree/lookup_cache.h), reader 0 with a cache of 512 slots (evictions, a
 * growth from 64 sets), reader 1 with 65536: a cached copy of a removed
 * extent returned after its removal fails the same rem[u] >= rs check.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>


#include "check.h"
#include "common/rcu.h"
#include "tree/shadow_tree.h"

CHECK_SEED_STORAGE;

#define K4 0x1000ull
#define M2 0x200000ull
#define G1 0x40000000ull
#define NREADERS 2
#define NWRITERS 2
#define NPIN 72
#define NSLOT 1024
#define LOGCAP (1u << 22)
#define NONE UINT32_MAX

/* Regions (1 GiB) used: 0 and 64 share stripe 0, 1 and 65 stripe 1, ... */
static const uint64_t regions[8] = { 0, 64, 1, 65, 7, 300, 1000, 70001 };

struct slot { uint64_t iova, size; };
static struct slot slots[NSLOT];
static struct iovt_extent pinned[NPIN];

struct logent { uint32_t ins, rem, slot; }; /* 12 bytes: the log is big */
static struct logent *lg;
static uint64_t next_u = 1;
static uint32_t seq = 1;
static int stop;
static struct shadow_tree *T;
static pthread_mutex_t wlock = PTHREAD_MUTEX_INITIALIZER; /* the one-writer rule */
static uint64_t stat_hits[NREADERS], stat_reads[NREADERS], stat_ins, stat_rm;

static uint64_t mix(uint64_t iova, uint64_t u)
{
	return (iova ^ (u * 0x9E3779B97F4A7C15ull)) + 1;
}

static uint64_t ld(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static uint32_t ld32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static uint32_t stamp(void) { return __atomic_fetch_add(&seq, 1, __ATOMIC_SEQ_CST); }

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1Dull;
}

/*
 * Layout: slots sit in the gaps between pinned extents of each region, so
 * writers free and re-create the very tables the pinned extents live in.
 * A few slots span regions, one spans more than 64 (all stripes). Some
 * are 33-232 pages: more keys than the cache kills on the writer's stack.
 */
static void layout(void)
{
	unsigned p = 0;
	for (unsigned k = 0; k < NSLOT; k++) {
		uint64_t base = regions[k % 8] * G1, j = k / 8; /* 128 per region */
		slots[k].iova = base + j * 4 * M2 + (j % 3) * K4; /* 8 MiB blocks */
		slots[k].size = (1 + j % 5) * K4;
		if (j % 16 == 9) /* 33-232 pages: killed key by key in the lookup cache */
			slots[k].size = (33 + (j * 37) % 200) * K4;
		if (j % 16 == 5) { /* a 2 MiB-aligned pair of L2 slots */
			slots[k].iova = base + j * 4 * M2 + 2 * M2;
			slots[k].size = 2 * M2;
		}
		if (j % 32 == 7 && p < NPIN) { /* a pinned page next to it, same leaf */
			uint64_t a = slots[k].iova + slots[k].size + K4;
			pinned[p] = (struct iovt_extent){ a, K4, (1ull << 40) + p * K4, mix(a, 0), 3, p };
			p++;
		}
		if (j % 32 == 8 && p < NPIN) { /* a pinned 2 MiB block */
			uint64_t a = base + j * 4 * M2 + 2 * M2;
			pinned[p] = (struct iovt_extent){ a, M2, (1ull << 40) + p * K4, mix(a, 0), 3, p };
			p++;
		}
	}
	/* multi-region slots (the last few): odd offsets over 2-3 regions */
	for (unsigned i = 0; i < 6; i++) {
		unsigned k = NSLOT - 1 - i;
		slots[k].iova = (2000 + 4 * i) * G1 - 3 * K4;
		slots[k].size = G1 + (1 + i) * K4;
	}
	slots[NSLOT - 7].iova = 3000 * G1 + 5 * K4; /* 70 regions: every stripe */
	slots[NSLOT - 7].size = 70 * G1;
	/* pinned extents across regions too */
	while (p < NPIN) {
		uint64_t a = (5000 + 3 * p) * G1 - 2 * K4;
		pinned[p] = (struct iovt_extent){ a, G1 + 4 * K4, (1ull << 40) + p * K4, mix(a, 0), 3, p };
		p++;
	}
}

/* Checks an extent a reader saw at address a within [rs, re]. */
static void check_seen(const struct iovt_extent *e, uint64_t a, uint64_t rs, uint64_t re)
{
	CHECK(a >= e->iova && a - e->iova < e->size);
	if (e->gpa >> 40) { /* pinned */
		uint64_t p = (e->gpa - (1ull << 40)) / K4;
		CHECK(p < NPIN);
		CHECK(memcmp(e, &pinned[p], sizeof(*e)) == 0);
		return;
	}
	uint64_t u = e->gpa >> 12;
	CHECK(u > 0 && u < LOGCAP);
	CHECK(u < ld(&next_u));
	struct logent *l = &lg[u];
	uint32_t k = __atomic_load_n(&l->slot, __ATOMIC_RELAXED);
	CHECK(k < NSLOT);
	CHECK_EQ(e->iova, slots[k].iova);
	CHECK_EQ(e->size, slots[k].size);
	CHECK_EQ(e->hva, mix(e->iova, u));
	CHECK_EQ(e->region, u & 0xffffff);
	CHECK_EQ(e->perm, 1 + u % 3);
	CHECK(ld32(&l->ins) < re);
	/* stamp() returns the value before its increment: a load of seq that
	 * returns v came before the stamp v's increment */
	CHECK(ld32(&l->rem) >= rs);
}

struct iter_state { uint64_t lo, hi, prev; uint32_t rs; unsigned pins_seen; };

static int iter_check(void *arg, const struct iovt_extent *e)
{
	struct iter_state *s = arg;
	/* ascending; a slot removed and re-inserted mid-walk may show twice
	 * (each was present at some moment of the call) */
	CHECK(e->iova >= s->prev);
	s->prev = e->iova;
	uint64_t a = e->iova > s->lo ? e->iova : s->lo;
	CHECK(a <= s->hi);
	check_seen(e, a, s->rs, ld32(&seq));
	if (e->gpa >> 40)
		s->pins_seen++;
	return 0;
}

static uint64_t stat_cached[NREADERS];

/* The plain descent, or the cached translate (the cache's own answer when
 * the tree is tall enough: shadow_tree_translate). */
static bool lookup(unsigned id, uint64_t x, uint64_t a, struct iovt_extent *o)
{
	if (x & (1ull << 40))
		return shadow_tree_lookup(T, a, o);
	stat_cached[id]++;
	return shadow_tree_translate(T, a, o, id ? 65536 : 512);
}

static void *reader(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	uint64_t r = check_seed * 31 + id + 1, hits = 0, reads = 0;
	urcu_memb_register_thread();
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		uint64_t x = rnd(&r);
		unsigned kind = (unsigned)(x % 100);
		if (kind < 30) { /* pinned: must hit */
			struct iovt_extent *p = &pinned[(x >> 8) % NPIN];
			uint64_t a = p->iova + (rnd(&r) % p->size);
			struct iovt_extent o;
			iovt_rcu_read_lock();
			bool h = lookup(id, x, a, &o);
			iovt_rcu_read_unlock();
			CHECK(h);
			CHECK(memcmp(&o, p, sizeof(o)) == 0);
		} else if (kind < 98) {
			struct slot *s = &slots[(x >> 8) % NSLOT];
			uint64_t a = s->iova + (rnd(&r) % s->size);
			struct iovt_extent o;
			uint64_t rs = ld32(&seq);
			iovt_rcu_read_lock();
			bool h = lookup(id, x, a, &o);
			iovt_rcu_read_unlock();
			uint64_t re = ld32(&seq);
			if (h) {
				check_seen(&o, a, rs, re);
				hits++;
			}
		} else { /* iterate a region window: every pinned extent in it shows */
			uint64_t reg = regions[(x >> 8) % 8];
			struct iter_state s = { reg * G1, reg * G1 + G1 - 1, 0, ld32(&seq), 0 };
			unsigned want = 0;
			for (unsigned p = 0; p < NPIN; p++)
				want += pinned[p].iova <= s.hi && pinned[p].iova + pinned[p].size > s.lo;
			iovt_rcu_read_lock();
			CHECK_EQ(shadow_tree_iterate(T, s.lo, s.hi, iter_check, &s), 0);
			iovt_rcu_read_unlock();
			CHECK_EQ(s.pins_seen, want);
		}
		reads++;
	}
	urcu_memb_unregister_thread();
	stat_hits[id] = hits;
	stat_reads[id] = reads;
	return NULL;
}

static int on_removed(void *arg, const struct iovt_extent *e)
{
	(void)arg;
	CHECK(!(e->gpa >> 40)); /* never a pinned one */
	uint64_t u = e->gpa >> 12;
	CHECK(u > 0 && u < LOGCAP);
	CHECK_EQ(ld32(&lg[u].rem), NONE);
	__atomic_store_n(&lg[u].rem, stamp(), __ATOMIC_SEQ_CST);
	__atomic_fetch_add(&stat_rm, 1, __ATOMIC_RELAXED);
	return 0;
}

static void *writer(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	uint64_t r = check_seed * 77 + id + 1;
	/* a registered reader: a removal reads the lookup cache's table under
	 * a read-side section (shadow_tree.h) */
	urcu_memb_register_thread();
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		uint64_t x = rnd(&r);
		unsigned k = (unsigned)((x >> 8) % NSLOT);
		if (k >= NSLOT - 7 && x % 8) /* the multi-region slots: rarer */
			continue;
		if (x % 100 < 55) {
			uint64_t u = __atomic_fetch_add(&next_u, 1, __ATOMIC_SEQ_CST);
			if (u >= LOGCAP) {
				__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
				break;
			}
			__atomic_store_n(&lg[u].slot, k, __ATOMIC_RELAXED);
			__atomic_store_n(&lg[u].rem, NONE, __ATOMIC_SEQ_CST);
			__atomic_store_n(&lg[u].ins, stamp(), __ATOMIC_SEQ_CST);
			struct iovt_extent e = { slots[k].iova, slots[k].size, u << 12,
						 mix(slots[k].iova, u), 1 + u % 3, u & 0xffffff };
			pthread_mutex_lock(&wlock);
			int rc = shadow_tree_insert(T, &e);
			pthread_mutex_unlock(&wlock);
			CHECK(rc == 0 || rc == -EEXIST);
			if (rc == 0)
				__atomic_fetch_add(&stat_ins, 1, __ATOMIC_RELAXED);
		} else if (x % 100 < 90) { /* one slot, hit anywhere inside */
			uint64_t a = slots[k].iova + rnd(&r) % slots[k].size;
			pthread_mutex_lock(&wlock);
			long n = shadow_tree_remove_range(T, a, a, on_removed, NULL);
			if (x % 64 == 0)
				shadow_tree_flush(T); /* as a domain sync ends */
			pthread_mutex_unlock(&wlock);
			CHECK(n == 0 || n == 1);
		} else { /* a window of slots in one region, all-or-nothing each */
			uint64_t a = slots[k].iova, b = a + (rnd(&r) % (64 * M2));
			for (unsigned p = 0; p < NPIN; p++) /* never a pinned one */
				if (pinned[p].iova > a && pinned[p].iova <= b)
					b = pinned[p].iova - 1;
			pthread_mutex_lock(&wlock);
			long n = shadow_tree_remove_range(T, a, b, on_removed, NULL);
			pthread_mutex_unlock(&wlock);
			CHECK(n >= 0);
		}
	}
	urcu_memb_unregister_thread();
	return NULL;
}

static int count_cb(void *arg, const struct iovt_extent *e)
{
	(void)e;
	++*(uint64_t *)arg;
	return 0;
}

/*
 * Phase two: a tree that empties and refills while readers look. Each cycle
 * inserts 1..40 one-page extents at pages 0..63 (ascending or descending:
 * the root leaf, its edge splits, a root above it) and removes them all:
 * the root leaf goes with the last extent (root NULL, 0 bytes) and comes
 * back. Readers translate, look up and iterate: whatever they see is
 * exactly what was inserted at that IOVA (gpa and hva derived from it).
 */
static struct shadow_tree *E;
static int e_stop;
static uint64_t e_seen[NREADERS];

static int e_check(void *arg, const struct iovt_extent *e)
{
	(void)arg;
	CHECK_EQ(e->size, K4);
	CHECK_EQ(e->gpa, e->iova + G1);
	CHECK_EQ(e->hva, e->iova ^ 0x5555000ull);
	return 0;
}

static void *e_reader(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	uint64_t r = check_seed * 17 + id + 1, seen = 0;
	urcu_memb_register_thread();
	while (!__atomic_load_n(&e_stop, __ATOMIC_RELAXED)) {
		uint64_t x = rnd(&r), a = (x % 64) * K4 + (x >> 40) % K4;
		struct iovt_extent o;
		iovt_rcu_read_lock();
		bool h = x & 1 ? shadow_tree_translate(E, a, &o, 1024) : shadow_tree_lookup(E, a, &o);
		if (h) {
			CHECK_EQ(o.iova, a & ~(K4 - 1));
			e_check(NULL, &o);
			seen++;
		}
		if ((x & 15) == 0)
			CHECK_EQ(shadow_tree_iterate(E, 0, ~0ull, e_check, NULL), 0);
		iovt_rcu_read_unlock();
	}
	urcu_memb_unregister_thread();
	e_seen[id] = seen;
	return NULL;
}

static void empty_cycles(unsigned cycles)
{
	E = shadow_tree_create(48);
	CHECK(E);
	pthread_t rt[NREADERS];
	for (unsigned i = 0; i < NREADERS; i++)
		CHECK(pthread_create(&rt[i], NULL, e_reader, (void *)(uintptr_t)i) == 0);
	uint64_t r = check_seed * 7 + 3;
	for (unsigned c = 0; c < cycles; c++) {
		uint64_t x = rnd(&r);
		unsigned n = 1 + (unsigned)(x % 40);
		bool desc = (x >> 8) & 1;
		for (unsigned i = 0; i < n; i++) {
			uint64_t a = (desc ? 63 - i : i) * K4;
			struct iovt_extent e = { .iova = a, .size = K4, .gpa = a + G1,
						 .hva = a ^ 0x5555000ull, .perm = 3, .region = 1 };
			CHECK_EQ(shadow_tree_insert(E, &e), 0);
		}
		CHECK_EQ(shadow_tree_remove_range(E, 0, ~0ull, NULL, NULL), n);
		CHECK_EQ(shadow_tree_height(E), 0);
		CHECK_EQ(shadow_tree_memory_bytes(E), 0);
	}
	__atomic_store_n(&e_stop, 1, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < NREADERS; i++)
		pthread_join(rt[i], NULL);
	CHECK_EQ(shadow_tree_verify(E), 0);
	printf("tree-concurrent: %u empty/refill cycles, reads that found an extent %" PRIu64 "+%" PRIu64
	       "\n", cycles, e_seen[0], e_seen[1]);
	CHECK(e_seen[0] + e_seen[1] > 0);
	shadow_tree_destroy(E);
}

int main(void)
{
	uint64_t seed = check_pick_seed("tree-concurrent");
	check_seed = seed ? seed : 1;
	unsigned ms = 2500;
#ifdef CHECK_SLOW_BUILD
	ms = 1200;
#endif
	const char *d = getenv("IOVT_TEST_MS");
	if (d)
		ms = (unsigned)atoi(d);
	lg = calloc(LOGCAP, sizeof(*lg));
	CHECK(lg);
	layout();
	T = shadow_tree_create(48);
	CHECK(T);
	for (unsigned p = 0; p < NPIN; p++)
		CHECK_EQ(shadow_tree_insert(T, &pinned[p]), 0);
	/* slots and pinned are disjoint */
	for (unsigned k = 0; k < NSLOT; k++)
		for (unsigned p = 0; p < NPIN; p++)
			CHECK(slots[k].iova + slots[k].size <= pinned[p].iova ||
			      pinned[p].iova + pinned[p].size <= slots[k].iova);

	pthread_t rt[NREADERS], wt[NWRITERS];
	for (unsigned i = 0; i < NREADERS; i++)
		CHECK(pthread_create(&rt[i], NULL, reader, (void *)(uintptr_t)i) == 0);
	for (unsigned i = 0; i < NWRITERS; i++)
		CHECK(pthread_create(&wt[i], NULL, writer, (void *)(uintptr_t)i) == 0);
	usleep(ms * 1000u);
	__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < NWRITERS; i++)
		pthread_join(wt[i], NULL);
	for (unsigned i = 0; i < NREADERS; i++)
		pthread_join(rt[i], NULL);

	/* quiescent: what is present is exactly the inserted-not-removed set */
	uint64_t live = NPIN;
	uint64_t nu = ld(&next_u) < LOGCAP ? ld(&next_u) : LOGCAP;
	for (uint64_t u = 1; u < nu; u++) {
		struct iovt_extent o;
		struct slot *s = &slots[lg[u].slot];
		if (lg[u].rem != NONE)
			continue;
		if (shadow_tree_lookup(T, s->iova, &o) && o.gpa == u << 12)
			live++;
	}
	uint64_t walked = 0;
	shadow_tree_iterate(T, 0, ~0ull, count_cb, &walked);
	CHECK_EQ(shadow_tree_count(T), live);
	CHECK_EQ(walked, live);
	CHECK_EQ(stat_ins - stat_rm + NPIN, live);
	printf("tree-concurrent: %u ms, inserts %" PRIu64 ", removals %" PRIu64
	       ", reads %" PRIu64 "+%" PRIu64 " (slot hits %" PRIu64 "+%" PRIu64 ", cached translates %"
	       PRIu64 "+%" PRIu64 "), live %" PRIu64 ", height %u, cache %" PRIu64 " bytes\n",
	       ms, stat_ins, stat_rm, stat_reads[0], stat_reads[1], stat_hits[0], stat_hits[1],
	       stat_cached[0], stat_cached[1], live, shadow_tree_height(T), shadow_tree_cache_bytes(T));
	CHECK(shadow_tree_height(T) >= 3); /* else translate bypasses the cache */
	CHECK(shadow_tree_cache_bytes(T) > 0);
	CHECK(stat_ins > 100 && stat_rm > 100 && stat_hits[0] + stat_hits[1] > 100);
	shadow_tree_destroy(T);
	free(lg);
	/* this thread writes E while the readers look (shadow_tree.h: a
	 * registered reader) */
	urcu_memb_register_thread();
#ifdef CHECK_SLOW_BUILD
	empty_cycles(20000);
#else
	empty_cycles(200000);
#endif
	urcu_memb_unregister_thread();
	return 0;
}
