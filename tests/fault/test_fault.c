/* SPDX-License-Identifier: MIT */
/*
 * fault: the engine against a failing sink. A model sink (the "device")
 * wrapped by the fault sink; injected failures never reach the model, so the
 * model is the truth of what the device holds. After EVERY fence, failed or
 * not, the judges assert:
 *  - the engine's record equals the model, page by page over the whole area
 *    the test touches (translate hit/miss and the covering extent), and the
 *    domain's extent count equals the model's mapping count;
 *  - the fence returned the first injected errno (0 when none was injected);
 *  - IOVT_ERR_SINK_MAP / SINK_UNMAP grew by exactly the injected failures;
 *  - the model rejected nothing (a MAP over what stayed after a failed UNMAP
 *    would be -EEXIST there).
 * Then faults stop and one fence with no new invalidation must converge:
 * model == guest truth over the area, record == model.
 *
 * Modes (argv[1]): map, unmap, partial, random, random-partial, queue-retry
 * (the PSI + wait of an explicit queue: its next fence retries what failed),
 * vec-enomem (the engine's own memory instead of the sink: the sync's
 * scratch vectors fail to grow, once per round at every growth in turn).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "common/vec.h" /* iovt_vec_fault: the sync's vectors, for vec-enomem */
#include "fault_sink.h"
#include "guestsim.h"
#include "iovt.h"
#include "iovt_model.h"

CHECK_SEED_STORAGE;

#define K 0x1000ull
#define M2 0x200000ull
#define M1 0x100000ull

struct fw {
	struct guestsim *gs;
	struct gs_domain *gd;
	struct iovt_engine *e;
	struct iovt_domain *d;
	struct iovt_notifier *n;
	struct iovt_model_sink *model;
	struct fault_sink *fs;
	struct iovt_sink wrapped;
	uint16_t did;
	uint64_t lo, hi; /* the area every judge covers: [lo, hi) */
	uint64_t err_map, err_unmap; /* engine error counters at the last judged fence */
	uint64_t fences, failed_fences, converges;
	uint64_t last_inj[FAULT_KINDS]; /* injected counts at the last judge */
};

static void fw_counters(struct fw *w, uint64_t *m, uint64_t *u)
{
	struct iovt_stats st;
	iovt_domain_stats_get(w->d, &st);
	*m = st.errors[IOVT_ERR_SINK_MAP];
	*u = st.errors[IOVT_ERR_SINK_UNMAP];
}

/* Builds everything but the notifier (a test may want the guest mapped and
 * faults scheduled before the attach replay). */
static void fw_init(struct fw *w, enum iovt_model_flavor flavor, bool multi, bool partial,
		    uint64_t area, uint64_t seed)
{
	memset(w, 0, sizeof(*w));
	w->gs = gs_create(1, 512 * M2, 32 * M2);
	CHECK(w->gs);
	const struct gs_region *r = gs_region(w->gs, 0);
	CHECK(iovt_engine_create(NULL, &w->e) == 0);
	CHECK(iovt_guest_ram_add(w->e, r->gpa, r->size, r->hva, NULL) == 0);
	w->gd = gs_domain_create(w->gs, 48, true, false);
	CHECK(w->gd);
	w->did = 3;
	struct iovt_domain_config dc = { .did = w->did, .root_gpa = gs_domain_root(w->gd),
					 .addr_width = 48, .allow_2m = true };
	CHECK(iovt_domain_create(w->e, &dc, &w->d) == 0);
	struct iovt_model_config mc = { .flavor = flavor, .multi_unmap = multi };
	struct iovt_sink inner;
	CHECK(iovt_model_sink_create(&mc, &w->model, &inner) == 0);
	CHECK(fault_sink_create(&inner, w->model, partial, seed ^ 0x5eed, &w->fs, &w->wrapped) == 0);
	w->lo = 0;
	w->hi = area;
}

static void fw_destroy(struct fw *w)
{
	iovt_engine_destroy(w->e); /* detaches without calling the sink */
	fault_sink_destroy(w->fs);
	iovt_model_sink_destroy(w->model);
	gs_destroy(w->gs);
}

static bool ext_eq(const struct iovt_extent *a, const struct iovt_extent *b)
{
	return a->iova == b->iova && a->size == b->size && a->gpa == b->gpa && a->hva == b->hva &&
	       a->perm == b->perm && a->region == b->region;
}

/* The record equals what the device holds: every page of the area, and the
 * count (nothing held outside the area either). */
