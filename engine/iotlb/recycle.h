/* SPDX-License-Identifier: MIT */
/*
 * Where the IOTLB's entry lines come from and go to (engine/iotlb only).
 * An entry is one 64-byte, 64-aligned line that RCU readers may still hold
 * after it is unlinked, so it is reused only after a grace period.
 *
 * A thread retires unlinked lines into its own batch; a full batch (4096)
 * goes to one call_rcu, whose callback hands it back to that thread (a
 * lock-free push). 4096 lines, not 512 (until the twentieth session): a
 * strict-mode invalidator drops an entry or two per unmap+map, and each
 * call_rcu woke liburcu's call_rcu thread into a grace period, whose
 * membarrier interrupts every CPU running the process's threads: ~100 a
 * second at 50 k pairs/s, the call_rcu thread ~10% of a CPU on the 2-core
 * VM, and the translating threads beside it 7% slower (vhost/engine,
 * pool 256, 2 threads, paced invalidator, 5 alternating rounds: 182 ->
 * 195 M lookups/s). The lines a thread holds are bounded in the same
 * bytes as before (below); a batch being filled holds up to 256 KiB of
 * retired lines and its pointer array is 32 KiB.
 * The thread's next fills take their lines from the
 * batches it got back, before asking the allocator. So a miss that evicts
 * (the steady state of a full table) costs no allocator call, on either
 * side: perf on miss/engine had a quarter of the process's samples in
 * jemalloc, the filler refilling its thread cache from the bins that the
 * call_rcu thread kept freeing the same lines into under the bin lock
 * (pthread_mutex_trylock/unlock, arena_dalloc_small, mallocx, sdallocx).
 *
 * Bounded: a callback hands a batch back only while its thread holds
 * fewer than its allowance of batches handed back and not taken yet; past
 * that it frees the batch's lines to the allocator, as before. The
 * allowance starts at RECYCLE_HOLD_MIN (1) and doubles, up to
 * RECYCLE_HOLD_CEIL (64 batches: 16 MiB of lines), each time the thread
 * runs dry (a fill finds nothing handed back and asks the allocator) after
 * a callback had freed a batch for want of room: the thread needed what
 * was freed. liburcu's call_rcu thread runs callbacks every ~10 ms, so a
 * grace period hands back ~10 ms of the thread's retirements at once; a
 * steady stream of misses needs that many (~150,000 lines at 15 M misses/s:
 * with 2,048, 68% of fills fell back to the allocator). A thread that retires
 * without filling (an invalidator's sweeps) never runs dry and keeps 1. A
 * thread runs dry only after its fills used up every batch it held, so
 * each doubling follows fills of the whole allowance since the last
 * handback: 1 + 2 + ... + 32 batches (258 K fills) before it may hold
 * 64. That holds for a thread that both sweeps and fills too: its
 * sweeps' overflow counts as freed, but it grows only as fast as its fills
 * use up what came back. A thread that filled fast and went idle keeps up
 * to what it last needed until it exits. So a thread holds at most 2 x its
 * allowance of batches, 2 x the ceiling at most (those on its list and
 * those it took and has not reused yet), plus the batch it fills and a
 * spare. All threads together hold at most RECYCLE_GLOBAL_CEIL batches
 * handed back and not used up (64 MiB; a callback frees its batch past
 * it): a VMM's vhost and device threads each fill, and 16 of them at their
 * ceiling would hold 256 MiB. What is held is iovt_stats::iotlb_pool_bytes
 * (recycle_held_bytes). Reused lines are scattered: a table that
 * grows fills its first entries from them, and a scan in fill order
 * (vhost/engine/pool:65536 in its plain order) then reads those out of
 * address order. The lines are the process's (the default arena), not an
 * engine's: an engine's destroy frees the entries still in its tables; the
 * lines its threads retired earlier stay with those threads, bounded as
 * above. A thread that exits frees its partial batch after a grace period
 * and the lines it held; batches still in flight are freed by the last
 * callback (a reference per batch).
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
 *   recycle_retire   read side, or the unlinking writer; call_rcu per 4096
 *   recycle_free     a line never published (no reader can hold it)
 *   recycle_held_bytes      any thread; relaxed
 *   recycle_test_*          tests
 */
#ifndef IOVT_IOTLB_RECYCLE_H
#define IOVT_IOTLB_RECYCLE_H

#include <stdint.h>

#include "common/poison.h"

/* Sanitizer builds hand lines back 512 at a time, as before the twentieth
 * session: a line is poisoned only when its batch comes back, and short
 * tests retire fewer than 4096 lines a thread (the bounds below are in
 * batches, so they shrink with it there). */
#ifdef IOVT_ASAN
#define RECYCLE_BATCH 512
#else
#define RECYCLE_BATCH 4096      /* lines: 256 KiB; one call_rcu each */
#endif
#define RECYCLE_HOLD_MIN 1      /* batches */
#define RECYCLE_HOLD_CEIL 64    /* batches: 16 MiB of lines */
#define RECYCLE_GLOBAL_CEIL 256 /* batches, all threads: 64 MiB */

struct recycle_batch;

/* A line: one the thread got back after a grace period, else a fresh one
 * from the engine's allocator. Not zeroed. NULL: no memory. */
void *recycle_new(void);

/* A line from recycle_new that no reader ever saw. */
void recycle_free(void *line);

/* The thread's batch with room for one more line — one: a second line
 * needs a second call (a retire that fills the batch hands it over); NULL:
 * no memory (then the caller must not unlink anything: it has nowhere to
 * put it). */
struct recycle_batch *recycle_room(void);

/* An unlinked line (b from recycle_room, taken before the unlink): reused
 * or freed after a grace period. */
void recycle_retire(struct recycle_batch *b, void *line);

/* The calling thread's allowance of handed-back batches (tests): 0 before
 * its first recycle_room. */
unsigned recycle_test_allowance(void);

/* Bytes of lines handed back and not yet reused, all threads, counted to
 * the batch (a batch counts until its last line is reused: up to 256 KiB
 * over per thread). Any thread; one relaxed load. */
uint64_t recycle_held_bytes(void);

/* Sets the all-threads bound in batches (tests; 0: RECYCLE_GLOBAL_CEIL). */
void recycle_test_global_ceiling(unsigned batches);

#endif
