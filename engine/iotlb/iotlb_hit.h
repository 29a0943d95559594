/* SPDX-License-Identifier: MIT */
/*
 * The IOTLB's hit path (iotlb.h has the design): the table, set and entry
 * layouts a probe reads, the probes and iotlb_lookup, inline in
 * iovt_translate's IOTLB way (translate_iotlb, engine/domain.c) and in
 * iotlb.c. Out of line, the call and the callee's frame were a fifth of a
 * hit's instructions (twenty-first session, ARCHITECTURE.md). Nothing here
 * writes but the second-chance bit and the hit counters.
 */
#ifndef IOVT_IOTLB_IOTLB_HIT_H
#define IOVT_IOTLB_IOTLB_HIT_H

#include <errno.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/rcu.h"
#include "iotlb/iotlb.h"

#define IOTLB_NLEVELS 3
#define IOTLB_MAXRUN_BUCKETS 16
#define IOTLB_HIT_STRIPES 16

/*
 * An entry: one cache line of the table's line array, owned by one slot
 * (iotlb_line) and rewritten in place by the
 * fills of that slot. A seqlock without a reader-side retry: a fill bumps
 * `seq` before it rewrites the other fields (a release fence between) and
 * publishes the slot with the new seq in its low bits; a reader copies the
 * fields out, then (an acquire fence) compares `seq` with the slot word it
 * loaded: a mismatch means the line was rewritten meanwhile, and the
 * lookup misses (the walk answers). No grace period per entry, so no line
 * to allocate, retire or recycle on a miss, and a refill after an
 * invalidation lands in the same line as before: a pool's entries stay in
 * IOVA order (ARCHITECTURE.md, "Twenty-fifth session"). A fill stores the
 * fields with relaxed atomic stores; a reader loads them plainly
 * (iotlb_copy_out: relaxed atomic loads under TSan) while a fill may be
 * rewriting them, and trusts them only once the seq check passed.
 */
struct iotlb_entry {
	alignas(64) uint64_t iova;  /* [iova, iova + len) */
	uint64_t len;
	uint64_t gpa, hva;
	uint32_t perm, region;
	_Atomic uint64_t seq;       /* low IOTLB_SEQ_BITS: the slot word's */
};
_Static_assert(sizeof(struct iotlb_entry) == 64, "an entry is one cache line");

/*
 * A slot: 64 bits the probe decides on without reading the entry line:
 *   bits 62-63  the state: EMPTY (0), BUSY (a fill owns the slot and is
 *               writing its line: nobody else reads or writes that line),
 *               KILLED (BUSY, and a sweep of its key came by: the fill
 *               gives the slot up instead of publishing), LIVE
 *   bits 47-61  a 15-bit tag of the key (iotlb_set_at)
 *   bit 46      the second-chance bit (set by readers with a CAS only when
 *               clear, cleared by the victim choice)
 *   bits 0-45   the line's seq when it was published
 * State and tag on top: a probe's match is one shift and one compare, and
 * the seq's check a shift and a test (no 64-bit mask constants held in
 * registers across the ways).
 * 46 bits of seq: a reader that loaded a slot word and was then held off
 * the CPU would need its line rewritten 2^46 times to be fooled.
 */
typedef uint64_t iotlb_slot_t;
#define IOTLB_SEQ_BITS 46
#define IOTLB_SEQ_MASK ((1ull << IOTLB_SEQ_BITS) - 1)
#define IOTLB_SLOT_REF (1ull << 46)
#define IOTLB_TAG_SHIFT 47
#define IOTLB_TAG_MASK 0x7fffull
#define IOTLB_STATE_MASK (3ull << 62)
#define IOTLB_SLOT_BUSY (1ull << 62)
#define IOTLB_SLOT_KILLED (2ull << 62)
#define IOTLB_SLOT_LIVE (3ull << 62)

