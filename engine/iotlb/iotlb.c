/* SPDX-License-Identifier: MIT */
/* The engine IOTLB: see iotlb.h for the design and the VT-d argument. */
#include <errno.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rcu.h"
#include "iotlb/iotlb.h"
#include "iotlb/iotlb_hit.h"

static inline _Atomic uint64_t *maxrun_of(struct iotlb_table *t, uint64_t iova)
{
	return &t->maxrun[(iova >> 21) % IOTLB_MAXRUN_BUCKETS];
}

/* The hit path's thread stripe (iotlb_hit.h): 0 until the thread's first
 * count. Initial-exec, as every thread-local of the library (meson.build):
 * no __tls_get_addr call per hit in libiovt.so. */
__thread unsigned iotlb_hit_stripe;
static _Atomic unsigned next_stripe;
static __thread uint32_t clock_rand;

void iotlb_stripe_first_add(struct iotlb_table *t, enum iotlb_counter k)
{
	iotlb_hit_stripe = atomic_fetch_add_explicit(&next_stripe, 1, memory_order_relaxed) %
				   IOTLB_HIT_STRIPES + 1;
	iotlb_stripe_add(t, k);
}

void (*iotlb_test_walked)(uint64_t iova);
void (*iotlb_test_claimed)(uint64_t iova);

void iotlb_init(struct iotlb *c, uint64_t entries)
{
	if (!entries)
		entries = IOTLB_DEFAULT_ENTRIES;
	if (entries > IOTLB_MAX_ENTRIES)
		entries = IOTLB_MAX_ENTRIES;
	/* A power of two of 8-way sets (iotlb_set_at masks); the growth and
	 * the first table (quarters) stay powers of two too. */
	if (entries < IOTLB_WAYS)
		entries = IOTLB_WAYS;
	entries = 1ull << (64 - __builtin_clzll(entries - 1));
	atomic_init(&c->table, NULL);
	atomic_init(&c->gen, 0);
	for (int k = 0; k < IOTLB_NCOUNT; k++)
		atomic_init(&c->before[k], 0);
	atomic_init(&c->grown, 0);
	c->entries = entries;
}

/* A table, its entry lines with it (no reader left). */
static void table_free(struct iotlb_table *t)
{
	free(t);
}

static void table_free_rcu(struct rcu_head *h)
{
	iovt_rcu_callback_enter();
	table_free(caa_container_of(h, struct iotlb_table, rcu));
}

void iotlb_free(struct iotlb *c)
{
	struct iotlb_table *t = iotlb_live(atomic_load_explicit(&c->table, memory_order_acquire));
	if (!t)
		return;
	table_free(t);
	atomic_store_explicit(&c->table, NULL, memory_order_relaxed);
}


/* The bytes before a table's lines (its header and sets), and all of it. */
static size_t table_head_bytes(uint64_t nsets)
{
	return sizeof(struct iotlb_table) + nsets * sizeof(struct iotlb_set);
}

static size_t table_bytes(uint64_t nsets)
{
	return table_head_bytes(nsets) + nsets * IOTLB_WAYS * sizeof(struct iotlb_entry);
}

/* The counts of one kind on table t, its stripes summed (racy). */
static uint64_t stripes_sum(const struct iotlb_table *t, enum iotlb_counter k)
{
	uint64_t n = 0;
	for (int i = 0; i < IOTLB_HIT_STRIPES; i++)
		n += atomic_load_explicit(&t->stripe[i].n[k], memory_order_relaxed);
	return n;
}

/* entries: a power of two, at least IOTLB_WAYS (iotlb_init's capacity, its
 * quarters and iotlb_start_entries' value are), so nsets is one too. */
static struct iotlb_table *table_new(uint64_t entries)
{
	uint64_t nsets = entries / IOTLB_WAYS;
	size_t bytes = table_head_bytes(nsets);
	struct iotlb_table *t = aligned_alloc(64, table_bytes(nsets));
	if (!t)
		return NULL;
	/* The header and the sets only (every slot EMPTY). A line is read
	 * only through a slot that a fill published after writing it, its seq
	 * included (a fill bumps whatever seq it finds): the lines stay
	 * untouched, and a large allocation's pages unbacked, until a fill
	 * uses them. */
	memset(t, 0, bytes);
	t->lines = (struct iotlb_entry *)((char *)t + bytes);
	iotlb_table_shape(t, nsets);
	for (int i = 0; i < IOTLB_MAXRUN_BUCKETS; i++)
		atomic_init(&t->maxrun[i], IOVT_PAGE_SIZE);
	return t;
}

