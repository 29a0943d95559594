/* SPDX-License-Identifier: MIT */
/*
 * Where the IOTLB's entry lines come from and go to (engine/iotlb only).
 * An entry is one 64-byte, 64-aligned line that RCU readers may still hold
 * after it is unlinked, so it is reused only after a grace period.
 *
 * A thread retires unlinked lines into its own batch; a full batch (512)
 * goes to one call_rcu, whose callback hands it back to that thread (a
 * lock-free push). The thread's next fills take their lines from the
 * batches it got back, before asking the allocator. So a miss that evicts
 * (the steady state of a full table) costs no allocator call, on either
 * side: perf on miss/engine had a quarter of the process's samples in
 * jemalloc, the filler refilling its thread cache from the bins that the
 * call_rcu thread kept freeing the same lines into under the bin lock
 * (pthread_mutex_trylock/unlock, arena_dalloc_small, mallocx, sdallocx).
 *
 * Bounded: a callback hands a batch back only while its thread holds
 * fewer than RECYCLE_HOLD_MAX (4) batches handed back and not taken yet;
 * past that it frees the batch's lines to the allocator, as before (a
 * thread that retires without filling, an invalidator's sweeps, keeps no
 * more). So a thread holds at most 2 x 4 batches of lines (those on its
 * list and those it took from it and has not reused yet: 256 KiB of
 * lines), plus the batch it fills and a spare. Few, too, because reused
 * lines are scattered: a table that grows fills its first entries from
 * them, and a scan in fill order (vhost/engine/pool:65536 in its plain
 * order) then reads those out of address order. A steady stream of misses
 * needs one or two: a batch normally comes back before the next one is
 * full. The lines are the process's (the default arena), not an engine's:
 * an engine's destroy frees the entries still in its tables; the lines its
 * threads retired earlier stay with those threads, bounded as above. A
 * thread that exits frees its partial batch after a grace period and the
 * lines it held; batches still in flight are freed by the last callback (a
 * reference per batch).
 *
 * Reused lines come back in the order they were retired (the eviction's,
 * so scattered), not the address order of jemalloc's slabs that the
 * hardware prefetcher follows: recycle_new prefetches the line it will
 * hand out 8 calls later (without it a miss cost 210 ns CPU against the
 * allocator's 145 in the same run; 1 call ahead was slower than the
 * allocator; 2, 4, 8 and 16 ahead about equal).
 *
 * Under ASan a line waiting for reuse is poisoned from its grace period's
 * end to its reuse, so a reader that kept one past its section still trips.
 *
 * Synchronization:
 *   recycle_new      any thread, read side or not; no lock
 *   recycle_room     any thread; no lock (may allocate the thread's batch)
 *   recycle_retire   read side, or the unlinking writer; call_rcu per 512
 *   recycle_free     a line never published (no reader can hold it)
 */
#ifndef IOVT_IOTLB_RECYCLE_H
#define IOVT_IOTLB_RECYCLE_H

#include <stdint.h>

#define RECYCLE_BATCH 512
#define RECYCLE_HOLD_MAX 4

struct recycle_batch;

/* A line: one the thread got back after a grace period, else a fresh one
 * from the engine's allocator. Not zeroed. NULL: no memory. */
void *recycle_new(void);

/* A line from recycle_new that no reader ever saw. */
void recycle_free(void *line);

/* The thread's batch with room for one more line; NULL: no memory (then
 * the caller must not unlink anything: it has nowhere to put it). */
struct recycle_batch *recycle_room(void);

/* An unlinked line (b from recycle_room, taken before the unlink): reused
 * or freed after a grace period. */
void recycle_retire(struct recycle_batch *b, void *line);

#endif
