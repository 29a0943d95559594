/* SPDX-License-Identifier: MIT */
/*
 * hostile-race: a hostile guest rewrites its VT-d tables while fences (PSI,
 * DSI) and translations walk them (written by the twenty-third session's
 * review; no defect found). One editor thread writes, as fast as it can, to
 * the entries on the mapped paths of four domains (48- and 39-bit; two with
 * a MAP notifier on a strict locked model, two answering from the IOTLB):
 * absent entries, PS flips, a table pointing at itself, at an ancestor or at
 * another table, random values, leaves shifted to break a run, large leaves,
 * permission flips, targets in a hole or past RAM; three threads post PSIs
 * and DSIs and fence (iovt_fence; RACE_QUEUES: an inline and a hand-off
 * queue too); one translates random IOVAs. A watchdog fails a stall.
 * Checked throughout: every fence's code is a documented one, the model
 * rejects no call (no MAP over a mapping, no UNMAP bisecting one), every
 * translation lies inside one RAM region with the matching hva. After the
 * editor stops and a DSI + fence (repeated while the walk budget still
 * runs out): each domain equals an independent walk of the final tables,
 * page by page (skipped where that walk itself runs out of budget: the
 * engine may then leave a window unmapped, as iovt.h says).
 * Usage: test_hostile_race [ROUNDS]; RACE_SECONDS (all rounds; default 60),
 * RACE_BUDGET (walk budget), RACE_QUEUES, IOVT_SEED.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "guestsim.h"
#include "iovt.h"
#include "iovt_model.h"
#include "locked_model.h"
#include "watchdog.h"

CHECK_SEED_STORAGE;

#define K 0x1000ull
#define M2 0x200000ull
#define G1 0x40000000ull
#define REGION_SIZE (64 * M2)
#define TABLE_BYTES (32 * M2)
#define DATA_GPA 0x400000ull
static uint64_t BUDGET = 1ull << 20;
#define NDOM 4
#define NIOVA 48
#define MAXSLOT 1024

struct slot {
	uint64_t gpa, orig, table;
	unsigned level;
	unsigned nanc;
	uint64_t anc[5];
};

struct dom {
	struct gs_domain *gd;
	struct iovt_domain *d;
	struct iovt_notifier *n;
	struct locked_model lm;
	bool shadow;
	uint16_t did;
	unsigned aw, levels;
	uint64_t iovas[NIOVA];
	struct slot slots[MAXSLOT];
	unsigned nslots;
	uint64_t tables[256];
	unsigned ntables;
};

static struct guestsim *gs;
static struct iovt_engine *e;
static struct dom doms[NDOM];
static atomic_bool stop_edit, stop_all;
static atomic_ulong n_edits, n_fences, n_fence_err, n_tr, n_tr_ok;
static double secs = 60;
static struct iovt_queue *queues[3];

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void add_slot(struct dom *m, uint64_t gpa, unsigned level, const uint64_t *anc, unsigned nanc)
{
	for (unsigned i = 0; i < m->nslots; i++)
		if (m->slots[i].gpa == gpa)
			return;
	if (m->nslots >= MAXSLOT)
		return;
	struct slot *s = &m->slots[m->nslots++];
	s->gpa = gpa;
	s->orig = gs_read_pte(gs, gpa);
	s->table = gpa & ~(K - 1);
	s->level = level;
	s->nanc = nanc;
	memcpy(s->anc, anc, nanc * 8);
	bool seen = false;
	for (unsigned i = 0; i < m->ntables; i++)
		seen |= m->tables[i] == s->table;
	if (!seen && m->ntables < 256)
		m->tables[m->ntables++] = s->table;
}

static void dom_setup(struct dom *m, uint16_t did, unsigned aw, bool shadow, uint64_t *rng)
{
	m->did = did;
	m->aw = aw;
	m->levels = aw == 39 ? 3 : 4;
	m->shadow = shadow;
	m->gd = gs_domain_create(gs, aw, true, true);
	CHECK(m->gd);
	struct iovt_domain_config dc = { .did = did, .root_gpa = gs_domain_root(m->gd), .addr_width = aw,
					 .allow_2m = true, .allow_1g = true };
	CHECK(iovt_domain_create(e, &dc, &m->d) == 0);
	if (shadow) {
		struct iovt_model_config mc = { .flavor = IOVT_MODEL_TYPE1, .multi_unmap = true };
		struct iovt_sink s;
		locked_model_init(&m->lm, &mc, 0, &s);
		CHECK(iovt_notifier_attach(m->d, IOVT_NOTIFY_IOTLB_EVENTS, &s, &m->n) == 0);
	}
	/* runs of contiguous 4K pages (merge_4k), some 2M leaves, in a few GiB */
	for (int i = 0; i < NIOVA; i++) {
		uint64_t iova = gs_rand_below(rng, 4 * G1 / M2) * M2;
		if (i % 6 == 5) {
			m->iovas[i] = iova;
			CHECK(gs_map(m->gd, iova, DATA_GPA + gs_rand_below(rng, 8) * M2, M2, IOVT_PERM_RW, GS_LEAF_2M) == 0);
			continue;
		}
		uint64_t pg = gs_rand_below(rng, 480), n = 1 + gs_rand_below(rng, 32);
		iova += pg * K;
		m->iovas[i] = iova;
		CHECK(gs_map(m->gd, iova, DATA_GPA + gs_rand_below(rng, 4096) * K, n * K,
			     1 + gs_rand_below(rng, 3), GS_LEAF_4K) == 0);
	}
	for (int i = 0; i < NIOVA; i++) {
		uint64_t anc[5];
		unsigned nanc = 0;
		for (unsigned l = m->levels; l >= 1; l--) {
			uint64_t p = gs_pte_gpa(m->gd, m->iovas[i], l);
			if (!p)
				break;
			add_slot(m, p, l, anc, nanc);
			/* neighbours in the leaf table (runs) */
			if (l == 1)
				for (int k = 1; k < 4; k++)
					if (((p + 8 * k) & (K - 1)) != 0)
						add_slot(m, p + 8 * k, l, anc, nanc);
			anc[nanc++] = p & ~(K - 1);
		}
	}
	CHECK(iovt_invalidate_dsi(e, did) == 0);
	int rc0 = iovt_fence(e);
	CHECK(rc0 == 0 || rc0 == -E2BIG);
}

