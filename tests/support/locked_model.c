/* SPDX-License-Identifier: MIT */
#include "locked_model.h"

#include <errno.h>
#include <sched.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"

#define K 0x1000ull

static void log_call(struct locked_model *lm, struct locked_model_event ev)
{
	lm->calls++;
	if (lm->log_n < lm->log_cap)
		lm->log[lm->log_n++] = ev;
}

static int lm_map(void *ctx, const struct iovt_extent *m)
{
	struct locked_model *lm = ctx;
	pthread_mutex_lock(&lm->lock);
	log_call(lm, (struct locked_model_event){ IOVT_EVENT_MAP, m->iova, m->size, m->gpa, m->perm });
	int rc = lm->inner.ops->map(lm->inner.ctx, m);
	pthread_mutex_unlock(&lm->lock);
	return rc;
}

static int lm_unmap(void *ctx, uint64_t iova, uint64_t size, uint64_t *unmapped)
{
	struct locked_model *lm = ctx;
	pthread_mutex_lock(&lm->lock);
	log_call(lm, (struct locked_model_event){ IOVT_EVENT_UNMAP, iova, size, 0, 0 });
	int rc = lm->inner.ops->unmap(lm->inner.ctx, iova, size, unmapped);
	pthread_mutex_unlock(&lm->lock);
	return rc;
}

static int lm_unmap_all(void *ctx, uint64_t *unmapped)
{
	struct locked_model *lm = ctx;
	pthread_mutex_lock(&lm->lock);
	log_call(lm, (struct locked_model_event){ IOVT_EVENT_UNMAP, 0, UINT64_MAX, 0, 0 });
	int rc = lm->inner.ops->unmap_all(lm->inner.ctx, unmapped);
	pthread_mutex_unlock(&lm->lock);
	return rc;
}

static const struct iovt_sink_ops lm_ops = { lm_map, lm_unmap, lm_unmap_all, NULL };
static const struct iovt_sink_ops lm_ops_no_all = { lm_map, lm_unmap, NULL, NULL };

void locked_model_init(struct locked_model *lm, const struct iovt_model_config *cfg,
		       unsigned log_cap, struct iovt_sink *out)
{
	*lm = (struct locked_model){ .log_cap = log_cap };
	pthread_mutex_init(&lm->lock, NULL);
	CHECK(iovt_model_sink_create(cfg, &lm->model, &lm->inner) == 0);
	if (log_cap)
		CHECK((lm->log = calloc(log_cap, sizeof(*lm->log))) != NULL);
	*out = (struct iovt_sink){ &lm_ops, lm, lm->inner.caps, "locked-model" };
	if (!lm->inner.ops->unmap_all) {
		out->ops = &lm_ops_no_all;
		out->caps.flags &= ~IOVT_SINK_UNMAP_ALL;
	}
}

void locked_model_fini(struct locked_model *lm)
{
	struct iovt_model_stats ms;
	iovt_model_sink_stats(lm->model, &ms);
	CHECK_EQ(ms.rejected_calls, 0);
	iovt_model_sink_destroy(lm->model);
	pthread_mutex_destroy(&lm->lock);
	free(lm->log);
	lm->log = NULL;
}

bool locked_model_find(struct locked_model *lm, uint64_t iova, struct iovt_extent *out)
{
	pthread_mutex_lock(&lm->lock);
	bool held = iovt_model_sink_find(lm->model, iova, out);
	pthread_mutex_unlock(&lm->lock);
	return held;
}

size_t locked_model_count(struct locked_model *lm)
{
	pthread_mutex_lock(&lm->lock);
	size_t n = iovt_model_sink_count(lm->model);
	pthread_mutex_unlock(&lm->lock);
	return n;
}

uint64_t locked_model_calls(struct locked_model *lm)
{
	pthread_mutex_lock(&lm->lock);
	uint64_t n = lm->calls;
	pthread_mutex_unlock(&lm->lock);
	return n;
}

