/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the VT-d walker on arbitrary table contents. The guest
 * is untrusted, so its tables are just bytes: the input is a header (width,
 * page-size bits, host width, range, budget) then raw contents for a few
 * table pages (the root is the first). Entries may point at each other
 * (loops, DAGs), into holes, past RAM, carry reserved bits or PS anywhere.
 * Properties checked on every input:
 *  - no crash, no sanitizer report;
 *  - bounded: entries_read <= budget;
 *  - leaves arrive in ascending IOVA order, overlap the range, are aligned
 *    to their size, and error spans lie inside the range, in order, and do
 *    not overlap leaves or each other;
 *  - an error span is reported for every error counted.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "guestsim.h"

#define K 0x1000ull
#define M2 0x200000ull
#define NTABLES 8u

static struct guestsim *gs;
static uint64_t tables[NTABLES];

struct check {
	uint64_t first, last;
	uint64_t next;     /* every leaf/error must start at or after this (span end seen so far) */
	uint64_t errors;
	bool any;
};

static int on_leaf(void *arg, const struct vtd_leaf *l)
{
	struct check *c = arg;
	if (l->size != K && l->size != M2 && l->size != (1ull << 30))
		abort();
	if ((l->iova | l->gpa) & (l->size - 1))
		abort();
	if (l->iova > c->last || l->iova + l->size - 1 < c->first)
		abort(); /* no overlap with the range */
	uint64_t lo = l->iova < c->first ? c->first : l->iova;
	if (c->any && lo < c->next)
		abort(); /* not ascending, or overlapping an earlier leaf/error */
	if (!l->perm || (l->perm & ~3u))
		abort();
	c->next = l->iova + l->size; /* may wrap to 0 at the very top: then nothing may follow */
	c->any = true;
	return 0;
}

static int on_error(void *arg, uint64_t iova, uint64_t size, enum vtd_error why)
{
	struct check *c = arg;
	if ((unsigned)why >= VTD_ERR_COUNT || !size)
		abort();
	if (iova < c->first || iova + size - 1 > c->last || iova + size - 1 < iova)
		abort(); /* error spans are clipped to the range */
	if (c->any && iova < c->next)
		abort();
	c->next = iova + size;
	c->any = true;
	c->errors++;
	return 0;
}

/* The events of one walk, folded into a count and a hash, to compare
 * vtd_walk_block with vtd_walk event by event. */
struct events {
	unsigned n;
	int ret;         /* what the visitors return (a stop value, or 0) */
	uint64_t h;
	uint64_t iova0, size0; /* the first event's span */
};

static void fold(struct events *o, uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e)
{
	const uint64_t v[5] = { a, b, c, d, e };
	if (!o->n) {
		o->iova0 = a;
		o->size0 = b;
	}
	o->n++;
	for (unsigned i = 0; i < 5; i++)
		o->h = (o->h ^ v[i]) * 0x100000001b3ull; /* FNV-1a over the fields */
}

static int ev_leaf(void *arg, const struct vtd_leaf *l)
{
	struct events *o = arg;
	fold(o, l->iova, l->size, l->gpa, l->perm, 1000 + l->entries);
	return o->ret;
}

static int ev_error(void *arg, uint64_t iova, uint64_t size, enum vtd_error why)
{
	struct events *o = arg;
	fold(o, iova, size, 0, 0, why);
	return o->ret;
}

/* `mode` (from the input): which visitors (an error visitor or none), what
 * they return, whether the budget is the input's or unlimited, whether 4 KiB
 * runs are merged. [first, last] lies inside one 2 MiB block. */
