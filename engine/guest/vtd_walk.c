/* SPDX-License-Identifier: MIT */
/*
 * VT-d second-level page-table walker (VT-d spec ch. 9, second-level paging
 * entries). Recursive, depth <= 5. The hot loop is the PTE scan: one relaxed
 * load, one test against the running permission (which skips non-present
 * entries and subtrees the path already denies), and the leaf callback.
 * Guest RAM is looked up at most once per table, never per entry, and the
 * region found is kept for the rest of the walk: a guest's tables nearly
 * always live in one region, so a 4-level descent costs one lookup, not four.
 */
#include "vtd_walk.h"

#include <errno.h>
#include <stddef.h>

#define LEVEL_SHIFT(l) (12u + 9u * ((l) - 1u)) /* IOVA bits mapped by one entry at level l */

struct walk {
	const struct guest_ram *ram;
	const struct vtd_walk_ops *ops;
	void *arg;
	struct vtd_walk_stats *st;
	uint64_t first, last;
	uint64_t addr_mask; /* entry address bits 12..HAW-1 */
	uint64_t rsv_hi;    /* address bits HAW..51: reserved in every entry */
	uint64_t left;      /* entries we may still read */
	uint64_t path[6];   /* table GPA by level, for loop detection */
	/* The region of the last table entered (size 0: none yet). A copy made
	 * inside the caller's read-side section stays valid for the whole walk:
	 * RAM removal waits a grace period before the host memory goes. */
	struct guest_ram_region region;
	unsigned top;       /* root level */
	bool allow_2m, allow_1g;
	bool merge_4k;
	bool stopped;
	int rc;
};

static inline uint64_t max_u64(uint64_t a, uint64_t b) { return a > b ? a : b; }
static inline uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

/* Reports [lo, hi] clipped to the range. Returns nonzero when the walk stops. */
static int report(struct walk *w, uint64_t lo, uint64_t hi, enum vtd_error why)
{
	lo = max_u64(lo, w->first);
	hi = min_u64(hi, w->last);
	w->st->errors[why]++;
	if (w->ops->error) {
		int rc = w->ops->error(w->arg, lo, hi - lo + 1, why);
		if (rc) {
			w->rc = rc;
			w->stopped = true;
		}
	}
	return w->stopped;
}

/*
 * merge_4k's rule: how many entries from t[i] on (t[i] == e, 1 at least)
 * stand for one run: each the next page's address with every other bit
 * equal — so present, the same permission, no reserved bit — as long as
 * the address field does not carry out. At most this many more: the
 * range's last index `end`, the address field, the budget `left` (one per
 * entry taken). Then one compare per page. walk_table and vtd_walk_run's
 * descent both merge through it.
 */
static inline __attribute__((always_inline)) uint64_t
run_entries(const uint64_t *t, unsigned i, unsigned end, uint64_t e, uint64_t addr_mask,
	    uint64_t left)
{
	const uint64_t maxn = ((addr_mask - (e & addr_mask)) >> 12) + 1;
	uint64_t lim = end - i;
	lim = lim < maxn - 1 ? lim : maxn - 1;
	lim = lim < left ? lim : left;
	uint64_t n = 1;
	while (n <= lim && __atomic_load_n(&t[i + n], __ATOMIC_RELAXED) == e + (n << 12))
		n++;
	return n;
}

/* The OR of n (a constant) entries from t: none grants anything when it
 * has no bit of the path's permission. Each a relaxed load, as the scan's. */
static inline __attribute__((always_inline)) uint64_t or_entries(const uint64_t *t, const unsigned n)
{
	uint64_t x = 0;
#pragma GCC unroll 8
	for (unsigned k = 0; k < n; k++)
		x |= __atomic_load_n(&t[k], __ATOMIC_RELAXED);
	return x;
}

static inline __attribute__((always_inline)) int walk_table(struct walk *w, unsigned level,
							   const uint64_t *t, uint64_t base,
							   uint32_t perm);

