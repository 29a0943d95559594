/* SPDX-License-Identifier: MIT */
/* The callback sink: every sink call becomes one event for a host function,
 * the shape of QEMU's IOMMU notifiers. */
#include <errno.h>
#include <stdlib.h>

#include "iovt.h"

struct callback_sink {
	iovt_event_fn fn;
	void *arg;
};

static int cb_map(void *ctx, const struct iovt_extent *m)
{
	struct callback_sink *c = ctx;
	struct iovt_event ev = { .type = IOVT_EVENT_MAP, .extent = *m };
	return c->fn(c->arg, &ev);
}

static int cb_unmap(void *ctx, uint64_t iova, uint64_t size, uint64_t *unmapped)
{
	struct callback_sink *c = ctx;
	struct iovt_event ev = { .type = IOVT_EVENT_UNMAP, .extent = { .iova = iova, .size = size } };
	int rc = c->fn(c->arg, &ev);
	*unmapped = rc ? 0 : size;
	return rc;
}

static void cb_destroy(void *ctx)
{
	free(ctx);
}

static const struct iovt_sink_ops callback_ops = {
	.map = cb_map,
	.unmap = cb_unmap,
	.destroy = cb_destroy,
};

int iovt_callback_sink_init(struct iovt_sink *out, iovt_event_fn fn, void *arg,
			    const struct iovt_sink_caps *caps)
{
	/* A callback has no unmap_all and cannot report a partial UNMAP:
	 * refuse those caps rather than silently drop them. */
	if (!out || !fn ||
	    (caps && (caps->flags & (IOVT_SINK_UNMAP_ALL | IOVT_SINK_PARTIAL_UNMAP))))
		return -EINVAL;
	struct callback_sink *c = malloc(sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fn = fn;
	c->arg = arg;
	*out = (struct iovt_sink){
		.ops = &callback_ops,
		.ctx = c,
		.caps = caps ? *caps : (struct iovt_sink_caps){ .flags = IOVT_SINK_MULTI_UNMAP },
		.name = "callback",
	};
	return 0;
}
