/* SPDX-License-Identifier: MIT */
/*
 * translate-service: iovt_translate for domains without a MAP notifier (the
 * engine IOTLB, engine/iotlb), judged against the guest's truth.
 *
 *  service     random guest edits (4 KiB..1 GiB leaves, remaps, unmaps,
 *              permissions), the touched ranges invalidated by exact PSIs,
 *              oversized PSIs, DSIs or a global invalidation, a fence, then
 *              every touched page (and a sample of others) translated:
 *              hit/miss, gpa, hva, permission, and every page of the
 *              returned run equal to the truth (contiguous length); the
 *              cache is warmed over the pages edited next, so a missing
 *              invalidation returns a stale value. Two engines: the default
 *              capacity and 64 entries (eviction on every round).
 *  concurrent  readers translate while one thread unmaps/maps (strict
 *              mode: PSI + fence after each) and checks the VT-d rule: a
 *              translation invalidated by a completed fence never comes
 *              back; between the invalidation and its fence old or new,
 *              never a value the guest never had.
 *  concurrent-shadow  the same with a MAP notifier: translate reads the
 *              shadow through its lookup cache.
 *  hostile     loops, reserved bits, tables and leaves outside RAM, a spent
 *              budget on the miss path: each its error code and counter,
 *              never cached, bounded work.
 *  narrowed    the narrowed sweep's gen check (engine/iotlb: an invalidation
 *              sweeps only the sets the levels in use and the longest run
 *              cached can reach): a fill that walks the first run longer
 *              than any before, or the first 2 MiB leaf, while a PSI of a
 *              page inside it is synced and fenced (run exactly inside the
 *              fill's window by a second thread, iotlb_test_walked). After
 *              that fence the run's stale page must never come back. And a
 *              one-page fill raced the same way: it must give its slot up
 *              (gen moved since its stamp), not publish. The "claimed"
 *              cases run the PSI and fence between a fill's claim of its
 *              slot and its publication (iotlb_test_claimed): the sweep
 *              must kill the claim.
 *  no-room     a sweep on a thread whose every allocation fails still
 *              drops the overlapping entry (it needs no memory): after the
 *              fence the remapped page translates to its new GPA, the
 *              table and every other entry stay, no allocation failed.
 *  run-reach   a cached run crossing the 1 MiB mark of its 2 MiB block,
 *              one page of it after the mark remapped: the sweep reaches
 *              the run's key (the longest run of the PSI's block, back to
 *              the block's start at most).
 *  evict-withdraw  fills that evict a live entry and then give their slot
 *              up (gen moved inside the walk): each eviction counted, the
 *              slot emptied.
 *  grow-judged  a hot set that hits while a trickle of new pages evicts:
 *              no growth (misses under 1%); a scan: growth.
 *  tear        one set rewritten in place by nearly every translate while
 *              others read it and PSIs kill claims: every field of every
 *              answer from one fill, no slot left a fill's.
 *  set-spread  the set index: consecutive keys on consecutive sets, and
 *              every stride spread over the sets (white box).
 *  map-detach  a translation cached, a MAP notifier attached (syncs then
 *              leave the IOTLB alone), the page remapped and fenced, the
 *              notifier detached: the IOTLB must not return the old page.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "guestsim.h"
#include "iovt.h"
#include "engine_internal.h" /* white box: iotlb_test_walked, the IOTLB's growths */
#include "common/alloc.h"    /* white box: iovt_alloc_fault (no-room) */
#include "tree/shadow_tree.h" /* white box: the shadow lookup cache (concurrent-shadow) */
#include "iotlb/iotlb_hit.h"  /* white box: iotlb_set_at (set-spread) */

CHECK_SEED_STORAGE;

#define K 0x1000ull
#define M2 (1ull << 21)
#define G1 (1ull << 30)

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct env {
	struct guestsim *gs;
	struct iovt_engine *e;
	struct gs_domain *gd;
	struct iovt_domain *d;
	uint16_t did;
};

static void env_init(struct env *v, const struct iovt_config *cfg, unsigned width, uint64_t region_size)
{
	memset(v, 0, sizeof(*v));
	v->gs = gs_create(2, region_size, 64ull << 20);
	CHECK(v->gs);
	CHECK(iovt_engine_create(cfg, &v->e) == 0);
	for (unsigned i = 0; i < gs_region_count(v->gs); i++) {
		const struct gs_region *r = gs_region(v->gs, i);
		CHECK(iovt_guest_ram_add(v->e, r->gpa, r->size, r->hva, NULL) == 0);
	}
	v->gd = gs_domain_create(v->gs, width, true, true);
	CHECK(v->gd);
	v->did = 3;
	struct iovt_domain_config dc = { .did = v->did, .root_gpa = gs_domain_root(v->gd),
					 .addr_width = width, .allow_2m = true, .allow_1g = true };
	CHECK(iovt_domain_create(v->e, &dc, &v->d) == 0);
}

static void env_fini(struct env *v)
{
	CHECK(iovt_domain_destroy(v->d) == 0);
	iovt_engine_destroy(v->e);
	gs_destroy(v->gs);
}

/* ---------------------------------------------------------------- service */

/* The judge: translate(iova) against the truth, the whole returned run. */
static uint64_t judged, judged_hits;

static void judge(struct env *v, uint64_t iova)
{
	uint64_t tg;
	uint32_t tp;
	bool mapped = gs_truth_lookup(v->gd, iova, &tg, &tp);
	struct iovt_extent x;
	int rc = iovt_translate(v->d, iova, &x);
	judged++;
	if (!mapped) {
		if (rc != -ENOENT) {
			fprintf(stderr, "iova 0x%" PRIx64 ": not mapped, translate %d (extent 0x%" PRIx64
				"+0x%" PRIx64 " gpa 0x%" PRIx64 ")\n", iova, rc, x.iova, x.size, x.gpa);
			CHECK(0);
		}
		return;
	}
	if (rc) {
		fprintf(stderr, "iova 0x%" PRIx64 ": mapped to 0x%" PRIx64 ", translate %d\n", iova, tg, rc);
		CHECK(0);
	}
	judged_hits++;
	CHECK(x.iova <= iova && iova - x.iova < x.size);
	CHECK(!(x.iova & (K - 1)) && x.size && !(x.size & (K - 1)));
	if (x.gpa + (iova - x.iova) != tg || x.perm != tp) {
		fprintf(stderr, "iova 0x%" PRIx64 ": truth gpa 0x%" PRIx64 " perm %u, translate gpa 0x%" PRIx64
			" perm %u (extent 0x%" PRIx64 "+0x%" PRIx64 ")\n", iova, tg, tp,
			x.gpa + (iova - x.iova), x.perm, x.iova, x.size);
		CHECK(0);
	}
	CHECK_EQ(x.hva + (iova - x.iova), (uint64_t)(uintptr_t)gs_hva(v->gs, tg));
	/* Every page of the run maps as the truth says (sampled in 1 GiB runs). */
	uint64_t pages = x.size / K, step = pages > 512 ? pages / 256 : 1;
	for (uint64_t p = 0; p < pages; p += step) {
		uint64_t pi = x.iova + p * K, g;
		uint32_t pp;
		CHECK(gs_truth_lookup(v->gd, pi, &g, &pp));
		CHECK_EQ(g, x.gpa + p * K);
		CHECK_EQ(pp, x.perm);
	}
	uint64_t last = x.iova + x.size - K, g;
	uint32_t pp;
	CHECK(gs_truth_lookup(v->gd, last, &g, &pp) && g == x.gpa + x.size - K && pp == x.perm);
	/* The range form: the access is checked, the length clipped. */
	uint64_t avail = x.iova + x.size - iova;
	int n = iovt_translate_range(v->d, iova, 3 * K, IOVT_PERM_R, &x);
	if (tp & IOVT_PERM_R)
		CHECK_EQ(n, avail < 3 * K ? avail : 3 * K);
	else
		CHECK_EQ(n, (uint64_t)-EACCES);
	n = iovt_translate_range(v->d, iova, 1, IOVT_PERM_W, &x);
	CHECK_EQ(n, (tp & IOVT_PERM_W) ? 1 : (uint64_t)-EACCES);
	/* Both bits wanted: -EACCES unless both are granted. */
	n = iovt_translate_range(v->d, iova, 1, IOVT_PERM_RW, &x);
	CHECK_EQ(n, (tp & IOVT_PERM_RW) == IOVT_PERM_RW ? 1 : (uint64_t)-EACCES);
}

struct touched {
	uint64_t r[4096][2];
	size_t n;
};

static void on_dirty(void *arg, uint64_t iova, uint64_t size)
{
	struct touched *t = arg;
	if (t->n < 4096) {
		t->r[t->n][0] = iova;
		t->r[t->n][1] = size;
		t->n++;
	}
}

/* Invalidates [iova, iova+size) as a guest could: exact aligned PSIs, one
 * oversized PSI, a DSI or a global invalidation. */
