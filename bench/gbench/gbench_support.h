/* SPDX-License-Identifier: MIT */
/*
 * C side of iovt-gbench: builds the worlds (guestsim guest + engine + a
 * counting callback sink) so that the C++ benchmark file needs only iovt.h
 * and this header. Also reaches the domain's shadow tree (engine-private
 * struct) for the concurrent-writer benchmarks.
 */
#ifndef IOVT_GBENCH_SUPPORT_H
#define IOVT_GBENCH_SUPPORT_H

#include <stdint.h>

#include "iovt.h"

#ifdef __cplusplus
extern "C" {
#endif

struct shadow_tree;
struct gb_world;

enum gb_layout {
	GB_SPARSE_8K,   /* leaf i: iova BASE + i*8 KiB (a gap after each: n extents) */
	GB_CONTIG,      /* leaf i: iova BASE + i*4 KiB -> gpa i*4 KiB (merges into few extents) */
	GB_SCATTER_GPA, /* leaf i: iova BASE + i*4 KiB -> a shuffled gpa (n extents) */
};

#define GB_IOVA_BASE (1ull << 32)
/* Where the background writers insert/remove: far from the guest's leaves. */
#define GB_WRITER_BASE (1ull << 40)

/* A guest domain with n 4 KiB leaves (forced 4 KiB PTEs), an engine, one
 * MAP|UNMAP notifier (replayed at attach). NULL on failure (message printed). */
struct gb_world *gb_world_create(uint64_t n, enum gb_layout layout);
void gb_world_destroy(struct gb_world *w);
struct iovt_engine *gb_engine(struct gb_world *w);
struct iovt_domain *gb_domain(struct gb_world *w);
uint16_t gb_did(struct gb_world *w);
uint64_t gb_leaf_iova(struct gb_world *w, uint64_t i);
/* Sink calls seen since the world was created (replay included). */
uint64_t gb_sink_calls(struct gb_world *w);

/* Adds an empty guest domain with this DID to w's engine (its own VT-d root,
 * one MAP|UNMAP notifier on the counting sink). 0, or -1 (message printed). */
int gb_world_add_domain(struct gb_world *w, uint16_t did);

/* Guest table edits in w's first domain (4 KiB leaves): the guest's side of
 * a map/unmap; the caller invalidates and waits. Not thread-safe: one
 * writer thread at a time. 0 or a guestsim error. */
int gb_guest_map(struct gb_world *w, uint64_t iova, uint64_t gpa, uint64_t size);
int gb_guest_unmap(struct gb_world *w, uint64_t iova, uint64_t size);

/* Raw access to a queue's intake ring (the backend alone: no item checks, no
 * drain): push n (<= 32) placeholder items / pop up to max (<= 32). Returns
 * how many moved. Only for queues whose items nobody drains. */
unsigned gb_ring_push(struct iovt_queue *q, unsigned n);
unsigned gb_ring_pop(struct iovt_queue *q, unsigned max);

/* For comparison with the wfcq backend's chunks: liburcu's wfcqueue used the
 * textbook way, one node per item (malloc by the producer, free by the
 * consumer), bounded at 4096 items like a default queue. One producer, one
 * consumer. Same push/pop contract as gb_ring_push/pop. */
struct gb_node_queue;
struct gb_node_queue *gb_node_queue_create(void);
unsigned gb_node_queue_push(struct gb_node_queue *q, unsigned n);
unsigned gb_node_queue_pop(struct gb_node_queue *q, unsigned max);

/* The domain's shadow tree (NULL without a MAP notifier). */
struct shadow_tree *gb_domain_tree(struct iovt_domain *d);

/* RCU read side for raw shadow_tree_lookup. */
void gb_rcu_read_lock(void);
void gb_rcu_read_unlock(void);

#ifdef __cplusplus
}
#endif

#endif
