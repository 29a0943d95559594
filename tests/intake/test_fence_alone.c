// SPDX-License-Identifier: MIT
/*
 * intake-fence-alone: iovt_fence's lock-free way (fence_alone, engine/intake/
 * drain.c) must not return while work posted before the call is still on its
 * way to a sink through a control-lock holder. This test holds open the
 * widest window (found by review): a locked iovt_fence has spliced the
 * dirty list and is inside a sink — blocked until this test lets it go —
 * for another thread's PSI, so the dirty list looks empty. (The other two,
 * a queue destroy between the table replace and its drain and a domain
 * destroy re-queueing the dirty list, are guarded the same way,
 * control_seq, but cannot be held open by a sink.)
 * The fencing thread's own implicit queue exists and is idle, every other
 * queue is idle: exactly fence_alone's conditions. Its iovt_fence must wait
 * for the blocked delivery (the contract of iovt_fence in iovt.h: every
 * invalidation posted before the call reaches every sink). A watchdog fails
 * the test instead of hanging it.
 *
 * intake-locked-fence-kick (argument `kick`): an asynchronous queue fence
 * posted while a locked iovt_fence on another thread holds the queue's drain
 * flag (inside the blocking sink) must be applied once that fence lets go:
 * the queue's worker, kicked by the post, found the flag held, skipped the
 * queue and went to sleep; the locked fence drained only what it had
 * counted, so it must wake the worker for the rest. It did only for hand-off
 * queues: a normal queue's iovt_queue_fence_post (then polling
 * iovt_queue_fence_done, iovt.h's pattern for hosts that complete a guest's
 * wait asynchronously) waited for the worker's 50 ms idle timeout (found by
 * review). The workers' idle sleep is made a minute (a test hook), so that a
 * missing kick hangs the fence and the watchdog fails the test rather than
 * letting it pass 50 ms late. Both queue kinds.
 *
 * intake-fence-alone-dirty-gap (argument `dirty-gap`): a domain marked
 * dirty by a thread that holds no queue flag and no control lock — here a
 * bridge sink's PSI, posted from iovt_domain_set_root's sync on a thread
 * without an implicit queue — preempted between setting `queued` and
 * putting the domain on the dirty list (held open by a test hook). A
 * drainer that pends a guest PSI for that domain meanwhile sees `queued`
 * and leaves it to the list; iovt_fence must still apply that PSI before
 * it returns. Its lock-free way saw every queue idle and the list empty
 * and returned without it (found by the twenty-second session's review);
 * the marker is released 200 ms later, so a fence that waits delivers it.
 */
#include <iovt.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine_internal.h" /* white box (kick): the worker's naps, the idle-sleep hook */
#include "domain/domain.h" /* white box (dirty-gap): the mark's test hook */

#define CHECK(c)                                                                  \
	do {                                                                      \
		if (!(c)) {                                                       \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c); \
			exit(1);                                                  \
		}                                                                 \
	} while (0)

static struct iovt_engine *eng;
static atomic_int entered, release_sink, unmaps_done;

static int blocking_unmap(void *ctx, uint64_t iova, uint64_t size, uint64_t *unmapped)
{
	(void)ctx;
	(void)iova;
	*unmapped = size;
	atomic_store(&entered, 1);
	while (!atomic_load(&release_sink))
		usleep(1000);
	atomic_fetch_add(&unmaps_done, 1);
	return 0;
}

static const struct iovt_sink_ops blocking_ops = { .unmap = blocking_unmap };

static void *post_and_leave(void *arg)
{
	(void)arg;
	iovt_thread_register();
	CHECK(iovt_invalidate_psi(eng, 1, 0x1000, 0, false) == 0);
	iovt_thread_unregister(); /* its implicit queue's PSI: pending, domain 1 dirty */
	return NULL;
}

static void *locked_fence(void *arg)
{
	(void)arg;
	iovt_thread_register(); /* no implicit queue here: the locked way */
	CHECK(iovt_fence(eng) == 0);
	iovt_thread_unregister();
	return NULL;
}

static void *releaser(void *arg)
{
	(void)arg;
	usleep(200 * 1000);
	atomic_store(&release_sink, 1);
	return NULL;
}

static void *watchdog(void *arg)
{
	(void)arg;
	sleep(60);
	fprintf(stderr, "intake-fence-alone / -locked-fence-kick: STALL (watchdog, 60 s: a fence never applied)\n");
	_exit(1);
}

