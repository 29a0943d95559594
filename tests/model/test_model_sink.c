/* SPDX-License-Identifier: MIT */
/*
 * model-sink: the model enforces the type1v2 / iommufd rules the real kernels
 * answered (../shared/vfio-guest/README.md), and a randomized differential run
 * against a trivial page-array model checks its treap bookkeeping.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "iovt.h"
#include "iovt_model.h"

CHECK_SEED_STORAGE;

#define K4 ((uint64_t)0x1000)

static struct iovt_extent ext(uint64_t iova, uint64_t size)
{
	/* hva/gpa offset so a wrong copy shows up in comparisons */
	return (struct iovt_extent){.iova = iova, .size = size, .gpa = iova + 0x100000000ull,
				    .hva = iova + 0x7f0000000000ull, .perm = IOVT_PERM_RW, .region = 1};
}

static int do_map(struct iovt_sink *s, uint64_t iova, uint64_t size)
{
	struct iovt_extent e = ext(iova, size);
	return s->ops->map(s->ctx, &e);
}

static int do_unmap(struct iovt_sink *s, uint64_t iova, uint64_t size, uint64_t *bytes)
{
	return s->ops->unmap(s->ctx, iova, size, bytes);
}

static void test_type1_rules(void)
{
	struct iovt_model_config cfg = {.flavor = IOVT_MODEL_TYPE1, .map_cost_ns = 10,
					.unmap_cost_ns = 3};
	struct iovt_model_sink *m;
	struct iovt_sink s;
	CHECK_EQ(iovt_model_sink_create(&cfg, &m, &s), 0);
	CHECK(strcmp(s.name, "model-type1") == 0);
	CHECK(s.ops->destroy == NULL);
	CHECK_EQ(s.caps.flags, IOVT_SINK_UNMAP_ALL);
	CHECK_EQ(s.caps.max_mappings, 65535);
	CHECK_EQ(s.caps.page_sizes, (1ull << 12) | (1ull << 21) | (1ull << 30));

	/* [16K, 32K) */
	CHECK_EQ(do_map(&s, 4 * K4, 4 * K4), 0);
	CHECK_EQ(do_map(&s, 4 * K4, 4 * K4), -EEXIST);  /* duplicate */
	CHECK_EQ(do_map(&s, 2 * K4, 4 * K4), -EEXIST);  /* head overlap */
	CHECK_EQ(do_map(&s, 6 * K4, 4 * K4), -EEXIST);  /* tail overlap */
	CHECK_EQ(do_map(&s, 2 * K4, 8 * K4), -EEXIST);  /* superset */
	CHECK_EQ(do_map(&s, 5 * K4, 1 * K4), -EEXIST);  /* subset */
	CHECK_EQ(do_map(&s, 0, 0), -EINVAL);            /* zero size */
	CHECK_EQ(do_map(&s, 0x800, K4), -EINVAL);       /* unaligned iova */
	CHECK_EQ(do_map(&s, 0, 0x800), -EINVAL);        /* unaligned size */
	{
		struct iovt_extent e = ext(0, K4);
		e.hva += 0x10;                                 /* unaligned hva */
		CHECK_EQ(s.ops->map(s.ctx, &e), -EINVAL);
	}
	CHECK_EQ(do_map(&s, (1ull << 57) - K4, 2 * K4), -EINVAL); /* past iova_limit */
	CHECK_EQ(do_map(&s, UINT64_MAX - K4 + 1, 2 * K4), -EINVAL); /* wraps */
	CHECK_EQ(iovt_model_sink_count(m), 1);

	/* neighbours touching exactly are fine */
	CHECK_EQ(do_map(&s, 0, 4 * K4), 0);
	CHECK_EQ(do_map(&s, 8 * K4, 4 * K4), 0);
	CHECK_EQ(iovt_model_sink_count(m), 3);

	uint64_t bytes = 99;
	CHECK_EQ(do_unmap(&s, 4 * K4, K4, &bytes), -EINVAL);   /* head bisect */
	CHECK_EQ(bytes, 0);
	CHECK_EQ(do_unmap(&s, 7 * K4, K4, &bytes), -EINVAL);   /* tail bisect */
	CHECK_EQ(do_unmap(&s, 5 * K4, 2 * K4, &bytes), -EINVAL); /* interior */
	CHECK_EQ(do_unmap(&s, 2 * K4, 4 * K4, &bytes), -EINVAL); /* bisects two */
	CHECK_EQ(do_unmap(&s, 0, 6 * K4, &bytes), -EINVAL);    /* whole + bisect */
	CHECK_EQ(do_unmap(&s, 0, 0, &bytes), -EINVAL);
	CHECK_EQ(do_unmap(&s, 0x800, K4, &bytes), -EINVAL);
	CHECK_EQ(do_unmap(&s, 0, 0x800, &bytes), -EINVAL);
	CHECK_EQ(iovt_model_sink_count(m), 3);
	bytes = 99;
	CHECK_EQ(do_unmap(&s, 100 * K4, 4 * K4, &bytes), 0);   /* empty: success, 0 */
	CHECK_EQ(bytes, 0);

	/* find / dump */
	struct iovt_extent e;
	CHECK(iovt_model_sink_find(m, 5 * K4 + 17, &e));
	CHECK_EQ(e.iova, 4 * K4);
	CHECK_EQ(e.size, 4 * K4);
	CHECK_EQ(e.hva, ext(4 * K4, 0).hva);
	CHECK_EQ(e.gpa, ext(4 * K4, 0).gpa);
	CHECK_EQ(e.perm, ext(4 * K4, 0).perm);
	CHECK_EQ(e.region, ext(4 * K4, 0).region);
	CHECK(!iovt_model_sink_find(m, 12 * K4, &e));
	struct iovt_extent d[4];
	CHECK_EQ(iovt_model_sink_dump(m, 0, d, 4), 3);
	CHECK_EQ(d[0].iova, 0);
	CHECK_EQ(d[1].iova, 4 * K4);
	CHECK_EQ(d[2].iova, 8 * K4);
	CHECK_EQ(iovt_model_sink_dump(m, 1, d, 4), 2); /* starts >= from */
	CHECK_EQ(d[0].iova, 4 * K4);
	CHECK_EQ(iovt_model_sink_dump(m, 0, d, 2), 2); /* paging */
	CHECK_EQ(iovt_model_sink_dump(m, d[1].iova + d[1].size, d, 2), 1);
	CHECK_EQ(d[0].iova, 8 * K4);
	CHECK_EQ(iovt_model_sink_dump(m, 12 * K4, d, 2), 0);

	/* superset unmap of adjacent mappings with a gap returns the sum */
	CHECK_EQ(do_map(&s, 20 * K4, K4), 0);
	CHECK_EQ(do_unmap(&s, 4 * K4, 100 * K4, &bytes), 0);
	CHECK_EQ(bytes, 9 * K4);
	CHECK_EQ(iovt_model_sink_count(m), 1);

	struct iovt_model_stats st;
	iovt_model_sink_stats(m, &st);
	CHECK_EQ(st.mappings, 1);
	CHECK_EQ(st.bytes_mapped, 4 * K4);
	CHECK_EQ(st.map_calls, 15);
	CHECK_EQ(st.unmap_calls, 10);
	CHECK_EQ(st.rejected_eexist, 5);
	CHECK_EQ(st.rejected_einval, 6 + 8);
	CHECK_EQ(st.rejected_calls, 19);
	CHECK_EQ(st.rejected_enoent, 0);
	CHECK_EQ(st.charged_ns, 15 * 10 + 10 * 3);

	CHECK_EQ(s.ops->unmap_all(s.ctx, &bytes), 0);
	CHECK_EQ(bytes, 4 * K4);
	CHECK_EQ(iovt_model_sink_count(m), 0);
	CHECK_EQ(s.ops->unmap_all(s.ctx, &bytes), 0);
	CHECK_EQ(bytes, 0);
	iovt_model_sink_stats(m, &st);
	CHECK_EQ(st.unmap_all_calls, 2);
	CHECK_EQ(st.charged_ns, 15 * 10 + 12 * 3);
	CHECK_EQ(st.bytes_mapped, 0);
	iovt_model_sink_destroy(m);
}

