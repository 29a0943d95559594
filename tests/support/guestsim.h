/* SPDX-License-Identifier: MIT */
/*
 * guestsim: a simulated guest for iovt's tests and benchmarks.
 *
 *  - Guest RAM: regions of host memory (2 MiB aligned, lazily committed) at
 *    chosen GPAs with holes between them. The caller registers them with the
 *    engine itself (gs_region) or takes a ready `struct guest_ram` (gs_ram).
 *  - A page allocator for page-table pages: the last `table_bytes` of region 0.
 *    Data pages for mappings are the caller's choice (gs_region_data_size).
 *  - Domains with real Intel VT-d second-level tables written into that RAM,
 *    edited the way a guest driver does: map (with a leaf-size policy,
 *    remapping over present leaves) and unmap (splitting large leaves that are
 *    only partly unmapped).
 *  - A truth model kept apart from the tables (a hash of 4 KiB pages), the
 *    IOVA ranges touched since the last gs_take_dirty, and gs_truth_check,
 *    which walks the real table with vtd_walk and compares it with the truth.
 *  - Raw helpers to build hostile tables (loops, reserved bits, holes).
 *
 * Not thread-safe: one thread edits a simulated guest. PTE stores are relaxed
 * atomics so that an engine thread may walk the tables concurrently.
 */
#ifndef IOVT_TESTS_GUESTSIM_H
#define IOVT_TESTS_GUESTSIM_H

#include <stdbool.h>
#include <stdint.h>

#include "guest/guest_ram.h"
#include "guest/vtd_walk.h"

#define GS_MAX_REGIONS 16u

/* Leaf policies for gs_map: GS_LEAF_LARGEST (0) or a forced size in bytes. */
#define GS_LEAF_LARGEST 0ull
#define GS_LEAF_4K (1ull << 12)
#define GS_LEAF_2M (1ull << 21)
#define GS_LEAF_1G (1ull << 30)

struct gs_region {
	uint64_t gpa;  /* first byte */
	uint64_t size; /* bytes */
	void *hva;     /* host address of gpa, 2 MiB aligned */
	uint32_t id;   /* the region's index in the simulation */
};

struct gs_config {
	unsigned nregions;              /* 1..GS_MAX_REGIONS */
	uint64_t gpa[GS_MAX_REGIONS];   /* 4 KiB aligned, sorted, disjoint */
	uint64_t size[GS_MAX_REGIONS];  /* 4 KiB multiples */
	uint64_t table_bytes;           /* tail of region 0 kept for tables (4 KiB multiple) */
};

struct guestsim;
struct gs_domain;

/* ---- guest RAM ---- */

/* `nregions` regions of `region_size` bytes (2 MiB multiple): region 0 at GPA
 * 0, each next one after a 1 GiB hole, so region i starts at
 * i * (region_size + 1 GiB) (1 GiB aligned when region_size is a 1 GiB
 * multiple). Host memory is MAP_NORESERVE anonymous memory, 2 MiB aligned,
 * so big regions cost nothing until touched. The last `table_bytes` of
 * region 0 (4 KiB multiple, < region_size) hold page tables. NULL on bad input. */
struct guestsim *gs_create(unsigned nregions, uint64_t region_size, uint64_t table_bytes);
/* Explicit layout. NULL on bad input. */
struct guestsim *gs_create_config(const struct gs_config *cfg);
/* Frees RAM, domains and the guest_ram from gs_ram (no concurrent users). */
void gs_destroy(struct guestsim *gs);

unsigned gs_region_count(const struct guestsim *gs);
const struct gs_region *gs_region(const struct guestsim *gs, unsigned i);
/* Bytes from the start of region i usable for data (region 0: minus the tables). */
uint64_t gs_region_data_size(const struct guestsim *gs, unsigned i);
/* Host address of gpa, or NULL in a hole. */
void *gs_hva(const struct guestsim *gs, uint64_t gpa);
/* A guest_ram holding every region (built once with guest_ram_add, owned by gs),
 * for walker tests. gs_ram is the same function under a shorter name. */
struct guest_ram *gs_guest_ram(struct guestsim *gs);
struct guest_ram *gs_ram(struct guestsim *gs);

/* ---- page-table pages ---- */

/* A zeroed 4 KiB page from the table area; 0 when it is full. */
uint64_t gs_alloc_table(struct guestsim *gs);
void gs_free_table(struct guestsim *gs, uint64_t gpa);
uint64_t gs_tables_in_use(const struct guestsim *gs);

/* ---- domains ---- */

/* A domain with an empty root table. addr_width 39/48/57. NULL on failure. */
struct gs_domain *gs_domain_create(struct guestsim *gs, unsigned addr_width, bool allow_2m,
				   bool allow_1g);
