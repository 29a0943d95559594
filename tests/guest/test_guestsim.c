/* SPDX-License-Identifier: MIT */
/* guestsim itself: splits, remaps, freeing empty tables, dirty ranges, raw helpers. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/rcu.h"
#include "guestsim.h"
#include "iovt.h"

CHECK_SEED_STORAGE;

#define K 0x1000ull
#define M2 (1ull << 21)
#define G1 (1ull << 30)
#define RW (VTD_PTE_R | VTD_PTE_W)

static struct guestsim *gs;
static uint64_t DATA;

struct leaves {
	uint64_t n, n4k, n2m, n1g, bytes;
};

static int count(void *arg, const struct vtd_leaf *l)
{
	struct leaves *c = arg;
	c->n++;
	c->n4k += l->size == K;
	c->n2m += l->size == M2;
	c->n1g += l->size == G1;
	c->bytes += l->size;
	return 0;
}

static struct leaves walk_all(struct gs_domain *d)
{
	static const struct vtd_walk_ops ops = { count, NULL };
	struct leaves c = { 0 };
	struct vtd_walk_params p;
	struct vtd_walk_stats st = { 0 };
	gs_domain_params(d, &p);
	CHECK_EQ(vtd_walk(gs_ram(gs), &p, &ops, &c, &st), 0);
	for (unsigned i = 0; i < VTD_ERR_COUNT; i++)
		CHECK_EQ(st.errors[i], 0);
	return c;
}

static void test_split(void)
{
	struct gs_domain *d = gs_domain_create(gs, 48, true, true);
	uint64_t a = 4 * G1, gpa;
	uint32_t perm;
	/* A 1G leaf, then a hole punched into its middle: 511 2M + 510 4K leaves remain. */
	CHECK_EQ(gs_map(d, a, DATA, G1, IOVT_PERM_R, GS_LEAF_LARGEST), 0);
	struct leaves c = walk_all(d);
	CHECK_EQ(c.n1g, 1);
	CHECK_EQ(gs_unmap(d, a + 5 * M2 + 7 * K, 2 * K), 0);
	c = walk_all(d);
	CHECK_EQ(c.n1g, 0);
	CHECK_EQ(c.n2m, 511);
	CHECK_EQ(c.n4k, 510);
	CHECK_EQ(c.bytes, G1 - 2 * K);
	CHECK_EQ(gs_truth_pages(d), G1 / K - 2);
	CHECK(!gs_truth_lookup(d, a + 5 * M2 + 8 * K, &gpa, &perm));
	CHECK(gs_truth_lookup(d, a + 5 * M2 + 9 * K + 5, &gpa, &perm));
	CHECK_EQ(gpa, DATA + 5 * M2 + 9 * K + 5);
	CHECK_EQ(perm, IOVT_PERM_R);
	CHECK_EQ(gs_truth_check(d), 0);
	/* Unmapping what is not present changes nothing. */
	CHECK_EQ(gs_unmap(d, a + 5 * M2 + 7 * K, 2 * K), 0);
	CHECK_EQ(gs_unmap(d, 100 * G1, G1), 0);
	CHECK_EQ(gs_truth_pages(d), G1 / K - 2);
	CHECK_EQ(gs_truth_check(d), 0);
	/* Bad arguments. */
	CHECK_EQ(gs_unmap(d, a + 1, K), -EINVAL);
	CHECK_EQ(gs_unmap(d, (1ull << 48) - K, 2 * K), -EINVAL);
	CHECK_EQ(gs_map(d, a, DATA, K, 0, GS_LEAF_4K), -EINVAL);
	CHECK_EQ(gs_map(d, a, DATA, K, 4, GS_LEAF_4K), -EINVAL);
	CHECK_EQ(gs_map(d, a, DATA, K, IOVT_PERM_R, 3 * K), -EINVAL);
	CHECK_EQ(gs_map(d, 1ull << 48, DATA, K, IOVT_PERM_R, GS_LEAF_4K), -EINVAL);
	gs_domain_destroy(d);
}

