/* SPDX-License-Identifier: MIT */
/* guestsim: simulated guest RAM, VT-d tables written like a guest, and a truth model. */
#include "guestsim.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define K 0x1000ull
#define M2 (1ull << 21)
#define G1 (1ull << 30)
#define ADDR_MASK 0x000ffffffffff000ull /* entry address bits 12..51 */
#define PRESENT (VTD_PTE_R | VTD_PTE_W)
#define SHIFT(l) (12u + 9u * ((l) - 1u))

/*
 * ---- truth: iova pfn -> gpa pfn << 2 | perm (0: unmapped) ----
 * Two levels so that runs of pages stay cache-local: an open-addressing hash
 * of 2 MiB blocks (linear probing, backward-shift deletion), each block a
 * dense array of 512 values.
 */

struct tblock {
	uint64_t val[512];
	uint32_t n; /* mapped pages in the block */
};

struct truth {
	uint64_t *key;          /* block number + 1; 0 = empty slot */
	struct tblock **blk;
	uint64_t cap, nblk, n;  /* slots (a power of two), blocks, mapped pages */
};

static uint64_t th_slot(const struct truth *t, uint64_t key)
{
	return (key * 0x9e3779b97f4a7c15ull) >> (64 - __builtin_ctzll(t->cap));
}

static int th_grow(struct truth *t)
{
	struct truth nt = { .cap = t->cap ? t->cap * 2 : 64, .nblk = t->nblk, .n = t->n };
	nt.key = calloc(nt.cap, sizeof(*nt.key));
	nt.blk = malloc(nt.cap * sizeof(*nt.blk));
	if (!nt.key || !nt.blk) {
		free(nt.key);
		free(nt.blk);
		return -ENOMEM;
	}
	for (uint64_t i = 0; i < t->cap; i++) {
		if (!t->key[i])
			continue;
		uint64_t s = th_slot(&nt, t->key[i]);
		while (nt.key[s])
			s = (s + 1) & (nt.cap - 1);
		nt.key[s] = t->key[i];
		nt.blk[s] = t->blk[i];
	}
	free(t->key);
	free(t->blk);
	*t = nt;
	return 0;
}

static struct tblock *th_block(const struct truth *t, uint64_t bno)
{
	if (!t->nblk)
		return NULL;
	for (uint64_t s = th_slot(t, bno + 1); t->key[s]; s = (s + 1) & (t->cap - 1))
		if (t->key[s] == bno + 1)
			return t->blk[s];
	return NULL;
}

static int th_put(struct truth *t, uint64_t pfn, uint64_t val)
{
	uint64_t bno = pfn >> 9;
	struct tblock *b = th_block(t, bno);
	if (!b) {
		if ((t->nblk + 1) * 2 > t->cap && th_grow(t))
			return -ENOMEM;
		b = calloc(1, sizeof(*b));
		if (!b)
			return -ENOMEM;
		uint64_t s = th_slot(t, bno + 1);
		while (t->key[s])
			s = (s + 1) & (t->cap - 1);
		t->key[s] = bno + 1;
		t->blk[s] = b;
		t->nblk++;
	}
	uint64_t *v = &b->val[pfn & 511];
	if (!*v) {
		b->n++;
		t->n++;
	}
	*v = val;
	return 0;
}

static bool th_get(const struct truth *t, uint64_t pfn, uint64_t *val)
{
	const struct tblock *b = th_block(t, pfn >> 9);
	if (!b || !b->val[pfn & 511])
		return false;
	*val = b->val[pfn & 511];
	return true;
}

/* Frees the block in slot s and shifts later members of its probe chain back
 * into the hole (no tombstones). */
static void th_erase_slot(struct truth *t, uint64_t s)
{
	uint64_t mask = t->cap - 1, j = s;
	free(t->blk[s]);
	t->key[s] = 0;
	t->nblk--;
	for (;;) {
		j = (j + 1) & mask;
		if (!t->key[j])
			return;
		uint64_t home = th_slot(t, t->key[j]);
		/* Move j into the hole at s unless its home lies cyclically in (s, j]. */
		if ((j > s && (home <= s || home > j)) || (j < s && home <= s && home > j)) {
			t->key[s] = t->key[j];
			t->blk[s] = t->blk[j];
			t->key[j] = 0;
			s = j;
		}
	}
}

