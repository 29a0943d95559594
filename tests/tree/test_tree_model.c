/* SPDX-License-Identifier: MIT */
/*
 * Model test: >= 1M random mixed operations on a shadow tree and on a plain
 * reference (a sorted array of extents), compared after every operation and
 * in full periodically. IOVT_SEED reproduces a run; IOVT_TEST_SCALE scales
 * the operation count (sanitizer runs).
 */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "common/alloc.h"
#include "tree/shadow_tree.h"

CHECK_SEED_STORAGE;

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TSAN_BUILD 1
#endif
#endif
#ifdef __SANITIZE_THREAD__
#define TSAN_BUILD 1
#endif

#define K4 0x1000ull
#define M2 0x200000ull
#define G1 0x40000000ull
#define AW 48
#define HOT (16 * G1) /* most traffic lands here, so overlaps are frequent */

static uint64_t rs;
static uint64_t rnd(void) /* xorshift64* */
{
	rs ^= rs >> 12;
	rs ^= rs << 25;
	rs ^= rs >> 27;
	return rs * 0x2545F4914F6CDD1Dull;
}
static uint64_t below(uint64_t n) { return n ? rnd() % n : 0; }

/* ---- the reference ---- */
static struct iovt_extent *mv;
static size_t mn, mcap;

/* Index of the first model extent ending at or after a. */
static size_t m_lower(uint64_t a)
{
	size_t lo = 0, hi = mn;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (mv[mid].iova + mv[mid].size - 1 < a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool m_overlaps(uint64_t first, uint64_t last)
{
	size_t i = m_lower(first);
	return i < mn && mv[i].iova <= last;
}

static void m_insert(const struct iovt_extent *e)
{
	if (mn == mcap) {
		mcap = mcap ? 2 * mcap : 1024;
		mv = realloc(mv, mcap * sizeof(*mv));
		CHECK(mv);
	}
	size_t i = m_lower(e->iova);
	memmove(&mv[i + 1], &mv[i], (mn - i) * sizeof(*mv));
	mv[i] = *e;
	mn++;
}

static bool same(const struct iovt_extent *a, const struct iovt_extent *b)
{
	return a->iova == b->iova && a->size == b->size && a->gpa == b->gpa &&
	       a->hva == b->hva && a->perm == b->perm && a->region == b->region;
}

/* ---- collecting visitor ---- */
struct coll {
	struct iovt_extent *v;
	size_t n, cap, stop_at;
};

static int collect(void *arg, const struct iovt_extent *e)
{
	struct coll *c = arg;
	if (c->n == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 256;
		c->v = realloc(c->v, c->cap * sizeof(*c->v));
		CHECK(c->v);
	}
	c->v[c->n++] = *e;
	return c->stop_at && c->n == c->stop_at ? 9 : 0;
}

/* ---- random inputs ---- */
static uint64_t rand_addr(void)
{
	if (below(100) < 88)
		return below(HOT);
	return below(1ull << AW);
}

static struct iovt_extent rand_extent(void)
{
	struct iovt_extent e = { 0 };
	unsigned k = (unsigned)below(100);
	uint64_t a = rand_addr() & ~(K4 - 1);
	if (k < 55) {
		e.size = (1 + below(8)) * K4;
	} else if (k < 70) {
		e.size = (1 + below(3)) * M2;
		if (below(2))
			a &= ~(M2 - 1);
	} else if (k < 80) {
		e.size = (1 + below(1024)) * K4;
	} else if (k < 86) {
		e.size = (1 + below(2)) * G1;
		a &= ~(G1 - 1);
	} else if (k < 97) {
		e.size = (1 + below(1u << 19)) * K4 + (below(2) ? G1 : 0); /* odd, large */
	} else {
		e.size = (1 + below((1ull << 32) - 1)) * K4; /* up to 16 TiB */
		a = below(1ull << AW) & ~(K4 - 1);
	}
	if (a + e.size > (1ull << AW))
		a = (1ull << AW) - e.size;
	e.iova = a;
	e.gpa = rnd() & ~(K4 - 1);
	e.hva = rnd();
	e.perm = (uint32_t)below(4);
	e.region = (uint32_t)below(1u << 24);
	return e;
}

/* ---- shadow_tree_iterate_unkept_w against the per-extent rule ---- */
/* Its output as one sequence: extents, and a zero-size marker where the
 * visitor was told extents were left out before a stretch. */
struct unkept {
	struct coll seq;
	unsigned calls, stop_at; /* stop_at: return 9 from that call (0: never) */
};

static void seq_push(struct coll *c, const struct iovt_extent *e)
{
	size_t stop = c->stop_at;
	c->stop_at = 0;
	(void)collect(c, e);
	c->stop_at = stop;
}

static int collect_unkept(void *arg, const struct iovt_extent *e, bool dropped_before)
{
	struct unkept *u = arg;
	if (dropped_before)
		seq_push(&u->seq, &(struct iovt_extent){ .size = 0 });
	seq_push(&u->seq, e);
	return ++u->calls == u->stop_at ? 9 : 0;
}

/* Runs over the model's extents in [first, last]: some begin with an
 * extent exactly or map more past it, some differ from it in one field,
 * some begin inside it, some extents have none; sorted and disjoint. */
static size_t rand_runs(struct iovt_extent *runs, size_t cap, size_t i, size_t j)
{
	size_t n = 0;
	uint64_t end = 0; /* past the last run */
	for (size_t q = i; q < j && n < cap; q++) {
		struct iovt_extent r = mv[q];
		unsigned k = (unsigned)below(100);
		if (k < 20)
			continue;
		if (k < 60) {
			/* as it is */
		} else if (k < 68) {
			r.size += (1 + below(4)) * K4; /* maps more past it */
		} else if (k < 76) {
			if (r.size == K4)
				continue;
			r.size -= K4; /* begins with it, ends inside it */
		} else if (k < 84) {
			switch (below(4)) {
			case 0: r.gpa += K4; break;
			case 1: r.hva += K4; break;
			case 2: r.perm ^= 1; break;
			default: r.region ^= 1; break;
			}
		} else if (k < 92) {
			if (r.size == K4)
				continue;
			r.iova += K4; r.gpa += K4; r.hva += K4; r.size -= K4; /* inside it */
		} else {
			if (r.iova < K4)
				continue;
			r.iova -= K4; r.gpa -= K4; r.hva -= K4; r.size += K4; /* before it */
		}
		if (r.iova < end || r.iova + r.size > (1ull << AW))
			continue;
		runs[n++] = r;
		end = r.iova + r.size;
	}
	return n;
}

static long unkept_calls, unkept_stops, unkept_visited, unkept_left_out;

static void check_unkept(struct shadow_tree *t, uint64_t first, uint64_t last)
{
	static struct iovt_extent runs[64], want_runs[64];
	static struct coll want;
	static struct unkept u;
	size_t i = m_lower(first), j = i;
	while (j < mn && mv[j].iova <= last)
		j++;
	size_t nr = rand_runs(runs, 64, i, j < i + 64 ? j : i + 64);
	memcpy(want_runs, runs, nr * sizeof(*runs));
	/* the reference: sync.c's push_old, an extent at a time; on a stop,
	 * its state once it has handed over what the tree did (below) */
	size_t wri = 0;
	bool wdrop = below(2), drop0 = wdrop;
	want.n = 0;
	u.stop_at = below(6) == 0 ? 1 + (unsigned)below(3) : 0;
	u.seq.n = 0;
	u.calls = 0;
	size_t ri = 0;
	bool drop = drop0;
	int rc = shadow_tree_iterate_unkept_w(t, first, last, runs, nr, &ri, &drop, collect_unkept, &u);
	bool stopped = u.stop_at && u.calls == u.stop_at;
	for (size_t q = i; q < j && !(stopped && want.n >= u.seq.n); q++) {
		const struct iovt_extent *e = &mv[q];
		while (wri < nr && want_runs[wri].iova + want_runs[wri].size <= e->iova)
			wri++;
		struct iovt_extent *r = &want_runs[wri];
		if (wri < nr && r->iova == e->iova && e->size <= r->size && r->gpa == e->gpa &&
		    r->hva == e->hva && r->perm == e->perm && r->region == e->region) {
			r->iova += e->size; r->gpa += e->size; r->hva += e->size; r->size -= e->size;
			wdrop = true;
			continue;
		}
		if (wdrop)
			seq_push(&want, &(struct iovt_extent){ .size = 0 });
		wdrop = false;
		seq_push(&want, e);
	}
	/* stopped: the same sequence so far, and the same state after its last
	 * extent (cursor, runs, and the flag: that extent was visited) */
	CHECK_EQ(rc, stopped ? 9 : 0);
	CHECK_EQ(u.seq.n, want.n);
	for (size_t q = 0; q < want.n; q++)
		CHECK(same(&u.seq.v[q], &want.v[q]));
	for (size_t q = 0; q < nr; q++)
		CHECK(same(&runs[q], &want_runs[q]));
	CHECK_EQ(drop, wdrop);
	CHECK_EQ(ri, wri);
	unkept_calls++;
	unkept_stops += stopped;
	unkept_visited += want.n;
	if (!stopped)
		unkept_left_out += (j - i) - want.n; /* markers counted in want.n: a lower bound */
}

/*
 * The map4k-psi2m shape: a window of 4 KiB extents whose GPAs and HVAs
 * continue, which the guest view folds into one run. All of them are left
 * out, the run used up; one changed page in the middle is handed over with
 * a marker before it, and the run then resumes past it only where the next
 * extent begins (push_old's rule: the run's start no longer matches).
 */
static void check_unkept_one_run(void)
{
	enum { N = 512 };
	struct shadow_tree *t = shadow_tree_create(AW);
	CHECK(t);
	const uint64_t base = 7 * M2, gpa = 3 * G1, hva = 0x7f0000000000ull;
	for (unsigned i = 0; i < N; i++) {
		struct iovt_extent e = { .iova = base + i * K4, .size = K4, .gpa = gpa + i * K4,
					 .hva = hva + i * K4, .perm = 3, .region = 1 };
		CHECK_EQ(shadow_tree_insert(t, &e), 0);
	}
	struct unkept u = { 0 };
	for (unsigned changed = 0; changed <= N; changed += N / 2) { /* 0, 256: a page; 512: none */
		struct iovt_extent run = { .iova = base, .size = N * K4, .gpa = gpa, .hva = hva,
					   .perm = 3, .region = 1 };
		struct iovt_extent runs[2] = { run, { 0 } };
		size_t nr = 1;
		if (changed < N) { /* the guest remapped page `changed`: two runs around it */
			runs[0].size = changed * K4;
			runs[1] = run;
			runs[1].iova += (changed + 1) * K4;
			runs[1].gpa += (changed + 1) * K4;
			runs[1].hva += (changed + 1) * K4;
			runs[1].size -= (changed + 1) * K4;
			nr = runs[0].size ? 2 : 1;
			if (!runs[0].size)
				runs[0] = runs[1];
		}
		size_t ri = 0;
		bool drop = false;
		u.seq.n = 0;
		u.calls = 0;
		CHECK_EQ(shadow_tree_iterate_unkept_w(t, base, base + N * K4 - 1, runs, nr, &ri, &drop,
						      collect_unkept, &u), 0);
		for (size_t q = 0; q < nr; q++)
			CHECK_EQ(runs[q].size, 0); /* every run used up */
		CHECK_EQ(ri, nr - 1);
		CHECK(drop); /* the last extents were left out */
		if (changed == N) {
			CHECK_EQ(u.seq.n, 0);
		} else {
			/* the changed page's old extent, after a marker when pages
			 * before it were left out */
			CHECK_EQ(u.seq.n, changed ? 2 : 1);
			const struct iovt_extent *e = &u.seq.v[u.seq.n - 1];
			CHECK(e->iova == base + changed * K4 && e->size == K4 && e->gpa == gpa + changed * K4);
			if (changed)
				CHECK_EQ(u.seq.v[0].size, 0);
		}
	}
	CHECK_EQ(shadow_tree_remove_range(t, 0, ~0ull, NULL, NULL), N);
	shadow_tree_destroy(t);
	free(u.seq.v);
}

/* Full comparison of tree and model. */
static void compare_all(struct shadow_tree *t, struct coll *c)
{
	c->n = 0;
	c->stop_at = 0;
	CHECK_EQ(shadow_tree_iterate(t, 0, ~0ull, collect, c), 0);
	CHECK_EQ(c->n, mn);
	for (size_t i = 0; i < mn; i++)
		CHECK(same(&c->v[i], &mv[i]));
	CHECK_EQ(shadow_tree_count(t), mn);
	/* every structural rule of the B+-tree, and its byte count */
	CHECK_EQ(shadow_tree_verify(t), 0);
	CHECK(shadow_tree_memory_bytes(t) >= mn * 32);
	shadow_tree_flush(t); /* as a domain sync ends */
}

int main(void)
{
	uint64_t seed = check_pick_seed("tree-model");
	rs = seed * 0x9E3779B97F4A7C15ull + 1;
	double scale = check_scale();
#ifdef TSAN_BUILD
	/* single-threaded: TSan checks nothing here and runs ~60x slower */
	if (!getenv("IOVT_TEST_SCALE"))
		scale = 0.05;
#endif
	long ops = (long)(1000000 * scale);
	if (ops < 1000)
		ops = 1000;
	struct shadow_tree *t = shadow_tree_create(AW);
	CHECK(t);
	shadow_tree_test_check_finger = true; /* every finger path == a full descent */
	check_unkept_one_run();
	struct coll c = { 0 };
	long n_ins = 0, n_eexist = 0, n_rm = 0, n_hit = 0;

	for (long op = 0; op < ops; op++) {
		/* splits inside a leaf: in halves or where the insert lands (a
		 * run's), mixed in one tree */
		shadow_tree_test_split_where = (op >> 6) & 1;
		unsigned k = (unsigned)below(100);
		unsigned pins = mn < 1500 ? 40 : 20; /* keep the model near ~1.5k */
		if (k < pins) {
			struct iovt_extent e = rand_extent();
			int want = m_overlaps(e.iova, e.iova + e.size - 1) ? -EEXIST : 0;
			int rc = shadow_tree_insert(t, &e);
			CHECK_EQ(rc, want);
			if (rc == 0) {
				m_insert(&e);
				n_ins++;
				struct iovt_extent o;
				CHECK(shadow_tree_lookup(t, e.iova + e.size - 1, &o) && same(&o, &e));
				CHECK(shadow_tree_lookup_w(t, e.iova, &o) && same(&o, &e));
			} else {
				n_eexist++;
			}
		} else if (k < pins + 3) {
			struct iovt_extent e = rand_extent(); /* invalid ones */
			switch (below(4)) {
			case 0: e.size = 0; break;
			case 1: e.iova |= 1 + below(K4 - 1); break;
			case 2: e.size += 1 + below(K4 - 1); break;
			default: e.iova = (1ull << AW) - K4 * below(4); e.size += 4 * K4; break;
			}
			CHECK_EQ(shadow_tree_insert(t, &e), -EINVAL);
		} else if (k < pins + 28) {
			uint64_t first = rand_addr(), len;
			unsigned s = (unsigned)below(1000);
			len = s < 700 ? below(8 * K4) : s < 990 ? below(64 * M2)
				: s < 998 ? below(4 * G1) : below(1ull << AW);
			uint64_t last = first + len > first ? first + len : ~0ull;
			if (mn && below(3) == 0) { /* aim at an extent's edge */
				struct iovt_extent *m = &mv[below(mn)];
				first = last = below(2) ? m->iova : m->iova + m->size - 1;
			}
			c.n = 0;
			long r = shadow_tree_remove_range(t, first, last, collect, &c);
			size_t i = m_lower(first), j = i;
			while (j < mn && mv[j].iova <= last)
				j++;
			CHECK_EQ(r, j - i);
			CHECK_EQ(c.n, j - i);
			for (size_t q = 0; q < c.n; q++)
				CHECK(same(&c.v[q], &mv[i + q]));
			if (j > i)
				memmove(&mv[i], &mv[j], (mn - j) * sizeof(*mv));
			mn -= j - i;
			n_rm += r;
		} else if (k < pins + 50) {
			uint64_t a;
			if (mn && below(2)) {
				struct iovt_extent *m = &mv[below(mn)];
				unsigned w = (unsigned)below(4);
				a = w == 0 ? m->iova : w == 1 ? m->iova + m->size - 1
					: w == 2 ? m->iova - 1 : m->iova + below(m->size);
			} else {
				a = rand_addr();
			}
			struct iovt_extent o;
			/* the reader's descent, or the writer's through its finger
			 * (the path of its last descent, reused while valid) */
			bool h = below(2) ? shadow_tree_lookup(t, a, &o) : shadow_tree_lookup_w(t, a, &o);
			size_t i = m_lower(a);
			bool want = i < mn && mv[i].iova <= a;
			CHECK_EQ(h, want);
			if (h) {
				CHECK(same(&o, &mv[i]));
				n_hit++;
			}
		} else {
			uint64_t first = rand_addr(), len = below(8) ? below(64 * M2) : below(1ull << AW);
			uint64_t last = first + len > first ? first + len : ~0ull;
			c.n = 0;
			c.stop_at = below(4) == 0 ? 1 + below(4) : 0;
			if (below(3) == 0) { /* the sync's gathering of old extents */
				check_unkept(t, first, last);
				goto next;
			}
			int rc = below(2) ? shadow_tree_iterate(t, first, last, collect, &c)
					  : shadow_tree_iterate_w(t, first, last, collect, &c);
			size_t i = m_lower(first), j = i;
			while (j < mn && mv[j].iova <= last)
				j++;
			size_t want = j - i;
			if (c.stop_at && want >= c.stop_at) {
				CHECK_EQ(rc, 9);
				want = c.stop_at;
			} else {
				CHECK_EQ(rc, 0);
			}
			CHECK_EQ(c.n, want);
			for (size_t q = 0; q < c.n; q++)
				CHECK(same(&c.v[q], &mv[i + q]));
			c.stop_at = 0;
		}
	next:
		CHECK_EQ(shadow_tree_count(t), mn);
		if (op % 2500 == 0)
			compare_all(t, &c);
	}
	compare_all(t, &c);
	printf("tree-model: %ld ops, %ld inserted, %ld rejected overlaps, %ld removed, %ld hits, %zu left\n",
	       ops, n_ins, n_eexist, n_rm, n_hit, mn);
	printf("tree-model: iterate_unkept_w: %ld calls (%ld stopped by the visitor), %ld extents and "
	       "markers visited, >= %ld left out\n",
	       unkept_calls, unkept_stops, unkept_visited, unkept_left_out);
	CHECK(n_ins > ops / 10 && n_eexist > ops / 100 && n_rm > ops / 20);
	CHECK(unkept_visited > ops / 100 && unkept_left_out > ops / 100 && unkept_stops > ops / 1000);
	CHECK_EQ(shadow_tree_remove_range(t, 0, ~0ull, NULL, NULL), mn);
	CHECK_EQ(shadow_tree_count(t), 0);
	shadow_tree_destroy(t);
	free(mv);
	free(c.v);
	return 0;
}