/* The first table: IOTLB_START_ENTRIES, or a quarter of a smaller capacity
 * (so that small configurations grow too: the tests exercise growth). */
uint64_t iotlb_start_entries(uint64_t entries)
{
	uint64_t n = entries / IOTLB_GROWTH;
	if (n > IOTLB_START_ENTRIES)
		n = IOTLB_START_ENTRIES;
	return n < IOTLB_WAYS ? IOTLB_WAYS : n;
}

/* The table, allocated by the first miss (iotlb_start_entries). Caller in a read-side section. Whoever uses it for
 * a fill loads c->gen after this (see iotlb_fill). */
static struct iotlb_table *table_get(struct iotlb *c)
{
	struct iotlb_table *t = atomic_load_explicit(&c->table, memory_order_seq_cst);
	if (t)
		return iotlb_live(t);
	t = table_new(iotlb_start_entries(c->entries));
	if (!t)
		return NULL;
	struct iotlb_table *expected = NULL;
	if (!atomic_compare_exchange_strong_explicit(&c->table, &expected, t, memory_order_seq_cst,
						     memory_order_seq_cst)) {
		free(t);
		return iotlb_live(expected); /* another fill installed one, or destroy closed it */
	}
	return t;
}

/* t, unpublished: its counts carried to c, freed after a grace period. */
static void table_retire(struct iotlb *c, struct iotlb_table *t)
{
	for (int k = 0; k < IOTLB_NCOUNT; k++)
		atomic_fetch_add_explicit(&c->before[k], stripes_sum(t, k), memory_order_relaxed);
	iovt_call_rcu(&t->rcu, table_free_rcu);
}

static inline uint64_t table_entries(const struct iotlb_table *t)
{
	return (uint64_t)t->nsets * IOTLB_WAYS;
}

/*
 * Growth under eviction pressure: a table that evicted live entries worth
 * a quarter of its capacity is replaced by an empty one IOTLB_GROWTH times larger
 * (at most c->entries); the old one, with its entries, is freed after a
 * grace period. Why this keeps the VT-d rule: every sweep and every fill
 * works on the table it loaded. A fill that loaded the new table did so
 * after the swap and loads gen after that; an invalidation that loaded the
 * old table did so before the swap (seq_cst), after its gen bump, so that
 * fill's gen load synchronizes with the bump and its walk sees the guest's
 * write. An invalidation that loads the new table sweeps it. Readers still
 * holding the old table began before the swap, so before any fence that
 * completed after it: they may return what that fence invalidated, as any
 * translate that overlaps the fence may. Caller in a read-side section.
 */
static void table_grow(struct iotlb *c, struct iotlb_table *t)
{
	uint64_t cap = table_entries(t);
	if (cap >= c->entries)
		return;
	uint64_t want = cap * IOTLB_GROWTH;
	if (want > c->entries)
		want = c->entries;
	struct iotlb_table *n = table_new(want);
	if (!n)
		return;
	struct iotlb_table *expected = t;
	if (!atomic_compare_exchange_strong_explicit(&c->table, &expected, n, memory_order_seq_cst,
						     memory_order_seq_cst)) {
		free(n);
		return; /* another thread grew it first */
	}
	atomic_fetch_add_explicit(&c->grown, 1, memory_order_relaxed);
	table_retire(c, t);
}

/* Eviction pressure, counted per thread and added in chunks (no shared
 * write per miss). */
#define PRESSURE_CHUNK 64
static __thread struct {
	const struct iotlb_table *t;
	uint32_t n;
} my_pressure;

/*
 * Growth is judged each time the live evictions since the last judgement
 * reach a quarter of the table: it grows unless, over the same span,
 * misses were under 1/IOTLB_GROW_MISS_RATIO of the lookups. Then the hot
 * set hits and the evictions are its cold tail's (a working set that drifts
 * over hours: buffers the guest keeps mapped and the device uses once);
 * the count starts again. Counted without a window, such evictions grew
 * every long-lived domain's table to the configured capacity in the end
 * (18 MiB by default), whatever its hit rate. A scan larger than the table,
 * a pool that does not fit, or hot entries that conflict in a set miss far
 * more often and still grow it. Racy (relaxed loads of the stripes, two
 * threads may judge at once): a heuristic, never a correctness matter.
 */
