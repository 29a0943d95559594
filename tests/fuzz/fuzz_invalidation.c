/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the invalidation intake under a hostile stream. The
 * input is decoded as invalidation descriptors (PSI with any DID, address,
 * am and ih; DSI; global; fence; domain create/destroy of a few DIDs) mixed
 * with valid guest edits, against an engine whose domains have guestsim
 * tables (random but valid) and strict model sinks. Checked on every step:
 *  - each call returns exactly the code its documentation promises for that
 *    input (computed here independently), never anything else;
 *  - the counters add up: accepted (psi + dsi + global) + rejected
 *    (unknown_domain + bad_invalidation) == posted, per kind;
 *  - fences return 0 (the tables are valid) and afterwards every model sink
 *    equals its domain's record (iovt_translate), counts included, and the
 *    model refused nothing;
 *  - at the end, a DSI per domain and a fence make every sink equal the
 *    guest truth.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "guestsim.h"
#include "iovt.h"
#include "iovt_model.h"

#define K 0x1000ull
#define M2 0x200000ull
#define NDOM 3u

struct dom {
	uint16_t did;
	unsigned aw;
	bool a2m, a1g;
	struct gs_domain *gd;
	struct iovt_domain *d;       /* NULL while destroyed */
	struct iovt_model_sink *m;
	struct iovt_sink sink;
};

static struct {
	struct guestsim *gs;
	struct iovt_engine *e;
	struct dom dom[NDOM];
	uint64_t data_size;
	/* what we posted, and what the documentation says should have been accepted */
	uint64_t posted_psi, posted_dsi, posted_global;
	uint64_t ok_psi, ok_dsi, ok_ih, enoent, einval;
	uint64_t destroyed_with_pending; /* destroys that may have made accepted items stale */
} F;

static void die(const char *what, long long got, long long want)
{
	fprintf(stderr, "fuzz-invalidation: %s: got %lld, want %lld\n", what, got, want);
	abort();
}

static struct dom *by_did(uint16_t did)
{
	for (unsigned i = 0; i < NDOM; i++)
		if (F.dom[i].did == did && F.dom[i].d)
			return &F.dom[i];
	return NULL;
}

static void dom_create(struct dom *x)
{
	struct iovt_domain_config dc = { .did = x->did, .root_gpa = gs_domain_root(x->gd),
					 .addr_width = x->aw, .allow_2m = x->a2m, .allow_1g = x->a1g };
	int rc = iovt_domain_create(F.e, &dc, &x->d);
	if (rc)
		die("domain_create", rc, 0);
	struct iovt_notifier *n;
	/* The model was emptied by the last destroy; attach replays the guest view. */
	if (iovt_model_sink_count(x->m))
		die("model not empty before attach", (long long)iovt_model_sink_count(x->m), 0);
	rc = iovt_notifier_attach(x->d, IOVT_NOTIFY_IOTLB_EVENTS, &x->sink, &n);
	if (rc)
		die("attach", rc, 0);
}

/* Model == record for one domain. */
static void check_record(struct dom *x)
{
	struct iovt_extent buf[64];
	uint64_t from = 0, count = 0;
	size_t got;
	while ((got = iovt_model_sink_dump(x->m, from, buf, 64)) > 0) {
		for (size_t i = 0; i < got; i++) {
			struct iovt_extent t;
			if (iovt_translate(x->d, buf[i].iova, &t) || t.iova != buf[i].iova ||
			    t.size != buf[i].size || t.gpa != buf[i].gpa || t.hva != buf[i].hva ||
			    t.perm != buf[i].perm)
				die("record != model", (long long)buf[i].iova, 0);
		}
		count += got;
		from = buf[got - 1].iova + buf[got - 1].size;
	}
	struct iovt_stats st;
	iovt_domain_stats_get(x->d, &st);
	if (st.extents != count)
		die("extents != model count", (long long)st.extents, (long long)count);
	struct iovt_model_stats ms;
	iovt_model_sink_stats(x->m, &ms);
	if (ms.rejected_calls)
		die("model rejected calls", (long long)ms.rejected_calls, 0);
}