/* Frees the domain's tables and truth. */
void gs_domain_destroy(struct gs_domain *d);
uint64_t gs_domain_root(const struct gs_domain *d);
unsigned gs_domain_width(const struct gs_domain *d);
/* When on, gs_unmap frees table pages it leaves empty and clears the entry
 * pointing at them (Linux-like); off (default) keeps empty tables. */
void gs_domain_set_free_empty(struct gs_domain *d, bool on);
/* Walk parameters for the whole width: root, widths, page sizes, host_width
 * 0 (52), no budget. */
void gs_domain_params(const struct gs_domain *d, struct vtd_walk_params *p);

/*
 * Maps [iova, iova+size) to [gpa, gpa+size) with perm (IOVT_PERM_R|W, not 0).
 * iova, gpa, size 4 KiB aligned. policy: GS_LEAF_LARGEST (per piece, the
 * largest size the domain allows that iova, gpa and the remaining size
 * permit, like Linux) or a forced GS_LEAF_4K/2M/1G: that size wherever
 * alignment and the remaining size allow it, smaller pieces elsewhere. A
 * forced size the domain does not allow is capped to the largest allowed one
 * (so the truth never disagrees with a walk; hostile tests write PS entries
 * with gs_write_pte). Present leaves in the way are replaced (a remap),
 * tables under a new large leaf are freed, a larger leaf partly covered is
 * split first, so only the range changes. Intermediate entries are R|W.
 * 0, -EINVAL (alignment, range beyond the width, perm, policy), -ENOMEM
 * (table area full: the part mapped so far stays, truth included).
 */
int gs_map(struct gs_domain *d, uint64_t iova, uint64_t gpa, uint64_t size, uint32_t perm,
	   uint64_t policy);
/* Makes exactly [iova, iova+size) not present, splitting large leaves that
 * straddle its ends. Clearing what is not present is a no-op. 0, -EINVAL, -ENOMEM. */
int gs_unmap(struct gs_domain *d, uint64_t iova, uint64_t size);

/* ---- truth (independent of the tables) ---- */

/* The GPA iova maps to (page offset kept) and its perm; false when unmapped. */
bool gs_truth_lookup(const struct gs_domain *d, uint64_t iova, uint64_t *gpa, uint32_t *perm);
/* Every mapped 4 KiB page, in ascending IOVA order (sorts the 2 MiB blocks
 * of the truth: test use). cb must not edit d. */
void gs_truth_for_each(const struct gs_domain *d,
		       void (*cb)(void *arg, uint64_t iova, uint64_t gpa, uint32_t perm), void *arg);
uint64_t gs_truth_pages(const struct gs_domain *d);
/* The IOVA ranges map/unmap touched since the last call, sorted and coalesced
 * (adjacent ranges merge), then forgotten. */
void gs_take_dirty(struct gs_domain *d, void (*cb)(void *arg, uint64_t iova, uint64_t size),
		   void *arg);
/* Walks the real table (vtd_walk over the whole width, through gs_guest_ram)
 * and compares it with the truth page by page. Returns the number of
 * differing pages (error spans, wrong or extra pages, missing pages; 0 =
 * agree), printing the first few. No RCU read lock needed: gs's guest_ram
 * never changes after it is built, so nothing is ever retired under it. */
uint64_t gs_truth_check(struct gs_domain *d);
/* The same through another guest_ram (NULL: gs_guest_ram); the caller must
 * not race that guest_ram's writers. */
uint64_t gs_truth_check_ram(struct gs_domain *d, const struct guest_ram *ram);

/* ---- raw access, for hostile tables ---- */

/* Relaxed 8-byte store/load at gpa. The store returns 0, -EINVAL (not 8 byte
 * aligned) or -EFAULT (in a hole); the load returns 0 there. */
int gs_write_pte(struct guestsim *gs, uint64_t gpa, uint64_t value);
uint64_t gs_read_pte(const struct guestsim *gs, uint64_t gpa);
/* GPA of the entry translating iova at `level` (1 PTE .. 5 PML5E; the root's
 * level is the domain's top), following present table pointers; 0 when the
 * path ends earlier (not present, a large leaf, a pointer outside RAM). */
uint64_t gs_pte_gpa(const struct gs_domain *d, uint64_t iova, unsigned level);

/* ---- deterministic PRNG (splitmix64) ---- */

static inline uint64_t gs_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform-ish in [0, n); 0 when n is 0. */
static inline uint64_t gs_rand_below(uint64_t *state, uint64_t n)
{
	return n ? gs_rand(state) % n : 0;
}

#endif