static void check_record(struct fw *w, const char *when)
{
	for (uint64_t iova = w->lo; iova < w->hi; iova += K) {
		struct iovt_extent t, m;
		int rc = iovt_translate(w->d, iova, &t);
		bool held = iovt_model_sink_find(w->model, iova, &m);
		CHECK(rc == 0 || rc == -ENOENT);
		/* FAULT_DEBUG=1: list what both sides hold, to read a failure. */
		if (getenv("FAULT_DEBUG") && (rc == 0 || held) && (iova & 0x3fff) == 0)
			fprintf(stderr, "  0x%" PRIx64 ": record %s device %s\n", iova,
				rc ? "-" : "hit", held ? "hit" : "-");
		if ((rc == 0) != held || (held && !ext_eq(&t, &m))) {
			fprintf(stderr,
				"%s: record != device at iova 0x%" PRIx64 ": record %s [0x%" PRIx64
				" +0x%" PRIx64 " gpa 0x%" PRIx64 " perm %u], device %s [0x%" PRIx64
				" +0x%" PRIx64 " gpa 0x%" PRIx64 " perm %u] (fence %" PRIu64 ")\n",
				when, iova, rc ? "miss" : "hit", rc ? 0 : t.iova, rc ? 0 : t.size,
				rc ? 0 : t.gpa, rc ? 0 : t.perm, held ? "holds" : "empty",
				held ? m.iova : 0, held ? m.size : 0, held ? m.gpa : 0,
				held ? m.perm : 0, w->fences);
			CHECK(!"record == device");
		}
	}
	struct iovt_stats st;
	iovt_domain_stats_get(w->d, &st);
	CHECK_EQ(st.extents, iovt_model_sink_count(w->model));
}

/* What every fence is judged by, whatever it injected: the model sink
 * rejected no call (nothing mapped twice, no mapping bisected), and the
 * record equals what the device holds. */
static void check_fence_state(struct fw *w, const char *when)
{
	struct iovt_model_stats ms;
	iovt_model_sink_stats(w->model, &ms);
	CHECK_EQ(ms.rejected_calls, 0);
	check_record(w, when);
}

/* The device equals the guest: every page of the area. */
static void check_truth(struct fw *w)
{
	for (uint64_t iova = w->lo; iova < w->hi; iova += K) {
		uint64_t gpa;
		uint32_t perm;
		struct iovt_extent m;
		bool mapped = gs_truth_lookup(w->gd, iova, &gpa, &perm);
		bool held = iovt_model_sink_find(w->model, iova, &m);
		if (mapped != held) {
			fprintf(stderr, "device != guest at 0x%" PRIx64 ": guest %s, device %s\n", iova,
				mapped ? "mapped" : "unmapped", held ? "holds" : "empty");
			CHECK(!"device == guest");
		}
		if (!mapped)
			continue;
		CHECK_EQ(m.gpa + (iova - m.iova), gpa);
		CHECK_EQ(m.perm, perm);
		CHECK_EQ(m.hva + (iova - m.iova), (uint64_t)(uintptr_t)gs_hva(w->gs, gpa));
	}
}

/* A fence and every judge. Returns the fence's result. */
static int fence_judged(struct fw *w)
{
	int rc = iovt_fence(w->e);
	w->fences++;
	uint64_t injected = 0;
	int first = fault_sink_take_mark(w->fs, &injected);
	struct fault_stats fst;
	fault_sink_stats(w->fs, &fst);
	CHECK_EQ((int64_t)rc, (int64_t)first);
	uint64_t m, u;
	fw_counters(w, &m, &u);
	/* Per kind: the deltas must equal what was injected since the last judge. */
	uint64_t *last_inj = w->last_inj;
	CHECK_EQ(m - w->err_map, fst.injected[FAULT_MAP] - last_inj[FAULT_MAP]);
	CHECK_EQ(u - w->err_unmap, fst.injected[FAULT_UNMAP] - last_inj[FAULT_UNMAP]);
	CHECK_EQ(injected, (fst.injected[FAULT_MAP] - last_inj[FAULT_MAP]) +
				   (fst.injected[FAULT_UNMAP] - last_inj[FAULT_UNMAP]));
	last_inj[FAULT_MAP] = fst.injected[FAULT_MAP];
	last_inj[FAULT_UNMAP] = fst.injected[FAULT_UNMAP];
	w->err_map = m;
	w->err_unmap = u;
	check_fence_state(w, rc ? "after a failed fence" : "after a fence");
	if (rc)
		w->failed_fences++;
	return rc;
}

/* Stop injecting; one fence with no new invalidation must converge. */
static void converge(struct fw *w)
{
	fault_sink_stop(w->fs);
	CHECK_EQ(fence_judged(w), 0);
	check_truth(w);
	w->converges++;
}

