/* SPDX-License-Identifier: MIT */
/*
 * lifecycle-thread-churn: the control calls the big lifecycle test does not
 * race, against the data path:
 *  - iovt_thread_register / iovt_thread_unregister: threads that come and
 *    go, each posting through its implicit queue (iovt_invalidate_*) and
 *    fencing (iovt_fence), and unregistering with invalidations still in
 *    its implicit queue half of the time (released to the pending sets);
 *  - iovt_stats_get / iovt_domain_stats_get from those threads and from a
 *    thread never registered;
 *  - a thread that posts to five engines in turn (the fifth evicts an
 *    implicit queue: its destroy) while another engine is created and
 *    destroyed;
 * while one control thread destroys and re-creates the domains, attaches
 * and detaches the MAP notifier, set_roots, removes and re-adds a data
 * region and stops and starts the workers, and readers translate. Under a
 * watchdog (a stall is the failure); ASan catches a use-after-free. At the
 * end: an iovt_fence with every thread gone leaves no domain object behind
 * (iovt_stats.domain_objects back to the number of live domains).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "guestsim.h"
#include "iovt.h"
#include "watchdog.h"

CHECK_SEED_STORAGE;

#define K 0x1000ull
#define M1 0x100000ull
#define NDOM 2
#define DID0 7
#define NCHURN 3
#define NREAD 1
#define NENG 5
#define STALL_SECONDS 10.0

enum { SLOT_CTL = 0, SLOT_STATS, SLOT_MULTI, SLOT_READ, SLOT_CHURN0 };

static struct guestsim *gs;
static struct gs_domain *gd;
static struct iovt_engine *eng;
static struct iovt_domain *_Atomic dom[NDOM];
static uint64_t root;
static atomic_int stop;
static atomic_ulong fences, lives, stat_reads, translates, multi_posts;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int accept_fn(void *arg, const struct iovt_event *ev)
{
	(void)arg;
	(void)ev;
	return 0;
}

static struct iovt_notifier *attach_map(struct iovt_domain *d)
{
	struct iovt_sink s;
	struct iovt_notifier *n = NULL;
	CHECK_EQ(iovt_callback_sink_init(&s, accept_fn, NULL, NULL), 0);
	int rc = iovt_notifier_attach(d, IOVT_NOTIFY_IOTLB_EVENTS, &s, &n);
	CHECK(rc == 0 || rc == -EFAULT); /* -EFAULT: region 1 is out */
	CHECK(n);
	return n;
}

/* A thread's life: register, posts and fences, stats, unregister. */
static void *churn_main(void *arg)
{
	unsigned idx = (unsigned)(uintptr_t)arg;
	uint64_t rng = check_seed ^ (idx + 11) * 0x9e3779b97f4a7c15ull;
	watchdog_expect(SLOT_CHURN0 + idx, "churn");
	while (!atomic_load(&stop)) {
		iovt_thread_register();
		unsigned n = 1 + (unsigned)gs_rand_below(&rng, 40);
		for (unsigned i = 0; i < n; i++) {
			uint64_t x = gs_rand(&rng);
			uint16_t did = (uint16_t)(DID0 + x % NDOM);
			int rc;
			if ((x >> 20) % 32 == 0)
				rc = iovt_invalidate_dsi(eng, did);
			else if ((x >> 20) % 97 == 1)
				rc = iovt_invalidate_global(eng);
			else
				rc = iovt_invalidate_psi(eng, did, (x >> 24) % 256 * K, (unsigned)(x >> 40) % 4,
							 false);
			CHECK(rc == 0 || rc == -ENOENT);
			if ((x >> 8) % 8 == 0) {
				rc = iovt_fence(eng);
				CHECK(rc == 0 || rc == -EFAULT);
				atomic_fetch_add(&fences, 1);
			}
		}
		if (gs_rand_below(&rng, 2)) {
			int rc = iovt_fence(eng);
			CHECK(rc == 0 || rc == -EFAULT);
			atomic_fetch_add(&fences, 1);
		}
		struct iovt_stats st;
		iovt_stats_get(eng, &st);
		struct iovt_domain *d = iovt_domain_lookup(eng, (uint16_t)(DID0 + gs_rand_below(&rng, NDOM)));
		if (d) {
			iovt_domain_stats_get(d, &st);
			iovt_domain_put(d);
		}
		iovt_thread_unregister(); /* half of the time with posts left in the queue */
		atomic_fetch_add(&lives, 1);
		watchdog_progress(SLOT_CHURN0 + idx);
	}
	watchdog_idle(SLOT_CHURN0 + idx);
	return NULL;
}

/* Never registered: stats only. */
static void *stats_main(void *arg)
{
	(void)arg;
	watchdog_expect(SLOT_STATS, "stats");
	while (!atomic_load(&stop)) {
		struct iovt_stats st;
		iovt_stats_get(eng, &st);
		atomic_fetch_add(&stat_reads, 1);
		watchdog_progress(SLOT_STATS);
	}
	watchdog_idle(SLOT_STATS);
	return NULL;
}