static void invalidate(struct env *v, const struct touched *t, uint64_t *rng)
{
	unsigned how = (unsigned)gs_rand_below(rng, 16);
	if (how == 0) {
		CHECK(iovt_invalidate_global(v->e) == 0);
		return;
	}
	if (how == 1) {
		CHECK(iovt_invalidate_dsi(v->e, v->did) == 0);
		return;
	}
	for (size_t i = 0; i < t->n; i++) {
		uint64_t a = t->r[i][0], end = a + t->r[i][1];
		if (how == 2) { /* oversized: the smallest aligned block covering it */
			unsigned am = 0;
			while (((a >> 12) >> am) != (((end - 1) >> 12) >> am))
				am++;
			CHECK(iovt_invalidate_psi(v->e, v->did, a, am, false) == 0);
			continue;
		}
		while (a < end) { /* exact: Linux-style aligned power-of-two blocks */
			unsigned am = 0;
			while (am < 30 && !(a & ((K << (am + 1)) - 1)) && a + (K << (am + 1)) <= end)
				am++;
			CHECK(iovt_invalidate_psi(v->e, v->did, a, am, gs_rand_below(rng, 2)) == 0);
			a += K << am;
		}
	}
}

static void service_run(uint64_t *rng, uint64_t iotlb_entries, unsigned rounds)
{
	struct iovt_config cfg = { .iotlb_entries = iotlb_entries };
	struct env v;
	env_init(&v, &cfg, 48, 2 * G1);
	const uint64_t win = 16ull << 20;            /* 4 KiB / 2 MiB area */
	const uint64_t big = 4 * G1;                 /* 1 GiB leaves at 4..6 GiB */
	uint64_t data = gs_region_data_size(v.gs, 0);
	static struct touched t;
	uint64_t warm[64];
	unsigned nwarm = 0;

	for (unsigned round = 0; round < rounds; round++) {
		/* Warm the IOTLB over the pages about to change. */
		for (unsigned i = 0; i < nwarm; i++) {
			struct iovt_extent x;
			(void)iovt_translate(v.d, warm[i], &x);
		}
		nwarm = 0;
		unsigned edits = 1 + (unsigned)gs_rand_below(rng, 6);
		for (unsigned k = 0; k < edits; k++) {
			unsigned kind = (unsigned)gs_rand_below(rng, 20);
			uint64_t iova, size, gpa;
			uint32_t perm = 1 + (uint32_t)gs_rand_below(rng, 3);
			if (kind == 0) { /* a 1 GiB leaf (or its unmap) */
				iova = big + gs_rand_below(rng, 2) * G1;
				if (gs_rand_below(rng, 3) == 0) {
					CHECK(gs_unmap(v.gd, iova, G1) == 0);
				} else {
					uint32_t reg = 1; /* region 1 is 1 GiB aligned */
					gpa = gs_region(v.gs, reg)->gpa + gs_rand_below(rng, 2) * G1;
					CHECK(gs_map(v.gd, iova, gpa, G1, perm, GS_LEAF_LARGEST) == 0);
				}
			} else {
				bool large = kind < 5;
				size = large ? M2 * (1 + gs_rand_below(rng, 2))
					     : K * (1 + gs_rand_below(rng, gs_rand_below(rng, 4) ? 8 : 40));
				iova = (gs_rand_below(rng, win - size) & ~(large ? M2 - 1 : K - 1));
				if (kind % 4 == 3) {
					CHECK(gs_unmap(v.gd, iova, size) == 0);
				} else {
					gpa = gs_rand_below(rng, data - size) & ~(large ? M2 - 1 : K - 1);
					uint64_t pol = gs_rand_below(rng, 3) ? GS_LEAF_LARGEST : GS_LEAF_4K;
					CHECK(gs_map(v.gd, iova, gpa, size, perm, pol) == 0);
				}
			}
			if (nwarm < 64)
				warm[nwarm++] = iova + gs_rand_below(rng, 4) * K;
		}
		t.n = 0;
		gs_take_dirty(v.gd, on_dirty, &t);
		invalidate(&v, &t, rng);
		if (gs_rand_below(rng, 8) == 0) { /* translations between the invalidation and its wait */
			struct iovt_extent x;
			for (unsigned i = 0; i < nwarm; i++)
				(void)iovt_translate(v.d, warm[i], &x);
		}
		CHECK(iovt_fence(v.e) == 0);
		/* Every touched page (1 GiB ones sampled), plus random pages. */
		for (size_t i = 0; i < t.n; i++) {
			uint64_t a = t.r[i][0], pages = t.r[i][1] / K;
			uint64_t step = pages > 1024 ? pages / 64 : 1;
			for (uint64_t p = 0; p < pages; p += step)
				judge(&v, a + p * K + gs_rand_below(rng, K));
			judge(&v, a + t.r[i][1] - 1);
		}
		for (int i = 0; i < 32; i++)
			judge(&v, gs_rand_below(rng, win));
		judge(&v, big + gs_rand_below(rng, 2 * G1));
	}
	/* set_root to an empty table and back: every cached run dies. */
	struct gs_domain *empty = gs_domain_create(v.gs, 48, true, true);
	CHECK(empty);
	struct iovt_extent x;
	uint64_t hit_iova = UINT64_MAX;
	for (uint64_t a = 0; a < win && hit_iova == UINT64_MAX; a += K)
		if (iovt_translate(v.d, a, &x) == 0)
			hit_iova = a;
	CHECK(hit_iova != UINT64_MAX);
	CHECK(iovt_domain_set_root(v.d, gs_domain_root(empty)) == 0);
	CHECK_EQ(iovt_translate(v.d, hit_iova, &x), (uint64_t)-ENOENT);
	CHECK(iovt_domain_set_root(v.d, gs_domain_root(v.gd)) == 0);
	judge(&v, hit_iova);

	struct iovt_stats st;
	iovt_domain_stats_get(v.d, &st);
	printf("  iotlb %" PRIu64 " entries: %u rounds, %" PRIu64 " translations judged (%" PRIu64
	       " mapped); hits %" PRIu64 " misses %" PRIu64 " evictions %" PRIu64
	       " invalidated %" PRIu64 " noent %" PRIu64 " eacces %" PRIu64 " cached now %" PRIu64 "\n",
	       iotlb_entries, rounds, judged, judged_hits, st.iotlb_hits, st.iotlb_misses,
	       st.iotlb_evictions, st.iotlb_invalidated, st.translate_noent, st.translate_eacces,
	       st.iotlb_entries);
	CHECK(st.iotlb_hits > 0 && st.iotlb_misses > 0 && st.iotlb_invalidated > 0);
	CHECK(st.translate_noent > 0 && st.translate_eacces > 0);
	if (iotlb_entries && iotlb_entries < 256) {
		/* Small capacity: eviction on every round, growth to the cap. */
		CHECK(st.iotlb_evictions > 0 && st.iotlb_entries <= iotlb_entries);
		CHECK(atomic_load(&v.d->iotlb.grown) > 0);
		CHECK(iotlb_capacity(&v.d->iotlb) >= iotlb_entries);
	}
	gs_domain_destroy(empty);
	env_fini(&v);
}

static void case_service(uint64_t *rng)
{
	unsigned rounds = (unsigned)(400 * check_scale());
	service_run(rng, 0, rounds);
	service_run(rng, 64, rounds);
}

/* ------------------------------------------------------------- concurrent */

#define CP 64                /* pages in the window */
#define CNV 256              /* version slots: gpa = base + (v % CNV * CP + page) * 4K */
#define CBASE 0x40000000ull  /* IOVA of the window */

static struct env cv;
static uint64_t cdata;       /* data GPA base */
static _Atomic uint64_t written[CP];   /* last version the guest wrote (before its PTE) */
static _Atomic uint64_t committed[CP]; /* version a completed fence made current */
static _Atomic uint64_t hist[CP][CNV]; /* mapped versions by slot */
static atomic_int cstop;
static _Atomic uint64_t c_checks, c_hits, c_noent, c_spread;
static _Atomic unsigned c_started; /* readers running (registered, in their loop) */
static bool cshadow; /* concurrent-shadow (below) */
/* Pages mapped once, never changed, read by the readers too: their misses
 * evict and grow the IOTLB while the window's invalidations run. */
#define CSPREAD 2048
#define CSPREAD_IOVA 0x80000000ull
static uint64_t spread_gpa(unsigned i)
{
	return 0x100000 + (uint64_t)((i * 613u) % CSPREAD) * K;
}

static uint64_t vgpa(uint64_t ver, unsigned page)
{
	return cdata + ((ver % CNV) * CP + page) * K;
}
static uint32_t vperm(uint64_t ver)
{
	return 1 + (uint32_t)((ver / 2) % 3);
}

static void cfail(const char *what, unsigned page, uint64_t c, uint64_t l, uint64_t got)
{
	fprintf(stderr, "VT-d rule broken: %s: page %u committed %" PRIu64 " written %" PRIu64
		" returned %" PRIu64 " (seed %" PRIu64 ")\n", what, page, c, l, got, check_seed);
	exit(1);
}

