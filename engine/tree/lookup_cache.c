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

/* A slot's stamp once a removal killed it: never an epoch (one a nanosecond
 * would take 584 years to get there). */
#define LC_DEAD UINT64_MAX

/* One cache line: a hit reads nothing else (a pointer to the tree's record
 * instead cost a second line: 47 vs 65 M/s at 64K extents). */
struct lc_slot {
	_Atomic uint64_t seq;         /* odd while a filler (or the writer) writes the slot */
	_Atomic uint64_t tag;         /* key_tag(); 0: never filled */
	_Atomic uint64_t stamp;       /* the epoch read before the descent; LC_DEAD: killed */
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
 * The writer kills an extent under each of its keys (key_walk).
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
static inline int probe(struct lc_table *t, uint64_t epoch, uint64_t tag, struct iovt_extent *out)
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
		return stamp == epoch ? 1 : -1;
	}
	return 0;
}

int lc_get(struct lookup_cache *c, uint64_t iova, struct iovt_extent *out)
{
	struct lc_table *t = atomic_load_explicit(&c->table, memory_order_acquire);
	if (!t)
		return 0;
	uint64_t epoch = atomic_load_explicit(&c->epoch, memory_order_acquire);
	int r = probe(t, epoch, key_tag(key_base(iova, 0), 0), out);
	if (r)
		return r;
	unsigned lv = atomic_load_explicit(&t->levels, memory_order_relaxed);
	for (unsigned l = 1; l < 3; l++)
		if ((lv >> l & 1) && (r = probe(t, epoch, key_tag(key_base(iova, l), l), out)))
			return r;
	return 0;
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
 * slots an extent); NULL without memory. Any reader; one CAS publishes.
 * seq_cst: lc_invalidate's argument orders this load before the filler's
 * second wseq read. */
static struct lc_table *table_for(struct lookup_cache *c, uint64_t extents, uint64_t max_slots)
{
	struct lc_table *t = atomic_load_explicit(&c->table, memory_order_seq_cst);
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
	if (!atomic_compare_exchange_strong_explicit(&c->table, &t, nt, memory_order_seq_cst,
						     memory_order_seq_cst)) {
		free(nt); /* another filler won */
		return t;
	}
	if (t) /* readers inside may still probe it: a grace period */
		iovt_call_rcu(&t->rcu, table_free_cb);
	return nt;
}

void lc_put(struct lookup_cache *c, struct lc_ticket k, uint64_t iova, const struct iovt_extent *e,
	    uint64_t extents, uint64_t max_slots)
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
		if (dead == 2 && atomic_load_explicit(&s->w[i].stamp, memory_order_relaxed) != k.epoch)
			dead = i;
	}
	if (v == 2)
		v = dead != 2 ? dead : (unsigned)(tag >> 19) & 1;
	struct lc_slot *sl = &s->w[v];
	uint64_t q = atomic_load_explicit(&sl->seq, memory_order_relaxed);
	if ((q & 1) || !atomic_compare_exchange_strong_explicit(&sl->seq, &q, q + 1,
								memory_order_seq_cst,
								memory_order_relaxed))
		return; /* another filler (or the writer) has it: the next miss fills */
	/* seqlock write: the odd sequence is visible before any field */
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&sl->tag, tag, memory_order_relaxed);
	atomic_store_explicit(&sl->iova, e->iova, memory_order_relaxed);
	atomic_store_explicit(&sl->size, e->size, memory_order_relaxed);
	atomic_store_explicit(&sl->gpa, e->gpa, memory_order_relaxed);
	atomic_store_explicit(&sl->hva, e->hva, memory_order_relaxed);
	atomic_store_explicit(&sl->perm_region, e->perm | (uint64_t)e->region << 8,
			      memory_order_relaxed);
	/* A removal since the ticket (its kills may have missed this slot,
	 * taken after them or in a table they did not visit): drop the fill. */
	bool live = atomic_load_explicit(&c->wseq, memory_order_seq_cst) == k.wseq;
	atomic_store_explicit(&sl->stamp, live ? k.epoch : LC_DEAD, memory_order_relaxed);
	uint64_t odd = q + 1;
	if (atomic_compare_exchange_strong_explicit(&sl->seq, &odd, q + 2, memory_order_release,
						    memory_order_relaxed))
		return;
	/* The writer poisoned the slot while we wrote it (+2, still odd):
	 * it may hold an extent being removed. Only a filler makes an odd
	 * sequence even, so close it, dead. */
	atomic_store_explicit(&sl->stamp, LC_DEAD, memory_order_relaxed);
	while (!atomic_compare_exchange_weak_explicit(&sl->seq, &odd, odd + 1, memory_order_release,
						      memory_order_relaxed))
		;
}

