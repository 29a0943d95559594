/* SPDX-License-Identifier: MIT */
#include "fence_support.h"

#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <x86intrin.h>

#include "baseline.h"
#include "guest/vtd_walk.h" /* VTD_PTE_R/W: the entry format the guest writes */
#include "guestsim.h"
#include "iovt.h"

#define K4 0x1000ull
#define M2 (2ull << 20)
#define BASE (1ull << 32)           /* IOVA of the workload's pages */
#define FAR (BASE + (512ull << 20)) /* a 2 MiB region nothing ever maps */
#define NEIGH_GPA (64ull << 20)     /* the neighbour's page */
#define DATA_GPA (128ull << 20)     /* the toggled pages (pieces 64 pages apart) */
#define MAX_PAGES 32u

struct fb_world {
	enum fb_side side;
	enum fb_workload wl;
	struct guestsim *gs;
	struct gs_domain *gd;
	struct iovt_engine *e;
	struct iovt_domain *d;
	struct iovt_queue *q;
	struct baseline *bl;
	uint64_t calls;
	uint64_t pte_gpa[MAX_PAGES]; /* level-1 entries of BASE + k pages */
	uint64_t pte_val[MAX_PAGES]; /* what "mapped" writes there */
};

static int null_event(void *arg, const struct iovt_event *ev)
{
	(void)ev;
	((struct fb_world *)arg)->calls++;
	return 0;
}

const char *fb_workload_name(enum fb_workload w)
{
	static const char *const n[FB_WORKLOADS] = { "map_unmap_1", "map_unmap_1_region_empties",
						     "pieces_1_32", "psi_unmapped", "psi_unchanged",
						     "empty_wait", "first_post" };
	return w < FB_WORKLOADS ? n[w] : "?";
}

const char *fb_side_name(enum fb_side s)
{
	return s == FB_QUEUE ? "engine_queue" : s == FB_LEGACY ? "engine_legacy" : "baseline";
}

uint64_t fb_sink_calls(const struct fb_world *w) { return w->calls; }

int fb_has_side(enum fb_workload w, enum fb_side s)
{
	/* An explicit queue has no "first post": it is created by the host. */
	return w != FB_FIRST_POST || s != FB_QUEUE;
}

struct new_thread_step {
	struct fb_world *w;
	uint64_t i, ticks;
	int rc;
};

static void *new_thread_main(void *arg)
{
	struct new_thread_step *a = arg;
	iovt_thread_register();
	uint64_t t0 = __rdtsc();
	a->rc = fb_step(a->w, a->i);
	a->ticks = __rdtsc() - t0;
	iovt_thread_unregister(); /* releases the implicit queue */
	return NULL;
}

uint64_t fb_step_new_thread(struct fb_world *w, uint64_t i)
{
	struct new_thread_step a = { .w = w, .i = i };
	pthread_t t;
	if (pthread_create(&t, NULL, new_thread_main, &a))
		return UINT64_MAX;
	pthread_join(t, NULL);
	return a.rc ? UINT64_MAX : a.ticks;
}

/* Pages of the pieces workload at step i: the cycle maps n = 1..32 pages
 * (even steps) and unmaps them (odd steps). */
static unsigned pieces_pages(uint64_t i) { return 1u + (unsigned)((i / 2) % MAX_PAGES); }

static unsigned order_of(unsigned pages)
{
	unsigned am = 0;
	while ((1u << am) < pages)
		am++;
	return am;
}

static int psi(struct fb_world *w, uint64_t addr, unsigned am)
{
	switch (w->side) {
	case FB_QUEUE:
		return iovt_queue_psi(w->q, 1, addr, am, false);
	case FB_LEGACY:
		return iovt_invalidate_psi(w->e, 1, addr, am, false);
	default:
		return baseline_invalidate_psi(w->bl, addr, am);
	}
}

static int wait(struct fb_world *w)
{
	switch (w->side) {
	case FB_QUEUE:
		return iovt_queue_fence(w->q);
	case FB_LEGACY:
		return iovt_fence(w->e);
	default:
		return baseline_fence(w->bl);
	}
}

static void set_pte(struct fb_world *w, unsigned k, bool present)
{
	/* Relaxed 8-byte store into the guest's table: what a guest CPU does. */
	gs_write_pte(w->gs, w->pte_gpa[k], present ? w->pte_val[k] : 0);
}