static void test_remap(void)
{
	uint64_t t0 = gs_tables_in_use(gs), gpa;
	uint32_t perm;
	struct gs_domain *d = gs_domain_create(gs, 39, true, true);
	uint64_t x = 3 * G1 + 4 * M2;
	CHECK_EQ(gs_map(d, x, DATA, 4 * K, IOVT_PERM_RW, GS_LEAF_4K), 0);
	CHECK_EQ(gs_tables_in_use(gs) - t0, 3);
	/* Remap one page elsewhere, read-only. */
	CHECK_EQ(gs_map(d, x + K, DATA + 100 * K, K, IOVT_PERM_R, GS_LEAF_LARGEST), 0);
	CHECK(gs_truth_lookup(d, x + K, &gpa, &perm));
	CHECK_EQ(gpa, DATA + 100 * K);
	CHECK_EQ(perm, IOVT_PERM_R);
	CHECK_EQ(gs_truth_pages(d), 4);
	CHECK_EQ(gs_truth_check(d), 0);
	/* A 2M leaf over the PT: the PT is freed, the 4 pages are replaced. */
	CHECK_EQ(gs_map(d, x, DATA + M2, M2, IOVT_PERM_W, GS_LEAF_LARGEST), 0);
	CHECK_EQ(gs_tables_in_use(gs) - t0, 2);
	struct leaves c = walk_all(d);
	CHECK_EQ(c.n, 1);
	CHECK_EQ(c.n2m, 1);
	CHECK_EQ(gs_truth_pages(d), 512);
	CHECK(gs_truth_lookup(d, x + K, &gpa, &perm));
	CHECK_EQ(gpa, DATA + M2 + K);
	CHECK_EQ(perm, IOVT_PERM_W);
	/* A 4K map inside it splits it (a new PT) and replaces just that page. */
	CHECK_EQ(gs_map(d, x + 9 * K, DATA, K, IOVT_PERM_RW, GS_LEAF_LARGEST), 0);
	CHECK_EQ(gs_tables_in_use(gs) - t0, 3);
	c = walk_all(d);
	CHECK_EQ(c.n4k, 512);
	CHECK_EQ(gs_truth_check(d), 0);
	gs_domain_destroy(d);
	CHECK_EQ(gs_tables_in_use(gs), t0);
}

static void test_free_empty(void)
{
	uint64_t t0 = gs_tables_in_use(gs);
	struct gs_domain *d = gs_domain_create(gs, 48, true, true);
	uint64_t x = 7 * G1 + 3 * M2;
	CHECK_EQ(gs_map(d, x, DATA, 2 * K, IOVT_PERM_RW, GS_LEAF_4K), 0);
	CHECK_EQ(gs_tables_in_use(gs) - t0, 4);
	/* Default: empty tables stay; the PDE is still present over an empty PT. */
	CHECK_EQ(gs_unmap(d, x, 2 * K), 0);
	CHECK_EQ(gs_tables_in_use(gs) - t0, 4);
	CHECK(gs_read_pte(gs, gs_pte_gpa(d, x, 2)) & RW);
	CHECK(gs_pte_gpa(d, x, 1) != 0);
	/* Freeing on: one page unmapped keeps the PT, the last one frees the whole path. */
	gs_domain_set_free_empty(d, true);
	CHECK_EQ(gs_map(d, x, DATA, 2 * K, IOVT_PERM_RW, GS_LEAF_4K), 0);
	CHECK_EQ(gs_unmap(d, x, K), 0);
	CHECK_EQ(gs_tables_in_use(gs) - t0, 4);
	CHECK_EQ(gs_unmap(d, x + K, K), 0);
	CHECK_EQ(gs_tables_in_use(gs) - t0, 1);
	CHECK_EQ(gs_pte_gpa(d, x, 1), 0);
	CHECK_EQ(gs_pte_gpa(d, x, 4), gs_domain_root(d) + 8 * ((x >> 39) & 511));
	CHECK_EQ(gs_read_pte(gs, gs_pte_gpa(d, x, 4)), 0);
	/* A big unmap over a large map frees everything under it. */
	CHECK_EQ(gs_map(d, 0, DATA, 4 * G1 + 3 * M2 + 5 * K, IOVT_PERM_RW, GS_LEAF_LARGEST), 0);
	CHECK_EQ(gs_unmap(d, 0, 1ull << 47), 0);
	CHECK_EQ(gs_tables_in_use(gs) - t0, 1);
	CHECK_EQ(gs_truth_pages(d), 0);
	CHECK_EQ(gs_truth_check(d), 0);
	gs_domain_destroy(d);
}