/* A present entry above level 1 (esize: the span it maps): why it cannot
 * be used, or VTD_ERR_COUNT. Reserved address bits, PS where the level or
 * the domain forbids it, a large page's address bits below its alignment. */
static inline enum vtd_error upper_entry_error(uint64_t e, unsigned level, uint64_t esize,
					       uint64_t rsv_hi, uint64_t addr_mask, bool allow_2m,
					       bool allow_1g)
{
	if (e & rsv_hi)
		return VTD_ERR_RESERVED;
	if (!(e & VTD_PTE_PS))
		return VTD_ERR_COUNT;
	if (level >= 4)
		return VTD_ERR_RESERVED; /* PS is reserved in PML4E/PML5E */
	if (!(level == 3 ? allow_1g : allow_2m))
		return VTD_ERR_LARGE_PAGE;
	if (e & (esize - 1) & addr_mask)
		return VTD_ERR_RESERVED; /* address bits below the large page's alignment */
	return VTD_ERR_COUNT;
}

/*
 * Enters the table at tgpa, which maps [base, base + 2^(shift of level+1)).
 * Failures are reported over that whole span: nothing under it is knowable.
 */
static int enter(struct walk *w, unsigned level, uint64_t tgpa, uint64_t base, uint32_t perm)
{
	uint64_t span_last = base + ((1ull << (LEVEL_SHIFT(level) + 9)) - 1);
	for (unsigned l = level + 1; l <= w->top; l++)
		if (w->path[l] == tgpa)
			return report(w, base, span_last, VTD_ERR_LOOP);
	/* Tables are 4 KiB aligned and regions 4 KiB granular: one lookup covers the page. */
	if (tgpa - w->region.gpa >= w->region.size && !guest_ram_find(w->ram, tgpa, &w->region))
		return report(w, base, span_last, VTD_ERR_TABLE_OUTSIDE_RAM);
	w->path[level] = tgpa;
	return walk_table(w, level, (const uint64_t *)(uintptr_t)(w->region.hva + (tgpa - w->region.gpa)),
			  base, perm);
}

/* Always inlined: into enter (vtd_walk's recursion, as before
 * vtd_walk_block shared it: out of line it cost the generic walk a call per
 * table, miss/walk 29.6 -> 34.8 ns) and into vtd_walk_block's leaf scan. */
