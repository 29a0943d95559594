/* SPDX-License-Identifier: MIT */
/*
 * engine: the public API end to end with the callback sink: attach replays,
 * UNMAP-only notifiers get raw ranges and cost no tree, translate, bad input
 * counted, set_root, detach and destroy unmap everything.
 */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "guestsim.h"
#include "iovt.h"

CHECK_SEED_STORAGE;

#define K 0x1000ull
#define M2 0x200000ull

struct log {
	unsigned maps, unmaps;
	uint64_t mapped_pages;
	struct iovt_event last;
	int fail_next; /* errno to return once */
};

static int record(void *arg, const struct iovt_event *ev)
{
	struct log *l = arg;
	if (l->fail_next) {
		int rc = l->fail_next;
		l->fail_next = 0;
		return rc;
	}
	l->last = *ev;
	if (ev->type == IOVT_EVENT_MAP) {
		l->maps++;
		l->mapped_pages += ev->extent.size / K;
	} else {
		l->unmaps++;
	}
	return 0;
}

int main(void)
{
	struct guestsim *gs = gs_create(1, 256 * M2, 32 * M2);
	CHECK(gs);
	const struct gs_region *r = gs_region(gs, 0);
	struct iovt_engine *e;
	/* iovt_config.host_addr_width: 32..52, else -EINVAL (0: 48). */
	for (unsigned haw = 31; haw <= 53; haw++) {
		struct iovt_config hc = { .host_addr_width = haw };
		struct iovt_engine *he = NULL;
		int hrc = iovt_engine_create(&hc, &he);
		CHECK_EQ(hrc, haw >= 32 && haw <= 52 ? 0 : -EINVAL);
		if (!hrc)
			iovt_engine_destroy(he);
	}
	CHECK(iovt_engine_create(NULL, &e) == 0);
	iovt_thread_register();
	uint32_t rid;
	CHECK(iovt_guest_ram_add(e, r->gpa, r->size, r->hva, &rid) == 0);
	CHECK(iovt_guest_ram_add(e, r->gpa, K, r->hva, NULL) == -EEXIST);

	struct gs_domain *gd = gs_domain_create(gs, 48, true, true);
	struct iovt_domain *d;
	struct iovt_domain_config dc = { .did = 7, .root_gpa = gs_domain_root(gd), .addr_width = 48,
					 .allow_2m = true, .allow_1g = true };
	CHECK(iovt_domain_create(e, &dc, &d) == 0);
	struct iovt_stats objs0, objs1;
	iovt_stats_get(e, &objs0);
	struct iovt_domain *dup_d = NULL;
	CHECK(iovt_domain_create(e, &dc, &dup_d) == -EEXIST);
	CHECK(dup_d == NULL);
	iovt_stats_get(e, &objs1);
	CHECK_EQ(objs1.domain_objects, objs0.domain_objects); /* the refused one freed, not leaked */
	dc.addr_width = 40;
	CHECK(iovt_domain_create(e, &dc, &d) == -EINVAL);
	struct iovt_domain *ref = iovt_domain_lookup(e, 7);
	CHECK(ref == d);
	iovt_domain_put(ref);
	CHECK(iovt_domain_lookup(e, 8) == NULL);

	/* The guest mapped things before the device attached: replay maps them. */
	CHECK(gs_map(gd, 0x100000, 0x200000, 16 * K, IOVT_PERM_RW, 0) == 0);
	struct iovt_extent x;
	/* No MAP notifier: the engine IOTLB answers (a walk on the miss). */
	CHECK(iovt_translate(d, 0x100000 + 5 * K, &x) == 0);
	CHECK_EQ(x.iova, 0x100000 + 5 * K); /* the run from iova's page to the end of the map */
	CHECK_EQ(x.size, 11 * K);
	CHECK_EQ(x.gpa, 0x200000 + 5 * K);
	CHECK_EQ(x.perm, IOVT_PERM_RW);
	CHECK(iovt_translate(d, 0x100000 + 5 * K, &x) == 0); /* a hit */
	CHECK(iovt_translate(d, 0x100000 + 16 * K, &x) == -ENOENT);
	struct log map_log = { 0 }, raw_log = { 0 };
	struct iovt_sink sink, raw;
	CHECK(iovt_callback_sink_init(&sink, record, &map_log, NULL) == 0);
	CHECK(iovt_callback_sink_init(&raw, record, &raw_log, NULL) == 0);
	struct iovt_notifier *mn, *rn, *dup;
	CHECK(iovt_notifier_attach(d, IOVT_NOTIFY_IOTLB_EVENTS, &sink, &mn) == 0);
	CHECK_EQ(map_log.maps, 1);
	CHECK_EQ(map_log.last.extent.size, 16 * K);
	CHECK_EQ(map_log.last.extent.hva, (uint64_t)(uintptr_t)r->hva + 0x200000);
	CHECK(iovt_notifier_attach(d, IOVT_NOTIFY_IOTLB_EVENTS, &sink, &dup) == -EBUSY);
	CHECK(iovt_notifier_attach(d, IOVT_NOTIFY_MAP, &sink, &dup) == -EINVAL);
	CHECK(iovt_notifier_attach(d, IOVT_NOTIFY_DEVIOTLB_UNMAP, &raw, &rn) == 0);

	/* translate: hit anywhere inside, miss outside. */
	CHECK(iovt_translate(d, 0x100000 + 5 * K + 123, &x) == 0);
	CHECK_EQ(x.iova, 0x100000);
	CHECK_EQ(x.gpa, 0x200000);
	CHECK_EQ(x.perm, IOVT_PERM_RW);
	CHECK_EQ(x.region, rid);
	CHECK(iovt_translate(d, 0x100000 + 16 * K, &x) == -ENOENT);

	/* An oversized PSI: the raw notifier gets the whole block, the MAP sink
	 * only what changed. */
	CHECK(gs_map(gd, 0x100000 + 16 * K, 0x200000 + 16 * K, K, IOVT_PERM_RW, 0) == 0);
	struct iovt_stats raw0, raw1;
	iovt_domain_stats_get(d, &raw0);
	CHECK(iovt_invalidate_psi(e, 7, 0x100000, 9, false) == 0);
	CHECK(iovt_fence(e) == 0);
	iovt_domain_stats_get(d, &raw1);
	CHECK_EQ(raw1.raw_unmap_calls - raw0.raw_unmap_calls, 1); /* the one raw range */
	CHECK_EQ(map_log.maps, 2);
	CHECK_EQ(map_log.last.extent.iova, 0x100000 + 16 * K);
	CHECK_EQ(raw_log.unmaps, 1);
	CHECK_EQ(raw_log.last.extent.iova, 0);
	CHECK_EQ(raw_log.last.extent.size, M2);

	/* Bad input: counted, rejected, nothing queued. */
	struct iovt_stats st;
	CHECK(iovt_invalidate_psi(e, 99, 0, 0, false) == -ENOENT);
	CHECK(iovt_invalidate_dsi(e, 99) == -ENOENT);
	CHECK(iovt_invalidate_psi(e, 7, 0, IOVT_PSI_MAX_AM + 1, false) == -EINVAL);
	CHECK(iovt_invalidate_psi(e, 7, 1ull << 48, 0, false) == -EINVAL);
	iovt_stats_get(e, &st);
	CHECK_EQ(st.errors[IOVT_ERR_UNKNOWN_DOMAIN], 2);
	CHECK_EQ(st.errors[IOVT_ERR_BAD_INVALIDATION], 2);
	/* A review of the API against the header (fourteenth session): each
	 * of these was accepted, or refused uncounted. */
	struct iovt_queue *bq;
	CHECK(iovt_queue_create(e, NULL, &bq) == 0);
	struct iovt_inval padded = { .addr = 0, .did = 7, .kind = IOVT_INVAL_PSI, .pad = { 0, 1, 0 } };
	CHECK(iovt_queue_post(bq, &padded, 1) == -EINVAL); /* pad must be 0 */
	iovt_queue_destroy(bq);
	iovt_stats_get(e, &st);
	CHECK_EQ(st.errors[IOVT_ERR_BAD_INVALIDATION], 3);
	const uint64_t bad0 = st.errors[IOVT_ERR_BAD_ARGUMENT];
	struct iovt_notifier *no = NULL;
	/* MAP together with DEVIOTLB_UNMAP */
	CHECK(iovt_notifier_attach(d, IOVT_NOTIFY_IOTLB_EVENTS | IOVT_NOTIFY_DEVIOTLB_UNMAP, &sink, &no) ==
	      -EINVAL);
	struct iovt_sink odd = raw;
	odd.caps.flags |= 1u << 20; /* a capability this header does not define */
	CHECK(iovt_notifier_attach(d, IOVT_NOTIFY_UNMAP, &odd, &no) == -EINVAL);
	odd = raw;
	odd.caps.flags = IOVT_SINK_PARTIAL_UNCOUNTED; /* without PARTIAL_UNMAP */
	CHECK(iovt_notifier_attach(d, IOVT_NOTIFY_UNMAP, &odd, &no) == -EINVAL);
	CHECK(no == NULL);
	CHECK(iovt_workers_start(e, 1) == 0);
	CHECK(iovt_workers_start(e, 1) == -EBUSY);
	iovt_workers_stop(e);
	iovt_stats_get(e, &st);
	CHECK_EQ(st.errors[IOVT_ERR_BAD_ARGUMENT], bad0 + 4);
	CHECK(strcmp(iovt_err_kind_name(IOVT_ERR_PT_LOOP), "pt_loop") == 0);

	/* A failing sink: the record stays what the sink holds, the fence
	 * reports, and the next fence retries. */
	CHECK(gs_unmap(gd, 0x100000, 17 * K) == 0);
	CHECK(iovt_invalidate_psi(e, 7, 0x100000, 5, true) == 0);
	map_log.fail_next = -EIO;
	CHECK(iovt_fence(e) == -EIO);
	CHECK(iovt_translate(d, 0x100000, &x) == 0); /* still held by the sink */
	CHECK(iovt_fence(e) == 0);                    /* retried */
	CHECK(iovt_translate(d, 0x100000, &x) == -ENOENT);
	CHECK_EQ(map_log.unmaps, 1);                  /* both mappings in one UNMAP */

	/* The sink's max_mappings is honoured: a MAP past it is not sent, it is
	 * counted and retried, and the fence reports -ENOSPC. */
	{
		struct gs_domain *g2 = gs_domain_create(gs, 39, true, false);
		struct iovt_domain *d2;
		struct iovt_domain_config c2 = { .did = 9, .root_gpa = gs_domain_root(g2), .addr_width = 39 };
		struct log l2 = { 0 };
		struct iovt_sink s2;
		struct iovt_sink_caps caps = { .flags = IOVT_SINK_MULTI_UNMAP, .max_mappings = 2 };
		struct iovt_notifier *n2;
		CHECK(iovt_domain_create(e, &c2, &d2) == 0);
		CHECK(iovt_callback_sink_init(&s2, record, &l2, &caps) == 0);
		CHECK(iovt_notifier_attach(d2, IOVT_NOTIFY_IOTLB_EVENTS, &s2, &n2) == 0);
		for (int i = 0; i < 3; i++)
			CHECK(gs_map(g2, 0x10000 + i * 2 * K, 0x20000 + i * 3 * K, K, IOVT_PERM_RW, 0) == 0);
		CHECK(iovt_invalidate_dsi(e, 9) == 0);
		CHECK(iovt_fence(e) == -ENOSPC);
		CHECK_EQ(l2.maps, 2);
		iovt_domain_stats_get(d2, &st);
		CHECK_EQ(st.errors[IOVT_ERR_EXTENT_CAP], 1);
		CHECK_EQ(st.extents, 2);
		CHECK(gs_unmap(g2, 0x10000, K) == 0);
		CHECK(iovt_invalidate_psi(e, 9, 0x10000, 0, true) == 0);
		CHECK(iovt_fence(e) == 0); /* room again: the retried MAP goes through */
		CHECK_EQ(l2.maps, 3);
		CHECK(iovt_domain_destroy(d2) == 0);
		CHECK_EQ(l2.unmaps, 2); /* the PSI's, then everything in one call */
	}

	/* A new root is a DSI: everything under the old one goes. */
	CHECK(gs_map(gd, 0x300000, 0x400000, M2, IOVT_PERM_R, 0) == 0);
	CHECK(iovt_invalidate_dsi(e, 7) == 0);
	CHECK(iovt_fence(e) == 0);
	CHECK(iovt_translate(d, 0x300000 + K, &x) == 0);
	CHECK_EQ(x.perm, IOVT_PERM_R);
	struct gs_domain *empty = gs_domain_create(gs, 48, true, true);
	unsigned unmaps_before = map_log.unmaps;
	CHECK(iovt_domain_set_root(d, gs_domain_root(empty)) == 0);
	/* in force when set_root returns, whatever fence comes next */
	CHECK_EQ(map_log.unmaps, unmaps_before + 1);
	CHECK(iovt_fence(e) == 0);
	CHECK_EQ(map_log.unmaps, unmaps_before + 1);
	CHECK(iovt_domain_set_root(d, 0x1001) == -EINVAL);
	CHECK(iovt_translate(d, 0x300000 + K, &x) == -ENOENT);

	/* Detach unmaps what the sink holds; destroy of an empty domain calls nothing. */
	CHECK(iovt_domain_set_root(d, gs_domain_root(gd)) == 0);
	CHECK(iovt_fence(e) == 0);
	CHECK(iovt_translate(d, 0x300000, &x) == 0);
	unmaps_before = map_log.unmaps;
	CHECK(iovt_notifier_detach(mn) == 0);
	CHECK_EQ(map_log.unmaps, unmaps_before + 1);
	CHECK(iovt_translate(d, 0x300000, &x) == 0); /* no tree: the IOTLB walks */
	CHECK(iovt_notifier_detach(rn) == 0);
	iovt_domain_stats_get(d, &st);
	CHECK_EQ(st.psi, 2);
	CHECK_EQ(st.dsi, 1);
	CHECK_EQ(st.fences, 0); /* fences are engine-wide */
	CHECK(iovt_domain_destroy(d) == 0);
	CHECK(iovt_domain_lookup(e, 7) == NULL);
	iovt_stats_get(e, &st);
	CHECK(st.fences >= 8);
	iovt_engine_destroy(e);
	iovt_thread_unregister();
	gs_destroy(gs);
	printf("engine: ok\n");
	return 0;
}