static void test_iommufd_rules(void)
{
	struct iovt_model_config cfg = {.flavor = IOVT_MODEL_IOMMUFD, .multi_unmap = true};
	struct iovt_model_sink *m;
	struct iovt_sink s;
	CHECK_EQ(iovt_model_sink_create(&cfg, &m, &s), 0);
	CHECK(strcmp(s.name, "model-iommufd") == 0);
	CHECK_EQ(s.caps.flags,
		 IOVT_SINK_UNMAP_ALL | IOVT_SINK_MULTI_UNMAP | IOVT_SINK_UNMAP_EMPTY_ERR);
	uint64_t bytes;
	CHECK_EQ(do_unmap(&s, 0, K4, &bytes), -ENOENT); /* empty */
	CHECK_EQ(do_map(&s, 4 * K4, 4 * K4), 0);
	CHECK_EQ(do_map(&s, 5 * K4, K4), -EEXIST);
	CHECK_EQ(do_unmap(&s, 4 * K4, K4, &bytes), -ENOENT); /* bisect */
	CHECK_EQ(do_unmap(&s, 7 * K4, K4, &bytes), -ENOENT);
	CHECK_EQ(do_unmap(&s, 0, 0, &bytes), -EINVAL);
	CHECK_EQ(do_unmap(&s, 0, 64 * K4, &bytes), 0);
	CHECK_EQ(bytes, 4 * K4);
	CHECK_EQ(s.ops->unmap_all(s.ctx, &bytes), 0); /* unmap-all of nothing succeeds */
	struct iovt_model_stats st;
	iovt_model_sink_stats(m, &st);
	CHECK_EQ(st.rejected_enoent, 3);
	CHECK_EQ(st.rejected_eexist, 1);
	CHECK_EQ(st.rejected_einval, 1);
	CHECK_EQ(st.rejected_calls, 5);
	iovt_model_sink_destroy(m);
}