static uint64_t rejected(struct dom *m)
{
	struct iovt_model_stats ms;
	pthread_mutex_lock(&m->lm.lock);
	iovt_model_sink_stats(m->lm.model, &ms);
	pthread_mutex_unlock(&m->lm.lock);
	return ms.rejected_calls;
}

static void *editor(void *arg)
{
	uint64_t r = (uint64_t)(uintptr_t)arg;
	iovt_thread_register();
	watchdog_expect(0, "editor");
	while (!atomic_load(&stop_edit)) {
		watchdog_progress(0);
		struct dom *m = &doms[gs_rand_below(&r, NDOM)];
		struct slot *s = &m->slots[gs_rand_below(&r, m->nslots)];
		uint64_t v = s->orig;
		uint64_t op = gs_rand_below(&r, 26);
		switch (op > 13 ? 0 : op) {
		case 0: case 1: case 2: v = s->orig; break;
		case 3: v = 0; break;
		case 4: v = s->orig ^ (1ull << 7); break; /* PS flip */
		case 5: v = s->table | 3; break;          /* self */
		case 6: v = s->nanc ? s->anc[gs_rand_below(&r, s->nanc)] | 3 : s->table | 3; break;
		case 7: v = gs_rand(&r) & ((1ull << 31) - 1); break;
		case 8: v = gs_rand(&r); break;
		case 9: v = s->orig + K * (1 + gs_rand_below(&r, 3)); break; /* break a run / shift */
		case 10: v = m->tables[gs_rand_below(&r, m->ntables)] | (1 + gs_rand_below(&r, 3)); break;
		case 11: v = (DATA_GPA & ~(M2 - 1)) | (1ull << 7) | 3; break; /* 2M/1G-ish leaf */
		case 12: v = s->orig & ~3ull; v |= gs_rand_below(&r, 4); break; /* perm flip */
		default: v = (s->orig & ~0xfffull) + (G1 << gs_rand_below(&r, 4)) + 3; break; /* outside RAM / hole */
		}
		gs_write_pte(gs, s->gpa, v);
		/* sometimes a random entry of a table (off path) */
		if (gs_rand_below(&r, 4) == 0) {
			uint64_t t = m->tables[gs_rand_below(&r, m->ntables)];
			uint64_t val;
			switch (gs_rand_below(&r, 4)) {
			case 0: val = 0; break;
			case 1: val = gs_rand(&r) & ((64ull << 20) - 1); break; /* data area */
			case 2: val = gs_rand(&r) & ~3ull; break;               /* not present */
			default: val = (DATA_GPA + gs_rand_below(&r, 4096) * K) | 3; break;
			}
			gs_write_pte(gs, t + 8 * gs_rand_below(&r, 512), val);
		}
		atomic_fetch_add_explicit(&n_edits, 1, memory_order_relaxed);
	}
	/* settle: most slots back to what they were, then a few last hostile edits */
	for (int i = 0; i < NDOM; i++)
		for (unsigned k = 0; k < doms[i].nslots; k++)
			if (gs_rand_below(&r, 10) < 8)
				gs_write_pte(gs, doms[i].slots[k].gpa, doms[i].slots[k].orig);
	for (int j = 0; j < 20; j++) {
		struct dom *m = &doms[gs_rand_below(&r, NDOM)];
		struct slot *s = &m->slots[gs_rand_below(&r, m->nslots)];
		uint64_t v;
		switch (gs_rand_below(&r, 5)) {
		case 0: v = s->table | 3; break;
		case 1: v = s->orig ^ (1ull << 7); break;
		case 2: v = s->orig + K; break;
		case 3: v = 0; break;
		default: v = gs_rand(&r) & ((1ull << 31) - 1); break;
		}
		gs_write_pte(gs, s->gpa, v);
	}
	watchdog_idle(0);
	iovt_thread_unregister();
	return NULL;
}

