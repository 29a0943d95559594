/* SPDX-License-Identifier: MIT */
/*
 * tree-pool: retired shadow-tree nodes go back to the thread that retired
 * them after their grace period (engine/tree/node_pool.h), and what a
 * thread holds that way is bounded and counted:
 *   bound   a thread that retires thousands of nodes and allocates none (a
 *           DSI emptying a domain) holds at most its first allowance (plus
 *           one batch) once the callbacks ran, not everything it retired;
 *   reuse   its next allocations take those nodes (the bytes held drop);
 *   fault   while the allocation fault hook is set the pool hands nothing
 *           out: every node asks the hook, as the fault tests expect;
 *   growth  a thread that keeps running dry gets a larger allowance, never
 *           past the ceiling;
 *   exit    a thread's exit frees what it held (the count returns);
 *   orphan  a batch whose thread exited, flushed or destroyed by another
 *           thread: its nodes are freed, nothing is held for the dead
 *           thread (ASan: no leak, no use after free);
 *   global  all threads together hold at most the global bound, whatever
 *           a thread's own allowance would admit;
 *   late    a callback that found its thread alive and pushes after the
 *           thread's exit freed what it held (the exit raced it; a test
 *           hook orders the two): the batch is freed too, not kept on the
 *           dead thread's list until its last batch is done (found by
 *           review).
 * shadow_tree_pool_bytes() is iovt_stats::node_pool_bytes.
 */
#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdint.h>

#include "check.h"
#include "common/alloc.h"
#include "common/rcu.h"
#include "tree/node_pool.h"
#include "tree/shadow_tree.h"

CHECK_SEED_STORAGE;

#define K 0x1000ull
#define NODE_MAX 512u /* the largest node (an internal node of 31 children) */

/* n one-page extents, a page apart (no two touch). */
static void fill(struct shadow_tree *t, uint64_t base, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct iovt_extent e = { .iova = base + 2 * i * K, .size = K, .gpa = 2 * i * K,
					 .hva = 2 * i * K, .perm = 3, .region = 1 };
		CHECK_EQ(shadow_tree_insert(t, &e), 0);
	}
}

static void drain(struct shadow_tree *t)
{
	uint64_t pages = 0;
	CHECK(shadow_tree_remove_count(t, 0, (1ull << 48) - 1, &pages) >= 0);
	CHECK_EQ(shadow_tree_count(t), 0);
}

/* The callbacks of everything flushed so far have run. */
static void settle(void)
{
	urcu_memb_barrier();
}

struct job {
	struct shadow_tree *t;
	unsigned n;
	bool drain_one; /* retire without flushing, then exit */
	uint64_t held_mid, held_before;
};

static void *filler(void *arg)
{
	struct job *j = arg;
	iovt_thread_register();
	fill(j->t, 0, j->n);
	iovt_thread_unregister();
	return NULL;
}

/* A thread of its own: retires, gets its nodes back, exits. */
static void *churner(void *arg)
{
	struct job *j = arg;
	iovt_thread_register();
	struct shadow_tree *t = shadow_tree_create(48);
	CHECK(t);
	fill(t, 1ull << 40, j->n);
	drain(t);
	shadow_tree_flush(t);
	settle();
	j->held_mid = shadow_tree_pool_bytes();
	shadow_tree_destroy(t);
	iovt_thread_unregister();
	return NULL;
}

/* Leaves a batch it started in j->t, unflushed, and exits. */
static void *orphaner(void *arg)
{
	struct job *j = arg;
	iovt_thread_register();
	fill(j->t, 1ull << 41, j->n);
	uint64_t pages = 0;
	CHECK(shadow_tree_remove_count(j->t, 1ull << 41, (1ull << 41) + 2 * K * j->n, &pages) > 0);
	CHECK(shadow_tree_pending_retired(j->t) > 0);
	iovt_thread_unregister();
	return NULL;
}

/* late: the hooked callback waits for the main thread, which lets it go
 * once the batch's thread has exited. */
static sem_t late_in, late_go;
static void late_hook(void)
{
	npool_test_before_push = NULL; /* one callback */
	sem_post(&late_in);
	sem_wait(&late_go);
}

/* Flushes a batch of its own from j->t, leaves one unflushed in j->t2 (a
 * reference that keeps its owner), waits for the callback to be past its
 * alive check, exits. */
struct late_job {
	struct shadow_tree *t, *t2;
};
static void *late_thread(void *arg)
{
	struct late_job *j = arg;
	iovt_thread_register();
	fill(j->t, 0, 400);
	drain(j->t);
	shadow_tree_flush(j->t);
	fill(j->t2, 0, 40);
	CHECK(shadow_tree_pending_retired(j->t2) > 0);
	sem_wait(&late_in); /* a callback of this thread's is past its check */
	iovt_thread_unregister();
	return NULL;
}

/* Empties j->t (filled by another thread) here, then exits. */
static void *drainer(void *arg)
{
	struct job *j = arg;
	iovt_thread_register();
	drain(j->t);
	shadow_tree_flush(j->t);
	settle();
	j->held_mid = shadow_tree_pool_bytes();
	iovt_thread_unregister();
	return NULL;
}

static void run(void *(*fn)(void *), struct job *j)
{
	pthread_t th;
	CHECK_EQ(pthread_create(&th, NULL, fn, j), 0);
	CHECK_EQ(pthread_join(th, NULL), 0);
}

static unsigned hook_calls;
static bool count_only(size_t size)
{
	(void)size;
	hook_calls++;
	return false;
}

