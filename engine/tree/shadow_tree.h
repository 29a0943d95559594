/* SPDX-License-Identifier: MIT */
/*
 * The shadow tree: one per domain, the extents the engine has told the
 * domain's MAP sink, keyed by IOVA. Knows nothing of VT-d, sinks or queues.
 *
 * Layout: a B+-tree of extents (ARCHITECTURE.md, "The shadow tree"). Leaves
 * hold up to 15 extents inline (32 bytes each) plus one 64-bit order word
 * (which slots are live, in IOVA order); internal nodes hold up to 31
 * children and their pivots (256 bytes up to 15 children, else 512). Every
 * node covers an IOVA range given by its ancestors' pivots, and every
 * extent lies wholly inside the range of its leaf, so a lookup descends to
 * one leaf and searches it alone.
 *
 * Concurrency: readers (lookup, iterate under rcu) never lock and never
 * retry: an internal node's pivots are immutable once published
 * (copy-on-write; a child slot changes only by one release store of a fully
 * built node), and a leaf changes in place only by writing an extent into a
 * slot no reader can yet reach and then storing its new order word (one
 * release store). A replaced or emptied node is retired: it joins the
 * tree's batch, handed by ONE call_rcu per batch (shadow_tree_flush, or
 * automatically when the batch is full) back to the thread that started
 * the batch, whose next node allocations reuse it (node_pool.h; freed
 * instead past that thread's bounded allowance).
 *
 * Writers: ONE at a time per tree. insert, remove_range and flush must be
 * serialised by the caller; the engine's writer is the domain's sync_lock
 * holder (ARCHITECTURE.md, "Threads, locks and RCU"). The tree takes no lock.
 * The writer must be a registered liburcu reader thread, as every engine
 * thread that syncs is: a removal reads the lookup cache's table inside a
 * read-side section (lookup_cache.h), and a fill on a reader thread may
 * replace and retire that table meanwhile; an unregistered thread's section
 * is not one a grace period waits for.
 *
 * Linearisation for readers: an extent is visible from the release store
 * that adds it to its leaf's order word (or publishes the copy of the leaf
 * that holds it) until the store that drops it; its record lives until a
 * grace period after its leaf is retired. A lookup that races an insert
 * may miss the new extent; a present extent is never missed.
 */
#ifndef IOVT_TREE_SHADOW_TREE_H
#define IOVT_TREE_SHADOW_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iovt.h" /* struct iovt_extent */

struct shadow_tree;

/*
 * Creates an empty tree for IOVAs below 2^addr_width (any value 21..63).
 * An empty tree holds no node. Returns NULL on ENOMEM or a bad width.
 */
struct shadow_tree *shadow_tree_create(unsigned addr_width);

/* Frees the tree and its extents. No concurrent users; waits one grace
 * period so that readers of the last removals have finished. Never call it
 * holding a lock a reader or drainer may wait for (use _retire). */
void shadow_tree_destroy(struct shadow_tree *t);

/* Frees the tree and its extents after a grace period (call_rcu), without
 * waiting: the tree must already be unreachable for new readers (its
 * published pointer cleared) and have no writer left. Any thread, any lock. */
void shadow_tree_retire(struct shadow_tree *t);

/* An extent's size is below this (a record holds a 32-bit page count). */
#define SHADOW_TREE_MAX_SIZE (1ull << 44)

/*
 * Inserts one extent. iova and size must be 4 KiB aligned, size > 0 and
 * < SHADOW_TREE_MAX_SIZE, iova+size within the width. Any overlap with an existing extent
 * is an error (-EEXIST) and changes no extent. -EINVAL on a bad extent;
 * -ENOMEM when a node cannot be allocated (no extent changes). Either may
 * leave the tree reshaped, valid (a leaf boundary moved, an empty leaf
 * unlinked), and an overlap found only past such a step is -ENOMEM when
 * that step could not be afforded (found by review; the engine inserts
 * only where nothing is recorded, and retries on either).
 * Writer-side (one writer at a time, see above).
 */
int shadow_tree_insert(struct shadow_tree *t, const struct iovt_extent *e);

/* Visitor: return 0 to go on, nonzero to stop (that value is returned). */
typedef int (*shadow_visit_fn)(void *arg, const struct iovt_extent *e);

/*
 * Removes every extent that overlaps [first, last] (inclusive), whole:
 * an extent is never split. Calls `removed` (may be NULL) once for each in
 * ascending IOVA order, after it is unlinked (the copy stays valid for the
 * call; the visitor must not write the tree, nor call the writer's
 * lookup_w/iterate_w: they move the finger the removal is holding). Returns the number removed,
 * or -EINVAL (first > last). Never fails for memory: emptied nodes it
 * cannot afford to restructure stay linked, empty and valid.
 * Writer-side.
 */
long shadow_tree_remove_range(struct shadow_tree *t, uint64_t first, uint64_t last,
			      shadow_visit_fn removed, void *arg);

/* shadow_tree_remove_range without a visitor, adding the pages of the
 * extents it removes to *pages. Writer-side. */
long shadow_tree_remove_count(struct shadow_tree *t, uint64_t first, uint64_t last,
			      uint64_t *pages);

/*
 * Hands the nodes retired since the last flush to one call_rcu (they are
 * freed after a grace period). Writer-side; cheap when nothing is pending.
 * The tree flushes by itself when a batch is full (52 nodes), so memory
 * stays bounded, and when it is retired or destroyed; the engine does not
 * flush per sync (a call_rcu every few 1-page fences cost 10-25%).
 */
void shadow_tree_flush(struct shadow_tree *t);