static void *reader_main(void *arg)
{
	(void)arg;
	uint64_t rng = check_seed ^ 0x1234567ull;
	iovt_thread_register();
	watchdog_expect(SLOT_READ, "reader");
	while (!atomic_load(&stop)) {
		struct iovt_domain *d = iovt_domain_lookup(eng, (uint16_t)(DID0 + gs_rand_below(&rng, NDOM)));
		if (!d)
			continue;
		for (unsigned i = 0; i < 32; i++) {
			struct iovt_extent x;
			int rc = iovt_translate(d, gs_rand_below(&rng, 256) * 3 * K, &x);
			CHECK(rc == 0 || rc == -ENOENT || rc == -ENODEV || rc == -EFAULT);
			atomic_fetch_add(&translates, 1);
		}
		iovt_domain_put(d);
		watchdog_progress(SLOT_READ);
	}
	watchdog_idle(SLOT_READ);
	iovt_thread_unregister();
	return NULL;
}

/* Five engines: each post to a new one evicts the least recently used
 * implicit queue; one of the five is destroyed and re-created meanwhile. */
static void *multi_main(void *arg)
{
	(void)arg;
	struct iovt_engine *es[NENG];
	struct iovt_domain *ds[NENG];
	iovt_thread_register();
	watchdog_expect(SLOT_MULTI, "multi-engine");
	for (unsigned i = 0; i < NENG; i++) {
		CHECK_EQ(iovt_engine_create(NULL, &es[i]), 0);
		const struct gs_region *g = gs_region(gs, 0);
		CHECK_EQ(iovt_guest_ram_add(es[i], g->gpa, g->size, g->hva, NULL), 0);
		struct iovt_domain_config dc = { .did = 1, .root_gpa = root, .addr_width = 48 };
		CHECK_EQ(iovt_domain_create(es[i], &dc, &ds[i]), 0);
	}
	for (unsigned round = 0; !atomic_load(&stop); round++) {
		for (unsigned i = 0; i < NENG; i++) {
			CHECK_EQ(iovt_invalidate_psi(es[i], 1, (round % 64) * K, 0, false), 0);
			int rc = iovt_invalidate_psi(eng, DID0, (round % 64) * K, 0, false);
			CHECK(rc == 0 || rc == -ENOENT); /* the shared engine too: a sixth implicit queue */
			atomic_fetch_add(&multi_posts, 1);
		}
		unsigned v = round % NENG;
		CHECK_EQ(iovt_fence(es[v]), 0);
		if (round % 7 == 3) {
			/* destroyed with this thread's implicit queue in it */
			iovt_engine_destroy(es[v]);
			CHECK_EQ(iovt_engine_create(NULL, &es[v]), 0);
			const struct gs_region *g = gs_region(gs, 0);
			CHECK_EQ(iovt_guest_ram_add(es[v], g->gpa, g->size, g->hva, NULL), 0);
			struct iovt_domain_config dc = { .did = 1, .root_gpa = root, .addr_width = 48 };
			CHECK_EQ(iovt_domain_create(es[v], &dc, &ds[v]), 0);
		}
		watchdog_progress(SLOT_MULTI);
	}
	watchdog_idle(SLOT_MULTI);
	iovt_thread_unregister();
	for (unsigned i = 0; i < NENG; i++)
		iovt_engine_destroy(es[i]);
	return NULL;
}

