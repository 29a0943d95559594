/* SPDX-License-Identifier: MIT */
/*
 * The lifecycle tests' small fixed world: an engine, two guest RAM regions
 * of a simulated guest, one 48-bit domain (DID 1) whose table maps IOVA
 * [0, 8 pages) into region 0 (RW) and [1 MiB, +8 pages) into region 1 (R),
 * no notifier yet. Shared by test_lifecycle_regress.c and
 * test_lifecycle_orphans.c (the includer includes check.h and guestsim.h).
 */
#ifndef IOVT_TESTS_LIFECYCLE_FLAT_FIXTURE_H
#define IOVT_TESTS_LIFECYCLE_FLAT_FIXTURE_H

#include <string.h>

#include "iovt.h"

struct flat {
	struct guestsim *gs;
	struct gs_domain *gd;
	struct iovt_engine *e;
	struct iovt_domain *d;
	uint64_t r0, r1, r1_size;
	void *r1_hva;
};

static inline void flat_init(struct flat *f)
{
	const uint64_t K4 = 0x1000, MB = 0x100000;
	memset(f, 0, sizeof(*f));
	f->gs = gs_create(2, 32 * MB, 4 * MB);
	CHECK(f->gs);
	CHECK_EQ(iovt_engine_create(NULL, &f->e), 0);
	for (unsigned i = 0; i < 2; i++) {
		const struct gs_region *g = gs_region(f->gs, i);
		CHECK_EQ(iovt_guest_ram_add(f->e, g->gpa, g->size, g->hva, NULL), 0);
	}
	f->r0 = gs_region(f->gs, 0)->gpa;
	f->r1 = gs_region(f->gs, 1)->gpa;
	f->r1_size = gs_region(f->gs, 1)->size;
	f->r1_hva = gs_region(f->gs, 1)->hva;
	f->gd = gs_domain_create(f->gs, 48, false, false);
	CHECK(f->gd);
	CHECK_EQ(gs_map(f->gd, 0, MB, 8 * K4, IOVT_PERM_RW, 0), 0);
	CHECK_EQ(gs_map(f->gd, MB, f->r1 + MB, 8 * K4, IOVT_PERM_R, 0), 0);
	struct iovt_domain_config dc = { .did = 1, .root_gpa = gs_domain_root(f->gd),
					 .addr_width = 48 };
	CHECK_EQ(iovt_domain_create(f->e, &dc, &f->d), 0);
}

static inline void flat_fini(struct flat *f)
{
	iovt_engine_destroy(f->e);
	gs_destroy(f->gs);
}

#endif