static inline __attribute__((always_inline)) int walk_table(struct walk *w, unsigned level,
							   const uint64_t *t, uint64_t base,
							   uint32_t perm)
{
	const unsigned shift = LEVEL_SHIFT(level);
	const uint64_t span_last = base + ((1ull << (shift + 9)) - 1);
	unsigned i = (unsigned)((max_u64(w->first, base) >> shift) & 511);
	const unsigned end = (unsigned)((min_u64(w->last, span_last) >> shift) & 511);
	const uint64_t esize = 1ull << shift;
	/* The budget lives in a register here; w->left is synced around recursion. */
	uint64_t left = w->left;
	int stop = 0;
	const bool merge = level == 1 && w->merge_4k; /* in a register: tested per leaf */

	for (; i <= end; i++) {
		if (__builtin_expect(left == 0, 0)) {
			/* The rest of the range, not just this table: the walk ends here. */
			report(w, base + (uint64_t)i * esize, w->last, VTD_ERR_BUDGET);
			w->stopped = true;
			stop = 1;
			break;
		}
		left--;
		const uint64_t e = __atomic_load_n(&t[i], __ATOMIC_RELAXED);
		/* Not present, or the path already denies everything this entry could grant. */
		if (!(e & perm)) {
			/* The next ones too, eight then four at a time, each read
			 * within the budget: an oversized PSI's tail, the whole of
			 * a strict guest's unmap PSI (~7 instructions an entry one
			 * by one; ~4 four at a time). */
			while (i + 8 <= end && left >= 8 && !(or_entries(t + i + 1, 8) & perm)) {
				i += 8;
				left -= 8;
			}
			if (i + 4 <= end && left >= 4 && !(or_entries(t + i + 1, 4) & perm)) {
				i += 4;
				left -= 4;
			}
			continue;
		}
		const uint64_t iova = base + (uint64_t)i * esize;
		const uint32_t p = perm & (uint32_t)e & (VTD_PTE_R | VTD_PTE_W);

		uint64_t size = esize;
		uint32_t entries = 1;
		if (level == 1) {
			if (__builtin_expect(e & w->rsv_hi, 0)) {
				if ((stop = report(w, iova, iova + esize - 1, VTD_ERR_RESERVED)))
					break;
				continue;
			}
			/* The first test alone when the next entry does not continue
			 * this one (scattered pages: dsi-unchanged). */
			if (merge && i < end &&
			    __atomic_load_n(&t[i + 1], __ATOMIC_RELAXED) == e + (1ull << 12)) {
				/* The entries that continue this one
				 * (run_entries), each an entry read within the
				 * budget. One compare per page instead of a leaf
				 * call: most of an oversized PSI's walk over
				 * contiguously mapped pages. */
				const uint64_t n = run_entries(t, i, end, e, w->addr_mask, left);
				left -= n - 1;
				size = n << 12;
				entries = (uint32_t)n;
				i += (unsigned)(n - 1);
			}
		} else {
			enum vtd_error why = upper_entry_error(e, level, esize, w->rsv_hi, w->addr_mask,
							       w->allow_2m, w->allow_1g);
			if (why != VTD_ERR_COUNT) {
				if ((stop = report(w, iova, iova + esize - 1, why)))
					break;
				continue;
			}
			if (!(e & VTD_PTE_PS)) {
				w->left = left;
				stop = enter(w, level - 1, e & w->addr_mask, iova, p);
				left = w->left;
				if (stop)
					break;
				continue;
			}
		}
		const struct vtd_leaf leaf = { iova, size, e & w->addr_mask, p, entries, &w->region };
		w->st->leaves += entries;
		int rc = w->ops->leaf(w->arg, &leaf);
		if (rc) {
			w->rc = rc;
			w->stopped = true;
			stop = 1;
			break;
		}
	}
	w->left = left;
	return stop;
}

/* The checks both entry points make: the widths, the range, the root's
 * alignment, a leaf visitor. Sets the host width and the level count.
 * Always inlined: out of line (gcc's choice) it cost a walk ~22 of ~645
 * instructions (callgrind, miss/walk), its results passed through memory. */
static inline __attribute__((always_inline)) bool
walk_params_ok(const struct vtd_walk_params *p, uint64_t first, uint64_t last,
	       const struct vtd_walk_ops *ops, unsigned *haw, unsigned *levels)
{
	*haw = p->host_width ? p->host_width : 52;
	*levels = p->addr_width == 39 ? 3 : p->addr_width == 48 ? 4 : p->addr_width == 57 ? 5 : 0;
	return *levels && *haw >= 12 && *haw <= 52 && first <= last && (last >> p->addr_width) == 0 &&
	       !(p->root_gpa & 0xfff) && ops && ops->leaf;
}

/* An entry's address bits 12..HAW-1, and bits HAW..51 (reserved in every
 * entry), for a host address width haw. */
static inline uint64_t addr_mask_of(unsigned haw) { return ((1ull << haw) - 1) & ~0xfffull; }
static inline uint64_t rsv_hi_of(unsigned haw) { return ((1ull << 52) - 1) & ~((1ull << haw) - 1); }

/* The walk state both walkers scan a table with, all but what vtd_walk
 * sets for its recursion (the RAM map, the loop path, the root level) and
 * the region (vtd_walk: none yet; the block scan: the descent's). Not a
 * compound literal: zeroing the whole state (path and region included)
 * was ~20 stores of a block walk's ~40 instructions of set-up. */
