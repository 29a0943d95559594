/* SPDX-License-Identifier: MIT */
/*
 * Every call into a sink goes through these. While one runs, its thread is
 * inside a sink callback (sink_depth > 0), and the two slow paths of an
 * invalidation the callback posts (iovt_invalidate_*, which iovt.h allows
 * there) look at it (engine/intake/queue.c): no implicit queue is made or
 * evicted (that takes locks a thread releasing its queues holds while it
 * waits for an engine lock this thread may hold), and a full ring sends the
 * rest of the post to the pending sets instead of waiting for a drain (the
 * ring may be the one this thread is draining, which only it can drain).
 * Both hung (found by review).
 */
#ifndef IOVT_COMMON_SINK_CALL_H
#define IOVT_COMMON_SINK_CALL_H

#include "iovt.h"

extern __thread unsigned sink_depth;

static inline bool in_sink_callback(void)
{
	return __builtin_expect(sink_depth != 0, 0);
}

static inline int sink_map(const struct iovt_sink *s, const struct iovt_extent *m)
{
	sink_depth++;
	int rc = s->ops->map(s->ctx, m);
	sink_depth--;
	return rc;
}

static inline int sink_unmap(const struct iovt_sink *s, uint64_t iova, uint64_t size,
			     uint64_t *unmapped)
{
	sink_depth++;
	int rc = s->ops->unmap(s->ctx, iova, size, unmapped);
	sink_depth--;
	return rc;
}

static inline int sink_unmap_all(const struct iovt_sink *s, uint64_t *unmapped)
{
	sink_depth++;
	int rc = s->ops->unmap_all(s->ctx, unmapped);
	sink_depth--;
	return rc;
}

static inline void sink_destroy(const struct iovt_sink *s)
{
	sink_depth++;
	s->ops->destroy(s->ctx);
	sink_depth--;
}

#endif