void lc_enable(struct lookup_cache *c)
{
	atomic_store_explicit(&c->on, 1, memory_order_release);
}

/* Writer: kills slot sl if it holds tag, poisons it if a filler is
 * writing it (the filler then drops its fill). */
static void kill_slot(struct lc_slot *sl, uint64_t tag)
{
	for (;;) {
		uint64_t q = atomic_load_explicit(&sl->seq, memory_order_seq_cst);
		if (q & 1) {
			if (atomic_compare_exchange_weak_explicit(&sl->seq, &q, q + 2,
								  memory_order_seq_cst,
								  memory_order_relaxed))
				return;
			continue;
		}
		if (atomic_load_explicit(&sl->tag, memory_order_relaxed) != tag ||
		    atomic_load_explicit(&sl->stamp, memory_order_relaxed) == LC_DEAD)
			return; /* (a newer fill of tag took the slot after our wseq bump: it drops itself) */
		if (!atomic_compare_exchange_weak_explicit(&sl->seq, &q, q + 1, memory_order_seq_cst,
							   memory_order_relaxed))
			continue;
		atomic_thread_fence(memory_order_release);
		atomic_store_explicit(&sl->stamp, LC_DEAD, memory_order_relaxed);
		atomic_store_explicit(&sl->seq, q + 2, memory_order_release);
		return;
	}
}

/*
 * The keys [first, last] can be cached under: for each of its pages,
 * lc_put's choice, the largest aligned block holding the page inside the
 * extent. Greedy from the first page, that is a run of pages up to a 2 MiB
 * boundary, of 2 MiB blocks up to a 1 GiB boundary, of 1 GiB blocks, then
 * of 2 MiB blocks and of pages (each run possibly empty): five runs at most,
 * each counted in one step, so an extent of a million pages costs no more
 * than one of two. Fills tags[] with at most `max` keys; returns their
 * number, or max + 1 when there are more (tags[] then unspecified).
 */
static unsigned key_walk(uint64_t first, uint64_t last, uint64_t *tags, unsigned max)
{
	unsigned n = 0;
	for (uint64_t cur = first & ~0xfffull;;) {
		/* (an unaligned first byte: its page is below first, and only
		 * a page key holds it, as in lc_put) */
		unsigned l = 2;
		while (l && (key_base(cur, l) != cur || cur < first ||
			     cur + ((1ull << lvl_shift[l]) - 1) > last))
			l--;
		unsigned sh = lvl_shift[l];
		uint64_t d = last - cur; /* no overflow: cur <= last */
		/* level-l blocks from cur that lie inside: all pages up to
		 * last's for level 0 (lc_put caches a partial page under it) */
		uint64_t k = l ? (d >> sh) + ((d & ((1ull << sh) - 1)) == (1ull << sh) - 1) : (d >> sh) + 1;
		if (l < 2) { /* the run ends where a larger block may start */
			unsigned up = lvl_shift[l + 1];
			uint64_t kb = ((1ull << up) - (cur & ((1ull << up) - 1))) >> sh;
			k = kb < k ? kb : k;
		}
		if (k > max - n)
			return max + 1;
		for (uint64_t j = 0; j < k; j++)
			tags[n++] = key_tag(cur + (j << sh), l);
		if ((k << sh) - 1 >= d) /* the run reached last (or the top) */
			return n;
		cur += k << sh;
	}
}

