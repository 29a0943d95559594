/* SPDX-License-Identifier: MIT */
/*
 * A mutex whose release is a plain store: the domain's sync_lock.
 *
 * Why: a vCPU's strict PSI + wait takes and releases its domain's lock once,
 * and the release comes right after the sync's tree and scratch writes. A
 * pthread mutex releases with a locked exchange (it must see a sleeper
 * that queued meanwhile), which waits for all those stores to drain: 13%
 * of a one-page fence in perf, the largest single item (ARCHITECTURE.md,
 * "The sync lock"). Here the release is a store and a load; the store-load
 * ordering that the sleeper's wake-up needs is paid by the thread that goes
 * to sleep instead, with one membarrier(PRIVATE_EXPEDITED) — the asymmetric
 * fence liburcu-memb uses for its readers, for the same reason: the fast
 * side is hot, the slow side is rare (a drainer of another queue syncing
 * the same domain, a control call).
 *
 *   operation            ordering                  cost uncontended
 *   sync_lock_try        acquire (CAS)             one locked CAS
 *   sync_lock_take       acquire                   sync_lock_try; else spin,
 *                                                  then membarrier + futex
 *   sync_lock_release    release (store)           a store and a load
 *
 * The argument. A sleeper S raises `sleepers` (a locked add: globally
 * visible before what follows), runs membarrier — every other running thread
 * of the process passes a full barrier somewhere during the call — then
 * tries the lock and sleeps on `word` only while it reads 1 (futex_wait
 * re-checks under the futex bucket lock). A releaser R stores word = 0 and
 * then loads `sleepers`. If R's barrier point fell after its store, the
 * store was visible when membarrier returned: S reads 0 and tries the lock
 * (losing it to another taker is fine: that one releases in turn, below).
 * Otherwise R's load comes after its barrier point, so after S's add: R
 * reads sleepers > 0 and wakes one sleeper (after its store: a futex_wait
 * either sees 0 and returns, or is asleep and is woken). S keeps
 * `sleepers` raised until it holds the lock, and every release that begins
 * after its membarrier comes after a full barrier on the releaser's CPU,
 * so one membarrier covers all of S's sleeps. A thread not running during
 * membarrier passed a context switch, a full barrier. Where membarrier is
 * missing (old kernels, some sandboxes, valgrind), the release uses a full
 * fence instead (sync_lock_asym is false).
 *
 * The price: a take that must sleep interrupts every CPU running a thread
 * of this process — in a VMM, vCPU threads in guest mode among them (a VM
 * exit each), as liburcu-memb's grace periods already do. So the slow path
 * spins, then yields, before it sleeps: a sync holds the lock for 0.1-10
 * µs, and a drainer of another queue syncing the same domain mostly gets
 * it in that time; what sleeps is a wait behind a slow sink call or a
 * control call. (lifecycle-synclock catches a lost wake-up that stalls;
 * a misplaced barrier, whose window is a few instructions wide, it does
 * not reliably: that part rests on the argument above.)
 *
 * Not recursive, no owner check. TSan sees the CAS acquire and the store
 * release: the happens-before between holders is visible to it; a lost
 * wake-up would not be, which is why the lifecycle torture tests run with
 * a watchdog.
 */
#ifndef IOVT_COMMON_SYNCLOCK_H
#define IOVT_COMMON_SYNCLOCK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct sync_lock {
	_Atomic uint32_t word;     /* 0 free, 1 held (the futex word) */
	_Atomic uint32_t sleepers; /* threads between their add and their take */
};

/* Whether membarrier(PRIVATE_EXPEDITED) is registered for this process
 * (sync_lock_setup). Written once before any engine exists. */
extern bool sync_lock_asym;

/* Registers the process for membarrier once; any thread, any time before
 * the first lock is used (iovt_engine_create). Idempotent. */
void sync_lock_setup(void);

static inline void sync_lock_init(struct sync_lock *l)
{
	atomic_init(&l->word, 0);
	atomic_init(&l->sleepers, 0);
}

/* true: taken (acquire). Never waits. */
static inline bool sync_lock_try(struct sync_lock *l)
{
	uint32_t free_ = 0;
	return atomic_load_explicit(&l->word, memory_order_relaxed) == 0 &&
	       atomic_compare_exchange_strong_explicit(&l->word, &free_, 1, memory_order_acquire,
						       memory_order_relaxed);
}

void sync_lock_take_slow(struct sync_lock *l);

/* Takes the lock, sleeping while another thread holds it. */
static inline void sync_lock_take(struct sync_lock *l)
{
	if (!sync_lock_try(l))
		sync_lock_take_slow(l);
}

void sync_lock_wake(struct sync_lock *l);

/*
 * Releases the lock. The caller must be able to read *l afterwards: it
 * holds a reference to the lock's owner or the engine's control_lock (which
 * destroy needs), or is in an RCU read-side section that began while it
 * held the lock (domain_sync_unlock).
 */
static inline void sync_lock_release(struct sync_lock *l)
{
	atomic_store_explicit(&l->word, 0, memory_order_release);
	if (sync_lock_asym)
		atomic_signal_fence(memory_order_seq_cst); /* the sleeper's membarrier orders us */
	else
		atomic_thread_fence(memory_order_seq_cst);
	if (__builtin_expect(atomic_load_explicit(&l->sleepers, memory_order_relaxed) != 0, 0))
		sync_lock_wake(l);
}

#endif