static inline __attribute__((always_inline)) void
walk_state(struct walk *w, const struct vtd_walk_params *p, const struct vtd_walk_ops *ops,
	   void *arg, struct vtd_walk_stats *stats, uint64_t first, uint64_t last, unsigned haw,
	   uint64_t left)
{
	w->ops = ops;
	w->arg = arg;
	w->st = stats;
	w->first = first;
	w->last = last;
	w->addr_mask = addr_mask_of(haw);
	w->rsv_hi = rsv_hi_of(haw);
	w->left = left;
	w->allow_2m = p->allow_2m;
	w->allow_1g = p->allow_1g;
	w->merge_4k = p->merge_4k;
	w->stopped = false;
	w->rc = 0;
}

int vtd_walk(const struct guest_ram *ram, const struct vtd_walk_params *p,
	     const struct vtd_walk_ops *ops, void *arg, struct vtd_walk_stats *stats)
{
	/* first and last as two 8-byte loads: the caller has just stored them
	 * one by one, and the 16-byte load the compiler pairs them into could
	 * not be forwarded from those stores (a stall on every walk; a
	 * relaxed atomic load is never paired). */
	const uint64_t first = __atomic_load_n(&p->first, __ATOMIC_RELAXED);
	const uint64_t last = __atomic_load_n(&p->last, __ATOMIC_RELAXED);
	unsigned haw, levels;
	if (!walk_params_ok(p, first, last, ops, &haw, &levels)) {
		stats->errors[VTD_ERR_BAD_WIDTH]++;
		return -EINVAL;
	}
	struct walk w;
	walk_state(&w, p, ops, arg, stats, first, last, haw, p->budget ? p->budget : UINT64_MAX);
	w.ram = ram;
	w.top = levels;
	w.region.gpa = 0;
	w.region.size = 0; /* none yet: the first table looks its region up */
	for (unsigned l = 0; l < 6; l++)
		w.path[l] = UINT64_MAX; /* never a table address: it is not 4 KiB aligned */
	enter(&w, levels, p->root_gpa, 0, VTD_PTE_R | VTD_PTE_W);
	stats->entries_read += (p->budget ? p->budget : UINT64_MAX) - w.left;
	return w.rc;
}

/* What the descent does at the leaf table (a constant in every copy). */
enum walk_mode {
	WALK_PAGE,  /* the entry over `first` only (a one-page range) */
	WALK_BLOCK, /* the table's scan over [first, last] (walk_table) */
	WALK_RUN,   /* the entry over `first` and those continuing it (vtd_walk_run) */
};

/* vtd_walk_block's and vtd_walk_run's descent for a table of `levels`
 * levels: always inlined with a constant `levels` (3, 4 or 5) and mode, so
 * that the loops over the levels and over the tables above unroll and every
 * shift is an immediate. */