struct dr {
	uint64_t r[8][2];
	unsigned n;
};

static void on_dirty(void *arg, uint64_t iova, uint64_t size)
{
	struct dr *d = arg;
	CHECK(d->n < 8);
	d->r[d->n][0] = iova;
	d->r[d->n][1] = size;
	d->n++;
}

static void test_dirty(void)
{
	struct gs_domain *d = gs_domain_create(gs, 39, true, true);
	struct dr r = { 0 };
	CHECK_EQ(gs_map(d, 0x10000, DATA, K, IOVT_PERM_R, GS_LEAF_4K), 0);
	CHECK_EQ(gs_map(d, 0x1000, DATA, 2 * K, IOVT_PERM_R, GS_LEAF_4K), 0);
	CHECK_EQ(gs_unmap(d, 0x3000, K), 0); /* adjacent: merges */
	CHECK_EQ(gs_unmap(d, 0x2000, K), 0); /* inside: merges */
	CHECK_EQ(gs_map(d, M2, DATA, M2, IOVT_PERM_R, GS_LEAF_2M), 0);
	CHECK_EQ(gs_map(d, 0x1000, DATA, K, IOVT_PERM_R, GS_LEAF_4K), 0); /* again, same range */
	gs_take_dirty(d, on_dirty, &r);
	CHECK_EQ(r.n, 3);
	CHECK_EQ(r.r[0][0], 0x1000);
	CHECK_EQ(r.r[0][1], 0x3000);
	CHECK_EQ(r.r[1][0], 0x10000);
	CHECK_EQ(r.r[1][1], K);
	CHECK_EQ(r.r[2][0], M2);
	CHECK_EQ(r.r[2][1], M2);
	r.n = 0;
	gs_take_dirty(d, on_dirty, &r);
	CHECK_EQ(r.n, 0);
	gs_domain_destroy(d);
}

struct fe {
	struct gs_domain *d;
	uint64_t n, prev;
};

static void on_page(void *arg, uint64_t iova, uint64_t gpa, uint32_t perm)
{
	struct fe *f = arg;
	uint64_t g;
	uint32_t p;
	CHECK(f->n == 0 || iova > f->prev); /* ascending */
	f->prev = iova;
	CHECK(gs_truth_lookup(f->d, iova, &g, &p));
	CHECK_EQ(g, gpa);
	CHECK_EQ(p, perm);
	f->n++;
}

