/* SPDX-License-Identifier: MIT */
/*
 * `huge-run`: a guest that maps a RAM region of 16 TiB or more contiguously
 * (an identity-style map with 1 GiB leaves). The record holds extents below
 * 2^44 bytes; the guest's run was one MAP of 2^44 bytes or more, which the
 * record refused on every fence: never sent, translate -ENOENT, every fence
 * -EINVAL, no error counted (found by review). Runs now break at every
 * 8 TiB-aligned IOVA (sync.h, RUN_BREAK): the mapping reaches the sink in
 * pieces, each recorded, and a DSI over it afterwards sends nothing.
 * The region's host address is never touched (the callback sink only counts).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "iovt.h"
#include "iovt_vtd.h"

CHECK_SEED_STORAGE;

#define G1 (1ull << 30)
#define TB8 (1ull << 43)

static uint64_t maps, unmaps, mapped;
static uint64_t map_iova[8], map_size[8];

static int on_event(void *arg, const struct iovt_event *ev)
{
	(void)arg;
	if (ev->type == IOVT_EVENT_MAP) {
		if (maps < 8) {
			map_iova[maps] = ev->extent.iova;
			map_size[maps] = ev->extent.size;
		}
		maps++;
		mapped += ev->extent.size;
	} else {
		unmaps++;
	}
	return 0;
}

/* IOVA [0, total) -> GPA [data, data + total) by 1 GiB leaves; the engine's
 * calls for it from attach, then three DSI + fence rounds. */
static void run(uint64_t total)
{
	maps = unmaps = mapped = 0;
	struct iovt_engine *e;
	CHECK_EQ(iovt_engine_create(NULL, &e), 0);
	uint64_t *tab = aligned_alloc(4096, 1 << 20); /* tables: 1 MiB at GPA 0 */
	CHECK(tab);
	memset(tab, 0, 1 << 20);
	CHECK_EQ(iovt_guest_ram_add(e, 0, 1 << 20, tab, NULL), 0);
	const uint64_t data = 1ull << 40;
	CHECK_EQ(iovt_guest_ram_add(e, data, total, (void *)(uintptr_t)(1ull << 40), NULL), 0);
	uint64_t *pml4 = tab + 0x1000 / 8;
	for (uint64_t g = 0; g < total / G1; g++) {
		uint64_t pdpt = 0x2000 + (g / 512) * 0x1000;
		pml4[g / 512] = pdpt | IOVT_VTD_PTE_R | IOVT_VTD_PTE_W;
		tab[pdpt / 8 + g % 512] = (data + g * G1) | IOVT_VTD_PTE_R | IOVT_VTD_PTE_W | IOVT_VTD_PTE_PS;
	}
	struct iovt_domain_config dc = { .did = 1, .root_gpa = 0x1000, .addr_width = 48,
					 .allow_2m = true, .allow_1g = true };
	struct iovt_domain *d;
	CHECK_EQ(iovt_domain_create(e, &dc, &d), 0);
	struct iovt_sink s;
	CHECK_EQ(iovt_callback_sink_init(&s, on_event, NULL, NULL), 0);
	struct iovt_notifier *n = NULL;
	CHECK_EQ(iovt_notifier_attach(d, IOVT_NOTIFY_IOTLB_EVENTS, &s, &n), 0);
	/* One MAP per 8 TiB-aligned piece, all of it, nothing unmapped. */
	const uint64_t pieces = (total + TB8 - 1) / TB8;
	CHECK_EQ(maps, pieces);
	CHECK_EQ(mapped, total);
	CHECK_EQ(unmaps, 0);
	for (uint64_t i = 0; i < pieces && i < 8; i++) {
		CHECK_EQ(map_iova[i], i * TB8);
		CHECK_EQ(map_size[i], i + 1 < pieces ? TB8 : total - i * TB8);
	}
	/* The record keeps each piece: a DSI finds nothing to do. */
	for (int k = 0; k < 3; k++) {
		CHECK_EQ(iovt_invalidate_dsi(e, 1), 0);
		CHECK_EQ(iovt_fence(e), 0);
	}
	CHECK_EQ(maps, pieces);
	CHECK_EQ(unmaps, 0);
	struct iovt_extent x;
	for (uint64_t a = 0x1000; a < total; a += TB8 - G1) {
		CHECK_EQ(iovt_translate(d, a, &x), 0);
		CHECK_EQ(x.gpa + (a - x.iova), data + a);
	}
	struct iovt_stats st;
	iovt_domain_stats_get(d, &st);
	CHECK_EQ(st.extents, pieces);
	for (int i = 0; i < IOVT_ERR_KIND_SLOTS; i++)
		CHECK_EQ(st.errors[i], 0);
	CHECK_EQ(iovt_domain_destroy(d), 0);
	iovt_engine_destroy(e);
	free(tab);
	printf("huge-run: %llu GiB mapped in %llu MAPs\n", (unsigned long long)(total / G1),
	       (unsigned long long)pieces);
}

int main(void)
{
	iovt_thread_register();
	run(TB8 - G1);           /* one piece */
	run(2 * TB8);            /* exactly 16 TiB: two */
	run(2 * TB8 + 2 * G1);   /* past it: three */
	iovt_thread_unregister();
	printf("huge-run: all passed\n");
	return 0;
}
