/* SPDX-License-Identifier: MIT */
/*
 * The model sink: VFIO type1v2 (and iommufd) MAP/UNMAP rules, enforced
 * exactly, as the judge of what the engine sends to a sink.
 *
 * It deliberately shares nothing with engine/tree: a bug in the shadow tree
 * must not be able to hide itself by being repeated in its judge. Mappings
 * live in a treap keyed by iova (random priorities, split/merge), which gives
 * expected O(log n) map/unmap/find with ~1M mappings and makes range removal
 * (UNMAP of many whole mappings) a pair of splits plus one merge.
 *
 * A rejected call changes no mapping: every check runs before any mutation.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "iovt.h"
#include "iovt_model.h"

#define PG IOVT_PAGE_SIZE
#define PG_MASK (IOVT_PAGE_SIZE - 1)

struct mnode {
	struct iovt_extent e;
	uint32_t prio;
	struct mnode *l, *r;
};

struct iovt_model_sink {
	struct iovt_model_config cfg;
	struct mnode *root;
	uint64_t rng; /* treap priorities; deterministic so runs reproduce */
	struct iovt_model_stats st;
};

static uint32_t next_prio(struct iovt_model_sink *m)
{
	/* xorshift64*: quality is irrelevant beyond "not adversarial". */
	m->rng ^= m->rng >> 12;
	m->rng ^= m->rng << 25;
	m->rng ^= m->rng >> 27;
	return (uint32_t)((m->rng * 0x2545F4914F6CDD1Dull) >> 32);
}

/* Splits t into keys < key (*a) and keys >= key (*b). Recursion depth is the
 * treap height, O(log n) expected. */
static void split(struct mnode *t, uint64_t key, struct mnode **a, struct mnode **b)
{
	if (!t) {
		*a = *b = NULL;
		return;
	}
	if (t->e.iova < key) {
		split(t->r, key, &t->r, b);
		*a = t;
	} else {
		split(t->l, key, a, &t->l);
		*b = t;
	}
}

/* Joins a and b where every key of a is below every key of b. */
static struct mnode *merge(struct mnode *a, struct mnode *b)
{
	if (!a)
		return b;
	if (!b)
		return a;
	if (a->prio > b->prio) {
		a->r = merge(a->r, b);
		return a;
	}
	b->l = merge(a, b->l);
	return b;
}

/* The mapping with the greatest iova <= key (may not cover key). */
static const struct mnode *floor_node(const struct mnode *t, uint64_t key)
{
	const struct mnode *best = NULL;
	while (t) {
		if (t->e.iova <= key) {
			best = t;
			t = t->r;
		} else {
			t = t->l;
		}
	}
	return best;
}

/* The mapping with the smallest iova >= key. */
static const struct mnode *ceil_node(const struct mnode *t, uint64_t key)
{
	const struct mnode *best = NULL;
	while (t) {
		if (t->e.iova >= key) {
			best = t;
			t = t->l;
		} else {
			t = t->r;
		}
	}
	return best;
}

static const struct mnode *covering(const struct mnode *t, uint64_t iova)
{
	const struct mnode *n = floor_node(t, iova);
	return (n && iova - n->e.iova < n->e.size) ? n : NULL;
}

/* Frees a subtree; returns (count, bytes) through the pointers. Iterative
 * via rotation so a degenerate shape cannot blow the stack. */
static void free_tree(struct mnode *t, uint64_t *count, uint64_t *bytes)
{
	while (t) {
		if (t->l) {
			struct mnode *l = t->l;
			t->l = l->r;
			l->r = t;
			t = l;
			continue;
		}
		struct mnode *r = t->r;
		*count += 1;
		*bytes += t->e.size;
		free(t);
		t = r;
	}
}

static int reject(struct iovt_model_sink *m, int err)
{
	m->st.rejected_calls++;
	switch (err) {
	case -EEXIST: m->st.rejected_eexist++; break;
	case -EINVAL: m->st.rejected_einval++; break;
	case -ENOSPC: m->st.rejected_enospc++; break;
	case -ENOENT: m->st.rejected_enoent++; break;
	default: break;
	}
	return err;
}

static int model_map(void *ctx, const struct iovt_extent *x)
{
	struct iovt_model_sink *m = ctx;
	m->st.map_calls++;
	m->st.charged_ns += m->cfg.map_cost_ns;

	if (!x || x->size == 0 || (x->iova & PG_MASK) || (x->size & PG_MASK) || (x->hva & PG_MASK))
		return reject(m, -EINVAL);
	uint64_t end = x->iova + x->size;
	if (end < x->iova || end > m->cfg.iova_limit) /* wrap or beyond the aperture */
		return reject(m, -EINVAL);

	/* Overlap: the mapping starting at or below iova reaching into it, or
	 * any mapping starting inside [iova, end). */
	const struct mnode *f = floor_node(m->root, x->iova);
	if (f && x->iova - f->e.iova < f->e.size)
		return reject(m, -EEXIST);
	const struct mnode *c = ceil_node(m->root, x->iova);
	if (c && c->e.iova < end)
		return reject(m, -EEXIST);

	if (m->st.mappings >= m->cfg.max_mappings)
		return reject(m, -ENOSPC);

	struct mnode *n = calloc(1, sizeof(*n));
	if (!n)
		return reject(m, -ENOMEM);
	n->e = *x;
	n->prio = next_prio(m);
	struct mnode *a, *b;
	split(m->root, x->iova, &a, &b);
	m->root = merge(merge(a, n), b);
	m->st.mappings++;
	m->st.bytes_mapped += x->size;
	return 0;
}

