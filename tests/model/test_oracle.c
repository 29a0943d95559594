/* SPDX-License-Identifier: MIT */
/*
 * oracle: hand cases with known answers, then a brute-force cross-check: on
 * tiny random instances a BFS over sink states (legal MAP/UNMAP calls only,
 * never removing a valid mapping) finds the true minimum, which must equal
 * what iovt_oracle_min_calls computes.
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

#define K4 0x1000ull
#define MAXP 1024

/* A guest view, one entry per 4 KiB page from iova 0; hva/gpa in pages. */
struct gpage {
	bool present;
	uint64_t hva, gpa;
	uint32_t perm, region;
};
struct gview {
	int n;
	struct gpage pg[MAXP];
};

static bool guest_fn(void *arg, uint64_t iova, struct iovt_extent *out)
{
	const struct gview *g = arg;
	uint64_t p = iova / K4;
	if (p >= (uint64_t)g->n || !g->pg[p].present)
		return false;
	const struct gpage *x = &g->pg[p];
	*out = (struct iovt_extent){.iova = p * K4, .size = K4, .hva = x->hva * K4,
				    .gpa = x->gpa * K4, .perm = x->perm, .region = x->region};
	return true;
}

/* Sets pages [p, p+n) present, host-contiguous from hva page h. */
static void gset(struct gview *g, int p, int n, uint64_t h, uint32_t perm, uint32_t region)
{
	for (int i = 0; i < n; i++)
		g->pg[p + i] = (struct gpage){true, h + i, h + i, perm, region};
	if (p + n > g->n)
		g->n = p + n;
}

static struct iovt_extent mext(int p, int n, uint64_t h, uint32_t perm, uint32_t region)
{
	return (struct iovt_extent){.iova = p * K4, .size = n * K4, .hva = h * K4, .gpa = h * K4,
				    .perm = perm, .region = region};
}

static struct iovt_oracle_result run_oracle(const struct iovt_extent *b, size_t nb,
					    const uint64_t (*t)[2], size_t nt, struct gview *g,
					    bool multi)
{
	struct iovt_oracle_input in = {.before = b, .n_before = nb, .touched = t, .n_touched = nt,
				       .guest = guest_fn, .guest_arg = g, .multi_unmap = multi};
	struct iovt_oracle_result r;
	CHECK_EQ(iovt_oracle_min_calls(&in, &r), 0);
	CHECK_EQ(r.min_calls, r.min_unmaps + r.min_maps);
	return r;
}

static struct gview gv; /* big: static */