static void check_fence_rc(int rc)
{
	if (!(rc == 0 || rc == -EFAULT || rc == -ELOOP || rc == -E2BIG || rc == -ENOSPC)) {
		fprintf(stderr, "fence rc %d\n", rc);
		CHECK(0);
	}
}

static void check_books(void)
{
	for (int i = 0; i < NDOM; i++) {
		struct dom *m = &doms[i];
		if (!m->shadow)
			continue;
		CHECK_EQ(rejected(m), 0);
	}
}

static void *invalidator(void *arg)
{
	uintptr_t id = (uintptr_t)arg;
	uint64_t r = 0x1234567ull * (id + 1) ^ check_seed;
	iovt_thread_register();
	watchdog_expect(1 + id, "invalidator");
	while (!atomic_load(&stop_all)) {
		watchdog_progress(1 + id);
		int burst = 1 + gs_rand_below(&r, 4);
		for (int b = 0; b < burst; b++) {
			struct dom *m = &doms[gs_rand_below(&r, NDOM)];
			struct iovt_queue *q = queues[id];
			if (gs_rand_below(&r, 5) == 0) {
				CHECK((q ? iovt_queue_dsi(q, m->did) : iovt_invalidate_dsi(e, m->did)) == 0);
			} else if (q) {
				uint64_t iova = gs_rand_below(&r, 4) ? m->iovas[gs_rand_below(&r, NIOVA)] :
								       gs_rand(&r) & ((1ull << m->aw) - 1);
				unsigned am = gs_rand_below(&r, 3) ? gs_rand_below(&r, 10) : gs_rand_below(&r, 28);
				int rc = iovt_queue_psi(q, m->did, iova & ~(K - 1), am, gs_rand_below(&r, 2));
				CHECK(rc == 0 || rc == -EINVAL);
			} else {
				uint64_t iova = gs_rand_below(&r, 4) ? m->iovas[gs_rand_below(&r, NIOVA)] :
								       gs_rand(&r) & ((1ull << m->aw) - 1);
				unsigned am = gs_rand_below(&r, 3) ? gs_rand_below(&r, 10) : gs_rand_below(&r, 28);
				int rc = iovt_invalidate_psi(e, m->did, iova & ~(K - 1), am, gs_rand_below(&r, 2));
				CHECK(rc == 0 || rc == -EINVAL);
			}
		}
		struct iovt_stats a, b;
		iovt_stats_get(e, &a);
		int rc = queues[id] ? iovt_queue_fence(queues[id]) : iovt_fence(e);
		iovt_stats_get(e, &b);
		check_fence_rc(rc);
		atomic_fetch_add(&n_fences, 1);
		if (rc)
			atomic_fetch_add(&n_fence_err, 1);
		check_books();
	}
	watchdog_idle(1 + id);
	iovt_thread_unregister();
	return NULL;
}

