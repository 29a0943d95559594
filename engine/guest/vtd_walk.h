/* SPDX-License-Identifier: MIT */
/*
 * A bounded walker of Intel VT-d second-level page tables (legacy mode
 * second-level translation; the same entry format is used by scalable-mode
 * second-level tables), written from the VT-d specification, chapter 9
 * ("Translation structure formats"). Knows nothing of the tree or sinks: it
 * yields leaves in IOVA order, and spans it could not translate.
 *
 * Entry format: include/iovt_vtd.h (public: callers write these tables).
 *
 * What is an error (the span under the entry is reported as an error span,
 * which the caller treats as not mapped, and counted by kind):
 *  - a table or leaf address with bits at or above the host address width
 *    set, bit 7 set in a PML5E/PML4E, or the address bits below a large
 *    page's alignment set (reserved bits): VTD_ERR_RESERVED
 *  - PS set where the domain does not allow that page size: VTD_ERR_LARGE_PAGE
 *  - a table pointer into a hole of guest RAM: VTD_ERR_TABLE_OUTSIDE_RAM
 *  - a table that is its own ancestor on the current walk path: VTD_ERR_LOOP
 *  - the per-walk entry budget spent: the rest of the range is one error span
 *    of kind VTD_ERR_BUDGET, and the walk stops.
 * A leaf whose target lies outside RAM is not the walker's business: it is
 * yielded, and the caller finds out when translating GPA->HVA.
 *
 * Bounded work: at most `budget` entries are read, each at most once per
 * path; depth is bounded by the level count.
 */
#ifndef IOVT_GUEST_VTD_WALK_H
#define IOVT_GUEST_VTD_WALK_H

#include <stdbool.h>
#include <stdint.h>

#include "guest_ram.h"
#include "iovt_vtd.h"

/* The public header is the one definition of the entry format. */
#define VTD_PTE_R IOVT_VTD_PTE_R
#define VTD_PTE_W IOVT_VTD_PTE_W
#define VTD_PTE_PS IOVT_VTD_PTE_PS

enum vtd_error {
	VTD_ERR_RESERVED,
	VTD_ERR_LARGE_PAGE,
	VTD_ERR_TABLE_OUTSIDE_RAM,
	VTD_ERR_LOOP,
	VTD_ERR_BUDGET,
	VTD_ERR_BAD_WIDTH, /* address width not 39/48/57, or range beyond it */
	VTD_ERR_COUNT
};

struct vtd_walk_params {
	uint64_t root_gpa;  /* the domain's second-level page-table pointer (4 KiB aligned) */
	unsigned addr_width;/* adjusted guest address width: 39, 48 or 57 (3, 4, 5 levels) */
	unsigned host_width;/* HAW: address bits an entry may use (e.g. 46); 0 means 52 */
	bool allow_2m;      /* PS in a PDE allowed (SLLPS bit 0) */
	bool allow_1g;      /* PS in a PDPE allowed (SLLPS bit 1) */
	bool merge_4k;      /* yield 4 KiB leaves that continue each other as one (see vtd_leaf) */
	uint64_t first;     /* first IOVA of the range (inclusive) */
	uint64_t last;      /* last IOVA of the range (inclusive) */
	uint64_t budget;    /* max entries read; 0 means unlimited */
};

struct vtd_leaf {
	uint64_t iova;  /* aligned to size */
	uint64_t size;  /* 4 KiB, 2 MiB or 1 GiB; with merge_4k, n x 4 KiB: n
			 * entries of one table, each the next page's address
			 * with every other bit equal (iova, gpa 4 KiB aligned) */
	uint64_t gpa;   /* aligned to size */
	uint32_t perm;  /* IOVT_PERM_R | IOVT_PERM_W (effective) */
	uint32_t entries; /* table entries it stands for: 1, or n merged (merge_4k) */
	/* A guest RAM region the walker found in this walk (of a table it
	 * entered: never empty for a leaf, which comes from one), valid for the
	 * call: a hint for the leaf's own target lookup, often in the same
	 * region (one lookup less a walk: a one-page PSI's ~27 instructions of
	 * ~1,800). */
	const struct guest_ram_region *ram_hint;
};