static void attach(struct fw *w, int expect)
{
	int rc = iovt_notifier_attach(w->d, IOVT_NOTIFY_IOTLB_EVENTS, &w->wrapped, &w->n);
	uint64_t injected = 0;
	int first = fault_sink_take_mark(w->fs, &injected);
	CHECK_EQ((int64_t)rc, (int64_t)expect);
	CHECK_EQ((int64_t)rc, (int64_t)first);
	uint64_t m, u;
	fw_counters(w, &m, &u);
	CHECK_EQ(m + u, injected);
	/* fence_judged counts from here: the attach's failures are judged now. */
	struct fault_stats fst;
	fault_sink_stats(w->fs, &fst);
	CHECK_EQ(m, fst.injected[FAULT_MAP]);
	CHECK_EQ(u, fst.injected[FAULT_UNMAP]);
	w->err_map = m;
	w->err_unmap = u;
	w->last_inj[FAULT_MAP] = fst.injected[FAULT_MAP];
	w->last_inj[FAULT_UNMAP] = fst.injected[FAULT_UNMAP];
	check_record(w, "after attach");
}

/* PSI of the smallest aligned block covering [iova, iova+size), as Linux. */
static void inval(struct fw *w, uint64_t iova, uint64_t size)
{
	uint64_t first = iova >> 12, last = (iova + size - 1) >> 12;
	unsigned am = 0;
	while ((first >> am) != (last >> am))
		am++;
	CHECK(iovt_invalidate_psi(w->e, w->did, (first >> am) << (12 + am), am, false) == 0);
}

static int err_at(unsigned i)
{
	return fault_errnos[i % FAULT_NERRNO];
}

/* ---- fault-map: failures in the middle of batches of MAPs ---- */

/* 8 separate 4-page mappings at base + i*64K (distinct, non-contiguous GPAs:
 * one MAP each), one PSI over them. */
static void map_eight(struct fw *w, uint64_t base, uint64_t gpa_base)
{
	for (unsigned i = 0; i < 8; i++)
		CHECK(gs_map(w->gd, base + i * 64 * K, gpa_base + i * 128 * K, 4 * K, IOVT_PERM_RW,
			     GS_LEAF_4K) == 0);
	inval(w, base, 8 * 64 * K);
}

static void attach_replay(uint64_t seed, bool fenced_first)
{
	struct fw w;
	fw_init(&w, IOVT_MODEL_TYPE1, false, false, 8 * M2, seed);
	map_eight(&w, 0, 16 * M1);
	map_eight(&w, M2, 32 * M1);
	if (fenced_first)
		CHECK_EQ(iovt_fence(w.e), 0); /* no sink yet: nothing to send */
	fault_sink_fail_nth(w.fs, FAULT_MAP, 4, EEXIST);
	fault_sink_fail_nth(w.fs, FAULT_MAP, 9, EIO);
	attach(&w, -EEXIST);
	CHECK_EQ(iovt_model_sink_count(w.model), 14);
	converge(&w);
	CHECK_EQ(iovt_model_sink_count(w.model), 16);
	printf("fault-map (attach replay%s): %" PRIu64 " faults injected, all survived\n",
	       fenced_first ? ", the thread's queue idle" : "", fault_sink_injected(w.fs));
	fw_destroy(&w);
}

