/* SPDX-License-Identifier: MIT */
/*
 * The shadow tree's lookup cache: a direct answer for iovt_translate on a
 * domain with a MAP notifier, in front of the B+-tree descent (three or four
 * levels with a pivot search each: 26-52 ns a lookup at 1K-64K extents,
 * slower than a locked hash of pages). Knows nothing of the tree's layout:
 * it caches opaque record pointers that the tree hands it.
 *
 * Layout: `nsets` sets of two 64-byte slots, a set chosen by a hash of the
 * key (the product's top bits): the 4 KiB page, or the 2 MiB / 1 GiB block
 * of iova when the extent covers it whole. A slot is one cache line: the
 * key (its tag), a copy of the extent found for it, and the generation of
 * the key's bucket when the filler began; a per-slot sequence (a seqlock)
 * makes them one value for a reader. A hit reads that line and the
 * bucket's generation, nothing of the tree. The table is allocated by the
 * first fill, sized from the tree's extent count (two slots an extent, at
 * least 64 sets, at most the domain's translation capacity,
 * iovt_config.iotlb_entries slots), and replaced by one four times larger
 * when the tree outgrows it (the old one goes after a grace period).
 *
 * Validity. `gens[b]` (bucket b: 64 KiB granules modulo LC_BUCKETS) is bumped
 * by the tree's writer AFTER it unlinks an extent covering a page of the
 * bucket. A filler reads the bucket's gen (acquire) BEFORE it descends the
 * tree, and stamps its slot with it. A reader uses a slot only while its
 * stamp equals the bucket's gen:
 *  - a filler that read the old gen may have found an extent being
 *    removed; its stamp is dead from the bump on, whenever it lands;
 *  - one that read the new gen descended after the unlink (acquire/release
 *    on gen), so never finds the removed extent;
 *  - a reader that still reads the old gen races the removal, and gets
 *    what a descent racing it may get (the tree allows either); the sync
 *    bumps before it returns, so after an invalidation's fence no reader
 *    gets the removed extent (the VT-d rule of iovt_translate).
 * Inserts and leaf copies bump nothing: a cached copy stays exactly right,
 * and holes are not cached. Generations are 64-bit: never reused.
 *
 * Synchronization table:
 *   function        read side?  caller                 waits for
 *   lc_enable       no          the tree's one writer  nothing (mallocs 2 KiB)
 *   lc_get          required    any reader             nothing
 *   lc_stamp        required    any reader (a filler)  nothing
 *   lc_put          required    any reader (a filler)  nothing (mallocs a table; call_rcu on growth)
 *   lc_bump         no          the tree's one writer  nothing
 *   lc_destroy      no          no reader left         nothing
 */
#ifndef IOVT_TREE_LOOKUP_CACHE_H
#define IOVT_TREE_LOOKUP_CACHE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "iovt.h" /* struct iovt_extent */

#define LC_BUCKETS 256        /* generations per tree: 2 KiB, allocated with the third level */
#define LC_GRAN_SHIFT 16      /* a bucket: 64 KiB granules modulo LC_BUCKETS */
#define LC_MIN_SETS 64u       /* the smallest table: 8 KiB */
#define LC_LEVELS 3           /* keys: the 4 KiB page, the 2 MiB or 1 GiB block */

struct lc_table;

struct lookup_cache {
	_Atomic(struct lc_table *) table;
	_Atomic(_Atomic uint64_t *) gens; /* NULL: the cache is off (a small tree) */
};

/* Writer: turns the cache on (allocates the generations; they stay until
 * the tree goes). Before it no reader caches anything, so removals made
 * before need no bump. 0 or -ENOMEM (the cache stays off). */
int lc_enable(struct lookup_cache *c);

/* The generations, or NULL while the cache is off. Read side. */
static inline _Atomic uint64_t *lc_gens(struct lookup_cache *c)
{
	return atomic_load_explicit(&c->gens, memory_order_acquire);
}

/* The generation of addr's bucket. Read side. */
static inline uint64_t lc_stamp(_Atomic uint64_t *gens, uint64_t addr)
{
	return atomic_load_explicit(&gens[(addr >> LC_GRAN_SHIFT) % LC_BUCKETS],
				    memory_order_acquire);
}

/* The stamps a filler reads before it descends: one per key level it may
 * cache the answer under (lookup_cache.c, "Keys"). Read side. */
void lc_stamps(_Atomic uint64_t *gens, uint64_t iova, uint64_t stamps[LC_LEVELS]);

/* 1 and *out (the whole extent) when iova is cached and its stamp is
 * live; 0 when it is not cached; -1 when it was, but a removal killed the
 * stamp since (or a filler is rewriting the slot). Read side; gens from
 * lc_gens. *out may be written on a miss. */
int lc_get(struct lookup_cache *c, _Atomic uint64_t *gens, uint64_t iova, struct iovt_extent *out);

/* Caches extent e (found for iova) under the largest block of iova it
 * covers, with the stamps read before the descent. `extents`: the tree's size now (sizes the table);
 * `max_slots`: the capacity (64 bytes a slot). Best effort: a slot being
 * written by another filler, or no memory, caches nothing. */
void lc_put(struct lookup_cache *c, _Atomic uint64_t *gens, uint64_t iova,
	    const struct iovt_extent *e, const uint64_t stamps[LC_LEVELS], uint64_t extents,
	    uint64_t max_slots);

/* Writer: an extent covering [first, last] was unlinked (after the unlink). */
void lc_bump(struct lookup_cache *c, uint64_t first, uint64_t last);

/* Bytes of the generations and the table (0 while off). Racy. */
uint64_t lc_memory_bytes(struct lookup_cache *c); /* caller in a read-side section (or quiescent) */

/* Frees the generations and the table; no reader can be left. */
void lc_destroy(struct lookup_cache *c);

#endif