int fb_step(struct fb_world *w, uint64_t i)
{
	int rc = 0;
	switch (w->wl) {
	case FB_MAP_UNMAP_1:
	case FB_MAP_UNMAP_1_EMPTY:
		set_pte(w, 0, i & 1);
		rc = psi(w, BASE, 0);
		break;
	case FB_PIECES_1_32: {
		unsigned n = pieces_pages(i);
		for (unsigned k = 0; k < n; k++)
			set_pte(w, k, !(i & 1));
		rc = psi(w, BASE, order_of(n));
		break;
	}
	case FB_PSI_UNMAPPED:
		rc = psi(w, FAR, 0);
		break;
	case FB_PSI_UNCHANGED:
	case FB_FIRST_POST:
		rc = psi(w, BASE, 0);
		break;
	default:
		break;
	}
	int f = wait(w);
	return rc ? rc : f;
}

struct fb_world *fb_create(enum fb_side side, enum fb_workload wl)
{
	struct fb_world *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->side = side;
	w->wl = wl;
	iovt_thread_register();
	w->gs = gs_create(1, 256ull << 20, 16ull << 20);
	w->gd = w->gs ? gs_domain_create(w->gs, 48, true, true) : NULL;
	if (!w->gd)
		goto fail;
	/* Tables for the workload's pages: map them once (4 KiB leaves), note
	 * where their entries are and what a present one holds. */
	for (unsigned k = 0; k < MAX_PAGES; k++) {
		/* pieces of 1, 2, .. 7, 4 pages: GPA-contiguous inside, 64 pages
		 * apart between, so each is its own extent */
		unsigned piece = 0;
		for (unsigned end = 1, len = 1; end <= k; end += ++len)
			piece++;
		uint64_t gpa = DATA_GPA + (uint64_t)piece * 64 * K4 + k * K4;
		if (gs_map(w->gd, BASE + k * K4, gpa, K4, IOVT_PERM_RW, GS_LEAF_4K))
			goto fail;
		w->pte_gpa[k] = gs_pte_gpa(w->gd, BASE + k * K4, 1);
		w->pte_val[k] = gpa | VTD_PTE_R | VTD_PTE_W;
		if (!w->pte_gpa[k])
			goto fail;
	}
	/* Initial state: the toggled pages unmapped, except for psi_unchanged;
	 * the neighbour (map_unmap_1 only) 64 pages up in the same 2 MiB region. */
	for (unsigned k = 0; k < MAX_PAGES; k++)
		if (!((wl == FB_PSI_UNCHANGED || wl == FB_FIRST_POST) && k == 0))
			set_pte(w, k, false);
	if (wl == FB_MAP_UNMAP_1 && gs_map(w->gd, BASE + 64 * K4, NEIGH_GPA, K4, IOVT_PERM_RW, GS_LEAF_4K))
		goto fail;

	struct iovt_sink sink;
	if (iovt_callback_sink_init(&sink, null_event, w, NULL))
		goto fail;
	if (side == FB_BASELINE) {
		struct baseline_config bc = { .ram = gs_guest_ram(w->gs), .root_gpa = gs_domain_root(w->gd),
					      .addr_width = 48, .allow_2m = true, .allow_1g = true,
					      .sink = sink };
		if (baseline_create(&bc, &w->bl) || baseline_invalidate_dsi(w->bl, false) ||
		    baseline_fence(w->bl))
			goto fail;
	} else {
		if (iovt_engine_create(NULL, &w->e))
			goto fail;
		const struct gs_region *r = gs_region(w->gs, 0);
		struct iovt_domain_config dc = { .did = 1, .root_gpa = gs_domain_root(w->gd),
						 .addr_width = 48, .allow_2m = true, .allow_1g = true };
		struct iovt_notifier *n;
		if (iovt_guest_ram_add(w->e, r->gpa, r->size, r->hva, NULL) ||
		    iovt_domain_create(w->e, &dc, &w->d) ||
		    iovt_notifier_attach(w->d, IOVT_NOTIFY_IOTLB_EVENTS, &sink, &n))
			goto fail;
		if (side == FB_QUEUE && iovt_queue_create(w->e, NULL, &w->q))
			goto fail;
		/* Warm the path once (the legacy calls' implicit queue, the first post). */
		if (psi(w, FAR, 0) || wait(w))
			goto fail;
	}
	return w;
fail:
	fprintf(stderr, "fence bench: %s/%s: setup failed\n", fb_side_name(side), fb_workload_name(wl));
	fb_destroy(w);
	return NULL;
}

void fb_destroy(struct fb_world *w)
{
	if (!w)
		return;
	if (w->q)
		iovt_queue_destroy(w->q);
	if (w->e)
		iovt_engine_destroy(w->e);
	if (w->bl)
		baseline_destroy(w->bl);
	gs_destroy(w->gs);
	free(w);
}