static void test_map(uint64_t seed)
{
	struct fw w;
	fw_init(&w, IOVT_MODEL_TYPE1, true, false, 64 * M2, seed);
	attach(&w, 0);
	unsigned round = 0;
	const unsigned pos[] = { 0, 3, 7 };
	for (unsigned e = 0; e < FAULT_NERRNO; e++) {
		for (unsigned p = 0; p < 3; p++, round++) {
			uint64_t base = round * M2;
			size_t before = iovt_model_sink_count(w.model);
			map_eight(&w, base, 16 * M1 + round * M1);
			fault_sink_fail_nth(w.fs, FAULT_MAP, pos[p], err_at(e));
			CHECK_EQ(fence_judged(&w), -err_at(e));
			CHECK_EQ(iovt_model_sink_count(w.model), before + 7);
			struct iovt_extent x;
			CHECK(iovt_translate(w.d, base + pos[p] * 64 * K, &x) == -ENOENT);
			converge(&w);
			CHECK_EQ(iovt_model_sink_count(w.model), before + 8);
		}
	}
	/* Two failures in one batch: the fence returns the first. */
	{
		uint64_t base = round++ * M2;
		map_eight(&w, base, 16 * M1 + round * M1);
		fault_sink_fail_nth(w.fs, FAULT_MAP, 2, ENOSPC);
		fault_sink_fail_nth(w.fs, FAULT_MAP, 5, EIO);
		CHECK_EQ(fence_judged(&w), -ENOSPC);
		converge(&w);
	}
	/* Every MAP of the batch fails, and the retry fails again part way. */
	{
		uint64_t base = round++ * M2;
		map_eight(&w, base, 16 * M1 + round * M1);
		for (unsigned i = 0; i < 8; i++)
			fault_sink_fail_nth(w.fs, FAULT_MAP, i, err_at(i));
		CHECK_EQ(fence_judged(&w), -err_at(0));
		fault_sink_fail_nth(w.fs, FAULT_MAP, 1, EINVAL);
		CHECK_EQ(fence_judged(&w), -EINVAL); /* the retry: no new invalidation */
		converge(&w);
	}
	/* A large 2 MiB mapping between small ones fails. */
	{
		uint64_t base = round++ * M2;
		CHECK(gs_map(w.gd, base, 40 * M2, M2, IOVT_PERM_R, GS_LEAF_2M) == 0);
		CHECK(gs_map(w.gd, base + M2, 60 * M2 + 8 * K, 8 * K, IOVT_PERM_RW, 0) == 0);
		inval(&w, base, M2 + 8 * K);
		fault_sink_fail_nth(w.fs, FAULT_MAP, 0, ENOMEM);
		CHECK_EQ(fence_judged(&w), -ENOMEM);
		converge(&w);
		round++;
	}
	printf("fault-map: %" PRIu64 " faults injected, all survived (%" PRIu64 " fences, %" PRIu64
	       " failed)\n",
	       fault_sink_injected(w.fs), w.fences, w.failed_fences);
	fw_destroy(&w);

	/* The attach replay fails part way: attach returns the error, the record
	 * is what the sink took, and a fence with no invalidation finishes it. */
	attach_replay(seed, false);
	/* The same after this thread has posted and fenced: its implicit queue
	 * exists and is empty, and the domain waits on the dirty list, on no
	 * queue's own list. iovt_fence must still finish the replay (its
	 * lock-free way, fence_alone, is only for when no domain is dirty). */
	attach_replay(seed, true);
}

/* ---- fault-unmap: UNMAP failures, and planned MAPs into the same IOVAs ---- */

static void test_unmap_one(bool multi, uint64_t seed, uint64_t *total)
{
	struct fw w;
	fw_init(&w, IOVT_MODEL_TYPE1, multi, false, 64 * M2, seed);
	attach(&w, 0);
	unsigned round = 0;
	for (unsigned e = 0; e < FAULT_NERRNO; e++) {
		for (unsigned pos = 0; pos < 8; pos += 3, round++) {
			uint64_t base = round * M2;
			map_eight(&w, base, 16 * M1 + round * M1);
			CHECK_EQ(fence_judged(&w), 0);
			/* The guest remaps every IOVA elsewhere: UNMAPs then MAPs into
			 * the same IOVAs. */
			map_eight(&w, base, 256 * M1 + round * M1);
			uint64_t maps_before = 0;
			struct iovt_model_stats ms;
			iovt_model_sink_stats(w.model, &ms);
			maps_before = ms.map_calls;
			/* multi: one UNMAP carries all eight, so only index 0 exists. */
			fault_sink_fail_nth(w.fs, FAULT_UNMAP, multi ? 0 : pos, err_at(e));
			CHECK_EQ(fence_judged(&w), -err_at(e));
			iovt_model_sink_stats(w.model, &ms);
			/* The MAPs over what stayed were not sent (fence_judged checked
			 * rejected_calls == 0); the others were. */
			CHECK_EQ(ms.map_calls - maps_before, multi ? 0 : 7);
			struct iovt_extent x;
			uint64_t stayed = base + (multi ? 0 : pos) * 64 * K;
			CHECK(iovt_translate(w.d, stayed, &x) == 0);
			CHECK_EQ(x.gpa, 16 * M1 + round * M1 + (multi ? 0 : pos) * 128 * K);
			converge(&w);
			CHECK(iovt_translate(w.d, stayed, &x) == 0);
			CHECK_EQ(x.gpa, 256 * M1 + round * M1 + (multi ? 0 : pos) * 128 * K);
		}
	}
	/* A guest unmap of part of a merged mapping: the whole goes, the
	 * survivors are re-mapped. The UNMAP fails: the survivors' MAPs would
	 * land on the mapping that stayed and must not be sent. */
	for (unsigned e = 0; e < FAULT_NERRNO; e++, round++) {
		uint64_t base = round * M2;
		CHECK(gs_map(w.gd, base, 300 * M1 + round * M1, 16 * K, IOVT_PERM_RW, GS_LEAF_4K) ==
		      0);
		inval(&w, base, 16 * K);
		CHECK_EQ(fence_judged(&w), 0);
		CHECK(gs_unmap(w.gd, base + 4 * K, 4 * K) == 0);
		/* and a new mapping elsewhere in the same batch: it must still go */
		CHECK(gs_map(w.gd, base + 64 * K, 400 * M1 + round * M1, 4 * K, IOVT_PERM_R, 0) == 0);
		inval(&w, base, 128 * K);
		fault_sink_fail_nth(w.fs, FAULT_UNMAP, 0, err_at(e));
		CHECK_EQ(fence_judged(&w), -err_at(e));
		struct iovt_extent x;
		CHECK(iovt_translate(w.d, base + 4 * K, &x) == 0); /* still held */
		CHECK_EQ(x.size, 16 * K);
		CHECK(iovt_translate(w.d, base + 64 * K, &x) == 0);
		/* the retry fails too */
		fault_sink_fail_nth(w.fs, FAULT_UNMAP, 0, EIO);
		CHECK_EQ(fence_judged(&w), -EIO);
		converge(&w);
		CHECK(iovt_translate(w.d, base + 4 * K, &x) == -ENOENT);
	}
	/* The guest unmaps; the UNMAP fails; then the guest maps the same IOVAs
	 * again before the retry (new invalidation): the pending retry and the new
	 * work meet in one fence. */
	for (unsigned e = 0; e < FAULT_NERRNO; e++, round++) {
		uint64_t base = round * M2;
		map_eight(&w, base, 16 * M1 + round * M1);
		CHECK_EQ(fence_judged(&w), 0);
		CHECK(gs_unmap(w.gd, base, 8 * 64 * K) == 0);
		inval(&w, base, 8 * 64 * K);
		fault_sink_fail_nth(w.fs, FAULT_UNMAP, multi ? 0 : 1, err_at(e));
		CHECK_EQ(fence_judged(&w), -err_at(e));
		map_eight(&w, base, 64 * M1 + round * M1);
		converge(&w);
	}
	printf("fault-unmap (%s): %" PRIu64 " faults injected, all survived (%" PRIu64
	       " fences, %" PRIu64 " failed)\n",
	       multi ? "multi-unmap" : "one mapping per UNMAP", fault_sink_injected(w.fs), w.fences,
	       w.failed_fences);
	*total += fault_sink_injected(w.fs);
	fw_destroy(&w);
}

