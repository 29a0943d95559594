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
#include <stdint.h>

#include "common/rcu.h"
#include "iotlb/iotlb.h"

#define IOTLB_NLEVELS 3
#define IOTLB_MAXRUN_BUCKETS 16
#define IOTLB_HIT_STRIPES 16

struct iotlb_entry {             /* 48 bytes, allocated as one cache line */
	uint64_t iova, len;         /* [iova, iova + len) */
	uint64_t gpa, hva;
	uint32_t perm, region;
	_Atomic uint64_t state;     /* IOTLB_ENTRY_PENDING or IOTLB_ENTRY_LIVE */
};

/* A fill publishes its entry PENDING and confirms it LIVE (iotlb_fill), the
 * only state a probe accepts; nothing else writes it. */
enum { IOTLB_ENTRY_PENDING, IOTLB_ENTRY_LIVE };

/* A slot: an entry pointer (low 48 bits: user-space pointers fit on x86-64
 * and arm64; an entry whose pointer does not is not cached), a 15-bit tag
 * of its key and the second-chance bit (bit 63, set by readers with a CAS
 * only when clear, cleared by the victim choice). A probe dereferences only
 * the ways whose tag matches: one entry line per hit instead of up to eight
 * (perf: the dereference of every way was 30% of a hit); the victim choice
 * dereferences nothing (it was 40% of a fill: a cold entry line). 0: empty. */
typedef uintptr_t iotlb_slot_t;
#define IOTLB_TAG_SHIFT 48
#define IOTLB_PTR_MASK ((1ull << IOTLB_TAG_SHIFT) - 1)
#define IOTLB_SLOT_REF (1ull << 63)
#define IOTLB_TAG_MASK 0x7fffull

struct iotlb_set {
	alignas(64) _Atomic iotlb_slot_t slot[IOTLB_WAYS];
};
_Static_assert(sizeof(struct iotlb_set) == 64, "a set is one cache line");

static inline struct iotlb_entry *iotlb_slot_entry(iotlb_slot_t v)
{
	return (struct iotlb_entry *)(v & IOTLB_PTR_MASK);
}

struct iotlb_table {
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
	_Atomic uint64_t pressure;  /* live entries evicted (in chunks of PRESSURE_CHUNK) */
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

static inline void iotlb_copy_out(const struct iotlb_entry *e, struct iovt_extent *out)
{
	out->iova = e->iova;
	out->size = e->len;
	out->gpa = e->gpa;
	out->hva = e->hva;
	out->perm = e->perm;
	out->region = e->region;
}

static inline struct iotlb_entry *iotlb_probe(struct iotlb_set *s, uint64_t iova, uint64_t tag)
{
	for (int w = 0; w < IOTLB_WAYS; w++) {
		iotlb_slot_t v = atomic_load_explicit(&s->slot[w], memory_order_acquire);
		if (((v >> IOTLB_TAG_SHIFT) & IOTLB_TAG_MASK) != tag || !(v & IOTLB_PTR_MASK))
			continue;
		struct iotlb_entry *e = iotlb_slot_entry(v);
		if (iova - e->iova < e->len &&
		    atomic_load_explicit(&e->state, memory_order_acquire) == IOTLB_ENTRY_LIVE) {
			/* Second chance: a CAS, so a slot emptied or replaced
			 * meanwhile is left as it is. */
			if (!(v & IOTLB_SLOT_REF))
				atomic_compare_exchange_strong_explicit(&s->slot[w], &v, v | IOTLB_SLOT_REF,
									memory_order_relaxed,
									memory_order_relaxed);
			return e;
		}
	}
	return NULL;
}

/* A hit's answer: the entry copied out, the hit counted. */
static inline int iotlb_answer(struct iotlb_table *t, const struct iotlb_entry *e, struct iovt_extent *out)
{
	iotlb_copy_out(e, out);
	iotlb_stripe_add(t, IOTLB_HITS);
	return 0;
}

/*
 * The live 4 KiB-level entry covering iova, or NULL (*tp: the table, NULL
 * when there is none). Every table has that level; a domain mapped with
 * 4 KiB pages has no other. No call: inline in translate_iotlb, whose hit
 * then makes none (the large-page sets are iotlb_find_large, on the way to
 * a miss). Inside an RCU read-side section.
 */
static inline __attribute__((always_inline)) struct iotlb_entry *
iotlb_find_4k(struct iotlb *c, uint64_t iova, struct iotlb_table **tp)
{
	struct iotlb_table *t = atomic_load_explicit(&c->table, memory_order_acquire);
	if ((uintptr_t)t <= (uintptr_t)IOTLB_CLOSED) {
		*tp = NULL;
		return NULL;
	}
	*tp = t;
	uint64_t tag;
	uint32_t set = iotlb_set_at(t, iova, 0, &tag);
	return iotlb_probe(&t->sets[set], iova, tag);
}

/* The 2 MiB and 1 GiB sets of t in use (iotlb_find_4k missed): the live
 * entry covering iova, or NULL. */
static inline struct iotlb_entry *iotlb_find_large(struct iotlb_table *t, uint64_t iova)
{
	unsigned levels = atomic_load_explicit(&t->levels, memory_order_relaxed);
	for (unsigned l = 1; l < IOTLB_NLEVELS; l++) {
		if (!(levels & (1u << l)))
			continue;
		uint64_t tag;
		uint32_t set = iotlb_set_at(t, iova, l, &tag);
		struct iotlb_entry *e = iotlb_probe(&t->sets[set], iova, tag);
		if (e)
			return e;
	}
	return NULL;
}

/* 0 and *out on a hit; -ENOENT when nothing cached covers iova. Inside an
 * RCU read-side section. */
static inline int iotlb_lookup(struct iotlb *c, uint64_t iova, struct iovt_extent *out)
{
	struct iotlb_table *t;
	struct iotlb_entry *e = iotlb_find_4k(c, iova, &t);
	if (!e && t)
		e = iotlb_find_large(t, iova);
	return e ? iotlb_answer(t, e, out) : -ENOENT;
}

#endif