static void check_extent_in_ram(const struct iovt_extent *x, uint64_t iova)
{
	CHECK(x->iova <= iova && iova - x->iova < x->size);
	CHECK(x->size && !(x->size & (K - 1)) && !(x->iova & (K - 1)));
	CHECK(x->perm && !(x->perm & ~3u));
	void *h0 = gs_hva(gs, x->gpa), *h1 = gs_hva(gs, x->gpa + x->size - 1);
	if (!h0 || !h1 || (char *)h1 - (char *)h0 != (long)(x->size - 1) || x->hva != (uint64_t)(uintptr_t)h0) {
		fprintf(stderr, "translate %#llx: extent iova %#llx size %#llx gpa %#llx hva %#llx not in RAM\n",
			(unsigned long long)iova, (unsigned long long)x->iova, (unsigned long long)x->size,
			(unsigned long long)x->gpa, (unsigned long long)x->hva);
		CHECK(0);
	}
}

static void *translator(void *arg)
{
	uint64_t r = (uint64_t)(uintptr_t)arg;
	iovt_thread_register();
	watchdog_expect(4, "translator");
	while (!atomic_load(&stop_all)) {
		watchdog_progress(4);
		struct dom *m = &doms[gs_rand_below(&r, NDOM)];
		uint64_t iova = m->iovas[gs_rand_below(&r, NIOVA)] + (gs_rand_below(&r, 64) - 8) * K;
		if (gs_rand_below(&r, 8) == 0)
			iova = gs_rand(&r);
		iova &= (1ull << m->aw) - 1;
		iova |= gs_rand_below(&r, K);
		struct iovt_extent x;
		int rc = iovt_translate(m->d, iova, &x);
		if (!(rc == 0 || rc == -ENOENT || rc == -EFAULT || rc == -ELOOP || rc == -E2BIG)) {
			fprintf(stderr, "translate rc %d\n", rc);
			CHECK(0);
		}
		if (rc == 0) {
			check_extent_in_ram(&x, iova);
			atomic_fetch_add_explicit(&n_tr_ok, 1, memory_order_relaxed);
		}
		atomic_fetch_add_explicit(&n_tr, 1, memory_order_relaxed);
	}
	watchdog_idle(4);
	iovt_thread_unregister();
	return NULL;
}

/* ---- final comparison ---- */
struct walk_cmp {
	struct dom *m;
	uint64_t pages, bad;
};

static int wc_leaf(void *arg, const struct vtd_leaf *l)
{
	struct walk_cmp *c = arg;
	for (uint64_t off = 0; off < l->size; off += K) {
		uint64_t iova = l->iova + off, gpa = l->gpa + off;
		if (!gs_hva(gs, gpa))
			continue;
		struct iovt_extent x;
		c->pages++;
		if (c->m->shadow) {
			if (!locked_model_find(&c->m->lm, iova, &x) || x.gpa + (iova - x.iova) != gpa ||
			    x.perm != l->perm) {
				if (c->bad++ < 5)
					fprintf(stderr, "did %u: walk page %#llx->%#llx p%u, model differs\n",
						c->m->did, (unsigned long long)iova, (unsigned long long)gpa, l->perm);
			}
		}
		int rc = iovt_translate(c->m->d, iova, &x);
		if (rc || x.gpa + (iova - x.iova) != gpa || x.perm != l->perm) {
			if (c->bad++ < 5)
				fprintf(stderr, "did %u: walk page %#llx->%#llx p%u, translate rc %d gpa %#llx p%u\n",
					c->m->did, (unsigned long long)iova, (unsigned long long)gpa, l->perm, rc,
					(unsigned long long)(x.gpa + (iova - x.iova)), x.perm);
		}
	}
	return 0;
}