static void *creader(void *arg)
{
	uint64_t s = (uint64_t)(uintptr_t)arg;
	uint64_t c[CP], l[CP];
	iovt_thread_register();
	atomic_fetch_add_explicit(&c_started, 1, memory_order_release);
	while (!atomic_load_explicit(&cstop, memory_order_relaxed)) {
		if (gs_rand_below(&s, 4) == 0) {
			unsigned i = (unsigned)gs_rand_below(&s, CSPREAD);
			struct iovt_extent x;
			uint64_t a = CSPREAD_IOVA + 2 * i * K; /* never contiguous */
			if (iovt_translate(cv.d, a, &x) || x.gpa + (a - x.iova) != spread_gpa(i) ||
			    x.size != K)
				cfail("a page mapped throughout, never changed", i, 0, 0, x.gpa);
			if (x.hva != (uint64_t)(uintptr_t)gs_hva(cv.gs, x.gpa))
				cfail("an hva that is not its gpa's", i, 0, 0, x.hva);
			atomic_fetch_add_explicit(&c_spread, 1, memory_order_relaxed);
			continue;
		}
		unsigned page = (unsigned)gs_rand_below(&s, CP);
		for (unsigned i = 0; i < CP; i++)
			c[i] = atomic_load_explicit(&committed[i], memory_order_acquire);
		struct iovt_extent x;
		uint64_t iova = CBASE + page * K + gs_rand_below(&s, K);
		int rc = iovt_translate(cv.d, iova, &x);
		for (unsigned i = 0; i < CP; i++)
			l[i] = atomic_load_explicit(&written[i], memory_order_acquire);
		atomic_fetch_add_explicit(&c_checks, 1, memory_order_relaxed);
		if (rc == -ENOENT) {
			atomic_fetch_add_explicit(&c_noent, 1, memory_order_relaxed);
			/* Not with a MAP notifier: the shadow is what the sink
			 * holds, and a sync that rewrites a merged extent around
			 * an edited neighbour UNMAPs it whole before it MAPs the
			 * survivors back: the sink (a DMA) misses the page then
			 * too. The spread pages (never merged) stay strict. */
			if (c[page] == l[page] && c[page] % 2 == 0 && !cshadow)
				cfail("a miss on a page mapped throughout", page, c[page], l[page], 0);
			continue;
		}
		if (rc)
			cfail("an error", page, c[page], l[page], (uint64_t)rc);
		atomic_fetch_add_explicit(&c_hits, 1, memory_order_relaxed);
		if (x.iova < CBASE || x.iova + x.size > CBASE + CP * K || x.iova > iova ||
		    iova - x.iova >= x.size)
			cfail("a run outside the window", page, c[page], l[page], x.iova);
		/* Every field from one fill (an IOTLB line is rewritten in place:
		 * a reader that mixed two fills would pair one's gpa with
		 * another's hva; found missing by review). */
		if (x.hva != (uint64_t)(uintptr_t)gs_hva(cv.gs, x.gpa))
			cfail("an hva that is not its gpa's", page, c[page], l[page], x.hva);
		for (uint64_t a = x.iova; a < x.iova + x.size; a += K) {
			unsigned p = (unsigned)((a - CBASE) / K);
			uint64_t g = x.gpa + (a - x.iova);
			uint64_t idx = (g - cdata) / K;
			if (g < cdata || idx % CP != p)
				cfail("a gpa no version of this page had", p, c[p], l[p], g);
			uint64_t slot = idx / CP;
			if (l[p] - c[p] >= CNV)
				continue; /* versions wrapped meanwhile: cannot judge */
			/* The version w in [c, l] with that slot. */
			uint64_t w = c[p] + ((slot + CNV - c[p] % CNV) % CNV);
			if (w > l[p])
				cfail(w - CNV < c[p] ? "an invalidated value after its fence" : "an unseen value",
				      p, c[p], l[p], w);
			if (atomic_load_explicit(&hist[p][slot], memory_order_acquire) < w ||
			    w % 2)
				cfail("a value the guest never had", p, c[p], l[p], w);
			if (x.perm != vperm(w))
				cfail("a wrong permission", p, c[p], l[p], w);
		}
	}
	iovt_thread_unregister();
	return NULL;
}

/* concurrent-shadow: the same run with a MAP notifier attached, so that
 * translate reads the shadow through its lookup cache (tree/lookup_cache.h;
 * the 2048 spread pages make the tree three levels tall, and the bypass is
 * off so every translate probes the cache): the rule through the sync's
 * removals and the cache's kills (it fails without the fillers' ticket
 * check, tree/lookup_cache.h). */
/* A MAP sink that takes every call (concurrent-shadow, map-detach). */
static int null_sink_event(void *arg, const struct iovt_event *ev)
{
	(void)arg;
	(void)ev;
	return 0;
}

static void case_concurrent(uint64_t *rng)
{
	struct iovt_config cfg = { .iotlb_entries = 512 };
	env_init(&cv, &cfg, 48, 1 * G1);
	if (cshadow) {
		struct iovt_sink sink;
		struct iovt_notifier *n;
		CHECK(iovt_callback_sink_init(&sink, null_sink_event, NULL, NULL) == 0);
		CHECK(iovt_notifier_attach(cv.d, IOVT_NOTIFY_IOTLB_EVENTS, &sink, &n) == 0);
		shadow_tree_test_no_bypass = true;
	}
	cdata = 0x1000000;
	CHECK(cdata + CNV * CP * K <= gs_region_data_size(cv.gs, 0));
	/* Version 2: everything mapped, contiguous. */
	for (unsigned p = 0; p < CP; p++) {
		atomic_store(&written[p], 2);
		atomic_store(&hist[p][2 % CNV], 2);
		CHECK(gs_map(cv.gd, CBASE + p * K, vgpa(2, p), K, vperm(2), GS_LEAF_4K) == 0);
	}
	for (unsigned i = 0; i < CSPREAD; i++)
		CHECK(gs_map(cv.gd, CSPREAD_IOVA + 2 * i * K, spread_gpa(i), K, IOVT_PERM_RW, GS_LEAF_4K) == 0);
	CHECK(iovt_invalidate_dsi(cv.e, cv.did) == 0);
	CHECK(iovt_fence(cv.e) == 0);
	for (unsigned p = 0; p < CP; p++)
		atomic_store(&committed[p], 2);

	enum { NR = 3 };
	pthread_t th[NR];
	for (uintptr_t i = 0; i < NR; i++)
		CHECK(pthread_create(&th[i], NULL, creader, (void *)(gs_rand(rng) | 1)) == 0);
	/* The readers run before the edits start: on a loaded machine (TSan,
	 * beside a build) the editor once made its 381 steps while they
	 * checked 3 translations, and the checks below failed (twenty-first
	 * session). A reader that never starts fails here after a minute. */
	for (double tw = now_s(); atomic_load_explicit(&c_started, memory_order_acquire) < NR;)
		if (now_s() - tw > 60)
			CHECK(!"the readers never started");
		else
			sched_yield();
	double secs = 3.0 * check_scale(), t0 = now_s();
	uint64_t ver = 2, steps = 0, hits0 = atomic_load(&c_hits);
	/* At least `secs`, and at least 16 steps, 64 checked hits and (the
	 * IOTLB) one growth however loaded the machine: CI runs suites side by
	 * side, and one TSan run beside a sanitizer build made 5 steps in its
	 * 1.5 s (859 in the run before, 11,800 alone). An editor that cannot
	 * make 16 steps, or readers that cannot hit 64 times or grow the
	 * table, in 60 s still fail the checks below. */
	while (now_s() - t0 < secs ||
	       ((steps < 16 || atomic_load(&c_hits) - hits0 < 64 ||
		 (!cshadow && !atomic_load(&cv.d->iotlb.grown))) &&
		now_s() - t0 < 60)) {
		unsigned p0 = (unsigned)gs_rand_below(rng, CP);
		unsigned n = 1 + (unsigned)gs_rand_below(rng, gs_rand_below(rng, 4) ? 2 : 8);
		if (p0 + n > CP)
			n = CP - p0;
		for (int phase = 0; phase < 2; phase++) { /* strict mode: unmap, then map */
			ver++;
			for (unsigned p = p0; p < p0 + n; p++) {
				atomic_store_explicit(&written[p], ver, memory_order_release);
				if (phase == 1)
					atomic_store_explicit(&hist[p][ver % CNV], ver, memory_order_release);
			}
			uint64_t iova = CBASE + p0 * K;
			if (phase == 0)
				CHECK(gs_unmap(cv.gd, iova, n * K) == 0);
			else
				CHECK(gs_map(cv.gd, iova, vgpa(ver, p0), n * K, vperm(ver), GS_LEAF_4K) == 0);
			unsigned how = (unsigned)gs_rand_below(rng, 32);
			if (how == 0) {
				CHECK(iovt_invalidate_global(cv.e) == 0);
			} else if (how == 1) {
				CHECK(iovt_invalidate_dsi(cv.e, cv.did) == 0);
			} else if (how < 8) { /* oversized: the whole window */
				CHECK(iovt_invalidate_psi(cv.e, cv.did, CBASE, 6, false) == 0);
			} else {
				for (unsigned p = p0; p < p0 + n; p++)
					CHECK(iovt_invalidate_psi(cv.e, cv.did, CBASE + p * K, 0, false) == 0);
			}
			CHECK(iovt_fence(cv.e) == 0);
			for (unsigned p = p0; p < p0 + n; p++)
				atomic_store_explicit(&committed[p], ver, memory_order_release);
		}
		steps++;
	}
	atomic_store(&cstop, 1);
	for (int i = 0; i < NR; i++)
		pthread_join(th[i], NULL);
	struct iovt_stats st;
	iovt_domain_stats_get(cv.d, &st);
	uint64_t grown = atomic_load(&cv.d->iotlb.grown);
	printf("  concurrent: %" PRIu64 " edit steps (unmap+map, each invalidated and fenced), %" PRIu64
	       " translations checked (%" PRIu64 " hits, %" PRIu64 " misses, %" PRIu64 " spread); iotlb hits %" PRIu64
	       " misses %" PRIu64 " evictions %" PRIu64 " invalidated %" PRIu64 "; %" PRIu64
	       " growths to %" PRIu64 " entries\n",
	       steps, atomic_load(&c_checks), atomic_load(&c_hits), atomic_load(&c_noent),
	       atomic_load(&c_spread), st.iotlb_hits, st.iotlb_misses, st.iotlb_evictions,
	       st.iotlb_invalidated, grown, iotlb_capacity(&cv.d->iotlb));
	CHECK(steps > 10 && atomic_load(&c_hits) > 0);
	if (cshadow) {
		struct shadow_tree *t = cv.d->tree;
		printf("  concurrent-shadow: tree height %u, %" PRIu64 " extents, lookup cache %" PRIu64
		       " bytes\n", shadow_tree_height(t), shadow_tree_count(t), shadow_tree_cache_bytes(t));
		CHECK(shadow_tree_height(t) >= 3 && shadow_tree_cache_bytes(t) > 0);
		CHECK_EQ(st.iotlb_hits + st.iotlb_misses, 0); /* the shadow answered */
		shadow_tree_test_no_bypass = false;
	} else {
		CHECK(st.iotlb_hits > 0 && st.iotlb_invalidated > 0);
		CHECK(grown > 0); /* the table was replaced while readers and invalidations ran */
	}
	env_fini(&cv);
}

