/* SPDX-License-Identifier: MIT */
/*
 * Stall detector for the concurrency torture tests.
 *
 * TSan sees data races, not an RCU grace period that never ends or a fence
 * that waits forever: such a test just hangs until meson kills it, with no
 * hint of where. The watchdog turns a hang into a failure with evidence:
 * when a watched slot makes no progress for stall_seconds, a monitor thread
 * prints the stalled slots, runs gdb on its own process to print every
 * thread's backtrace, and _exit(1)s (a failure, never 77 / skip).
 *
 *   watchdog_start("lifecycle", 10.0);
 *   thread i:  watchdog_expect(i, "fencer"); loop { work; watchdog_progress(i); }
 *              watchdog_idle(i);
 *   watchdog_stop();
 *
 * $IOVT_WATCHDOG_SECONDS, when set, replaces stall_seconds (slow machines,
 * debugging under gdb by hand: set it very large).
 */
#ifndef IOVT_TESTS_WATCHDOG_H
#define IOVT_TESTS_WATCHDOG_H

#include <stdatomic.h>

#define WATCHDOG_SLOTS 64

/* One cache line per slot: 64 threads bumping neighbouring counters would
 * otherwise contend on the same lines and slow the very code under test. */
struct watchdog_counter {
	_Alignas(64) atomic_ulong n;
};
extern struct watchdog_counter watchdog_counters[WATCHDOG_SLOTS];

/* Starts the monitor thread. Aborts if a watchdog is already running. */
void watchdog_start(const char *test_name, double stall_seconds);

/* Inline and relaxed so that it can sit in the hottest loop: the monitor only
 * needs to see the count change eventually, never any ordering. Slots out of
 * range are ignored here; watchdog_expect refuses them, so they are never
 * watched. */
static inline void watchdog_progress(unsigned slot)
{
	if (slot < WATCHDOG_SLOTS)
		atomic_fetch_add_explicit(&watchdog_counters[slot].n, 1, memory_order_relaxed);
}

/* From now on the slot must progress at least every stall_seconds. name is
 * kept by pointer (a string literal, or one that outlives the watch). */
void watchdog_expect(unsigned slot, const char *name);

/* The slot is no longer watched (its thread finished or waits legitimately). */
void watchdog_idle(unsigned slot);

/* Stops and joins the monitor; every slot becomes unwatched. No-op if not
 * started. */
void watchdog_stop(void);

#endif
