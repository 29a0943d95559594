/* SPDX-License-Identifier: MIT */
/* The slow side of the sync lock: see synclock.h for the argument. */
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/futex.h"
#include "common/synclock.h"

bool sync_lock_asym;

static int membarrier(int cmd)
{
	return (int)syscall(__NR_membarrier, cmd, 0, 0);
}

static void setup_once(void)
{
	int cmds = membarrier(MEMBARRIER_CMD_QUERY);
	sync_lock_asym = cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
			 membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
}

void sync_lock_setup(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, setup_once);
}

/* Holders keep the lock for a sync (0.1-10 µs): spinning, then yielding
 * (the holder may be waiting for this very CPU), catches the common
 * hand-over between two drainers without the membarrier (synclock.h: it
 * interrupts every running thread of the process). */
#define SPINS 256
#define YIELDS 16

void sync_lock_take_slow(struct sync_lock *l)
{
	for (unsigned i = 0; i < SPINS + YIELDS; i++) {
		if (i < SPINS)
			cpu_relax();
		else
			sched_yield();
		if (sync_lock_try(l))
			return;
	}
	atomic_fetch_add_explicit(&l->sleepers, 1, memory_order_seq_cst);
	/* Registered, membarrier does not fail; if it ever did, a release may
	 * have missed us: sleep in short slices then, never for good. */
	bool sliced = sync_lock_asym && membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0;
	if (!sync_lock_asym)
		atomic_thread_fence(memory_order_seq_cst); /* the releasers fence too */
	while (!sync_lock_try(l)) {
		if (sliced)
			futex_wait_for(&l->word, 1, 1000000);
		else
			futex_wait(&l->word, 1);
	}
	atomic_fetch_sub_explicit(&l->sleepers, 1, memory_order_relaxed);
}

void sync_lock_wake(struct sync_lock *l)
{
	futex_wake_one(&l->word);
}