static void case_concurrent_shadow(uint64_t *rng)
{
	cshadow = true;
	memset(written, 0, sizeof(written));
	memset(committed, 0, sizeof(committed));
	memset(hist, 0, sizeof(hist));
	atomic_store(&cstop, 0);
	atomic_store(&c_started, 0);
	case_concurrent(rng);
	cshadow = false;
}

/* ---------------------------------------------------------------- hostile */

#define VICTIM (0x80000000ull + 3 * M2 + 5 * K)
#define HOLE_GPA (G1 + 0x1000000ull) /* between region 0 and region 1 */
#define RSV_BIT (1ull << 50)

/* Writes pte = val, invalidates, fences; translates VICTIM n times: each the
 * expected error, counted, never cached; then restores and expects a hit.
 * `pages`: pages from VICTIM the entry governs (1 for a PTE). */
static void hostile_one(struct env *v, const char *what, uint64_t pte, uint64_t val, int want,
			unsigned pages)
{
	uint64_t old = gs_read_pte(v->gs, pte);
	struct iovt_extent x;
	CHECK(iovt_translate(v->d, VICTIM, &x) == 0); /* cached before */
	CHECK(gs_write_pte(v->gs, pte, val) == 0);
	CHECK(iovt_invalidate_psi(v->e, v->did, VICTIM & ~(K - 1), 0, false) == 0);
	(void)iovt_fence(v->e);
	struct iovt_stats a, b;
	iovt_domain_stats_get(v->d, &a);
	const int n = 2000;
	double t0 = now_s();
	for (int i = 0; i < n; i++) {
		int rc = iovt_translate(v->d, VICTIM + (uint64_t)i % pages * K, &x);
		if (rc != want) {
			fprintf(stderr, "hostile %s: translate %d, want %d\n", what, rc, want);
			CHECK(0);
		}
	}
	double dt = now_s() - t0;
	iovt_domain_stats_get(v->d, &b);
	printf("  hostile %-22s %d: %d translations in %.2f ms (%.0f ns each), all walked\n", what, want,
	       n, dt * 1e3, dt * 1e9 / n);
	CHECK_EQ(b.translate_fault - a.translate_fault, n);
	CHECK_EQ(b.iotlb_misses - a.iotlb_misses, n); /* never cached */
	CHECK(dt < 2.0 * check_scale() + 1.0);        /* bounded: a few hundred entries each */
	CHECK(gs_write_pte(v->gs, pte, old) == 0);
	CHECK(iovt_invalidate_psi(v->e, v->did, VICTIM & ~(K - 1), 0, false) == 0);
	(void)iovt_fence(v->e);
	CHECK(iovt_translate(v->d, VICTIM, &x) == 0);
}

static void case_hostile(uint64_t *rng)
{
	(void)rng;
	struct env v;
	env_init(&v, NULL, 48, G1);
	CHECK(gs_map(v.gd, VICTIM & ~(M2 - 1), 0x400000, M2, IOVT_PERM_RW, GS_LEAF_4K) == 0);
	CHECK(iovt_invalidate_dsi(v.e, v.did) == 0);
	CHECK(iovt_fence(v.e) == 0);
	uint64_t root = gs_domain_root(v.gd);
	uint64_t pte1 = gs_pte_gpa(v.gd, VICTIM, 1), pte2 = gs_pte_gpa(v.gd, VICTIM, 2);
	uint64_t pte3 = gs_pte_gpa(v.gd, VICTIM, 3), pte4 = gs_pte_gpa(v.gd, VICTIM, 4);
	uint64_t pd = gs_read_pte(v.gs, pte3) & ~0xfffull & ((1ull << 52) - 1);
	hostile_one(&v, "pd-self-loop", pte2, pd | 3, -ELOOP, 4);
	hostile_one(&v, "root-self-loop", pte4, root | 3, -ELOOP, 4);
	hostile_one(&v, "reserved-pte", pte1, gs_read_pte(v.gs, pte1) | RSV_BIT, -EFAULT, 1);
	hostile_one(&v, "reserved-pdpte", pte3, gs_read_pte(v.gs, pte3) | RSV_BIT, -EFAULT, 4);
	hostile_one(&v, "table-outside-ram", pte2, HOLE_GPA | 3, -EFAULT, 4);
	hostile_one(&v, "table-beyond-ram", pte3, (1ull << 40) | 3, -EFAULT, 4);
	hostile_one(&v, "leaf-outside-ram", pte1, HOLE_GPA | 3, -EFAULT, 1);
	hostile_one(&v, "1g-leaf-outside-ram", pte3, G1 | VTD_PTE_PS | 3, -EFAULT, 4);
	hostile_one(&v, "unaligned-2m-leaf", pte2, 0x401000 | VTD_PTE_PS | 3, -EFAULT, 4);
	env_fini(&v);

	/* A walk budget too small for one walk: -E2BIG, counted, bounded. */
	struct iovt_config cfg = { .walk_budget = 3 };
	env_init(&v, &cfg, 48, G1);
	CHECK(gs_map(v.gd, VICTIM & ~(M2 - 1), 0x400000, M2, IOVT_PERM_RW, GS_LEAF_4K) == 0);
	struct iovt_extent x;
	struct iovt_stats a, b;
	iovt_domain_stats_get(v.d, &a);
	for (int i = 0; i < 100; i++)
		CHECK_EQ(iovt_translate(v.d, VICTIM, &x), (uint64_t)-E2BIG);
	iovt_domain_stats_get(v.d, &b);
	CHECK_EQ(b.translate_fault - a.translate_fault, 100);
	CHECK_EQ(b.iotlb_misses - a.iotlb_misses, 100);
	printf("  hostile walk-budget -E2BIG: 100 translations, never cached\n");
	/* Beyond the width; bad arguments of the range form. */
	CHECK_EQ(iovt_translate(v.d, 1ull << 48, &x), (uint64_t)-ENOENT);
	CHECK_EQ(iovt_translate_range(v.d, VICTIM, 0, IOVT_PERM_R, &x), (uint64_t)-EINVAL);
	CHECK_EQ(iovt_translate_range(v.d, VICTIM, 1, 4, &x), (uint64_t)-EINVAL);
	env_fini(&v);
}

/* ---------------------------------------------------------------- narrowed */

static struct env nv;
static uint64_t n_edit_iova, n_edit_gpa, n_edit_size;
static atomic_int n_phase; /* 1: the fill walked; 2: the PSI's fence returned */

static void *n_invalidator(void *arg)
{
	(void)arg;
	iovt_thread_register();
	while (atomic_load(&n_phase) != 1)
		sched_yield();
	/* The guest's write, its PSI and the wait, all inside the fill's window. */
	CHECK(gs_map(nv.gd, n_edit_iova, n_edit_gpa, n_edit_size, IOVT_PERM_RW, GS_LEAF_LARGEST) == 0);
	CHECK(iovt_invalidate_psi(nv.e, nv.did, n_edit_iova, 0, false) == 0);
	CHECK(iovt_fence(nv.e) == 0);
	atomic_store(&n_phase, 2);
	iovt_thread_unregister();
	return NULL;
}

static void n_walked(uint64_t iova)
{
	(void)iova;
	iotlb_test_walked = NULL; /* once */
	iotlb_test_claimed = NULL;
	atomic_store(&n_phase, 1);
	while (atomic_load(&n_phase) != 2)
		sched_yield();
}

/* Maps [iova, +size) at gpa (policy pol) on a fresh domain, fences, then
 * translates `ask` with the invalidator racing inside the walk: it remaps
 * the page at `edit` to another GPA and PSIs that one page. */
