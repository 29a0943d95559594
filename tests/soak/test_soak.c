/* SPDX-License-Identifier: MIT */
/*
 * soak: the engine under concurrent producers, readers and a failing sink,
 * for a bounded time ($IOVT_SOAK_SECONDS, default 60).
 *
 *  - Producers (one thread per domain): edit their own domain of one shared
 *    guestsim (guestsim is not thread-safe: every gs_* call holds gs_lock),
 *    post PSIs/DSIs for their edits, then iovt_fence. Fences from different
 *    producers race and each may apply the others' domains. When a fence
 *    returns 0, the producer's own domain is in sync for its own edits (every
 *    fence that saw them either applied them or re-queued them for the next
 *    fence, and any later fence's error would have been returned), so the
 *    producer checks with iovt_translate that the range it edited now equals
 *    the guest truth.
 *  - Readers: iovt_translate on random IOVAs of random domains. Every mapping
 *    targets gpa = f(iova) (one of two offsets per domain, so remaps happen),
 *    so any hit is checkable: offset, host address, bounds, permission.
 *  - Each domain's sink is a model sink behind a fault sink failing ~1% of
 *    calls at random (one of them iommufd-style with partial UNMAPs).
 *  - At the end: faults stop, fences until one returns 0 (no new work), then
 *    every model sink is compared with the guest truth on every page, and the
 *    engine record with the model.
 * Leaves are 4 KiB only (no 2 MiB): guestsim then never frees a table page,
 * so a fence walking one domain's table can never read a page being
 * recycled for another domain by a concurrent producer.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "fault_sink.h"
#include "guestsim.h"
#include "iovt.h"
#include "iovt_model.h"
#include "locked_model.h"

CHECK_SEED_STORAGE;

#define K 0x1000ull
#define M1 0x100000ull
#define NPROD 3
#define NREAD 2
#define AREA (16 * M1)  /* IOVAs [0, AREA) of each domain */
#define ALT (16 * M1)   /* the second offset: gpa = base + iova + ALT */
#define DOM_SPAN (40 * M1)
#define FAULT_P 0.01

struct sdom {
	struct gs_domain *gd;
	struct iovt_domain *d;
	struct iovt_notifier *n;
	struct iovt_model_sink *model;
	struct fault_sink *fs;
	uint16_t did;
	uint64_t base; /* gpa = base + iova (+ ALT) */
	/* producer-side counts (one writer; read after join) */
	uint64_t edits, psis, dsis, fences, fence_errors, own_checks;
};

static struct guestsim *gs;
static struct iovt_engine *eng;
static uint64_t ram_hva;
static struct sdom doms[NPROD];
static pthread_mutex_t gs_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int stop;
static atomic_uint_fast64_t translates, hits;
static uint64_t seed;
static double seconds;

static uint64_t now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec;
}

/* A hit must be a mapping this test could have made. */
static void check_hit(const struct sdom *sd, uint64_t iova, const struct iovt_extent *e)
{
	CHECK(e->size && !(e->size & (K - 1)) && !(e->iova & (K - 1)));
	CHECK(e->iova <= iova && iova - e->iova < e->size);
	CHECK(e->iova + e->size <= AREA);
	uint64_t off = e->gpa - e->iova;
	CHECK(off == sd->base || off == sd->base + ALT);
	CHECK_EQ(e->hva, ram_hva + e->gpa);
	CHECK(e->perm >= 1 && e->perm <= IOVT_PERM_RW);
}

static void *reader(void *arg)
{
	uint64_t s = seed ^ (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull;
	uint64_t n = 0, h = 0;
	iovt_thread_register();
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		const struct sdom *sd = &doms[gs_rand_below(&s, NPROD)];
		uint64_t iova = gs_rand_below(&s, AREA / K) * K + gs_rand_below(&s, K);
		struct iovt_extent e;
		int rc = iovt_translate(sd->d, iova, &e);
		CHECK(rc == 0 || rc == -ENOENT);
		n++;
		if (rc == 0) {
			check_hit(sd, iova & ~(K - 1), &e);
			h++;
		}
	}
	iovt_thread_unregister();
	atomic_fetch_add(&translates, n);
	atomic_fetch_add(&hits, h);
	return NULL;
}