static void count_eviction(struct iotlb *c, struct iotlb_table *t)
{
	if (my_pressure.t != t) {
		my_pressure.t = t;
		my_pressure.n = 0;
	}
	if (++my_pressure.n < PRESSURE_CHUNK)
		return;
	my_pressure.n = 0;
	uint64_t p = atomic_fetch_add_explicit(&t->pressure, PRESSURE_CHUNK, memory_order_relaxed) +
		     PRESSURE_CHUNK;
	if (p < table_entries(t) / 4)
		return;
	uint64_t h = stripes_sum(t, IOTLB_HITS), m = stripes_sum(t, IOTLB_MISSES);
	uint64_t dh = h - atomic_exchange_explicit(&t->judged[0], h, memory_order_relaxed);
	uint64_t dm = m - atomic_exchange_explicit(&t->judged[1], m, memory_order_relaxed);
	if (dm * IOTLB_GROW_MISS_RATIO < dh + dm) {
		atomic_store_explicit(&t->pressure, 0, memory_order_relaxed);
		return;
	}
	table_grow(c, t);
}

/* Walk state of a fill. */
struct fill {
	const struct guest_ram *ram;
	uint64_t iova;              /* the address asked */
	uint64_t end;               /* window end (exclusive) */
	bool started;
	int err;
	enum vtd_error why;
	unsigned level;
	struct guest_ram_region region;
	struct iotlb_entry x;       /* the run being built */
};

/*
 * The one event vtd_walk_run reports (a leaf, or an error span, holding
 * iova; nothing when iova is not present): iova's 2 MiB or 1 GiB leaf, or
 * the run of 4 KiB leaves from iova's page that continue it (up to f->end),
 * clipped to the RAM region holding iova's target.
 */
static int fill_leaf(void *arg, const struct vtd_leaf *leaf)
{
	struct fill *f = arg;
	if (f->iova - leaf->iova >= leaf->size) {
		f->err = -ENOENT; /* not iova's leaf (vtd_walk_run reports no other): a hole */
		return 1;
	}
	uint64_t gpa = leaf->gpa + (f->iova - leaf->iova);
	if (!vtd_leaf_ram_find(f->ram, leaf, gpa, &f->region)) {
		f->err = -EFAULT; /* the leaf targets a hole of guest RAM */
		f->why = VTD_ERR_COUNT;
		return 1;
	}
	f->started = true;
	f->x.perm = leaf->perm;
	f->x.region = f->region.id;
	uint64_t lo = leaf->iova, hi = leaf->iova + leaf->size; /* exclusive */
	if (leaf->size == IOVT_PAGE_SIZE || leaf->entries > 1) {
		f->level = 0; /* a 4 KiB leaf, or a run of them */
		if (hi > f->end)
			hi = f->end;
	} else {
		f->level = leaf->size == (1ull << 21) ? 1 : 2; /* cached whole, alone */
	}
	/* Clip to the RAM region holding iova's target. Its last byte, not
	 * its end: a region may end at 2^64 (guest_ram_add), where the end
	 * wrapped to 0 and every leaf was "clipped" to a length near 2^64
	 * (found by review). */
	uint64_t rlo = f->region.gpa, rlast = f->region.gpa + (f->region.size - 1);
	if (leaf->gpa + (lo - leaf->iova) < rlo)
		lo = leaf->iova + (rlo - leaf->gpa);
	if (leaf->gpa + (hi - 1 - leaf->iova) > rlast)
		hi = leaf->iova + (rlast - leaf->gpa) + 1;
	f->x.iova = lo;
	f->x.len = hi - lo;
	f->x.gpa = leaf->gpa + (lo - leaf->iova);
	f->x.hva = f->region.hva + (f->x.gpa - f->region.gpa);
	return 1;
}

static int fill_error(void *arg, uint64_t iova, uint64_t size, enum vtd_error why)
{
	struct fill *f = arg;
	if (f->iova - iova < size) {
		f->err = why == VTD_ERR_LOOP ? -ELOOP : why == VTD_ERR_BUDGET ? -E2BIG : -EFAULT;
		f->why = why;
	} else {
		f->err = -ENOENT; /* the span lies past iova (vtd_walk_run reports no such span) */
	}
	return 1;
}