static void test_hand(void)
{
	struct iovt_oracle_result r;
	uint64_t all[1][2] = {{0, 64 * K4 - 1}};

	/* unchanged -> 0 */
	memset(&gv, 0, sizeof(gv));
	gset(&gv, 0, 4, 100, IOVT_PERM_RW, 0);
	struct iovt_extent b1[] = {mext(0, 4, 100, IOVT_PERM_RW, 0)};
	r = run_oracle(b1, 1, all, 1, &gv, true);
	CHECK_EQ(r.min_calls, 0);
	CHECK_EQ(r.kept, 1);

	/* new contiguous pages -> 1 map */
	r = run_oracle(NULL, 0, all, 1, &gv, true);
	CHECK_EQ(r.min_maps, 1);
	CHECK_EQ(r.min_unmaps, 0);
	CHECK_EQ(r.kept, 0);

	/* merged [0,16K), page 1 dropped -> 1 unmap + 2 maps */
	gv.pg[1].present = false;
	r = run_oracle(b1, 1, all, 1, &gv, false);
	CHECK_EQ(r.min_unmaps, 1);
	CHECK_EQ(r.min_maps, 2);
	CHECK_EQ(r.kept, 0);
	/* the same change, but touched only covers page 1 (narrow PSI) */
	uint64_t t1[1][2] = {{K4, 2 * K4 - 1}};
	r = run_oracle(b1, 1, t1, 1, &gv, false);
	CHECK_EQ(r.min_unmaps, 1);
	CHECK_EQ(r.min_maps, 2);

	/* two changed mappings separated by a gap: 1 unmap with multi, 2 without */
	memset(&gv, 0, sizeof(gv));
	gset(&gv, 0, 1, 100, IOVT_PERM_R, 0);
	gset(&gv, 2, 1, 200, IOVT_PERM_R, 0);
	struct iovt_extent b2[] = {mext(0, 1, 100, IOVT_PERM_RW, 0), mext(2, 1, 200, IOVT_PERM_RW, 0)};
	r = run_oracle(b2, 2, all, 1, &gv, true);
	CHECK_EQ(r.min_unmaps, 1);
	CHECK_EQ(r.min_maps, 2);
	r = run_oracle(b2, 2, all, 1, &gv, false);
	CHECK_EQ(r.min_unmaps, 2);
	CHECK_EQ(r.min_maps, 2);

	/* separated by a kept mapping: 2 even with multi */
	gset(&gv, 1, 1, 150, IOVT_PERM_RW, 0);
	struct iovt_extent b3[] = {mext(0, 1, 100, IOVT_PERM_RW, 0), mext(1, 1, 150, IOVT_PERM_RW, 0),
				   mext(2, 1, 200, IOVT_PERM_RW, 0)};
	r = run_oracle(b3, 3, all, 1, &gv, true);
	CHECK_EQ(r.min_unmaps, 2);
	CHECK_EQ(r.min_maps, 2);
	CHECK_EQ(r.kept, 1);

	/* perm flip of one page of a two-page mapping: 1 unmap + 2 maps;
	 * of both pages: 1 unmap + 1 map */
	memset(&gv, 0, sizeof(gv));
	gset(&gv, 0, 2, 100, IOVT_PERM_RW, 0);
	gv.pg[1].perm = IOVT_PERM_R;
	struct iovt_extent b4[] = {mext(0, 2, 100, IOVT_PERM_RW, 0)};
	r = run_oracle(b4, 1, all, 1, &gv, true);
	CHECK_EQ(r.min_calls, 3);
	gv.pg[0].perm = IOVT_PERM_R;
	r = run_oracle(b4, 1, all, 1, &gv, true);
	CHECK_EQ(r.min_unmaps, 1);
	CHECK_EQ(r.min_maps, 1);

	/* same hva, different gpa: changed */
	memset(&gv, 0, sizeof(gv));
	gset(&gv, 0, 2, 100, IOVT_PERM_RW, 0);
	gv.pg[1].gpa = 999;
	r = run_oracle(b4, 1, all, 1, &gv, true);
	CHECK_EQ(r.min_calls, 3);

	/* a host-contiguous run crossing a region boundary splits */
	memset(&gv, 0, sizeof(gv));
	gset(&gv, 0, 2, 100, IOVT_PERM_RW, 0);
	gset(&gv, 2, 2, 102, IOVT_PERM_RW, 1);
	r = run_oracle(NULL, 0, all, 1, &gv, true);
	CHECK_EQ(r.min_maps, 2);

	/* leaf-size change, same target page by page -> 0, both directions */
	static struct iovt_extent b5[512];
	memset(&gv, 0, sizeof(gv));
	gset(&gv, 0, 512, 4096, IOVT_PERM_RW, 0);
	for (int i = 0; i < 512; i++)
		b5[i] = mext(i, 1, 4096 + i, IOVT_PERM_RW, 0);
	uint64_t t2m[1][2] = {{0, 512 * K4 - 1}};
	r = run_oracle(b5, 512, t2m, 1, &gv, true);
	CHECK_EQ(r.min_calls, 0);
	CHECK_EQ(r.kept, 512);
	struct iovt_extent b6[] = {mext(0, 512, 4096, IOVT_PERM_RW, 0)};
	r = run_oracle(b6, 1, t2m, 1, &gv, true);
	CHECK_EQ(r.min_calls, 0);
	CHECK_EQ(r.kept, 1);

	/* touched ranges in any order, overlapping, unaligned ends */
	memset(&gv, 0, sizeof(gv));
	gset(&gv, 4, 4, 100, IOVT_PERM_RW, 0);
	uint64_t tm[3][2] = {{6 * K4 + 5, 7 * K4 + 1}, {4 * K4 + 100, 5 * K4}, {5 * K4, 6 * K4 + 7}};
	r = run_oracle(NULL, 0, tm, 3, &gv, false);
	CHECK_EQ(r.min_maps, 1);

	/* invalid inputs */
	struct iovt_extent bad1[] = {mext(2, 1, 1, 1, 0), mext(0, 1, 1, 1, 0)};
	struct iovt_extent bad2[] = {mext(0, 2, 1, 1, 0), mext(1, 1, 1, 1, 0)};
	struct iovt_oracle_input in = {.before = bad1, .n_before = 2, .touched = all, .n_touched = 1,
				       .guest = guest_fn, .guest_arg = &gv};
	CHECK_EQ(iovt_oracle_min_calls(&in, &r), -EINVAL);
	in.before = bad2;
	CHECK_EQ(iovt_oracle_min_calls(&in, &r), -EINVAL);
}

/* ---- brute force --------------------------------------------------------- */

#define BP 10 /* pages at most */

static uint64_t rng_state;
static uint64_t rnd(void)
{
	rng_state += 0x9E3779B97F4A7C15ull;
	uint64_t z = rng_state;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}
static bool chance(unsigned pct) { return rnd() % 100 < pct; }

