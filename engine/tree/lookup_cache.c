/* SPDX-License-Identifier: MIT */
/*
 * The shadow tree's lookup cache (contract and the validity argument:
 * lookup_cache.h; measurements: ARCHITECTURE.md, "The shadow tree").
 */
#include "tree/lookup_cache.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rcu.h"

/* One cache line: a hit reads nothing else (a pointer to the tree's record
 * instead cost a second line: 47 vs 65 M/s at 64K extents). */
struct lc_slot {
	_Atomic uint64_t seq;         /* odd while a filler writes the slot */
	_Atomic uint64_t tag;         /* key_tag(); 0: never filled */
	_Atomic uint64_t stamp;       /* the bucket's gen read before the descent */
	_Atomic uint64_t iova, size, gpa, hva;
	_Atomic uint64_t perm_region; /* perm | region << 8 */
};

struct lc_set {
	struct lc_slot w[2];
};
_Static_assert(sizeof(struct lc_set) == 128, "a set is two cache lines");

struct lc_table {
	uint64_t nsets; /* a power of two */
	unsigned shift; /* 64 - log2(nsets) */
	_Atomic unsigned levels; /* bit l: a key of level l was ever cached */
	struct rcu_head rcu;
	char pad_[64 - 2 * sizeof(uint64_t) - sizeof(struct rcu_head)];
	struct lc_set set[];
};
_Static_assert(sizeof(struct lc_table) == 64, "sets start on a cache line");

/*
 * Keys. An extent is cached under the largest block of iova it covers
 * whole: the 4 KiB page (level 0), the 2 MiB block (1) or the 1 GiB block
 * (2), so that a lookup anywhere in a large extent hits one slot (keyed by
 * page only, a table sized for a thousand 2 MiB extents would thrash on
 * their 512K pages). A lookup probes level 0, then the levels ever cached.
 * The stamp is the generation of the bucket of the block's first byte,
 * which any removal of an extent covering the block bumps.
 */
static const unsigned lvl_shift[3] = { 12, 21, 30 };

static inline uint64_t key_base(uint64_t iova, unsigned l)
{
	return iova & ~((1ull << lvl_shift[l]) - 1);
}

static inline uint64_t key_tag(uint64_t base, unsigned l)
{
	return base | (uint64_t)l << 1 | 1; /* never 0; base has 12 free bits */
}

static inline struct lc_set *set_of(struct lc_table *t, uint64_t tag)
{
	/* Fibonacci hashing, the product's TOP bits (its middle bits
	 * repeat for keys in arithmetic progression: 8160 sets of 131072
	 * used by 65536 pages 8 KiB apart) */
	return &t->set[(tag * 0x9e3779b97f4a7c15ull) >> t->shift];
}

static inline size_t table_bytes(uint64_t nsets)
{
	return sizeof(struct lc_table) + nsets * sizeof(struct lc_set);
}

/* 1: hit (*out set), 0: not cached, -1: cached but dead or being written. */
static int probe(struct lc_table *t, _Atomic uint64_t *gens, uint64_t tag, struct iovt_extent *out)
{
	struct lc_set *s = set_of(t, tag);
	for (unsigned i = 0; i < 2; i++) {
		struct lc_slot *sl = &s->w[i];
		uint64_t s1 = atomic_load_explicit(&sl->seq, memory_order_acquire);
		if (atomic_load_explicit(&sl->tag, memory_order_relaxed) != tag)
			continue;
		uint64_t stamp = atomic_load_explicit(&sl->stamp, memory_order_relaxed);
		uint64_t pr = atomic_load_explicit(&sl->perm_region, memory_order_relaxed);
		out->iova = atomic_load_explicit(&sl->iova, memory_order_relaxed);
		out->size = atomic_load_explicit(&sl->size, memory_order_relaxed);
		out->gpa = atomic_load_explicit(&sl->gpa, memory_order_relaxed);
		out->hva = atomic_load_explicit(&sl->hva, memory_order_relaxed);
		out->perm = (uint32_t)(pr & 0xff);
		out->region = (uint32_t)(pr >> 8);
		/* seqlock read: the fields above were one filler's if seq did
		 * not move (and was even) around them */
		atomic_thread_fence(memory_order_acquire);
		if ((s1 & 1) || atomic_load_explicit(&sl->seq, memory_order_relaxed) != s1)
			return -1;
		return stamp == lc_stamp(gens, tag & ~0xfffull) ? 1 : -1;
	}
	return 0;
}

