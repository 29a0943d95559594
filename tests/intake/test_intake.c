/* SPDX-License-Identifier: MIT */
/*
 * intake: the per-producer queues of include/iovt.h ("Intake queues, workers
 * and polling"), per backend (wfcq always; rte_ring when built with DPDK,
 * else -ENOTSUP).
 *
 *   test_intake queue    single-threaded: posted order and fence tickets
 *                        (drained step by step with iovt_poll budgets), the
 *                        exact sink call sequence, capacity (exactly
 *                        `capacity` items fit: the next one waits), create
 *                        errors, validation (counted, skipped, the rest
 *                        posted), bursts past capacity with inline help,
 *                        poller groups, destroy with pending items,
 *                        counters (engine == own + domains + queues, kept
 *                        across domain and queue destroy).
 *   test_intake threads  workers (start/stop errors, restart, hand-off and
 *                        asynchronous fences applied by the worker), a full
 *                        hand-off queue waiting on a worker and on a slow
 *                        poller thread, and two producers (a hand-off queue
 *                        and an inline-capable one) against two poller
 *                        threads, then against two workers, with random
 *                        fences (sync, async + fence_done, post + wait),
 *                        each checking its domain against the guest truth
 *                        after every fence; nothing lost (PSI/DSI counts).
 *
 * Every domain's MAP sink is a model sink (VFIO type1 rules, rejects
 * anything wrong) behind a recorder that logs each call under a mutex, so a
 * test thread may read the model while a drainer thread calls it.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "guestsim.h"
#include "iovt.h"
#include "iovt_dpdk.h"
#include "iovt_model.h"
#include "locked_model.h"

CHECK_SEED_STORAGE;

#define K 0x1000ull
#define M1 0x100000ull
#define NDOM 4
#define DOM_SPAN (32 * M1) /* guest RAM per domain: gpa = base + iova (+ ALT) */
#define ALT (16 * M1)
#define AREA (16 * M1)     /* IOVAs [0, AREA) of each domain */
#define MAX_EVENTS 8192 /* calls logged per domain */

/* ------------------------------------------------------------------------ */
/* A world: one simulated guest, an engine, NDOM domains                     */

struct wdom {
	struct gs_domain *gd;
	struct iovt_domain *d;
	struct iovt_notifier *n;
	struct locked_model *rec; /* the domain's model sink, logging its calls */
	uint16_t did;
	uint64_t base;
};

struct world {
	struct guestsim *gs;
	struct iovt_engine *e;
	struct wdom dom[NDOM];
};

static pthread_mutex_t gs_lock = PTHREAD_MUTEX_INITIALIZER; /* guestsim is not thread-safe */
static uint64_t seed;

static void world_create(struct world *w)
{
	memset(w, 0, sizeof(*w));
	w->gs = gs_create(1, 256 * M1, 32 * M1);
	CHECK(w->gs);
	w->e = conc_engine(w->gs);
	CHECK(NDOM * DOM_SPAN <= gs_region_data_size(w->gs, 0));
	for (unsigned i = 0; i < NDOM; i++) {
		struct wdom *wd = &w->dom[i];
		wd->did = (uint16_t)(1 + i);
		wd->base = i * DOM_SPAN;
		wd->gd = conc_domain(w->gs, w->e, wd->did, &wd->d);
		wd->rec = calloc(1, sizeof(*wd->rec));
		CHECK(wd->rec);
		struct iovt_model_config mc = { .flavor = IOVT_MODEL_TYPE1, .multi_unmap = true };
		struct iovt_sink s;
		locked_model_init(wd->rec, &mc, MAX_EVENTS, &s);
		CHECK(iovt_notifier_attach(wd->d, IOVT_NOTIFY_IOTLB_EVENTS, &s, &wd->n) == 0);
		CHECK_EQ(locked_model_events(wd->rec), 0); /* an empty guest: the replay maps nothing */
	}
}

static void world_destroy(struct world *w)
{
	iovt_engine_destroy(w->e);
	for (unsigned i = 0; i < NDOM; i++) {
		locked_model_fini(w->dom[i].rec); /* checks it rejected nothing */
		free(w->dom[i].rec);
	}
	gs_destroy(w->gs);
}

static void gmap(struct wdom *wd, uint64_t iova, uint64_t size, uint64_t gpa, uint32_t perm)
{
	pthread_mutex_lock(&gs_lock);
	CHECK(gs_map(wd->gd, iova, gpa, size, perm, GS_LEAF_4K) == 0);
	pthread_mutex_unlock(&gs_lock);
}

static void gunmap(struct wdom *wd, uint64_t iova, uint64_t size)
{
	pthread_mutex_lock(&gs_lock);
	CHECK(gs_unmap(wd->gd, iova, size) == 0);
	pthread_mutex_unlock(&gs_lock);
}

static int qpsi(struct iovt_queue *q, const struct wdom *wd, uint64_t iova, uint64_t size)
{
	struct iovt_inval v = psi_covering(wd->did, iova, size);
	return iovt_queue_post(q, &v, 1);
}

/* Model sink, engine record (translate) and guest truth agree on [lo, hi). */
static void check_range(struct world *w, struct wdom *wd, uint64_t lo, uint64_t hi)
{
	struct agree_target t = { w->gs, wd->gd, &gs_lock, wd->rec, wd->d };
	char who[32];
	snprintf(who, sizeof(who), "intake: did %u", wd->did);
	agree_check(&t, lo, hi, who);
}

static void check_event(struct locked_model *r, unsigned i, enum iovt_event_type type, uint64_t iova,
			uint64_t size, uint64_t gpa, uint32_t perm)
{
	struct locked_model_event ev = locked_model_event(r, i);
	if (ev.type != type || ev.iova != iova || ev.size != size ||
	    (type == IOVT_EVENT_MAP && (ev.gpa != gpa || ev.perm != perm)))
		fprintf(stderr, "intake: event %u: %s 0x%" PRIx64 "+0x%" PRIx64 " gpa 0x%" PRIx64
			" perm %u; expected %s 0x%" PRIx64 "+0x%" PRIx64 " gpa 0x%" PRIx64 " perm %u\n",
			i, ev.type == IOVT_EVENT_MAP ? "MAP" : "UNMAP", ev.iova, ev.size, ev.gpa,
			ev.perm, type == IOVT_EVENT_MAP ? "MAP" : "UNMAP", iova, size, gpa, perm);
	CHECK_EQ(ev.type, type);
	CHECK_EQ(ev.iova, iova);
	CHECK_EQ(ev.size, size);
	if (type == IOVT_EVENT_MAP) {
		CHECK_EQ(ev.gpa, gpa);
		CHECK_EQ(ev.perm, perm);
	}
}

static struct iovt_stats stats(struct world *w)
{
	struct iovt_stats st;
	iovt_stats_get(w->e, &st);
	return st;
}