/* Clears pfns [first, last] of the block in slot s; true when it was erased. */
static bool th_clear_in(struct truth *t, uint64_t s, uint64_t first, uint64_t last)
{
	struct tblock *b = t->blk[s];
	uint64_t base = (t->key[s] - 1) << 9;
	uint64_t lo = first > base ? first - base : 0, hi = last - base < 511 ? last - base : 511;
	for (uint64_t i = lo; i <= hi; i++) {
		if (b->val[i]) {
			b->val[i] = 0;
			b->n--;
			t->n--;
		}
	}
	if (b->n)
		return false;
	th_erase_slot(t, s);
	return true;
}

static void th_del_range(struct truth *t, uint64_t first, uint64_t last)
{
	uint64_t b0 = first >> 9, b1 = last >> 9;
	if (!t->nblk)
		return;
	if (b1 - b0 < t->cap) { /* few blocks: look each up */
		for (uint64_t bno = b0;; bno++) {
			for (uint64_t s = th_slot(t, bno + 1); t->key[s]; s = (s + 1) & (t->cap - 1)) {
				if (t->key[s] == bno + 1) {
					th_clear_in(t, s, first, last);
					break;
				}
			}
			if (bno == b1)
				break;
		}
		return;
	}
	for (uint64_t s = 0; s < t->cap;) { /* a huge range: scan the slots */
		uint64_t k = t->key[s];
		if (k && k - 1 >= b0 && k - 1 <= b1 && th_clear_in(t, s, first, last))
			continue; /* re-examine s: a later block may have moved in */
		s++;
	}
}

static void th_free(struct truth *t)
{
	for (uint64_t s = 0; s < t->cap; s++)
		if (t->key[s])
			free(t->blk[s]);
	free(t->key);
	free(t->blk);
}

/* ---- the simulation ---- */

struct dirty {
	uint64_t (*r)[2]; /* [first, last] */
	size_t n, cap;
};

struct gs_domain {
	struct guestsim *gs;
	struct gs_domain *next;
	unsigned aw, levels;
	bool allow_2m, allow_1g, free_empty;
	uint64_t root;
	struct truth truth;
	struct dirty dirty;
};

struct guestsim {
	unsigned n;
	struct gs_region r[GS_MAX_REGIONS];
	void *map_base[GS_MAX_REGIONS];
	size_t map_len[GS_MAX_REGIONS];
	uint64_t tbl_gpa, tbl_bytes, tbl_next; /* table area; bump pointer */
	uint64_t *tbl_free;                    /* freed table pages (a stack) */
	uint8_t *tbl_live;                     /* per page: allocated (catches double frees of DAGs) */
	uint64_t tbl_nfree, tbl_used;
	struct gs_domain *domains;
	struct guest_ram *ram;
};

struct guestsim *gs_create_config(const struct gs_config *cfg)
{
	if (!cfg->nregions || cfg->nregions > GS_MAX_REGIONS || (cfg->table_bytes & (K - 1)) ||
	    cfg->table_bytes > cfg->size[0])
		return NULL;
	/* gs_alloc_table returns 0 for "full": no table page may live at GPA 0. */
	if (cfg->table_bytes && cfg->gpa[0] + cfg->size[0] - cfg->table_bytes == 0)
		return NULL;
	for (unsigned i = 0; i < cfg->nregions; i++) {
		if (!cfg->size[i] || ((cfg->gpa[i] | cfg->size[i]) & (K - 1)) ||
		    cfg->gpa[i] + cfg->size[i] < cfg->gpa[i] || cfg->gpa[i] + cfg->size[i] > (1ull << 52))
			return NULL;
		if (i && cfg->gpa[i] < cfg->gpa[i - 1] + cfg->size[i - 1])
			return NULL;
	}
	struct guestsim *gs = calloc(1, sizeof(*gs));
	if (!gs)
		return NULL;
	for (unsigned i = 0; i < cfg->nregions; i++) {
		/* Over-allocate by 2 MiB and trim so the host side can back 2 MiB pages. */
		size_t len = cfg->size[i] + M2;
		void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED) {
			gs_destroy(gs);
			return NULL;
		}
		gs->map_base[i] = p;
		gs->map_len[i] = len;
		gs->n = i + 1;
		uintptr_t a = ((uintptr_t)p + M2 - 1) & ~(uintptr_t)(M2 - 1);
		gs->r[i] = (struct gs_region){ cfg->gpa[i], cfg->size[i], (void *)a, i };
	}
	gs->tbl_bytes = cfg->table_bytes;
	gs->tbl_gpa = gs->r[0].gpa + gs->r[0].size - cfg->table_bytes;
	gs->tbl_next = gs->tbl_gpa;
	gs->tbl_free = malloc((cfg->table_bytes / K + 1) * sizeof(uint64_t));
	gs->tbl_live = calloc(cfg->table_bytes / K + 1, 1);
	if (!gs->tbl_free || !gs->tbl_live) {
		gs_destroy(gs);
		return NULL;
	}
	return gs;
}