static void check_counters(void)
{
	struct iovt_stats st;
	iovt_stats_get(F.e, &st);
	if (st.psi != F.ok_psi)
		die("psi accepted", (long long)st.psi, (long long)F.ok_psi);
	if (st.dsi != F.ok_dsi)
		die("dsi accepted", (long long)st.dsi, (long long)F.ok_dsi);
	if (st.global != F.posted_global)
		die("global accepted", (long long)st.global, (long long)F.posted_global);
	/* iovt.h: ih counts like psi; an accepted item whose domain was
	 * destroyed before the drain is counted as accepted AND as stale —
	 * never as unknown_domain (that is for rejections at post only). */
	if (st.ih != F.ok_ih)
		die("ih accepted", (long long)st.ih, (long long)F.ok_ih);
	if (st.stale_domain > F.ok_psi + F.ok_dsi)
		die("stale > accepted", (long long)st.stale_domain, (long long)(F.ok_psi + F.ok_dsi));
	if (st.stale_domain && !F.destroyed_with_pending)
		die("stale without a destroy", (long long)st.stale_domain, 0);
	if (st.errors[IOVT_ERR_UNKNOWN_DOMAIN] != F.enoent)
		die("unknown_domain", (long long)st.errors[IOVT_ERR_UNKNOWN_DOMAIN], (long long)F.enoent);
	if (st.errors[IOVT_ERR_BAD_INVALIDATION] != F.einval)
		die("bad_invalidation", (long long)st.errors[IOVT_ERR_BAD_INVALIDATION],
		    (long long)F.einval);
	/* accepted + rejected == posted */
	if (st.invalidations + st.errors[IOVT_ERR_UNKNOWN_DOMAIN] + st.errors[IOVT_ERR_BAD_INVALIDATION] !=
	    F.posted_psi + F.posted_dsi + F.posted_global)
		die("accepted + rejected != posted", (long long)st.invalidations,
		    (long long)(F.posted_psi + F.posted_dsi + F.posted_global));
}

static void fence(void)
{
	int rc = iovt_fence(F.e);
	if (rc)
		die("fence", rc, 0);
	for (unsigned i = 0; i < NDOM; i++)
		if (F.dom[i].d)
			check_record(&F.dom[i]);
	check_counters();
}

static uint16_t pick_did(struct reader *r)
{
	static const uint16_t dids[8] = { 1, 2, 3, 1, 2, 0, 4, 0xffff };
	return dids[take(r, 1) & 7];
}

static uint64_t pick_addr(struct reader *r)
{
	uint8_t k = (uint8_t)take(r, 1);
	switch (k & 3) {
	case 0: return 0x40000000ull + take(r, 2) * K; /* where the guest maps */
	case 1: return take(r, 8);                     /* anything */
	case 2: return (1ull << (39 + (k >> 2) % 19)) - (take(r, 1) << 12); /* near width edges */
	default: return take(r, 3) << 12;
	}
}