/* Translate over [iova, iova+size) equals the guest truth. */
static void check_own(struct sdom *sd, uint64_t iova, uint64_t size)
{
	for (uint64_t a = iova; a < iova + size; a += K) {
		uint64_t gpa;
		uint32_t perm;
		pthread_mutex_lock(&gs_lock);
		bool mapped = gs_truth_lookup(sd->gd, a, &gpa, &perm);
		pthread_mutex_unlock(&gs_lock);
		struct iovt_extent e;
		int rc = iovt_translate(sd->d, a, &e);
		if (mapped != (rc == 0))
			fprintf(stderr, "soak: did %u iova 0x%" PRIx64 " guest %s, record %s\n",
				sd->did, a, mapped ? "mapped" : "unmapped", rc ? "miss" : "hit");
		CHECK(mapped == (rc == 0));
		if (mapped) {
			CHECK_EQ(e.gpa + (a - e.iova), gpa);
			CHECK_EQ(e.perm, perm);
		}
	}
}

static void *producer(void *arg)
{
	struct sdom *sd = arg;
	uint64_t s = seed + sd->did * 0x1234567ull;
	uint64_t end = now_s() + (uint64_t)seconds;
	iovt_thread_register();
	while (now_s() < end) {
		/* A few edits, each invalidated, then one fence (a guest batching
		 * its invalidations before one wait). */
		unsigned nedits = 1 + (unsigned)gs_rand_below(&s, 3);
		uint64_t lo = UINT64_MAX, hi = 0;
		for (unsigned i = 0; i < nedits; i++) {
			uint64_t iova = gs_rand_below(&s, AREA / K) * K;
			uint64_t size = (1 + gs_rand_below(&s, 64)) * K;
			if (iova + size > AREA)
				size = AREA - iova;
			pthread_mutex_lock(&gs_lock);
			if (gs_rand_below(&s, 3) == 0) {
				CHECK(gs_unmap(sd->gd, iova, size) == 0);
			} else {
				uint64_t gpa = sd->base + iova + (gs_rand_below(&s, 2) ? ALT : 0);
				uint32_t perm = 1 + (uint32_t)gs_rand_below(&s, 3);
				CHECK(gs_map(sd->gd, iova, gpa, size, perm, GS_LEAF_4K) == 0);
			}
			pthread_mutex_unlock(&gs_lock);
			sd->edits++;
			lo = iova < lo ? iova : lo;
			hi = iova + size > hi ? iova + size : hi;
			if (gs_rand_below(&s, 64) == 0) {
				CHECK(iovt_invalidate_dsi(eng, sd->did) == 0);
				sd->dsis++;
			} else {
				uint64_t first = iova >> 12, last = (iova + size - 1) >> 12;
				unsigned am = 0;
				while ((first >> am) != (last >> am))
					am++;
				CHECK(iovt_invalidate_psi(eng, sd->did, (first >> am) << (12 + am), am,
							  false) == 0);
				sd->psis++;
			}
		}
		int rc = iovt_fence(eng);
		sd->fences++;
		if (rc) {
			sd->fence_errors++;
			continue;
		}
		check_own(sd, lo, hi - lo);
		sd->own_checks++;
	}
	iovt_thread_unregister();
	return NULL;
}

static void final_check(struct sdom *sd)
{
	for (uint64_t iova = 0; iova < AREA; iova += K) {
		uint64_t gpa;
		uint32_t perm;
		struct iovt_extent m, t;
		bool mapped = gs_truth_lookup(sd->gd, iova, &gpa, &perm);
		bool held = iovt_model_sink_find(sd->model, iova, &m);
		int rc = iovt_translate(sd->d, iova, &t);
		if (mapped != held || held != (rc == 0))
			fprintf(stderr, "soak: did %u iova 0x%" PRIx64 ": guest %d device %d record %d\n",
				sd->did, iova, mapped, held, rc == 0);
		CHECK(mapped == held);
		CHECK(held == (rc == 0));
		if (!held)
			continue;
		CHECK_EQ(m.gpa + (iova - m.iova), gpa);
		CHECK_EQ(m.perm, perm);
		CHECK_EQ(m.hva + (iova - m.iova), (uint64_t)(uintptr_t)gs_hva(gs, gpa));
		CHECK(t.iova == m.iova && t.size == m.size && t.gpa == m.gpa && t.hva == m.hva &&
		      t.perm == m.perm);
	}
	struct iovt_stats st;
	iovt_domain_stats_get(sd->d, &st);
	CHECK_EQ(st.extents, iovt_model_sink_count(sd->model));
	struct iovt_model_stats ms;
	iovt_model_sink_stats(sd->model, &ms);
	CHECK_EQ(ms.rejected_calls, 0);
	/* The engine counted every injected failure. */
	struct fault_stats fst;
	fault_sink_stats(sd->fs, &fst);
	CHECK_EQ(st.errors[IOVT_ERR_SINK_MAP], fst.injected[FAULT_MAP]);
	CHECK_EQ(st.errors[IOVT_ERR_SINK_UNMAP], fst.injected[FAULT_UNMAP]);
	CHECK_EQ(gs_truth_check(sd->gd), 0);
}