static void narrowed_one(const char *what, uint64_t iova, uint64_t gpa, uint64_t size, uint64_t pol,
			 uint64_t ask, uint64_t edit, bool claimed)
{
	env_init(&nv, NULL, 48, G1);
	/* The invalidator's implicit queue exists before the race. */
	CHECK(iovt_invalidate_dsi(nv.e, nv.did) == 0);
	CHECK(iovt_fence(nv.e) == 0);
	CHECK(gs_map(nv.gd, iova, gpa, size, IOVT_PERM_RW, pol) == 0);
	CHECK(iovt_invalidate_dsi(nv.e, nv.did) == 0);
	CHECK(iovt_fence(nv.e) == 0);
	n_edit_iova = edit;
	n_edit_gpa = 0x8000000; /* far from gpa: never a continuation */
	n_edit_size = K;
	atomic_store(&n_phase, 0);
	pthread_t th;
	CHECK(pthread_create(&th, NULL, n_invalidator, NULL) == 0);
	if (claimed)
		iotlb_test_claimed = n_walked; /* between the slot's claim and its publication */
	else
		iotlb_test_walked = n_walked;
	struct iovt_extent x;
	/* The answer of the raced translate itself may be old (it overlapped
	 * the PSI and its fence): only what is cached is judged. */
	CHECK(iovt_translate(nv.d, ask, &x) == 0);
	pthread_join(th, NULL);
	CHECK(iotlb_test_walked == NULL && iotlb_test_claimed == NULL && atomic_load(&n_phase) == 2);
	/* After the fence: every translation equals the guest, the whole run. */
	judge(&nv, ask);
	judge(&nv, edit);
	judge(&nv, ask);
	CHECK(iovt_translate(nv.d, ask, &x) == 0);
	printf("  narrowed %-28s ask 0x%" PRIx64 " edit 0x%" PRIx64 ": after the fence 0x%" PRIx64
	       "+0x%" PRIx64 " (gpa 0x%" PRIx64 ")\n", what, ask, edit, x.iova, x.size, x.gpa);
	env_fini(&nv);
}

static void case_narrowed(uint64_t *rng)
{
	(void)rng;
	/* The first run longer than a page: 16 contiguous 4 KiB leaves, a PSI
	 * of the 6th page. The sweep that reads maxrun = 4 KiB reaches only the
	 * 6th page's set; the run lives in the 1st page's set. */
	narrowed_one("first-long-run", 0x200000, 0x400000, 16 * K, GS_LEAF_4K, 0x200000,
		     0x200000 + 5 * K, false);
	/* The first 2 MiB leaf: a sweep that reads levels = {4 KiB} reaches no
	 * 2 MiB set. */
	narrowed_one("first-2m-leaf", 0x400000, 0x600000, M2, GS_LEAF_LARGEST, 0x400000 + 9 * K,
		     0x400000 + 300 * K, false);
	/* One page, remapped while its fill walked: no gen check covers a
	 * 4 KiB entry; the fill inserts its old answer after the sweep passed
	 * and must withdraw it (gen moved since its stamp), never
	 * confirm it. */
	narrowed_one("one-page", 0x800000, 0xa00000, K, GS_LEAF_4K, 0x800000, 0x800000, false);
	/* The same, the invalidation run after the fill claimed its slot
	 * (BUSY) and passed its gen check, before it writes and publishes:
	 * the sweep must kill the claim, the fill give the slot up. */
	narrowed_one("one-page-claimed", 0x800000, 0xa00000, K, GS_LEAF_4K, 0x800000, 0x800000, true);
	narrowed_one("first-long-run-claimed", 0x200000, 0x400000, 16 * K, GS_LEAF_4K, 0x200000,
		     0x200000 + 5 * K, true);
}

/* ----------------------------------------------------------------- no-room */

static struct env rv;
#define R_BASE 0x200000ull
#define R_PAGES 16

static bool fail_every_alloc(size_t size)
{
	(void)size;
	return true;
}

/* A new thread whose every allocation fails: its sweep must still drop
 * what it unlinks (it needs no memory: entry lines live in the table). */
static void *r_invalidator(void *arg)
{
	(void)arg;
	iovt_thread_register();
	/* Its implicit queue exists before the fault: a PSI over unmapped
	 * space, fenced (nothing cached overlaps it: no room needed). */
	CHECK(iovt_invalidate_psi(rv.e, rv.did, 0x40000000, 0, false) == 0);
	CHECK(iovt_fence(rv.e) == 0);
	CHECK(gs_map(rv.gd, R_BASE + 5 * K, 0x8000000, K, IOVT_PERM_RW, GS_LEAF_4K) == 0);
	iovt_alloc_fault = fail_every_alloc;
	int rc = iovt_invalidate_psi(rv.e, rv.did, R_BASE + 5 * K, 0, false);
	if (!rc)
		rc = iovt_fence(rv.e);
	iovt_alloc_fault = NULL;
	CHECK_EQ(rc, 0);
	iovt_thread_unregister();
	return NULL;
}

static void case_no_room(uint64_t *rng)
{
	(void)rng;
	env_init(&rv, NULL, 48, G1);
	/* Pages 2 apart in GPA: one entry each. */
	for (uint64_t i = 0; i < R_PAGES; i++)
		CHECK(gs_map(rv.gd, R_BASE + i * K, 0x400000 + 2 * i * K, K, IOVT_PERM_RW, GS_LEAF_4K) == 0);
	CHECK(iovt_invalidate_dsi(rv.e, rv.did) == 0);
	CHECK(iovt_fence(rv.e) == 0);
	for (uint64_t i = 0; i < R_PAGES; i++)
		judge(&rv, R_BASE + i * K);
	CHECK_EQ(iotlb_count(&rv.d->iotlb), R_PAGES);
	uint64_t cap = iotlb_capacity(&rv.d->iotlb);
	struct iovt_stats es0, ds0, es1, ds1;
	iovt_stats_get(rv.e, &es0);
	iovt_domain_stats_get(rv.d, &ds0);
	pthread_t th;
	CHECK(pthread_create(&th, NULL, r_invalidator, NULL) == 0);
	pthread_join(th, NULL);
	/* The stale page first: the check that fails when the entry stays. */
	judge(&rv, R_BASE + 5 * K);
	/* Only page 5's entry went (refilled by the judge), the table and the
	 * other entries stayed, and nothing failed for memory. */
	iovt_stats_get(rv.e, &es1);
	iovt_domain_stats_get(rv.d, &ds1);
	CHECK_EQ(es1.errors[IOVT_ERR_NO_MEMORY], es0.errors[IOVT_ERR_NO_MEMORY]);
	CHECK_EQ(ds1.errors[IOVT_ERR_NO_MEMORY], ds0.errors[IOVT_ERR_NO_MEMORY]);
	CHECK_EQ(ds1.iotlb_invalidated, ds0.iotlb_invalidated + 1);
	CHECK_EQ(iotlb_capacity(&rv.d->iotlb), cap);
	CHECK_EQ(iotlb_count(&rv.d->iotlb), R_PAGES);
	uint64_t m0 = iotlb_counter(&rv.d->iotlb, IOTLB_MISSES);
	for (uint64_t i = 0; i < R_PAGES; i++)
		judge(&rv, R_BASE + i * K);
	CHECK_EQ(iotlb_counter(&rv.d->iotlb, IOTLB_MISSES), m0); /* all still cached */
	printf("  no-room: page 5 dropped without memory, %u pages cached, page 5 at 0x8000000\n", R_PAGES);
	env_fini(&rv);
}

/* --------------------------------------------------------------- run-reach */

/* How far back a sweep reaches for runs: a 16-page run crossing the 1 MiB
 * mark inside its 2 MiB block is cached, then one page of it after that
 * mark is remapped, PSI'd and fenced. The sweep must reach the run's first
 * page from the PSI's: fails when it reads another block's longest run, or
 * stops at anything finer than the 2 MiB block. */
static void case_run_reach(uint64_t *rng)
{
	(void)rng;
	struct env v;
	env_init(&v, NULL, 48, G1);
	const uint64_t run = 0x2f8000, edit = 0x304000;
	CHECK(gs_map(v.gd, run, 0x400000, 16 * K, IOVT_PERM_RW, GS_LEAF_4K) == 0);
	CHECK(iovt_invalidate_dsi(v.e, v.did) == 0);
	CHECK(iovt_fence(v.e) == 0);
	struct iovt_extent x;
	CHECK(iovt_translate(v.d, run, &x) == 0);
	CHECK(x.iova == run && x.size == 16 * K); /* cached whole, keyed at its first page */
	CHECK(gs_map(v.gd, edit, 0x8000000, K, IOVT_PERM_RW, GS_LEAF_4K) == 0);
	CHECK(iovt_invalidate_psi(v.e, v.did, edit, 0, false) == 0);
	CHECK(iovt_fence(v.e) == 0);
	judge(&v, run);
	judge(&v, edit);
	CHECK(iovt_translate(v.d, run, &x) == 0);
	CHECK(x.iova == run && x.size == edit - run);
	printf("  run-reach: 0x%" PRIx64 "+0x%" PRIx64 " after the PSI of 0x%" PRIx64 "\n", x.iova,
	       x.size, edit);
	env_fini(&v);
}

/* ---------------------------------------------------------- evict-withdraw */