static void test_enospc(void)
{
	struct iovt_model_config cfg = {.max_mappings = 4};
	struct iovt_model_sink *m;
	struct iovt_sink s;
	CHECK_EQ(iovt_model_sink_create(&cfg, &m, &s), 0);
	CHECK_EQ(s.caps.max_mappings, 4);
	for (int i = 0; i < 4; i++)
		CHECK_EQ(do_map(&s, (uint64_t)i * 2 * K4, K4), 0);
	CHECK_EQ(do_map(&s, 100 * K4, K4), -ENOSPC);
	CHECK_EQ(do_map(&s, 0, K4), -EEXIST); /* overlap is reported before the limit */
	uint64_t bytes;
	CHECK_EQ(do_unmap(&s, 0, K4, &bytes), 0);
	CHECK_EQ(do_map(&s, 100 * K4, K4), 0);
	struct iovt_model_stats st;
	iovt_model_sink_stats(m, &st);
	CHECK_EQ(st.rejected_enospc, 1);
	CHECK_EQ(st.mappings, 4);
	iovt_model_sink_destroy(m);

	CHECK_EQ(iovt_model_sink_create(&(struct iovt_model_config){.flavor = 7}, &m, &s), -EINVAL);
}

/* ---- randomized differential against a page array ---------------------- */

#define NPAGES 10000u
#define NONE UINT32_MAX

struct ref {
	uint32_t owner[NPAGES]; /* first page of the mapping holding the page */
	uint32_t len[NPAGES];   /* at a mapping's first page: its length */
	uint64_t hva[NPAGES];
	uint32_t count;
	uint32_t max;
	bool iommufd;
};