struct guestsim *gs_create(unsigned nregions, uint64_t region_size, uint64_t table_bytes)
{
	if (!nregions || nregions > GS_MAX_REGIONS || !region_size || (region_size & (M2 - 1)))
		return NULL;
	struct gs_config cfg = { .nregions = nregions, .table_bytes = table_bytes };
	/* Region 0 at GPA 0 (tests use small fixed GPAs as data), a 1 GiB hole
	 * after each region: table pointers into it are "outside RAM". */
	for (unsigned i = 0; i < nregions; i++) {
		cfg.gpa[i] = i * (region_size + G1);
		cfg.size[i] = region_size;
	}
	return gs_create_config(&cfg);
}

static void dom_free(struct gs_domain *d)
{
	th_free(&d->truth);
	free(d->dirty.r);
	free(d);
}

void gs_destroy(struct guestsim *gs)
{
	if (!gs)
		return;
	while (gs->domains) {
		struct gs_domain *d = gs->domains;
		gs->domains = d->next;
		dom_free(d);
	}
	if (gs->ram)
		guest_ram_destroy(gs->ram);
	for (unsigned i = 0; i < gs->n; i++)
		munmap(gs->map_base[i], gs->map_len[i]);
	free(gs->tbl_free);
	free(gs->tbl_live);
	free(gs);
}

unsigned gs_region_count(const struct guestsim *gs) { return gs->n; }

const struct gs_region *gs_region(const struct guestsim *gs, unsigned i)
{
	return i < gs->n ? &gs->r[i] : NULL;
}

uint64_t gs_region_data_size(const struct guestsim *gs, unsigned i)
{
	if (i >= gs->n)
		return 0;
	return i ? gs->r[i].size : gs->r[0].size - gs->tbl_bytes;
}

void *gs_hva(const struct guestsim *gs, uint64_t gpa)
{
	for (unsigned i = 0; i < gs->n; i++)
		if (gpa >= gs->r[i].gpa && gpa - gs->r[i].gpa < gs->r[i].size)
			return (char *)gs->r[i].hva + (gpa - gs->r[i].gpa);
	return NULL;
}

struct guest_ram *gs_guest_ram(struct guestsim *gs) { return gs_ram(gs); }

struct guest_ram *gs_ram(struct guestsim *gs)
{
	if (gs->ram)
		return gs->ram;
	struct guest_ram *ram = guest_ram_create();
	if (!ram)
		return NULL;
	for (unsigned i = 0; i < gs->n; i++) {
		if (guest_ram_add(ram, gs->r[i].gpa, gs->r[i].size, gs->r[i].hva, NULL)) {
			guest_ram_destroy(ram);
			return NULL;
		}
	}
	return gs->ram = ram;
}

/* ---- raw entries ---- */

static uint64_t *ent_ptr(const struct guestsim *gs, uint64_t gpa)
{
	/* Fast path: our own tables. */
	if (gpa - gs->tbl_gpa < gs->tbl_bytes)
		return (uint64_t *)((char *)gs->r[0].hva + (gpa - gs->r[0].gpa));
	return gs_hva(gs, gpa);
}

int gs_write_pte(struct guestsim *gs, uint64_t gpa, uint64_t value)
{
	if (gpa & 7)
		return -EINVAL;
	uint64_t *p = ent_ptr(gs, gpa);
	if (!p)
		return -EFAULT;
	/* Relaxed: an engine thread may be walking this table right now. */
	__atomic_store_n(p, value, __ATOMIC_RELAXED);
	return 0;
}