static void test_unmap(uint64_t seed)
{
	uint64_t total = 0;
	test_unmap_one(true, seed, &total);
	test_unmap_one(false, seed, &total);
	printf("fault-unmap: %" PRIu64 " faults injected, %" PRIu64 " survived\n", total, total);
}

/* ---- fault-partial-unmap: iommufd-style, a prefix of whole mappings goes ---- */

static void test_partial(uint64_t seed)
{
	uint64_t total = 0, partial = 0;
	for (int multi = 1; multi >= 0; multi--) {
		struct fw w;
		fw_init(&w, IOVT_MODEL_IOMMUFD, multi, true, 64 * M2, seed);
		attach(&w, 0);
		unsigned round = 0;
		for (int k = 0; k <= 8; k++) {
			for (unsigned variant = 0; variant < 2; variant++, round++) {
				uint64_t base = round * M2;
				/* 8 mappings with gaps between them (one UNMAP group spans
				 * the gaps on a multi-unmap sink). */
				map_eight(&w, base, 16 * M1 + round * M1);
				CHECK_EQ(fence_judged(&w), 0);
				/* variant 0: all unmapped, even ones re-mapped elsewhere;
				 * variant 1: all unmapped, nothing new. */
				CHECK(gs_unmap(w.gd, base, 8 * 64 * K) == 0);
				if (variant == 0)
					for (unsigned i = 0; i < 8; i += 2)
						CHECK(gs_map(w.gd, base + i * 64 * K,
							     300 * M1 + round * M1 + i * 128 * K,
							     4 * K, IOVT_PERM_R, 0) == 0);
				inval(&w, base, 8 * 64 * K);
				fault_sink_set_partial_prefix(w.fs, k);
				fault_sink_fail_nth(w.fs, FAULT_UNMAP, multi ? 0 : (unsigned)k % 8,
						    err_at((unsigned)k + variant));
				CHECK_EQ(fence_judged(&w), -err_at((unsigned)k + variant));
				converge(&w);
			}
		}
		/* A merged mapping and its neighbours, partial failure of random size,
		 * twice in a row. */
		fault_sink_set_partial_prefix(w.fs, -1);
		for (unsigned i = 0; i < 20; i++, round++) {
			uint64_t base = round * M2;
			CHECK(gs_map(w.gd, base, 200 * M1 + round * M1, 16 * K, IOVT_PERM_RW,
				     GS_LEAF_4K) == 0);
			CHECK(gs_map(w.gd, base + 16 * K, 100 * M1, 4 * K, IOVT_PERM_RW, 0) == 0);
			CHECK(gs_map(w.gd, base + 32 * K, 120 * M1, 4 * K, IOVT_PERM_R, 0) == 0);
			inval(&w, base, 64 * K);
			CHECK_EQ(fence_judged(&w), 0);
			CHECK(gs_unmap(w.gd, base + 4 * K, 20 * K) == 0);
			CHECK(gs_unmap(w.gd, base + 32 * K, 4 * K) == 0);
			inval(&w, base, 64 * K);
			fault_sink_fail_nth(w.fs, FAULT_UNMAP, 0, EIO);
			CHECK_EQ(fence_judged(&w), -EIO);
			fault_sink_fail_nth(w.fs, FAULT_UNMAP, 0, ENOMEM);
			int rc = fence_judged(&w);
			CHECK(rc == -ENOMEM || rc == 0); /* the first may have removed all */
			converge(&w);
		}
		struct fault_stats fst;
		fault_sink_stats(w.fs, &fst);
		printf("fault-partial-unmap (%s): %" PRIu64 " faults injected (%" PRIu64
		       " partial, %" PRIu64 " bytes), all survived\n",
		       multi ? "multi-unmap" : "one mapping per UNMAP", fault_sink_injected(w.fs),
		       fst.partial_unmaps, fst.partial_bytes);
		total += fault_sink_injected(w.fs);
		partial += fst.partial_unmaps;
		fw_destroy(&w);
	}
	printf("fault-partial-unmap: %" PRIu64 " faults injected (%" PRIu64
	       " partial), %" PRIu64 " survived\n",
	       total, partial, total);
}