unsigned locked_model_events(struct locked_model *lm)
{
	pthread_mutex_lock(&lm->lock);
	unsigned n = lm->log_n;
	pthread_mutex_unlock(&lm->lock);
	return n;
}

struct locked_model_event locked_model_event(struct locked_model *lm, unsigned i)
{
	pthread_mutex_lock(&lm->lock);
	CHECK(i < lm->log_n);
	struct locked_model_event ev = lm->log[i];
	pthread_mutex_unlock(&lm->lock);
	return ev;
}

uint64_t agree_check(const struct agree_target *t, uint64_t lo, uint64_t hi, const char *who)
{
	uint64_t n = 0;
	for (uint64_t a = lo & ~(K - 1); a < hi; a += K, n++) {
		uint64_t gpa = 0;
		uint32_t perm = 0;
		struct iovt_extent m, r;
		pthread_mutex_lock(t->gs_lock);
		bool mapped = gs_truth_lookup(t->gd, a, &gpa, &perm);
		uint64_t hva = mapped ? (uint64_t)(uintptr_t)gs_hva(t->gs, gpa) : 0;
		pthread_mutex_unlock(t->gs_lock);
		bool held = locked_model_find(t->lm, a, &m);
		int rc = iovt_translate(t->d, a, &r);
		CHECK(rc == 0 || rc == -ENOENT);
		if (mapped != held || held != (rc == 0) ||
		    (held && (m.gpa + (a - m.iova) != gpa || m.perm != perm)))
			fprintf(stderr,
				"%s: iova 0x%" PRIx64 ": guest %d (gpa 0x%" PRIx64 " perm %u) device %d"
				" (gpa 0x%" PRIx64 " perm %u) record %d\n",
				who, a, mapped, gpa, perm, held, held ? m.gpa + (a - m.iova) : 0,
				held ? m.perm : 0, rc == 0);
		CHECK(mapped == held);
		CHECK(held == (rc == 0));
		if (!held)
			continue;
		CHECK_EQ(m.gpa + (a - m.iova), gpa);
		CHECK_EQ(m.perm, perm);
		CHECK_EQ(m.hva + (a - m.iova), hva);
		CHECK(r.iova == m.iova && r.size == m.size && r.gpa == m.gpa && r.hva == m.hva &&
		      r.perm == m.perm);
	}
	return n;
}

struct iovt_engine *conc_engine(struct guestsim *gs)
{
	const struct gs_region *r = gs_region(gs, 0);
	struct iovt_engine *e;
	CHECK(iovt_engine_create(NULL, &e) == 0);
	CHECK(iovt_guest_ram_add(e, r->gpa, r->size, r->hva, NULL) == 0);
	return e;
}

struct gs_domain *conc_domain(struct guestsim *gs, struct iovt_engine *e, uint16_t did,
			      struct iovt_domain **d)
{
	struct gs_domain *gd = gs_domain_create(gs, 48, false, false);
	CHECK(gd);
	struct iovt_domain_config dc = { .did = did, .root_gpa = gs_domain_root(gd),
					 .addr_width = 48 };
	CHECK(iovt_domain_create(e, &dc, d) == 0);
	return gd;
}

struct iovt_inval psi_covering(uint16_t did, uint64_t iova, uint64_t size)
{
	uint64_t first = iova >> 12, last = (iova + size - 1) >> 12;
	unsigned am = 0;
	while ((first >> am) != (last >> am))
		am++;
	return (struct iovt_inval){ .addr = (first >> am) << (12 + am), .did = did,
				    .kind = IOVT_INVAL_PSI, .am = (uint8_t)am };
}

int conc_fence_async(struct iovt_queue *q, uint64_t *polls)
{
	uint64_t t = iovt_queue_fence_post(q);
	for (unsigned spin = 0; spin < 64 && !iovt_queue_fence_done(q, t); spin++) {
		sched_yield();
		(*polls)++;
	}
	return iovt_queue_fence_wait(q, t);
}