/* A fill that evicts a live entry and then withdraws its own (gen moved in
 * its window): the evicted entry is counted, the slot ends empty, and the
 * next fill takes it (until the twenty-fifth session each round also
 * retired two lines to a recycling batch, whose end a withdraw once ran
 * past: found by review, ASan). One set of 8 ways that never grows; many
 * rounds, each reusing slots whose lines were rewritten before. The
 * invalidation inside the window is called directly: the only writer here
 * (iotlb_invalidate wants the sync_lock holder). */
static struct env ov;

static void o_walked(uint64_t iova)
{
	(void)iova;
	iotlb_test_walked = NULL;
	(void)iotlb_invalidate(&ov.d->iotlb, 0x7f0000000000ull, 0x7f0000000fffull); /* unrelated */
}

static void case_evict_withdraw(uint64_t *rng)
{
	(void)rng;
	struct iovt_config cfg = { .iotlb_entries = 8 };
	env_init(&ov, &cfg, 48, G1);
	const uint64_t base = 0x200000ull, npages = 3 * 512 + 16;
	for (uint64_t i = 0; i < npages; i++)
		CHECK(gs_map(ov.gd, base + i * K, 0x400000 + 2 * i * K, K, IOVT_PERM_RW, GS_LEAF_4K) == 0);
	CHECK(iovt_invalidate_dsi(ov.e, ov.did) == 0);
	CHECK(iovt_fence(ov.e) == 0);
	CHECK_EQ(iotlb_start_entries(8), 8); /* one set: every fill after 8 evicts */
	struct iovt_extent x;
	uint64_t i = 0, evicting_withdraws = 0;
	for (; i < 8; i++)
		CHECK(iovt_translate(ov.d, base + i * K, &x) == 0);
	while (i + 3 <= npages) {
		uint64_t ev = iotlb_counter(&ov.d->iotlb, IOTLB_EVICTIONS);
		uint64_t cached = iotlb_count(&ov.d->iotlb);
		iotlb_test_walked = o_walked;
		CHECK(iovt_translate(ov.d, base + i++ * K, &x) == 0); /* evicts, then withdraws */
		evicting_withdraws += iotlb_counter(&ov.d->iotlb, IOTLB_EVICTIONS) == ev + 1 &&
				      iotlb_count(&ov.d->iotlb) == cached - 1;
		judge(&ov, base + i++ * K); /* the slot the withdraw emptied */
		judge(&ov, base + i++ * K); /* evicts */
	}
	CHECK_EQ(evicting_withdraws, (npages - 8) / 3);
	printf("  evict-withdraw: %" PRIu64 " fills evicted and withdrew\n", evicting_withdraws);
	env_fini(&ov);
}

/* Destroyed domain: -ENODEV, also after its IOTLB held entries. */
static void case_destroyed(uint64_t *rng)
{
	(void)rng;
	struct env v;
	env_init(&v, NULL, 48, G1);
	CHECK(gs_map(v.gd, 0x100000, 0x400000, 64 * K, IOVT_PERM_RW, GS_LEAF_4K) == 0);
	struct iovt_extent x;
	CHECK(iovt_translate(v.d, 0x100000, &x) == 0);
	CHECK_EQ(x.size, 16 * K); /* the whole run of 4 KiB leaves, at most 64 KiB */
	CHECK(iovt_translate(v.d, 0x100000, &x) == 0);
	iovt_domain_get(v.d);
	CHECK(iovt_domain_destroy(v.d) == 0);
	CHECK_EQ(iovt_translate(v.d, 0x100000, &x), (uint64_t)-ENODEV);
	iovt_domain_put(v.d);
	iovt_engine_destroy(v.e);
	gs_destroy(v.gs);
}

/*
 * A MAP notifier attached, then detached: while it is attached, syncs do not
 * sweep the IOTLB (translate answers from the shadow), so the detach must
 * flush it — else a translation cached before the attach comes back after
 * the guest changed it and fenced.
 */
static void case_map_detach(uint64_t *rng)
{
	(void)rng;
	struct env v;
	env_init(&v, NULL, 48, G1);
	CHECK(gs_map(v.gd, 0x100000, 0x400000, 16 * K, IOVT_PERM_RW, GS_LEAF_4K) == 0);
	struct iovt_extent x;
	CHECK(iovt_translate(v.d, 0x100000, &x) == 0); /* cached in the IOTLB */
	CHECK_EQ(x.gpa, 0x400000);
	struct iovt_sink sink;
	struct iovt_notifier *n;
	CHECK(iovt_callback_sink_init(&sink, null_sink_event, NULL, NULL) == 0);
	CHECK(iovt_notifier_attach(v.d, IOVT_NOTIFY_IOTLB_EVENTS, &sink, &n) == 0);
	/* The guest moves the first page, invalidates, waits. */
	CHECK(gs_unmap(v.gd, 0x100000, K) == 0);
	CHECK(gs_map(v.gd, 0x100000, 0x800000, K, IOVT_PERM_RW, GS_LEAF_4K) == 0);
	CHECK(iovt_invalidate_psi(v.e, v.did, 0x100000, 0, false) == 0);
	CHECK(iovt_fence(v.e) == 0);
	CHECK(iovt_translate(v.d, 0x100000, &x) == 0); /* the shadow */
	CHECK_EQ(x.gpa, 0x800000);
	CHECK(iovt_notifier_detach(n) == 0);
	judge(&v, 0x100000); /* the IOTLB again: never the page before the edit */
	judge(&v, 0x101000);
	env_fini(&v);
}

/* An engine whose guest RAM region 0 is 1 MiB of zeroed tables at GPA 0,
 * written by hand (the cases below): the tables the walker reads, apart
 * from the made-up host memory of the leaves' region. Returns the tables
 * (free() them after iovt_engine_destroy). */
static uint64_t *hand_tables_engine(struct iovt_engine **e)
{
	CHECK(iovt_engine_create(NULL, e) == 0);
	uint64_t *tables = aligned_alloc(4096, 1 << 20);
	CHECK(tables);
	memset(tables, 0, 1 << 20);
	CHECK(iovt_guest_ram_add(*e, 0, 1 << 20, tables, NULL) == 0);
	return tables;
}

/*
 * A guest RAM region that ends at the top of the address space (gpa + size
 * == 2^64, which iovt_guest_ram_add allows): the IOTLB fill clipped its run
 * to the region's end, which wrapped to 0, so a one-page mapping came back
 * with a length near 2^64 and translate_range granted a terabyte (found by
 * review). The region's host memory is never touched: translate reads only
 * the tables, which live in a region of their own. Its host address is a
 * made-up one below 1 MiB: [hva, hva + size) must not wrap either.
 */
static void case_region_top(uint64_t *rng)
{
	(void)rng;
	enum { M1 = 1 << 20 };
	struct iovt_engine *e;
	uint64_t *tables = hand_tables_engine(&e);
	void *data = (void *)(uintptr_t)0x1000; /* never dereferenced */
	CHECK(iovt_guest_ram_add(e, M1, 0 - (uint64_t)M1, data, NULL) == 0); /* [1 MiB, 2^64) */
	/* A 4-level table in region 0 mapping IOVA 0 -> GPA 1 MiB only. */
	tables[0x1000 / 8] = 0x2000 | IOVT_PERM_RW;
	tables[0x2000 / 8] = 0x3000 | IOVT_PERM_RW;
	tables[0x3000 / 8] = 0x5000 | IOVT_PERM_RW;
	tables[0x5000 / 8] = M1 | IOVT_PERM_RW;
	struct iovt_domain *d;
	struct iovt_domain_config dc = { .did = 1, .root_gpa = 0x1000, .addr_width = 48 };
	CHECK(iovt_domain_create(e, &dc, &d) == 0);
	for (int round = 0; round < 2; round++) { /* the miss, then the hit */
		struct iovt_extent x;
		CHECK(iovt_translate(d, 0, &x) == 0);
		CHECK_EQ(x.iova, 0);
		CHECK_EQ(x.size, 4096);
		CHECK_EQ(x.gpa, M1);
		CHECK_EQ(x.hva, (uint64_t)(uintptr_t)data);
		CHECK_EQ(iovt_translate_range(d, 0, 1ull << 40, IOVT_PERM_RW, &x), 4096);
		CHECK(iovt_translate(d, 0x1000, &x) == -ENOENT);
	}
	iovt_engine_destroy(e);
	free(tables);
}

/*
 * A 2 MiB and a 1 GiB leaf are cached once and then hit: every other page
 * of the leaf is answered from the IOTLB's large-page sets without a walk
 * (misses stay at one per leaf), with the whole leaf's extent. Broken, a
 * large entry that is never found goes unnoticed by the judges — each
 * lookup walks and fills again, answering right, only slower (the
 * twenty-first session's mutation: lookup_large answering -ENOENT passed
 * every other case).
 */
