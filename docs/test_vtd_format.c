/* SPDX-License-Identifier: MIT */
/*
 * The `vtd-format` test: include/iovt_vtd.h against the VT-d specification's
 * literal bit positions (chapter 9), and the engine against both. The walker,
 * its tests and the guest simulator all share one definition of the entry
 * format (the public header), so a wrong bit there would go unnoticed by
 * them; here the numbers come from the spec, not from the header. Public API
 * only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iovt.h"
#include "iovt_vtd.h"

static int failures;
#define CHECK(c)                                                                   \
	do {                                                                       \
		if (!(c)) {                                                        \
			fprintf(stderr, "vtd-format: %s:%d: %s\n", __FILE__, __LINE__, #c); \
			failures++;                                                \
		}                                                                  \
	} while (0)

int main(void)
{
	/* Second-level entries: R bit 0, W bit 1, PS bit 7, address 12..HAW-1. */
	CHECK(IOVT_VTD_PTE_R == 0x1);
	CHECK(IOVT_VTD_PTE_W == 0x2);
	CHECK(IOVT_VTD_PTE_PS == 0x80);
	CHECK(IOVT_VTD_PTE_ADDR_MASK(48) == 0x0000fffffffff000ull);
	CHECK(IOVT_VTD_PTE_ADDR_MASK(52) == 0x000ffffffffff000ull);
	CHECK(IOVT_VTD_LEVELS(39) == 3 && IOVT_VTD_LEVELS(48) == 4 && IOVT_VTD_LEVELS(57) == 5);
	CHECK(IOVT_VTD_LEVEL_SIZE(1) == 4096 && IOVT_VTD_LEVEL_SIZE(2) == 0x200000 &&
	      IOVT_VTD_LEVEL_SIZE(3) == 0x40000000);
	/* IOVA 0x8040201000: index 1 at each of levels 1..4. */
	for (unsigned l = 1; l <= 4; l++)
		CHECK(IOVT_VTD_INDEX(0x8040201000ull, l) == 1);
	/* Legacy root/context entries. */
	CHECK(IOVT_VTD_ROOT_P == 1 && (0x12345001ull & IOVT_VTD_ROOT_CTP_MASK) == 0x12345000ull);
	CHECK(IOVT_VTD_CTX_P == 1);
	CHECK(IOVT_VTD_CTX_TT(0x12345009ull) == 2); /* bits 3:2 = 10b: pass-through */
	CHECK(IOVT_VTD_CTX_SLPTPTR(0x12345009ull) == 0x12345000ull);
	CHECK(IOVT_VTD_CTX_AW(0x0000ab02ull) == 2 && IOVT_VTD_AW_BITS(2) == 48);
	CHECK(IOVT_VTD_AW_BITS(1) == 39 && IOVT_VTD_AW_BITS(3) == 57);
	CHECK(IOVT_VTD_CTX_DID(0x00beef02ull) == 0xbeef);

	/* The engine reads tables written with the spec's literal numbers. */
	iovt_thread_register();
	struct iovt_engine *e;
	CHECK(iovt_engine_create(NULL, &e) == 0);
	static uint64_t ram[1024 * 1024] __attribute__((aligned(4096))); /* 8 MiB of guest RAM at GPA 0 */
	CHECK(iovt_guest_ram_add(e, 0, sizeof(ram), ram, NULL) == 0);
	uint64_t *pml4 = &ram[0x1000 / 8], *pdpt = &ram[0x2000 / 8], *pd = &ram[0x3000 / 8],
		 *pt = &ram[0x4000 / 8];
	pml4[0] = 0x2000 | 3;                 /* -> PDPT, RW */
	pdpt[0] = 0x3000 | 3;                 /* -> PD, RW */
	pd[0] = 0x4000 | 3;                   /* -> PT, RW */
	pt[5] = 0x7000 | 1;                   /* IOVA 0x5000 -> GPA 0x7000, read-only */
	pd[1] = 0x400000 | 0x80 | 3;          /* IOVA 2 MiB -> GPA 4 MiB, a 2 MiB leaf, RW */
	pd[2] = 0x600000 | 0x80 | 0x1000 | 3; /* an address bit below 2 MiB set: reserved */
	pd[3] = (1ull << 50) | 0x4000 | 3;    /* address bit 50 >= HAW 48: reserved */
	struct iovt_domain *d;
	struct iovt_domain_config dc = { .did = 1, .root_gpa = 0x1000, .addr_width = 48, .allow_2m = true };
	CHECK(iovt_domain_create(e, &dc, &d) == 0);
	struct iovt_extent x;
	CHECK(iovt_translate(d, 0x5123, &x) == 0);
	CHECK(x.iova == 0x5000 && x.size == 4096 && x.gpa == 0x7000 && x.perm == IOVT_PERM_R);
	CHECK(x.hva == (uintptr_t)ram + 0x7000);
	CHECK(iovt_translate(d, 0x200000 + 0x12345, &x) == 0);
	CHECK(x.iova == 0x200000 && x.size == 0x200000 && x.gpa == 0x400000 && x.perm == IOVT_PERM_RW);
	CHECK(iovt_translate(d, 0x400000, &x) == -EFAULT);
	CHECK(iovt_translate(d, 0x600000, &x) == -EFAULT);
	CHECK(iovt_translate(d, 0x6000, &x) == -ENOENT);
	pd[4] = 0x800000 | 0x80 | 3; /* a 2 MiB leaf where the domain allows none */
	struct iovt_domain *d2;
	struct iovt_domain_config dc2 = { .did = 2, .root_gpa = 0x1000, .addr_width = 48 };
	CHECK(iovt_domain_create(e, &dc2, &d2) == 0);
	CHECK(iovt_translate(d2, 0x200000, &x) == -EFAULT);
	struct iovt_stats st;
	iovt_stats_get(e, &st);
	CHECK(st.translate_fault == 3 && st.translate_noent == 1); /* walk errors counted here, not in errors[] */
	CHECK(iovt_domain_destroy(d2) == 0);
	CHECK(iovt_domain_destroy(d) == 0);
	iovt_engine_destroy(e);
	iovt_thread_unregister();
	if (failures) {
		fprintf(stderr, "vtd-format: %d check(s) failed\n", failures);
		return 1;
	}
	printf("vtd-format: ok\n");
	return 0;
}
