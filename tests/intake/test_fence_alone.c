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
 */
#include <iovt.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
	fprintf(stderr, "intake-fence-alone: STALL (watchdog, 60 s)\n");
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

int main(void)
{
	pthread_t wd;
	CHECK(pthread_create(&wd, NULL, watchdog, NULL) == 0);
	pthread_detach(wd);
	iovt_thread_register();
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