/* The line's seq is the one slot word v carries (iotlb_entry). */
static inline bool iotlb_seq_is(uint64_t seq, iotlb_slot_t v)
{
	return !((seq ^ v) << (64 - IOTLB_SEQ_BITS));
}

struct iotlb_set {
	alignas(64) _Atomic iotlb_slot_t slot[IOTLB_WAYS];
};
_Static_assert(sizeof(struct iotlb_set) == 64, "a set is one cache line");

struct iotlb_table {
	struct iotlb_entry *lines;  /* nsets * IOTLB_WAYS lines, after the sets */
	uint32_t nsets;
	_Atomic uint32_t levels;    /* bit L: entries of level L were inserted */
	uint32_t mask;              /* nsets - 1 (a power of two) */
	uint8_t shift;              /* 64 - log2(nsets): a group's base (iotlb_set_at) */
	uint8_t gshift;             /* log2 of a group's keys: min(6, log2(nsets)) */
	/* Longest level-0 run inserted (>= 4 KiB) per bucket of 2 MiB blocks
	 * (a run never crosses its block: iotlb_fill): a sweep reaches back
	 * only as far as runs in the first page's block go, so one long run
	 * (a 4-page ring) does not make every one-page PSI visit 4 sets. */
	alignas(64) _Atomic uint64_t maxrun[IOTLB_MAXRUN_BUCKETS];
	_Atomic uint64_t pressure;  /* live entries evicted (in chunks of PRESSURE_CHUNK) since the last judgement */
	_Atomic uint64_t judged[2]; /* hits and misses counted at the last judgement (count_eviction) */
	struct rcu_head rcu;        /* retired by a growth */
	struct {
		alignas(64) _Atomic uint64_t n[IOTLB_NCOUNT];
	} stripe[IOTLB_HIT_STRIPES];      /* counters, one writer per stripe (mostly) */

	struct iotlb_set sets[];
};

static const unsigned iotlb_level_shift[IOTLB_NLEVELS] = { 12, 21, 30 };

/* c->table after iotlb_close: never a table again (NULL and IOTLB_CLOSED are the
 * only values <= 64, so a hit tells both apart from a table with one compare). */
#define IOTLB_CLOSED ((struct iotlb_table *)(uintptr_t)64)

static inline struct iotlb_table *iotlb_live(struct iotlb_table *t)
{
	return t == IOTLB_CLOSED ? NULL : t;
}

/* The thread's counter stripe (1-based, 0: not yet picked): iotlb.c. */
extern __thread unsigned iotlb_hit_stripe;

/*
 * The set of iova's key at a level (its page number there) and its tag.
 * Keys go in groups of 64 consecutive ones (as many as there are sets in a
 * smaller table) to as many consecutive sets, wrapping at the table's end,
 * from a base the high bits of a Fibonacci hash of the group number pick.
 * Pages a vhost pool cycles through in IOVA order then read set lines in
 * address order, which the hardware prefetcher follows (a hash of each key
 * made every hit past the L2 a demand miss on its set line: pool 64K,
 * ARCHITECTURE.md "Twenty-fourth session"). Spread (translate-service's
 * set-spread case, 4 keys a set): up to the default capacity's 2^15 sets
 * no stride puts more than 15% of its keys past a set's ways (the per-key
 * hash before: 55%); in larger configured tables some strides reach 22-54%
 * (the per-key hash: 78%). A hash of the group's hash that spread better
 * lost most of the pool's gain (ARCHITECTURE.md). One multiply, two shifts,
 * an add and a mask (nsets is a power of two). The tag is the key plus
 * other bits of the group's hash (keys of one group never share a set).
 */
static inline uint32_t iotlb_set_at(const struct iotlb_table *t, uint64_t iova, unsigned level,
				    uint64_t *tag)
{
	uint64_t key = iova >> iotlb_level_shift[level];
	uint64_t g = ((key >> t->gshift) + ((uint64_t)level << 40)) * 0x9E3779B97F4A7C15ull;
	*tag = (key + (g >> 20)) & IOTLB_TAG_MASK;
	return (uint32_t)((g >> t->shift) + key) & t->mask;
}

