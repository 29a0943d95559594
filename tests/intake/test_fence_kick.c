// SPDX-License-Identifier: MIT
/*
 * intake-locked-fence-kick: an asynchronous queue fence posted while a
 * locked iovt_fence on another thread holds the queue's drain flag (inside a
 * sink call, blocked until this test lets it go) must be applied once that
 * fence lets go: the queue's worker, kicked by the post, found the flag held,
 * skipped the queue and went to sleep; the locked fence drained only what it
 * had counted, so it must wake the worker for the rest. It did only for
 * hand-off queues: a normal queue's iovt_queue_fence_post (then polling
 * iovt_queue_fence_done, iovt.h's pattern for hosts that complete a guest's
 * wait asynchronously) waited for the worker's 50 ms idle timeout (found by
 * review). The workers' idle sleep is made a minute here (a test hook), so
 * that a missing kick hangs the fence: a watchdog fails the test after 60 s
 * instead of letting it pass 50 ms late. Both queue kinds are checked.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "engine_internal.h" /* white box: the worker's sleeping flag, the idle-sleep hook */
#include "iovt.h"

#define CHECK(c)                                                                          \
	do {                                                                              \
		if (!(c)) {                                                               \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c); \
			exit(1);                                                          \
		}                                                                         \
	} while (0)

static struct iovt_engine *eng;
static atomic_int entered, release_sink;

static int blocking_unmap(void *ctx, uint64_t iova, uint64_t size, uint64_t *unmapped)
{
	(void)ctx;
	(void)iova;
	*unmapped = size;
	if (!atomic_load(&release_sink)) {
		atomic_store(&entered, 1);
		while (!atomic_load(&release_sink))
			usleep(200);
	}
	return 0;
}

static const struct iovt_sink_ops blocking_ops = { .unmap = blocking_unmap };

static void *locked_fence(void *arg)
{
	(void)arg;
	iovt_thread_register(); /* no implicit queue here: the locked way */
	CHECK(iovt_fence(eng) == 0);
	iovt_thread_unregister();
	return NULL;
}

static void *watchdog(void *arg)
{
	(void)arg;
	sleep(60);
	fprintf(stderr, "intake-locked-fence-kick: stalled (a queue fence left to the worker's idle timeout)\n");
	_exit(1);
}

static void wait_until(atomic_int *flag)
{
	while (!atomic_load(flag))
		usleep(100);
}

static void one(bool handoff)
{
	struct iovt_queue *q;
	struct iovt_queue_config qc = { .handoff = handoff };
	CHECK(iovt_queue_create(eng, &qc, &q) == 0);
	atomic_store(&entered, 0);
	atomic_store(&release_sink, 0);

	/* The worker asleep, a PSI in the queue for the blocking sink's domain. */
	struct worker *w = &eng->workers[0];
	while (!atomic_load(&w->sleeping))
		usleep(100);
	CHECK(iovt_queue_psi(q, 1, 0x1000, 0, false) == 0);
	pthread_t t;
	CHECK(pthread_create(&t, NULL, locked_fence, NULL) == 0);
	wait_until(&entered); /* the locked fence counted the PSI, holds the flag, in the sink */

	/* Posted after its count: the worker is kicked, wakes, finds the flag
	 * held, and goes back to sleep (its idle polls take microseconds): an
	 * ended nap, then asleep again. Waited for on the clock, up to 10 s. */
	const uint32_t naps = atomic_load(&w->naps);
	uint64_t tk = iovt_queue_fence_post(q);
	CHECK(tk != 0);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		if (atomic_load(&w->naps) != naps && atomic_load(&w->sleeping))
			break;
		clock_gettime(CLOCK_MONOTONIC, &t1);
		CHECK(t1.tv_sec - t0.tv_sec < 10); /* the kicked worker never slept again */
		usleep(100);
	}
	CHECK(!iovt_queue_fence_done(q, tk)); /* the flag is still held */

	atomic_store(&release_sink, 1);
	CHECK(pthread_join(t, NULL) == 0);
	while (!iovt_queue_fence_done(q, tk)) /* the watchdog ends a hang */
		usleep(100);
	printf("%s queue: the fence posted behind a locked fence was applied\n",
	       handoff ? "hand-off" : "normal");
	iovt_queue_destroy(q);
}

int main(void)
{
	pthread_t wd;
	CHECK(pthread_create(&wd, NULL, watchdog, NULL) == 0);
	pthread_detach(wd);
	workers_test_idle_ns = 60L * 1000 * 1000 * 1000;
	iovt_thread_register();
	CHECK(iovt_engine_create(NULL, &eng) == 0);
	struct iovt_domain *d;
	struct iovt_domain_config dc = { .did = 1, .addr_width = 39 };
	CHECK(iovt_domain_create(eng, &dc, &d) == 0);
	struct iovt_sink s = { .ops = &blocking_ops, .name = "blocking" };
	struct iovt_notifier *n;
	CHECK(iovt_notifier_attach(d, IOVT_NOTIFY_UNMAP, &s, &n) == 0);
	CHECK(iovt_workers_start(eng, 1) == 0);
	one(false);
	one(true);
	iovt_workers_stop(eng);
	iovt_engine_destroy(eng);
	iovt_thread_unregister();
	return 0;
}