int lc_get(struct lookup_cache *c, _Atomic uint64_t *gens, uint64_t iova, struct iovt_extent *out)
{
	struct lc_table *t = atomic_load_explicit(&c->table, memory_order_acquire);
	if (!t)
		return 0;
	int r = probe(t, gens, key_tag(key_base(iova, 0), 0), out);
	if (r)
		return r;
	unsigned lv = atomic_load_explicit(&t->levels, memory_order_relaxed);
	for (unsigned l = 1; l < 3; l++)
		if ((lv >> l & 1) && (r = probe(t, gens, key_tag(key_base(iova, l), l), out)))
			return r;
	return 0;
}

void lc_stamps(_Atomic uint64_t *gens, uint64_t iova, uint64_t stamps[LC_LEVELS])
{
	for (unsigned l = 0; l < LC_LEVELS; l++)
		stamps[l] = lc_stamp(gens, key_base(iova, l));
}

static void table_free_cb(struct rcu_head *h)
{
	iovt_rcu_callback_enter();
	struct lc_table *t = caa_container_of(h, struct lc_table, rcu);
	free(t);
}

/* Two slots an extent (one each: 39 instead of 65 M lookups/s at 64K
 * extents, a third of the lookups missing), a power of two of sets, at
 * least LC_MIN_SETS, at most max_slots / 2. */
static uint64_t sets_for(uint64_t extents, uint64_t max_sets)
{
	uint64_t n = LC_MIN_SETS;
	while (n < extents && n < max_sets)
		n <<= 1;
	return n;
}

/* The table to fill, allocated or grown when the tree outgrew it (two
 * slots an extent); NULL without memory. Any reader; one CAS publishes. */
static struct lc_table *table_for(struct lookup_cache *c, uint64_t extents, uint64_t max_slots)
{
	struct lc_table *t = atomic_load_explicit(&c->table, memory_order_acquire);
	uint64_t max_sets = max_slots / 2 > LC_MIN_SETS ? max_slots / 2 : LC_MIN_SETS;
	uint64_t n = sets_for(extents, max_sets);
	if (t && t->nsets >= n)
		return t;
	if (t && n < t->nsets * 4) /* grow by 4x at least: few replacements */
		n = sets_for(t->nsets * 4, max_sets);
	/* glibc's, as the IOTLB's tables: 64-byte aligned, freed with free() */
	struct lc_table *nt = iovt_aligned_alloc(64, table_bytes(n));
	if (!nt)
		return t;
	memset(nt, 0, table_bytes(n));
	nt->nsets = n;
	nt->shift = 64 - (unsigned)__builtin_ctzll(n);
	if (!atomic_compare_exchange_strong_explicit(&c->table, &t, nt, memory_order_acq_rel,
						     memory_order_acquire)) {
		free(nt); /* another filler won */
		return t;
	}
	if (t) /* readers inside may still probe it: a grace period */
		iovt_call_rcu(&t->rcu, table_free_cb);
	return nt;
}