static int wc_error(void *arg, uint64_t iova, uint64_t size, enum vtd_error why)
{
	struct walk_cmp *c = arg;
	(void)why;
	struct iovt_extent x;
	if (c->m->shadow &&
	    (locked_model_find(&c->m->lm, iova, &x) || locked_model_find(&c->m->lm, iova + size - K, &x)))
		if (c->bad++ < 5)
			fprintf(stderr, "did %u: error span %#llx+%#llx (why %d) mapped in model\n", c->m->did,
				(unsigned long long)iova, (unsigned long long)size, why);
	return 0;
}

static void final_check(struct dom *m)
{
	struct vtd_walk_params p;
	gs_domain_params(m->gd, &p);
	p.host_width = 48;
	p.budget = BUDGET;
	struct walk_cmp c = { m, 0, 0 };
	struct vtd_walk_stats ws = { 0 };
	static const struct vtd_walk_ops ops = { wc_leaf, wc_error };
	int rc = vtd_walk(gs_guest_ram(gs), &p, &ops, &c, &ws);
	CHECK_EQ(rc, 0);
	if (ws.errors[VTD_ERR_BUDGET]) {
		printf(" did %u: final tables exceed the budget: equality skipped\n", m->did);
		return;
	}
	if (m->shadow) {
		struct iovt_model_stats ms;
		iovt_model_sink_stats(m->lm.model, &ms);
		if (ms.bytes_mapped / K != c.pages)
			fprintf(stderr, "did %u: model pages %llu walk pages %llu\n", m->did,
				(unsigned long long)(ms.bytes_mapped / K), (unsigned long long)c.pages);
		CHECK_EQ(ms.bytes_mapped / K, c.pages);
		CHECK_EQ(ms.rejected_calls, 0);
		struct iovt_stats st;
		iovt_domain_stats_get(m->d, &st);
		CHECK_EQ(st.extents, ms.mappings);
	}
	CHECK_EQ(c.bad, 0);
	/* translate of unmapped pages near the IOVAs: must be not mapped by the walk */
	for (int i = 0; i < NIOVA; i++)
		for (int k = -4; k < 40; k++) {
			uint64_t iova = (m->iovas[i] + k * K) & ((1ull << m->aw) - 1);
			struct iovt_extent x;
			int trc = iovt_translate(m->d, iova, &x);
			struct vtd_walk_params q = p;
			q.first = iova;
			q.last = iova + K - 1;
			struct walk_cmp c2 = { m, 0, 0 };
			struct vtd_walk_stats ws2 = { 0 };
			vtd_walk(gs_guest_ram(gs), &q, &ops, &c2, &ws2);
			if (!c2.pages && trc == 0) {
				fprintf(stderr, "did %u: %#llx translates (gpa %#llx) but walk says unmapped\n",
					m->did, (unsigned long long)iova, (unsigned long long)x.gpa);
				CHECK(0);
			}
			CHECK_EQ(c2.bad, 0);
		}
}