/* A table's geometry for nsets sets (a power of two). */
static inline void iotlb_table_shape(struct iotlb_table *t, uint64_t nsets)
{
	unsigned k = (unsigned)__builtin_ctzll(nsets);
	t->nsets = (uint32_t)nsets;
	t->mask = (uint32_t)nsets - 1;
	t->shift = (uint8_t)(k ? 64 - k : 63); /* one set: any shift (the mask is 0; 64 is undefined) */
	t->gshift = (uint8_t)(k < 6 ? k : 6);
}

/* The first count of a thread: picks its stripe, then adds (iotlb.c). Out
 * of line and doing the add itself, so that no value lives across it: the
 * hit path then saves no register. */
void iotlb_stripe_first_add(struct iotlb_table *t, enum iotlb_counter k);

static inline void iotlb_stripe_add(struct iotlb_table *t, enum iotlb_counter k)
{
	unsigned s = iotlb_hit_stripe;
	if (__builtin_expect(!s, 0)) {
		iotlb_stripe_first_add(t, k);
		return;
	}
	/* One writer per stripe in the common case: a load and a store, not a
	 * locked add (a shared atomic add per hit would bounce a line between
	 * translating threads). Two threads sharing a stripe may lose a count. */
	_Atomic uint64_t *n = &t->stripe[s - 1].n[k];
	atomic_store_explicit(n, atomic_load_explicit(n, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

/*
 * The line of way w of a set. Way-major (lines[w * nsets + set]): fills
 * take the first empty way, so a table that is not full holds its entries
 * mostly in way 0, where consecutive sets' lines are consecutive. Set-major
 * (lines[set * 8 + w]) put those lines 512 bytes apart, all on 1/8 of the
 * L1's and the L2's sets: hits of a 256-buffer pool 12-16% slower than
 * with separately allocated lines.
 */
static inline struct iotlb_entry *iotlb_line(const struct iotlb_table *t, uint32_t set, unsigned w)
{
	return &t->lines[(size_t)w * t->nsets + set];
}

/* One relaxed load of a field a fill may be rewriting (iotlb_entry). */
#define IOTLB_RD(f) __atomic_load_n(&(f), __ATOMIC_RELAXED)

/*
 * The entry's fields to *out, as the seqlock's reader reads them (racing
 * a fill's rewrite; iotlb_probe then checks the seq). Plain loads: the
 * struct's first 40 bytes are iovt_extent's layout, copied in two 16-byte
 * and one 8-byte move, where a relaxed atomic load per field was twice the
 * instructions on a hit's path (the Linux kernel's seqlock readers read
 * plainly too; the fence and the seq load after them order the check).
 * Under TSan, relaxed atomic loads: the race is the design, not a bug.
 */
static inline void iotlb_copy_out(const struct iotlb_entry *e, struct iovt_extent *out)
{
#ifdef IOVT_TSAN
	out->iova = IOTLB_RD(e->iova);
	out->size = IOTLB_RD(e->len);
	out->gpa = IOTLB_RD(e->gpa);
	out->hva = IOTLB_RD(e->hva);
	out->perm = IOTLB_RD(e->perm);
	out->region = IOTLB_RD(e->region);
#else
	out->iova = e->iova;
	out->size = e->len;
	out->gpa = e->gpa;
	out->hva = e->hva;
	out->perm = e->perm;
	out->region = e->region;
#endif
}

/*
 * Probes one set: on a LIVE slot tagged `tag` whose entry covers iova,
 * copies the entry to *out and returns true if its line was not rewritten
 * meanwhile (seq). A rewritten line is a miss, not a retry: the fill that
 * follows answers from the guest table. *out may be written on a miss.
 */
static inline bool iotlb_probe(const struct iotlb_table *t, uint32_t set, uint64_t iova, uint64_t tag,
			       struct iovt_extent *out)
{
	_Atomic iotlb_slot_t *slot = ((struct iotlb_table *)t)->sets[set].slot; /* the ref bit */
	const uint64_t want = IOTLB_SLOT_LIVE | tag << IOTLB_TAG_SHIFT;
	/* Each way's line by an add (iotlb_line): computed beside the slot
	 * loads, not after the match (a multiply on the hit's path cost ~3%). */
	const struct iotlb_entry *e = iotlb_line(t, set, 0);
	const uint32_t nsets = t->nsets;
	for (int w = 0; w < IOTLB_WAYS; w++, e += nsets) {
		iotlb_slot_t v = atomic_load_explicit(&slot[w], memory_order_acquire);
		if ((v >> IOTLB_TAG_SHIFT) != (want >> IOTLB_TAG_SHIFT))
			continue;
		uint64_t lo = IOTLB_RD(e->iova), len = IOTLB_RD(e->len);
		if (iova - lo >= len)
			continue;
		iotlb_copy_out(e, out);
		/* The fields before the seq (the fill: seq, release fence, fields). */
		atomic_thread_fence(memory_order_acquire);
		if (!iotlb_seq_is(atomic_load_explicit(&e->seq, memory_order_relaxed), v))
			return false;
		/* Second chance: a CAS, so a slot emptied or replaced meanwhile
		 * is left as it is. */
		if (!(v & IOTLB_SLOT_REF))
			atomic_compare_exchange_strong_explicit(&slot[w], &v, v | IOTLB_SLOT_REF,
								memory_order_relaxed, memory_order_relaxed);
		return true;
	}
	return false;
}

/* A hit's count. */
static inline void iotlb_hit(struct iotlb_table *t)
{
	iotlb_stripe_add(t, IOTLB_HITS);
}

/*
 * The live 4 KiB-level entry covering iova copied to *out: true (not yet
 * counted: iotlb_hit), or false (*tp: the table, NULL when there is none).
 * Every table has that level; a domain mapped with 4 KiB pages has no
 * other. No call: inline in translate_iotlb, whose hit then makes none
 * (the large-page sets are iotlb_find_large, on the way to a miss). Inside
 * an RCU read-side section.
 */
static inline __attribute__((always_inline)) bool
iotlb_find_4k(struct iotlb *c, uint64_t iova, struct iotlb_table **tp, struct iovt_extent *out)
{
	struct iotlb_table *t = atomic_load_explicit(&c->table, memory_order_acquire);
	if ((uintptr_t)t <= (uintptr_t)IOTLB_CLOSED) {
		*tp = NULL;
		return false;
	}
	*tp = t;
	uint64_t tag;
	uint32_t set = iotlb_set_at(t, iova, 0, &tag);
	return iotlb_probe(t, set, iova, tag, out);
}

/* The 2 MiB and 1 GiB sets of t in use (iotlb_find_4k missed): true and
 * *out when a live entry covers iova. */
static inline bool iotlb_find_large(struct iotlb_table *t, uint64_t iova, struct iovt_extent *out)
{
	unsigned levels = atomic_load_explicit(&t->levels, memory_order_relaxed);
	for (unsigned l = 1; l < IOTLB_NLEVELS; l++) {
		if (!(levels & (1u << l)))
			continue;
		uint64_t tag;
		uint32_t set = iotlb_set_at(t, iova, l, &tag);
		if (iotlb_probe(t, set, iova, tag, out))
			return true;
	}
	return false;
}

/* 0 and *out on a hit; -ENOENT when nothing cached covers iova. Inside an
 * RCU read-side section. */
static inline int iotlb_lookup(struct iotlb *c, uint64_t iova, struct iovt_extent *out)
{
	struct iotlb_table *t;
	if (!iotlb_find_4k(c, iova, &t, out) && !(t && iotlb_find_large(t, iova, out)))
		return -ENOENT;
	iotlb_hit(t);
	return 0;
}

#endif
