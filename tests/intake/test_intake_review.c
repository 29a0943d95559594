// SPDX-License-Identifier: MIT
/*
 * Intake defects a review found (twenty-third session), one case each; each
 * failed before its fix.
 *
 * intake-touched-oom (`touched-oom`): a queue's list of the domains it
 * touched since its last fence cannot grow (iovt_vec_fault: the growths of
 * a VEC(uint16_t), which only that list is). A poller drains PSIs for three
 * domains without a fence; the producer's iovt_queue_fence must still apply
 * every one before it returns. Before the fix, touch() turned the failure
 * into "sync every domain" (touched_all), which the fence listed through
 * the same touch(), failing again: it synced nothing, published its ticket
 * and returned 0, the PSIs not applied and nothing counted.
 *
 * intake-fence-wait-bad-ticket (`bad-ticket`): iovt_queue_fence_wait with a
 * ticket the queue never handed out waited forever (a host bug, or a ticket
 * kept across a queue's re-creation); now -EINVAL, counted as bad_argument.
 * A watchdog fails the test instead of hanging it.
 *
 * intake-destroy-stats (`destroy-stats`): iovt_queue_destroy took the queue
 * out of the table (iovt_stats_get stops summing its counters) and folded
 * them into the engine's only at its very end, after waiting for a drainer
 * that holds the queue (here a poller inside a slow sink): meanwhile the
 * engine's fences and queue_items went back by the queue's whole history.
 * Now they are folded when it leaves the table, the rest at the end.
 */
#include <iovt.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/vec.h" /* white box (touched-oom): iovt_vec_fault */

#define CHECK(c)                                                                          \
	do {                                                                              \
		if (!(c)) {                                                               \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c); \
			exit(1);                                                          \
		}                                                                         \
	} while (0)

static void *watchdog(void *arg)
{
	(void)arg;
	sleep(60);
	fprintf(stderr, "intake-review: STALL (watchdog 60 s)\n");
	_exit(1);
}

/* ---- touched-oom ---- */

static atomic_int unmaps[4]; /* per DID: UNMAPs that covered page 0x1000 */

static int rec_unmap(void *ctx, uint64_t iova, uint64_t size, uint64_t *unmapped)
{
	*unmapped = size;
	if (iova <= 0x1000 && 0x1000 < iova + size)
		atomic_fetch_add(&unmaps[(uintptr_t)ctx], 1);
	return 0;
}
static const struct iovt_sink_ops rec_ops = { .unmap = rec_unmap };

static atomic_int vec_fail;
static bool fail_u16_vecs(size_t bytes)
{
	/* the first growth of a VEC(uint16_t): 64 entries; none other is 128 bytes here */
	return atomic_load(&vec_fail) && bytes == 64 * sizeof(uint16_t);
}

