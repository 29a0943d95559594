/* SPDX-License-Identifier: MIT */
/*
 * The synchronisation stages for one domain with a MAP sink:
 *
 *   ranges (coalesced) ─► windows (grown to whole extents, merged)
 *     ─► guest view: walk each window, leaves → runs        (guest_view.c)
 *     ─► diff: runs vs shadow extents → plan of calls        (diff.c)
 *     ─► apply: UNMAPs, then MAPs; tree follows each success (apply.c)
 *
 * A "run" is a maximal stretch of the guest view that one sink MAP could
 * carry: IOVA-contiguous, host-contiguous, one permission, one RAM region.
 * The plan is the stable minimum (see iovt_model.h's oracle): an extent whose
 * every page still maps the same is kept; every other extent in a window is
 * removed whole; removed extents with no kept extent between them share one
 * UNMAP when the sink allows; each run minus the kept extents is one MAP per
 * piece.
 *
 * Single writer: the caller holds the domain's sync_lock, so the tree is
 * read here without an RCU read-side section (only this thread changes it).
 */
#ifndef IOVT_SYNC_SYNC_H
#define IOVT_SYNC_SYNC_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "iovt.h"
#include "common/vec.h"
#include "guest/guest_ram.h"
#include "guest/vtd_walk.h"
#include "sync/coalesce.h"
#include "tree/shadow_tree.h"

struct sync_stats {
	uint64_t windows;
	uint64_t ptes;
	uint64_t map_calls, unmap_calls;
	uint64_t pages_mapped, pages_unmapped;
	uint64_t errors[IOVT_ERR_KIND_COUNT];
};

/* Everything the stages need to know about one domain and its sink. */
struct sync_target {
	const struct guest_ram *ram;
	struct shadow_tree *tree;
	const struct iovt_sink *sink;
	struct vtd_walk_params walk; /* root, widths, page sizes, budget; range set per window */
	/* Entries this sync's earlier passes read (sync_entry.c: a second pass
	 * gets what the first left). walk.budget stays the whole budget: a
	 * window the budget cuts short is retried unless its walk had all of
	 * it (guest_view_runs). */
	uint64_t walk_spent;
	/* Windows the previous sync retried for a cut (cut_before: cut again,
	 * they are synced up to the cut and only the rest is retried,
	 * GUEST_VIEW_REST, so that a window cannot be retried whole at every
	 * fence behind the guest's other windows, never synced, each fence
	 * reading the whole budget) and where this sync records its own (cut_now, which
	 * also keeps the mark of a cut_before window it did not reach). NULL:
	 * none (a one-window sync: its walk has the whole budget). */
	const struct range_set *cut_before;
	struct range_set *cut_now;
	uint64_t max_extents;
	/* Spans a MAP was not sent for because of the extent cap (retried only
	 * when the cap has room); NULL: with the other failures in `retry`. */
	struct range_set *capped;
};

/* Span of earlier failures a sync retries beyond what it was asked (pages;
 * engine/domain/sync_entry.c). A window longer than this that the walk
 * budget cuts short is the walk's error, not retried (guest_view.c): the
 * retry set would hand it back 2^16 pages a sync, up to 2^20 syncs. */
#define IOVT_RETRY_BUDGET_PAGES (1ull << 16)

struct plan_unmap {
	uint64_t first, last; /* inclusive; begins and ends on extent boundaries */
	uint64_t pages;
};

/* Scratch vectors reused from fence to fence (one set per engine). */
struct sync_scratch {
	VEC(struct range) windows;
	VEC(struct iovt_extent) runs;
	VEC(struct iovt_extent) old;
	VEC(struct plan_unmap) unmaps;
	VEC(struct iovt_extent) maps;
	/* A drainer's sync statistics, zero between syncs: domain_fold_stats
	 * clears what it folds (a 144-byte `= { 0 }` per sync was a rep stos,
	 * 4% of a one-page fence). A zeroed scratch starts it zero. */
	struct sync_stats st;
	/* push_old's state over one window (sync.c): the run it compares with,
	 * and whether extents it left out await their marker in old[]. */
	size_t old_ri;
	bool old_dropped;
	/* build_windows, one range: 1 — the one window is extent one_ext, 0 —
	 * it is one page holding no extent, -1 — unknown (iterate the tree). */
	int one_old;
	struct iovt_extent one_ext;
	/* Page-table entries this sync may still read, across all its
	 * windows (UINT64_MAX: no bound): the walk budget is the sync's, not
	 * each window's (sync_ranges). */
	uint64_t walk_left;
	/* GUEST_VIEW_REST's part of the window not read, for the retry set. */
	struct range rest;
};