void lc_put(struct lookup_cache *c, _Atomic uint64_t *gens, uint64_t iova,
	    const struct iovt_extent *e, const uint64_t stamps[LC_LEVELS], uint64_t extents,
	    uint64_t max_slots)
{
	struct lc_table *t = table_for(c, extents, max_slots);
	if (!t)
		return;
	unsigned l = 2;
	while (l && (key_base(iova, l) < e->iova ||
		     key_base(iova, l) + (1ull << lvl_shift[l]) - 1 > e->iova + (e->size - 1)))
		l--;
	uint64_t tag = key_tag(key_base(iova, l), l);
	if (l && !(atomic_load_explicit(&t->levels, memory_order_relaxed) >> l & 1))
		atomic_fetch_or_explicit(&t->levels, 1u << l, memory_order_relaxed);
	struct lc_set *s = set_of(t, tag);
	/* The victim: a slot of this key, else a free or dead one, else the
	 * way a bit of the key picks (two hot keys of one set alternate). */
	unsigned v = 2, dead = 2;
	for (unsigned i = 0; i < 2; i++) {
		uint64_t old = atomic_load_explicit(&s->w[i].tag, memory_order_relaxed);
		if (old == tag || !old) {
			v = i;
			break;
		}
		if (dead == 2 && atomic_load_explicit(&s->w[i].stamp, memory_order_relaxed) !=
					 lc_stamp(gens, old & ~0xfffull))
			dead = i;
	}
	if (v == 2)
		v = dead != 2 ? dead : (unsigned)(tag >> 19) & 1;
	struct lc_slot *sl = &s->w[v];
	uint64_t q = atomic_load_explicit(&sl->seq, memory_order_relaxed);
	if ((q & 1) || !atomic_compare_exchange_strong_explicit(&sl->seq, &q, q + 1,
								memory_order_relaxed,
								memory_order_relaxed))
		return; /* another filler has it: skip, the next miss fills */
	/* seqlock write: the odd sequence is visible before any field */
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&sl->tag, tag, memory_order_relaxed);
	atomic_store_explicit(&sl->stamp, stamps[l], memory_order_relaxed);
	atomic_store_explicit(&sl->iova, e->iova, memory_order_relaxed);
	atomic_store_explicit(&sl->size, e->size, memory_order_relaxed);
	atomic_store_explicit(&sl->gpa, e->gpa, memory_order_relaxed);
	atomic_store_explicit(&sl->hva, e->hva, memory_order_relaxed);
	atomic_store_explicit(&sl->perm_region, e->perm | (uint64_t)e->region << 8,
			      memory_order_relaxed);
	atomic_store_explicit(&sl->seq, q + 2, memory_order_release);
}

int lc_enable(struct lookup_cache *c)
{
	if (atomic_load_explicit(&c->gens, memory_order_relaxed))
		return 0;
	_Atomic uint64_t *g = iovt_zalloc(0, LC_BUCKETS * sizeof(*g));
	if (!g)
		return -ENOMEM;
	atomic_store_explicit(&c->gens, g, memory_order_release);
	return 0;
}

void lc_bump(struct lookup_cache *c, uint64_t first, uint64_t last)
{
	_Atomic uint64_t *gens = atomic_load_explicit(&c->gens, memory_order_relaxed);
	if (!gens)
		return; /* off: nothing cached */
	uint64_t g0 = first >> LC_GRAN_SHIFT, g1 = last >> LC_GRAN_SHIFT;
	uint64_t n = g1 - g0 >= LC_BUCKETS ? LC_BUCKETS : g1 - g0 + 1;
	for (uint64_t i = 0; i < n; i++) {
		_Atomic uint64_t *g = &gens[(g0 + i) % LC_BUCKETS];
		/* one writer: a plain increment, published with release (the
		 * unlink before it is then visible to a filler that reads the
		 * new value) */
		atomic_store_explicit(g, atomic_load_explicit(g, memory_order_relaxed) + 1,
				      memory_order_release);
	}
}

uint64_t lc_memory_bytes(struct lookup_cache *c)
{
	/* acquire: nsets was written before the publishing CAS (TSan found
	 * the relaxed load racing a new table's memset); caller in a
	 * read-side section, so a replaced table is still there */
	struct lc_table *t = atomic_load_explicit(&c->table, memory_order_acquire);
	uint64_t b = atomic_load_explicit(&c->gens, memory_order_relaxed)
			     ? iovt_alloc_usable(LC_BUCKETS * sizeof(uint64_t))
			     : 0;
	return b + (t ? table_bytes(t->nsets) : 0);
}

void lc_destroy(struct lookup_cache *c)
{
	free(atomic_load_explicit(&c->table, memory_order_relaxed));
	atomic_store_explicit(&c->table, NULL, memory_order_relaxed);
	iovt_free(0, (void *)atomic_load_explicit(&c->gens, memory_order_relaxed),
		  LC_BUCKETS * sizeof(uint64_t));
	atomic_store_explicit(&c->gens, NULL, memory_order_relaxed);
}