/* Second chance in one set, from the slots alone (no entry line is read):
 * an empty slot, else from a random start the first slot without its
 * referenced bit, clearing the bits it passes (a CAS: a slot replaced
 * meanwhile keeps its own). Never a slot a fill owns (BUSY or KILLED: it
 * is writing that line). A concurrent fill of the same run may leave a
 * duplicate: both are correct, one ages out. -1: every slot owned. */
static inline bool slot_owned(iotlb_slot_t v)
{
	return (v & IOTLB_STATE_MASK) == IOTLB_SLOT_BUSY || (v & IOTLB_STATE_MASK) == IOTLB_SLOT_KILLED;
}

static int pick_victim(struct iotlb_set *s)
{
	iotlb_slot_t v[IOTLB_WAYS];
	for (int w = 0; w < IOTLB_WAYS; w++) {
		v[w] = atomic_load_explicit(&s->slot[w], memory_order_relaxed);
		if (!(v[w] & IOTLB_STATE_MASK))
			return w;
	}
	uint32_t r = clock_rand;
	r = r * 1664525u + 1013904223u;
	clock_rand = r;
	unsigned start = (r >> 16) % IOTLB_WAYS;
	int any = -1;
	for (unsigned i = 0; i < IOTLB_WAYS; i++) {
		int w = (int)((start + i) % IOTLB_WAYS);
		if (slot_owned(v[w]))
			continue;
		if (!(v[w] & IOTLB_SLOT_REF))
			return w;
		if (any < 0)
			any = w;
		atomic_compare_exchange_strong_explicit(&s->slot[w], &v[w], v[w] & ~IOTLB_SLOT_REF,
							memory_order_relaxed, memory_order_relaxed);
	}
	return any;
}

int iotlb_fill(struct iotlb *c, const struct guest_ram *ram, const struct vtd_walk_params *p,
	       const uint64_t *root_gpa, const _Atomic bool *gone, uint64_t top, uint64_t iova,
	       struct iovt_extent *out, struct iotlb_fill_stats *st, enum vtd_error *why)
{
	struct iotlb_table *t = table_get(c);
	/* After the table load (seq_cst): an invalidation that swept nothing
	 * (no table yet) or an older table (a growth) loaded it before this
	 * table was published, after its gen bump; this load then reads that
	 * bump or a later one and synchronizes with it, so the walk below sees
	 * what the guest wrote before that invalidation. It is also the
	 * fill's stamp: the entry goes live only if gen has not moved when it
	 * is in its slot (below; see iotlb.h). */
	uint64_t gen = atomic_load_explicit(&c->gen, memory_order_seq_cst);
	if (t)
		iotlb_stripe_add(t, IOTLB_MISSES);
	else
		atomic_fetch_add_explicit(&c->before[IOTLB_MISSES], 1, memory_order_relaxed);