static void touched_oom(void)
{
	struct iovt_engine *e;
	CHECK(iovt_engine_create(NULL, &e) == 0);
	struct iovt_domain *d[4];
	struct iovt_sink s[4];
	struct iovt_notifier *n[4];
	for (uintptr_t i = 1; i <= 3; i++) {
		struct iovt_domain_config dc = { .did = (uint16_t)i, .addr_width = 39 };
		CHECK(iovt_domain_create(e, &dc, &d[i]) == 0);
		s[i] = (struct iovt_sink){ .ops = &rec_ops, .ctx = (void *)i, .name = "rec" };
		CHECK(iovt_notifier_attach(d[i], IOVT_NOTIFY_UNMAP, &s[i], &n[i]) == 0);
	}
	struct iovt_queue *q;
	CHECK(iovt_queue_create(e, NULL, &q) == 0);
	struct iovt_stats st0, st1;
	iovt_stats_get(e, &st0);

	iovt_vec_fault = fail_u16_vecs;
	atomic_store(&vec_fail, 1);
	for (uint16_t did = 1; did <= 3; did++)
		CHECK(iovt_queue_psi(q, did, 0x1000, 0, false) == 0);
	/* A poller's drain with no fence after the items: the list cannot grow. */
	CHECK(iovt_poll(e, 0, 1, 64) == 3);
	int rc = iovt_queue_fence(q); /* must apply all three (iovt.h, "Ordering") */
	int got[4] = { 0, atomic_load(&unmaps[1]), atomic_load(&unmaps[2]), atomic_load(&unmaps[3]) };
	/* and the next fence, the list still not growing, finds nothing left over */
	CHECK(iovt_queue_psi(q, 2, 0x1000, 0, false) == 0);
	CHECK(iovt_poll(e, 0, 1, 64) == 1);
	int rc2 = iovt_queue_fence(q);
	int got2 = atomic_load(&unmaps[2]);
	atomic_store(&vec_fail, 0);
	iovt_vec_fault = NULL;
	iovt_stats_get(e, &st1);
	printf("touched-oom: iovt_queue_fence returned %d; UNMAPs delivered per domain %d %d %d; "
	       "the second fence %d, domain 2 %d; no_memory +%llu\n",
	       rc, got[1], got[2], got[3], rc2, got2,
	       (unsigned long long)(st1.errors[IOVT_ERR_NO_MEMORY] - st0.errors[IOVT_ERR_NO_MEMORY]));
	CHECK(rc == 0 && rc2 == 0);
	CHECK(got[1] == 1 && got[2] == 1 && got[3] == 1);
	CHECK(got2 == 2);
	CHECK(st1.errors[IOVT_ERR_NO_MEMORY] > st0.errors[IOVT_ERR_NO_MEMORY]); /* counted */
	/* memory back: the list works again */
	CHECK(iovt_queue_psi(q, 3, 0x1000, 0, false) == 0);
	CHECK(iovt_poll(e, 0, 1, 64) == 1);
	CHECK(iovt_queue_fence(q) == 0);
	CHECK(atomic_load(&unmaps[3]) == 2);
	iovt_queue_destroy(q);
	CHECK(iovt_fence(e) == 0);
	iovt_engine_destroy(e);
}

/* ---- bad-ticket ---- */

static void bad_ticket(void)
{
	struct iovt_engine *e;
	CHECK(iovt_engine_create(NULL, &e) == 0);
	struct iovt_queue *q;
	CHECK(iovt_queue_create(e, NULL, &q) == 0);
	uint64_t t = iovt_queue_fence_post(q);
	CHECK(t == 1);
	CHECK(iovt_queue_fence_wait(q, t) == 0);
	struct iovt_stats a, b;
	iovt_stats_get(e, &a);
	int rc = iovt_queue_fence_wait(q, 1000); /* only ticket 1 was handed out */
	int rc_max = iovt_queue_fence_wait(q, UINT64_MAX);
	iovt_stats_get(e, &b);
	printf("bad-ticket: iovt_queue_fence_wait(1000 of 1) = %d, (UINT64_MAX) = %d, bad_argument +%llu\n",
	       rc, rc_max,
	       (unsigned long long)(b.errors[IOVT_ERR_BAD_ARGUMENT] - a.errors[IOVT_ERR_BAD_ARGUMENT]));
	CHECK(rc == -EINVAL && rc_max == -EINVAL);
	CHECK(b.errors[IOVT_ERR_BAD_ARGUMENT] - a.errors[IOVT_ERR_BAD_ARGUMENT] == 2);
	CHECK(iovt_queue_fence_wait(q, 1) == 0); /* a ticket handed out: as before */
	CHECK(iovt_queue_fence_wait(q, 0) == 0);
	iovt_queue_destroy(q);
	iovt_queue_destroy(NULL); /* nothing, as iovt_engine_destroy(NULL) */
	iovt_engine_destroy(e);
}

/* ---- destroy-stats ---- */

static atomic_int sb_entered, sb_release;
static int slow_unmap(void *ctx, uint64_t iova, uint64_t size, uint64_t *unmapped)
{
	(void)ctx;
	(void)iova;
	*unmapped = size;
	if (atomic_load(&sb_release))
		return 0;
	atomic_store(&sb_entered, 1);
	while (!atomic_load(&sb_release))
		usleep(1000);
	return 0;
}
static const struct iovt_sink_ops slow_ops = { .unmap = slow_unmap };
static struct iovt_engine *sb_e;
static struct iovt_queue *sb_q;