static void compare_block(const struct vtd_walk_params *p, uint64_t first, uint64_t last,
			  unsigned mode)
{
	static const struct vtd_walk_ops ops = { ev_leaf, ev_error };
	static const struct vtd_walk_ops ops_no_error = { ev_leaf, NULL };
	static const int rets[4] = { 0, 1, -2, 99 };
	struct vtd_walk_params q = *p;
	q.first = first;
	q.last = last;
	if (mode & 8)
		q.budget = 0;
	q.merge_4k = (mode & 16) != 0;
	struct events a = { .ret = rets[mode & 3], .h = 14695981039346656037ull }, b = a;
	struct vtd_walk_stats sa = { 0 }, sb = { 0 };
	const struct vtd_walk_ops *o = mode & 4 ? &ops_no_error : &ops;
	int ra = vtd_walk(gs_guest_ram(gs), &q, o, &a, &sa);
	int rb = vtd_walk_block(gs_guest_ram(gs), &q, o, &b, &sb);
	if (ra != rb || a.n != b.n || a.h != b.h || memcmp(&sa, &sb, sizeof(sa)))
		abort(); /* the one-table descent differs from the walker */
	if (!((first ^ last) >> 12) && a.n > 1)
		abort(); /* one page: at most one event */

	/* vtd_walk_run (the IOTLB fill): vtd_walk's first event with 4 KiB runs
	 * merged when it holds `first`, else nothing. */
	struct vtd_walk_params m = q;
	m.merge_4k = true;
	struct events c = { .ret = 1, .h = 14695981039346656037ull }, d = c;
	struct vtd_walk_stats sc = { 0 }, sd = { 0 };
	int rc = vtd_walk(gs_guest_ram(gs), &m, &ops, &c, &sc);
	int rd = vtd_walk_run(gs_guest_ram(gs), &q, &ops, &d, &sd);
	if (rc == -EINVAL) {
		if (rd != -EINVAL || d.n)
			abort();
	} else if (c.n && c.iova0 <= first && first - c.iova0 < c.size0) {
		if (rd != rc || d.n != 1 || d.h != c.h || memcmp(&sc, &sd, sizeof(sc)))
			abort(); /* the run walk differs from the walker's first event */
	} else {
		if (rd != 0 || d.n || sd.entries_read > sc.entries_read || sd.leaves)
			abort(); /* first not present: nothing to report */
		for (unsigned i = 0; i < VTD_ERR_COUNT; i++)
			if (sd.errors[i])
				abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!gs) {
		/* Two regions with a 1 GiB hole: region 0 [0, 8M), region 1 [1G+8M, 1G+16M). */
		gs = gs_create(2, 4 * M2, 2 * M2);
		if (!gs)
			abort();
		for (unsigned i = 0; i < NTABLES; i++)
			if (!(tables[i] = gs_alloc_table(gs)))
				abort();
	}
	struct reader r = { data, size };
	unsigned hdr = (unsigned)take(&r, 1);
	static const unsigned widths[3] = { 39, 48, 57 };
	struct vtd_walk_params p = {
		.root_gpa = tables[0],
		.addr_width = widths[(hdr & 3) % 3],
		.allow_2m = hdr & 4,
		.allow_1g = hdr & 8,
		.host_width = (hdr & 16) ? 32 + (unsigned)take(&r, 1) % 21 : 0,
	};
	uint64_t top = (1ull << p.addr_width) - 1;
	uint64_t a = take(&r, 8) & top, b = take(&r, 8) & top;
	p.first = a < b ? a : b;
	p.last = a < b ? b : a;
	/* Always a budget (1..65536): small values exercise the cut. Unlimited
	 * is not fuzzed: a DAG of 8 tables is 512^5 reads, which is the point
	 * of the budget. */
	p.budget = 1 + take(&r, 2);

	/* The table pages: entries whose address bits are small pick one of
	 * our tables (so loops and DAGs are likely), others are raw. */
	for (unsigned t = 0; t < NTABLES; t++) {
		uint64_t *page = gs_hva(gs, tables[t]);
		memset(page, 0, 4096);
	}
	for (unsigned i = 0; r.n >= 9 && i < NTABLES * 512; i++) {
		unsigned slot = (unsigned)take(&r, 2) % (NTABLES * 512);
		uint8_t kind = (uint8_t)take(&r, 1);
		uint64_t v = take(&r, 6);
		switch (kind & 3) {
		case 0: /* a pointer to one of our tables, with flag bits from v */
			v = tables[v % NTABLES] | (kind & 0x80 ? VTD_PTE_PS : 0) | ((v >> 8) & 3);
			break;
		case 1: /* an address in RAM or its holes (below 2^31) */
			v = (v & 0x7ffff000ull) | ((v >> 40) & 0xfff);
			break;
		case 2: /* anything, high bits included */
			v = v | ((uint64_t)kind << 56);
			break;
		default:
			break;
		}
		uint64_t *page = gs_hva(gs, tables[slot / 512]);
		page[slot % 512] = v;
		/* Kind bit 6: a run — the next entries of the table continue
		 * this one (the next page's address, every other bit equal),
		 * which random bytes almost never write: merge_4k's case. */
		for (unsigned k = 1; (kind & 0x40) && k <= (unsigned)((kind >> 2) & 7) &&
				     (slot % 512) + k < 512; k++)
			page[slot % 512 + k] = v + ((uint64_t)k << 12);
	}

	struct check c = { .first = p.first, .last = p.last };
	struct vtd_walk_stats st = { 0 };
	static const struct vtd_walk_ops ops = { on_leaf, on_error };
	int rc = vtd_walk(gs_guest_ram(gs), &p, &ops, &c, &st);
	if (rc)
		abort(); /* the parameters are always valid here; visitors never stop */
	if (st.entries_read > p.budget)
		abort();
	uint64_t n = 0;
	for (unsigned k = 0; k < VTD_ERR_COUNT; k++)
		n += st.errors[k];
	if (n != c.errors)
		abort();
	/* The pages at both ends of the range and the range's part in its
	 * first 2 MiB block, through vtd_walk_block. */
	/* Their modes from a hash of the whole input, not from the header
	 * byte whose bits also set the widths and large-page rules (a review
	 * found each mode bit tied to one of those). */
	uint64_t h = 14695981039346656037ull;
	for (size_t i = 0; i < size; i++)
		h = (h ^ data[i]) * 0x100000001b3ull;
	compare_block(&p, p.first, (p.first | (K - 1)) < p.last ? p.first | (K - 1) : p.last,
		      (unsigned)(h >> 11));
	compare_block(&p, (p.last & ~(K - 1)) > p.first ? p.last & ~(K - 1) : p.first, p.last,
		      (unsigned)(h >> 23));
	compare_block(&p, p.first, (p.first | (M2 - 1)) < p.last ? p.first | (M2 - 1) : p.last,
		      (unsigned)(h >> 37));
	return 0;
}
