/* SPDX-License-Identifier: MIT */
/*
 * The simple intake (iovt_invalidate_*, iovt_fence) on top of the queues:
 * each calling thread posts to its own implicit queue, and iovt_fence drains
 * every queue and syncs every dirty domain (engine/intake/drain.c).
 */
#include <errno.h>
#include <sched.h>

#include "common/rcu.h"
#include "common/sink_call.h"
#include "domain/domain.h"

/*
 * Without memory for the thread's queue, or from inside a sink callback
 * (common/sink_call.h), the invalidation goes straight to the domain's
 * pending set (a drainer's lock, briefly): never lost; iovt_fence syncs it.
 */
static int post_direct(struct iovt_engine *e, const struct iovt_inval *v)
{
	int rc = 0;
	iovt_rcu_read_lock();
	struct iovt_domain *d = domain_find_rcu(e, v->did);
	if (v->kind == IOVT_INVAL_GLOBAL) {
		ENGINE_STAT_ADD(e, invalidations, 1);
		ENGINE_STAT_ADD(e, global, 1);
		domains_pend_all(e);
	} else if (!d) {
		ENGINE_STAT_ADD(e, errors[IOVT_ERR_UNKNOWN_DOMAIN], 1);
		rc = -ENOENT;
	} else if (v->kind == IOVT_INVAL_DSI) {
		domain_pend(d, &(struct pend_batch){ .all = true, .dsi = 1 });
	} else if (v->am > IOVT_PSI_MAX_AM || v->addr > domain_top(d)) {
		STAT_ADD(d, errors[IOVT_ERR_BAD_INVALIDATION], 1);
		rc = -EINVAL;
	} else {
		struct range b = psi_block(v->addr, v->am, domain_top(d));
		domain_pend(d, &(struct pend_batch){ .r = &b, .n = 1, .psi = 1, .ih = v->ih != 0 });
	}
	iovt_rcu_read_unlock();
	return rc;
}

static int post_one(struct iovt_engine *e, const struct iovt_inval *v)
{
	if (in_sink_callback())
		return post_direct(e, v); /* common/sink_call.h */
	struct iovt_queue *q = thread_queue(e);
	return q ? iovt_queue_post(q, v, 1) : post_direct(e, v);
}

int iovt_invalidate_psi(struct iovt_engine *e, uint16_t did, uint64_t addr, unsigned am, bool ih)
{
	struct iovt_queue *q = in_sink_callback() ? NULL : thread_queue(e); /* common/sink_call.h */
	if (__builtin_expect(q != NULL, 1))
		return queue_post_psi(q, did, addr, am, ih);
	struct iovt_inval v = { .addr = addr, .did = did, .kind = IOVT_INVAL_PSI,
				.am = am > 255 ? 255 : (uint8_t)am, .ih = ih };
	return post_direct(e, &v);
}

int iovt_invalidate_dsi(struct iovt_engine *e, uint16_t did)
{
	struct iovt_inval v = { .did = did, .kind = IOVT_INVAL_DSI };
	return post_one(e, &v);
}

int iovt_invalidate_global(struct iovt_engine *e)
{
	struct iovt_inval v = { .kind = IOVT_INVAL_GLOBAL };
	return post_one(e, &v);
}

int iovt_fence(struct iovt_engine *e)
{
	return engine_fence_all(e);
}
