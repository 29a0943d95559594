/* SPDX-License-Identifier: MIT */
/* The test/benchmark world: guestsim + engine + model sinks + judges. */
#include "world.h"

#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "guestsim.h"

#define K 0x1000ull
#define MAX_DOMAINS 64
#define TABLE_BYTES (256ull << 20)

struct touched {
	uint64_t (*r)[2];
	size_t n, cap;
};

struct wdomain {
	struct gs_domain *gs;
	struct iovt_domain *dom;
	struct iovt_notifier *notifier;
	struct iovt_model_sink *model;
	uint16_t did;
	struct touched touched;
	uint64_t calls_seen; /* model map+unmap calls at the last fence */
};

struct world {
	struct world_config cfg;
	struct guestsim *gs;
	struct iovt_engine *engine;
	uint32_t region_id[4];
	struct wdomain d[MAX_DOMAINS];
	struct world_totals t;
	struct iovt_extent *snap; /* scratch for `before` */
	size_t snap_cap;
	int reported;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int world_create(const struct world_config *cfg, struct world **out)
{
	if (!cfg->domains || cfg->domains > MAX_DOMAINS || !cfg->regions || cfg->regions > 4)
		return -EINVAL;
	struct world *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->cfg = *cfg;
	uint64_t table = cfg->region_size / 4 < TABLE_BYTES ? cfg->region_size / 4 : TABLE_BYTES;
	w->gs = gs_create(cfg->regions, cfg->region_size, table);
	if (!w->gs || iovt_engine_create(NULL, &w->engine))
		goto fail;
	for (unsigned i = 0; i < cfg->regions; i++) {
		const struct gs_region *r = gs_region(w->gs, i);
		if (iovt_guest_ram_add(w->engine, r->gpa, r->size, r->hva, &w->region_id[i]))
			goto fail;
	}
	for (unsigned i = 0; i < cfg->domains; i++) {
		struct wdomain *d = &w->d[i];
		d->did = (uint16_t)(i + 1);
		d->gs = gs_domain_create(w->gs, cfg->addr_width, cfg->allow_2m, cfg->allow_1g);
		if (!d->gs)
			goto fail;
		struct iovt_domain_config dc = {
			.did = d->did, .root_gpa = gs_domain_root(d->gs), .addr_width = cfg->addr_width,
			.allow_2m = cfg->allow_2m, .allow_1g = cfg->allow_1g,
		};
		if (iovt_domain_create(w->engine, &dc, &d->dom))
			goto fail;
		struct iovt_model_config mc = {
			.flavor = cfg->flavor, .max_mappings = cfg->max_mappings,
			.multi_unmap = cfg->multi_unmap, .unmap_cost_ns = cfg->unmap_cost_ns,
		};
		struct iovt_sink sink;
		if (iovt_model_sink_create(&mc, &d->model, &sink) ||
		    iovt_notifier_attach(d->dom, IOVT_NOTIFY_IOTLB_EVENTS, &sink, &d->notifier))
			goto fail;
	}
	*out = w;
	return 0;
fail:
	world_destroy(w);
	return -ENOMEM;
}

void world_destroy(struct world *w)
{
	if (!w)
		return;
	if (w->engine)
		iovt_engine_destroy(w->engine);
	for (unsigned i = 0; i < MAX_DOMAINS; i++) {
		if (w->d[i].model)
			iovt_model_sink_destroy(w->d[i].model);
		free(w->d[i].touched.r);
	}
	if (w->gs)
		gs_destroy(w->gs);
	free(w->snap);
	free(w);
}

struct iovt_engine *world_engine(struct world *w) { return w->engine; }
uint16_t world_did(const struct world *w, unsigned dom) { return w->d[dom].did; }
struct iovt_domain *world_domain(struct world *w, unsigned dom) { return w->d[dom].dom; }
struct iovt_model_sink *world_model(struct world *w, unsigned dom) { return w->d[dom].model; }

void world_region(const struct world *w, unsigned i, uint64_t *gpa, uint64_t *size)
{
	const struct gs_region *r = gs_region(w->gs, i);
	*gpa = r->gpa;
	*size = r->size;
}

uint64_t world_region_data_size(const struct world *w, unsigned i)
{
	return gs_region_data_size(w->gs, i);
}

static void touch(struct wdomain *d, uint64_t iova, uint64_t size)
{
	struct touched *t = &d->touched;
	if (t->n == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 16;
		t->r = realloc(t->r, t->cap * sizeof(*t->r));
		if (!t->r)
			abort();
	}
	t->r[t->n][0] = iova;
	t->r[t->n][1] = iova + size - 1;
	t->n++;
}

int world_map(struct world *w, unsigned dom, uint64_t iova, uint64_t gpa, uint64_t size,
	      uint32_t perm, uint64_t policy)
{
	touch(&w->d[dom], iova, size);
	return gs_map(w->d[dom].gs, iova, gpa, size, perm, policy);
}

int world_unmap(struct world *w, unsigned dom, uint64_t iova, uint64_t size)
{
	touch(&w->d[dom], iova, size);
	return gs_unmap(w->d[dom].gs, iova, size);
}

#define TIMED(w, call)                                  \
	({                                              \
		uint64_t t0_ = now_ns();                \
		int rc_ = (call);                       \
		(w)->t.engine_ns += now_ns() - t0_;     \
		rc_;                                    \
	})

int world_psi(struct world *w, unsigned dom, uint64_t addr, unsigned am, bool ih)
{
	return TIMED(w, iovt_invalidate_psi(w->engine, w->d[dom].did, addr, am, ih));
}

int world_dsi(struct world *w, unsigned dom)
{
	return TIMED(w, iovt_invalidate_dsi(w->engine, w->d[dom].did));
}

int world_global(struct world *w)
{
	return TIMED(w, iovt_invalidate_global(w->engine));
}

int world_invalidate_range(struct world *w, unsigned dom, uint64_t iova, uint64_t size,
			   unsigned max_am, bool ih)
{
	uint64_t first = iova >> 12, last = (iova + size - 1) >> 12;
	unsigned am = 0;
	while ((first >> am) != (last >> am))
		am++;
	if (am > max_am)
		return world_dsi(w, dom);
	return world_psi(w, dom, (first >> am) << (12 + am), am, ih);
}

/* The guest view of one page for the oracle, in the engine's region ids. */
static bool guest_page(struct world *w, struct wdomain *d, uint64_t iova, struct iovt_extent *out)
{
	uint64_t gpa;
	uint32_t perm;
	if (!gs_truth_lookup(d->gs, iova, &gpa, &perm))
		return false;
	for (unsigned i = 0; i < w->cfg.regions; i++) {
		const struct gs_region *r = gs_region(w->gs, i);
		if (gpa >= r->gpa && gpa - r->gpa < r->size) {
			*out = (struct iovt_extent){ iova, K, gpa, (uint64_t)(uintptr_t)r->hva + (gpa - r->gpa),
						     perm, w->region_id[i] };
			return true;
		}
	}
	return false; /* a target outside RAM is not mapped */
}

struct oracle_arg {
	struct world *w;
	struct wdomain *d;
};

static bool oracle_guest(void *arg, uint64_t iova, struct iovt_extent *out)
{
	struct oracle_arg *a = arg;
	return guest_page(a->w, a->d, iova, out);
}

/* The model's mappings over [first, last], plus the one containing first. */
static size_t snapshot(struct world *w, struct wdomain *d, uint64_t first, uint64_t last)
{
	struct iovt_extent e;
	size_t n = 0;
	uint64_t from = first;
	if (iovt_model_sink_find(d->model, first, &e))
		from = e.iova;
	for (;;) {
		if (w->snap_cap - n < 256) {
			w->snap_cap = w->snap_cap ? w->snap_cap * 2 : 1024;
			w->snap = realloc(w->snap, w->snap_cap * sizeof(*w->snap));
			if (!w->snap)
				abort();
		}
		size_t got = iovt_model_sink_dump(d->model, from, w->snap + n, 256);
		size_t keep = got;
		while (keep && w->snap[n + keep - 1].iova > last)
			keep--;
		n += keep;
		if (got < 256 || keep < got)
			break;
		from = w->snap[n - 1].iova + w->snap[n - 1].size;
	}
	return n;
}

static void report(struct world *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(struct world *w, const char *fmt, ...)
{
	if (w->reported++ >= 10)
		return;
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "world: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* Model vs guest truth, page by page over [first, last]. */
static uint64_t compare_range(struct world *w, struct wdomain *d, uint64_t first, uint64_t last)
{
	uint64_t bad = 0;
	for (uint64_t p = first & ~(K - 1); p <= last && p >= (first & ~(K - 1)); p += K) {
		struct iovt_extent want, have;
		bool g = guest_page(w, d, p, &want);
		bool m = iovt_model_sink_find(d->model, p, &have);
		if (g != m || (g && (have.gpa + (p - have.iova) != want.gpa ||
				     have.hva + (p - have.iova) != want.hva || have.perm != want.perm))) {
			if (!bad)
				report(w, "did %u iova 0x%" PRIx64 ": guest %s, sink %s", d->did, p,
				       g ? "mapped" : "unmapped", m ? "mapped" : "unmapped");
			bad++;
		}
		if (p + K == 0)
			break;
	}
	return bad;
}

static int cmp_range(const void *a, const void *b)
{
	const uint64_t *x = a, *y = b;
	return x[0] < y[0] ? -1 : x[0] > y[0];
}

int world_fence(struct world *w)
{
	int failures = 0;
	struct { size_t n; uint64_t lo, hi; } pre[MAX_DOMAINS];
	struct iovt_extent *before[MAX_DOMAINS] = { 0 };

	/* The sink's state before, over the hull of what the guest touched. */
	for (unsigned i = 0; w->cfg.judge && i < w->cfg.domains; i++) {
		struct wdomain *d = &w->d[i];
		pre[i].n = 0;
		if (!d->touched.n)
			continue;
		qsort(d->touched.r, d->touched.n, sizeof(*d->touched.r), cmp_range);
		pre[i].lo = d->touched.r[0][0];
		pre[i].hi = 0;
		for (size_t k = 0; k < d->touched.n; k++)
			if (d->touched.r[k][1] > pre[i].hi)
				pre[i].hi = d->touched.r[k][1];
		pre[i].n = snapshot(w, d, pre[i].lo, pre[i].hi);
		before[i] = malloc((pre[i].n + 1) * sizeof(struct iovt_extent));
		memcpy(before[i], w->snap, pre[i].n * sizeof(struct iovt_extent));
	}

	int rc = TIMED(w, iovt_fence(w->engine));
	w->t.fences++;
	if (rc) {
		w->t.fence_errors++;
		struct iovt_stats st;
		iovt_stats_get(w->engine, &st);
		report(w, "fence returned %d", rc);
		for (int k = 0; k < IOVT_ERR_KIND_COUNT; k++)
			if (st.errors[k])
				report(w, "  errors[%s] = %" PRIu64, iovt_err_kind_name(k), st.errors[k]);
		failures++;
	}

	for (unsigned i = 0; i < w->cfg.domains; i++) {
		struct wdomain *d = &w->d[i];
		struct iovt_model_stats ms;
		iovt_model_sink_stats(d->model, &ms);
		uint64_t calls = ms.map_calls + ms.unmap_calls + ms.unmap_all_calls;
		uint64_t delta = calls - d->calls_seen;
		d->calls_seen = calls;
		if (w->cfg.judge) {
			struct oracle_arg oa = { w, d };
			struct iovt_oracle_input in = {
				.before = before[i], .n_before = pre[i].n,
				.touched = (const uint64_t(*)[2])d->touched.r, .n_touched = d->touched.n,
				.guest = oracle_guest, .guest_arg = &oa, .multi_unmap = w->cfg.multi_unmap,
			};
			struct iovt_oracle_result res = { 0 };
			if (iovt_oracle_min_calls(&in, &res)) {
				report(w, "oracle refused its input");
				failures++;
			}
			w->t.oracle_min_calls += res.min_calls;
			w->t.calls_judged += delta;
			if (res.min_calls != delta) {
				w->t.oracle_excess++;
				report(w, "did %u fence %" PRIu64 ": %" PRIu64 " calls, oracle %" PRIu64
					  " (%" PRIu64 " unmaps + %" PRIu64 " maps)",
				       d->did, w->t.fences, delta, res.min_calls, res.min_unmaps, res.min_maps);
				failures++;
			}
			for (size_t k = 0; k < d->touched.n; k++) {
				uint64_t bad = compare_range(w, d, d->touched.r[k][0], d->touched.r[k][1]);
				w->t.mismatches += bad;
				failures += bad != 0;
			}
			if (w->cfg.full_check_every_fence)
				failures += world_full_check(w) != 0;
		}
		d->touched.n = 0;
		free(before[i]);
	}
	/* Totals from the models; a rejected call is a failed judgement. */
	uint64_t rejected_before = w->t.rejected_calls;
	w->t.map_calls = w->t.unmap_calls = w->t.rejected_calls = w->t.charged_ns = 0;
	for (unsigned i = 0; i < w->cfg.domains; i++) {
		struct iovt_model_stats ms;
		iovt_model_sink_stats(w->d[i].model, &ms);
		w->t.map_calls += ms.map_calls;
		w->t.unmap_calls += ms.unmap_calls + ms.unmap_all_calls;
		w->t.rejected_calls += ms.rejected_calls;
		w->t.charged_ns += ms.charged_ns;
	}
	if (w->cfg.judge && w->t.rejected_calls != rejected_before) {
		report(w, "the model sink rejected %" PRIu64 " calls",
		       w->t.rejected_calls - rejected_before);
		failures++;
	}
	return failures;
}

struct full_arg {
	struct world *w;
	struct wdomain *d;
	uint64_t bad;
};

static void full_page(void *arg, uint64_t iova, uint64_t gpa, uint32_t perm)
{
	struct full_arg *a = arg;
	struct iovt_extent have, want;
	(void)gpa;
	(void)perm;
	if (!guest_page(a->w, a->d, iova, &want))
		return; /* target outside RAM: must not be mapped, checked by count */
	if (!iovt_model_sink_find(a->d->model, iova, &have) ||
	    have.gpa + (iova - have.iova) != want.gpa || have.perm != want.perm) {
		if (!a->bad)
			report(a->w, "full check: did %u iova 0x%" PRIx64 " differs", a->d->did, iova);
		a->bad++;
	}
}

uint64_t world_full_check(struct world *w)
{
	uint64_t bad = 0;
	for (unsigned i = 0; i < w->cfg.domains; i++) {
		struct wdomain *d = &w->d[i];
		struct full_arg a = { w, d, 0 };
		struct iovt_model_stats ms;
		gs_truth_for_each(d->gs, full_page, &a);
		iovt_model_sink_stats(d->model, &ms);
		/* Every guest page is in the sink (above); now nothing more. */
		if (ms.bytes_mapped / K > gs_truth_pages(d->gs)) {
			report(w, "full check: did %u sink holds %" PRIu64 " pages, guest %" PRIu64,
			       d->did, (uint64_t)(ms.bytes_mapped / K), (uint64_t)gs_truth_pages(d->gs));
			a.bad++;
		}
		bad += a.bad;
	}
	w->t.mismatches += bad;
	return bad;
}

void world_totals(const struct world *w, struct world_totals *out)
{
	*out = w->t;
}
