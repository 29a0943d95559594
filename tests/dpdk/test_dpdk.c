/* SPDX-License-Identifier: MIT */
/*
 * dpdk: iovt on DPDK lcores (include/iovt_dpdk.h) with rte_ring queues.
 *
 * EAL without hugepages or devices, four lcores on the first two CPUs this
 * process may use: lcore 0 (main) and 2 on the first are producers, lcores 1
 * and 3 on the second run iovt_dpdk_pollers_start's pollers (poller 0 and 1
 * of 2).
 *
 *  - iovt_dpdk_pollers_start errors: n = 0, no ids, the main lcore, a lcore
 *    EAL does not run (-EINVAL); one lcore twice, started twice, a lcore
 *    another engine's poller keeps busy (-EBUSY, nothing left running);
 *    iovt_workers_start while pollers run (-EBUSY); stop, start again.
 *  - Two producers, each with its own IOVT_QUEUE_RTE_RING queue (the main
 *    lcore's may drain inline, group 0; lcore 2's is hand-off, group 1), edit
 *    their own IOVA slice of one shared domain of a simulated guest (every
 *    guestsim call under one mutex), post PSIs and DSIs (single and in
 *    bursts) and fence in three ways: iovt_queue_fence, fence_post + polling
 *    fence_done, fence_post + fence_wait. After each fence the model sink
 *    (read under the recorder's mutex), the engine's record (translate) and
 *    the guest truth agree over the range the producer edited (every 16th
 *    fence: its whole slice). The slices are 16 MiB apart, so no sink
 *    mapping ever spans both.
 *  - At the end: pollers stopped, iovt_fence, everything equal, the
 *    domain's PSI + DSI counts equal what was posted (nothing lost), the
 *    model rejected nothing.
 * A unique --file-prefix per run and --no-shconf keep parallel runs apart;
 * the runtime directory EAL makes is removed after rte_eal_cleanup.
 */
#define _LGPL_SOURCE /* URCU_TLS: whether an lcore is a registered reader */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <urcu/urcu-memb.h>
#include <time.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_pause.h>

#include "check.h"
#include "eal_test.h"
#include "guestsim.h"
#include "iovt.h"
#include "iovt_dpdk.h"
#include "iovt_model.h"
#include "locked_model.h"

CHECK_SEED_STORAGE;

/* EAL is not instrumented: tell TSan that a launch orders what came before
 * it with the lcore's run, and the run's end with rte_eal_wait_lcore. */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TEST_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__) || defined(TEST_TSAN)
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define handed(p) __tsan_release(p)
#define taken(p) __tsan_acquire(p)
#else
#define handed(p) ((void)(p))
#define taken(p) ((void)(p))
#endif

#define K 0x1000ull
#define M1 0x100000ull
#define NPROD 2
#define SLICE (16 * M1)      /* producer i edits IOVAs [i * 2 * SLICE, + SLICE) */
#define GPA_SPAN (64 * M1)   /* producer i maps to gpa i * GPA_SPAN + offset (+ ALT) */
#define ALT (16 * M1)
#define FULL_CHECK_EVERY 16

static struct guestsim *gs;
static struct gs_domain *gd;
static pthread_mutex_t gs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct iovt_engine *eng;
static struct iovt_domain *dom;
static struct locked_model rec; /* the domain's model sink, read by the producers */
static uint64_t seed;
static const uint16_t DID = 5;