static void case_large_hits(uint64_t *rng)
{
	(void)rng;
	struct env v;
	env_init(&v, NULL, 48, G1);
	const uint64_t i2m = 0x40000000ull, i1g = 0x80000000ull;
	const uint64_t g2m = gs_region(v.gs, 0)->gpa + 4 * M2, g1g = gs_region(v.gs, 1)->gpa;
	CHECK(gs_map(v.gd, i2m, g2m, M2, IOVT_PERM_RW, GS_LEAF_LARGEST) == 0);
	CHECK(gs_map(v.gd, i1g, g1g, G1, IOVT_PERM_R, GS_LEAF_LARGEST) == 0);
	CHECK(iovt_invalidate_dsi(v.e, v.did) == 0);
	CHECK(iovt_fence(v.e) == 0);
	struct iovt_stats a, b;
	iovt_domain_stats_get(v.d, &a);
	for (int leaf = 0; leaf < 2; leaf++) {
		const uint64_t base = leaf ? i1g : i2m, size = leaf ? G1 : M2;
		const uint64_t gpa = leaf ? g1g : g2m;
		for (uint64_t k = 0; k < 64; k++) {
			uint64_t off = (k * 0x9E3779B97F4A7C15ull) % size & ~(K - 1);
			struct iovt_extent x;
			CHECK_EQ(iovt_translate(v.d, base + off, &x), 0);
			CHECK_EQ(x.iova, base);
			CHECK_EQ(x.size, size);
			CHECK_EQ(x.gpa, gpa);
			CHECK_EQ(x.perm, leaf ? IOVT_PERM_R : IOVT_PERM_RW);
		}
	}
	iovt_domain_stats_get(v.d, &b);
	CHECK_EQ(b.iotlb_misses - a.iotlb_misses, 2); /* one fill per leaf */
	CHECK_EQ(b.iotlb_hits - a.iotlb_hits, 126);
	printf("  large-hits: a 2 MiB and a 1 GiB leaf, 64 lookups each, 2 misses\n");
	env_fini(&v);
}


/*
 * set-spread: the IOTLB's set index (iotlb_set_at; white box, no engine).
 * Locality: 64 consecutive keys (as many as there are sets in a smaller
 * table) sit on consecutive sets, so a pool read in IOVA order reads set
 * lines in address order (fails with a hash of each key). Spread: 4 keys a
 * set on average at strides of 1 to 2^20 keys and odd ones, every level,
 * tables of 1 to 2^15 sets (the default capacity's): at most a fifth of the
 * keys (and 4) past a set's 8 ways. Measured worst 15% (stride 65 at 2^14
 * sets, stride 32 at 2^13: the lattice of Fibonacci hashing over an
 * arithmetic progression of groups). Fails with a hash of each key
 * (locality; it also reached 55%: stride 2^16 at 2^15 sets) or a group base
 * from the hash's low bits (a stride of nsets * 64 keys on one set). Larger
 * configured tables are not bounded here: some strides reach 22-54% there
 * (stride 32 at 2^17 sets, 2^20 at 2^18), the per-key hash's 78%.
 */
static void case_set_spread(uint64_t *seed_rng)
{
	/* Fixed bases: the bound is checked on the same layouts every run
	 * (worst over 1000 random bases: 14.99%). */
	(void)seed_rng;
	uint64_t fixed = 0x5e75b7eadull, *rng = &fixed;
	static const uint64_t odd[] = { 3, 5, 7, 33, 65, 511, 513, 4097 };
	uint32_t *load = calloc(1u << 15, sizeof(*load));
	CHECK(load);
	uint64_t worst_over = 0, worst_n = 1, checked = 0;
	for (unsigned k = 0; k <= 15; k++) {
		struct iotlb_table t;
		memset(&t, 0, sizeof(t));
		iotlb_table_shape(&t, 1ull << k);
		const uint64_t nsets = 1ull << k, n = 4 * nsets, group = nsets < 64 ? nsets : 64;
		for (unsigned l = 0; l < IOTLB_NLEVELS; l++) {
			const unsigned sh = iotlb_level_shift[l];
			const uint64_t base = gs_rand(rng) & ((1ull << 24) - 1);
			uint64_t tag, tag2;
			for (uint64_t i = 0; i < 4 * group; i++) {
				uint64_t key = base + i;
				uint32_t a = iotlb_set_at(&t, key << sh, l, &tag);
				CHECK(a < nsets);
				if ((key + 1) % group)
					CHECK_EQ(iotlb_set_at(&t, (key + 1) << sh, l, &tag2), (a + 1) & (nsets - 1));
			}
			for (unsigned si = 0; si < 21 + sizeof(odd) / sizeof(odd[0]); si++) {
				uint64_t stride = si < 21 ? 1ull << si : odd[si - 21];
				if (base + n * stride >= 1ull << (57 - sh))
					continue; /* past a 57-bit IOVA */
				memset(load, 0, nsets * sizeof(*load));
				uint64_t over = 0;
				for (uint64_t i = 0; i < n; i++) {
					uint32_t set = iotlb_set_at(&t, (base + i * stride) << sh, l, &tag);
					CHECK(set < nsets);
					over += ++load[set] > IOTLB_WAYS;
				}
				if (over > n / 5 + 4)
					fprintf(stderr, "set-spread: %u sets, level %u, stride %" PRIu64
						": %" PRIu64 " of %" PRIu64 " keys past 8 ways\n",
						(unsigned)nsets, l, stride, over, n);
				CHECK(over <= n / 5 + 4);
				if (over * worst_n > worst_over * n)
					worst_over = over, worst_n = n;
				checked++;
			}
		}
	}
	free(load);
	printf("  set-spread: %" PRIu64 " layouts, worst %" PRIu64 " of %" PRIu64 " keys past 8 ways\n",
	       checked, worst_over, worst_n);
}

/* ------------------------------------------------------------- grow-judged */

/* Growth judged by the hit rate (engine/iotlb, count_eviction): a table of
 * 16 entries (capacity 64) whose 8 hot pages hit 400 times a round while
 * one new page a round misses and evicts a cold entry; 400 rounds, so
 * hundreds of live evictions (each one past a quarter of the table grew it
 * before the twenty-fifth session, whatever the hit rate). Misses stay
 * under 1%: the table must not grow. Then a scan of new pages with no
 * hits in between: it must grow. Every answer judged against the guest. */
static void case_grow_judged(uint64_t *rng)
{
	(void)rng;
	struct iovt_config cfg = { .iotlb_entries = 64 };
	struct env v;
	env_init(&v, &cfg, 48, G1);
	const uint64_t hot = 0x10000000ull, cold = 0x20000000ull;
	const unsigned rounds = 400, scan = 4096;
	for (uint64_t i = 0; i < 8; i++)
		CHECK(gs_map(v.gd, hot + i * K, 0x400000 + 2 * i * K, K, IOVT_PERM_RW, GS_LEAF_4K) == 0);
	for (uint64_t i = 0; i < rounds + scan; i++) /* 2 apart in GPA: one entry each */
		CHECK(gs_map(v.gd, cold + i * K, 0x1000000 + 2 * i * K, K, IOVT_PERM_R, GS_LEAF_4K) == 0);
	CHECK(iovt_invalidate_dsi(v.e, v.did) == 0);
	CHECK(iovt_fence(v.e) == 0);
	CHECK_EQ(iotlb_start_entries(64), 16);
	uint64_t c = 0;
	for (unsigned r = 0; r < rounds; r++) {
		for (unsigned k = 0; k < 400; k++)
			judge(&v, hot + (k % 8) * K);
		judge(&v, cold + c++ * K);
	}
	uint64_t ev = iotlb_counter(&v.d->iotlb, IOTLB_EVICTIONS);
	uint64_t hits = iotlb_counter(&v.d->iotlb, IOTLB_HITS), misses = iotlb_counter(&v.d->iotlb, IOTLB_MISSES);
	printf("  grow-judged: hot set: %" PRIu64 " hits, %" PRIu64 " misses, %" PRIu64
	       " live evictions, capacity %" PRIu64 "\n", hits, misses, ev, iotlb_capacity(&v.d->iotlb));
	CHECK(ev >= 256); /* four judgements' worth (chunks of 64 a thread) */
	CHECK(misses * 100 < hits + misses);
	CHECK_EQ(atomic_load(&v.d->iotlb.grown), 0);
	CHECK_EQ(iotlb_capacity(&v.d->iotlb), 16);
	for (unsigned k = 0; k < scan; k++)
		judge(&v, cold + c++ * K);
	printf("  grow-judged: scan of %u pages: capacity %" PRIu64 ", %" PRIu64 " growths\n", scan,
	       iotlb_capacity(&v.d->iotlb), (uint64_t)atomic_load(&v.d->iotlb.grown));
	CHECK(atomic_load(&v.d->iotlb.grown) > 0);
	CHECK(iotlb_capacity(&v.d->iotlb) > 16);
	env_fini(&v);
}

/* -------------------------------------------------------------------- tear */

/* One set of 8 ways that never grows (iotlb_entries 8) and 64 one-page
 * entries, each its own GPA and permission: nearly every translate misses
 * and rewrites a line in place (iotlb_hit.h's seqlock) while the other
 * readers copy lines out, and an invalidator PSIs random pages (no change)
 * and fences, killing claims and emptying slots meanwhile. Every field of
 * every answer is checked: an answer mixing two fills fails. At the end no
 * slot is left a fill's (BUSY or KILLED). Written by the review of the
 * twenty-fifth session's IOTLB; fails with the probe's seq check removed. */
#define T_PAGES 64
#define T_IOVA 0x40000000ull
#define T_READERS 3
static struct env tv;
static atomic_int t_stop;
static _Atomic uint64_t t_checks;