static void *sb_poller(void *arg)
{
	(void)arg;
	iovt_thread_register();
	CHECK(iovt_poll(sb_e, 0, 1, 64) >= 1); /* applies the fence: blocks in the sink */
	iovt_thread_unregister();
	return NULL;
}

static void *sb_destroyer(void *arg)
{
	(void)arg;
	iovt_thread_register();
	iovt_queue_destroy(sb_q);
	iovt_thread_unregister();
	return NULL;
}

static void destroy_stats(void)
{
	CHECK(iovt_engine_create(NULL, &sb_e) == 0);
	struct iovt_domain *d1, *d2;
	struct iovt_domain_config c1 = { .did = 1, .addr_width = 39 }, c2 = { .did = 2, .addr_width = 39 };
	CHECK(iovt_domain_create(sb_e, &c1, &d1) == 0);
	CHECK(iovt_domain_create(sb_e, &c2, &d2) == 0);
	struct iovt_sink s = { .ops = &slow_ops, .name = "slow" };
	struct iovt_notifier *n;
	CHECK(iovt_notifier_attach(d2, IOVT_NOTIFY_UNMAP, &s, &n) == 0);
	CHECK(iovt_queue_create(sb_e, NULL, &sb_q) == 0);
	for (int i = 0; i < 100; i++) {
		CHECK(iovt_queue_psi(sb_q, 1, 0x1000 * (uint64_t)i, 0, false) == 0);
		CHECK(iovt_queue_fence(sb_q) == 0);
	}
	CHECK(iovt_queue_psi(sb_q, 2, 0x1000, 0, false) == 0);
	(void)iovt_queue_fence_post(sb_q); /* the producer posts nothing more */
	pthread_t p, dt;
	CHECK(pthread_create(&p, NULL, sb_poller, NULL) == 0);
	while (!atomic_load(&sb_entered))
		usleep(100);
	struct iovt_stats before, during, after;
	iovt_stats_get(sb_e, &before);
	CHECK(before.queues == 1);
	CHECK(pthread_create(&dt, NULL, sb_destroyer, NULL) == 0);
	/* until the destroy has taken the queue out of the table (it then waits
	 * for the poller's flag): a sample before that could not fail */
	do {
		usleep(1000);
		iovt_stats_get(sb_e, &during);
	} while (during.queues != 0);
	usleep(20 * 1000);
	iovt_stats_get(sb_e, &during);
	CHECK(!atomic_load(&sb_release) && during.queues == 0);
	atomic_store(&sb_release, 1);
	CHECK(pthread_join(p, NULL) == 0);
	CHECK(pthread_join(dt, NULL) == 0);
	iovt_stats_get(sb_e, &after);
	printf("destroy-stats: fences %llu -> %llu (during the destroy) -> %llu; "
	       "queue_items %llu -> %llu -> %llu\n",
	       (unsigned long long)before.fences, (unsigned long long)during.fences,
	       (unsigned long long)after.fences, (unsigned long long)before.queue_items,
	       (unsigned long long)during.queue_items, (unsigned long long)after.queue_items);
	CHECK(during.fences >= before.fences && after.fences >= during.fences);
	CHECK(during.queue_items >= before.queue_items && after.queue_items >= during.queue_items);
	CHECK(during.fences_inline >= before.fences_inline);
	CHECK(after.fences == 101 && after.queue_items == 202); /* every fence and item, once */
	iovt_engine_destroy(sb_e);
}

int main(int argc, char **argv)
{
	pthread_t wd;
	CHECK(pthread_create(&wd, NULL, watchdog, NULL) == 0);
	pthread_detach(wd);
	iovt_thread_register();
	const char *c = argc > 1 ? argv[1] : "";
	if (!strcmp(c, "touched-oom"))
		touched_oom();
	else if (!strcmp(c, "bad-ticket"))
		bad_ticket();
	else if (!strcmp(c, "destroy-stats"))
		destroy_stats();
	else {
		fprintf(stderr, "unknown case %s\n", c);
		return 2;
	}
	iovt_thread_unregister();
	return 0;
}
