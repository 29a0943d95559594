/* SPDX-License-Identifier: MIT */
/*
 * The shadow tree's lookup cache: a direct answer for iovt_translate on a
 * domain with a MAP notifier, in front of the B+-tree descent (three or four
 * levels with a pivot search each: 26-52 ns a lookup at 1K-64K extents,
 * slower than a locked hash of pages). Knows nothing of the tree's layout:
 * it caches copies of the extents the tree hands it.
 *
 * Layout: `nsets` sets of two 64-byte slots, a set chosen by a hash of the
 * key (the product's top bits): the 4 KiB page, or the 2 MiB / 1 GiB block
 * of iova when the extent covers it whole. A slot is one cache line: the
 * key (its tag), a copy of the extent found for it and the cache's epoch
 * when the filler began; a per-slot sequence (a seqlock) makes them one
 * value for a reader. A hit reads that line and the epoch (beside the table
 * pointer), nothing of the tree. The table is allocated by the first fill,
 * sized from the tree's extent count (two slots an extent, at least 64
 * sets, at most the domain's translation capacity: iovt_config.iotlb_entries
 * rounded up to a power of two, in slots), and replaced by one four times larger when the tree outgrows it
 * (the old one goes after a grace period).
 *
 * Validity: the writer kills exactly what it removes. After it unlinks an
 * extent it calls lc_invalidate, which
 *  1. bumps `wseq` (seq_cst), then
 *  2. loads the table (seq_cst; none: done, no slot exists and every
 *     later filler sees step 1), and for each key the extent can be cached
 *     under (at most LC_MAX_KEYS: a larger extent bumps `epoch` instead,
 *     which kills every slot), visits the key's set: a slot holding the key
 *     is marked dead (stamp LC_DEAD); a slot a filler is writing (odd
 *     sequence) is poisoned (+2 on its sequence), and that filler then
 *     drops its fill.
 * A filler reads `wseq` and `epoch` (lc_ticket) BEFORE it descends, takes
 * its slot by CAS on the sequence, writes it, reads `wseq` again and drops
 * the fill (marks it dead) if it moved; it publishes by a CAS back to even,
 * which fails when the writer poisoned it. For an extent E removed:
 *  - a filler whose first `wseq` read saw step 1 descended after the unlink
 *    (release/acquire), so never finds E;
 *  - one whose second read saw step 1 drops its fill;
 *  - one whose second read did not see step 1 took its slot before step 1
 *    (seq_cst order), so step 2 finds that slot either being written
 *    (poisoned: dropped) or holding E under its key (killed) — or already
 *    rewritten (the kill reads the publishing CAS with acquire, so it sees
 *    the tag and stamp). A fill into a table replaced before step 2 is read
 *    only by readers that loaded that table before step 2's load, i.e.
 *    that race the removal (one after the sync reads the newer pointer).
 *  - the epoch path: a filler that read the new epoch descended after the
 *    unlink (release/acquire); the slots stamped with the old one are dead
 *    to every reader that reads the new one, as readers after the sync do.
 * A reader uses a slot only while its sequence was even and unchanged
 * around its reads and its stamp equals the epoch. The sync invalidates
 * before it returns, so after an invalidation's fence no reader gets the
 * removed extent (the VT-d rule of iovt_translate); a reader racing the
 * removal gets what a descent racing it may get. Inserts and leaf copies
 * kill nothing: a cached copy stays exactly right, and holes are not cached.
 * Sequences, wseq and epoch are 64-bit: never reused.
 *
 * Synchronization table:
 *   function        read side?  caller                 waits for
 *   lc_enable       no          the tree's one writer  nothing
 *   lc_on           required    any reader             nothing
 *   lc_get          required    any reader             nothing
 *   lc_ticket       required    any reader (a filler)  nothing
 *   lc_put          required    any reader (a filler)  nothing (mallocs a table; call_rcu on growth)
 *   lc_invalidate   no          the tree's one writer  nothing (a few CAS per removed key)
 *   lc_destroy      no          no reader left         nothing
 */
#ifndef IOVT_TREE_LOOKUP_CACHE_H
#define IOVT_TREE_LOOKUP_CACHE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "iovt.h" /* struct iovt_extent */

#define LC_MIN_SETS 64u  /* the smallest table: 8 KiB */
/* Keys killed one by one per removed extent; beyond: the epoch. 256: an
 * unaligned 1 MiB buffer of a strict guest (32 emptied the cache on every
 * 128 KiB+ unmap: ARCHITECTURE.md, the lookup cache). */
#define LC_MAX_KEYS 256u
#define LC_STACK_KEYS 32u /* of which on the writer's stack (more: a per-thread buffer) */

struct lc_table;

/* Two lines: what the writer bumps on every removal (fillers read it, hits
 * do not), then what every reader reads (written by removals of large
 * extents only); the rest of that line is the tree's read-mostly header. */
struct lookup_cache {
	_Alignas(64) _Atomic uint64_t wseq; /* bumped (seq_cst) by every removal before its kills */
	char pad_[64 - sizeof(uint64_t)];
	_Atomic(struct lc_table *) table;
	_Atomic uint64_t epoch; /* bumped for removals of more than LC_MAX_KEYS keys */
	_Atomic unsigned on;    /* 0: the cache is off (a small tree) */
};

/* What a filler reads before it descends (lc_ticket). */
struct lc_ticket {
	uint64_t wseq, epoch;
};

/* Writer: turns the cache on. Before it no reader caches anything, so
 * removals made before need no kill. */
void lc_enable(struct lookup_cache *c);

/* Whether the cache is on. Read side. */
static inline bool lc_on(struct lookup_cache *c)
{
	return atomic_load_explicit(&c->on, memory_order_acquire) != 0;
}

/* Read before the descent whose answer lc_put caches. Read side. */
static inline struct lc_ticket lc_ticket(struct lookup_cache *c)
{
	struct lc_ticket k;
	k.wseq = atomic_load_explicit(&c->wseq, memory_order_seq_cst);
	k.epoch = atomic_load_explicit(&c->epoch, memory_order_acquire);
	return k;
}

/* 1 and *out (the whole extent) when iova is cached and live; 0 when it
 * is not cached; -1 when it was, but a removal killed it since (or a
 * filler is rewriting the slot). Read side. *out may be written on a
 * miss. */
int lc_get(struct lookup_cache *c, uint64_t iova, struct iovt_extent *out);

/* Caches extent e (found for iova by a descent that began after `k` was
 * read) under the largest block of iova it covers. `extents`: the tree's
 * size now (sizes the table); `max_slots`: the capacity (64 bytes a
 * slot). Best effort: a slot being written by another filler, a removal
 * during the descent, or no memory, caches nothing. */
void lc_put(struct lookup_cache *c, struct lc_ticket k, uint64_t iova, const struct iovt_extent *e,
	    uint64_t extents, uint64_t max_slots);

/* Writer: an extent covering [first, last] was unlinked (after the unlink). */
void lc_invalidate(struct lookup_cache *c, uint64_t first, uint64_t last);

/* Bytes of the table (0 while off). Racy. */
uint64_t lc_memory_bytes(struct lookup_cache *c); /* caller in a read-side section (or quiescent) */

/* Frees the table; no reader can be left. */
void lc_destroy(struct lookup_cache *c);

#endif