int main(int argc, char **argv)
{
	uint64_t rng = check_pick_seed("race");
	if (getenv("RACE_BUDGET"))
		BUDGET = strtoull(getenv("RACE_BUDGET"), NULL, 0);
	const char *s = getenv("RACE_SECONDS");
	if (s)
		secs = atof(s);
	int rounds = argc > 1 ? atoi(argv[1]) : 1;
	iovt_thread_register();
	watchdog_start("race", 30.0);
	for (int round = 0; round < rounds; round++) {
		gs = gs_create(2, REGION_SIZE, TABLE_BYTES);
		CHECK(gs);
		struct iovt_config cfg = { .walk_budget = BUDGET, .host_addr_width = 48 };
		CHECK(iovt_engine_create(&cfg, &e) == 0);
		for (unsigned i = 0; i < 2; i++) {
			const struct gs_region *r = gs_region(gs, i);
			CHECK(iovt_guest_ram_add(e, r->gpa, r->size, r->hva, NULL) == 0);
		}
		memset(doms, 0, sizeof(doms));
		bool useq = getenv("RACE_QUEUES") != NULL;
		if (useq) {
			CHECK_EQ(iovt_workers_start(e, 1), 0);
			for (int i = 1; i < 3; i++) {
				struct iovt_queue_config qc = { .handoff = i == 2 };
				CHECK_EQ(iovt_queue_create(e, &qc, &queues[i]), 0);
			}
		}
		dom_setup(&doms[0], 5, 48, true, &rng);
		dom_setup(&doms[1], 6, 39, true, &rng);
		dom_setup(&doms[2], 7, 48, false, &rng);
		dom_setup(&doms[3], 8, 39, false, &rng);
		atomic_store(&stop_edit, false);
		atomic_store(&stop_all, false);
		pthread_t ted, tinv[3], ttr;
		CHECK(pthread_create(&ted, NULL, editor, (void *)(uintptr_t)gs_rand(&rng)) == 0);
		for (uintptr_t i = 0; i < 3; i++)
			CHECK(pthread_create(&tinv[i], NULL, invalidator, (void *)i) == 0);
		CHECK(pthread_create(&ttr, NULL, translator, (void *)(uintptr_t)gs_rand(&rng)) == 0);
		double until = now_s() + secs / rounds;
		while (now_s() < until) {
			struct timespec ts = { 0, 50 * 1000 * 1000 };
			nanosleep(&ts, NULL);
		}
		atomic_store(&stop_edit, true);
		pthread_join(ted, NULL);
		/* the guest stops; invalidators still run a bit on the final tables */
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		nanosleep(&ts, NULL);
		atomic_store(&stop_all, true);
		for (int i = 0; i < 3; i++)
			pthread_join(tinv[i], NULL);
		pthread_join(ttr, NULL);
		if (useq) {
			for (int i = 1; i < 3; i++) {
				iovt_queue_destroy(queues[i]);
				queues[i] = NULL;
			}
			iovt_workers_stop(e);
		}
		for (int i = 0; i < NDOM; i++)
			CHECK(iovt_invalidate_dsi(e, doms[i].did) == 0);
		int frc = iovt_fence(e);
		check_fence_rc(frc);
		printf("final fence rc %d\n", frc);
		for (int it = 0; it < 64; it++) {
			struct iovt_stats a0, a1;
			iovt_stats_get(e, &a0);
			for (int i = 0; i < NDOM; i++)
				CHECK(iovt_invalidate_dsi(e, doms[i].did) == 0);
			frc = iovt_fence(e);
			iovt_stats_get(e, &a1);
			if (a1.errors[IOVT_ERR_WALK_BUDGET] == a0.errors[IOVT_ERR_WALK_BUDGET])
				break;
		}
		if (frc == -ENOSPC)
			printf("final fence -ENOSPC: extents cap hit (skipping equality)\n");
		else
			for (int i = 0; i < NDOM; i++)
				final_check(&doms[i]);
		for (int i = 0; i < NDOM; i++) {
			struct iovt_stats st;
			iovt_domain_stats_get(doms[i].d, &st);
			printf(" did %u extents %llu\n", doms[i].did, (unsigned long long)st.extents);
		}
		printf("round %d: edits %lu fences %lu (err %lu) translates %lu (ok %lu)\n", round,
		       atomic_load(&n_edits), atomic_load(&n_fences), atomic_load(&n_fence_err),
		       atomic_load(&n_tr), atomic_load(&n_tr_ok));
		fflush(stdout);
		iovt_engine_destroy(e);
		for (int i = 0; i < NDOM; i++)
			if (doms[i].shadow)
				locked_model_fini(&doms[i].lm);
		gs_destroy(gs);
	}
	watchdog_stop();
	iovt_thread_unregister();
	printf("race: ok\n");
	return 0;
}