/*
 * Writer: kills the slots of an unlinked extent (the argument:
 * lookup_cache.h, "Validity"). Orderings, each needed once:
 *  - the wseq bump is seq_cst and comes after the unlink (program order
 *    and its release half): a filler whose ticket reads it (acquire half
 *    of its seq_cst load) descends after the unlink; one whose second
 *    read (after its slot CAS, both seq_cst) does not see it had taken its
 *    slot earlier in the single order S;
 *  - the table load is seq_cst, after the bump in S: it returns the table
 *    such a filler took its slot in, or a newer one (the tables are
 *    published by seq_cst CAS and only ever replaced by larger ones), and
 *    NULL only if no filler had a table before the bump (all later ones
 *    see the bump and drop their fill);
 *  - kill_slot's sequence load is seq_cst, after the bump in S: it reads
 *    that filler's slot CAS or a later write of the sequence, never an
 *    older one; when it reads the filler's publishing CAS (release) it
 *    synchronizes with it and sees its tag and stamp.
 * An extent of more than LC_MAX_KEYS keys bumps the epoch instead (a
 * release store after the unlink; one writer, so load + store): a filler
 * that reads the new epoch descended after the unlink, and the slots of
 * those that read the old one are dead to every reader that reads the new
 * one, as every reader after the sync does.
 */
void lc_invalidate(struct lookup_cache *c, uint64_t first, uint64_t last)
{
	if (!atomic_load_explicit(&c->on, memory_order_relaxed))
		return; /* off: nothing cached (the writer turned it on itself) */
	atomic_fetch_add_explicit(&c->wseq, 1, memory_order_seq_cst);
	/* No table after the bump: no slot anywhere, and every filler takes
	 * its slot later in S and drops its fill. Nothing else to do (the
	 * common case of a domain no one translates). */
	if (!atomic_load_explicit(&c->table, memory_order_seq_cst))
		return;
	/* A strict guest's storage buffers (64 KiB-1 MiB, 16-256 keys) are
	 * killed key by key too: the epoch would empty the whole cache on
	 * every such unmap (translate/engine/writer:3: 28 -> 105 M lookups/s
	 * at 1K extents; the removal costs ~0.3-1.4 us more). */
	uint64_t stack_tags[LC_STACK_KEYS];
	static __thread uint64_t more_tags[LC_MAX_KEYS];
	uint64_t *tags = stack_tags;
	unsigned n = key_walk(first, last, tags, LC_STACK_KEYS);
	if (n > LC_STACK_KEYS) {
		tags = more_tags;
		n = key_walk(first, last, tags, LC_MAX_KEYS);
	}
	if (n > LC_MAX_KEYS) {
		atomic_store_explicit(&c->epoch,
				      atomic_load_explicit(&c->epoch, memory_order_relaxed) + 1,
				      memory_order_release);
		return;
	}
	/* a filler may replace the table meanwhile: the read side keeps the
	 * one we kill in (loaded again inside: the same or a newer one, still
	 * after the bump in S, which is all the argument needs) */
	iovt_rcu_read_lock();
	struct lc_table *t = atomic_load_explicit(&c->table, memory_order_seq_cst);
	/* a set is two lines, and a large table misses both: fetch all of
	 * them at once, not one after the other */
	for (unsigned i = 0; i < n; i++) {
		struct lc_set *s = set_of(t, tags[i]);
		__builtin_prefetch(&s->w[0], 1);
		__builtin_prefetch(&s->w[1], 1);
	}
	for (unsigned i = 0; i < n; i++) {
		struct lc_set *s = set_of(t, tags[i]);
		kill_slot(&s->w[0], tags[i]);
		kill_slot(&s->w[1], tags[i]);
	}
	iovt_rcu_read_unlock();
}

uint64_t lc_memory_bytes(struct lookup_cache *c)
{
	/* acquire: nsets was written before the publishing CAS (TSan found
	 * the relaxed load racing a new table's memset); caller in a
	 * read-side section, so a replaced table is still there */
	struct lc_table *t = atomic_load_explicit(&c->table, memory_order_acquire);
	return t ? table_bytes(t->nsets) : 0;
}

void lc_destroy(struct lookup_cache *c)
{
	free(atomic_load_explicit(&c->table, memory_order_relaxed));
	atomic_store_explicit(&c->table, NULL, memory_order_relaxed);
}