/* A random page continuing `prev` (host-contiguous) often, so runs form. */
static struct gpage rand_page(const struct gpage *prev)
{
	struct gpage p = {.present = chance(75)};
	if (!p.present)
		return p;
	if (prev && prev->present && chance(60)) {
		p = *prev;
		p.hva++;
		p.gpa++;
	} else {
		p.hva = 1000 + rnd() % 20;
		p.gpa = p.hva;
		p.perm = chance(50) ? IOVT_PERM_RW : IOVT_PERM_R;
	}
	if (chance(10))
		p.gpa += 50; /* host-contiguous but not guest-contiguous */
	if (chance(10))
		p.perm ^= IOVT_PERM_W;
	p.region = p.hva >= 1010; /* region follows the host target */
	return p;
}

static bool same_page(const struct gpage *a, const struct gpage *b)
{
	return a->present == b->present &&
	       (!a->present || (a->hva == b->hva && a->gpa == b->gpa && a->perm == b->perm &&
				a->region == b->region));
}

/* Can new-view pages a..b-1 be one MAP? */
static bool mappable(const struct gview *g, int a, int b)
{
	for (int i = a; i < b; i++) {
		const struct gpage *x = &g->pg[i];
		if (!x->present)
			return false;
		if (i > a) {
			const struct gpage *y = &g->pg[i - 1];
			if (x->hva != y->hva + 1 || x->gpa != y->gpa + 1 || x->perm != y->perm ||
			    x->region != y->region)
				return false;
		}
	}
	return true;
}

/* Open-addressing set of states (never empty key: bit 63 set on insert). */
struct hset {
	uint64_t *slot;
	size_t cap, used;
};
static bool hset_add(struct hset *h, uint64_t k)
{
	k |= 1ull << 63;
	if ((h->used + 1) * 2 > h->cap) {
		struct hset n = {.cap = h->cap ? h->cap * 2 : 1024};
		n.slot = calloc(n.cap, sizeof(uint64_t));
		CHECK(n.slot);
		for (size_t i = 0; i < h->cap; i++)
			if (h->slot[i])
				hset_add(&n, h->slot[i]);
		free(h->slot);
		*h = n;
	}
	size_t i = (size_t)((k * 0x9E3779B97F4A7C15ull) >> 20) & (h->cap - 1);
	while (h->slot[i]) {
		if (h->slot[i] == k)
			return false;
		i = (i + 1) & (h->cap - 1);
	}
	h->slot[i] = k;
	h->used++;
	return true;
}

struct inst {
	int np;
	struct gview old, cur;
	struct iovt_extent b[BP];
	int bp[BP], bn[BP]; /* extent first page, page count */
	bool valid[BP];
	int nb;
	uint64_t t[2][2];
	int nt;
};

/*
 * State: bits 0..15 before-extents still held; 16..31 pages covered by new
 * mappings; 32..47 pages that start a new mapping. Only correct MAPs are
 * tried (a wrong one must be undone: never shorter), and only invalid
 * mappings are ever removed (stable plans).
 */
static uint64_t bfs(const struct inst *I, bool multi)
{
	uint32_t all_b = (1u << I->nb) - 1, valid_mask = 0, present = 0;
	for (int i = 0; i < I->nb; i++)
		if (I->valid[i])
			valid_mask |= 1u << i;
	for (int p = 0; p < I->np; p++)
		if (I->cur.pg[p].present)
			present |= 1u << p;
	uint32_t valid_cov = 0;
	for (int i = 0; i < I->nb; i++)
		if (I->valid[i])
			valid_cov |= ((1u << I->bn[i]) - 1) << I->bp[i];

	struct hset seen = {0};
	size_t qcap = 1024, qh = 0, qt = 0;
	uint64_t *q = malloc(qcap * sizeof(*q));
	uint64_t start = all_b;
	hset_add(&seen, start);
	q[qt++] = start;
	uint64_t depth = 0;
	size_t level_end = qt;
	for (;;) {
		CHECK(qh < qt); /* the goal is always reachable */
		if (qh == level_end) {
			depth++;
			level_end = qt;
		}
		uint64_t s = q[qh++];
		uint32_t bm = s & 0xffff, cov = (s >> 16) & 0xffff, st = (s >> 32) & 0xffff;
		if (bm == valid_mask && (cov | valid_cov) == present)
			break;
		uint32_t held = cov;
		for (int i = 0; i < I->nb; i++)
			if (bm >> i & 1)
				held |= ((1u << I->bn[i]) - 1) << I->bp[i];
		uint64_t next[BP * BP * 2];
		int nn = 0;
		/* MAPs of correct runs on free pages */
		for (int a = 0; a < I->np; a++)
			for (int e = a + 1; e <= I->np; e++) {
				uint32_t r = ((1u << (e - a)) - 1) << a;
				if ((held & r) || !mappable(&I->cur, a, e))
					break; /* longer ones fail too */
				next[nn++] = bm | (uint64_t)(cov | r) << 16 | (uint64_t)(st | 1u << a) << 32;
			}
		/* UNMAPs of held invalid extents i..j (list order) */
		for (int i = 0; i < I->nb; i++) {
			if (!(bm >> i & 1) || I->valid[i])
				continue;
			uint32_t rm = 0;
			for (int j = i; j < I->nb; j++) {
				if (I->valid[j])
					break; /* would remove a kept mapping */
				if (!(bm >> j & 1))
					continue;
				uint32_t span = ((1u << (I->bp[j] + I->bn[j] - I->bp[i])) - 1) << I->bp[i];
				if (cov & span)
					break; /* would remove a new (valid) mapping */
				rm |= 1u << j;
				next[nn++] = (bm & ~rm) | (uint64_t)cov << 16 | (uint64_t)st << 32;
				if (!multi)
					break;
			}
		}
		for (int k = 0; k < nn; k++) {
			if (!hset_add(&seen, next[k]))
				continue;
			if (qt == qcap) {
				qcap *= 2;
				q = realloc(q, qcap * sizeof(*q));
				CHECK(q);
			}
			q[qt++] = next[k];
		}
	}
	free(q);
	free(seen.slot);
	return depth;
}