/*
 * Calls `fn` for each extent overlapping [first, last] in ascending IOVA
 * order, each once. Lock-free: the caller must be inside an RCU read-side
 * section (or be the writer); the result is then a set of extents each
 * present at some moment of the call, and every extent present during the
 * whole call is in it. Returns 0 or the visitor's nonzero value.
 */
int shadow_tree_iterate(const struct shadow_tree *t, uint64_t first, uint64_t last,
			shadow_visit_fn fn, void *arg);
/* shadow_tree_iterate for the tree's writer: through its finger (see
 * shadow_tree_lookup_w). The visitor must not write the tree. */
int shadow_tree_iterate_w(struct shadow_tree *t, uint64_t first, uint64_t last,
			  shadow_visit_fn fn, void *arg);

/*
 * The extents overlapping [first, last], in ascending IOVA order, copied
 * into out[0..] while they fit: returns their number, or max + 1 when there
 * are more than max (out then holds the first max). A small window's old
 * extents in one pass, without the lookups of its ends first (engine/sync/
 * sync.c, sync_small). Writer only (through the finger).
 */
size_t shadow_tree_collect_w(struct shadow_tree *t, uint64_t first, uint64_t last,
			     struct iovt_extent *out, size_t max);

/* Visitor of an extent that was not left out (*e valid during the call);
 * dropped_before: extents were left out between the last extent visited
 * (or the call's start) and this one. */
typedef int (*shadow_visit_unkept_fn)(void *arg, const struct iovt_extent *e, bool dropped_before);
/*
 * shadow_tree_iterate_w less the extents a run already holds: the sync's
 * gathering of a window's old extents (engine/sync/sync.c, push_old). runs
 * are sorted and disjoint; *ri is a cursor into them. An extent is left out
 * when the first run not ending at or before its start begins where it
 * begins and maps all of it as it says (GPA, HVA, permission, region); that
 * run then begins past it (its iova, gpa, hva advanced, its size reduced;
 * 0 when all of it was kept). The other extents go to fn, in order.
 * *dropped says whether extents were left out since the last one visited
 * (read at the start, updated at the end: the caller marks a trailing
 * stretch). Returns 0 or fn's nonzero value. Writer only (through the
 * finger); fn must not write the tree, nor read or write the runs (the one
 * being consumed is written back when the cursor leaves it or the call
 * returns).
 */
int shadow_tree_iterate_unkept_w(struct shadow_tree *t, uint64_t first, uint64_t last,
				 struct iovt_extent *runs, size_t nruns, size_t *ri, bool *dropped,
				 shadow_visit_unkept_fn fn, void *arg);

/*
 * Finds the extent covering `iova`. Lock-free, wait-free: per level one
 * binary search over at most 31 keys and one dependent load. Caller inside
 * an RCU read-side section (or the writer). Returns true and copies the
 * extent into *out on a hit.
 */
bool shadow_tree_lookup(const struct shadow_tree *t, uint64_t iova, struct iovt_extent *out);

/*
 * shadow_tree_lookup for the tree's writer (it must be the one writer, see
 * above): the same answer, descending through the writer's finger — the
 * path of its last descent, reused while the key stays inside that leaf's
 * range and no node was published since — so that the sync's lookups of a
 * window's ends and its updates that follow share one descent.
 */
bool shadow_tree_lookup_w(struct shadow_tree *t, uint64_t iova, struct iovt_extent *out);

/*
 * shadow_tree_lookup for iovt_translate: the same answer, through the
 * tree's lookup cache when the tree has three levels or more
 * (tree/lookup_cache.h: a hit reads one cache line; a miss descends and
 * fills it; max_slots bounds it, 64 bytes a slot). Lock-free; may allocate
 * on a miss (the cache's table) and queue one call_rcu when it grows.
 * Caller inside an RCU read-side section; not for the writer.
 */
bool shadow_tree_translate(struct shadow_tree *t, uint64_t iova, struct iovt_extent *out,
			   uint64_t max_slots);

/* Tests only: when set, translate never bypasses the cache (a window of
 * misses would otherwise send a test's checks to the plain descent). */
extern bool shadow_tree_test_no_bypass;
/* Tests only: when set, every descent through the writer's finger is
 * checked against a full descent from the root (abort on a difference). */
extern bool shadow_tree_test_check_finger;
/* Tests only: when set, every split inside a full leaf is made where the
 * insert lands (as a run's is), whatever the runs and the tree's bytes. */
extern bool shadow_tree_test_split_where;

/* Bytes of the lookup cache (its table; 0 until the tree has
 * three levels). Racy; caller in a read-side section (or quiescent). */
uint64_t shadow_tree_cache_bytes(struct shadow_tree *t);

/* Number of extents, and bytes of memory held (live nodes, as the
 * allocator rounds them; not the tree header nor nodes waiting for their
 * grace period). Racy snapshots outside the writer; exact when quiescent. */
uint64_t shadow_tree_count(const struct shadow_tree *t);
uint64_t shadow_tree_memory_bytes(const struct shadow_tree *t);

/* Bytes of retired nodes all threads hold for reuse (node_pool.h), in no
 * tree's memory. Any thread; lock-free. */
uint64_t shadow_tree_pool_bytes(void);

/* Height (0: no node, 1: one leaf) and nodes waiting in the unflushed batch:
 * for tests and benchmarks. Writer-side or quiescent. */
unsigned shadow_tree_height(const struct shadow_tree *t);
unsigned shadow_tree_pending_retired(const struct shadow_tree *t);

/* Checks every structural rule (leaves at one depth, extents sorted and
 * inside their leaf's range, pivots ordered, counts and bytes exact).
 * 0 when all hold; -7 when the only fault is an empty non-root leaf (left
 * by an ENOMEM, valid); another negative code names the broken rule. For
 * tests; writer-side or quiescent. */
int shadow_tree_verify(const struct shadow_tree *t);

#endif