	/* After the stamp: iotlb_close flushes (a gen bump) and retires the
	 * table before the owner stores *gone; a fill that misses *gone here
	 * inserts, at worst, into that retired table, which no reader loads
	 * again (c->table is IOTLB_CLOSED). */
	if (atomic_load_explicit(gone, memory_order_seq_cst))
		return -ENODEV;
	if (iova > top)
		return -ENOENT;
	uint64_t page = iova & ~(IOVT_PAGE_SIZE - 1);
	struct fill f; /* only what the walk reads before `started`: no zeroing of the rest */
	f.ram = ram;
	f.iova = iova;
	f.started = false;
	f.err = -ENOENT;
	f.why = VTD_ERR_COUNT;
	/* The run window ends with iova's leaf table: one descent and the
	 * entries that continue iova's (vtd_walk_run), not a scan of the
	 * window that may cross into the next table (then the generic walk). */
	f.end = page + IOTLB_RUN_MAX;
	const uint64_t block_end = (page | ((1ull << 21) - 1)) + 1;
	if (f.end > block_end)
		f.end = block_end;
	if (f.end - 1 > top || f.end < page)
		f.end = top + 1; /* top + 1 may wrap to 0 at the 64-bit top: never here (57 bits) */
	struct vtd_walk_params wp = *p;
	wp.root_gpa = __atomic_load_n(root_gpa, __ATOMIC_ACQUIRE); /* after the stamp */
	wp.first = page;
	wp.last = f.end - 1;
	if (!wp.budget || wp.budget > IOTLB_FILL_BUDGET)
		wp.budget = IOTLB_FILL_BUDGET;
	static const struct vtd_walk_ops ops = { .leaf = fill_leaf, .error = fill_error };
	struct vtd_walk_stats ws = { 0 };
	int rc = vtd_walk_run(ram, &wp, &ops, &f, &ws);
	st->ptes += ws.entries_read;
	if (__builtin_expect(iotlb_test_walked != NULL, 0))
		iotlb_test_walked(iova);
	if (rc == -EINVAL)
		return -ENOENT;
	if (!f.started) {
		*why = f.why;
		return f.err;
	}
	/* f.x as it was stored (fill_leaf: field by field), one load per
	 * field: the 16-byte loads a struct copy is made of cannot be
	 * forwarded from narrower stores, a stall per miss (relaxed atomic
	 * loads are never paired). */
	const struct iotlb_entry x = {
		.iova = __atomic_load_n(&f.x.iova, __ATOMIC_RELAXED),
		.len = __atomic_load_n(&f.x.len, __ATOMIC_RELAXED),
		.gpa = __atomic_load_n(&f.x.gpa, __ATOMIC_RELAXED),
		.hva = __atomic_load_n(&f.x.hva, __ATOMIC_RELAXED),
		.perm = __atomic_load_n(&f.x.perm, __ATOMIC_RELAXED),
		.region = __atomic_load_n(&f.x.region, __ATOMIC_RELAXED),
	};
	iotlb_copy_out(&x, out);
	if (!t)
		return 0; /* no memory for a table: answered, not cached */