static uint64_t rng_state;
static uint64_t rnd(void)
{
	rng_state += 0x9E3779B97F4A7C15ull;
	uint64_t z = rng_state;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static int ref_map(struct ref *r, uint32_t p, uint32_t n, uint64_t hva)
{
	for (uint32_t i = p; i < p + n; i++)
		if (r->owner[i] != NONE)
			return -EEXIST;
	if (r->count >= r->max)
		return -ENOSPC;
	for (uint32_t i = p; i < p + n; i++)
		r->owner[i] = p;
	r->len[p] = n;
	r->hva[p] = hva;
	r->count++;
	return 0;
}

static int ref_unmap(struct ref *r, uint32_t p, uint32_t n, uint64_t *bytes)
{
	*bytes = 0;
	uint32_t last = p + n - 1;
	int bis = r->iommufd ? -ENOENT : -EINVAL;
	if (r->owner[p] != NONE && r->owner[p] != p)
		return bis;
	if (r->owner[last] != NONE && r->owner[last] + r->len[r->owner[last]] - 1 != last)
		return bis;
	uint64_t b = 0;
	for (uint32_t i = p; i <= last; i++) {
		if (r->owner[i] == i) {
			b += (uint64_t)r->len[i] * K4;
			r->count--;
		}
	}
	if (b == 0 && r->iommufd)
		return -ENOENT;
	for (uint32_t i = p; i <= last; i++)
		r->owner[i] = NONE;
	*bytes = b;
	return 0;
}

/* The random MAPs' other fields, derived from their hva (the reference
 * keeps only that): a sink that copied any field wrong shows (a review
 * found gpa, perm and region never compared). */
static struct iovt_extent full(uint64_t iova, uint64_t size, uint64_t hva)
{
	return (struct iovt_extent){ .iova = iova, .size = size, .hva = hva,
				     .gpa = hva ^ 0x5a5a5000ull,
				     .perm = (hva >> 12) & 1 ? IOVT_PERM_R : IOVT_PERM_RW,
				     .region = (uint32_t)(hva >> 12) & 0xffff };
}

static void check_full(const struct iovt_extent *got, const struct iovt_extent *want)
{
	CHECK_EQ(got->iova, want->iova);
	CHECK_EQ(got->size, want->size);
	CHECK_EQ(got->hva, want->hva);
	CHECK_EQ(got->gpa, want->gpa);
	CHECK_EQ(got->perm, want->perm);
	CHECK_EQ(got->region, want->region);
}

static void compare_state(struct ref *r, struct iovt_model_sink *m)
{
	CHECK_EQ(iovt_model_sink_count(m), r->count);
	struct iovt_extent d[7];
	uint64_t from = 0;
	uint32_t p = 0, seen = 0;
	size_t n;
	while ((n = iovt_model_sink_dump(m, from, d, 7)) > 0) {
		for (size_t i = 0; i < n; i++) {
			while (p < NPAGES && r->owner[p] != p)
				p++;
			CHECK(p < NPAGES);
			struct iovt_extent want = full((uint64_t)p * K4, (uint64_t)r->len[p] * K4, r->hva[p]);
			check_full(&d[i], &want);
			p++;
			seen++;
		}
		from = d[n - 1].iova + d[n - 1].size;
	}
	CHECK_EQ(seen, r->count);
}

static void test_differential(bool iommufd, uint64_t seed)
{
	static struct ref r;
	rng_state = seed;
	for (uint32_t i = 0; i < NPAGES; i++)
		r.owner[i] = NONE;
	r.count = 0;
	r.max = 300; /* low enough that ENOSPC happens */
	r.iommufd = iommufd;
	struct iovt_model_config cfg = {.flavor = iommufd ? IOVT_MODEL_IOMMUFD : IOVT_MODEL_TYPE1,
					.max_mappings = r.max};
	struct iovt_model_sink *m;
	struct iovt_sink s;
	CHECK_EQ(iovt_model_sink_create(&cfg, &m, &s), 0);
	uint64_t ops = (uint64_t)(200000 * check_scale());
	uint64_t expect_bytes = 0;
	for (uint64_t op = 0; op < ops; op++) {
		uint64_t k = rnd() % 100;
		uint32_t p = (uint32_t)(rnd() % NPAGES);
		uint32_t maxlen = (rnd() % 8 == 0) ? 512 : 8;
		uint32_t n = 1 + (uint32_t)(rnd() % maxlen);
		if (p + n > NPAGES)
			n = NPAGES - p;
		/* Phases alternate between filling (to reach ENOSPC) and draining. */
		uint64_t map_pct = (op / 20000) % 2 ? 40 : 80;
		if (k < map_pct) {
			uint64_t hva = (rnd() % 1000000) * K4;
			struct iovt_extent e = full((uint64_t)p * K4, (uint64_t)n * K4, hva);
			int want = ref_map(&r, p, n, hva);
			CHECK_EQ(s.ops->map(s.ctx, &e), want);
			if (want == 0)
				expect_bytes += e.size;
		} else if (k < 99) {
			uint64_t wb, gb = 12345;
			int want = ref_unmap(&r, p, n, &wb);
			CHECK_EQ(do_unmap(&s, (uint64_t)p * K4, (uint64_t)n * K4, &gb), want);
			CHECK_EQ(gb, wb);
			expect_bytes -= wb;
		} else if (rnd() % 20 == 0) {
			uint64_t gb;
			CHECK_EQ(s.ops->unmap_all(s.ctx, &gb), 0);
			CHECK_EQ(gb, expect_bytes);
			expect_bytes = 0;
			for (uint32_t i = 0; i < NPAGES; i++)
				r.owner[i] = NONE;
			r.count = 0;
		} else {
			/* find on a random page */
			struct iovt_extent e;
			bool hit = iovt_model_sink_find(m, (uint64_t)p * K4 + rnd() % K4, &e);
			CHECK_EQ(hit, r.owner[p] != NONE);
			if (hit) {
				uint32_t o = r.owner[p];
				struct iovt_extent want = full((uint64_t)o * K4, (uint64_t)r.len[o] * K4, r.hva[o]);
				check_full(&e, &want);
			}
		}
		if (op % 2000 == 0)
			compare_state(&r, m);
	}
	compare_state(&r, m);
	struct iovt_model_stats st;
	iovt_model_sink_stats(m, &st);
	CHECK_EQ(st.bytes_mapped, expect_bytes);
	CHECK_EQ(st.rejected_calls, st.rejected_eexist + st.rejected_einval + st.rejected_enospc +
					    st.rejected_enoent);
	printf("  %s: %" PRIu64 " ops, %" PRIu64 " rejected (%" PRIu64 " eexist, %" PRIu64 " enospc, %" PRIu64 " einval/enoent)\n", iommufd ? "iommufd" : "type1", ops, st.rejected_calls, st.rejected_eexist, st.rejected_enospc, st.rejected_einval + st.rejected_enoent);
	CHECK(st.rejected_enospc > 0 || ops < 100000);
	iovt_model_sink_destroy(m);
}

/* A million mappings: checks the structure stays O(log n) (a list would take
 * minutes here) and that a full-range unmap returns everything. */
static void test_large(void)
{
	struct iovt_model_config cfg = {.max_mappings = UINT32_MAX};
	struct iovt_model_sink *m;
	struct iovt_sink s;
	CHECK_EQ(iovt_model_sink_create(&cfg, &m, &s), 0);
	uint64_t n = (uint64_t)(1000000 * check_scale());
	for (uint64_t i = 0; i < n; i++)
		CHECK_EQ(do_map(&s, i * 2 * K4, K4), 0);
	CHECK_EQ(iovt_model_sink_count(m), n);
	struct iovt_extent e;
	CHECK(iovt_model_sink_find(m, (n / 2) * 2 * K4, &e));
	CHECK(!iovt_model_sink_find(m, (n / 2) * 2 * K4 + K4, &e));
	uint64_t bytes;
	CHECK_EQ(do_unmap(&s, 0, UINT64_MAX - K4 + 1, &bytes), 0);
	CHECK_EQ(bytes, n * K4);
	CHECK_EQ(iovt_model_sink_count(m), 0);
	iovt_model_sink_destroy(m);
}

int main(void)
{
	uint64_t seed = check_pick_seed("model-sink");
	test_type1_rules();
	test_iommufd_rules();
	test_enospc();
	test_differential(false, seed);
	test_differential(true, seed ^ 0x5555);
	test_large();
	printf("model-sink: ok\n");
	return 0;
}