/* This thread's iovt_fence while the blocked delivery is in flight. */
static void fence_must_wait(const char *what)
{
	while (!atomic_load(&entered))
		usleep(1000);
	pthread_t r;
	CHECK(pthread_create(&r, NULL, releaser, NULL) == 0);
	int rc = iovt_fence(eng);
	int done = atomic_load(&unmaps_done);
	CHECK(pthread_join(r, NULL) == 0);
	printf("intake-fence-alone %s: iovt_fence returned %d, the blocked UNMAP %s\n", what, rc,
	       done ? "delivered first" : "NOT delivered (returned early)");
	CHECK(rc == 0);
	CHECK(done >= 1);
}

static void reset(void)
{
	atomic_store(&entered, 0);
	atomic_store(&release_sink, 0);
	atomic_store(&unmaps_done, 0);
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
	 * ended nap, then asleep again. Waited for on the clock, up to 10 s.
	 * The count of naps is read while the worker is in one (`sleeping`
	 * read after it): that nap then ends after the read, and `naps` moves.
	 * Read while it was awake instead (anything may have woken it since
	 * the look above), the kick landed in its idle polls, which found the
	 * flag held and slept again without an ended nap: the wait timed out
	 * (once in ~700 TSan runs on a loaded 2-core machine). */
	uint32_t naps;
	for (;;) {
		naps = atomic_load(&w->naps);
		if (atomic_load(&w->sleeping))
			break;
		usleep(100);
	}
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

/* start: a hand-off fence posted while iovt_workers_start has its worker
 * running and asleep but not yet published (the post's kick reaches no
 * one) is applied once the start returns, not at the worker's idle
 * timeout (a minute here). */
static struct iovt_queue *start_q;
static uint64_t start_ticket;

static void before_publish(struct iovt_engine *e)
{
	struct worker *w = &e->workers[0];
	while (!atomic_load(&w->sleeping))
		usleep(100);
	start_ticket = iovt_queue_fence_post(start_q);
	CHECK(start_ticket != 0);
}

static void start_main(void)
{
	workers_test_idle_ns = 60L * 1000 * 1000 * 1000;
	CHECK(iovt_engine_create(NULL, &eng) == 0);
	struct iovt_queue_config qc = { .handoff = true };
	CHECK(iovt_queue_create(eng, &qc, &start_q) == 0);
	workers_test_before_publish = before_publish;
	CHECK(iovt_workers_start(eng, 1) == 0);
	workers_test_before_publish = NULL;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!iovt_queue_fence_done(start_q, start_ticket)) {
		clock_gettime(CLOCK_MONOTONIC, &t1);
		CHECK(t1.tv_sec - t0.tv_sec < 10); /* left to the worker's idle timeout */
		usleep(100);
	}
	printf("intake-workers-start-kick: the fence posted before the workers' publication was applied\n");
	iovt_queue_destroy(start_q);
	iovt_workers_stop(eng);
	iovt_engine_destroy(eng);
}

static void kick_main(void)
{
	workers_test_idle_ns = 60L * 1000 * 1000 * 1000;
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
}

/* ---- dirty-gap ---- */
static atomic_int seen_5000, gap_paused, gap_release, bridge_armed;
static __thread int gap_armed;
static struct iovt_domain *gap_y;

static int recorder_unmap(void *ctx, uint64_t iova, uint64_t size, uint64_t *unmapped)
{
	(void)ctx;
	*unmapped = size;
	if (iova <= 0x5000 && 0x5000 < iova + size)
		atomic_fetch_add(&seen_5000, 1);
	return 0;
}

/* Y's UNMAP-only sink forwards a PSI to X (a bridge, as iovt.h allows). */
static int bridge_unmap(void *ctx, uint64_t iova, uint64_t size, uint64_t *unmapped)
{
	(void)ctx;
	(void)iova;
	*unmapped = size;
	if (atomic_exchange(&bridge_armed, 0))
		CHECK(iovt_invalidate_psi(eng, 1, 0x9000, 0, false) == 0);
	return 0;
}

static const struct iovt_sink_ops recorder_ops = { .unmap = recorder_unmap };
static const struct iovt_sink_ops bridge_ops = { .unmap = bridge_unmap };

static void mark_gap(struct iovt_domain *d)
{
	if (!gap_armed || d->did != 1)
		return;
	atomic_store(&gap_paused, 1); /* "preempted" between `queued` and the enqueue */
	while (!atomic_load(&gap_release))
		usleep(1000);
}

static void *gap_releaser(void *arg)
{
	(void)arg;
	usleep(200 * 1000);
	atomic_store(&gap_release, 1);
	return NULL;
}

static void *gap_control(void *arg)
{
	(void)arg;
	iovt_thread_register(); /* no implicit queue on this thread */
	gap_armed = 1;
	atomic_store(&bridge_armed, 1);
	CHECK(iovt_domain_set_root(gap_y, 0) == 0); /* syncs Y: its bridge marks X */
	gap_armed = 0;
	iovt_thread_unregister();
	return NULL;
}

