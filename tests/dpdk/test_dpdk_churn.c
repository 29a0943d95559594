/* SPDX-License-Identifier: MIT */
/*
 * dpdk-pollers-churn: iovt_dpdk_pollers_start / _stop against the data path
 * (the one control call lifecycle's tests do not race; found by review).
 *
 * EAL as the dpdk test has it (no hugepages, no devices): lcores 0 and 2 on
 * the first CPU this process may use, 1 and 3 on the second. The main lcore
 * (0) is the control thread; 1..3 are the pollers' worker lcores. Under a
 * watchdog (a stall is the failure, with every thread's backtrace):
 *  - 2 producers (plain threads), each on its own hand-off rte_ring queue
 *    (fences never drain on the posting thread), edit their own IOVA slice
 *    of a simulated guest, post PSIs and DSIs (single and bursts) and wait
 *    in four ways: iovt_queue_fence, fence_post + polling fence_done,
 *    fence_post + fence_wait, or post a fence and leave it (the next wait
 *    covers it, or the queue's destroy completes it), or no fence at all
 *    (invalidations left in the queue). After each wait: guest truth ==
 *    model sink == engine record over everything edited since the last one.
 *  - 1 thread translates in both slices: never an answer the guest never
 *    had (the IOVA's own GPA or its alternate).
 *  - the control thread, in a loop: stops the pollers or the engine's
 *    workers; leaves nothing draining for a moment (the hand-off fences
 *    wait), or applies everything with iovt_fence (once, or until each
 *    producer has completed two more waits with nothing else draining);
 *    starts pollers on a random subset of lcores 1..3 in a random order,
 *    or 1-2 engine workers (and, half of the time, waits until they alone
 *    have completed a wait of each producer); checks that pollers and workers exclude each other (-EBUSY); a start
 *    refused halfway (an lcore busy with the host's own work, or given
 *    twice: the pollers launched before it run a moment and are stopped);
 *    destroys and re-creates a producer's queue (new capacity and group)
 *    with invalidations and, half of the time, a fence its producer left in
 *    it (applied by the producer's next wait, on the new queue: checked
 *    there), while pollers or workers run or nothing does.
 * At the end: pollers stopped, iovt_fence; every ticketed fence posted was
 * completed (fences_drained), no PSI/DSI lost (the domain's counts), truth ==
 * model == record over both slices, no sink call ever ran on a producer
 * thread (hand-off), pollers and workers both applied fences, the model
 * rejected nothing; once the domain is destroyed, domain_objects is 0
 * (every reference the data path took is back).
 * Seconds: 4 x IOVT_TEST_SCALE (at least 1.5); stall: 10 s or
 * $IOVT_WATCHDOG_SECONDS.
 */
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
#include <time.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_pause.h>

#include "check.h"
#include "eal_test.h"
#include "guestsim.h"
#include "iovt.h"
#include "iovt_dpdk.h"
#include "iovt_model.h"
#include "locked_model.h"
#include "watchdog.h"

CHECK_SEED_STORAGE;

#define K 0x1000ull
#define M1 0x100000ull
#define NPROD 2
#define SLICE (16 * M1)    /* producer i edits IOVAs [i * 2 * SLICE, + SLICE) */
#define GPA_SPAN (64 * M1) /* producer i maps to gpa i * GPA_SPAN + offset (+ ALT) */
#define ALT (16 * M1)
#define NPOLL_LCORES 3 /* worker lcores 1..3 */
_Static_assert(1 + NPOLL_LCORES == EAL_TEST_LCORES, "the pollers' lcores are EAL's workers");
#define STALL_SECONDS 10.0

enum { SLOT_CTL = 0, SLOT_READ, SLOT_PROD0 };

static struct guestsim *gs;
static struct gs_domain *gd;
static pthread_mutex_t gs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct iovt_engine *eng;
static struct iovt_domain *dom;
static struct locked_model rec;
static struct iovt_sink rec_sink;
static const uint16_t DID = 5;
static atomic_int stop;
static atomic_int producers_done;
/* Each producer's completed waits, and whether it has finished. */
static atomic_ulong waits_done[NPROD];
static atomic_bool finished[NPROD];

/* Who called the sink: a poller lcore, the main lcore (the control
 * thread's iovt_fence and queue destroys), a producer (never: hand-off), or
 * another thread (an engine worker). */
