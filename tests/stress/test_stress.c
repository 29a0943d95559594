/* SPDX-License-Identifier: MIT */
/*
 * stress: the intake queues under concurrent producers, workers and readers,
 * for a bounded time ($IOVT_STRESS_SECONDS, default 15).
 *
 *  - NDOM domains are shared by every producer; producer p owns the IOVA
 *    slice [p * SLICE, (p + 1) * SLICE) of each of them and is the only one
 *    to edit it (guestsim is not thread-safe: every gs_* call holds gs_lock).
 *  - Each producer drives the engine its own way, so every path runs at once:
 *      inline   its own queue, iovt_queue_fence drains on the posting thread;
 *      handoff  its own queue with cfg.handoff: a worker applies the fence;
 *      async    its own queue, iovt_queue_fence_post, polls fence_done, then
 *               fence_wait for the result (a host completing the guest's wait
 *               descriptor later);
 *      legacy   iovt_invalidate_psi/_dsi + iovt_fence (implicit queue,
 *               everything everywhere).
 *    Items go in bursts of 1-8 (PSIs for each edit, sometimes a DSI of the
 *    domain, rarely a global invalidation), then a fence.
 *  - After every fence that returns 0, the producer checks its own slice of
 *    the domains it edited since: guest truth == model sink == engine record
 *    on every page it edited (and the whole slice every 16th fence). Its
 *    slice cannot change under it (only it edits the slice; walks by other
 *    threads see the same truth), while other threads keep applying other
 *    slices of the same domains: the model sinks are behind a mutex that the
 *    check also takes.
 *  - Readers: iovt_translate on random IOVAs; every mapping targets one of
 *    two GPAs per page (gpa = base + iova [+ ALT]), so any hit is checkable.
 *  - At the end: one iovt_fence, a full comparison of every page of every
 *    domain, and the books: invalidations applied (iovt_stats psi/dsi/global)
 *    == invalidations posted (0 lost), queue fences == fences posted.
 * Leaves are 4 KiB only: guestsim then never frees a table page, so a walk
 * of a domain never reads a table page recycled by a concurrent edit.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "guestsim.h"
#include "iovt.h"
#include "iovt_model.h"
#include "locked_model.h"

CHECK_SEED_STORAGE;

#define K 0x1000ull
#define M1 0x100000ull
#define NDOM 2
#define SLICE (4 * M1)            /* each producer's IOVAs in each domain */
#define ALT (64 * M1)             /* second target: gpa = base + iova + ALT */
#define DOM_SPAN (2 * ALT)
#define MAX_BURST 8

enum mode { MODE_INLINE, MODE_HANDOFF, MODE_ASYNC, MODE_LEGACY, NPROD };
static const char *const mode_name[NPROD] = { "inline", "handoff", "async", "legacy" };
#define NREAD 2

struct sdom {
	struct gs_domain *gd;
	struct iovt_domain *d;
	struct iovt_notifier *n;
	struct locked_model lm;
	uint16_t did;
	uint64_t base;
};

struct producer {
	enum mode mode;
	struct iovt_queue *q;
	/* counts (one writer; read after join) */
	uint64_t edits, psis, dsis, globals, fences, pages_checked, async_polls;
};