static struct iovt_stats dstats(struct wdom *wd)
{
	struct iovt_stats st;
	iovt_domain_stats_get(wd->d, &st);
	return st;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Waits (without draining) for a ticket that another thread applies. */
static void await_ticket(struct iovt_queue *q, uint64_t t)
{
	double end = now() + 30;
	while (!iovt_queue_fence_done(q, t)) {
		CHECK(now() < end);
		sched_yield();
	}
}

static const char *backend_name(enum iovt_queue_backend b)
{
	return b == IOVT_QUEUE_WFCQ ? "wfcq" : b == IOVT_QUEUE_RTE_RING ? "rte_ring" : "default";
}

/* ------------------------------------------------------------------------ */
/* Single-threaded: order, tickets, call sequence                            */

static void test_order(enum iovt_queue_backend b)
{
	struct world w;
	world_create(&w);
	struct wdom *wd = &w.dom[0];
	struct locked_model *r = wd->rec;
	struct iovt_queue *q;
	struct iovt_queue_config qc = { .capacity = 64, .backend = b };
	CHECK(iovt_queue_create(w.e, &qc, &q) == 0);

	/* Two PSIs, each followed by a fence, drained two items at a time:
	 * the first fence completes with only the first range applied. */
	uint64_t A = 1 * M1, B = 2 * M1;
	gmap(wd, A, 16 * K, wd->base + A, IOVT_PERM_RW);
	gmap(wd, B, 8 * K, wd->base + B, IOVT_PERM_R);
	CHECK(qpsi(q, wd, A, 16 * K) == 0);
	uint64_t t1 = iovt_queue_fence_post(q);
	CHECK(qpsi(q, wd, B, 8 * K) == 0);
	uint64_t t2 = iovt_queue_fence_post(q);
	CHECK_EQ(t1, 1);
	CHECK_EQ(t2, 2);
	CHECK(!iovt_queue_fence_done(q, t1) && !iovt_queue_fence_done(q, t2));
	CHECK_EQ(locked_model_events(r), 0); /* nothing applied before a drain */
	struct iovt_stats s0 = stats(&w);
	CHECK_EQ(iovt_poll(w.e, 0, 1, 2), 2);
	CHECK(iovt_queue_fence_done(q, t1));
	CHECK(!iovt_queue_fence_done(q, t2));
	CHECK_EQ(locked_model_events(r), 1);
	check_event(r, 0, IOVT_EVENT_MAP, A, 16 * K, wd->base + A, IOVT_PERM_RW);
	struct iovt_extent x;
	CHECK(iovt_translate(wd->d, B, &x) == -ENOENT); /* B's PSI is after the fence */
	CHECK_EQ(iovt_poll(w.e, 0, 1, 64), 2);
	CHECK(iovt_queue_fence_done(q, t2));
	CHECK_EQ(locked_model_events(r), 2);
	check_event(r, 1, IOVT_EVENT_MAP, B, 8 * K, wd->base + B, IOVT_PERM_R);
	CHECK_EQ(iovt_poll(w.e, 0, 1, 64), 0); /* idle */
	CHECK_EQ(iovt_queue_fence_wait(q, t2), 0); /* already done: returns at once */
	struct iovt_stats s1 = stats(&w);
	CHECK_EQ(s1.fences_drained - s0.fences_drained, 2);
	CHECK_EQ(s1.fences_inline - s0.fences_inline, 0);
	CHECK_EQ(s1.queue_items - s0.queue_items, 4);
	CHECK_EQ(s1.psi - s0.psi, 2);
	check_range(&w, wd, 0, 4 * M1);

	/* map, PSI, unmap, PSI, remap, PSI, fence: the sink gets the final state
	 * in one MAP, the fence runs inline on the posting thread. */
	uint64_t C = 4 * M1;
	unsigned n0 = locked_model_events(r);
	gmap(wd, C, 32 * K, wd->base + C, IOVT_PERM_RW);
	CHECK(qpsi(q, wd, C, 32 * K) == 0);
	gunmap(wd, C, 32 * K);
	CHECK(qpsi(q, wd, C, 32 * K) == 0);
	gmap(wd, C, 32 * K, wd->base + C + ALT, IOVT_PERM_R);
	CHECK(qpsi(q, wd, C, 32 * K) == 0);
	s0 = stats(&w);
	CHECK_EQ(iovt_queue_fence(q), 0);
	s1 = stats(&w);
	CHECK_EQ(s1.fences_inline - s0.fences_inline, 1);
	CHECK_EQ(s1.fences_drained - s0.fences_drained, 0);
	CHECK_EQ(s1.psi - s0.psi, 3);
	CHECK_EQ(locked_model_events(r), n0 + 1);
	check_event(r, n0, IOVT_EVENT_MAP, C, 32 * K, wd->base + C + ALT, IOVT_PERM_R);
	check_range(&w, wd, C - M1, C + M1);

	/* The same edits with a fence after each: MAP, UNMAP, MAP; then a remap
	 * over present entries: UNMAP, MAP. */
	uint64_t D = 8 * M1;
	n0 = locked_model_events(r);
	gmap(wd, D, 4 * K, wd->base + D, IOVT_PERM_RW);
	CHECK(qpsi(q, wd, D, 4 * K) == 0);
	CHECK_EQ(iovt_queue_fence(q), 0);
	gunmap(wd, D, 4 * K);
	CHECK(qpsi(q, wd, D, 4 * K) == 0);
	CHECK_EQ(iovt_queue_fence(q), 0);
	check_range(&w, wd, D, D + 4 * K);
	gmap(wd, D, 4 * K, wd->base + D + ALT, IOVT_PERM_RW);
	CHECK(qpsi(q, wd, D, 4 * K) == 0);
	CHECK_EQ(iovt_queue_fence(q), 0);
	gmap(wd, D, 4 * K, wd->base + D, IOVT_PERM_W);
	CHECK(qpsi(q, wd, D, 4 * K) == 0);
	uint64_t t = iovt_queue_fence_post(q);
	CHECK(!iovt_queue_fence_done(q, t));
	CHECK_EQ(iovt_queue_fence_wait(q, t), 0); /* drains inline */
	CHECK(iovt_queue_fence_done(q, t));
	CHECK_EQ(locked_model_events(r), n0 + 5);
	check_event(r, n0 + 0, IOVT_EVENT_MAP, D, 4 * K, wd->base + D, IOVT_PERM_RW);
	check_event(r, n0 + 1, IOVT_EVENT_UNMAP, D, 4 * K, 0, 0);
	check_event(r, n0 + 2, IOVT_EVENT_MAP, D, 4 * K, wd->base + D + ALT, IOVT_PERM_RW);
	check_event(r, n0 + 3, IOVT_EVENT_UNMAP, D, 4 * K, 0, 0);
	check_event(r, n0 + 4, IOVT_EVENT_MAP, D, 4 * K, wd->base + D, IOVT_PERM_W);
	check_range(&w, wd, D - M1, D + M1);

	/* A DSI and a global invalidation go through the queue too. */
	struct iovt_inval v[2] = { { .did = wd->did, .kind = IOVT_INVAL_DSI },
				   { .kind = IOVT_INVAL_GLOBAL } };
	gunmap(wd, A, 16 * K);
	s0 = stats(&w);
	CHECK_EQ(iovt_queue_post(q, v, 2), 0);
	CHECK_EQ(iovt_queue_fence(q), 0);
	s1 = stats(&w);
	CHECK_EQ(s1.dsi - s0.dsi, 1);
	CHECK_EQ(s1.global - s0.global, 1);
	check_range(&w, wd, 0, AREA);
	CHECK(iovt_translate(wd->d, A, &x) == -ENOENT);
	/* Tickets keep counting; a ticket not yet posted is not done. */
	CHECK(!iovt_queue_fence_done(q, iovt_queue_fence_post(q) + 1));
	CHECK_EQ(iovt_fence(w.e), 0);

	iovt_queue_destroy(q);
	world_destroy(&w);
	printf("intake: %s: posted order, tickets and sink call sequence ok\n", backend_name(b));
}

/* ------------------------------------------------------------------------ */
/* Capacity and create errors                                                */

/* Posts `n` PSIs for domain 0's page 0 (one burst call). */
static void post_psis(struct iovt_queue *q, const struct wdom *wd, unsigned n)
{
	static struct iovt_inval v[4096];
	while (n) {
		unsigned m = n < 4096 ? n : 4096;
		for (unsigned i = 0; i < m; i++)
			v[i] = (struct iovt_inval){ .addr = (i % 64) * K, .did = wd->did,
						    .kind = IOVT_INVAL_PSI };
		CHECK_EQ(iovt_queue_post(q, v, m), 0);
		n -= m;
	}
}

static void test_capacity(enum iovt_queue_backend b)
{
	struct world w;
	world_create(&w);
	struct wdom *wd = &w.dom[0];
	struct iovt_queue *q;

	/* Create errors. */
	struct iovt_queue_config bad[] = {
		{ .capacity = 1, .backend = b },
		{ .capacity = (1u << 24) + 1, .backend = b },
		{ .capacity = UINT32_MAX, .backend = b },
		{ .capacity = 16, .backend = (enum iovt_queue_backend)7 },
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		q = (struct iovt_queue *)&bad; /* must stay untouched on error */
		CHECK_EQ(iovt_queue_create(w.e, &bad[i], &q), -EINVAL);
		CHECK(q == (struct iovt_queue *)&bad);
	}

	/* Exactly `capacity` items fit without a wait (no rounding up or
	 * down, whatever the backend); one more finds the queue full, and the
	 * poster (no one else drains it) drains it itself. */
	static const unsigned caps[] = { 2, 3, 31, 32, 33, 64, 100, 1000, 0 /* 4096 */, 5000 };
	uint64_t waits = 0;
	for (unsigned i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		unsigned c = caps[i] ? caps[i] : 4096;
		struct iovt_queue_config qc = { .capacity = caps[i], .backend = b };
		CHECK(iovt_queue_create(w.e, &qc, &q) == 0);
		struct iovt_stats s0 = dstats(wd), e0 = stats(&w);
		post_psis(q, wd, c);
		struct iovt_stats e1 = stats(&w);
		CHECK_EQ(e1.queue_full_waits - e0.queue_full_waits, 0);
		CHECK_EQ(e1.queue_items - e0.queue_items, 0); /* nothing drained yet */
		post_psis(q, wd, 1);
		e1 = stats(&w);
		CHECK_EQ(e1.queue_full_waits - e0.queue_full_waits, 1);
		CHECK_EQ(e1.queue_items - e0.queue_items, c); /* the poster drained them */
		/* Full again: a burst of c + 1 waits once (its first push fills it). */
		post_psis(q, wd, c - 1);
		e1 = stats(&w);
		CHECK_EQ(e1.queue_full_waits - e0.queue_full_waits, 1);
		post_psis(q, wd, 2);
		e1 = stats(&w);
		CHECK_EQ(e1.queue_full_waits - e0.queue_full_waits, 2);
		/* 2 items in it now: an inline fence pushes no item (it drains
		 * the ring and applies itself after it), so it never waits. */
		CHECK_EQ(iovt_queue_fence(q), 0);
		e1 = stats(&w);
		CHECK_EQ(e1.queue_full_waits - e0.queue_full_waits, 2);
		/* A posted fence is an item: it finds a queue of 2 holding 2 full. */
		post_psis(q, wd, 2);
		uint64_t t = iovt_queue_fence_post(q);
		CHECK_EQ(iovt_queue_fence_wait(q, t), 0);
		e1 = stats(&w);
		CHECK_EQ(e1.queue_full_waits - e0.queue_full_waits, c == 2 ? 3 : 2);
		waits += c == 2 ? 3 : 2;
		struct iovt_stats s1 = dstats(wd);
		CHECK_EQ(s1.psi - s0.psi, 2 * c + 4);
		iovt_queue_destroy(q);
	}
	/* The largest capacity is accepted (wfcq allocates chunks as it fills;
	 * rte_ring allocates it whole, so only at its smaller sizes). */
	if (b == IOVT_QUEUE_WFCQ) {
		struct iovt_queue_config qc = { .capacity = 1u << 24, .backend = b };
		CHECK(iovt_queue_create(w.e, &qc, &q) == 0);
		post_psis(q, wd, 5000);
		CHECK_EQ(iovt_queue_fence(q), 0);
		iovt_queue_destroy(q);
	}
	CHECK_EQ(stats(&w).queue_full_waits, waits);
	world_destroy(&w);
	printf("intake: %s: capacity exact, create errors ok\n", backend_name(b));
}

/* ------------------------------------------------------------------------ */
/* Validation                                                                */

static void test_validation(enum iovt_queue_backend b)
{
	struct world w;
	world_create(&w);
	struct wdom *wd = &w.dom[0];
	struct iovt_queue *q;
	struct iovt_queue_config qc = { .capacity = 16, .backend = b };
	CHECK(iovt_queue_create(w.e, &qc, &q) == 0);

	uint64_t A = 3 * M1, B = 5 * M1;
	gmap(wd, A, 4 * K, wd->base + A, IOVT_PERM_RW);
	gmap(wd, B, 2 * K, wd->base + B, IOVT_PERM_RW);
	struct iovt_inval v[] = {
		{ .addr = A, .did = wd->did, .kind = IOVT_INVAL_PSI, .am = 2 },           /* good */
		{ .addr = A, .did = 99, .kind = IOVT_INVAL_PSI },                         /* -ENOENT */
		{ .addr = A, .did = wd->did, .kind = IOVT_INVAL_PSI, .am = 53 },          /* -EINVAL */
		{ .addr = 1ull << 48, .did = wd->did, .kind = IOVT_INVAL_PSI },           /* -EINVAL */
		{ .did = 98, .kind = IOVT_INVAL_DSI },                                    /* -ENOENT */
		{ .did = wd->did, .kind = 0 },                                            /* -EINVAL */
		{ .addr = B + K, .did = wd->did, .kind = IOVT_INVAL_PSI, .am = 1, .ih = 1 }, /* good */
		{ .addr = (1ull << 48) - K, .did = wd->did, .kind = IOVT_INVAL_PSI, .am = 0 }, /* good */
	};
	struct iovt_stats e0 = stats(&w), d0 = dstats(wd);
	CHECK_EQ(iovt_queue_post(q, v, sizeof(v) / sizeof(v[0])), -ENOENT); /* the first error */
	struct iovt_stats e1 = stats(&w), d1 = dstats(wd);
	CHECK_EQ(e1.errors[IOVT_ERR_UNKNOWN_DOMAIN] - e0.errors[IOVT_ERR_UNKNOWN_DOMAIN], 2);
	CHECK_EQ(e1.errors[IOVT_ERR_BAD_INVALIDATION] - e0.errors[IOVT_ERR_BAD_INVALIDATION], 3);
	/* The bad PSIs of a known domain are also the domain's. */
	CHECK_EQ(d1.errors[IOVT_ERR_BAD_INVALIDATION] - d0.errors[IOVT_ERR_BAD_INVALIDATION], 2);
	CHECK_EQ(iovt_queue_fence(q), 0);
	d1 = dstats(wd);
	e1 = stats(&w);
	CHECK_EQ(d1.psi - d0.psi, 3); /* the good ones were posted */
	CHECK_EQ(d1.invalidations - d0.invalidations, 3);
	CHECK_EQ(e1.queue_items - e0.queue_items, 4); /* 3 PSIs + the fence */
	check_range(&w, wd, A - M1, B + M1);
	struct iovt_extent x;
	CHECK(iovt_translate(wd->d, A, &x) == 0 && x.size == 4 * K);
	CHECK(iovt_translate(wd->d, B, &x) == 0 && x.size == 2 * K);

	/* The first error in post order is the one returned. */
	struct iovt_inval v2[] = {
		{ .addr = A, .did = wd->did, .kind = IOVT_INVAL_PSI, .am = 200 },
		{ .addr = A, .did = 77, .kind = IOVT_INVAL_PSI },
	};
	CHECK_EQ(iovt_queue_post(q, v2, 2), -EINVAL);
	CHECK_EQ(iovt_queue_psi(q, wd->did, 0, 1000, false), -EINVAL); /* am past 255 too */
	CHECK_EQ(iovt_queue_psi(q, wd->did, 0, IOVT_PSI_MAX_AM + 1, false), -EINVAL);
	CHECK_EQ(iovt_queue_dsi(q, 4242), -ENOENT);
	CHECK_EQ(iovt_queue_post(q, v, 0), 0);
	/* am = max: the whole domain, accepted. */
	gunmap(wd, A, 4 * K);
	CHECK_EQ(iovt_queue_psi(q, wd->did, (1ull << 48) - K, IOVT_PSI_MAX_AM, false), 0);
	CHECK_EQ(iovt_queue_fence(q), 0);
	check_range(&w, wd, A - M1, B + M1);
	CHECK(iovt_translate(wd->d, A, &x) == -ENOENT);
	e1 = stats(&w);
	CHECK_EQ(e1.errors[IOVT_ERR_UNKNOWN_DOMAIN] - e0.errors[IOVT_ERR_UNKNOWN_DOMAIN], 4);
	CHECK_EQ(e1.errors[IOVT_ERR_BAD_INVALIDATION] - e0.errors[IOVT_ERR_BAD_INVALIDATION], 6);
	d1 = dstats(wd);
	CHECK_EQ(d1.psi - d0.psi, 4);

	/* A domain destroyed between post and drain: skipped and counted. */
	struct wdom *wd3 = &w.dom[3];
	CHECK_EQ(iovt_queue_psi(q, wd3->did, 0, 0, false), 0);
	CHECK_EQ(iovt_domain_destroy(wd3->d), 0);
	struct iovt_stats e2 = stats(&w);
	CHECK_EQ(iovt_queue_fence(q), 0);
	/* Accepted at post: counted as a PSI and as stale at drain, not as an error. */
	struct iovt_stats e3 = stats(&w);
	CHECK_EQ(e3.errors[IOVT_ERR_UNKNOWN_DOMAIN] - e2.errors[IOVT_ERR_UNKNOWN_DOMAIN], 0);
	CHECK_EQ(e3.stale_domain - e2.stale_domain, 1);
	CHECK_EQ(e3.psi - e2.psi, 1);
	CHECK_EQ(e3.invalidations - e2.invalidations, 1);
	CHECK_EQ(iovt_queue_psi(q, wd3->did, 0, 0, false), -ENOENT); /* the width cache saw it go */

	iovt_queue_destroy(q);
	world_destroy(&w);
	printf("intake: %s: validation counted, good items posted\n", backend_name(b));
}

/* ------------------------------------------------------------------------ */
/* Bursts past capacity, helped inline                                       */

static void test_burst_inline(enum iovt_queue_backend b)
{
	struct world w;
	world_create(&w);
	struct wdom *wd = &w.dom[1];
	struct iovt_queue *q;
	struct iovt_queue_config qc = { .capacity = 16, .backend = b };
	CHECK(iovt_queue_create(w.e, &qc, &q) == 0);
	uint64_t s = seed ^ 0xb0b;

	enum { N = 1000 };
	static struct iovt_inval v[N];
	unsigned psis = 0, dsis = 0;
	for (unsigned i = 0; i < N; i++) {
		uint64_t iova = gs_rand_below(&s, AREA / K) * K;
		uint64_t size = (1 + gs_rand_below(&s, 8)) * K;
		if (iova + size > AREA)
			size = AREA - iova;
		if (gs_rand_below(&s, 4))
			gmap(wd, iova, size, wd->base + iova + (gs_rand_below(&s, 2) ? ALT : 0),
			     1 + (uint32_t)gs_rand_below(&s, 3));
		else
			gunmap(wd, iova, size);
		if (i % 97 == 50) {
			v[i] = (struct iovt_inval){ .did = wd->did, .kind = IOVT_INVAL_DSI };
			dsis++;
		} else {
			v[i] = psi_covering(wd->did, iova, size);
			psis++;
		}
	}
	/* A fence posted before the burst is applied while the poster helps. */
	uint64_t t = iovt_queue_fence_post(q);
	struct iovt_stats e0 = stats(&w), d0 = dstats(wd);
	CHECK_EQ(iovt_queue_post(q, v, N), 0);
	CHECK(iovt_queue_fence_done(q, t));
	struct iovt_stats e1 = stats(&w);
	CHECK(e1.queue_full_waits - e0.queue_full_waits >= N / 32);
	/* The helping poster is the posting thread: its fence is an inline one. */
	CHECK_EQ(e1.fences_inline - e0.fences_inline, 1);
	CHECK_EQ(e1.fences_drained - e0.fences_drained, 0);
	CHECK_EQ(iovt_queue_fence(q), 0);
	struct iovt_stats d1 = dstats(wd);
	CHECK_EQ(d1.psi - d0.psi, psis);
	CHECK_EQ(d1.dsi - d0.dsi, dsis);
	check_range(&w, wd, 0, AREA);
	pthread_mutex_lock(&gs_lock);
	CHECK_EQ(gs_truth_check(wd->gd), 0);
	pthread_mutex_unlock(&gs_lock);
	iovt_queue_destroy(q);
	world_destroy(&w);
	printf("intake: %s: burst of %u into 16 slots: %" PRIu64 " full waits, nothing lost\n",
	       backend_name(b), N, e1.queue_full_waits - e0.queue_full_waits);
}

/* ------------------------------------------------------------------------ */
/* Poller groups, host-driven                                                */

static void test_poll_groups(enum iovt_queue_backend b)
{
	struct world w;
	world_create(&w);
	struct iovt_queue *q[NDOM];
	uint64_t t[NDOM];

	for (unsigned i = 0; i < NDOM; i++) {
		struct iovt_queue_config qc = { .capacity = 32, .group = i, .backend = b };
		CHECK(iovt_queue_create(w.e, &qc, &q[i]) == 0);
	}
	/* Arguments that select nothing drain nothing. */
	CHECK_EQ(iovt_poll(w.e, 0, 1, 100), 0);
	for (unsigned i = 0; i < NDOM; i++) {
		struct wdom *wd = &w.dom[i];
		gmap(wd, M1, 8 * K, wd->base + M1, IOVT_PERM_RW);
		CHECK(qpsi(q[i], wd, M1, 8 * K) == 0);
		t[i] = iovt_queue_fence_post(q[i]);
	}
	CHECK_EQ(iovt_poll(w.e, 2, 2, 100), 0);
	CHECK_EQ(iovt_poll(w.e, 0, 0, 100), 0);
	CHECK_EQ(iovt_poll(w.e, 0, 2, 0), 0);

	/* Poller 0 of 2: groups 0 and 2 only. */
	CHECK_EQ(iovt_poll(w.e, 0, 2, 100), 4);
	for (unsigned i = 0; i < NDOM; i++) {
		bool mine = i % 2 == 0;
		CHECK(iovt_queue_fence_done(q[i], t[i]) == mine);
		struct iovt_extent x;
		CHECK(locked_model_find(w.dom[i].rec, M1, &x) == mine);
		CHECK_EQ(locked_model_events(w.dom[i].rec), mine ? 1 : 0);
	}
	CHECK_EQ(iovt_poll(w.e, 0, 2, 100), 0);
	/* Poller 1 of 2, one item at a time: the budget is honoured. */
	CHECK_EQ(iovt_poll(w.e, 1, 2, 1), 1);
	CHECK(!iovt_queue_fence_done(q[1], t[1]) || !iovt_queue_fence_done(q[3], t[3]));
	CHECK_EQ(iovt_poll(w.e, 1, 2, 100), 3);
	CHECK_EQ(iovt_poll(w.e, 1, 2, 100), 0);
	for (unsigned i = 0; i < NDOM; i++) {
		CHECK(iovt_queue_fence_done(q[i], t[i]));
		check_range(&w, &w.dom[i], 0, 2 * M1);
	}
	/* Four pollers: poller 3 sees only group 3. */
	for (unsigned i = 0; i < NDOM; i++) {
		CHECK(qpsi(q[i], &w.dom[i], 0, K) == 0);
		t[i] = iovt_queue_fence_post(q[i]);
	}
	CHECK_EQ(iovt_poll(w.e, 3, 4, 100), 2);
	CHECK(iovt_queue_fence_done(q[3], t[3]));
	CHECK(!iovt_queue_fence_done(q[0], t[0]));
	/* iovt_fence drains every queue and completes their fences. */
	struct iovt_stats e0 = stats(&w);
	CHECK_EQ(iovt_fence(w.e), 0);
	for (unsigned i = 0; i < NDOM; i++)
		CHECK(iovt_queue_fence_done(q[i], t[i]));
	CHECK_EQ(stats(&w).fences_drained - e0.fences_drained, 3);
	CHECK_EQ(iovt_poll(w.e, 0, 1, 100), 0);
	for (unsigned i = 0; i < NDOM; i++)
		iovt_queue_destroy(q[i]);
	world_destroy(&w);
	printf("intake: %s: poller groups ok\n", backend_name(b));
}

/* ------------------------------------------------------------------------ */
/* Destroy with pending items                                                */

static void test_destroy_pending(enum iovt_queue_backend b)
{
	struct world w;
	world_create(&w);
	struct wdom *wd = &w.dom[2];
	struct iovt_queue *q;
	struct iovt_queue_config qc = { .capacity = 64, .backend = b };
	CHECK(iovt_queue_create(w.e, &qc, &q) == 0);

	uint64_t A = 1 * M1, B = 6 * M1;
	gmap(wd, A, 8 * K, wd->base + A, IOVT_PERM_RW);
	gmap(wd, B, 8 * K, wd->base + B, IOVT_PERM_RW);
	CHECK(qpsi(q, wd, A, 8 * K) == 0);
	uint64_t t = iovt_queue_fence_post(q);
	CHECK_EQ(t, 1);
	CHECK(qpsi(q, wd, B, 8 * K) == 0);
	CHECK_EQ(locked_model_events(wd->rec), 0);
	struct iovt_stats e0 = stats(&w), d0 = dstats(wd);
	iovt_queue_destroy(q);
	/* The fence in it completed: A is at the sink. */
	struct iovt_extent x;
	CHECK(locked_model_find(wd->rec, A, &x));
	CHECK_EQ(stats(&w).fences_drained - e0.fences_drained, 1);
	/* B went to the pending set: the next iovt_fence applies it. */
	CHECK_EQ(iovt_fence(w.e), 0);
	CHECK(locked_model_find(wd->rec, B, &x));
	struct iovt_stats d1 = dstats(wd);
	CHECK_EQ(d1.psi - d0.psi, 2);
	check_range(&w, wd, 0, AREA);

	/* Many items and no fence at all. */
	CHECK(iovt_queue_create(w.e, &qc, &q) == 0);
	for (unsigned i = 0; i < 40; i++) {
		uint64_t iova = 8 * M1 + i * 2 * K;
		gmap(wd, iova, K, wd->base + iova, IOVT_PERM_R);
		CHECK(qpsi(q, wd, iova, K) == 0);
	}
	iovt_queue_destroy(q);
	CHECK_EQ(iovt_fence(w.e), 0);
	check_range(&w, wd, 0, AREA);
	CHECK_EQ(dstats(wd).psi - d0.psi, 42);
	world_destroy(&w);
	printf("intake: %s: destroy with pending items loses nothing\n", backend_name(b));
}

/* ------------------------------------------------------------------------ */
/* Counters: the engine's figures are its own + its domains' + its queues'   */

/*
 * Each counter has one owner that adds without a locked instruction, and
 * the engine's figure is summed when read (engine_internal.h, struct
 * stat_counters). Checked: the engine's figures equal the sum over domains
 * (and queues) while they live, and stay what they were when a domain or a
 * queue is destroyed (folded into the engine's), on the fence's fast path
 * (the invalidations carried by the fence) and through the pending set.
 */
static void test_counters(enum iovt_queue_backend b)
{
	struct world w;
	world_create(&w);
	struct iovt_queue *q;
	struct iovt_queue_config qc = { .backend = b };
	CHECK(iovt_queue_create(w.e, &qc, &q) == 0);
	struct iovt_stats e0 = stats(&w), base = { 0 };
	for (unsigned i = 0; i < NDOM; i++) /* the attach replays: one window each */
		base.ranges_coalesced += dstats(&w.dom[i]).ranges_coalesced;
	unsigned fences = 0, psis = 0;

	for (unsigned i = 0; i < 24; i++) {
		struct wdom *wd = &w.dom[i % NDOM];
		uint64_t iova = 2 * M1 + (i / NDOM) * 2 * K;
		gmap(wd, iova, K, wd->base + iova, IOVT_PERM_RW);
		CHECK(qpsi(q, wd, iova, K) == 0); /* carried by the fence */
		psis++;
		if (i % 3 == 0) { /* two domains before one fence: one goes through pending */
			struct wdom *o = &w.dom[(i + 1) % NDOM];
			CHECK(qpsi(q, o, 12 * M1, K) == 0);
			psis++;
		}
		CHECK(iovt_queue_fence(q) == 0);
		fences++;
	}
	CHECK(iovt_invalidate_dsi(w.e, w.dom[1].did) == 0); /* the implicit queue + iovt_fence */
	CHECK(iovt_fence(w.e) == 0);
	struct iovt_stats e1 = stats(&w), sum = { 0 };
	for (unsigned i = 0; i < NDOM; i++) {
		struct iovt_stats d = dstats(&w.dom[i]);
		sum.invalidations += d.invalidations;
		sum.psi += d.psi;
		sum.dsi += d.dsi;
		sum.map_calls += d.map_calls;
		sum.ranges_coalesced += d.ranges_coalesced;
		sum.pages_mapped += d.pages_mapped;
	}
	CHECK_EQ(sum.psi, psis);
	CHECK_EQ(sum.dsi, 1);
	CHECK_EQ(sum.map_calls, 24);
	CHECK_EQ(e1.psi - e0.psi, sum.psi);
	CHECK_EQ(e1.dsi - e0.dsi, sum.dsi);
	CHECK_EQ(e1.invalidations - e0.invalidations, sum.invalidations);
	CHECK_EQ(e1.map_calls - e0.map_calls, sum.map_calls);
	CHECK_EQ(e1.pages_mapped - e0.pages_mapped, sum.pages_mapped);
	CHECK_EQ(e1.ranges_coalesced - e0.ranges_coalesced, sum.ranges_coalesced - base.ranges_coalesced);
	CHECK_EQ(e1.fences_inline - e0.fences_inline, fences);
	CHECK_EQ(e1.fences - e0.fences, fences + 1); /* + the iovt_fence */
	CHECK(e1.queue_items - e0.queue_items >= psis + fences);

	/* A destroyed domain's counters stay in the engine's (plus its UNMAPs). */
	struct iovt_stats d3 = dstats(&w.dom[3]);
	CHECK(d3.psi > 0 && d3.map_calls > 0);
	CHECK(iovt_domain_destroy(w.dom[3].d) == 0);
	w.dom[3].d = NULL;
	struct iovt_stats e2 = stats(&w);
	CHECK_EQ(e2.psi, e1.psi);
	CHECK_EQ(e2.invalidations, e1.invalidations);
	CHECK_EQ(e2.map_calls, e1.map_calls);
	CHECK_EQ(e2.pages_mapped, e1.pages_mapped);
	CHECK_EQ(e2.ranges_coalesced, e1.ranges_coalesced);
	CHECK(e2.unmap_calls > e1.unmap_calls); /* the destroy unmapped its extents */
	/* A destroyed queue's fence counters too. */
	iovt_queue_destroy(q);
	struct iovt_stats e3 = stats(&w);
	CHECK_EQ(e3.fences, e2.fences);
	CHECK_EQ(e3.fences_inline, e2.fences_inline);
	CHECK_EQ(e3.queue_items, e2.queue_items);
	CHECK_EQ(e3.queues, e2.queues - 1);
	world_destroy(&w);
	printf("intake: %s: counters: engine == own + domains + queues, kept across destroys\n",
	       backend_name(b));
}

/* ------------------------------------------------------------------------ */
/* The poster's own fence at the end of its ring, every way                  */

/*
 * drain_fence (engine/intake/drain.c) takes the strict-mode PSI + wait
 * straight and an empty ring's fence alone, and hands anything else to the
 * general drain with what it popped. Every way must count as the general
 * way counts (the items, and the inline fence as the item it would have
 * been) and leave the sink equal to the guest: a queue's inline fence after
 * one PSI, none, two for two domains, a DSI, a PSI whose domain went away
 * after the post; then the same through the implicit queue and iovt_fence
 * (whose fence is no item).
 */
static void test_fence_ways(enum iovt_queue_backend b)
{
	struct world w;
	world_create(&w);
	struct wdom *wd = &w.dom[0], *o = &w.dom[1], *gone = &w.dom[3];
	struct iovt_queue *q;
	struct iovt_queue_config qc = { .backend = b };
	CHECK(iovt_queue_create(w.e, &qc, &q) == 0);
	const uint64_t A = 4 * M1, B = 6 * M1;

	/* One PSI: the straight way. */
	struct iovt_stats e0 = stats(&w), d0 = dstats(wd), o0 = dstats(o);
	gmap(wd, A, K, wd->base + A, IOVT_PERM_RW);
	CHECK(qpsi(q, wd, A, K) == 0);
	CHECK_EQ(iovt_queue_fence(q), 0);
	struct iovt_stats e1 = stats(&w), d1 = dstats(wd), o1;
	CHECK_EQ(e1.queue_items - e0.queue_items, 2); /* the PSI + the fence */
	CHECK_EQ(e1.fences_inline - e0.fences_inline, 1);
	CHECK_EQ(e1.fences - e0.fences, 1);
	CHECK_EQ(d1.psi - d0.psi, 1);
	CHECK_EQ(d1.invalidations - d0.invalidations, 1);
	CHECK_EQ(e1.invalidations - e0.invalidations, 1);
	CHECK_EQ(d1.map_calls - d0.map_calls, 1);
	check_range(&w, wd, 0, AREA);

	/* An empty ring: the fence alone, still an item and an inline fence. */
	e0 = e1;
	CHECK_EQ(iovt_queue_fence(q), 0);
	e1 = stats(&w);
	CHECK_EQ(e1.queue_items - e0.queue_items, 1);
	CHECK_EQ(e1.fences_inline - e0.fences_inline, 1);
	CHECK_EQ(e1.map_calls + e1.unmap_calls, e0.map_calls + e0.unmap_calls);

	/* Two PSIs for two domains: both popped, the general way. */
	e0 = e1, d0 = dstats(wd), o0 = dstats(o);
	gunmap(wd, A, K);
	gmap(o, B, 2 * K, o->base + B, IOVT_PERM_R);
	CHECK(qpsi(q, wd, A, K) == 0);
	CHECK(qpsi(q, o, B, 2 * K) == 0);
	CHECK_EQ(iovt_queue_fence(q), 0);
	e1 = stats(&w), d1 = dstats(wd), o1 = dstats(o);
	CHECK_EQ(e1.queue_items - e0.queue_items, 3);
	CHECK_EQ(e1.fences_inline - e0.fences_inline, 1);
	CHECK_EQ(d1.unmap_calls - d0.unmap_calls, 1);
	CHECK_EQ(o1.map_calls - o0.map_calls, 1);
	CHECK_EQ(e1.invalidations - e0.invalidations, 2);
	check_range(&w, wd, 0, AREA);
	check_range(&w, o, 0, AREA);

	/* A DSI alone: one item popped, not a PSI: the general way. */
	e0 = e1, d0 = dstats(wd);
	gmap(wd, A, 3 * K, wd->base + A + ALT, IOVT_PERM_RW);
	struct iovt_inval dsi = { .did = wd->did, .kind = IOVT_INVAL_DSI };
	CHECK(iovt_queue_post(q, &dsi, 1) == 0);
	CHECK_EQ(iovt_queue_fence(q), 0);
	e1 = stats(&w), d1 = dstats(wd);
	CHECK_EQ(e1.queue_items - e0.queue_items, 2);
	CHECK_EQ(d1.dsi - d0.dsi, 1);
	CHECK_EQ(d1.map_calls - d0.map_calls, 1);
	check_range(&w, wd, 0, AREA);

	/* One PSI whose domain is destroyed between the post and the fence:
	 * accepted, stale, not an error; the general way counts it. */
	gmap(gone, A, K, gone->base + A, IOVT_PERM_RW);
	CHECK(qpsi(q, gone, A, K) == 0);
	CHECK(iovt_domain_destroy(gone->d) == 0);
	gone->d = NULL;
	e0 = stats(&w);
	CHECK_EQ(iovt_queue_fence(q), 0);
	e1 = stats(&w);
	CHECK_EQ(e1.queue_items - e0.queue_items, 2);
	CHECK_EQ(e1.stale_domain - e0.stale_domain, 1);
	CHECK_EQ(e1.invalidations - e0.invalidations, 1);
	CHECK_EQ(e1.map_calls, e0.map_calls);

	/* The implicit queue and iovt_fence: one PSI, none, two. */
	e0 = stats(&w), d0 = dstats(wd);
	gunmap(wd, A, 3 * K);
	CHECK(iovt_invalidate_psi(w.e, wd->did, A, 2, false) == 0);
	CHECK_EQ(iovt_fence(w.e), 0);
	e1 = stats(&w), d1 = dstats(wd);
	CHECK_EQ(e1.queue_items - e0.queue_items, 1); /* iovt_fence's fence is no item */
	CHECK_EQ(d1.psi - d0.psi, 1);
	CHECK_EQ(d1.unmap_calls - d0.unmap_calls, 1);
	check_range(&w, wd, 0, AREA);
	e0 = e1;
	CHECK_EQ(iovt_fence(w.e), 0);
	e1 = stats(&w);
	CHECK_EQ(e1.queue_items, e0.queue_items);
	e0 = e1, d0 = dstats(wd), o0 = dstats(o);
	gmap(wd, B, K, wd->base + B, IOVT_PERM_RW);
	gunmap(o, B, 2 * K);
	CHECK(iovt_invalidate_psi(w.e, wd->did, B, 0, false) == 0);
	CHECK(iovt_invalidate_psi(w.e, o->did, B, 1, false) == 0);
	CHECK_EQ(iovt_fence(w.e), 0);
	e1 = stats(&w), d1 = dstats(wd), o1 = dstats(o);
	CHECK_EQ(e1.queue_items - e0.queue_items, 2);
	CHECK_EQ(d1.map_calls - d0.map_calls, 1);
	CHECK_EQ(o1.unmap_calls - o0.unmap_calls, 1);
	check_range(&w, wd, 0, AREA);
	check_range(&w, o, 0, AREA);

	iovt_queue_destroy(q);
	world_destroy(&w);
	printf("intake: %s: the poster's fence: one PSI, none, two, a DSI, a stale PSI, implicit\n",
	       backend_name(b));
}

/* ------------------------------------------------------------------------ */
/* The coalescing window                                                     */

/*
 * A flood of one-page PSIs for one domain, from two queues, between fences:
 * one walk per merged range and one MAP per run, however many PSIs. The
 * guest maps 2 x 256 contiguous pages; queue A invalidates the first 256
 * page by page, queue B the second. A's own fence applies what A drained
 * (one range); iovt_fence then drains B and applies the rest (one range).
 * Then both queues flood the same 512 pages again (unmapped by the guest),
 * drained by a poller before one iovt_fence: both queues' PSIs land in the
 * same pending set and become one range and one UNMAP.
 */
static void test_coalescing(enum iovt_queue_backend b)
{
	struct world w;
	world_create(&w);
	struct wdom *wd = &w.dom[1];
	struct iovt_queue *qa, *qb;
	struct iovt_queue_config qc = { .capacity = 1024, .backend = b };
	CHECK(iovt_queue_create(w.e, &qc, &qa) == 0);
	CHECK(iovt_queue_create(w.e, &qc, &qb) == 0);

	const uint64_t A = 4 * M1, N = 256;
	gmap(wd, A, 2 * N * K, wd->base + A, IOVT_PERM_RW);
	struct iovt_stats d0 = dstats(wd);
	for (uint64_t i = 0; i < N; i++) {
		CHECK(qpsi(qa, wd, A + i * K, K) == 0);
		CHECK(qpsi(qb, wd, A + (N + i) * K, K) == 0);
	}
	CHECK_EQ(iovt_queue_fence(qa), 0);
	struct iovt_stats d1 = dstats(wd);
	CHECK_EQ(d1.psi - d0.psi, N);             /* A's PSIs only: B's are in B's ring */
	CHECK_EQ(d1.ranges_coalesced - d0.ranges_coalesced, 1);
	CHECK_EQ(d1.map_calls - d0.map_calls, 1);
	check_range(&w, wd, A, A + N * K);
	struct iovt_extent x;
	CHECK(iovt_translate(wd->d, A + N * K, &x) == -ENOENT);
	CHECK_EQ(iovt_fence(w.e), 0);
	struct iovt_stats d2 = dstats(wd);
	CHECK_EQ(d2.psi - d1.psi, N);
	CHECK_EQ(d2.ranges_coalesced - d1.ranges_coalesced, 1);
	CHECK_EQ(d2.map_calls - d1.map_calls, 1);
	check_range(&w, wd, A, A + 2 * N * K);

	/* Both queues over the same pages, drained by a poller, one fence. */
	gunmap(wd, A, 2 * N * K);
	for (uint64_t i = 0; i < 2 * N; i++) {
		CHECK(qpsi(qa, wd, A + i * K, K) == 0);
		CHECK(qpsi(qb, wd, A + (2 * N - 1 - i) * K, K) == 0);
	}
	CHECK_EQ(iovt_poll(w.e, 0, 1, UINT_MAX), 4 * N);
	struct iovt_stats d3 = dstats(wd);
	CHECK_EQ(d3.ranges_coalesced, d2.ranges_coalesced); /* no fence yet: nothing walked */
	CHECK_EQ(iovt_fence(w.e), 0);
	struct iovt_stats d4 = dstats(wd);
	CHECK_EQ(d4.psi - d2.psi, 4 * N);
	CHECK_EQ(d4.ranges_coalesced - d3.ranges_coalesced, 1);
	CHECK_EQ(d4.unmap_calls - d3.unmap_calls, 1); /* type1 multi-unmap: the two MAPs at once */
	CHECK_EQ(d4.map_calls, d3.map_calls);
	check_range(&w, wd, 0, AREA);
	iovt_queue_destroy(qa);
	iovt_queue_destroy(qb);
	world_destroy(&w);
	printf("intake: %s: %u PSIs from two queues -> 3 walks, 2 MAPs, 1 UNMAP\n",
	       backend_name(b), (unsigned)(6 * N));
}

/* ------------------------------------------------------------------------ */
/* Implicit queues (iovt_invalidate_*): released by the thread, never lost    */

struct legacy_arg {
	struct world *w;
	struct wdom *wd;
	unsigned n;
};

static void *legacy_thread(void *arg)
{
	struct legacy_arg *a = arg;
	iovt_thread_register();
	for (unsigned i = 0; i < a->n; i++) {
		uint64_t iova = 10 * M1 + i * 2 * K;
		gmap(a->wd, iova, K, a->wd->base + iova, IOVT_PERM_RW);
		CHECK_EQ(iovt_invalidate_psi(a->w->e, a->wd->did, iova, 0, false), 0);
	}
	iovt_thread_unregister(); /* releases its queue: the PSIs wait in the pending set */
	return NULL;
}

/*
 * A thread that posts through its implicit queue and leaves without a
 * fence: what it posted is applied by the next iovt_fence. A thread that
 * cycles over more engines than its cache holds: each eviction releases a
 * queue, and nothing it held is lost. An engine destroyed before the thread
 * unregisters: the thread's release skips it.
 */
static void test_implicit_queues(void)
{
	struct world w;
	world_create(&w);
	struct wdom *wd = &w.dom[3];
	struct legacy_arg a = { &w, wd, 100 };
	struct iovt_stats d0 = dstats(wd);
	for (int round = 0; round < 3; round++) {
		pthread_t t;
		CHECK(pthread_create(&t, NULL, legacy_thread, &a) == 0);
		pthread_join(t, NULL);
	}
	CHECK_EQ(stats(&w).queues, 0); /* each thread released its queue */
	CHECK_EQ(iovt_fence(w.e), 0);
	CHECK_EQ(dstats(wd).psi - d0.psi, 300);
	check_range(&w, wd, 0, AREA);

	/* Six engines, one domain each, posted to round-robin by this thread:
	 * its cache of four keeps evicting. */
	enum { NE = 6, ROUNDS = 50 };
	struct iovt_engine *es[NE];
	for (unsigned i = 0; i < NE; i++) {
		es[i] = conc_engine(w.gs);
		struct iovt_domain_config dc = { .did = 9, .root_gpa = gs_domain_root(wd->gd),
						 .addr_width = 48 };
		struct iovt_domain *d;
		CHECK(iovt_domain_create(es[i], &dc, &d) == 0);
	}
	/* First four of them, in turn and backwards: every post after the
	 * first round finds its queue in the cache, wherever it sits (most
	 * recently used first), and makes no second one. */
	for (unsigned r = 0; r < ROUNDS; r++)
		for (unsigned j = 0; j < 4; j++) {
			unsigned i = r & 1 ? 3 - j : j;
			CHECK_EQ(iovt_invalidate_psi(es[i], 9, r * K, 0, false), 0);
			struct iovt_stats st;
			iovt_stats_get(es[i], &st);
			CHECK_EQ(st.queues, 1);
		}
	for (unsigned i = 0; i < 4; i++) {
		struct iovt_stats st;
		CHECK_EQ(iovt_fence(es[i]), 0);
		iovt_stats_get(es[i], &st);
		CHECK_EQ(st.psi, ROUNDS);
	}
	/* Most recently used first: the fences 0..3 (each finds its queue)
	 * left 3, 2, 1, 0; a post to 0 makes it 0, 3, 2, 1. A fifth engine's
	 * first post then evicts the least recently used, 1 (in turn, as the
	 * cache evicted before, it would be the first one made, 0). */
	CHECK_EQ(iovt_invalidate_psi(es[0], 9, 0, 0, false), 0);
	CHECK_EQ(iovt_invalidate_psi(es[4], 9, 0, 0, false), 0);
	for (unsigned i = 0; i < 5; i++) {
		struct iovt_stats st;
		iovt_stats_get(es[i], &st);
		CHECK_EQ(st.queues, i == 1 ? 0 : 1);
	}
	for (unsigned r = 0; r < ROUNDS; r++)
		for (unsigned i = 0; i < NE; i++)
			CHECK_EQ(iovt_invalidate_psi(es[i], 9, r * K, 0, false), 0);
	unsigned held = 0;
	for (unsigned i = 0; i < NE; i++) {
		CHECK_EQ(iovt_fence(es[i]), 0);
		struct iovt_stats st;
		iovt_stats_get(es[i], &st);
		CHECK_EQ(st.psi, (i < 4 ? 2 : 1) * ROUNDS + (i == 0 || i == 4));
		CHECK(st.queues <= 1); /* evicted queues were released, not leaked */
		held += (unsigned)st.queues;
	}
	CHECK_EQ(held, 4); /* the cache's four */
	/* Destroyed before this thread lets go of its queues in them. */
	for (unsigned i = 0; i < NE; i++)
		iovt_engine_destroy(es[i]);
	iovt_thread_unregister();
	iovt_thread_register();
	world_destroy(&w);
	printf("intake: implicit queues: released by their threads, 0 lost\n");
}

/* ------------------------------------------------------------------------ */
/* Threads: workers                                                          */

static void test_workers(enum iovt_queue_backend b)
{
	struct world w;
	world_create(&w);
	struct wdom *wd = &w.dom[0];

	CHECK_EQ(iovt_workers_start(w.e, 0), -EINVAL);
	CHECK_EQ(iovt_workers_start(w.e, 65), -EINVAL);
	iovt_workers_stop(w.e); /* none running: nothing to do */
	CHECK_EQ(iovt_workers_start(w.e, 2), 0);
	CHECK_EQ(iovt_workers_start(w.e, 1), -EBUSY);
	CHECK_EQ(iovt_workers_start(w.e, 2), -EBUSY);

	struct iovt_queue *qh, *qa;
	struct iovt_queue_config hc = { .capacity = 64, .group = 1, .backend = b, .handoff = true };
	struct iovt_queue_config ac = { .capacity = 64, .group = 0, .backend = b };
	CHECK(iovt_queue_create(w.e, &hc, &qh) == 0);
	CHECK(iovt_queue_create(w.e, &ac, &qa) == 0);

	for (unsigned round = 0; round < 2; round++) {
		/* A hand-off fence: applied by the worker, never inline. */
		uint64_t iova = (1 + round) * M1;
		gmap(wd, iova, 4 * K, wd->base + iova, IOVT_PERM_RW);
		CHECK(qpsi(qh, wd, iova, 4 * K) == 0);
		struct iovt_stats e0 = stats(&w);
		CHECK_EQ(iovt_queue_fence(qh), 0);
		struct iovt_stats e1 = stats(&w);
		CHECK_EQ(e1.fences_drained - e0.fences_drained, 1);
		CHECK_EQ(e1.fences_inline - e0.fences_inline, 0);
		check_range(&w, wd, iova, iova + 8 * K);

		/* Hand-off, in two halves. */
		gunmap(wd, iova, K);
		CHECK(qpsi(qh, wd, iova, K) == 0);
		uint64_t t = iovt_queue_fence_post(qh);
		CHECK_EQ(iovt_queue_fence_wait(qh, t), 0);
		CHECK(iovt_queue_fence_done(qh, t));
		check_range(&w, wd, iova, iova + 8 * K);

		/* An asynchronous fence on a queue that may drain inline: nobody
		 * waits, the worker applies it. */
		gmap(wd, iova + 16 * K, 2 * K, wd->base + iova, IOVT_PERM_R);
		CHECK(qpsi(qa, wd, iova + 16 * K, 2 * K) == 0);
		e0 = stats(&w);
		t = iovt_queue_fence_post(qa);
		await_ticket(qa, t);
		e1 = stats(&w);
		CHECK_EQ(e1.fences_drained - e0.fences_drained, 1);
		CHECK_EQ(e1.fences_inline - e0.fences_inline, 0);
		check_range(&w, wd, iova, iova + 32 * K);

		/* Stop, then start again with another count. */
		iovt_workers_stop(w.e);
		iovt_workers_stop(w.e);
		CHECK_EQ(iovt_workers_start(w.e, round == 0 ? 1 : 3), 0);
	}

	/* A full hand-off queue waits on its worker: capacity 8, bursts of 50. */
	struct iovt_queue *qs;
	struct iovt_queue_config sc = { .capacity = 8, .group = 2, .backend = b, .handoff = true };
	CHECK(iovt_queue_create(w.e, &sc, &qs) == 0);
	struct iovt_stats e0 = stats(&w), d0 = dstats(wd);
	unsigned n = 3000;
	post_psis(qs, wd, n);
	CHECK_EQ(iovt_queue_fence(qs), 0);
	struct iovt_stats e1 = stats(&w), d1 = dstats(wd);
	CHECK(e1.queue_full_waits - e0.queue_full_waits > 0);
	CHECK_EQ(d1.psi - d0.psi, n);
	CHECK_EQ(e1.fences_inline - e0.fences_inline, 0);
	printf("intake: %s: workers: %u PSIs into a hand-off queue of 8: %" PRIu64 " full waits\n",
	       backend_name(b), n, e1.queue_full_waits - e0.queue_full_waits);

	iovt_workers_stop(w.e);
	iovt_queue_destroy(qs);
	iovt_queue_destroy(qh);
	iovt_queue_destroy(qa);
	CHECK_EQ(iovt_fence(w.e), 0);
	check_range(&w, wd, 0, AREA);
	/* Workers still running at engine destroy are stopped by it. */
	CHECK_EQ(iovt_workers_start(w.e, 2), 0);
	world_destroy(&w);
	printf("intake: %s: workers ok\n", backend_name(b));
}

/* ------------------------------------------------------------------------ */
/* Threads: host pollers and producers                                       */

struct pollers {
	struct iovt_engine *e;
	unsigned idx, n;
	unsigned sleep_us, budget;
	atomic_int *stop;
	uint64_t items, polls;
};

static void *poller_main(void *arg)
{
	struct pollers *p = arg;
	iovt_thread_register();
	while (!atomic_load_explicit(p->stop, memory_order_acquire)) {
		unsigned got = iovt_poll(p->e, p->idx, p->n, p->budget);
		p->items += got;
		p->polls++;
		if (p->sleep_us)
			usleep(p->sleep_us);
		else if (!got)
			sched_yield();
	}
	iovt_thread_unregister();
	return NULL;
}

struct producer {
	struct world *w;
	struct wdom *wd;
	struct iovt_queue *q;
	unsigned iters;
	uint64_t psis, dsis, fences, checks;
};

static void *producer_main(void *arg)
{
	struct producer *p = arg;
	struct wdom *wd = p->wd;
	uint64_t s = seed + wd->did * 0x51ed27ull;
	iovt_thread_register();
	for (unsigned it = 0; it < p->iters; it++) {
		unsigned nedits = 1 + (unsigned)gs_rand_below(&s, 4);
		uint64_t lo = UINT64_MAX, hi = 0;
		for (unsigned i = 0; i < nedits; i++) {
			uint64_t iova = gs_rand_below(&s, AREA / K) * K;
			uint64_t size = (1 + gs_rand_below(&s, 32)) * K;
			if (iova + size > AREA)
				size = AREA - iova;
			if (gs_rand_below(&s, 3) == 0)
				gunmap(wd, iova, size);
			else
				gmap(wd, iova, size, wd->base + iova + (gs_rand_below(&s, 2) ? ALT : 0),
				     1 + (uint32_t)gs_rand_below(&s, 3));
			lo = iova < lo ? iova : lo;
			hi = iova + size > hi ? iova + size : hi;
			if (gs_rand_below(&s, 50) == 0) {
				CHECK_EQ(iovt_queue_dsi(p->q, wd->did), 0);
				p->dsis++;
			} else {
				CHECK_EQ(qpsi(p->q, wd, iova, size), 0);
				p->psis++;
			}
		}
		switch (gs_rand_below(&s, 3)) {
		case 0:
			CHECK_EQ(iovt_queue_fence(p->q), 0);
			break;
		case 1: {
			uint64_t t = iovt_queue_fence_post(p->q);
			await_ticket(p->q, t); /* completed by a poller */
			break;
		}
		default: {
			uint64_t t = iovt_queue_fence_post(p->q);
			CHECK_EQ(iovt_queue_fence_wait(p->q, t), 0);
			CHECK(iovt_queue_fence_done(p->q, t));
		}
		}
		p->fences++;
		check_range(p->w, wd, lo, hi);
		p->checks++;
	}
	iovt_thread_unregister();
	return NULL;
}

/*
 * Two producers (a hand-off queue in group 0, an inline-capable one in group
 * 1) on domains wd[0] and wd[1], against two poller threads (poller 0 and 1
 * of 2) or two engine workers.
 */
static void run_producers(struct world *w, enum iovt_queue_backend b, struct wdom *wd,
			  bool workers)
{
	atomic_int stop = 0;
	struct pollers pl[2];
	pthread_t pt[2], prt[2];
	if (workers) {
		CHECK_EQ(iovt_workers_start(w->e, 2), 0);
	} else {
		for (unsigned i = 0; i < 2; i++) {
			pl[i] = (struct pollers){ .e = w->e, .idx = i, .n = 2, .budget = 64,
						  .stop = &stop };
			CHECK(pthread_create(&pt[i], NULL, poller_main, &pl[i]) == 0);
		}
	}
	struct producer pr[2];
	struct iovt_stats d0[2];
	unsigned iters = (unsigned)(1500 * check_scale());
	for (unsigned i = 0; i < 2; i++) {
		struct iovt_queue_config qc = { .capacity = 32, .group = i, .backend = b,
						.handoff = i == 0 };
		pr[i] = (struct producer){ .w = w, .wd = &wd[i], .iters = iters };
		CHECK(iovt_queue_create(w->e, &qc, &pr[i].q) == 0);
		d0[i] = dstats(&wd[i]);
	}
	struct iovt_stats e0 = stats(w);
	for (unsigned i = 0; i < 2; i++)
		CHECK(pthread_create(&prt[i], NULL, producer_main, &pr[i]) == 0);
	for (unsigned i = 0; i < 2; i++)
		pthread_join(prt[i], NULL);
	if (workers) {
		iovt_workers_stop(w->e);
	} else {
		atomic_store(&stop, 1);
		for (unsigned i = 0; i < 2; i++)
			pthread_join(pt[i], NULL);
		CHECK(pl[0].items > 0 && pl[1].items > 0);
	}
	struct iovt_stats e1 = stats(w);
	CHECK_EQ(iovt_fence(w->e), 0);
	uint64_t fences = 0;
	for (unsigned i = 0; i < 2; i++) {
		struct iovt_stats d = dstats(&wd[i]);
		CHECK_EQ(d.psi - d0[i].psi, pr[i].psis); /* nothing lost */
		CHECK_EQ(d.dsi - d0[i].dsi, pr[i].dsis);
		CHECK_EQ(pr[i].checks, iters);
		fences += pr[i].fences;
		check_range(w, &wd[i], 0, AREA);
		pthread_mutex_lock(&gs_lock);
		CHECK_EQ(gs_truth_check(wd[i].gd), 0);
		pthread_mutex_unlock(&gs_lock);
		iovt_queue_destroy(pr[i].q);
	}
	uint64_t inl = e1.fences_inline - e0.fences_inline;
	uint64_t drn = e1.fences_drained - e0.fences_drained;
	CHECK_EQ(inl + drn, fences);
	CHECK(drn >= pr[0].fences); /* every hand-off fence went to a drainer */
	printf("intake: %s: 2 producers x %u rounds, 2 %s: %" PRIu64 " fences (%" PRIu64
	       " inline, %" PRIu64 " drained)\n",
	       backend_name(b), iters, workers ? "workers" : "pollers", fences, inl, drn);
}

static void test_pollers(enum iovt_queue_backend b)
{
	struct world w;
	world_create(&w);
	atomic_int stop = 0;

	/* A slow poller behind a small hand-off queue: the poster waits. */
	{
		struct iovt_queue *q;
		struct iovt_queue_config qc = { .capacity = 8, .backend = b, .handoff = true };
		CHECK(iovt_queue_create(w.e, &qc, &q) == 0);
		struct pollers p = { .e = w.e, .idx = 0, .n = 1, .sleep_us = 100, .budget = 4,
				     .stop = &stop };
		pthread_t th;
		CHECK(pthread_create(&th, NULL, poller_main, &p) == 0);
		struct iovt_stats e0 = stats(&w), d0 = dstats(&w.dom[0]);
		post_psis(q, &w.dom[0], 400);
		CHECK_EQ(iovt_queue_fence(q), 0); /* hand-off: the poller applies it */
		struct iovt_stats e1 = stats(&w), d1 = dstats(&w.dom[0]);
		atomic_store(&stop, 1);
		pthread_join(th, NULL);
		CHECK(e1.queue_full_waits - e0.queue_full_waits > 0);
		CHECK_EQ(d1.psi - d0.psi, 400);
		CHECK_EQ(e1.fences_drained - e0.fences_drained, 1);
		CHECK_EQ(e1.fences_inline - e0.fences_inline, 0);
		CHECK_EQ(p.items, 401);
		iovt_queue_destroy(q);
		printf("intake: %s: slow poller: 400 PSIs into 8 slots, %" PRIu64 " full waits\n",
		       backend_name(b), e1.queue_full_waits - e0.queue_full_waits);
	}

	run_producers(&w, b, &w.dom[2], false);
	run_producers(&w, b, &w.dom[0], true);
	world_destroy(&w);
}

/* ------------------------------------------------------------------------ */

/*
 * One queue, its producer moving between threads (iovt.h: one producer at a
 * time; a host maps one emulated invalidation queue to one iovt queue and
 * serialises its processing): four threads take turns under a mutex, each
 * turn a guest edit, its PSI and an inline fence on the shared queue. Every
 * fence 0, the sink == the guest after each; under TSan too.
 */
enum { HANDOVER_THREADS = 4, HANDOVER_TURNS = 150 };
struct handover {
	struct world *w;
	struct iovt_queue *q;
	pthread_mutex_t lock;
	unsigned turn; /* whose turn: turn % HANDOVER_THREADS */
	pthread_cond_t cv;
};
struct handover_arg {
	struct handover *h;
	unsigned idx;
};

static void *handover_main(void *p)
{
	struct handover_arg *a = p;
	struct handover *h = a->h;
	struct wdom *wd = &h->w->dom[0];
	iovt_thread_register();
	for (unsigned t = 0; t < HANDOVER_TURNS; t++) {
		pthread_mutex_lock(&h->lock);
		while (h->turn % HANDOVER_THREADS != a->idx)
			pthread_cond_wait(&h->cv, &h->lock);
		const uint64_t n = h->turn;
		const uint64_t iova = (n % 64) * 2 * K; /* IOVAs [0, AREA): gpa = base + iova */
		if ((n / 64) % 2 == 0)
			gmap(wd, iova, K, wd->base + iova, IOVT_PERM_RW);
		else
			gunmap(wd, iova, K);
		CHECK_EQ(qpsi(h->q, wd, iova, K), 0);
		CHECK_EQ(iovt_queue_fence(h->q), 0);
		check_range(h->w, wd, iova, iova + K);
		h->turn++;
		pthread_cond_broadcast(&h->cv);
		pthread_mutex_unlock(&h->lock);
	}
	iovt_thread_unregister();
	return NULL;
}

static void test_handover(enum iovt_queue_backend b)
{
	struct world w;
	world_create(&w);
	struct handover h = { .w = &w, .lock = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
	struct iovt_queue_config qc = { .backend = b };
	CHECK(iovt_queue_create(w.e, &qc, &h.q) == 0);
	pthread_t t[HANDOVER_THREADS];
	struct handover_arg a[HANDOVER_THREADS];
	for (unsigned i = 0; i < HANDOVER_THREADS; i++) {
		a[i] = (struct handover_arg){ &h, i };
		CHECK(pthread_create(&t[i], NULL, handover_main, &a[i]) == 0);
	}
	for (unsigned i = 0; i < HANDOVER_THREADS; i++)
		CHECK(pthread_join(t[i], NULL) == 0);
	CHECK_EQ(h.turn, HANDOVER_THREADS * HANDOVER_TURNS);
	check_range(&w, &w.dom[0], 0, 128 * K);
	iovt_queue_destroy(h.q);
	world_destroy(&w);
	printf("intake handover (%s): %u fences from %u threads taking turns on one queue\n",
	       b == IOVT_QUEUE_RTE_RING ? "rte_ring" : "wfcq", HANDOVER_THREADS * HANDOVER_TURNS,
	       HANDOVER_THREADS);
}

int main(int argc, char **argv)
{
	const char *what = argc > 1 ? argv[1] : "all";
	bool single = !strcmp(what, "queue") || !strcmp(what, "all");
	bool threads = !strcmp(what, "threads") || !strcmp(what, "all");
	CHECK(single || threads);
	seed = check_pick_seed("intake");
	iovt_thread_register();

	enum iovt_queue_backend backends[2] = { IOVT_QUEUE_WFCQ, IOVT_QUEUE_RTE_RING };
	unsigned nb = 1;
	if (iovt_dpdk_available()) {
		nb = 2;
	} else {
		struct iovt_engine *e;
		struct iovt_queue *q = NULL;
		CHECK(iovt_engine_create(NULL, &e) == 0);
		struct iovt_queue_config qc = { .backend = IOVT_QUEUE_RTE_RING };
		CHECK_EQ(iovt_queue_create(e, &qc, &q), -ENOTSUP);
		CHECK(q == NULL);
		qc.backend = IOVT_QUEUE_DEFAULT; /* wfcq without DPDK */
		CHECK_EQ(iovt_queue_create(e, &qc, &q), 0);
		iovt_queue_destroy(q);
		iovt_engine_destroy(e);
		printf("intake: no DPDK: rte_ring backend is -ENOTSUP\n");
	}
	for (unsigned i = 0; i < nb; i++) {
		if (single) {
			test_order(backends[i]);
			test_capacity(backends[i]);
			test_validation(backends[i]);
			test_burst_inline(backends[i]);
			test_poll_groups(backends[i]);
			test_destroy_pending(backends[i]);
			test_counters(backends[i]);
			test_fence_ways(backends[i]);
			test_coalescing(backends[i]);
		}
		if (threads) {
			test_workers(backends[i]);
			test_pollers(backends[i]);
			test_handover(backends[i]);
		}
	}
	if (single) {
		test_order(IOVT_QUEUE_DEFAULT);
		test_implicit_queues();
	}
	iovt_thread_unregister();
	printf("intake: ok\n");
	return 0;
}