static void control_loop(double seconds)
{
	uint64_t rng = check_seed ^ 0xc0ffeeull;
	struct iovt_notifier *map[NDOM] = { 0 };
	const struct gs_region *r1 = gs_region(gs, 1);
	bool r1_in = true, workers = true;
	unsigned ops = 0;
	double end = now() + seconds;
	watchdog_expect(SLOT_CTL, "control");
	map[0] = attach_map(atomic_load(&dom[0]));
	while (now() < end || ops < 40) {
		unsigned si = (unsigned)gs_rand_below(&rng, NDOM);
		struct iovt_domain *d = atomic_load(&dom[si]);
		switch (gs_rand_below(&rng, 5)) {
		case 0: { /* destroy and re-create */
			int rc = iovt_domain_destroy(d);
			CHECK_EQ(rc, 0);
			map[si] = NULL;
			struct iovt_domain_config dc = { .did = (uint16_t)(DID0 + si), .root_gpa = root,
							 .addr_width = 48 };
			CHECK_EQ(iovt_domain_create(eng, &dc, &d), 0);
			atomic_store(&dom[si], d);
			if (gs_rand_below(&rng, 2))
				map[si] = attach_map(d);
			break;
		}
		case 1:
			if (map[si]) {
				CHECK_EQ(iovt_notifier_detach(map[si]), 0);
				map[si] = NULL;
			} else {
				map[si] = attach_map(d);
			}
			break;
		case 2: {
			int rc = iovt_domain_set_root(d, root);
			CHECK(rc == 0 || rc == -EFAULT);
			break;
		}
		case 3:
			if (r1_in) {
				CHECK_EQ(iovt_guest_ram_remove(eng, r1->gpa), 0);
			} else {
				CHECK_EQ(iovt_guest_ram_add(eng, r1->gpa, r1->size, r1->hva, NULL), 0);
				for (unsigned i = 0; i < NDOM; i++)
					(void)iovt_domain_set_root(atomic_load(&dom[i]), root);
			}
			r1_in = !r1_in;
			break;
		case 4:
			if (workers)
				iovt_workers_stop(eng);
			else
				CHECK_EQ(iovt_workers_start(eng, 1 + (unsigned)gs_rand_below(&rng, 2)), 0);
			workers = !workers;
			break;
		}
		ops++;
		watchdog_progress(SLOT_CTL);
	}
	if (!r1_in)
		CHECK_EQ(iovt_guest_ram_add(eng, r1->gpa, r1->size, r1->hva, NULL), 0);
	watchdog_idle(SLOT_CTL);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	check_pick_seed("lifecycle-thread-churn");
	double seconds = 4.0 * check_scale();
	if (seconds < 1)
		seconds = 1;
	iovt_thread_register();
	gs = gs_create(2, 32 * M1, 4 * M1);
	CHECK(gs);
	CHECK_EQ(iovt_engine_create(NULL, &eng), 0);
	for (unsigned i = 0; i < 2; i++) {
		const struct gs_region *g = gs_region(gs, i);
		CHECK_EQ(iovt_guest_ram_add(eng, g->gpa, g->size, g->hva, NULL), 0);
	}
	gd = gs_domain_create(gs, 48, false, false);
	CHECK(gd);
	root = gs_domain_root(gd);
	uint64_t r1 = gs_region(gs, 1)->gpa;
	for (uint64_t i = 0; i < 256; i++)
		CHECK_EQ(gs_map(gd, i * 3 * K, (i & 1 ? r1 : 0) + M1 + i * K, K, IOVT_PERM_RW, 0), 0);
	for (unsigned i = 0; i < NDOM; i++) {
		struct iovt_domain *d;
		struct iovt_domain_config dc = { .did = (uint16_t)(DID0 + i), .root_gpa = root,
						 .addr_width = 48 };
		CHECK_EQ(iovt_domain_create(eng, &dc, &d), 0);
		atomic_store(&dom[i], d);
	}
	CHECK_EQ(iovt_workers_start(eng, 1), 0);

	watchdog_start("lifecycle-thread-churn", STALL_SECONDS);
	pthread_t ct[NCHURN], st, rt, mt;
	for (unsigned i = 0; i < NCHURN; i++)
		CHECK(pthread_create(&ct[i], NULL, churn_main, (void *)(uintptr_t)i) == 0);
	CHECK(pthread_create(&st, NULL, stats_main, NULL) == 0);
	CHECK(pthread_create(&rt, NULL, reader_main, NULL) == 0);
	CHECK(pthread_create(&mt, NULL, multi_main, NULL) == 0);
	control_loop(seconds);
	atomic_store(&stop, 1);
	for (unsigned i = 0; i < NCHURN; i++)
		pthread_join(ct[i], NULL);
	pthread_join(st, NULL);
	pthread_join(rt, NULL);
	pthread_join(mt, NULL);

	watchdog_expect(SLOT_CTL, "main");
	int rc = iovt_fence(eng);
	CHECK(rc == 0 || rc == -EFAULT);
	CHECK_EQ(iovt_fence(eng), 0);
	watchdog_progress(SLOT_CTL);
	iovt_workers_stop(eng);
	/* Every reference the data path took is back: only the live domains. */
	struct iovt_stats s;
	for (int tries = 0;; tries++) {
		iovt_stats_get(eng, &s);
		if (s.domain_objects == NDOM || tries > 200)
			break;
		struct timespec ts = { 0, 5 * 1000 * 1000 };
		nanosleep(&ts, NULL); /* call_rcu frees come back in batches */
		watchdog_progress(SLOT_CTL);
	}
	printf("lifecycle-thread-churn: %lu thread lives, %lu fences, %lu stats reads, %lu translates, "
	       "%lu multi-engine posts; domain_objects %" PRIu64 "\n",
	       atomic_load(&lives), atomic_load(&fences), atomic_load(&stat_reads),
	       atomic_load(&translates), atomic_load(&multi_posts), (uint64_t)s.domain_objects);
	CHECK_EQ(s.domain_objects, (uint64_t)NDOM);
	CHECK(atomic_load(&lives) >= 10);
	watchdog_stop();
	iovt_engine_destroy(eng);
	gs_destroy(gs);
	iovt_thread_unregister();
	return 0;
}