uint64_t gs_read_pte(const struct guestsim *gs, uint64_t gpa)
{
	uint64_t *p = (gpa & 7) ? NULL : ent_ptr(gs, gpa);
	return p ? __atomic_load_n(p, __ATOMIC_RELAXED) : 0;
}

static inline uint64_t rd(struct guestsim *gs, uint64_t tgpa, unsigned idx)
{
	return gs_read_pte(gs, tgpa + idx * 8ull);
}

static inline void wr(struct guestsim *gs, uint64_t tgpa, unsigned idx, uint64_t v)
{
	(void)gs_write_pte(gs, tgpa + idx * 8ull, v);
}

/* ---- table pages ---- */

uint64_t gs_alloc_table(struct guestsim *gs)
{
	uint64_t gpa;
	if (gs->tbl_nfree)
		gpa = gs->tbl_free[--gs->tbl_nfree];
	else if (gs->tbl_next < gs->tbl_gpa + gs->tbl_bytes)
		gpa = (gs->tbl_next += K) - K;
	else
		return 0;
	/* Atomic zeroing: an engine thread may still be walking a recycled page. */
	for (unsigned i = 0; i < 512; i++)
		wr(gs, gpa, i, 0);
	gs->tbl_live[(gpa - gs->tbl_gpa) / K] = 1;
	gs->tbl_used++;
	return gpa;
}

void gs_free_table(struct guestsim *gs, uint64_t gpa)
{
	if (gpa - gs->tbl_gpa >= gs->tbl_bytes || (gpa & (K - 1)) ||
	    !gs->tbl_live[(gpa - gs->tbl_gpa) / K])
		return; /* not ours, or already freed (a hostile pointer or a shared subtable) */
	gs->tbl_live[(gpa - gs->tbl_gpa) / K] = 0;
	gs->tbl_free[gs->tbl_nfree++] = gpa;
	gs->tbl_used--;
}

uint64_t gs_tables_in_use(const struct guestsim *gs) { return gs->tbl_used; }

static bool is_table(unsigned level, uint64_t e)
{
	return (e & PRESENT) && level > 1 && !(level <= 3 && (e & VTD_PTE_PS));
}

/* Frees the table at tgpa (level) and every table below it. */
static void free_tree(struct guestsim *gs, unsigned level, uint64_t tgpa)
{
	if (tgpa - gs->tbl_gpa >= gs->tbl_bytes || (tgpa & (K - 1)) ||
	    !gs->tbl_live[(tgpa - gs->tbl_gpa) / K])
		return; /* a hostile pointer, or a shared subtable already freed */
	if (level > 1) {
		for (unsigned i = 0; i < 512; i++) {
			uint64_t e = rd(gs, tgpa, i);
			if (is_table(level, e) && (e & ADDR_MASK) != tgpa)
				free_tree(gs, level - 1, e & ADDR_MASK);
		}
	}
	gs_free_table(gs, tgpa);
}

static bool table_empty(struct guestsim *gs, uint64_t tgpa)
{
	for (unsigned i = 0; i < 512; i++)
		if (rd(gs, tgpa, i) & PRESENT)
			return false;
	return true;
}

/* ---- domains ---- */

struct gs_domain *gs_domain_create(struct guestsim *gs, unsigned addr_width, bool allow_2m,
				   bool allow_1g)
{
	unsigned levels = addr_width == 39 ? 3 : addr_width == 48 ? 4 : addr_width == 57 ? 5 : 0;
	if (!levels)
		return NULL;
	struct gs_domain *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->root = gs_alloc_table(gs);
	if (!d->root) {
		free(d);
		return NULL;
	}
	d->gs = gs;
	d->aw = addr_width;
	d->levels = levels;
	d->allow_2m = allow_2m;
	d->allow_1g = allow_1g;
	d->next = gs->domains;
	gs->domains = d;
	return d;
}

void gs_domain_destroy(struct gs_domain *d)
{
	struct guestsim *gs = d->gs;
	for (struct gs_domain **pp = &gs->domains; *pp; pp = &(*pp)->next) {
		if (*pp == d) {
			*pp = d->next;
			break;
		}
	}
	free_tree(gs, d->levels, d->root);
	dom_free(d);
}