static inline __attribute__((always_inline)) int
walk_page_levels(const struct guest_ram *ram, const struct vtd_walk_params *p,
		 const struct vtd_walk_ops *ops, void *arg, struct vtd_walk_stats *stats,
		 uint64_t first, uint64_t last, unsigned haw, const unsigned levels,
		 const enum walk_mode mode)
{
	const uint64_t addr_mask = addr_mask_of(haw);
	const uint64_t rsv_hi = rsv_hi_of(haw);
	const uint64_t budget = p->budget ? p->budget : UINT64_MAX;
	uint64_t left = budget;
	uint64_t path[6];
	struct guest_ram_region region = { 0 };
	uint64_t tgpa = p->root_gpa;
	uint32_t perm = VTD_PTE_R | VTD_PTE_W;
	int rc = 0;
	enum vtd_error why = VTD_ERR_COUNT;
	uint64_t lo = 0, hi = 0; /* the span an error covers (before clipping) */

#pragma GCC unroll 5
	for (unsigned level = levels; level >= 1; level--) {
		const unsigned shift = LEVEL_SHIFT(level);
		/* Entering the table at tgpa, which maps the span of one entry of
		 * the level above: an error there covers that whole span. */
		const uint64_t span = 1ull << (shift + 9);
		const uint64_t base = first & ~(span - 1);
#pragma GCC unroll 5
		for (unsigned l = level + 1; l <= levels; l++)
			if (path[l] == tgpa) {
				why = VTD_ERR_LOOP;
				lo = base, hi = base + span - 1;
				goto error;
			}
		if (tgpa - region.gpa >= region.size && !guest_ram_find(ram, tgpa, &region)) {
			why = VTD_ERR_TABLE_OUTSIDE_RAM;
			lo = base, hi = base + span - 1;
			goto error;
		}
		path[level] = tgpa;
		const uint64_t *t = (const uint64_t *)(uintptr_t)(region.hva + (tgpa - region.gpa));
		if (level == 1 && mode == WALK_BLOCK) {
			/* More than a page of one leaf table: its scan is
			 * vtd_walk's (runs merged, budget per entry, reports
			 * clipped), entered with what the descent left. */
			struct walk w; /* no ram, path or top: walk_table enters no table at level 1 */
			walk_state(&w, p, ops, arg, stats, first, last, haw, left);
			w.region = region; /* the leaves' RAM hint */
			walk_table(&w, 1, t, base, perm);
			left = w.left;
			rc = w.rc;
			break;
		}
		const uint64_t esize = 1ull << shift;
		const uint64_t iova = first & ~(esize - 1);
		if (left == 0) {
			why = VTD_ERR_BUDGET; /* the rest of the range: this page from here */
			lo = iova, hi = last;
			goto error;
		}
		left--;
		const uint64_t e = __atomic_load_n(&t[(first >> shift) & 511], __ATOMIC_RELAXED);
		if (!(e & perm))
			break; /* not present, or denied by the path: nothing to report */
		const uint32_t pe = perm & (uint32_t)e & (VTD_PTE_R | VTD_PTE_W);
		if (level == 1) {
			if (__builtin_expect(e & rsv_hi, 0)) {
				why = VTD_ERR_RESERVED;
				lo = iova, hi = iova + esize - 1;
				goto error;
			}
		} else {
			why = upper_entry_error(e, level, esize, rsv_hi, addr_mask, p->allow_2m, p->allow_1g);
			if (why != VTD_ERR_COUNT) {
				lo = iova, hi = iova + esize - 1;
				goto error;
			}
			if (!(e & VTD_PTE_PS)) {
				tgpa = e & addr_mask;
				perm = pe;
				continue;
			}
		}
		uint64_t n = 1;
		if (mode == WALK_RUN && level == 1) {
			/* walk_table's merge, none past `last` */
			n = run_entries(t, (unsigned)(first >> 12) & 511, (unsigned)(last >> 12) & 511, e,
					addr_mask, left);
			left -= n - 1;
		}
		const struct vtd_leaf leaf = { iova, esize * n, e & addr_mask, pe, (uint32_t)n, &region };
		stats->leaves += n;
		rc = ops->leaf(arg, &leaf);
		break;
	}
	stats->entries_read += budget - left;
	return rc;
error:
	stats->errors[why]++;
	if (ops->error)
		rc = ops->error(arg, lo > first ? lo : first, (hi < last ? hi : last) - (lo > first ? lo : first) + 1, why);
	stats->entries_read += budget - left;
	return rc;
}

/* The page or block descent for the domain's level count. */
static inline __attribute__((always_inline)) int
walk_levels(const struct guest_ram *ram, const struct vtd_walk_params *p,
	    const struct vtd_walk_ops *ops, void *arg, struct vtd_walk_stats *stats, uint64_t first,
	    uint64_t last, unsigned haw, unsigned levels, const enum walk_mode mode)
{
	switch (levels) {
	case 4:
		return walk_page_levels(ram, p, ops, arg, stats, first, last, haw, 4, mode);
	case 3:
		return walk_page_levels(ram, p, ops, arg, stats, first, last, haw, 3, mode);
	default:
		return walk_page_levels(ram, p, ops, arg, stats, first, last, haw, 5, mode);
	}
}

