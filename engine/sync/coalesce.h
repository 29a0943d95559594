/* SPDX-License-Identifier: MIT */
/*
 * Coalescing: the pending invalidations of one domain as a set of disjoint,
 * sorted IOVA ranges (their union). A DSI (or a root change) sets `all`,
 * which subsumes every range. The set is bounded: past `max` ranges a new
 * range is merged with its nearest neighbour (the walk grows, the memory
 * does not), and the merge is counted.
 */
#ifndef IOVT_SYNC_COALESCE_H
#define IOVT_SYNC_COALESCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct range { uint64_t first, last; }; /* inclusive */

struct range_set {
	struct range *r;
	size_t n, cap, max;
	bool all;
	uint64_t forced_merges; /* ranges merged with a neighbour because of `max` */
};

void range_set_init(struct range_set *s, size_t max_ranges);
void range_set_free(struct range_set *s);
/* Adds [first, last], merging with overlapping or adjacent ranges. 0 or -ENOMEM
 * (then the set becomes `all`: an invalidation is never lost). */
int range_set_add(struct range_set *s, uint64_t first, uint64_t last);
void range_set_add_all(struct range_set *s);
static inline bool range_set_empty(const struct range_set *s) { return !s->all && s->n == 0; }
/* Removes [first, last] from the set (a set that is `all` stays all; a split
 * that finds no room keeps the range whole: never loses a span). */
void range_set_remove(struct range_set *s, uint64_t first, uint64_t last);
/* Splits the range that straddles addr into [first, addr-1] and [addr, last]
 * (the set then holds two touching ranges until the next add merges them).
 * 0, or -ENOMEM (nothing changed). Ignores `max`: one split is transient. */
int range_set_split_at(struct range_set *s, uint64_t addr);
/* Whether any of [first, last] is in the set (`all`: always). */
bool range_set_overlaps(const struct range_set *s, uint64_t first, uint64_t last);
/* Empties the set (keeps its memory). */
void range_set_clear(struct range_set *s);
/* Moves the contents of *from into *to (which must be empty); *from is emptied. */
void range_set_take(struct range_set *to, struct range_set *from);

#endif
