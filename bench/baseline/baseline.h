/* SPDX-License-Identifier: MIT */
/*
 * A QEMU-style baseline for iovt's storm benchmark: what QEMU's intel_iommu
 * does today with a VFIO-backed device (vtd_page_walk + the DMAMap IOVA tree
 * of each VTDAddressSpace), rebuilt on iovt's own VT-d walker so that the two
 * differ in policy only:
 *
 *  - one GLib GTree of DMAMap-like mappings per domain, under one pthread
 *    mutex (QEMU: as->iova_tree under the IOMMU lock);
 *  - every invalidation is processed when it is posted (QEMU handles a PSI or
 *    DSI synchronously in the invalidation queue handler): a walk of the
 *    invalidated range (DSI: the whole width, 0..2^aw-1);
 *  - one notification per page-table leaf, never merged: a leaf the tree
 *    already holds unchanged is skipped; otherwise each tree entry it
 *    overlaps is UNMAPped (one sink call each), then the leaf is MAPped (one
 *    sink call); every tree entry inside a non-present span is UNMAPped (one
 *    call each);
 *  - no coalescing, no deferred work: the fence (invalidation wait) is a
 *    no-op that only reports the first error met since the previous one.
 *
 * Kept correct where QEMU is not (QEMU would send a bisecting UNMAP, which
 * VFIO refuses): a tree entry is always removed whole, and the part of a
 * removed entry that lies outside the walked range is walked again
 * afterwards, so pages that stayed valid are mapped back. The sink therefore
 * ends equal to the guest view and never rejects a call (the world's judges
 * check both).
 *
 * Threads: every entry point takes the baseline's mutex; the guest_ram must
 * not be changed concurrently (the caller serialises RAM hot-plug).
 */
#ifndef IOVT_BENCH_BASELINE_H
#define IOVT_BENCH_BASELINE_H

#include <stdbool.h>
#include <stdint.h>

#include "iovt.h"

struct guest_ram;
struct baseline;

struct baseline_config {
	const struct guest_ram *ram; /* guest RAM (engine/guest/guest_ram.h) */
	uint64_t root_gpa;           /* second-level table root */
	unsigned addr_width;         /* 39, 48 or 57 */
	unsigned host_width;         /* HAW for reserved bits; 0: 48 (as iovt) */
	bool allow_2m, allow_1g;
	uint64_t walk_budget;        /* entries per walk; 0: 1<<24 (as iovt) */
	struct iovt_sink sink;       /* the MAP/UNMAP sink (copied; not destroyed) */
};

/* 0, -EINVAL, -ENOMEM. */
int baseline_create(const struct baseline_config *cfg, struct baseline **out);
/* Frees the tree; the sink is not called. */
void baseline_destroy(struct baseline *b);

/* PSI: the 2^am-page block containing addr, processed now. -EINVAL (am >
 * IOVT_PSI_MAX_AM, addr beyond the width; counted), else 0 (walk and sink
 * errors are kept for baseline_fence). */
int baseline_invalidate_psi(struct baseline *b, uint64_t addr, unsigned am);
/* DSI: the whole width, processed now. global: count it as (part of) a
 * global invalidation instead of a DSI (stats.global, not invalidations). */
int baseline_invalidate_dsi(struct baseline *b, bool global);
/* The invalidation wait: nothing to do. Returns the first error met since
 * the previous fence (-EFAULT, -ELOOP, -E2BIG, a sink error) and clears it. */
int baseline_fence(struct baseline *b);

/* Mutex + GTree lookup. 0 and *out, or -ENOENT. */
int baseline_translate(struct baseline *b, uint64_t iova, struct iovt_extent *out);

/* Counters in iovt's shape: ranges_coalesced = walks done (re-walks
 * included), extents = tree entries; fences = baseline_fence calls. */
void baseline_stats_get(struct baseline *b, struct iovt_stats *out);

/* Bytes the tree uses now: per entry the DMAMap's malloc chunk plus a GTree
 * node (40 B in GLib 2.74, 48 B as allocated). */
uint64_t baseline_tree_bytes(struct baseline *b);
/* The same per entry (a constant of the allocator). */
uint64_t baseline_bytes_per_extent(void);

#endif