enum { BY_POLLER, BY_CONTROL, BY_PRODUCER, BY_OTHER, BY_N };
static atomic_ulong sink_calls_by[BY_N];
static __thread bool is_producer;

/* A producer's queue: the producer holds `mu` from its first post of a
 * round to the end of its wait; the control thread holds it to destroy and
 * re-create the queue. Request r (`asked`, counted from 1): the producer
 * posts a last round without a wait, lets go and says so (`parked` = r),
 * and waits for the new queue (`released` = r). */
struct slot {
	pthread_mutex_t mu;
	struct iovt_queue *_Atomic q;
	atomic_uint asked, parked, released;
};
static struct slot slots[NPROD];

struct producer {
	unsigned idx;
	uint64_t lo, hi;
	uint64_t psis, dsis, tickets, waits, left_fences, unfenced, checks;
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void nap_us(unsigned us)
{
	struct timespec ts = { 0, (long)us * 1000 };
	nanosleep(&ts, NULL);
}

static void count_caller(void)
{
	unsigned lc = rte_lcore_id();
	unsigned by = is_producer ? BY_PRODUCER
		      : lc == 0	   ? BY_CONTROL
		      : lc >= 1 && lc <= NPOLL_LCORES ? BY_POLLER
						      : BY_OTHER;
	atomic_fetch_add_explicit(&sink_calls_by[by], 1, memory_order_relaxed);
}

static int w_map(void *ctx, const struct iovt_extent *m)
{
	(void)ctx;
	count_caller();
	return rec_sink.ops->map(rec_sink.ctx, m);
}

static int w_unmap(void *ctx, uint64_t iova, uint64_t size, uint64_t *unmapped)
{
	(void)ctx;
	count_caller();
	return rec_sink.ops->unmap(rec_sink.ctx, iova, size, unmapped);
}

static int w_unmap_all(void *ctx, uint64_t *unmapped)
{
	(void)ctx;
	count_caller();
	return rec_sink.ops->unmap_all(rec_sink.ctx, unmapped);
}

static const struct iovt_sink_ops w_ops = { w_map, w_unmap, w_unmap_all, NULL };

static void check_range(uint64_t lo, uint64_t hi, const char *who)
{
	struct agree_target t = { gs, gd, &gs_lock, &rec, dom };
	agree_check(&t, lo, hi, who);
}

static struct iovt_queue *new_queue(uint64_t *rng)
{
	static const unsigned caps[] = { 8, 64, 4096 };
	struct iovt_queue_config qc = { .capacity = caps[gs_rand_below(rng, 3)],
					.group = (unsigned)gs_rand_below(rng, 8),
					.backend = IOVT_QUEUE_RTE_RING,
					.handoff = true };
	struct iovt_queue *q;
	CHECK_EQ(iovt_queue_create(eng, &qc, &q), 0);
	return q;
}

/* One round of a producer on q (its slot held): guest edits, their PSIs
 * and DSIs, then a wait — or, when `leave`, none: a fence posted and left,
 * or no fence at all. *lo, *hi: what was edited since the last wait. */
static void produce(struct producer *p, struct iovt_queue *q, uint64_t *s, uint64_t *lo,
		    uint64_t *hi, bool leave, const char *who)
{
	uint64_t gbase = p->idx * GPA_SPAN;
	struct iovt_inval v[8];
	unsigned nv = 0;
	unsigned nedits = 1 + (unsigned)gs_rand_below(s, 6);
	bool burst = gs_rand_below(s, 2);
	for (unsigned i = 0; i < nedits; i++) {
		uint64_t off = gs_rand_below(s, SLICE / K) * K;
		uint64_t size = (1 + gs_rand_below(s, 48)) * K;
		if (off + size > SLICE)
			size = SLICE - off;
		uint64_t iova = p->lo + off;
		pthread_mutex_lock(&gs_lock);
		if (gs_rand_below(s, 3) == 0) {
			CHECK(gs_unmap(gd, iova, size) == 0);
		} else {
			uint64_t gpa = gbase + off + (gs_rand_below(s, 2) ? ALT : 0);
			uint32_t perm = 1 + (uint32_t)gs_rand_below(s, 3);
			CHECK(gs_map(gd, iova, gpa, size, perm, GS_LEAF_4K) == 0);
		}
		pthread_mutex_unlock(&gs_lock);
		*lo = iova < *lo ? iova : *lo;
		*hi = iova + size > *hi ? iova + size : *hi;
		if (gs_rand_below(s, 64) == 0) {
			v[nv] = (struct iovt_inval){ .did = DID, .kind = IOVT_INVAL_DSI };
			p->dsis++;
		} else {
			v[nv] = psi_covering(DID, iova, size);
			p->psis++;
		}
		if (burst)
			nv++;
		else
			CHECK_EQ(iovt_queue_post(q, v, 1), 0);
	}
	if (burst)
		CHECK_EQ(iovt_queue_post(q, v, nv), 0);

	/* At the end every edit is waited for. */
	unsigned how = atomic_load(&stop) ? 0 : (unsigned)gs_rand_below(s, 16);
	if (leave)
		how = 13 + (unsigned)gs_rand_below(s, 3);
	if (how < 4) {
		CHECK_EQ(iovt_queue_fence(q), 0);
	} else if (how < 8) {
		/* Asynchronous: polled until done; the watchdog is the bound. */
		uint64_t t = iovt_queue_fence_post(q);
		while (!iovt_queue_fence_done(q, t)) {
			sched_yield();
			rte_pause();
		}
	} else if (how < 13) {
		uint64_t t = iovt_queue_fence_post(q);
		CHECK_EQ(iovt_queue_fence_wait(q, t), 0);
		CHECK(iovt_queue_fence_done(q, t));
	} else if (how < 15) {
		(void)iovt_queue_fence_post(q); /* left: a later wait, or the destroy */
		p->left_fences++;
	} else {
		p->unfenced++; /* no fence: left in the queue */
	}
	if (how < 15)
		p->tickets++;
	if (how < 13) {
		p->waits++;
		atomic_fetch_add(&waits_done[p->idx], 1);
		check_range(*lo, *hi, who);
		p->checks++;
		*lo = UINT64_MAX, *hi = 0;
	}
}

static void *producer_main(void *arg)
{
	struct producer *p = arg;
	struct slot *sl = &slots[p->idx];
	uint64_t s = check_seed + (p->idx + 1) * 0x9e3779b97f4a7c15ull;
	char who[48];
	snprintf(who, sizeof(who), "dpdk-pollers-churn: producer %u", p->idx);
	uint64_t lo = UINT64_MAX, hi = 0;
	unsigned served = 0;

	is_producer = true;
	iovt_thread_register();
	watchdog_expect(SLOT_PROD0 + p->idx, who);
	while (!atomic_load(&stop) || lo < hi) {
		unsigned r = atomic_load(&sl->asked);
		if (r != served) {
			/* The control thread will destroy the queue: leave work
			 * in it, then let go until the new one is there. Its
			 * edits are checked after the next wait, on the new
			 * queue (the destroy moved them to the pending set). */
			pthread_mutex_lock(&sl->mu);
			produce(p, atomic_load(&sl->q), &s, &lo, &hi, true, who);
			pthread_mutex_unlock(&sl->mu);
			atomic_store(&sl->parked, r);
			while (atomic_load(&sl->released) != r) {
				sched_yield();
				watchdog_progress(SLOT_PROD0 + p->idx);
			}
			served = r;
			continue;
		}
		pthread_mutex_lock(&sl->mu);
		produce(p, atomic_load(&sl->q), &s, &lo, &hi, false, who);
		pthread_mutex_unlock(&sl->mu);
		watchdog_progress(SLOT_PROD0 + p->idx);
	}
	watchdog_idle(SLOT_PROD0 + p->idx);
	iovt_thread_unregister();
	atomic_store(&finished[p->idx], true);
	atomic_fetch_add(&producers_done, 1);
	return NULL;
}

static atomic_ulong translates, translated;

static void *reader_main(void *arg)
{
	(void)arg;
	uint64_t s = check_seed ^ 0x7e57ab1eull;
	const struct gs_region *r0 = gs_region(gs, 0);
	iovt_thread_register();
	watchdog_expect(SLOT_READ, "dpdk-pollers-churn: translate");
	while (atomic_load(&producers_done) < NPROD) {
		for (unsigned i = 0; i < 64; i++) {
			unsigned pi = (unsigned)gs_rand_below(&s, NPROD);
			uint64_t off = gs_rand_below(&s, SLICE / K) * K + gs_rand_below(&s, K);
			uint64_t iova = pi * 2 * SLICE + off;
			struct iovt_extent x;
			int rc = iovt_translate(dom, iova, &x);
			if (rc == -ENOENT)
				continue;
			CHECK_EQ(rc, 0);
			CHECK(x.iova <= iova && iova - x.iova < x.size);
			/* The guest only ever had gpa = base + off (+ ALT). */
			uint64_t gpa = x.gpa + (iova - x.iova);
			uint64_t want = pi * GPA_SPAN + off;
			CHECK(gpa == want || gpa == want + ALT);
			CHECK_EQ(x.hva + (iova - x.iova), (uint64_t)(uintptr_t)r0->hva + (gpa - r0->gpa));
			atomic_fetch_add_explicit(&translated, 1, memory_order_relaxed);
		}
		atomic_fetch_add_explicit(&translates, 64, memory_order_relaxed);
		watchdog_progress(SLOT_READ);
		sched_yield(); /* 2 CPUs: leave them to the producers and drainers */
	}
	watchdog_idle(SLOT_READ);
	iovt_thread_unregister();
	return NULL;
}

enum mode { NONE, POLLERS, WORKERS };

struct ctl_stats {
	unsigned poller_starts, worker_starts, stops, fences, idle_gaps, recreates,
		busy_checks, refused_starts, awaited;
	unsigned recreates_idle;
	unsigned lcores_used[NPOLL_LCORES + 1];
};

/*
 * Until every producer still running has completed k more waits, with only
 * what drains now: pollers or workers (fence_only false: this thread just
 * yields), or nothing but this thread's iovt_fence calls (fence_only; the
 * contract for a hand-off queue when no one else drains). No watchdog
 * progress meanwhile: a fence they never apply is the stall.
 */
static void await_waits(unsigned k, bool fence_only, struct ctl_stats *cs)
{
	unsigned long base[NPROD];
	for (unsigned i = 0; i < NPROD; i++)
		base[i] = atomic_load(&waits_done[i]);
	for (;;) {
		bool all = true;
		for (unsigned i = 0; i < NPROD; i++)
			if (!atomic_load(&finished[i]) && atomic_load(&waits_done[i]) < base[i] + k)
				all = false;
		if (all)
			break;
		if (fence_only) {
			CHECK_EQ(iovt_fence(eng), 0);
			cs->fences++;
		}
		sched_yield();
	}
	cs->awaited++;
}

static void stop_all(enum mode *m, struct ctl_stats *cs)
{
	if (*m == POLLERS)
		iovt_dpdk_pollers_stop(eng);
	else if (*m == WORKERS)
		iovt_workers_stop(eng);
	if (*m != NONE)
		cs->stops++;
	*m = NONE;
}

static void start_pollers(uint64_t *rng, struct ctl_stats *cs)
{
	unsigned ids[NPOLL_LCORES] = { 1, 2, 3 };
	for (unsigned i = NPOLL_LCORES - 1; i > 0; i--) { /* a random order */
		unsigned j = (unsigned)gs_rand_below(rng, i + 1), t = ids[i];
		ids[i] = ids[j];
		ids[j] = t;
	}
	unsigned n = 1 + (unsigned)gs_rand_below(rng, NPOLL_LCORES);
	CHECK_EQ(iovt_dpdk_pollers_start(eng, ids, n), 0);
	for (unsigned i = 0; i < n; i++)
		CHECK(rte_eal_get_lcore_state(ids[i]) != WAIT);
	cs->poller_starts++;
	cs->lcores_used[n]++;
}

/* The host's own work on an lcore: busy until released. */
static atomic_int host_release;

static int host_busy(void *arg)
{
	(void)arg;
	while (!atomic_load(&host_release))
		rte_pause();
	return 0;
}

/* A start that fails halfway: the lcores before a busy one (or one given
 * twice) were launched and run a moment, then are stopped; -EBUSY, nothing
 * left running, and the engine can start again. */
static void start_refused(uint64_t *rng, struct ctl_stats *cs)
{
	unsigned busy = 1 + (unsigned)gs_rand_below(rng, NPOLL_LCORES);
	unsigned other = 1 + (busy % NPOLL_LCORES);
	if (gs_rand_below(rng, 2)) {
		atomic_store(&host_release, 0);
		CHECK_EQ(rte_eal_remote_launch(host_busy, NULL, busy), 0);
		const unsigned ids[2] = { other, busy };
		CHECK_EQ(iovt_dpdk_pollers_start(eng, ids, 2), -EBUSY);
		CHECK_EQ(rte_eal_get_lcore_state(other), WAIT);
		atomic_store(&host_release, 1);
		CHECK_EQ(rte_eal_wait_lcore(busy), 0);
	} else {
		const unsigned ids[3] = { other, busy, other };
		CHECK_EQ(iovt_dpdk_pollers_start(eng, ids, 3), -EBUSY);
		CHECK_EQ(rte_eal_get_lcore_state(other), WAIT);
		CHECK_EQ(rte_eal_get_lcore_state(busy), WAIT);
	}
	cs->refused_starts++;
}

/* Destroys and re-creates producer i's queue, with what its producer left
 * in it (invalidations, half of the time a fence). Meanwhile, with nothing
 * draining, this thread applies what the producer may be waiting for. */
static void recreate(unsigned i, bool draining, uint64_t *rng, struct ctl_stats *cs)
{
	struct slot *sl = &slots[i];
	unsigned r = atomic_fetch_add(&sl->asked, 1) + 1;
	while (atomic_load(&sl->parked) != r && !atomic_load(&finished[i])) {
		/* Also while it leaves its last round: a full ring waits
		 * for a drainer too. */
		if (!draining) {
			CHECK_EQ(iovt_fence(eng), 0);
			cs->fences++;
		}
		sched_yield();
	}
	pthread_mutex_lock(&sl->mu);
	/* Leftovers go to the pending set, its fences complete. */
	iovt_queue_destroy(atomic_load(&sl->q));
	if (!draining)
		cs->recreates_idle++; /* leftovers: what the last iovt_fence above did not take */
	atomic_store(&sl->q, new_queue(rng));
	pthread_mutex_unlock(&sl->mu);
	atomic_store(&sl->released, r);
	cs->recreates++;
}

static void control_loop(double seconds, struct ctl_stats *cs)
{
	uint64_t rng = check_seed ^ 0xc0ffeeull;
	enum mode m = NONE;
	unsigned idle_rounds = 0;
	double end = now() + seconds;

	watchdog_expect(SLOT_CTL, "dpdk-pollers-churn: control");
	start_pollers(&rng, cs);
	m = POLLERS;
	for (unsigned ops = 0; atomic_load(&producers_done) < NPROD; ops++) {
		if (!atomic_load(&stop) && now() >= end && ops >= 100 && cs->poller_starts >= 20 &&
		    cs->worker_starts >= 5)
			atomic_store(&stop, 1); /* producers finish with a wait */
		switch (gs_rand_below(&rng, 9)) {
		case 0:
		case 1: /* stop, and leave the hand-off fences waiting a moment */
			stop_all(&m, cs);
			nap_us((unsigned)gs_rand_below(&rng, 500));
			cs->idle_gaps++;
			break;
		case 2: /* stop, apply everything from here */
			stop_all(&m, cs);
			if (gs_rand_below(&rng, 2)) {
				CHECK_EQ(iovt_fence(eng), 0);
				cs->fences++;
			} else {
				await_waits(2, true, cs);
			}
			break;
		case 3:
		case 4:
			stop_all(&m, cs);
			start_pollers(&rng, cs);
			m = POLLERS;
			if (gs_rand_below(&rng, 2))
				await_waits(1, false, cs); /* the pollers alone apply them */
			break;
		case 5:
			stop_all(&m, cs);
			CHECK_EQ(iovt_workers_start(eng, 1 + (unsigned)gs_rand_below(&rng, 2)), 0);
			cs->worker_starts++;
			m = WORKERS;
			if (cs->worker_starts <= 2 || gs_rand_below(&rng, 2))
				await_waits(1, false, cs); /* the workers alone */
			break;
		case 6: { /* the other one is refused while one runs, nothing changes */
			const unsigned lc[1] = { 1 + (unsigned)gs_rand_below(&rng, NPOLL_LCORES) };
			if (m == POLLERS) {
				CHECK_EQ(iovt_workers_start(eng, 1), -EBUSY);
				CHECK_EQ(iovt_dpdk_pollers_start(eng, lc, 1), -EBUSY);
				cs->busy_checks++;
			} else if (m == WORKERS) {
				CHECK_EQ(iovt_dpdk_pollers_start(eng, lc, 1), -EBUSY);
				CHECK_EQ(rte_eal_get_lcore_state(lc[0]), WAIT);
				cs->busy_checks++;
			}
			break;
		}
		case 7:
			recreate((unsigned)gs_rand_below(&rng, NPROD), m != NONE, &rng, cs);
			break;
		case 8:
			stop_all(&m, cs);
			start_refused(&rng, cs);
			break;
		}
		/* Never nothing for long: a hand-off fence waits for a drainer
		 * (iovt.h), and this thread is the one that provides it. */
		if (m == NONE && ++idle_rounds >= 3) {
			CHECK_EQ(iovt_fence(eng), 0);
			cs->fences++;
			idle_rounds = 0;
		} else if (m != NONE) {
			idle_rounds = 0;
			nap_us((unsigned)gs_rand_below(&rng, 400)); /* let them drain */
		}
		watchdog_progress(SLOT_CTL);
	}
	stop_all(&m, cs);
	watchdog_idle(SLOT_CTL);
}

int main(int argc, char **argv)
{
	(void)argc;
	setvbuf(stdout, NULL, _IOLBF, 0);
	check_pick_seed("dpdk-pollers-churn");
	CHECK(iovt_dpdk_available());
	double seconds = 4.0 * check_scale();
	if (seconds < 1.5)
		seconds = 1.5;

	char *eal[9];
	eal_test_init("dpdk-pollers-churn", eal_test_args("dpdk-churn", argv[0], eal), eal);
	iovt_thread_register();

	gs = gs_create(1, 256 * M1, 32 * M1);
	CHECK(gs);
	CHECK(NPROD * GPA_SPAN <= gs_region_data_size(gs, 0));
	eng = conc_engine(gs);
	gd = conc_domain(gs, eng, DID, &dom);
	struct iovt_model_config mc = { .flavor = IOVT_MODEL_TYPE1, .multi_unmap = true };
	locked_model_init(&rec, &mc, 0, &rec_sink);
	struct iovt_sink wrapped = rec_sink;
	wrapped.ops = &w_ops;
	if (!rec_sink.ops->unmap_all)
		wrapped.ops = &(const struct iovt_sink_ops){ w_map, w_unmap, NULL, NULL };
	wrapped.name = "counting-locked-model";
	struct iovt_notifier *n;
	CHECK_EQ(iovt_notifier_attach(dom, IOVT_NOTIFY_IOTLB_EVENTS, &wrapped, &n), 0);

	uint64_t rng = check_seed ^ 0x51075ull;
	struct producer pr[NPROD];
	for (unsigned i = 0; i < NPROD; i++) {
		pthread_mutex_init(&slots[i].mu, NULL);
		atomic_store(&slots[i].q, new_queue(&rng));
		pr[i] = (struct producer){ .idx = i, .lo = i * 2 * SLICE, .hi = i * 2 * SLICE + SLICE };
	}
	struct iovt_stats e0;
	iovt_stats_get(eng, &e0);

	watchdog_start("dpdk-pollers-churn", STALL_SECONDS);
	double t0 = now();
	pthread_t pt[NPROD], rt;
	for (unsigned i = 0; i < NPROD; i++)
		CHECK(pthread_create(&pt[i], NULL, producer_main, &pr[i]) == 0);
	CHECK(pthread_create(&rt, NULL, reader_main, NULL) == 0);
	struct ctl_stats cs = { 0 };
	control_loop(seconds, &cs);
	for (unsigned i = 0; i < NPROD; i++)
		pthread_join(pt[i], NULL);
	pthread_join(rt, NULL);
	double t1 = now();

	/* Nothing drains now (stop_all): everything applied from here. */
	watchdog_expect(SLOT_CTL, "dpdk-pollers-churn: main");
	for (unsigned i = 1; i <= NPOLL_LCORES; i++)
		CHECK_EQ(rte_eal_get_lcore_state(i), WAIT);
	CHECK_EQ(iovt_fence(eng), 0);
	uint64_t psis = 0, dsis = 0, tickets = 0, waits = 0, left = 0, unfenced = 0, checks = 0;
	for (unsigned i = 0; i < NPROD; i++) {
		psis += pr[i].psis, dsis += pr[i].dsis, tickets += pr[i].tickets;
		waits += pr[i].waits, left += pr[i].left_fences, unfenced += pr[i].unfenced;
		checks += pr[i].checks;
		check_range(pr[i].lo, pr[i].hi, "dpdk-pollers-churn: end");
	}
	check_range(0, 4 * SLICE, "dpdk-pollers-churn: end");
	CHECK_EQ(gs_truth_check(gd), 0);
	watchdog_progress(SLOT_CTL);

	/* Every fence completed once, every invalidation applied once. The
	 * queues still live hold none (their producers waited last). */
	for (unsigned i = 0; i < NPROD; i++) {
		struct iovt_queue *q = atomic_load(&slots[i].q);
		iovt_queue_destroy(q);
	}
	struct iovt_stats st, e1;
	iovt_domain_stats_get(dom, &st);
	iovt_stats_get(eng, &e1);
	CHECK_EQ(st.psi, psis);
	CHECK_EQ(st.dsi, dsis);
	CHECK_EQ(e1.fences_inline - e0.fences_inline, 0); /* hand-off: never on the poster */
	CHECK_EQ(e1.fences_drained - e0.fences_drained, tickets);
	CHECK_EQ(st.extents, locked_model_count(&rec));
	CHECK_EQ(atomic_load(&sink_calls_by[BY_PRODUCER]), 0);
	CHECK(atomic_load(&sink_calls_by[BY_POLLER]) > 0);
	CHECK(atomic_load(&sink_calls_by[BY_OTHER]) > 0); /* workers too */

	CHECK_EQ(iovt_notifier_detach(n), 0);
	CHECK_EQ(iovt_domain_destroy(dom), 0);
	/* Every reference the data path took is back. */
	struct iovt_stats s;
	for (int tries = 0;; tries++) {
		iovt_stats_get(eng, &s);
		if (s.domain_objects == 0 || tries > 400)
			break;
		nap_us(5000); /* call_rcu frees come back in batches */
		watchdog_progress(SLOT_CTL);
	}
	printf("dpdk-pollers-churn: %.2f s; control: %u poller starts (1/2/3 lcores: %u/%u/%u), "
	       "%u worker starts, %u stops, %u idle gaps, %u iovt_fence, %u queue re-creates "
	       "(%u with nothing draining), %u busy checks, %u starts refused halfway, %u waits awaited\n",
	       t1 - t0, cs.poller_starts, cs.lcores_used[1], cs.lcores_used[2], cs.lcores_used[3],
	       cs.worker_starts, cs.stops, cs.idle_gaps, cs.fences, cs.recreates, cs.recreates_idle,
	       cs.busy_checks, cs.refused_starts, cs.awaited);
	printf("dpdk-pollers-churn: producers: %" PRIu64 " PSIs, %" PRIu64 " DSIs, %" PRIu64
	       " fences (%" PRIu64 " waited, %" PRIu64 " left to a later wait or the destroy), %" PRIu64
	       " times nothing fenced, %" PRIu64 " checks; %lu translates (%lu mapped); sink calls: "
	       "%lu pollers, %lu workers, %lu control, 0 producers; domain_objects %" PRIu64 "\n",
	       psis, dsis, tickets, waits, left, unfenced, checks, atomic_load(&translates),
	       atomic_load(&translated), atomic_load(&sink_calls_by[BY_POLLER]),
	       atomic_load(&sink_calls_by[BY_OTHER]), atomic_load(&sink_calls_by[BY_CONTROL]),
	       (uint64_t)s.domain_objects);
	CHECK_EQ(s.domain_objects, 0);
	watchdog_stop();

	iovt_engine_destroy(eng);
	locked_model_fini(&rec); /* checks it rejected nothing */
	gs_destroy(gs);
	iovt_thread_unregister();
	CHECK_EQ(rte_eal_cleanup(), 0);
	printf("dpdk-pollers-churn: ok\n");
	return 0;
}
