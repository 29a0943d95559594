/* SPDX-License-Identifier: MIT */
/*
 * The simple intake (iovt_invalidate_*, iovt_fence) on top of the queues:
 * each calling thread posts to its own implicit queue, and iovt_fence drains
 * every queue and syncs every dirty domain (engine/intake/drain.c).
 */
#include <errno.h>
#include <sched.h>

#include "common/rcu.h"
#include "domain/domain.h"

static int post_one(struct iovt_engine *e, const struct iovt_inval *v)
{
	struct iovt_queue *q = thread_queue(e);
	return q ? iovt_queue_post(q, v, 1) : intake_post_direct(e, v);
}

int iovt_invalidate_psi(struct iovt_engine *e, uint16_t did, uint64_t addr, unsigned am, bool ih)
{
	struct iovt_queue *q = thread_queue(e);
	if (__builtin_expect(q != NULL, 1))
		return queue_post_psi(q, did, addr, am, ih);
	struct iovt_inval v = { .addr = addr, .did = did, .kind = IOVT_INVAL_PSI,
				.am = am > 255 ? 255 : (uint8_t)am, .ih = ih };
	return intake_post_direct(e, &v);
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