static void dirty_gap_main(void)
{
	CHECK(iovt_engine_create(NULL, &eng) == 0);
	struct iovt_domain *x;
	struct iovt_domain_config cx = { .did = 1, .addr_width = 39 };
	struct iovt_domain_config cy = { .did = 2, .addr_width = 39 };
	CHECK(iovt_domain_create(eng, &cx, &x) == 0);
	CHECK(iovt_domain_create(eng, &cy, &gap_y) == 0);
	struct iovt_sink rs = { .ops = &recorder_ops, .name = "recorder" };
	struct iovt_sink bs = { .ops = &bridge_ops, .name = "bridge" };
	struct iovt_notifier *n1, *n2;
	CHECK(iovt_notifier_attach(x, IOVT_NOTIFY_UNMAP, &rs, &n1) == 0);
	CHECK(iovt_notifier_attach(gap_y, IOVT_NOTIFY_UNMAP, &bs, &n2) == 0);
	/* This thread's implicit queue exists and is idle; the list is empty. */
	CHECK(iovt_invalidate_psi(eng, 1, 0x100000, 0, false) == 0);
	CHECK(iovt_fence(eng) == 0);
	/* An explicit queue this thread posts to and polls (an I/O thread's). */
	struct iovt_queue *qa;
	CHECK(iovt_queue_create(eng, NULL, &qa) == 0);

	domain_test_mark_dirty_gap = mark_gap;
	pthread_t m, r;
	CHECK(pthread_create(&m, NULL, gap_control, NULL) == 0);
	wait_until(&gap_paused);
	/* The guest's PSI for X, drained without a fence into X's pending set:
	 * the drainer finds X `queued` and leaves it to the list. */
	CHECK(iovt_queue_psi(qa, 1, 0x5000, 0, false) == 0);
	CHECK(iovt_poll(eng, 0, 1, 64) == 1);
	CHECK(pthread_create(&r, NULL, gap_releaser, NULL) == 0);
	int rc = iovt_fence(eng); /* must apply the PSI posted above (iovt.h) */
	int seen = atomic_load(&seen_5000);
	CHECK(pthread_join(r, NULL) == 0);
	CHECK(pthread_join(m, NULL) == 0);
	domain_test_mark_dirty_gap = NULL;
	printf("intake-fence-alone-dirty-gap: iovt_fence returned %d, the PSI %s\n", rc,
	       seen ? "delivered first" : "NOT delivered (returned early)");
	CHECK(rc == 0);
	CHECK(seen >= 1);
	CHECK(iovt_fence(eng) == 0);
	iovt_queue_destroy(qa);
	iovt_engine_destroy(eng);
}

int main(int argc, char **argv)
{
	pthread_t wd;
	CHECK(pthread_create(&wd, NULL, watchdog, NULL) == 0);
	pthread_detach(wd);
	iovt_thread_register();
	if (argc > 1 && !strcmp(argv[1], "kick")) {
		kick_main();
		iovt_thread_unregister();
		return 0;
	}
	if (argc > 1 && !strcmp(argv[1], "dirty-gap")) {
		dirty_gap_main();
		iovt_thread_unregister();
		return 0;
	}
	if (argc > 1 && !strcmp(argv[1], "start")) {
		start_main();
		iovt_thread_unregister();
		return 0;
	}
	CHECK(iovt_engine_create(NULL, &eng) == 0);
	struct iovt_domain *d1, *d2;
	struct iovt_domain_config c1 = { .did = 1, .addr_width = 39 };
	struct iovt_domain_config c2 = { .did = 2, .addr_width = 39 };
	CHECK(iovt_domain_create(eng, &c1, &d1) == 0);
	CHECK(iovt_domain_create(eng, &c2, &d2) == 0);
	struct iovt_sink s = { .ops = &blocking_ops, .name = "blocking" };
	struct iovt_notifier *n;
	CHECK(iovt_notifier_attach(d1, IOVT_NOTIFY_UNMAP, &s, &n) == 0);
	/* This thread's implicit queue exists and is idle. */
	CHECK(iovt_invalidate_psi(eng, 2, 0, 0, false) == 0);
	CHECK(iovt_fence(eng) == 0);

	/* locked: another thread's PSI pending on domain 1, a third thread's
	 * locked fence blocked in the sink for it. */
	reset();
	pthread_t b, c;
	CHECK(pthread_create(&b, NULL, post_and_leave, NULL) == 0);
	CHECK(pthread_join(b, NULL) == 0);
	CHECK(pthread_create(&c, NULL, locked_fence, NULL) == 0);
	fence_must_wait("locked");
	CHECK(pthread_join(c, NULL) == 0);

	iovt_engine_destroy(eng);
	iovt_thread_unregister();
	return 0;
}