static uint64_t t_gpa(unsigned i)
{
	return 0x2000000 + (uint64_t)((i * 37u) % T_PAGES) * 3 * K;
}

static uint32_t t_perm(unsigned i)
{
	return 1 + i % 3;
}

static void t_fail(const char *what, unsigned i, const struct iovt_extent *x)
{
	fprintf(stderr, "torn: %s: page %u iova 0x%" PRIx64 " size 0x%" PRIx64 " gpa 0x%" PRIx64
		" hva 0x%" PRIx64 " perm %u (want gpa 0x%" PRIx64 " perm %u; seed %" PRIu64 ")\n", what, i,
		x->iova, x->size, x->gpa, x->hva, x->perm, t_gpa(i), t_perm(i), check_seed);
	exit(1);
}

static void *t_reader(void *arg)
{
	uint64_t s = (uint64_t)(uintptr_t)arg;
	iovt_thread_register();
	while (!atomic_load_explicit(&t_stop, memory_order_relaxed)) {
		unsigned i = (unsigned)gs_rand_below(&s, T_PAGES);
		uint64_t a = T_IOVA + 2 * i * K + gs_rand_below(&s, K);
		struct iovt_extent x;
		int rc = iovt_translate(tv.d, a, &x);
		atomic_fetch_add_explicit(&t_checks, 1, memory_order_relaxed);
		if (rc)
			t_fail("an error", i, &x);
		if (x.iova != T_IOVA + 2 * i * K || x.size != K)
			t_fail("extent", i, &x);
		if (x.gpa != t_gpa(i))
			t_fail("gpa", i, &x);
		if (x.hva != (uint64_t)(uintptr_t)gs_hva(tv.gs, t_gpa(i)))
			t_fail("hva", i, &x);
		if (x.perm != t_perm(i))
			t_fail("perm", i, &x);
	}
	iovt_thread_unregister();
	return NULL;
}

static void *t_invalidator(void *arg)
{
	uint64_t s = (uint64_t)(uintptr_t)arg;
	iovt_thread_register();
	while (!atomic_load_explicit(&t_stop, memory_order_relaxed)) {
		unsigned i = (unsigned)gs_rand_below(&s, T_PAGES);
		CHECK(iovt_invalidate_psi(tv.e, tv.did, T_IOVA + 2 * i * K, 0, false) == 0);
		CHECK(iovt_fence(tv.e) == 0);
	}
	iovt_thread_unregister();
	return NULL;
}

static void case_tear(uint64_t *rng)
{
	struct iovt_config cfg = { .iotlb_entries = 8 };
	env_init(&tv, &cfg, 48, G1);
	for (unsigned i = 0; i < T_PAGES; i++)
		CHECK(gs_map(tv.gd, T_IOVA + 2 * i * K, t_gpa(i), K, t_perm(i), GS_LEAF_4K) == 0);
	CHECK(iovt_invalidate_dsi(tv.e, tv.did) == 0);
	CHECK(iovt_fence(tv.e) == 0);
	pthread_t th[T_READERS + 1];
	for (unsigned i = 0; i < T_READERS; i++)
		CHECK(pthread_create(&th[i], NULL, t_reader, (void *)(uintptr_t)(gs_rand(rng) | 1)) == 0);
	CHECK(pthread_create(&th[T_READERS], NULL, t_invalidator, (void *)(uintptr_t)(gs_rand(rng) | 1)) == 0);
	double t0 = now_s();
	while (now_s() - t0 < 2.0 || atomic_load(&t_checks) < 100000)
		usleep(10000);
	atomic_store(&t_stop, 1);
	for (unsigned i = 0; i <= T_READERS; i++)
		pthread_join(th[i], NULL);
	struct iovt_stats st;
	iovt_domain_stats_get(tv.d, &st);
	printf("  tear: %" PRIu64 " answers checked; iotlb hits %" PRIu64 " misses %" PRIu64
	       " evictions %" PRIu64 " invalidated %" PRIu64 "\n", atomic_load(&t_checks), st.iotlb_hits,
	       st.iotlb_misses, st.iotlb_evictions, st.iotlb_invalidated);
	CHECK(st.iotlb_hits > 0 && st.iotlb_evictions > 0 && st.iotlb_invalidated > 0);
	CHECK(iotlb_count(&tv.d->iotlb) <= 8);
	struct iotlb_table *t = iotlb_live(atomic_load(&tv.d->iotlb.table));
	CHECK(t != NULL);
	for (unsigned w = 0; w < IOTLB_WAYS; w++) {
		uint64_t v = atomic_load(&t->sets[0].slot[w]);
		CHECK((v & IOTLB_STATE_MASK) == 0 || (v & IOTLB_STATE_MASK) == IOTLB_SLOT_LIVE);
	}
	env_fini(&tv);
}

static int range_edges_sink(void *arg, const struct iovt_event *ev)
{
	(void)arg;
	(void)ev;
	return 0;
}

/*
 * iovt_translate_range's documented edges, from the shadow (a MAP
 * notifier): a 3 GiB extent (three contiguous 1 GiB leaves, one extent in
 * the record) returns INT32_MAX, not a length that overflows the int into
 * a negative errno; an access of both bits on a read-only page is -EACCES
 * and counted (a test of either bit alone passed before; found by a
 * mutation audit). The leaves' host memory is a made-up address, never
 * dereferenced: only the tables are read.
 */
static void case_range_edges(uint64_t *rng)
{
	(void)rng;
	struct iovt_engine *e;
	uint64_t *tables = hand_tables_engine(&e);
	CHECK(iovt_guest_ram_add(e, G1, 5 * G1, (void *)(uintptr_t)0x1000, NULL) == 0);
	/* PML4[0] -> PDPT at 0x2000; PDPT[1..3]: 1 GiB leaves at GPA 1-3 GiB,
	 * RW; PDPT[4]: GPA 5 GiB, read-only (not contiguous: its own extent). */
	tables[0x1000 / 8] = 0x2000 | IOVT_PERM_RW;
	for (unsigned i = 1; i <= 3; i++)
		tables[0x2000 / 8 + i] = (i * G1) | VTD_PTE_PS | IOVT_PERM_RW;
	tables[0x2000 / 8 + 4] = (5 * G1) | VTD_PTE_PS | IOVT_PERM_R;
	struct iovt_domain *d;
	struct iovt_domain_config dc = { .did = 1, .root_gpa = 0x1000, .addr_width = 48, .allow_1g = true };
	CHECK(iovt_domain_create(e, &dc, &d) == 0);
	struct iovt_sink sink;
	struct iovt_notifier *n;
	CHECK(iovt_callback_sink_init(&sink, range_edges_sink, NULL, NULL) == 0);
	CHECK(iovt_notifier_attach(d, IOVT_NOTIFY_IOTLB_EVENTS, &sink, &n) == 0); /* replays */
	struct iovt_extent x;
	CHECK(iovt_translate(d, G1 + 5 * K, &x) == 0);
	CHECK_EQ(x.iova, G1);
	CHECK_EQ(x.size, 3 * G1);
	CHECK_EQ(iovt_translate_range(d, G1, 4 * G1, IOVT_PERM_RW, &x), INT32_MAX);
	CHECK_EQ(iovt_translate_range(d, 3 * G1, 4 * G1, IOVT_PERM_R, &x), G1);
	struct iovt_stats a, b;
	iovt_domain_stats_get(d, &a);
	CHECK_EQ(iovt_translate_range(d, 4 * G1, 1, IOVT_PERM_R, &x), 1);
	CHECK_EQ(iovt_translate_range(d, 4 * G1, 1, IOVT_PERM_RW, &x), (uint64_t)-EACCES);
	CHECK_EQ(iovt_translate_range(d, 4 * G1, 1, IOVT_PERM_W, &x), (uint64_t)-EACCES);
	iovt_domain_stats_get(d, &b);
	CHECK_EQ(b.translate_eacces - a.translate_eacces, 2);
	iovt_engine_destroy(e);
	free(tables);
}

static const struct {
	const char *name;
	void (*fn)(uint64_t *rng);
} cases[] = {
	{ "map-detach", case_map_detach },
	{ "service", case_service },
	{ "hostile", case_hostile },
	{ "destroyed", case_destroyed },
	{ "narrowed", case_narrowed },
	{ "no-room", case_no_room },
	{ "run-reach", case_run_reach },
	{ "evict-withdraw", case_evict_withdraw },
	{ "concurrent", case_concurrent },
	{ "concurrent-shadow", case_concurrent_shadow },
	{ "region-top", case_region_top },
	{ "range-edges", case_range_edges },
	{ "large-hits", case_large_hits },
	{ "set-spread", case_set_spread },
	{ "tear", case_tear },
	{ "grow-judged", case_grow_judged },
};

int main(int argc, char **argv)
{
	uint64_t rng = check_pick_seed("translate-service");
	iovt_thread_register();
	int ran = 0;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (argc > 1 && strcmp(argv[1], "all") && strcmp(argv[1], cases[i].name))
			continue;
		printf("translate %s\n", cases[i].name);
		fflush(stdout);
		cases[i].fn(&rng);
		ran++;
	}
	iovt_thread_unregister();
	CHECK(ran > 0);
	printf("translate: ok\n");
	return 0;
}