/* A range of more than one page in one block: the descent's copies with
 * the leaf table's scan, out of line so that the one-page copies keep their
 * small frame (inlined, the scan's state cost every one-page walk ~10
 * instructions of spills). */
static __attribute__((noinline)) int
walk_block(const struct guest_ram *ram, const struct vtd_walk_params *p,
	   const struct vtd_walk_ops *ops, void *arg, struct vtd_walk_stats *stats, uint64_t first,
	   uint64_t last, unsigned haw, unsigned levels)
{
	return walk_levels(ram, p, ops, arg, stats, first, last, haw, levels, WALK_BLOCK);
}

/*
 * A range inside one 2 MiB-aligned block (one leaf table): the descent of
 * vtd_walk without its generality — no recursion, no per-table scan set-up
 * above the leaf table, the loop check against the few tables above — with
 * the same checks in the same order, the same reports (clipped to the range)
 * and the same stats, so that a caller cannot tell the two apart (tests/guest
 * `walker` compares them on every such walk it makes, and fuzz-walker on
 * random tables). The leaf table itself is scanned by vtd_walk's own loop
 * (walk_table) when the range is more than one page.
 * The strict guest's one-page PSI: the generic walk was ~780 of ~2,700
 * instructions of a one-page PSI + wait (callgrind); specialised by level
 * count (walk_page_levels), the descent fell from ~356 to ~229 of its own.
 * A PSI window of a few pages (perm-churn, strict-dma) takes it too; the
 * IOTLB's fill takes vtd_walk_run (below): see ARCHITECTURE.md.
 */
int vtd_walk_block(const struct guest_ram *ram, const struct vtd_walk_params *p,
		   const struct vtd_walk_ops *ops, void *arg, struct vtd_walk_stats *stats)
{
	const uint64_t first = __atomic_load_n(&p->first, __ATOMIC_RELAXED);
	const uint64_t last = __atomic_load_n(&p->last, __ATOMIC_RELAXED);
	if ((first ^ last) >> 21)
		return vtd_walk(ram, p, ops, arg, stats); /* not one leaf table */
	unsigned haw, levels;
	if (!walk_params_ok(p, first, last, ops, &haw, &levels)) {
		stats->errors[VTD_ERR_BAD_WIDTH]++;
		return -EINVAL;
	}
	if ((first ^ last) >> 12)
		return walk_block(ram, p, ops, arg, stats, first, last, haw, levels);
	return walk_levels(ram, p, ops, arg, stats, first, last, haw, levels, WALK_PAGE);
}

int vtd_walk_run(const struct guest_ram *ram, const struct vtd_walk_params *p,
		 const struct vtd_walk_ops *ops, void *arg, struct vtd_walk_stats *stats)
{
	const uint64_t first = __atomic_load_n(&p->first, __ATOMIC_RELAXED);
	const uint64_t last = __atomic_load_n(&p->last, __ATOMIC_RELAXED);
	unsigned haw, levels;
	if ((first ^ last) >> 21 || !walk_params_ok(p, first, last, ops, &haw, &levels)) {
		stats->errors[VTD_ERR_BAD_WIDTH]++;
		return -EINVAL;
	}
	return walk_levels(ram, p, ops, arg, stats, first, last, haw, levels, WALK_RUN);
}

const char *vtd_error_name(enum vtd_error e)
{
	static const char *const names[VTD_ERR_COUNT] = {
		[VTD_ERR_RESERVED] = "reserved-bits",
		[VTD_ERR_LARGE_PAGE] = "large-page",
		[VTD_ERR_TABLE_OUTSIDE_RAM] = "table-outside-ram",
		[VTD_ERR_LOOP] = "loop",
		[VTD_ERR_BUDGET] = "budget",
		[VTD_ERR_BAD_WIDTH] = "bad-width",
	};
	return (unsigned)e < VTD_ERR_COUNT ? names[e] : "unknown";
}
