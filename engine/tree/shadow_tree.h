/* SPDX-License-Identifier: MIT */
/*
 * The shadow tree: one per domain, the extents the engine has told the
 * domain's MAP sink, keyed by IOVA. Knows nothing of VT-d, sinks or queues.
 *
 * Layout: a radix table over the domain's IOVA width (9 bits a level, 4 KiB
 * granule, like a VT-d table itself). A slot holds NULL, a pointer to a
 * lower table, or a pointer to the extent that covers the whole span of the
 * slot (tag bit 0). An extent is written into the fewest slots that cover it
 * exactly (largest aligned spans first), so a 2 MiB-aligned 2 MiB extent is
 * one level-2 slot and translate stops there.
 *
 * Concurrency: readers (translate, iterate under rcu) never lock. Writers
 * take the shard locks covering the extent's span: shard = 1 GiB region of
 * IOVA hashed onto IOVT_TREE_SHARDS stripes; an extent spanning several
 * regions takes their stripes in ascending order. Tables at or below the
 * 1 GiB level belong to one shard; tables above are installed by cmpxchg
 * and never freed before the tree.
 *
 * Linearisation for readers: an extent is visible at an address from the
 * moment its slot there is published until it is cleared; its memory lives
 * until a grace period after the last slot is cleared (call_rcu).
 */
#ifndef IOVT_TREE_SHADOW_TREE_H
#define IOVT_TREE_SHADOW_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iovt.h" /* struct iovt_extent */

#define IOVT_TREE_SHARDS 64u

struct shadow_tree;

/*
 * Creates an empty tree for IOVAs below 2^addr_width (addr_width 39, 48 or
 * 57 in practice; any value 21..64 works: levels = ceil((aw-12)/9)).
 * Returns NULL on ENOMEM or a bad width.
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

/*
 * Inserts one extent. iova and size must be 4 KiB aligned, size > 0 and
 * iova+size within the width. Any overlap with an existing extent is an
 * error (-EEXIST) and changes nothing. -EINVAL on a bad extent, -ENOMEM.
 * Writer-side: takes the shard locks of the extent's span.
 */
int shadow_tree_insert(struct shadow_tree *t, const struct iovt_extent *e);

/* Visitor: return 0 to go on, nonzero to stop (that value is returned). */
typedef int (*shadow_visit_fn)(void *arg, const struct iovt_extent *e);

/*
 * Removes every extent that overlaps [first, last] (inclusive), whole:
 * an extent is never split. Calls `removed` (may be NULL) once for each in
 * ascending IOVA order, after it is unlinked (the copy stays valid for the
 * call). Returns the number removed, or a negative errno.
 */
long shadow_tree_remove_range(struct shadow_tree *t, uint64_t first, uint64_t last,
			      shadow_visit_fn removed, void *arg);

/*
 * Calls `fn` for each extent overlapping [first, last] in ascending IOVA
 * order. Lock-free: the caller must be inside an RCU read-side section (or
 * be the only writer); the result is then a set of extents each present at
 * some moment of the call. Returns 0 or the visitor's nonzero value.
 */
int shadow_tree_iterate(const struct shadow_tree *t, uint64_t first, uint64_t last,
			shadow_visit_fn fn, void *arg);

/*
 * Finds the extent covering `iova`. Lock-free, wait-free: a few dependent
 * loads. Caller inside an RCU read-side section. Returns true and copies the
 * extent into *out on a hit.
 */
bool shadow_tree_lookup(const struct shadow_tree *t, uint64_t iova, struct iovt_extent *out);

/* Number of extents, and bytes of memory held (tables + extents). Racy
 * snapshots without the locks; exact when quiescent. */
uint64_t shadow_tree_count(const struct shadow_tree *t);
uint64_t shadow_tree_memory_bytes(const struct shadow_tree *t);

#endif