	/* An invalidation sweeps only the sets its range can reach given the
	 * levels in use and the longest run (read after its gen bump). An entry
	 * wider than a page, or of a large level, publishes its extent there
	 * before its claim: an invalidation that began earlier may have read
	 * the old extent and missed this set, but it moved gen, so the fill
	 * gives its slot up (below); one that begins after the fill's second
	 * gen load reads the new extent. A 4 KiB entry needs neither: every sweep covers
	 * the page's own set. */
	if (f.level || x.len > IOVT_PAGE_SIZE) {
		if (f.level) {
			if (!(atomic_load_explicit(&t->levels, memory_order_seq_cst) & (1u << f.level)))
				atomic_fetch_or_explicit(&t->levels, 1u << f.level, memory_order_seq_cst);
		} else {
			_Atomic uint64_t *mr = maxrun_of(t, x.iova);
			uint64_t m = atomic_load_explicit(mr, memory_order_seq_cst);
			while (m < x.len &&
			       !atomic_compare_exchange_weak_explicit(mr, &m, x.len,
								      memory_order_seq_cst, memory_order_seq_cst))
				;
		}
	}
	uint64_t tag;
	uint32_t set = iotlb_set_at(t, f.level ? x.iova : page, f.level, &tag);
	struct iotlb_set *s = &t->sets[set];
	int w = pick_victim(s);
	if (w < 0)
		return 0; /* answered, not cached */
	/* The slot BUSY, with the key's tag (a sweep of that key kills it): its
	 * line is this fill's until it publishes or gives the slot up. */
	const iotlb_slot_t busy = IOTLB_SLOT_BUSY | tag << IOTLB_TAG_SHIFT;
	iotlb_slot_t ov = atomic_load_explicit(&s->slot[w], memory_order_relaxed);
	if (slot_owned(ov) ||
	    !atomic_compare_exchange_strong_explicit(&s->slot[w], &ov, busy, memory_order_seq_cst,
						     memory_order_relaxed))
		return 0;
	if ((ov & IOTLB_STATE_MASK) == IOTLB_SLOT_LIVE) {
		st->evicted = true;
		iotlb_stripe_add(t, IOTLB_EVICTIONS);
		count_eviction(c, t);
	}
	/*
	 * The stamp again, after the claim (both seq_cst, as an invalidation's
	 * gen bump and its sweep's slot loads are). Moved: an invalidation
	 * began after the stamp, maybe after a walk that read the old table,
	 * and its sweep may have passed this set before the claim: the slot
	 * is given up, the answer not cached. Unmoved: every later bump comes
	 * after the claim, so its sweep finds the slot BUSY and kills it (the
	 * publication below then fails) or finds the entry LIVE and drops it
	 * (it reads the level and the run published above). Two locked
	 * instructions a fill, not three (a PENDING state published, then
	 * confirmed, drained the store buffer once more: the claim-kill
	 * protocol made miss/engine 7-13% faster).
	 */
	if (atomic_load_explicit(&c->gen, memory_order_seq_cst) != gen) {
		atomic_store_explicit(&s->slot[w], 0, memory_order_release); /* BUSY or KILLED: ours */
		return 0; /* answered, not cached */
	}
	if (__builtin_expect(iotlb_test_claimed != NULL, 0))
		iotlb_test_claimed(iova);
	/* The seqlock's write side: the new seq, then (a release fence) the
	 * fields. A reader that read any new field then reads this seq or a
	 * later one, which its slot word does not carry (iotlb_probe). */
	struct iotlb_entry *e = iotlb_line(t, set, (unsigned)w);
	uint64_t seq = (atomic_load_explicit(&e->seq, memory_order_relaxed) + 1) & IOTLB_SEQ_MASK;
	atomic_store_explicit(&e->seq, seq, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	__atomic_store_n(&e->iova, x.iova, __ATOMIC_RELAXED);
	__atomic_store_n(&e->len, x.len, __ATOMIC_RELAXED);
	__atomic_store_n(&e->gpa, x.gpa, __ATOMIC_RELAXED);
	__atomic_store_n(&e->hva, x.hva, __ATOMIC_RELAXED);
	__atomic_store_n(&e->perm, x.perm, __ATOMIC_RELAXED);
	__atomic_store_n(&e->region, x.region, __ATOMIC_RELAXED);
	/* LIVE, unless a sweep killed the claim meanwhile: then given up. */
	iotlb_slot_t cur = busy;
	if (atomic_compare_exchange_strong_explicit(&s->slot[w], &cur, IOTLB_SLOT_LIVE | tag << IOTLB_TAG_SHIFT | seq,
						    memory_order_release, memory_order_relaxed)) {
		st->cached = true;
		return 0;
	}
	atomic_store_explicit(&s->slot[w], 0, memory_order_release); /* KILLED: still ours */
	return 0; /* answered, not cached */
}

/* Drops the LIVE entries of one set that overlap [first, last] and kills
 * the BUSY slots of the swept key (a fill between its claim and its
 * publication, whose line cannot be read yet: it then gives the slot up,
 * iotlb_fill). Only the slots tagged `tag` (TAG_ANY: all): an overlapping
 * entry of another key is found from its own key, which the sweep visits
 * too. Writes nothing that a reader reads unless it
 * drops an entry: no stamp, no sequence (a sequence bump per set and a
 * re-stamp per entry kept were most of a sweep, and a miss on each such
 * line for every translating thread). Needs no memory. The single writer
 * (sync_lock), inside a read-side section. */
#define TAG_ANY UINT64_MAX
static uint64_t sweep_set(struct iotlb_table *t, uint32_t set, uint64_t tag, uint64_t first,
			  uint64_t last)
{
	struct iotlb_set *s = &t->sets[set];
	uint64_t dropped = 0;
	for (int w = 0; w < IOTLB_WAYS; w++) {
		iotlb_slot_t v = atomic_load_explicit(&s->slot[w], memory_order_seq_cst);
		const struct iotlb_entry *e = iotlb_line(t, set, (unsigned)w);
		for (;;) {
			if (!(v & IOTLB_STATE_MASK) || (v & IOTLB_STATE_MASK) == IOTLB_SLOT_KILLED ||
			    (tag != TAG_ANY && ((v >> IOTLB_TAG_SHIFT) & IOTLB_TAG_MASK) != tag))
				break;
			if ((v & IOTLB_STATE_MASK) == IOTLB_SLOT_BUSY) {
				/* A fill of this key between its claim and its
				 * publication, its line unreadable: killed, so
				 * that it does not publish (iotlb_fill). */
				if (atomic_compare_exchange_strong_explicit(
					    &s->slot[w], &v, (v & ~IOTLB_STATE_MASK) | IOTLB_SLOT_KILLED,
					    memory_order_seq_cst, memory_order_seq_cst))
					break;
				continue; /* published or given up meanwhile: v is the slot's word now */
			}
			uint64_t lo = IOTLB_RD(e->iova), len = IOTLB_RD(e->len);
			atomic_thread_fence(memory_order_acquire);
			if (!iotlb_seq_is(atomic_load_explicit(&e->seq, memory_order_relaxed), v)) {
				/* rewritten since v: look at the slot again */
				v = atomic_load_explicit(&s->slot[w], memory_order_seq_cst);
				continue;
			}
			if (lo > last || lo + len - 1 < first)
				break;
			if (atomic_compare_exchange_strong_explicit(&s->slot[w], &v, 0, memory_order_seq_cst,
								    memory_order_seq_cst)) {
				dropped++;
				break;
			}
			/* a reader set the ref bit, the victim choice cleared it,
			 * or an eviction took the slot: v is the slot's word now */
		}
	}
	return dropped;
}

/* Where an entry overlapping [first, last] can sit in t: runs start at most
 * maxrun - 4 KiB before first (the maxrun of first's block's bucket) and
 * not before first's 2 MiB block; large leaves by block, for the levels in
 * use (see iotlb_fill for why reading both here is enough). */
struct sweep {
	uint64_t lo;     /* first page set key's IOVA (first less the longest run) */
	unsigned levels; /* levels in use */
	uint64_t keys;   /* set visits; more than nsets (or 0: wrapped): every set */
};

static bool sweep_all(const struct iotlb_table *t, const struct sweep *w)
{
	return w->keys > t->nsets || w->keys == 0;
}

static struct sweep sweep_of(struct iotlb_table *t, uint64_t first, uint64_t last)
{
	struct sweep w;
	uint64_t run = atomic_load_explicit(maxrun_of(t, first), memory_order_seq_cst) - IOVT_PAGE_SIZE;
	w.levels = atomic_load_explicit(&t->levels, memory_order_seq_cst) | 1;
	w.lo = first > run ? first - run : 0;
	/* A run overlapping first starts in first's 2 MiB block; runs of the
	 * later blocks of the range start inside it. */
	if (w.lo < (first & ~((1ull << 21) - 1)))
		w.lo = first & ~((1ull << 21) - 1);
	w.keys = 0;
	for (unsigned l = 0; l < IOTLB_NLEVELS; l++) {
		if (!(w.levels & (1u << l)))
			continue;
		uint64_t a = (l ? first : w.lo) >> iotlb_level_shift[l], b = last >> iotlb_level_shift[l];
		w.keys += b - a + 1;
		if (sweep_all(t, &w))
			break;
	}
	return w;
}

static uint64_t sweep_sets(struct iotlb_table *t, const struct sweep *w, uint64_t first, uint64_t last,
			   uint64_t *visits)
{
	uint64_t dropped = 0;
	if (sweep_all(t, w)) {
		for (uint32_t i = 0; i < t->nsets; i++)
			dropped += sweep_set(t, i, TAG_ANY, first, last);
		*visits += t->nsets;
		return dropped;
	}
	*visits += w->keys;
	for (unsigned l = 0; l < IOTLB_NLEVELS; l++) {
		if (!(w->levels & (1u << l)))
			continue;
		uint64_t a = (l ? first : w->lo) >> iotlb_level_shift[l], b = last >> iotlb_level_shift[l];
		for (uint64_t k = a; k <= b; k++) {
			uint64_t tag;
			uint32_t set = iotlb_set_at(t, k << iotlb_level_shift[l], l, &tag);
			dropped += sweep_set(t, set, tag, first, last);
		}
	}
	return dropped;
}

/* The table, loaded inside the read-side section the caller entered: a
 * growth retires the one it replaces with call_rcu, and a sweep that loaded
 * it before entering could walk it after it was freed. Callers sweep
 * outside any section (a sync, close, set_root, RAM purge); found by
 * review. After the gen bump (seq_cst). */
static struct iotlb_table *sweep_table(struct iotlb *c)
{
	atomic_fetch_add_explicit(&c->gen, 1, memory_order_seq_cst);
	return iotlb_live(atomic_load_explicit(&c->table, memory_order_seq_cst));
}

uint64_t iotlb_invalidate(struct iotlb *c, uint64_t first, uint64_t last)
{
	iovt_rcu_read_lock();
	struct iotlb_table *t = sweep_table(c);
	uint64_t dropped = 0, visits = 0;
	if (t) {
		struct sweep w = sweep_of(t, first, last);
		dropped = sweep_sets(t, &w, first, last, &visits);
	}
	atomic_fetch_add_explicit(&c->swept, visits, memory_order_relaxed);
	iovt_rcu_read_unlock();
	return dropped;
}

uint64_t iotlb_invalidate_n(struct iotlb *c, size_t n,
			    void (*span)(const void *arg, size_t i, uint64_t *first, uint64_t *last),
			    const void *arg)
{
	iovt_rcu_read_lock();
	struct iotlb_table *t = sweep_table(c);
	uint64_t dropped = 0;
	if (t) {
		uint64_t keys = 0;
		for (size_t i = 0; i < n && keys <= t->nsets; i++) {
			uint64_t first, last;
			span(arg, i, &first, &last);
			struct sweep w = sweep_of(t, first, last);
			keys += sweep_all(t, &w) ? (uint64_t)t->nsets + 1 : w.keys;
		}
		if (keys > t->nsets) {
			/* every set once, dropping what overlaps any span: the
			 * hull (more than the spans: an IOTLB may drop any entry) */
			uint64_t lo = UINT64_MAX, hi = 0;
			for (size_t i = 0; i < n; i++) {
				uint64_t first, last;
				span(arg, i, &first, &last);
				lo = first < lo ? first : lo;
				hi = last > hi ? last : hi;
			}
			for (uint32_t i = 0; i < t->nsets; i++)
				dropped += sweep_set(t, i, TAG_ANY, lo, hi);
			atomic_fetch_add_explicit(&c->swept, t->nsets, memory_order_relaxed);
		} else {
			uint64_t visits = 0;
			for (size_t i = 0; i < n; i++) {
				uint64_t first, last;
				span(arg, i, &first, &last);
				struct sweep w = sweep_of(t, first, last);
				dropped += sweep_sets(t, &w, first, last, &visits);
			}
			atomic_fetch_add_explicit(&c->swept, visits, memory_order_relaxed);
		}
	}
	iovt_rcu_read_unlock();
	return dropped;
}

uint64_t iotlb_flush(struct iotlb *c)
{
	return iotlb_invalidate(c, 0, UINT64_MAX);
}

uint64_t iotlb_counter(struct iotlb *c, enum iotlb_counter k)
{
	struct iotlb_table *t = iotlb_live(atomic_load_explicit(&c->table, memory_order_acquire));
	uint64_t n = atomic_load_explicit(&c->before[k], memory_order_relaxed);
	return t ? n + stripes_sum(t, k) : n;
}

uint64_t iotlb_sets_swept(struct iotlb *c)
{
	return atomic_load_explicit(&c->swept, memory_order_relaxed);
}

uint64_t iotlb_count(struct iotlb *c)
{
	struct iotlb_table *t = iotlb_live(atomic_load_explicit(&c->table, memory_order_acquire));
	uint64_t n = 0;
	if (!t)
		return 0;
	for (uint32_t i = 0; i < t->nsets; i++) {
		struct iotlb_set *s = &t->sets[i];
		for (int w = 0; w < IOTLB_WAYS; w++)
			n += (atomic_load_explicit(&s->slot[w], memory_order_relaxed) & IOTLB_STATE_MASK) ==
			     IOTLB_SLOT_LIVE;
	}
	return n;
}

uint64_t iotlb_memory_bytes(struct iotlb *c)
{
	struct iotlb_table *t = iotlb_live(atomic_load_explicit(&c->table, memory_order_acquire));
	if (!t)
		return 0;
	/* Allocated, not resident: lines no fill has used may be unbacked. */
	return table_bytes(t->nsets);
}

uint64_t iotlb_capacity(struct iotlb *c)
{
	struct iotlb_table *t = iotlb_live(atomic_load_explicit(&c->table, memory_order_acquire));
	return t ? table_entries(t) : 0;
}

uint64_t iotlb_close(struct iotlb *c)
{
	uint64_t n = iotlb_flush(c);
	struct iotlb_table *t = iotlb_live(atomic_exchange_explicit(&c->table, IOTLB_CLOSED, memory_order_seq_cst));
	if (t)
		table_retire(c, t);
	atomic_fetch_add_explicit(&c->gen, 1, memory_order_seq_cst);
	return n;
}