struct producer {
	unsigned idx;
	struct iovt_queue *q;
	unsigned iters;
	uint64_t psis, dsis, fences, checks, full_checks, async_polls;
	uint64_t lo, hi; /* the slice */
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Model sink, engine record and guest truth agree on [lo, hi). */
static void check_range(uint64_t lo, uint64_t hi)
{
	struct agree_target t = { gs, gd, &gs_lock, &rec, dom };
	char who[32];
	snprintf(who, sizeof(who), "dpdk: lcore %u", rte_lcore_id());
	agree_check(&t, lo, hi, who);
}

static int producer_main(void *arg)
{
	struct producer *p = arg;
	taken(p);
	uint64_t s = seed + (p->idx + 1) * 0x9e3779b97f4a7c15ull;
	uint64_t gbase = p->idx * GPA_SPAN;

	iovt_thread_register();
	for (unsigned it = 0; it < p->iters; it++) {
		struct iovt_inval v[8];
		unsigned nv = 0;
		unsigned nedits = 1 + (unsigned)gs_rand_below(&s, 6);
		bool burst = gs_rand_below(&s, 2);
		uint64_t lo = UINT64_MAX, hi = 0;
		for (unsigned i = 0; i < nedits; i++) {
			uint64_t off = gs_rand_below(&s, SLICE / K) * K;
			uint64_t size = (1 + gs_rand_below(&s, 48)) * K;
			if (off + size > SLICE)
				size = SLICE - off;
			uint64_t iova = p->lo + off;
			pthread_mutex_lock(&gs_lock);
			if (gs_rand_below(&s, 3) == 0) {
				CHECK(gs_unmap(gd, iova, size) == 0);
			} else {
				uint64_t gpa = gbase + off + (gs_rand_below(&s, 2) ? ALT : 0);
				uint32_t perm = 1 + (uint32_t)gs_rand_below(&s, 3);
				CHECK(gs_map(gd, iova, gpa, size, perm, GS_LEAF_4K) == 0);
			}
			pthread_mutex_unlock(&gs_lock);
			lo = iova < lo ? iova : lo;
			hi = iova + size > hi ? iova + size : hi;
			if (gs_rand_below(&s, 64) == 0) {
				v[nv] = (struct iovt_inval){ .did = DID, .kind = IOVT_INVAL_DSI };
				p->dsis++;
			} else {
				v[nv] = psi_covering(DID, iova, size);
				p->psis++;
			}
			if (burst) {
				nv++;
			} else {
				CHECK_EQ(iovt_queue_post(p->q, v, 1), 0);
			}
		}
		if (burst)
			CHECK_EQ(iovt_queue_post(p->q, v, nv), 0);

		switch (gs_rand_below(&s, 3)) {
		case 0:
			CHECK_EQ(iovt_queue_fence(p->q), 0);
			break;
		case 1: {
			/* Asynchronous: complete the guest's wait descriptor when a
			 * poller lcore is done with it. */
			uint64_t t = iovt_queue_fence_post(p->q);
			double end = now() + 60;
			for (unsigned spins = 0; !iovt_queue_fence_done(p->q, t); spins++) {
				if (spins % 1024 == 1023) {
					CHECK(now() < end);
					sched_yield();
				}
				rte_pause();
			}
			p->async_polls++;
			break;
		}
		default: {
			uint64_t t = iovt_queue_fence_post(p->q);
			CHECK_EQ(iovt_queue_fence_wait(p->q, t), 0);
			CHECK(iovt_queue_fence_done(p->q, t));
		}
		}
		p->fences++;
		if (it % FULL_CHECK_EVERY == FULL_CHECK_EVERY - 1) {
			check_range(p->lo, p->hi);
			p->full_checks++;
		} else {
			check_range(lo, hi);
		}
		p->checks++;
	}
	iovt_thread_unregister();
	handed(p);
	return 0;
}

/* On lcore 2, as a host that registers its lcores once and keeps them. */
static int host_register(void *arg)
{
	(void)arg;
	iovt_thread_register();
	return URCU_TLS(urcu_memb_reader).registered ? 0 : -1;
}

static int host_still_registered(void *arg)
{
	(void)arg;
	return URCU_TLS(urcu_memb_reader).registered ? 0 : -1;
}

int main(int argc, char **argv)
{
	(void)argc;
	seed = check_pick_seed("dpdk");
	CHECK(iovt_dpdk_available());

	/* Producers on the first CPU we may use, pollers on the second (or all
	 * on one CPU where there is only one): eal_test.h. */
	char *eal[9];
	int eal_argc = eal_test_args("dpdk", argv[0], eal);
	{
		/* Before rte_eal_init: refused (-EINVAL), nothing launched. It
		 * wrote into fd 0 and waited on it (DPDK's pipes unopened). */
		iovt_thread_register();
		struct iovt_engine *e0;
		CHECK_EQ(iovt_engine_create(NULL, &e0), 0);
		const unsigned lc1[1] = { 1 };
		CHECK_EQ(iovt_dpdk_pollers_start(e0, lc1, 1), -EINVAL);
		struct iovt_stats st;
		iovt_stats_get(e0, &st);
		CHECK_EQ(st.errors[IOVT_ERR_BAD_ARGUMENT], 1);
		iovt_engine_destroy(e0);
	}
	eal_test_init("dpdk", eal_argc, eal);
	iovt_thread_register();

	gs = gs_create(1, 256 * M1, 32 * M1);
	CHECK(gs);
	CHECK(NPROD * GPA_SPAN <= gs_region_data_size(gs, 0));
	eng = conc_engine(gs);
	gd = conc_domain(gs, eng, DID, &dom);
	struct iovt_model_config mc = { .flavor = IOVT_MODEL_TYPE1, .multi_unmap = true };
	struct iovt_sink sink;
	locked_model_init(&rec, &mc, 0, &sink);
	struct iovt_notifier *n;
	CHECK(iovt_notifier_attach(dom, IOVT_NOTIFY_IOTLB_EVENTS, &sink, &n) == 0);

	/* pollers_start errors. */
	const unsigned lc_pollers[2] = { 1, 3 };
	const unsigned lc_main[1] = { 0 }, lc_off[1] = { 7 }, lc_big[1] = { RTE_MAX_LCORE + 5 };
	const unsigned lc_mixed[2] = { 1, 0 };
	struct iovt_stats st0, st1;
	iovt_stats_get(eng, &st0);
	CHECK_EQ(iovt_dpdk_pollers_start(eng, lc_pollers, 0), -EINVAL);
	CHECK_EQ(iovt_dpdk_pollers_start(eng, NULL, 1), -EINVAL);
	CHECK_EQ(iovt_dpdk_pollers_start(eng, lc_main, 1), -EINVAL);
	CHECK_EQ(iovt_dpdk_pollers_start(eng, lc_off, 1), -EINVAL);
	CHECK_EQ(iovt_dpdk_pollers_start(eng, lc_big, 1), -EINVAL);
	CHECK_EQ(iovt_dpdk_pollers_start(eng, lc_mixed, 2), -EINVAL);
	CHECK_EQ(iovt_dpdk_pollers_start(eng, lc_pollers, 65), -EINVAL);
	iovt_stats_get(eng, &st1); /* each refusal counted, as the core's own are */
	CHECK_EQ(st1.errors[IOVT_ERR_BAD_ARGUMENT] - st0.errors[IOVT_ERR_BAD_ARGUMENT], 7);
	CHECK_EQ(rte_eal_get_lcore_state(1), WAIT); /* a refusal launched nothing */
	iovt_dpdk_pollers_stop(eng); /* none: nothing to do */

	/* The same lcore twice: the second launch fails, the first is stopped. */
	const unsigned lc_dup[2] = { 1, 1 };
	CHECK_EQ(iovt_dpdk_pollers_start(eng, lc_dup, 2), -EBUSY);
	CHECK_EQ(rte_eal_get_lcore_state(1), WAIT);

	CHECK_EQ(iovt_dpdk_pollers_start(eng, lc_pollers, 2), 0);
	CHECK_EQ(iovt_dpdk_pollers_start(eng, lc_pollers, 2), -EBUSY);
	CHECK_EQ(iovt_dpdk_pollers_start(eng, &lc_pollers[0], 1), -EBUSY);
	CHECK_EQ(iovt_workers_start(eng, 1), -EBUSY); /* not combined with pollers */
	{
		/* Another engine: lcore 1 is busy with the first one's poller;
		 * lcore 2 is free. */
		struct iovt_engine *e2;
		CHECK(iovt_engine_create(NULL, &e2) == 0);
		const unsigned lc2[1] = { 2 };
		CHECK_EQ(iovt_dpdk_pollers_start(e2, &lc_pollers[0], 1), -EBUSY);
		CHECK_EQ(rte_eal_get_lcore_state(2), WAIT);
		/* The host registered lcore 2 itself: a poller that ran and
		 * stopped there leaves it registered (it unregistered the
		 * host's lcore; found by review). */
		CHECK_EQ(rte_eal_remote_launch(host_register, NULL, 2), 0);
		CHECK_EQ(rte_eal_wait_lcore(2), 0);
		CHECK_EQ(iovt_dpdk_pollers_start(e2, lc2, 1), 0);
		CHECK(rte_eal_get_lcore_state(2) != WAIT);
		iovt_dpdk_pollers_stop(e2);
		CHECK_EQ(rte_eal_get_lcore_state(2), WAIT);
		CHECK_EQ(rte_eal_remote_launch(host_still_registered, NULL, 2), 0);
		CHECK_EQ(rte_eal_wait_lcore(2), 0);
		iovt_engine_destroy(e2); /* stops pollers too (none now) */
	}
	iovt_dpdk_pollers_stop(eng);
	CHECK_EQ(rte_eal_get_lcore_state(1), WAIT);
	CHECK_EQ(rte_eal_get_lcore_state(3), WAIT);
	CHECK_EQ(iovt_dpdk_pollers_start(eng, lc_pollers, 2), 0); /* again */

	/* The producers' queues. */
	struct producer pr[NPROD];
	double scale = check_scale();
	for (unsigned i = 0; i < NPROD; i++) {
		struct iovt_queue_config qc = { .capacity = 64, .group = i,
						.backend = IOVT_QUEUE_RTE_RING, .handoff = i == 1 };
		pr[i] = (struct producer){ .idx = i, .iters = (unsigned)(6000 * scale),
					   .lo = i * 2 * SLICE, .hi = i * 2 * SLICE + SLICE };
		CHECK(iovt_queue_create(eng, &qc, &pr[i].q) == 0);
	}
	struct iovt_stats e0;
	iovt_stats_get(eng, &e0);
	double t0 = now();
	handed(&pr[1]);
	CHECK_EQ(rte_eal_remote_launch(producer_main, &pr[1], 2), 0);
	CHECK_EQ(producer_main(&pr[0]), 0);
	CHECK_EQ(rte_eal_wait_lcore(2), 0);
	taken(&pr[1]);
	double t1 = now();
	iovt_dpdk_pollers_stop(eng);

	/* Everything applied, nothing lost. */
	CHECK_EQ(iovt_fence(eng), 0);
	uint64_t psis = 0, dsis = 0, fences = 0, checks = 0, fulls = 0, asyncs = 0;
	for (unsigned i = 0; i < NPROD; i++) {
		psis += pr[i].psis, dsis += pr[i].dsis, fences += pr[i].fences;
		checks += pr[i].checks, fulls += pr[i].full_checks, asyncs += pr[i].async_polls;
		CHECK_EQ(pr[i].checks, pr[i].iters);
		check_range(pr[i].lo, pr[i].hi);
	}
	check_range(0, 4 * SLICE);
	CHECK_EQ(gs_truth_check(gd), 0);
	struct iovt_stats st, e1;
	iovt_domain_stats_get(dom, &st);
	iovt_stats_get(eng, &e1);
	CHECK_EQ(st.psi, psis);
	CHECK_EQ(st.dsi, dsis);
	CHECK_EQ(st.psi + st.dsi, psis + dsis); /* 0 lost invalidations */
	CHECK_EQ(st.extents, locked_model_count(&rec));
	uint64_t inl = e1.fences_inline - e0.fences_inline, drn = e1.fences_drained - e0.fences_drained;
	CHECK_EQ(inl + drn, fences);
	CHECK(drn > 0); /* the hand-off queue's fences all went to a poller */
	CHECK(drn >= pr[1].fences);
	printf("dpdk: %u producers (main lcore, lcore 2), 2 poller lcores: %" PRIu64 " PSIs, %" PRIu64
	       " DSIs, %" PRIu64 " fences (%" PRIu64 " inline, %" PRIu64 " by pollers, %" PRIu64
	       " async), %" PRIu64 " checks (%" PRIu64 " whole slice); %" PRIu64 " sink calls, %" PRIu64
	       " full waits, %.2f s\n",
	       NPROD, psis, dsis, fences, inl, drn, asyncs, checks, fulls, locked_model_calls(&rec),
	       e1.queue_full_waits - e0.queue_full_waits, t1 - t0);

	for (unsigned i = 0; i < NPROD; i++)
		iovt_queue_destroy(pr[i].q);
	iovt_engine_destroy(eng);
	locked_model_fini(&rec); /* checks it rejected nothing */
	gs_destroy(gs);
	iovt_thread_unregister();
	CHECK_EQ(rte_eal_cleanup(), 0);
	printf("dpdk: ok\n");
	return 0;
}