uint64_t gs_domain_root(const struct gs_domain *d) { return d->root; }
unsigned gs_domain_width(const struct gs_domain *d) { return d->aw; }
void gs_domain_set_free_empty(struct gs_domain *d, bool on) { d->free_empty = on; }

void gs_domain_params(const struct gs_domain *d, struct vtd_walk_params *p)
{
	*p = (struct vtd_walk_params){
		.root_gpa = d->root,
		.addr_width = d->aw,
		.allow_2m = d->allow_2m,
		.allow_1g = d->allow_1g,
		.first = 0,
		.last = (1ull << d->aw) - 1,
	};
}

static void dirty_add(struct gs_domain *d, uint64_t iova, uint64_t size)
{
	struct dirty *t = &d->dirty;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		void *r = realloc(t->r, cap * sizeof(t->r[0]));
		if (!r)
			abort(); /* test support: losing dirt would make the oracle lie */
		t->r = r;
		t->cap = cap;
	}
	t->r[t->n][0] = iova;
	t->r[t->n][1] = iova + size - 1;
	t->n++;
}

static int cmp_range(const void *a, const void *b)
{
	const uint64_t *x = a, *y = b;
	return x[0] < y[0] ? -1 : x[0] > y[0];
}

void gs_take_dirty(struct gs_domain *d, void (*cb)(void *arg, uint64_t iova, uint64_t size),
		   void *arg)
{
	struct dirty *t = &d->dirty;
	qsort(t->r, t->n, sizeof(t->r[0]), cmp_range);
	for (size_t i = 0; i < t->n;) {
		uint64_t first = t->r[i][0], last = t->r[i][1];
		for (i++; i < t->n && t->r[i][0] <= last + 1; i++)
			if (t->r[i][1] > last)
				last = t->r[i][1];
		cb(arg, first, last - first + 1);
	}
	t->n = 0;
}

/*
 * Replaces the large leaf in entry idx of table tgpa (level) by a table of
 * 512 leaves one level down covering the same pages with the same perm, as a
 * guest must before changing part of it.
 */
static int split_leaf(struct guestsim *gs, unsigned level, uint64_t tgpa, unsigned idx, uint64_t e)
{
	uint64_t nt = gs_alloc_table(gs);
	if (!nt)
		return -ENOMEM;
	uint64_t sub = 1ull << SHIFT(level - 1);
	uint64_t flags = e & PRESENT;
	uint64_t ps = level - 1 > 1 ? VTD_PTE_PS : 0;
	for (unsigned i = 0; i < 512; i++)
		wr(gs, nt, i, ((e & ADDR_MASK) + i * sub) | flags | ps);
	wr(gs, tgpa, idx, nt | PRESENT);
	return 0;
}

/* Writes one leaf of `leaf_level` for iova, building or splitting the path. */
static int set_leaf(struct gs_domain *d, uint64_t iova, unsigned leaf_level, uint64_t value)
{
	struct guestsim *gs = d->gs;
	uint64_t t = d->root;
	for (unsigned l = d->levels; l > leaf_level; l--) {
		unsigned idx = (iova >> SHIFT(l)) & 511;
		uint64_t e = rd(gs, t, idx);
		if (!(e & PRESENT)) {
			uint64_t nt = gs_alloc_table(gs);
			if (!nt)
				return -ENOMEM;
			wr(gs, t, idx, nt | PRESENT);
		} else if (!is_table(l, e)) {
			int rc = split_leaf(gs, l, t, idx, e);
			if (rc)
				return rc;
		}
		t = rd(gs, t, idx) & ADDR_MASK;
	}
	unsigned idx = (iova >> SHIFT(leaf_level)) & 511;
	uint64_t old = rd(gs, t, idx);
	wr(gs, t, idx, value);
	if (is_table(leaf_level, old))
		free_tree(gs, leaf_level - 1, old & ADDR_MASK);
	return 0;
}