void sync_scratch_free(struct sync_scratch *s);
/* Frees the vectors one sync grew past what a scratch keeps between syncs
 * (sync_ranges does it at its end; a caller that fills them itself too). */
void sync_scratch_trim(struct sync_scratch *s);

/* Tests only (single-threaded ones: the counts are plain adds): when set,
 * sync.c's small path counts its plans by way — [0] nothing recorded in
 * the window, [1] nothing mapped in it, [2] the diff — so that a test can
 * show each way ran. */
extern bool sync_test_count_small;
extern uint64_t sync_test_small[3];

/*
 * Makes the sink and the shadow tree equal to the guest view over `ranges`
 * (sorted, disjoint). Spans whose calls failed are added to `retry`.
 * Returns 0 or the first error (walk errors: -EFAULT, -ELOOP, -E2BIG;
 * sink errors as the sink returned them; -ENOMEM).
 */
int sync_ranges(const struct sync_target *t, const struct range *ranges, size_t n,
		struct sync_scratch *s, struct sync_stats *st, struct range_set *retry);

/* Tells the sink to drop every extent of the record (detach, domain
 * destroy), allocating nothing while it accepts. The record itself is left
 * as it is: the caller has unpublished it and retires it. Returns 0 or the
 * first sink error. The extents the sink refused go into *kept, a tree
 * made at the first (NULL: none refused; never published: the caller owns
 * it). When one of them finds no room there (no memory), nothing more is
 * asked: *stopped, and the sink holds exactly *kept plus every extent of
 * the record from IOVA *from on (that one included). */
int sync_unmap_everything(const struct sync_target *t, struct sync_stats *st,
			  struct shadow_tree **kept, bool *stopped, uint64_t *from);

/* Stage entry points (used by sync_ranges and by unit tests). */

/* Appends the runs of the guest view over [first, last] to s->runs. Both
 * walks read at most s->walk_left entries and take what they read from it.
 * A budget error (counted, -E2BIG in *walk_err) with earlier walks of the
 * sync having spent part of the budget — none left for this window, or it
 * ran out inside it — returns GUEST_VIEW_SKIPPED: nothing of the window is
 * kept, and the caller keeps its record and retries it (a span taken from
 * the retry or capped sets, or the guest's own window, is not lost to what
 * other windows read). Only a window whose walk had the whole budget and
 * still ran out is the walk's error: what it read is synced, the rest is
 * unmapped until the guest invalidates it again (a table too large or
 * hostile for one sync must not cost every later fence its budget), and so
 * is one longer than IOVT_RETRY_BUDGET_PAGES. One the previous sync had
 * already retried for a cut (cut_before) and cut again returns
 * GUEST_VIEW_REST: its runs up to the cut are kept (synced: the rest of its
 * record is unmapped) and the caller retries s->rest, the part not read. */
#define GUEST_VIEW_SKIPPED 2
#define GUEST_VIEW_REST 3
int guest_view_runs(const struct sync_target *t, uint64_t first, uint64_t last,
		    struct sync_scratch *s, struct sync_stats *st, int *walk_err);

/*
 * The guest view over the one page at `iova` (page aligned): 1 and *run set
 * when a leaf maps it into guest RAM, 0 when it is not mapped (or the walk
 * failed: counted in st, the first error in *walk_err as guest_view_runs),
 * GUEST_VIEW_SKIPPED or GUEST_VIEW_REST (nothing of the page read: it is
 * not mapped, and retried) as guest_view_runs.
 */