static void make_instance(struct inst *I)
{
	memset(I, 0, sizeof(*I));
	I->np = 2 + (int)(rnd() % (BP - 1));
	I->old.n = I->cur.n = I->np;
	for (int p = 0; p < I->np; p++)
		I->old.pg[p] = rand_page(p ? &I->old.pg[p - 1] : NULL);
	/* before: the old view's present pages cut into valid mappings */
	for (int p = 0; p < I->np; p++) {
		if (!I->old.pg[p].present)
			continue;
		int k = I->nb - 1;
		if (k >= 0 && I->bp[k] + I->bn[k] == p && mappable(&I->old, I->bp[k], p + 1) &&
		    chance(70)) {
			I->bn[k]++;
			continue;
		}
		I->bp[++k] = p;
		I->bn[k] = 1;
		I->nb++;
	}
	for (int i = 0; i < I->nb; i++) {
		const struct gpage *x = &I->old.pg[I->bp[i]];
		I->b[i] = (struct iovt_extent){.iova = I->bp[i] * K4, .size = I->bn[i] * K4,
					       .hva = x->hva * K4, .gpa = x->gpa * K4,
					       .perm = x->perm, .region = x->region};
	}
	/* touched ranges; the new view differs from the old only inside */
	I->cur = I->old;
	I->nt = 1 + (int)(rnd() % 2);
	for (int k = 0; k < I->nt; k++) {
		int a = (int)(rnd() % I->np), l = 1 + (int)(rnd() % 4);
		if (a + l > I->np)
			l = I->np - a;
		I->t[k][0] = a * K4 + rnd() % 2048;      /* unaligned ends on purpose */
		I->t[k][1] = (a + l) * K4 - 1 - rnd() % 2048;
		for (int p = a; p < a + l; p++)
			if (chance(50))
				I->cur.pg[p] = rand_page(p ? &I->cur.pg[p - 1] : NULL);
	}
	for (int i = 0; i < I->nb; i++) {
		I->valid[i] = true;
		for (int p = I->bp[i]; p < I->bp[i] + I->bn[i]; p++)
			if (!same_page(&I->old.pg[p], &I->cur.pg[p]))
				I->valid[i] = false;
	}
}

static void test_bruteforce(uint64_t seed)
{
	rng_state = seed;
	static struct inst I;
	int n = (int)(3000 * check_scale());
	uint64_t nonzero = 0;
	for (int it = 0; it < n; it++) {
		make_instance(&I);
		for (int multi = 0; multi < 2; multi++) {
			struct iovt_oracle_result r =
				run_oracle(I.b, (size_t)I.nb, (const uint64_t(*)[2])I.t, (size_t)I.nt,
					   &I.cur, multi);
			uint64_t want = bfs(&I, multi);
			if (r.min_calls != want)
				fprintf(stderr, "instance %d multi %d: oracle %" PRIu64 " bfs %" PRIu64 "\n",
					it, multi, r.min_calls, want);
			CHECK_EQ(r.min_calls, want);
			uint64_t kept = 0;
			for (int i = 0; i < I.nb; i++)
				kept += I.valid[i];
			CHECK_EQ(r.kept, kept);
			nonzero += want != 0;
		}
	}
	CHECK(nonzero > (uint64_t)n / 4); /* the generator does produce work */
}

int main(void)
{
	uint64_t seed = check_pick_seed("oracle");
	test_hand();
	test_bruteforce(seed);
	printf("oracle: ok\n");
	return 0;
}