static void test_for_each_and_layout(void)
{
	struct gs_domain *d = gs_domain_create(gs, 57, true, false);
	struct fe f = { d, 0, 0 };
	CHECK_EQ(gs_map(d, 1ull << 56, DATA, 3 * M2 + 3 * K, IOVT_PERM_RW, GS_LEAF_LARGEST), 0);
	CHECK_EQ(gs_map(d, 5 * K, DATA, 3 * K, IOVT_PERM_W, GS_LEAF_LARGEST), 0);
	gs_truth_for_each(d, on_page, &f);
	CHECK_EQ(f.n, 3 * 512 + 3 + 3);
	CHECK_EQ(gs_truth_pages(d), f.n);
	struct leaves c = walk_all(d);
	CHECK_EQ(c.n2m, 3);
	CHECK_EQ(c.n1g, 0);
	CHECK_EQ(gs_truth_check(d), 0);
	/* A corrupted table is caught by the truth check. */
	uint64_t at = gs_pte_gpa(d, 6 * K, 1);
	gs_write_pte(gs, at, gs_read_pte(gs, at) ^ K);
	CHECK(gs_truth_check(d) > 0);
	gs_write_pte(gs, at, 0);
	CHECK(gs_truth_check(d) > 0);
	gs_domain_destroy(d);

	/* Layout: region 0 at GPA 0, region i at i * (size + 1G), a 1 GiB hole
	 * after each; host memory 2 MiB aligned; tables at the end of region 0. */
	CHECK_EQ(gs_region_count(gs), 2);
	CHECK(gs_region(gs, 2) == NULL);
	for (unsigned i = 0; i < gs_region_count(gs); i++) {
		const struct gs_region *r = gs_region(gs, i);
		CHECK_EQ(r->gpa, i * (r->size + G1));
		CHECK_EQ(r->id, i);
		CHECK_EQ((uintptr_t)r->hva & (M2 - 1), 0);
		if (i)
			CHECK(gs_hva(gs, r->gpa - 1) == NULL);
		CHECK(gs_hva(gs, r->gpa + r->size) == NULL);
		CHECK(gs_hva(gs, r->gpa + r->size + G1 - 1) == NULL);
		CHECK(gs_hva(gs, r->gpa) == r->hva);
	}
	CHECK_EQ(gs_region_data_size(gs, 0), G1 - (32ull << 20));
	CHECK_EQ(gs_region_data_size(gs, 1), G1);
	CHECK(gs_guest_ram(gs) == gs_ram(gs));
	CHECK_EQ(gs_write_pte(gs, G1 + 8, 1), -EFAULT); /* a hole */
	CHECK_EQ(gs_write_pte(gs, 4, 1), -EINVAL);      /* unaligned */
	uint64_t t = gs_alloc_table(gs);
	const struct gs_region *r0 = gs_region(gs, 0);
	CHECK(t >= r0->gpa + gs_region_data_size(gs, 0) && t < r0->gpa + r0->size);
	gs_free_table(gs, t);
	gs_free_table(gs, t); /* a double free is ignored */
	CHECK_EQ(gs_alloc_table(gs), t);
	CHECK(gs_alloc_table(gs) != t);

	struct gs_config cfg = { .nregions = 2, .gpa = { 0, 1ull << 32 }, .size = { 8 * M2, M2 },
				 .table_bytes = M2 };
	struct guestsim *g2 = gs_create_config(&cfg);
	CHECK(g2);
	CHECK_EQ(gs_region(g2, 1)->gpa, 1ull << 32);
	CHECK_EQ(gs_region_data_size(g2, 0), 7 * M2);
	for (unsigned i = 0; i < 512; i++)
		CHECK(gs_alloc_table(g2) != 0);
	CHECK_EQ(gs_alloc_table(g2), 0); /* the table area is full */
	gs_destroy(g2);
	cfg.gpa[1] = 4 * M2; /* overlapping */
	CHECK(gs_create_config(&cfg) == NULL);
	CHECK(gs_create(1, M2 + K, 0) == NULL);
}

/* PRNG determinism (everyone's reproductions depend on it). */
static void test_rand(void)
{
	uint64_t a = 42, b = 42;
	for (int i = 0; i < 100; i++)
		CHECK_EQ(gs_rand(&a), gs_rand(&b));
	uint64_t s = 0;
	CHECK_EQ(gs_rand(&s), 0xe220a8397b1dcdafull); /* splitmix64 reference value for seed 0 */
	CHECK_EQ(gs_rand_below(&s, 0), 0);
	for (int i = 0; i < 1000; i++)
		CHECK(gs_rand_below(&s, 7) < 7);
}

int main(void)
{
	urcu_memb_register_thread();
	/* 1 GiB regions (MAP_NORESERVE: free until touched) so that region 1
	 * starts 1 GiB aligned and can be the target of 1G leaves. */
	gs = gs_create(2, G1, 32ull << 20);
	CHECK(gs);
	DATA = gs_region(gs, 1)->gpa;
	CHECK_EQ(DATA, 2 * G1);
	test_split();
	test_remap();
	test_free_empty();
	test_dirty();
	test_for_each_and_layout();
	test_rand();
	gs_destroy(gs);
	urcu_memb_unregister_thread();
	printf("guestsim: ok\n");
	return 0;
}