int main(void)
{
	check_pick_seed("tree-pool");
	iovt_thread_register();
	CHECK_EQ(npool_test_allowance(), 0); /* no batch started here yet */
	const uint64_t held0 = shadow_tree_pool_bytes();

	/* bound: built by another thread, emptied here: retired, and never
	 * allocated from the pool (the removal's few allocations, shrunk
	 * leaves and copied parents, go to the allocator while the fault
	 * hook is set, which fails none): this thread never runs dry, so
	 * its allowance stays the first one however often the callbacks run
	 * during the removal (a slow build). */
	struct shadow_tree *t = shadow_tree_create(48);
	CHECK(t);
	struct job j = { .t = t, .n = 60000 };
	run(filler, &j);
	settle(); /* the filler's own retirements (its splits) are done with */
	const uint64_t held_start = shadow_tree_pool_bytes();
	CHECK_EQ(held_start, held0); /* the filler exited: it holds nothing */
	const uint64_t tree_bytes = shadow_tree_memory_bytes(t);
	iovt_alloc_fault = count_only;
	drain(t);
	iovt_alloc_fault = NULL;
	shadow_tree_flush(t);
	settle();
	CHECK_EQ(npool_test_allowance(), NPOOL_HOLD_MIN);
	const uint64_t held = shadow_tree_pool_bytes() - held0;
	CHECK(held > 0);
	CHECK(held <= (uint64_t)(NPOOL_HOLD_MIN + NPOOL_BATCH) * NODE_MAX);
	CHECK(tree_bytes > 8 * held); /* what it retired was far more than it kept */

	/* reuse: the next allocations here take pooled nodes. */
	fill(t, 0, 200);
	const uint64_t held_after = shadow_tree_pool_bytes() - held0;
	CHECK(held_after < held);

	/* fault: with nodes pooled, a hook sees every allocation. The batch
	 * flushed and its callback run first: what this phase retires (a few
	 * dozen nodes) stays in the batch, so nothing comes back meanwhile. */
	shadow_tree_flush(t);
	settle();
	const uint64_t held_fault = shadow_tree_pool_bytes();
	hook_calls = 0;
	iovt_alloc_fault = count_only;
	fill(t, 1ull << 30, 200);
	iovt_alloc_fault = NULL;
	CHECK(hook_calls > 0);
	CHECK(shadow_tree_pending_retired(t) < NPOOL_BATCH);
	CHECK_EQ(shadow_tree_pool_bytes(), held_fault);

	/* growth: runs dry each round after callbacks dropped batches. */
	const unsigned allowance0 = npool_test_allowance();
	for (int round = 0; round < 6; round++) {
		drain(t);
		shadow_tree_flush(t);
		settle();
		fill(t, 0, 20000);
	}
	CHECK(npool_test_allowance() > allowance0);
	CHECK(npool_test_allowance() <= NPOOL_HOLD_CEIL);
	drain(t);
	shadow_tree_flush(t);
	settle();
	CHECK(shadow_tree_pool_bytes() - held0 <=
	      (uint64_t)(npool_test_allowance() + NPOOL_BATCH) * NODE_MAX);

	/* exit: another thread's pool goes with it. */
	const uint64_t before = shadow_tree_pool_bytes();
	struct job c = { .n = 5000 };
	run(churner, &c);
	CHECK(c.held_mid > before);
	CHECK_EQ(shadow_tree_pool_bytes(), before);

	/* orphan: a batch left by an exited thread, flushed here... */
	struct job o = { .t = t, .n = 3000 };
	run(orphaner, &o);
	shadow_tree_flush(t);
	settle();
	CHECK_EQ(shadow_tree_pool_bytes(), before);
	/* ...and one destroyed with its tree. */
	run(orphaner, &o);
	shadow_tree_destroy(t);
	CHECK_EQ(shadow_tree_pool_bytes(), before);

	/* global: a fresh thread's allowance (256 nodes, ~120 KiB of leaves)
	 * is more than the global bound lets it keep. */
	struct shadow_tree *g = shadow_tree_create(48);
	CHECK(g);
	struct job gj = { .t = g, .n = 20000 };
	run(filler, &gj);
	settle();
	const uint64_t base = shadow_tree_pool_bytes(), room = 40000;
	npool_test_global_ceiling(base + room);
	run(drainer, &gj);
	npool_test_global_ceiling(0);
	CHECK(gj.held_mid > base);            /* a batch fitted */
	CHECK(gj.held_mid <= base + room);    /* no more than the bound */
	CHECK_EQ(shadow_tree_pool_bytes(), base); /* and it went with the thread */
	shadow_tree_destroy(g);

	/* late: the thread exits between a callback's alive check and its push. */
	const uint64_t before_late = shadow_tree_pool_bytes();
	struct late_job lj = { shadow_tree_create(48), shadow_tree_create(48) };
	CHECK(lj.t && lj.t2);
	CHECK_EQ(sem_init(&late_in, 0, 0), 0);
	CHECK_EQ(sem_init(&late_go, 0, 0), 0);
	npool_test_before_push = late_hook;
	pthread_t lt;
	CHECK_EQ(pthread_create(&lt, NULL, late_thread, &lj), 0);
	CHECK_EQ(pthread_join(lt, NULL), 0); /* its exit freed what it held */
	sem_post(&late_go);                   /* then the callback pushes */
	settle();
	CHECK_EQ(shadow_tree_pool_bytes(), before_late); /* nothing held for a dead thread */
	shadow_tree_destroy(lj.t);
	shadow_tree_destroy(lj.t2); /* its last batch: the owner goes */
	CHECK_EQ(shadow_tree_pool_bytes(), before_late);

	iovt_thread_unregister();
	printf("tree-pool: held %llu of %llu bytes retired, allowance grew to %u\n",
	       (unsigned long long)held, (unsigned long long)tree_bytes, npool_test_allowance());
	return 0;
}