int gs_map(struct gs_domain *d, uint64_t iova, uint64_t gpa, uint64_t size, uint32_t perm,
	   uint64_t policy)
{
	uint64_t lim = 1ull << d->aw;
	if (!size || ((iova | gpa | size) & (K - 1)) || iova >= lim || size > lim - iova ||
	    gpa + size < gpa || gpa + size > (1ull << 52) || !perm || (perm & ~PRESENT))
		return -EINVAL;
	if (policy != GS_LEAF_LARGEST && policy != GS_LEAF_4K && policy != GS_LEAF_2M &&
	    policy != GS_LEAF_1G)
		return -EINVAL;
	/* The biggest leaf to use: LARGEST means 1G; a forced size caps it. */
	uint64_t cap = policy == GS_LEAF_LARGEST ? G1 : policy;
	dirty_add(d, iova, size);
	while (size) {
		/* Per piece, like Linux: the biggest size up to cap that the domain
		 * allows and that iova, gpa and what is left permit. A forced size
		 * thus falls back to smaller leaves at unaligned ends. */
		uint64_t ls = K;
		if (cap >= G1 && d->allow_1g && !((iova | gpa) & (G1 - 1)) && size >= G1)
			ls = G1;
		else if (cap >= M2 && d->allow_2m && !((iova | gpa) & (M2 - 1)) && size >= M2)
			ls = M2;
		unsigned level = ls == K ? 1 : ls == M2 ? 2 : 3;
		int rc = set_leaf(d, iova, level, gpa | perm | (level > 1 ? VTD_PTE_PS : 0));
		if (rc)
			return rc;
		for (uint64_t off = 0; off < ls; off += K)
			if (th_put(&d->truth, (iova + off) >> 12, ((gpa + off) >> 12) << 2 | perm))
				return -ENOMEM;
		iova += ls;
		gpa += ls;
		size -= ls;
	}
	return 0;
}

/* Clears [lo, hi] under the table tgpa (level) mapping from base. */
static int clear_range(struct gs_domain *d, unsigned level, uint64_t tgpa, uint64_t base,
		       uint64_t lo, uint64_t hi)
{
	struct guestsim *gs = d->gs;
	unsigned shift = SHIFT(level);
	uint64_t esize = 1ull << shift;
	unsigned i = (unsigned)(((lo > base ? lo : base) - base) >> shift);
	uint64_t span_last = base + (esize << 9) - 1;
	unsigned end = (unsigned)(((hi < span_last ? hi : span_last) - base) >> shift);
	for (; i <= end; i++) {
		uint64_t e = rd(gs, tgpa, i);
		if (!(e & PRESENT))
			continue;
		uint64_t eb = base + i * esize, el = eb + esize - 1;
		bool whole = lo <= eb && el <= hi;
		if (!is_table(level, e)) {
			if (whole) {
				wr(gs, tgpa, i, 0);
				continue;
			}
			int rc = split_leaf(gs, level, tgpa, i, e);
			if (rc)
				return rc;
			e = rd(gs, tgpa, i);
		} else if (whole && d->free_empty) {
			wr(gs, tgpa, i, 0);
			free_tree(gs, level - 1, e & ADDR_MASK);
			continue;
		}
		uint64_t child = e & ADDR_MASK;
		if (child - gs->tbl_gpa >= gs->tbl_bytes)
			continue; /* a hostile pointer a test planted: not ours to edit */
		int rc = clear_range(d, level - 1, child, eb, lo, hi);
		if (rc)
			return rc;
		if (d->free_empty && table_empty(gs, child)) {
			wr(gs, tgpa, i, 0);
			gs_free_table(gs, child);
		}
	}
	return 0;
}

int gs_unmap(struct gs_domain *d, uint64_t iova, uint64_t size)
{
	uint64_t lim = 1ull << d->aw;
	if (!size || ((iova | size) & (K - 1)) || iova >= lim || size > lim - iova)
		return -EINVAL;
	dirty_add(d, iova, size);
	int rc = clear_range(d, d->levels, d->root, 0, iova, iova + size - 1);
	/* Truth follows intent even on -ENOMEM: tests must not rely on a failed unmap. */
	th_del_range(&d->truth, iova >> 12, (iova + size - 1) >> 12);
	return rc;
}

/* ---- truth ---- */