struct vtd_walk_stats {
	uint64_t entries_read;
	uint64_t leaves;
	uint64_t errors[VTD_ERR_COUNT];
};

struct vtd_walk_ops {
	/* A present leaf overlapping [first, last]; yielded whole (not clipped),
	 * in ascending IOVA order. Return nonzero to stop the walk. */
	int (*leaf)(void *arg, const struct vtd_leaf *leaf);
	/* A span [iova, iova+size) (clipped to the range) that could not be
	 * translated, with the reason. May be NULL. Return nonzero to stop. */
	int (*error)(void *arg, uint64_t iova, uint64_t size, enum vtd_error why);
};

/*
 * Walks [p->first, p->last]. Leaves and error spans arrive interleaved in
 * IOVA order; anything not reported is not present. Stats are added to
 * *stats (which the caller zeroes). Returns 0, a visitor's nonzero value,
 * or -EINVAL for bad parameters (nothing walked, VTD_ERR_BAD_WIDTH counted).
 * Caller inside an RCU read-side section (guest RAM lookups).
 */
int vtd_walk(const struct guest_ram *ram, const struct vtd_walk_params *p,
	     const struct vtd_walk_ops *ops, void *arg, struct vtd_walk_stats *stats);

/*
 * vtd_walk for a range inside one 2 MiB-aligned block, i.e. one leaf table
 * (any other range: vtd_walk): one descent, no recursion, then that table's
 * scan. Same leaves, error spans, return value and stats as vtd_walk over
 * that range (merge_4k included). Same caller rules as vtd_walk.
 */
int vtd_walk_block(const struct guest_ram *ram, const struct vtd_walk_params *p,
		   const struct vtd_walk_ops *ops, void *arg, struct vtd_walk_stats *stats);

/*
 * The first run at p->first: what vtd_walk with merge_4k over [p->first,
 * p->last] reports first, when that is a leaf holding p->first or an error
 * span holding it, and nothing else: the leaf over p->first and, for a
 * 4 KiB leaf, the entries after it in its table that continue it (each the
 * next page's address, every other bit equal; merge_4k's rule) up to
 * p->last, as one leaf (entries = their count). A 2 MiB or 1 GiB leaf is
 * reported whole. p->first not present (or denied by the path): nothing is
 * reported. One descent and a compare per continuing entry: the IOTLB's
 * fill, whose scan of its 16-page window read 2 lines of entries where the
 * run ended after one (miss/engine: 587 -> 375 instructions of walk a miss,
 * 63.8 -> 46.9 ns).
 * [p->first, p->last] must lie inside one 2 MiB-aligned block (-EINVAL
 * otherwise, VTD_ERR_BAD_WIDTH counted, as bad parameters). Stats as
 * vtd_walk counts the entries it reads. Same caller rules as vtd_walk.
 */
int vtd_walk_run(const struct guest_ram *ram, const struct vtd_walk_params *p,
		 const struct vtd_walk_ops *ops, void *arg, struct vtd_walk_stats *stats);

/*
 * The guest RAM region holding gpa, a leaf's target: the walker's ram_hint
 * when it holds it (no lookup), else guest_ram_find's answer. For a leaf
 * visitor, inside the walk's read-side section.
 */
static inline bool vtd_leaf_ram_find(const struct guest_ram *ram, const struct vtd_leaf *leaf,
				     uint64_t gpa, struct guest_ram_region *out)
{
	const struct guest_ram_region *h = leaf->ram_hint;
	if (gpa - h->gpa < h->size) {
		*out = *h;
		return true;
	}
	return guest_ram_find(ram, gpa, out);
}

const char *vtd_error_name(enum vtd_error e);

#endif