static void guest_edit(struct reader *r, bool map)
{
	struct dom *x = &F.dom[take(r, 1) % NDOM];
	uint64_t iova = 0x40000000ull + take(r, 2) % 4096 * K; /* a 16 MiB window: edits collide */
	uint64_t pages = 1 + take(r, 1);
	if (map) {
		uint64_t gpage = take(r, 2) % (F.data_size / K);
		if ((gpage + pages) * K > F.data_size)
			pages = F.data_size / K - gpage;
		unsigned perm = 1 + (unsigned)take(r, 1) % 3;
		if (gs_map(x->gd, iova, gpage * K, pages * K, perm, GS_LEAF_LARGEST))
			abort();
	} else if (gs_unmap(x->gd, iova, pages * K)) {
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct reader r = { data, size };
	memset(&F, 0, sizeof(F));
	F.gs = gs_create(2, 8 * M2, 4 * M2);
	if (!F.gs || iovt_engine_create(NULL, &F.e))
		abort();
	iovt_thread_register();
	for (unsigned i = 0; i < 2; i++) {
		const struct gs_region *g = gs_region(F.gs, i);
		if (iovt_guest_ram_add(F.e, g->gpa, g->size, g->hva, NULL))
			abort();
	}
	F.data_size = gs_region_data_size(F.gs, 0);
	static const unsigned aw[NDOM] = { 39, 48, 57 };
	for (unsigned i = 0; i < NDOM; i++) {
		struct dom *x = &F.dom[i];
		x->did = (uint16_t)(i + 1);
		x->aw = aw[i];
		x->a2m = i != 2;
		x->a1g = i == 1;
		x->gd = gs_domain_create(F.gs, x->aw, x->a2m, x->a1g);
		struct iovt_model_config mc = { .flavor = i == 2 ? IOVT_MODEL_IOMMUFD : IOVT_MODEL_TYPE1,
						.multi_unmap = i != 0 };
		if (!x->gd || iovt_model_sink_create(&mc, &x->m, &x->sink))
			abort();
	}
	/* Random but valid tables before the domains exist (attach replays them). */
	for (unsigned i = 0; i < 4; i++)
		guest_edit(&r, true);
	for (unsigned i = 0; i < NDOM; i++)
		dom_create(&F.dom[i]);

	while (r.n) {
		unsigned op = (unsigned)take(&r, 1);
		switch (op % 10) {
		case 0: case 1: { /* PSI */
			uint16_t did = pick_did(&r);
			uint64_t addr = pick_addr(&r);
			unsigned am = (unsigned)take(&r, 1);
			am = (op & 0x80) ? am : am % 16;
			bool ih = op & 0x40;
			struct dom *x = by_did(did);
			int want = !x ? -ENOENT
				   : (am > IOVT_PSI_MAX_AM || (addr >> x->aw) != 0) ? -EINVAL : 0;
			int rc = iovt_invalidate_psi(F.e, did, addr, am, ih);
			F.posted_psi++;
			if (rc != want)
				die("psi", rc, want);
			F.ok_psi += want == 0;
			F.ok_ih += want == 0 && ih;
			F.enoent += want == -ENOENT;
			F.einval += want == -EINVAL;
			break;
		}
		case 2: { /* DSI */
			uint16_t did = pick_did(&r);
			int want = by_did(did) ? 0 : -ENOENT;
			int rc = iovt_invalidate_dsi(F.e, did);
			F.posted_dsi++;
			if (rc != want)
				die("dsi", rc, want);
			F.ok_dsi += want == 0;
			F.enoent += want == -ENOENT;
			break;
		}
		case 3: /* global */
			if (iovt_invalidate_global(F.e))
				die("global", -1, 0);
			F.posted_global++;
			break;
		case 4: case 5:
			fence();
			break;
		case 6: { /* destroy or create a domain */
			struct dom *x = &F.dom[take(&r, 1) % NDOM];
			if (x->d) {
				int rc = iovt_domain_destroy(x->d);
				if (rc)
					die("domain_destroy", rc, 0);
				F.destroyed_with_pending++;
				x->d = NULL;
				if (iovt_model_sink_count(x->m))
					die("destroy left mappings", (long long)iovt_model_sink_count(x->m), 0);
			} else {
				dom_create(x);
			}
			break;
		}
		case 7: case 8:
			guest_edit(&r, true);
			break;
		default:
			guest_edit(&r, false);
			break;
		}
	}
	fence();
	/* Converge: the whole view of every live domain equals the guest truth. */
	for (unsigned i = 0; i < NDOM; i++) {
		struct dom *x = &F.dom[i];
		if (!x->d)
			continue;
		if (iovt_invalidate_dsi(F.e, x->did))
			abort();
		F.posted_dsi++;
		F.ok_dsi++;
	}
	fence();
	for (unsigned i = 0; i < NDOM; i++) {
		struct dom *x = &F.dom[i];
		if (!x->d)
			continue;
		struct iovt_model_stats ms;
		iovt_model_sink_stats(x->m, &ms);
		if (ms.bytes_mapped / K != gs_truth_pages(x->gd))
			die("model pages != truth pages", (long long)(ms.bytes_mapped / K),
			    (long long)gs_truth_pages(x->gd));
		/* every page of the window: the sink holds what the guest maps
		 * (the page counts above could agree on different pages; a
		 * review found only every 7th page checked, through the record),
		 * and every 7th through translate (the record) */
		struct iovt_extent t;
		for (uint64_t p = 0; p < 4096 + 256; p++) {
			uint64_t iova = 0x40000000ull + p * K, gpa;
			uint32_t perm;
			bool in = gs_truth_lookup(x->gd, iova, &gpa, &perm);
			bool held = iovt_model_sink_find(x->m, iova, &t);
			if (in != held || (in && (t.gpa + (iova - t.iova) != gpa || t.perm != perm)))
				die("sink != truth", (long long)iova, 0);
			if (p % 7)
				continue;
			int rc = iovt_translate(x->d, iova, &t);
			if (in != (rc == 0) || (in && (t.gpa + (iova - t.iova) != gpa || t.perm != perm)))
				die("translate != truth", (long long)iova, 0);
		}
	}
	iovt_engine_destroy(F.e);
	for (unsigned i = 0; i < NDOM; i++)
		iovt_model_sink_destroy(F.dom[i].m);
	gs_destroy(F.gs);
	return 0;
}