bool gs_truth_lookup(const struct gs_domain *d, uint64_t iova, uint64_t *gpa, uint32_t *perm)
{
	uint64_t v;
	if (!th_get(&d->truth, iova >> 12, &v))
		return false;
	*gpa = ((v >> 2) << 12) | (iova & (K - 1));
	*perm = (uint32_t)(v & 3);
	return true;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

void gs_truth_for_each(const struct gs_domain *d,
		       void (*cb)(void *arg, uint64_t iova, uint64_t gpa, uint32_t perm), void *arg)
{
	const struct truth *t = &d->truth;
	/* Ascending order: sort the occupied 2 MiB block numbers (a block's pages
	 * are dense and already in order), then visit each block. */
	uint64_t *keys = malloc((t->nblk ? t->nblk : 1) * sizeof(*keys)), n = 0;
	if (!keys)
		abort(); /* test support: a partial visit would make judges lie */
	for (uint64_t s = 0; s < t->cap; s++)
		if (t->key[s])
			keys[n++] = t->key[s];
	qsort(keys, n, sizeof(*keys), cmp_u64);
	for (uint64_t k = 0; k < n; k++) {
		const struct tblock *b = th_block(t, keys[k] - 1);
		uint64_t base = (keys[k] - 1) << 21;
		for (unsigned i = 0; i < 512; i++)
			if (b->val[i])
				cb(arg, base + i * K, (b->val[i] >> 2) << 12, (uint32_t)(b->val[i] & 3));
	}
	free(keys);
}

uint64_t gs_truth_pages(const struct gs_domain *d) { return d->truth.n; }

struct check {
	const struct gs_domain *d;
	uint64_t pages, in_truth, bad, prev_end;
};

static void check_bad(struct check *c, const char *what, uint64_t iova)
{
	if (c->bad++ < 5)
		fprintf(stderr, "guestsim: truth check: %s at iova 0x%" PRIx64 "\n", what, iova);
}

static int check_leaf(void *arg, const struct vtd_leaf *l)
{
	struct check *c = arg;
	if (l->iova < c->prev_end)
		check_bad(c, "leaf out of order", l->iova);
	c->prev_end = l->iova + l->size;
	for (uint64_t off = 0; off < l->size; off += K) {
		uint64_t gpa;
		uint32_t perm;
		if (!gs_truth_lookup(c->d, l->iova + off, &gpa, &perm)) {
			check_bad(c, "page mapped in the table, not in the truth", l->iova + off);
		} else {
			c->in_truth++;
			if (gpa != l->gpa + off || perm != l->perm)
				check_bad(c, "gpa/perm differ", l->iova + off);
		}
		c->pages++;
	}
	return 0;
}

static int check_error(void *arg, uint64_t iova, uint64_t size, enum vtd_error why)
{
	(void)size;
	check_bad(arg, vtd_error_name(why), iova);
	return 0;
}

uint64_t gs_truth_check(struct gs_domain *d) { return gs_truth_check_ram(d, NULL); }

uint64_t gs_truth_check_ram(struct gs_domain *d, const struct guest_ram *ram)
{
	static const struct vtd_walk_ops ops = { .leaf = check_leaf, .error = check_error };
	struct vtd_walk_params p;
	struct vtd_walk_stats st = { 0 };
	struct check c = { .d = d };
	if (!ram)
		ram = gs_ram(d->gs);
	gs_domain_params(d, &p);
	if (vtd_walk(ram, &p, &ops, &c, &st))
		check_bad(&c, "walk failed", 0);
	/* Truth pages the table did not yield (missing, or under an error span)
	 * each count as one differing page. */
	if (c.pages != d->truth.n || c.in_truth != d->truth.n)
		fprintf(stderr, "guestsim: truth check: table maps %" PRIu64 " pages, truth %" PRIu64 "\n",
			c.pages, d->truth.n);
	/* (A DAG can yield a page twice: never let that underflow.) */
	return c.bad + (c.in_truth < d->truth.n ? d->truth.n - c.in_truth : 0);
}

/* ---- hostile helpers ---- */

uint64_t gs_pte_gpa(const struct gs_domain *d, uint64_t iova, unsigned level)
{
	const struct guestsim *gs = d->gs;
	if (level < 1 || level > d->levels || (iova >> d->aw))
		return 0;
	uint64_t t = d->root;
	for (unsigned l = d->levels;; l--) {
		uint64_t at = t + ((iova >> SHIFT(l)) & 511) * 8;
		if (l == level)
			return at;
		uint64_t e = gs_read_pte(gs, at);
		if (!is_table(l, e) || !gs_hva(gs, e & ADDR_MASK))
			return 0;
		t = e & ADDR_MASK;
	}
}