int main(void)
{
	seed = check_pick_seed("soak");
	const char *env = getenv("IOVT_SOAK_SECONDS");
	seconds = env && *env ? atof(env) : 60;
	if (seconds < 1)
		seconds = 1;
	iovt_thread_register();
	gs = gs_create(1, 256 * M1, 32 * M1);
	CHECK(gs);
	ram_hva = (uint64_t)(uintptr_t)gs_region(gs, 0)->hva;
	eng = conc_engine(gs);
	CHECK(NPROD * DOM_SPAN <= gs_region_data_size(gs, 0));
	for (unsigned i = 0; i < NPROD; i++) {
		struct sdom *sd = &doms[i];
		sd->did = (uint16_t)(10 + i);
		sd->base = i * DOM_SPAN;
		sd->gd = conc_domain(gs, eng, sd->did, &sd->d);
		/* 0: type1 multi-unmap; 1: type1 one mapping per UNMAP; 2: iommufd
		 * with partial UNMAP failures. */
		struct iovt_model_config mc = {
			.flavor = i == 2 ? IOVT_MODEL_IOMMUFD : IOVT_MODEL_TYPE1,
			.multi_unmap = i != 1,
		};
		struct iovt_sink inner, wrapped;
		CHECK(iovt_model_sink_create(&mc, &sd->model, &inner) == 0);
		CHECK(fault_sink_create(&inner, sd->model, i == 2, seed + i, &sd->fs, &wrapped) == 0);
		fault_sink_set_random(sd->fs, FAULT_P);
		CHECK(iovt_notifier_attach(sd->d, IOVT_NOTIFY_IOTLB_EVENTS, &wrapped, &sd->n) == 0);
	}

	pthread_t rt[NREAD], pt[NPROD];
	for (unsigned i = 0; i < NREAD; i++)
		CHECK(pthread_create(&rt[i], NULL, reader, (void *)(uintptr_t)(i + 1)) == 0);
	for (unsigned i = 0; i < NPROD; i++)
		CHECK(pthread_create(&pt[i], NULL, producer, &doms[i]) == 0);
	for (unsigned i = 0; i < NPROD; i++)
		pthread_join(pt[i], NULL);
	atomic_store(&stop, 1);
	for (unsigned i = 0; i < NREAD; i++)
		pthread_join(rt[i], NULL);

	/* Faults stop; the retries (no new invalidation) must converge. */
	for (unsigned i = 0; i < NPROD; i++)
		fault_sink_stop(doms[i].fs);
	int rc = -1;
	unsigned tries = 0;
	while (rc && tries < 4) {
		rc = iovt_fence(eng);
		tries++;
	}
	CHECK_EQ(rc, 0);
	CHECK_EQ(tries, 1); /* one clean fence retries everything that failed */
	uint64_t edits = 0, psis = 0, dsis = 0, fences = 0, ferr = 0, own = 0, injected = 0;
	uint64_t calls = 0, partial = 0;
	for (unsigned i = 0; i < NPROD; i++) {
		struct sdom *sd = &doms[i];
		final_check(sd);
		struct fault_stats fst;
		fault_sink_stats(sd->fs, &fst);
		edits += sd->edits, psis += sd->psis, dsis += sd->dsis, fences += sd->fences;
		ferr += sd->fence_errors, own += sd->own_checks;
		injected += fault_sink_injected(sd->fs);
		calls += fst.calls[FAULT_MAP] + fst.calls[FAULT_UNMAP];
		partial += fst.partial_unmaps;
	}
	printf("soak: %.0f s, %u producers, %u readers: %" PRIu64 " guest edits, %" PRIu64
	       " PSIs, %" PRIu64 " DSIs, %" PRIu64 " fences (%" PRIu64 " returned an error), %" PRIu64
	       " own-range checks; %" PRIu64 " translates (%" PRIu64 " hits); sink calls %" PRIu64
	       ", faults injected %" PRIu64 " (%" PRIu64 " partial UNMAPs), all survived\n",
	       seconds, NPROD, NREAD, edits, psis, dsis, fences, ferr, own,
	       (uint64_t)atomic_load(&translates), (uint64_t)atomic_load(&hits), calls, injected,
	       partial);
	CHECK(injected > 0);

	iovt_engine_destroy(eng);
	for (unsigned i = 0; i < NPROD; i++) {
		fault_sink_destroy(doms[i].fs);
		iovt_model_sink_destroy(doms[i].model);
	}
	gs_destroy(gs);
	iovt_thread_unregister();
	return 0;
}
