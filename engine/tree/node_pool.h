/* SPDX-License-Identifier: MIT */
/*
 * Where shadow-tree nodes go after their grace period (engine/tree only):
 * back to the thread that retired them, for its next allocations, instead
 * of jemalloc's free on liburcu's call_rcu thread and a malloc on the
 * writer. Measured reasons (ARCHITECTURE.md, "Retired nodes reused"): the
 * call_rcu thread's frees were ~70% of the engine's deferred work on
 * strict-dma (frees on a thread that did not allocate the nodes flush
 * jemalloc's thread cache into the arena bins under their lock, and the
 * writer then refills its cache from those bins under the same lock).
 *
 * A writer retires unlinked nodes into a batch it owns (the tree's current
 * batch, npool_batch_new); a full or flushed batch goes to one call_rcu,
 * whose callback hands it back to its owner thread (a lock-free push)
 * while the owner holds fewer than its allowance of nodes, else frees it
 * as before. The owner takes everything handed back when an allocation
 * finds its class empty, and keeps their pointers in one array per size
 * class (no node line touched until its reuse); a take first frees what
 * the previous one brought and the thread did not use (sizes it does not
 * allocate now), so a pool holds about one grace period's retirements.
 *
 * Bounded and counted: a thread holds at most its allowance of nodes
 * handed back or pooled, plus one batch a callback may push past it. The
 * allowance starts at NPOOL_HOLD_MIN nodes and doubles, up to
 * NPOOL_HOLD_CEIL, each time the thread finds no node of the size it wants
 * after a callback freed a batch for want of room (the thread needed what
 * was freed; liburcu's call_rcu thread returns ~10 ms of retirements at
 * once: strict-dma's writer settles at 2048 nodes, ~600 KB).
 * A thread that retires without allocating (a DSI emptying a domain)
 * never runs dry and keeps NPOOL_HOLD_MIN. All threads together hold at
 * most NPOOL_GLOBAL_CEIL (16 MiB, a callback frees its batch past it): a
 * VMM's vCPU threads each drain and write trees, and 64 of them at their
 * ceiling would otherwise hold 128 MiB. The bytes held, process-wide,
 * are iovt_stats::node_pool_bytes (npool_held_bytes): exact at any quiet
 * moment, never counted in a tree's shadow_bytes (the class arrays, 8
 * bytes a pooled node, are not counted).
 *
 * Lifetimes: an owner lives until its thread exits and every batch it owns
 * has come back (a reference per batch not yet done); its thread's exit
 * frees the pooled nodes, a batch coming back after it is freed. The pool
 * never writes a node; under ASan a node is poisoned from its return to
 * its reuse, so a reader that kept one past its section still trips.
 *
 * Fault injection: while iovt_alloc_fault is set the pool hands out no
 * node and no spare batch: each comes from iovt_alloc, which asks the
 * hook once, so the fault tests fail the same allocations as without it.
 *
 * Synchronization:
 *   npool_init          once, before anything else (the tree's pthread_once)
 *   npool_get           any thread; its own pool; no lock; one relaxed RMW (the count)
 *   npool_batch_new     any thread; the batch is owned by the caller's thread
 *   npool_batch_add     the batch's writer (the tree's, serialised by the caller)
 *   npool_batch_flush   the batch's writer; one call_rcu
 *   npool_batch_free    nothing can read its nodes any more (a tree's teardown)
 *   npool_held_bytes    any thread; one relaxed load
 */
#ifndef IOVT_TREE_NODE_POOL_H
#define IOVT_TREE_NODE_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "common/rcu.h"

#define NPOOL_CLASSES 18   /* node size classes: the tree's leaf capacities 0..15, two internal sizes */
#define NPOOL_BATCH 52     /* nodes per batch: 504 bytes with its classes (jemalloc's 512 class) */
#define NPOOL_HOLD_MIN 256u
#define NPOOL_HOLD_CEIL 4096u
#define NPOOL_GLOBAL_CEIL (16ull << 20) /* bytes, all threads */

struct npool_owner;

struct npool_batch {
	struct rcu_head rcu;
	struct npool_batch *next; /* on its owner's back list */
	struct npool_owner *owner;
	uint32_t n;
	uint8_t cls[NPOOL_BATCH];
	void *p[NPOOL_BATCH];
};
_Static_assert(sizeof(struct npool_batch) <= 512, "a batch fits jemalloc's 512-byte class");

/* The bytes of each class (0 for a class never used). */
void npool_init(const size_t bytes[NPOOL_CLASSES]);

/* A node of class c the calling thread got back, or NULL (then the caller
 * allocates). Not zeroed. */
void *npool_get(unsigned c);

/* An empty batch owned by the calling thread; NULL: no memory. */
struct npool_batch *npool_batch_new(void);

/* A node of class c, unlinked (readers may still hold it); b has room. */
static inline void npool_batch_add(struct npool_batch *b, void *node, unsigned c)
{
	b->cls[b->n] = (uint8_t)c;
	b->p[b->n++] = node;
}

/* After a grace period: b's nodes back to its owner, or freed; b too. */
void npool_batch_flush(struct npool_batch *b);

/* Frees b and its nodes now (no reader can hold them). */
void npool_batch_free(struct npool_batch *b);

/* Bytes of nodes held for reuse, all threads (handed back or pooled). */
uint64_t npool_held_bytes(void);

/* The calling thread's allowance in nodes (tests): 0 before its first batch. */
unsigned npool_test_allowance(void);

/* Sets the all-threads bound in bytes (tests; 0: back to NPOOL_GLOBAL_CEIL). */
void npool_test_global_ceiling(uint64_t bytes);

/* Tests: when set, called by a callback that hands a batch back (its
 * thread alive, room for it), just before the push. */
extern void (*npool_test_before_push)(void);

#endif