static struct guestsim *gs;
static struct iovt_engine *eng;
static uint64_t ram_hva;
static struct sdom doms[NDOM];
static struct producer prods[NPROD];
static pthread_mutex_t gs_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int stop;
static atomic_uint_fast64_t translates, hits;
static uint64_t seed;
static double seconds;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void check_hit(const struct sdom *sd, uint64_t iova, const struct iovt_extent *e)
{
	CHECK(e->size && !(e->size & (K - 1)) && !(e->iova & (K - 1)));
	CHECK(e->iova <= iova && iova - e->iova < e->size);
	CHECK(e->iova + e->size <= NPROD * SLICE);
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
		const struct sdom *sd = &doms[gs_rand_below(&s, NDOM)];
		uint64_t iova = gs_rand_below(&s, NPROD * SLICE / K) * K + gs_rand_below(&s, K);
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

static uint64_t check_pages(struct sdom *sd, uint64_t lo, uint64_t hi, const char *who)
{
	struct agree_target t = { gs, sd->gd, &gs_lock, &sd->lm, sd->d };
	char what[64];
	snprintf(what, sizeof(what), "stress: %s: did %u", who, sd->did);
	return agree_check(&t, lo, hi, what);
}

static int post(struct producer *p, const struct iovt_inval *v, unsigned n)
{
	if (p->mode != MODE_LEGACY)
		return iovt_queue_post(p->q, v, n);
	for (unsigned i = 0; i < n; i++) {
		int rc = v[i].kind == IOVT_INVAL_PSI ? iovt_invalidate_psi(eng, v[i].did, v[i].addr,
									      v[i].am, v[i].ih)
			 : v[i].kind == IOVT_INVAL_DSI ? iovt_invalidate_dsi(eng, v[i].did)
						       : iovt_invalidate_global(eng);
		if (rc)
			return rc;
	}
	return 0;
}

static int fence(struct producer *p)
{
	switch (p->mode) {
	case MODE_INLINE:
	case MODE_HANDOFF:
		return iovt_queue_fence(p->q);
	case MODE_ASYNC:
		return conc_fence_async(p->q, &p->async_polls);
	default:
		return iovt_fence(eng);
	}
}

static void *producer_main(void *arg)
{
	struct producer *p = arg;
	uint64_t s = seed + (uint64_t)p->mode * 0x1234567ull;
	const uint64_t slice_lo = (uint64_t)p->mode * SLICE;
	double end = now() + seconds;
	char who[32];
	snprintf(who, sizeof(who), "producer %s", mode_name[p->mode]);
	iovt_thread_register();
	while (now() < end) {
		struct iovt_inval burst[MAX_BURST];
		unsigned n = 0, want = 1 + (unsigned)gs_rand_below(&s, MAX_BURST);
		uint64_t lo[NDOM], hi[NDOM];
		for (unsigned i = 0; i < NDOM; i++)
			lo[i] = UINT64_MAX, hi[i] = 0;
		while (n < want) {
			unsigned di = (unsigned)gs_rand_below(&s, NDOM);
			struct sdom *sd = &doms[di];
			uint64_t iova = slice_lo + gs_rand_below(&s, SLICE / K) * K;
			uint64_t size = (1 + gs_rand_below(&s, 32)) * K;
			if (iova + size > slice_lo + SLICE)
				size = slice_lo + SLICE - iova;
			pthread_mutex_lock(&gs_lock);
			if (gs_rand_below(&s, 3) == 0) {
				CHECK(gs_unmap(sd->gd, iova, size) == 0);
			} else {
				uint64_t gpa = sd->base + iova + (gs_rand_below(&s, 2) ? ALT : 0);
				uint32_t perm = 1 + (uint32_t)gs_rand_below(&s, 3);
				CHECK(gs_map(sd->gd, iova, gpa, size, perm, GS_LEAF_4K) == 0);
			}
			pthread_mutex_unlock(&gs_lock);
			p->edits++;
			lo[di] = iova < lo[di] ? iova : lo[di];
			hi[di] = iova + size > hi[di] ? iova + size : hi[di];
			unsigned r = (unsigned)gs_rand_below(&s, 256);
			if (r == 0) {
				burst[n++] = (struct iovt_inval){ .kind = IOVT_INVAL_GLOBAL };
				p->globals++;
			} else if (r < 6) {
				burst[n++] = (struct iovt_inval){ .did = sd->did, .kind = IOVT_INVAL_DSI };
				p->dsis++;
			} else {
				burst[n++] = psi_covering(sd->did, iova, size);
				p->psis++;
			}
		}
		CHECK_EQ(post(p, burst, n), 0);
		int rc = fence(p);
		if (rc)
			fprintf(stderr, "stress: %s: fence returned %d\n", who, rc);
		CHECK_EQ(rc, 0);
		p->fences++;
		bool whole = (p->fences & 15) == 0;
		for (unsigned di = 0; di < NDOM; di++) {
			if (whole)
				p->pages_checked += check_pages(&doms[di], slice_lo, slice_lo + SLICE, who);
			else if (hi[di])
				p->pages_checked += check_pages(&doms[di], lo[di], hi[di], who);
		}
	}
	iovt_thread_unregister();
	return NULL;
}

int main(void)
{
	seed = check_pick_seed("stress");
	const char *env = getenv("IOVT_STRESS_SECONDS");
	seconds = env && *env ? atof(env) : 15;
	if (seconds < 0.5)
		seconds = 0.5;
	iovt_thread_register();
	gs = gs_create(1, 384 * M1, 32 * M1);
	CHECK(gs);
	ram_hva = (uint64_t)(uintptr_t)gs_region(gs, 0)->hva;
	eng = conc_engine(gs);
	CHECK(NDOM * DOM_SPAN <= gs_region_data_size(gs, 0));
	for (unsigned i = 0; i < NDOM; i++) {
		struct sdom *sd = &doms[i];
		sd->did = (uint16_t)(20 + i);
		sd->base = i * DOM_SPAN;
		sd->gd = conc_domain(gs, eng, sd->did, &sd->d);
		/* One type1 domain taking one mapping per UNMAP, one iommufd
		 * domain (an UNMAP of nothing is an error, so the engine must never
		 * send one) taking UNMAPs over several mappings. */
		struct iovt_model_config mc = {
			.flavor = i ? IOVT_MODEL_IOMMUFD : IOVT_MODEL_TYPE1,
			.multi_unmap = i != 0,
		};
		struct iovt_sink sink;
		locked_model_init(&sd->lm, &mc, 0, &sink);
		CHECK(iovt_notifier_attach(sd->d, IOVT_NOTIFY_IOTLB_EVENTS, &sink, &sd->n) == 0);
	}
	/* One worker: it applies the hand-off producer's fences and takes the
	 * async producer's when it gets there first. */
	CHECK_EQ(iovt_workers_start(eng, 1), 0);
	for (unsigned i = 0; i < NPROD; i++) {
		prods[i].mode = (enum mode)i;
		if (i == MODE_LEGACY)
			continue;
		struct iovt_queue_config qc = { .capacity = i == MODE_ASYNC ? 64 : 0,
						.handoff = i == MODE_HANDOFF };
		CHECK_EQ(iovt_queue_create(eng, &qc, &prods[i].q), 0);
	}

	pthread_t rt[NREAD], pt[NPROD];
	for (unsigned i = 0; i < NREAD; i++)
		CHECK(pthread_create(&rt[i], NULL, reader, (void *)(uintptr_t)(i + 1)) == 0);
	for (unsigned i = 0; i < NPROD; i++)
		CHECK(pthread_create(&pt[i], NULL, producer_main, &prods[i]) == 0);
	for (unsigned i = 0; i < NPROD; i++)
		pthread_join(pt[i], NULL);
	atomic_store(&stop, 1);
	for (unsigned i = 0; i < NREAD; i++)
		pthread_join(rt[i], NULL);

	CHECK_EQ(iovt_fence(eng), 0);
	uint64_t pages = 0;
	for (unsigned i = 0; i < NDOM; i++) {
		pages += check_pages(&doms[i], 0, NPROD * SLICE, "final");
		struct iovt_stats ds;
		iovt_domain_stats_get(doms[i].d, &ds);
		CHECK_EQ(ds.extents, locked_model_count(&doms[i].lm));
		CHECK_EQ(gs_truth_check(doms[i].gd), 0);
	}

	/* The books: nothing lost, nothing invented. */
	struct iovt_stats st;
	iovt_stats_get(eng, &st);
	uint64_t edits = 0, psis = 0, dsis = 0, globals = 0, fences = 0, qfences = 0, checked = 0;
	for (unsigned i = 0; i < NPROD; i++) {
		struct producer *p = &prods[i];
		edits += p->edits, psis += p->psis, dsis += p->dsis, globals += p->globals;
		fences += p->fences, checked += p->pages_checked;
		if (p->mode != MODE_LEGACY)
			qfences += p->fences;
		printf("stress: %-7s %8" PRIu64 " edits %8" PRIu64 " PSIs %6" PRIu64 " DSIs %4" PRIu64
		       " globals %7" PRIu64 " fences\n",
		       mode_name[i], p->edits, p->psis, p->dsis, p->globals, p->fences);
		CHECK(p->fences > 0);
	}
	CHECK_EQ(st.psi, psis);
	CHECK_EQ(st.dsi, dsis);
	CHECK_EQ(st.global, globals);
	CHECK_EQ(st.invalidations, psis + dsis + globals);
	CHECK(st.fences_inline + st.fences_drained >= qfences);
	CHECK(st.fences_drained > 0); /* the hand-off producer's fences, at least */
	CHECK_EQ(st.errors[IOVT_ERR_SINK_MAP] + st.errors[IOVT_ERR_SINK_UNMAP], 0);
	printf("stress: %.1f s, %u producers, %u readers, %u domains: %" PRIu64 " edits, %" PRIu64
	       " PSIs, %" PRIu64 " DSIs, %" PRIu64 " globals posted = applied (0 lost); %" PRIu64
	       " fences (%" PRIu64 " inline, %" PRIu64 " by a worker or drain), %" PRIu64
	       " queue items, %" PRIu64 " full-queue waits; %" PRIu64 " pages checked after fences, "
	       "%" PRIu64 " at the end, 0 divergence; %" PRIu64 " translates (%" PRIu64 " hits)\n",
	       seconds, (unsigned)NPROD, (unsigned)NREAD, (unsigned)NDOM, edits, psis, dsis, globals,
	       fences, (uint64_t)st.fences_inline, (uint64_t)st.fences_drained,
	       (uint64_t)st.queue_items, (uint64_t)st.queue_full_waits, checked, pages,
	       (uint64_t)atomic_load(&translates), (uint64_t)atomic_load(&hits));

	for (unsigned i = 0; i < NPROD; i++)
		if (prods[i].q)
			iovt_queue_destroy(prods[i].q);
	iovt_workers_stop(eng);
	iovt_engine_destroy(eng);
	for (unsigned i = 0; i < NDOM; i++)
		locked_model_fini(&doms[i].lm); /* checks it rejected nothing */
	gs_destroy(gs);
	iovt_thread_unregister();
	return 0;
}
