/* SPDX-License-Identifier: MIT */
/* diff: hand-made windows with known plans (runs vs shadow extents). */
#include <string.h>

#include "check.h"
#include "sync/sync.h"

CHECK_SEED_STORAGE;

#define K 0x1000ull

static struct iovt_extent ext(uint64_t iova, uint64_t size, uint64_t hva, uint32_t perm)
{
	return (struct iovt_extent){ iova, size, hva - 0x100000000ull, hva, perm, 1 };
}

struct expect {
	size_t unmaps, maps;
};

static void run_case(const char *name, const struct iovt_extent *old, size_t nold,
		     const struct iovt_extent *runs, size_t nruns, bool multi, struct expect want,
		     struct sync_scratch *s)
{
	bool open = false;
	vec_clear(&s->old);
	vec_clear(&s->runs);
	vec_clear(&s->unmaps);
	vec_clear(&s->maps);
	for (size_t i = 0; i < nold; i++)
		CHECK(vec_push(&s->old, old[i]) == 0);
	for (size_t i = 0; i < nruns; i++)
		CHECK(vec_push(&s->runs, runs[i]) == 0);
	CHECK(diff_window(s, 0, 0, multi, &open) == 0);
	if (s->unmaps.n != want.unmaps || s->maps.n != want.maps) {
		fprintf(stderr, "%s: got %zu unmaps %zu maps, want %zu %zu\n", name, s->unmaps.n,
			s->maps.n, want.unmaps, want.maps);
		CHECK(0);
	}
	/* MAP pieces never overlap a kept extent nor each other, and lie in runs. */
	for (size_t i = 0; i < s->maps.n; i++) {
		const struct iovt_extent *m = &s->maps.v[i];
		bool inside = false;
		for (size_t r = 0; r < nruns; r++)
			inside |= m->iova >= runs[r].iova &&
				  m->iova + m->size <= runs[r].iova + runs[r].size &&
				  m->hva - runs[r].hva == m->iova - runs[r].iova;
		CHECK(inside);
		if (i)
			CHECK(s->maps.v[i - 1].iova + s->maps.v[i - 1].size <= m->iova);
	}
}

int main(void)
{
	struct sync_scratch s = { 0 };
	const uint64_t H = 0x7f0000000000ull;

	/* Unchanged: nothing to do. */
	{
		struct iovt_extent o[] = { ext(0, 4 * K, H, 3), ext(8 * K, K, H + 0x100000, 1) };
		struct iovt_extent r[] = { ext(0, 4 * K, H, 3), ext(8 * K, K, H + 0x100000, 1) };
		run_case("unchanged", o, 2, r, 2, true, (struct expect){ 0, 0 }, &s);
	}
	/* New page contiguous with a kept extent: one MAP of the new page only. */
	{
		struct iovt_extent o[] = { ext(0, 4 * K, H, 3) };
		struct iovt_extent r[] = { ext(0, 5 * K, H, 3) };
		run_case("grow", o, 1, r, 1, true, (struct expect){ 0, 1 }, &s);
		CHECK_EQ(s.maps.v[0].iova, 4 * K);
		CHECK_EQ(s.maps.v[0].hva, H + 4 * K);
	}
	/* Guest drops page 1 of a merged 4-page mapping: 1 UNMAP, 2 MAPs. */
	{
		struct iovt_extent o[] = { ext(0, 4 * K, H, 3) };
		struct iovt_extent r[] = { ext(0, K, H, 3), ext(2 * K, 2 * K, H + 2 * K, 3) };
		run_case("bisect", o, 1, r, 2, true, (struct expect){ 1, 2 }, &s);
		CHECK_EQ(s.unmaps.v[0].first, 0);
		CHECK_EQ(s.unmaps.v[0].last, 4 * K - 1);
	}
	/* Two changed extents with a gap: one UNMAP if multi, two if not. */
	{
		struct iovt_extent o[] = { ext(0, K, H, 3), ext(4 * K, K, H + 4 * K, 3) };
		run_case("gap-multi", o, 2, NULL, 0, true, (struct expect){ 1, 0 }, &s);
		CHECK_EQ(s.unmaps.v[0].last, 5 * K - 1);
		run_case("gap-single", o, 2, NULL, 0, false, (struct expect){ 2, 0 }, &s);
	}
	/* A kept extent between two changed ones splits the UNMAP. */
	{
		struct iovt_extent o[] = { ext(0, K, H, 3), ext(2 * K, K, H + 2 * K, 3),
					   ext(4 * K, K, H + 4 * K, 3) };
		struct iovt_extent r[] = { ext(2 * K, K, H + 2 * K, 3) };
		run_case("kept-between", o, 3, r, 1, true, (struct expect){ 2, 0 }, &s);
	}
	/* Permission flip of one page inside a merged mapping. */
	{
		struct iovt_extent o[] = { ext(0, 3 * K, H, 3) };
		struct iovt_extent r[] = { ext(0, K, H, 3), ext(K, K, H + K, 1), ext(2 * K, K, H + 2 * K, 3) };
		run_case("perm-flip", o, 1, r, 3, true, (struct expect){ 1, 3 }, &s);
	}
	/* A kept extent in the middle of a run cuts it into two MAPs. */
	{
		struct iovt_extent o[] = { ext(2 * K, K, H + 2 * K, 3) };
		struct iovt_extent r[] = { ext(0, 5 * K, H, 3) };
		run_case("cut", o, 1, r, 1, true, (struct expect){ 0, 2 }, &s);
	}
	/* A target moved: same IOVAs, other host pages. */
	{
		struct iovt_extent o[] = { ext(0, 2 * K, H, 3) };
		struct iovt_extent r[] = { ext(0, 2 * K, H + 0x200000, 3) };
		run_case("moved", o, 1, r, 1, true, (struct expect){ 1, 1 }, &s);
	}
	sync_scratch_free(&s);
	printf("diff: ok\n");
	return 0;
}