static int model_unmap(void *ctx, uint64_t iova, uint64_t size, uint64_t *unmapped)
{
	struct iovt_model_sink *m = ctx;
	bool iommufd = m->cfg.flavor == IOVT_MODEL_IOMMUFD;
	if (unmapped)
		*unmapped = 0; /* no PARTIAL_UNMAP: a failure removed nothing */
	m->st.unmap_calls++;
	m->st.charged_ns += m->cfg.unmap_cost_ns;

	if (size == 0 || (iova & PG_MASK) || (size & PG_MASK))
		return reject(m, -EINVAL);
	uint64_t last = iova + size - 1;
	if (last < iova)
		return reject(m, -EINVAL);

	/* The bisection checks look only at the two ends: a mapping partly
	 * inside and partly outside must contain iova or last. */
	int bisect = iommufd ? -ENOENT : -EINVAL;
	const struct mnode *h = covering(m->root, iova);
	if (h && h->e.iova < iova)
		return reject(m, bisect);
	const struct mnode *t = covering(m->root, last);
	if (t && last - t->e.iova != t->e.size - 1)
		return reject(m, bisect);

	const struct mnode *c = ceil_node(m->root, iova);
	if (!c || c->e.iova > last) {
		if (iommufd)
			return reject(m, -ENOENT);
		return 0; /* type1: empty range succeeds with 0 bytes */
	}

	struct mnode *a, *mid, *b;
	split(m->root, iova, &a, &mid);
	if (last == UINT64_MAX) {
		b = NULL;
	} else {
		struct mnode *rest = mid;
		split(rest, last + 1, &mid, &b);
	}
	uint64_t cnt = 0, bytes = 0;
	free_tree(mid, &cnt, &bytes);
	m->root = merge(a, b);
	m->st.mappings -= cnt;
	m->st.bytes_mapped -= bytes;
	if (unmapped)
		*unmapped = bytes;
	return 0;
}

static int model_unmap_all(void *ctx, uint64_t *unmapped)
{
	struct iovt_model_sink *m = ctx;
	m->st.unmap_all_calls++;
	m->st.charged_ns += m->cfg.unmap_cost_ns;
	/* Both kernels succeed here even when empty (iommufd's unmap-all maps
	 * its -ENOENT to 0). */
	uint64_t cnt = 0, bytes = 0;
	free_tree(m->root, &cnt, &bytes);
	m->root = NULL;
	m->st.mappings = 0;
	m->st.bytes_mapped = 0;
	if (unmapped)
		*unmapped = bytes;
	return 0;
}

static const struct iovt_sink_ops model_ops = {
	.map = model_map,
	.unmap = model_unmap,
	.unmap_all = model_unmap_all,
	.destroy = NULL, /* the model outlives the notifier so it can be inspected */
};

int iovt_model_sink_create(const struct iovt_model_config *cfg, struct iovt_model_sink **model,
			   struct iovt_sink *sink)
{
	if (!model || !sink)
		return -EINVAL;
	struct iovt_model_config c = {0};
	if (cfg)
		c = *cfg;
	if (c.flavor != IOVT_MODEL_TYPE1 && c.flavor != IOVT_MODEL_IOMMUFD)
		return -EINVAL;
	if (c.max_mappings == 0)
		c.max_mappings = 65535;
	if (c.iova_limit == 0)
		c.iova_limit = 1ull << 57;
	struct iovt_model_sink *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->cfg = c;
	m->rng = 0x9E3779B97F4A7C15ull;
	memset(sink, 0, sizeof(*sink));
	sink->ops = &model_ops;
	sink->ctx = m;
	sink->caps.flags = IOVT_SINK_UNMAP_ALL | (c.multi_unmap ? IOVT_SINK_MULTI_UNMAP : 0) |
			   (c.flavor == IOVT_MODEL_IOMMUFD ? IOVT_SINK_UNMAP_EMPTY_ERR : 0);
	sink->caps.max_mappings = c.max_mappings;
	sink->caps.page_sizes = (1ull << 12) | (1ull << 21) | (1ull << 30);
	sink->name = c.flavor == IOVT_MODEL_IOMMUFD ? "model-iommufd" : "model-type1";
	*model = m;
	return 0;
}

void iovt_model_sink_destroy(struct iovt_model_sink *m)
{
	if (!m)
		return;
	uint64_t cnt = 0, bytes = 0;
	free_tree(m->root, &cnt, &bytes);
	free(m);
}

void iovt_model_sink_stats(const struct iovt_model_sink *m, struct iovt_model_stats *out)
{
	*out = m->st;
}

size_t iovt_model_sink_count(const struct iovt_model_sink *m)
{
	return (size_t)m->st.mappings;
}

/* In-order walk of keys >= from, pruning left subtrees below from; O(log n +
 * copied). */
static void dump_rec(const struct mnode *t, uint64_t from, struct iovt_extent *out, size_t max,
		     size_t *n)
{
	while (t && *n < max) {
		if (t->e.iova < from) {
			t = t->r;
			continue;
		}
		dump_rec(t->l, from, out, max, n);
		if (*n >= max)
			return;
		out[(*n)++] = t->e;
		/* Everything right of t is > from: no more pruning needed, but
		 * the same loop handles it. */
		t = t->r;
	}
}

size_t iovt_model_sink_dump(const struct iovt_model_sink *m, uint64_t from, struct iovt_extent *out,
			    size_t max)
{
	size_t n = 0;
	dump_rec(m->root, from, out, max, &n);
	return n;
}

bool iovt_model_sink_find(const struct iovt_model_sink *m, uint64_t iova, struct iovt_extent *out)
{
	const struct mnode *n = covering(m->root, iova);
	if (!n)
		return false;
	if (out)
		*out = n->e;
	return true;
}