/* ---- fault-random: random faults, random guest edits, thousands of fences ---- */

static void random_run(uint64_t seed, bool partial, bool multi, enum iovt_model_flavor flavor)
{
	const uint64_t area = 8 * M2; /* 4096 pages judged at every fence */
	const uint64_t data = 128 * M2;
	struct fw w;
	fw_init(&w, flavor, multi, partial, area, seed);
	uint64_t s = seed;
	attach(&w, 0);
	uint64_t nfences = (uint64_t)(10000 * check_scale());
	uint64_t edits = 0, last_gpa = 0;
	double p = 0.1;
	for (uint64_t f = 0; f < nfences; f++) {
		if (f % 64 == 0) {
			const double ps[] = { 0.02, 0.1, 0.3, 0.6 };
			p = ps[gs_rand_below(&s, 4)];
		}
		unsigned nedits = 1 + (unsigned)gs_rand_below(&s, 4);
		for (unsigned i = 0; i < nedits; i++, edits++) {
			uint64_t iova, size;
			if (gs_rand_below(&s, 8) == 0) {
				iova = gs_rand_below(&s, area / M2) * M2;
				size = M2;
			} else {
				iova = gs_rand_below(&s, area / K) * K;
				size = (1 + gs_rand_below(&s, 48)) * K;
				if (iova + size > area)
					size = area - iova;
			}
			if (gs_rand_below(&s, 3) == 0) {
				CHECK(gs_unmap(w.gd, iova, size) == 0);
			} else {
				uint64_t gpa;
				if (size == M2)
					gpa = gs_rand_below(&s, data / M2) * M2;
				else if (gs_rand_below(&s, 2) && last_gpa && last_gpa + size <= data)
					gpa = last_gpa; /* host-contiguous with the last: merged runs */
				else
					gpa = gs_rand_below(&s, (data - size) / K) * K;
				last_gpa = gpa + size;
				uint32_t perm = 1 + (uint32_t)gs_rand_below(&s, 3);
				const uint64_t pol[] = { GS_LEAF_LARGEST, GS_LEAF_4K, GS_LEAF_2M };
				CHECK(gs_map(w.gd, iova, gpa, size, perm, pol[gs_rand_below(&s, 3)]) == 0);
			}
			if (gs_rand_below(&s, 20) == 0)
				CHECK(iovt_invalidate_dsi(w.e, w.did) == 0);
			else
				inval(&w, iova, size);
		}
		fault_sink_set_random(w.fs, p);
		if (gs_rand_below(&s, 16) == 0)
			fault_sink_fail_nth(w.fs, gs_rand_below(&s, 2) ? FAULT_MAP : FAULT_UNMAP,
					    gs_rand_below(&s, 4), err_at((unsigned)gs_rand_below(&s, 5)));
		fence_judged(&w);
		/* Sometimes a fence with no new work: only the retry. */
		if (gs_rand_below(&s, 4) == 0)
			fence_judged(&w);
		if (gs_rand_below(&s, 24) == 0)
			converge(&w);
	}
	converge(&w);
	CHECK_EQ(gs_truth_check(w.gd), 0);
	struct fault_stats fst;
	fault_sink_stats(w.fs, &fst);
	printf("fault-random (%s, %s%s): %" PRIu64 " fences (%" PRIu64 " failed), %" PRIu64
	       " guest edits, %" PRIu64 " converges; faults injected %" PRIu64 " (map %" PRIu64
	       ", unmap %" PRIu64 ", partial %" PRIu64 "), survived %" PRIu64 "; sink calls map %" PRIu64
	       " unmap %" PRIu64 "\n",
	       flavor == IOVT_MODEL_IOMMUFD ? "iommufd" : "type1", multi ? "multi-unmap" : "single",
	       partial ? ", partial" : "", w.fences, w.failed_fences, edits, w.converges,
	       fault_sink_injected(w.fs), fst.injected[FAULT_MAP], fst.injected[FAULT_UNMAP],
	       fst.partial_unmaps, fault_sink_injected(w.fs), fst.calls[FAULT_MAP],
	       fst.calls[FAULT_UNMAP]);
	fw_destroy(&w);
}

