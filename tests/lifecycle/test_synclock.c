/* SPDX-License-Identifier: MIT */
/*
 * lifecycle-synclock: the domain sync lock (engine/common/synclock.h) under
 * torture, with a watchdog. Its release is a store and a load, and the
 * wake-up of a sleeper rests on the sleeper's membarrier (asymmetric
 * fence): a mistake there is a lost wake-up — a thread asleep on a free
 * lock — which TSan cannot see and which only shows as a hang. So:
 *
 * - more threads than CPUs, each taking the lock (sync_lock_take, or
 *   sync_lock_try in a loop, as the drainers do), holding it for a random
 *   short time — sometimes yielding or sleeping while holding it, so that
 *   the others go past the spin into futex sleep — and checking mutual
 *   exclusion on plain (non-atomic) data: an owner word and a counter whose
 *   final value must equal the number of acquisitions;
 * - a watchdog slot per thread: a sleeper that is never woken stalls its
 *   slot and fails the test with every thread's backtrace;
 * - once with the asymmetric fence (when membarrier is there) and once with
 *   the symmetric fallback (sync_lock_asym forced false).
 *
 * $IOVT_TEST_SCALE scales the acquisitions per thread.
 */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "common/synclock.h"
#include "watchdog.h"

#define THREADS 6

static struct sync_lock lock;
static unsigned long owner;     /* plain: the lock protects it */
static unsigned long counter;   /* plain */
static unsigned long iterations;
static _Atomic unsigned long violations;
static _Atomic unsigned long slept_holding;

struct worker {
	pthread_t th;
	unsigned id;
	unsigned long done;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	uint64_t r = 0x9E3779B97F4A7C15ull * (w->id + 1);
	watchdog_expect(w->id, "locker");
	for (unsigned long i = 0; i < iterations; i++) {
		r ^= r << 13;
		r ^= r >> 7;
		r ^= r << 17;
		if (r & 1) {
			sync_lock_take(&lock);
		} else {
			while (!sync_lock_try(&lock))
				sched_yield();
		}
		if (owner != 0)
			atomic_fetch_add(&violations, 1);
		owner = w->id + 1;
		counter++;
		unsigned hold = (unsigned)(r >> 8) % 64;
		if (hold == 0) {
			/* long enough for the others to spin out and sleep */
			struct timespec ts = { 0, 50 * 1000 };
			nanosleep(&ts, NULL);
			atomic_fetch_add(&slept_holding, 1);
		} else if (hold == 1) {
			sched_yield();
		} else {
			for (volatile unsigned k = 0; k < hold * 4; k++)
				;
		}
		if (owner != w->id + 1)
			atomic_fetch_add(&violations, 1);
		owner = 0;
		sync_lock_release(&lock);
		w->done++;
		watchdog_progress(w->id);
	}
	watchdog_idle(w->id);
	return NULL;
}

static int round_(const char *name)
{
	struct worker w[THREADS];
	sync_lock_init(&lock);
	owner = counter = 0;
	atomic_store(&violations, 0);
	atomic_store(&slept_holding, 0);
	for (unsigned i = 0; i < THREADS; i++) {
		w[i].id = i;
		w[i].done = 0;
		if (pthread_create(&w[i].th, NULL, work, &w[i])) {
			fprintf(stderr, "pthread_create failed\n");
			return 1;
		}
	}
	unsigned long total = 0;
	for (unsigned i = 0; i < THREADS; i++) {
		pthread_join(w[i].th, NULL);
		total += w[i].done;
	}
	int bad = 0;
	if (atomic_load(&violations)) {
		fprintf(stderr, "%s: %lu mutual-exclusion violations\n", name, atomic_load(&violations));
		bad = 1;
	}
	/* counter is a plain variable: two holders at once lose increments */
	if (counter != THREADS * iterations) {
		fprintf(stderr, "%s: counter %lu, acquisitions %lu, expected %lu\n", name, counter,
			total, THREADS * iterations);
		bad = 1;
	}
	if (atomic_load(&lock.word) != 0 || atomic_load(&lock.sleepers) != 0) {
		fprintf(stderr, "%s: lock left word=%u sleepers=%u\n", name, atomic_load(&lock.word),
			atomic_load(&lock.sleepers));
		bad = 1;
	}
	printf("%s: %lu acquisitions, %lu held across a sleep, %s\n", name, total,
	       atomic_load(&slept_holding), bad ? "FAILED" : "ok");
	return bad;
}

int main(void)
{
	double scale = getenv("IOVT_TEST_SCALE") ? atof(getenv("IOVT_TEST_SCALE")) : 1.0;
	iterations = (unsigned long)(20000 * scale);
	if (iterations < 2000)
		iterations = 2000;
	sync_lock_setup();
	bool asym = sync_lock_asym;
	printf("membarrier(PRIVATE_EXPEDITED): %s\n", asym ? "registered" : "not available");
	watchdog_start("lifecycle-synclock", 20.0);
	int bad = 0;
	if (asym)
		bad |= round_("asymmetric");
	sync_lock_asym = false; /* no lock in use between rounds */
	bad |= round_("symmetric");
	sync_lock_asym = asym;
	watchdog_stop();
	return bad;
}
