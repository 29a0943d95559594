/* SPDX-License-Identifier: MIT */
/* fault_sink: see fault_sink.h. */
#include "fault_sink.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#define MAX_SCHED 64

const int fault_errnos[FAULT_NERRNO] = { ENOMEM, EINVAL, EEXIST, ENOSPC, EIO };

struct sched {
	enum fault_kind kind;
	uint64_t at; /* absolute index among calls of that kind */
	int err;
};

struct fault_sink {
	struct iovt_sink inner;
	struct iovt_model_sink *model;
	bool partial;
	int prefix_k;           /* -1: random */
	uint64_t rng;           /* touched only from inside sink calls */
	_Atomic uint64_t p_threshold; /* fail when rand < threshold; 0: never */
	struct sched sched[MAX_SCHED];
	_Atomic unsigned nsched;
	_Atomic uint64_t calls[FAULT_KINDS], injected[FAULT_KINDS], by_errno[FAULT_NERRNO];
	_Atomic uint64_t partial_unmaps, partial_bytes;
	_Atomic int mark_err;
	_Atomic uint64_t mark_count;
};

static uint64_t rnd(struct fault_sink *fs)
{
	uint64_t z = (fs->rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Decides whether this call (index idx of its kind) fails; returns -errno or 0. */
static int decide(struct fault_sink *fs, enum fault_kind kind)
{
	uint64_t idx = atomic_fetch_add(&fs->calls[kind], 1);
	int err = 0;
	unsigned n = atomic_load(&fs->nsched);
	for (unsigned i = 0; i < n; i++) {
		if (fs->sched[i].kind == kind && fs->sched[i].at == idx) {
			err = fs->sched[i].err;
			fs->sched[i] = fs->sched[n - 1];
			atomic_store(&fs->nsched, n - 1);
			break;
		}
	}
	uint64_t thr = atomic_load_explicit(&fs->p_threshold, memory_order_relaxed);
	if (!err && thr && rnd(fs) < thr)
		err = fault_errnos[rnd(fs) % FAULT_NERRNO];
	if (!err)
		return 0;
	atomic_fetch_add(&fs->injected[kind], 1);
	for (unsigned i = 0; i < FAULT_NERRNO; i++)
		if (fault_errnos[i] == err)
			atomic_fetch_add(&fs->by_errno[i], 1);
	int none = 0;
	atomic_compare_exchange_strong(&fs->mark_err, &none, -err);
	atomic_fetch_add(&fs->mark_count, 1);
	return -err;
}

static int f_map(void *ctx, const struct iovt_extent *m)
{
	struct fault_sink *fs = ctx;
	int err = decide(fs, FAULT_MAP);
	if (err)
		return err; /* never reaches the device: it holds nothing new */
	return fs->inner.ops->map(fs->inner.ctx, m);
}

/*
 * iommufd-style partial failure: remove the first k whole mappings inside
 * [iova, iova+size) (stopping at one that is not wholly inside: we never
 * bisect), report the sum of their sizes.
 */
static uint64_t partial_prefix(struct fault_sink *fs, uint64_t iova, uint64_t size)
{
	struct iovt_extent buf[64];
	uint64_t end = iova + size, at = iova, last_end = iova, bytes = 0;
	size_t inside = 0;
	struct iovt_extent cover;

	/* A mapping that starts before iova and covers it would be bisected. */
	if (iovt_model_sink_find(fs->model, iova, &cover) && cover.iova < iova)
		return 0;
	/* Count the whole mappings inside, in order, to choose k. */
	for (;;) {
		size_t n = iovt_model_sink_dump(fs->model, at, buf, 64);
		size_t i = 0;
		for (; i < n; i++) {
			if (buf[i].iova >= end || buf[i].iova + buf[i].size > end)
				break;
			inside++;
		}
		if (i < n || n < 64)
			break;
		at = buf[n - 1].iova + buf[n - 1].size;
	}
	if (!inside)
		return 0;
	uint64_t k = fs->prefix_k < 0 ? rnd(fs) % (inside + 1) : (uint64_t)fs->prefix_k;
	if (k > inside)
		k = inside;
	if (!k)
		return 0;
	at = iova;
	uint64_t taken = 0;
	while (taken < k) {
		size_t n = iovt_model_sink_dump(fs->model, at, buf, 64);
		for (size_t i = 0; i < n && taken < k; i++, taken++) {
			bytes += buf[i].size;
			last_end = buf[i].iova + buf[i].size;
		}
		at = last_end;
	}
	/* One inner UNMAP over exactly the prefix: only whole mappings. */
	uint64_t done = 0;
	int rc = fs->inner.ops->unmap(fs->inner.ctx, iova, last_end - iova, &done);
	if (rc || done != bytes)
		abort(); /* the wrapper's own logic is broken: do not judge the engine with it */
	atomic_fetch_add(&fs->partial_unmaps, 1);
	atomic_fetch_add(&fs->partial_bytes, bytes);
	return bytes;
}

static int f_unmap(void *ctx, uint64_t iova, uint64_t size, uint64_t *unmapped)
{
	struct fault_sink *fs = ctx;
	int err = decide(fs, FAULT_UNMAP);
	if (!err)
		return fs->inner.ops->unmap(fs->inner.ctx, iova, size, unmapped);
	*unmapped = fs->partial ? partial_prefix(fs, iova, size) : 0;
	return err;
}

static int f_unmap_all(void *ctx, uint64_t *unmapped)
{
	struct fault_sink *fs = ctx;
	int err = decide(fs, FAULT_UNMAP);
	if (!err)
		return fs->inner.ops->unmap_all(fs->inner.ctx, unmapped);
	*unmapped = 0; /* all or nothing: the engine forgets nothing on failure */
	return err;
}

static const struct iovt_sink_ops fault_ops = {
	.map = f_map,
	.unmap = f_unmap,
	.unmap_all = f_unmap_all,
};

int fault_sink_create(const struct iovt_sink *inner, struct iovt_model_sink *model, bool partial,
		      uint64_t seed, struct fault_sink **out_fs, struct iovt_sink *out)
{
	if (!inner || (partial && !model))
		return -EINVAL;
	struct fault_sink *fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	fs->inner = *inner;
	fs->model = model;
	fs->partial = partial;
	fs->prefix_k = -1;
	fs->rng = seed;
	*out_fs = fs;
	out->ops = &fault_ops;
	out->ctx = fs;
	out->caps = inner->caps;
	if (partial)
		out->caps.flags |= IOVT_SINK_PARTIAL_UNMAP;
	/* unmap_all only where the inner sink has it. */
	if (!inner->ops->unmap_all)
		out->caps.flags &= ~IOVT_SINK_UNMAP_ALL;
	out->name = "fault";
	return 0;
}

void fault_sink_destroy(struct fault_sink *fs)
{
	free(fs);
}

void fault_sink_fail_nth(struct fault_sink *fs, enum fault_kind kind, uint64_t n, int err)
{
	unsigned i = atomic_load(&fs->nsched);
	if (i == MAX_SCHED || err <= 0)
		abort();
	fs->sched[i] = (struct sched){ kind, atomic_load(&fs->calls[kind]) + n, err };
	atomic_store(&fs->nsched, i + 1);
}

void fault_sink_set_random(struct fault_sink *fs, double p)
{
	uint64_t thr = p <= 0 ? 0 : p >= 1 ? UINT64_MAX : (uint64_t)(p * 18446744073709551616.0);
	atomic_store(&fs->p_threshold, thr);
}

void fault_sink_stop(struct fault_sink *fs)
{
	atomic_store(&fs->p_threshold, 0);
	atomic_store(&fs->nsched, 0);
}

void fault_sink_set_partial_prefix(struct fault_sink *fs, int k)
{
	fs->prefix_k = k;
}

void fault_sink_stats(const struct fault_sink *fs, struct fault_stats *out)
{
	struct fault_sink *f = (struct fault_sink *)fs;
	for (int k = 0; k < FAULT_KINDS; k++) {
		out->calls[k] = atomic_load(&f->calls[k]);
		out->injected[k] = atomic_load(&f->injected[k]);
	}
	for (int i = 0; i < FAULT_NERRNO; i++)
		out->by_errno[i] = atomic_load(&f->by_errno[i]);
	out->partial_unmaps = atomic_load(&f->partial_unmaps);
	out->partial_bytes = atomic_load(&f->partial_bytes);
}

uint64_t fault_sink_injected(const struct fault_sink *fs)
{
	struct fault_sink *f = (struct fault_sink *)fs;
	return atomic_load(&f->injected[FAULT_MAP]) + atomic_load(&f->injected[FAULT_UNMAP]);
}

int fault_sink_take_mark(struct fault_sink *fs, uint64_t *injected_since)
{
	if (injected_since)
		*injected_since = atomic_exchange(&fs->mark_count, 0);
	else
		atomic_store(&fs->mark_count, 0);
	return atomic_exchange(&fs->mark_err, 0);
}