/* ---- fault-queue-retry: a queue's own next fence retries ----
 * The PSI + wait on an explicit queue: the fence carries the PSI straight
 * into the domain's sync. A MAP failed there; the queue's next fence, with
 * nothing new posted and no iovt_fence, must retry it (and converge). */
static void test_queue_retry(uint64_t seed)
{
	struct fw w;
	fw_init(&w, IOVT_MODEL_TYPE1, true, false, 4 * M2, seed);
	attach(&w, 0);
	struct iovt_queue *q;
	CHECK(iovt_queue_create(w.e, NULL, &q) == 0);
	for (unsigned i = 0; i < 8; i++)
		CHECK(gs_map(w.gd, i * 64 * K, 16 * M1 + i * 128 * K, 4 * K, IOVT_PERM_RW, GS_LEAF_4K) == 0);
	CHECK(iovt_queue_psi(q, w.did, 0, 9, false) == 0); /* 512 pages: all eight */
	fault_sink_fail_nth(w.fs, FAULT_MAP, 3, EIO);
	CHECK_EQ(iovt_queue_fence(q), -EIO);
	CHECK_EQ(iovt_model_sink_count(w.model), 7);
	CHECK_EQ(iovt_queue_fence(q), 0); /* the retry: nothing posted since */
	CHECK_EQ(iovt_model_sink_count(w.model), 8);
	check_truth(&w);
	iovt_queue_destroy(q);
	fw_destroy(&w);
	printf("fault queue-retry: a queue's next fence retried its failed MAP\n");
}

/* ---- vec-enomem: the sync's scratch vectors cannot grow ---- */

/* The hook fails the vec_fail_at-th growth since the round began (0: none). */
static uint64_t vec_growths, vec_fail_at, vec_failures;

static bool vec_fault(size_t bytes)
{
	(void)bytes;
	if (++vec_growths != vec_fail_at)
		return false;
	vec_failures++;
	return true;
}

/* A fence judged as fence_judged judges one (record == device, nothing
 * rejected), with -ENOMEM allowed only when a growth failed during it; then
 * device == guest, at once or after the next fence, which retries what
 * failed with no new invalidation (and cannot fail: one growth a round
 * fails). Every change the test makes is invalidated before its fence. */
static void fence_vec(struct fw *w, uint64_t *enomem)
{
	uint64_t before = vec_failures;
	int rc = iovt_fence(w->e);
	w->fences++;
	if (vec_failures == before)
		CHECK_EQ(rc, 0);
	else
		CHECK(rc == 0 || rc == -ENOMEM);
	check_fence_state(w, rc ? "after a fence out of memory" : "after a fence");
	if (rc) {
		(*enomem)++;
		w->failed_fences++;
		CHECK_EQ(iovt_fence(w->e), 0);
		w->fences++;
		check_fence_state(w, "after the retry");
	}
	check_truth(w);
}

/*
 * One round on a fresh engine (its thread's queue starts with empty
 * vectors, so each first use grows one), with the fail_at-th growth
 * failing: the sync's one-page path (a page mapped, then unmapped), its
 * small path (a strict guest's buffer in pieces, mapped then flipped), its
 * general path (80 one-page runs in one 2 MiB PSI, more than a first
 * growth holds, mapped then unmapped), a DSI, and the last pieces
 * unmapped, each fence judged by fence_vec. Returns the growths the round
 * asked for.
 */