int guest_view_page(const struct sync_target *t, uint64_t iova, struct iovt_extent *run,
		    struct sync_scratch *s, struct sync_stats *st, int *walk_err);

static inline uint64_t extent_end(const struct iovt_extent *e)
{
	return e->iova + e->size;
}

/* Does run r still map every page of extent o exactly as o says? */
static inline bool still_mapped(const struct iovt_extent *r, const struct iovt_extent *o)
{
	uint64_t off = o->iova - r->iova;
	return r->iova <= o->iova && extent_end(o) <= extent_end(r) && r->hva + off == o->hva &&
	       r->gpa + off == o->gpa && r->perm == o->perm && r->region == o->region;
}

/*
 * Runs break at every multiple of RUN_BREAK: the record cannot hold an
 * extent of SHADOW_TREE_MAX_SIZE (16 TiB) or more, and a guest that maps a
 * 16 TiB region contiguously (1 GiB leaves) built a run the record refused
 * on every fence, never sent, uncounted (found by review). At a fixed IOVA,
 * not after a length: every walk of the same mapping breaks it at the same
 * place, so the extents recorded from one walk are kept by the next (a run
 * begins at each). Leaves never cross it (a leaf, or a merged run of 4 KiB
 * entries, lies inside one table's 1 GiB), so only the extension checks.
 */
#define RUN_BREAK (SHADOW_TREE_MAX_SIZE >> 1)

/* An UNMAP's result with a success that removed less than `recorded` bytes,
 * from a sink that says exactly what it removed (IOVT_SINK_EXACT_UNMAPPED:
 * type1 before Linux 6.3 stops at another process's mapping and answers 0;
 * found by review), turned into a failure. Every UNMAP of a MAP sink. */
static inline int short_success(const struct iovt_sink *sink, int rc, uint64_t done,
				uint64_t recorded)
{
	if (__builtin_expect(!rc && done < recorded && (sink->caps.flags & IOVT_SINK_EXACT_UNMAPPED), 0))
		return -EBUSY;
	return rc;
}

/* Can `b` extend run `a` as one sink mapping? */
static inline bool run_continues(const struct iovt_extent *a, const struct iovt_extent *b)
{
	return a->iova + a->size == b->iova && a->hva + a->size == b->hva &&
	       a->gpa + a->size == b->gpa && a->perm == b->perm && a->region == b->region &&
	       (b->iova & (RUN_BREAK - 1));
}

/*
 * Diff of one window: old extents s->old[old_from..] against s->runs[run_from..]
 * (both sorted, covering the window); appends UNMAP groups and MAP pieces.
 * An old extent of size 0 is a marker: unchanged extents were left out
 * there (push_old), so no UNMAP group spans it; nothing else of it is read. A run of size 0 maps
 * nothing (its extent was one of those).
 * *group_open says whether the last UNMAP group may still grow (no kept
 * extent since); updated on return.
 */
int diff_window(struct sync_scratch *s, size_t old_from, size_t run_from, bool multi_unmap,
		bool *group_open);

/* The last IOVA of the target's domain (its address width). */
static inline uint64_t target_top(const struct sync_target *t)
{
	return t->walk.addr_width >= 64 ? UINT64_MAX : (1ull << t->walk.addr_width) - 1;
}

/*
 * One extent's UNMAP alone, after a failed call over it may already have
 * removed it (apply.c's resolve_group, sync_unmap_everything). Counts the
 * call, and a refusal. Returns 0 (removed now: also a failed call that
 * says it removed all of it, from a sink that counts on failure), 1
 * (already gone: -ENOENT from a sink with IOVT_SINK_UNMAP_EMPTY_ERR) or the
 * refusal; *done: the bytes the sink says it removed.
 */
int unmap_alone(const struct iovt_sink *sink, const struct iovt_extent *e, struct sync_stats *st,
		uint64_t *done);

/* Executes s->unmaps then s->maps against the sink, updating the tree. */
int apply_plan(const struct sync_target *t, struct sync_scratch *s, struct sync_stats *st,
	       struct range_set *retry);

#endif