static uint64_t vec_round(uint64_t seed, bool multi, uint64_t fail_at, uint64_t *enomem)
{
	struct fw w;
	fw_init(&w, multi ? IOVT_MODEL_IOMMUFD : IOVT_MODEL_TYPE1, multi, false, 4 * M2, seed);
	attach(&w, 0);
	vec_growths = 0;
	vec_fail_at = fail_at;
	iovt_vec_fault = vec_fault;
	/* one page, mapped then unmapped: the one-page path (sync_page), first,
	 * while its plan's vectors have never grown */
	CHECK(gs_map(w.gd, 3 * M2, 40 * M1, K, IOVT_PERM_RW, GS_LEAF_4K) == 0);
	inval(&w, 3 * M2, K);
	fence_vec(&w, enomem);
	CHECK(gs_unmap(w.gd, 3 * M2, K) == 0);
	inval(&w, 3 * M2, K);
	fence_vec(&w, enomem);
	/* small: three pieces of 3, 5 and 2 pages, then the middle ones read-only */
	CHECK(gs_map(w.gd, 0, 16 * M1, 3 * K, IOVT_PERM_RW, GS_LEAF_4K) == 0);
	CHECK(gs_map(w.gd, 3 * K, 24 * M1, 5 * K, IOVT_PERM_RW, GS_LEAF_4K) == 0);
	CHECK(gs_map(w.gd, 8 * K, 20 * M1, 2 * K, IOVT_PERM_RW, GS_LEAF_4K) == 0);
	inval(&w, 0, 10 * K);
	fence_vec(&w, enomem);
	CHECK(gs_map(w.gd, 2 * K, 16 * M1 + 2 * K, K, IOVT_PERM_R, GS_LEAF_4K) == 0);
	CHECK(gs_map(w.gd, 3 * K, 24 * M1, 3 * K, IOVT_PERM_R, GS_LEAF_4K) == 0);
	inval(&w, 2 * K, 4 * K);
	fence_vec(&w, enomem);
	/* general: 80 pages, none contiguous in GPA with the next */
	for (uint64_t i = 0; i < 80; i++)
		CHECK(gs_map(w.gd, M2 + i * K, 32 * M1 + 2 * i * K, K, IOVT_PERM_RW, GS_LEAF_4K) == 0);
	inval(&w, M2, M2);
	fence_vec(&w, enomem);
	CHECK(gs_unmap(w.gd, M2, 40 * K) == 0);
	inval(&w, M2, M2);
	fence_vec(&w, enomem);
	CHECK(gs_unmap(w.gd, M2 + 40 * K, 40 * K) == 0);
	CHECK(iovt_invalidate_dsi(w.e, w.did) == 0);
	fence_vec(&w, enomem);
	CHECK(gs_unmap(w.gd, 0, 10 * K) == 0);
	inval(&w, 0, 10 * K);
	fence_vec(&w, enomem);
	iovt_vec_fault = NULL;
	uint64_t asked = vec_growths;
	CHECK_EQ(iovt_model_sink_count(w.model), 0);
	w.converges++;
	fw_destroy(&w);
	return asked;
}

static void test_vec_enomem(uint64_t seed)
{
	for (int multi = 0; multi <= 1; multi++) {
		uint64_t enomem = 0, failures = vec_failures;
		const uint64_t growths = vec_round(seed, multi, 0, &enomem);
		CHECK_EQ(enomem, 0);
		CHECK(growths >= 4); /* runs, old, maps, unmaps at least */
		for (uint64_t k = 1; k <= growths; k++) {
			uint64_t before = vec_failures;
			vec_round(seed + k, multi, k, &enomem);
			CHECK_EQ(vec_failures, before + 1); /* growth k came, as in the clean round */
		}
		/* a failed growth is not always a failed fence (the small path
		 * falls back to the general one, which may then grow), but most are */
		CHECK(enomem >= growths / 2);
		printf("fault-vec-enomem (%s): %" PRIu64 " growths a round, each failed once: %" PRIu64
		       " failed fences, %" PRIu64 " faults, every round converged\n",
		       multi ? "multi-unmap" : "single unmaps", growths, enomem, vec_failures - failures);
	}
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "all";
	uint64_t seed = check_pick_seed("fault");
	iovt_thread_register();
	bool all = !strcmp(mode, "all");
	bool known = false;
	if (all || !strcmp(mode, "map"))
		known = true, test_map(seed);
	if (all || !strcmp(mode, "unmap"))
		known = true, test_unmap(seed);
	if (all || !strcmp(mode, "partial"))
		known = true, test_partial(seed);
	if (all || !strcmp(mode, "random")) {
		known = true;
		random_run(seed, false, true, IOVT_MODEL_TYPE1);
		random_run(seed + 1, false, false, IOVT_MODEL_TYPE1);
	}
	if (all || !strcmp(mode, "random-partial")) {
		known = true;
		random_run(seed + 2, true, true, IOVT_MODEL_IOMMUFD);
		random_run(seed + 3, true, false, IOVT_MODEL_IOMMUFD);
	}
	if (all || !strcmp(mode, "queue-retry"))
		known = true, test_queue_retry(seed);
	if (all || !strcmp(mode, "vec-enomem"))
		known = true, test_vec_enomem(seed);
	CHECK(known);
	iovt_thread_unregister();
	return 0;
}
