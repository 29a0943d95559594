/* SPDX-License-Identifier: MIT */
/* The QEMU-style baseline: see baseline.h. */
#include "baseline.h"

#include <errno.h>
#include <glib.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "guest/guest_ram.h"
#include "guest/vtd_walk.h"

#define K 0x1000ull
#define GTREE_NODE_BYTES 48u     /* GTreeNode: 4 pointers + 3 bytes, 48 as allocated */
#define MAX_WALKS_PER_INVAL (1u << 20) /* re-walk cap (hostile DAG tables) */

/* QEMU's DMAMap, with the host address and RAM region iovt's sink needs. */
struct dmamap {
	uint64_t iova, size, gpa, hva;
	uint32_t perm, region;
};

struct baseline {
	pthread_mutex_t lock;
	GTree *tree;
	const struct guest_ram *ram;
	struct vtd_walk_params wp;
	struct iovt_sink sink;
	struct iovt_stats st;
	uint64_t tree_bytes;
	uint64_t entry_bytes;  /* one DMAMap's chunk and its GTree node (baseline_bytes_per_extent):
				* every DMAMap is the same size, so no malloc_usable_size inside the
				* timed calls, which QEMU never pays (found by review) */
	int first_err;
	/* ranges still to walk for the invalidation being processed */
	uint64_t (*work)[2];
	size_t nwork, capwork;
	/* the walk in progress */
	uint64_t first, last, cursor;
	bool stop;
};

/* Overlapping ranges compare equal (QEMU's iova_tree_compare). */
static gint map_cmp(gconstpointer a, gconstpointer b, gpointer unused)
{
	(void)unused;
	const struct dmamap *x = a, *y = b;
	if (x->iova + x->size <= y->iova)
		return -1;
	if (y->iova + y->size <= x->iova)
		return 1;
	return 0;
}

static uint64_t chunk_bytes(void *p)
{
	return malloc_usable_size(p) + sizeof(size_t); /* glibc chunk header */
}

uint64_t baseline_bytes_per_extent(void)
{
	void *p = malloc(sizeof(struct dmamap));
	uint64_t n = p ? chunk_bytes(p) : sizeof(struct dmamap);
	free(p);
	return n + GTREE_NODE_BYTES;
}

int baseline_create(const struct baseline_config *cfg, struct baseline **out)
{
	if (!cfg || !cfg->ram || !cfg->sink.ops || (cfg->root_gpa & (K - 1)) ||
	    (cfg->addr_width != 39 && cfg->addr_width != 48 && cfg->addr_width != 57))
		return -EINVAL;
	struct baseline *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	pthread_mutex_init(&b->lock, NULL);
	b->tree = g_tree_new_full(map_cmp, NULL, free, NULL);
	b->entry_bytes = baseline_bytes_per_extent();
	b->ram = cfg->ram;
	b->sink = cfg->sink;
	b->wp = (struct vtd_walk_params){
		.root_gpa = cfg->root_gpa, .addr_width = cfg->addr_width,
		.host_width = cfg->host_width ? cfg->host_width : 48,
		.allow_2m = cfg->allow_2m, .allow_1g = cfg->allow_1g,
		.budget = cfg->walk_budget ? cfg->walk_budget : (1ull << 24),
	};
	*out = b;
	return 0;
}

void baseline_destroy(struct baseline *b)
{
	if (!b)
		return;
	g_tree_destroy(b->tree);
	pthread_mutex_destroy(&b->lock);
	free(b->work);
	free(b);
}

static void note_err(struct baseline *b, int err)
{
	if (!b->first_err)
		b->first_err = err;
}

static void push_work(struct baseline *b, uint64_t first, uint64_t last)
{
	if (b->nwork == b->capwork) {
		size_t cap = b->capwork ? b->capwork * 2 : 16;
		void *r = realloc(b->work, cap * sizeof(*b->work));
		if (!r) {
			note_err(b, -ENOMEM);
			return;
		}
		b->work = r;
		b->capwork = cap;
	}
	b->work[b->nwork][0] = first;
	b->work[b->nwork][1] = last;
	b->nwork++;
}

/* UNMAP one tree entry whole (one sink call); what it covered outside the
 * walked range is walked again later. false when the sink refused. */
static bool unmap_entry(struct baseline *b, struct dmamap *m)
{
	uint64_t unmapped = 0;
	b->st.unmap_calls++;
	int rc = b->sink.ops->unmap(b->sink.ctx, m->iova, m->size, &unmapped);
	if (rc) {
		b->st.errors[IOVT_ERR_SINK_UNMAP]++;
		note_err(b, rc);
		return false;
	}
	b->st.pages_unmapped += m->size / K;
	uint64_t lo = m->iova, hi = m->iova + m->size - 1;
	if (lo < b->first)
		push_work(b, lo, b->first - 1);
	if (hi > b->last)
		push_work(b, b->last + 1, hi);
	b->tree_bytes -= b->entry_bytes;
	g_tree_remove(b->tree, m); /* frees m */
	b->st.extents--;
	return true;
}

/* Removes every tree entry overlapping [first, last] (one UNMAP each).
 * false when the sink refused one. */
static bool clear_span(struct baseline *b, uint64_t first, uint64_t last)
{
	struct dmamap key = { .iova = first, .size = last - first + 1 };
	struct dmamap *m;
	while ((m = g_tree_lookup(b->tree, &key)))
		if (!unmap_entry(b, m))
			return false;
	return true;
}

/* One leaf piece inside one RAM region: skip if held unchanged, else UNMAP
 * what it overlaps and MAP it. */
static void apply_piece(struct baseline *b, const struct dmamap *p)
{
	struct dmamap *m = g_tree_lookup(b->tree, (gconstpointer)p);
	if (m && m->iova == p->iova && m->size == p->size && m->gpa == p->gpa && m->perm == p->perm &&
	    m->hva == p->hva)
		return; /* QEMU: "same mapping, skip" */
	if (m && !clear_span(b, p->iova, p->iova + p->size - 1))
		return; /* the MAP would overlap what stayed */
	struct iovt_extent e = { p->iova, p->size, p->gpa, p->hva, p->perm, p->region };
	b->st.map_calls++;
	int rc = b->sink.ops->map(b->sink.ctx, &e);
	if (rc) {
		b->st.errors[IOVT_ERR_SINK_MAP]++;
		note_err(b, rc);
		return;
	}
	b->st.pages_mapped += p->size / K;
	struct dmamap *n = malloc(sizeof(*n));
	if (!n) { /* cannot record it: take it back */
		uint64_t u;
		b->st.unmap_calls++;
		b->sink.ops->unmap(b->sink.ctx, p->iova, p->size, &u);
		note_err(b, -ENOMEM);
		return;
	}
	*n = *p;
	g_tree_insert(b->tree, n, n);
	b->tree_bytes += b->entry_bytes;
	b->st.extents++;
}

/* [cursor, upto) is not present. */
static void gap_to(struct baseline *b, uint64_t upto)
{
	if (upto > b->cursor)
		clear_span(b, b->cursor, upto - 1);
	if (upto > b->cursor)
		b->cursor = upto;
}

static int on_leaf(void *arg, const struct vtd_leaf *l)
{
	struct baseline *b = arg;
	gap_to(b, l->iova > b->first ? l->iova : b->first);
	/* The leaf, cut where guest RAM regions end (a piece in a hole is not
	 * mapped). The guest sees it whole; so does the sink, piece by piece. */
	for (uint64_t off = 0; off < l->size;) {
		struct guest_ram_region r;
		uint64_t gpa = l->gpa + off, len = l->size - off;
		if (!guest_ram_find_next(b->ram, gpa, &r) || r.gpa >= gpa + len) {
			b->st.errors[IOVT_ERR_LEAF_OUTSIDE_RAM]++;
			clear_span(b, l->iova + off, l->iova + l->size - 1);
			break;
		}
		if (r.gpa > gpa) { /* a hole first */
			b->st.errors[IOVT_ERR_LEAF_OUTSIDE_RAM]++;
			clear_span(b, l->iova + off, l->iova + off + (r.gpa - gpa) - 1);
			off += r.gpa - gpa;
			continue;
		}
		if (r.gpa + r.size - gpa < len)
			len = r.gpa + r.size - gpa;
		struct dmamap p = { l->iova + off, len, gpa, r.hva + (gpa - r.gpa), l->perm, r.id };
		apply_piece(b, &p);
		off += len;
	}
	uint64_t end = l->iova + l->size;
	if (end > b->cursor)
		b->cursor = end;
	return 0;
}

static int on_error(void *arg, uint64_t iova, uint64_t size, enum vtd_error why)
{
	struct baseline *b = arg;
	static const enum iovt_err_kind kind[VTD_ERR_COUNT] = {
		[VTD_ERR_RESERVED] = IOVT_ERR_PT_RESERVED,
		[VTD_ERR_LARGE_PAGE] = IOVT_ERR_PT_LARGE_PAGE,
		[VTD_ERR_TABLE_OUTSIDE_RAM] = IOVT_ERR_PT_OUTSIDE_RAM,
		[VTD_ERR_LOOP] = IOVT_ERR_PT_LOOP,
		[VTD_ERR_BUDGET] = IOVT_ERR_WALK_BUDGET,
		[VTD_ERR_BAD_WIDTH] = IOVT_ERR_BAD_INVALIDATION,
	};
	b->st.errors[kind[why]]++;
	note_err(b, why == VTD_ERR_LOOP ? -ELOOP : why == VTD_ERR_BUDGET ? -E2BIG : -EFAULT);
	gap_to(b, iova);
	gap_to(b, iova + size); /* the span is not mapped */
	return 0;
}

static void walk(struct baseline *b, uint64_t first, uint64_t last)
{
	static const struct vtd_walk_ops ops = { .leaf = on_leaf, .error = on_error };
	struct vtd_walk_params p = b->wp;
	struct vtd_walk_stats ws = { 0 };
	p.first = b->first = b->cursor = first;
	p.last = b->last = last;
	b->st.ranges_coalesced++;
	/* The engine's walker for a window inside one leaf table (one descent,
	 * the table's scan; vtd_walk otherwise), with the same leaves: the two
	 * sides differ in policy only (found by review: the generic walk was
	 * 2-3% of the baseline's own work). */
	int rc = vtd_walk_block(b->ram, &p, &ops, b, &ws);
	b->st.ptes_walked += ws.entries_read;
	if (rc) {
		note_err(b, rc);
		return;
	}
	if (b->cursor <= last)
		clear_span(b, b->cursor, last); /* the tail is not present */
}

/* Walks [first, last], then whatever the removals pushed, at once. */
static void process(struct baseline *b, uint64_t first, uint64_t last)
{
	unsigned walks = 0;
	b->nwork = 0;
	push_work(b, first, last);
	while (b->nwork) {
		b->nwork--;
		uint64_t f = b->work[b->nwork][0], l = b->work[b->nwork][1];
		if (++walks > MAX_WALKS_PER_INVAL) {
			b->st.errors[IOVT_ERR_WALK_BUDGET]++;
			note_err(b, -E2BIG);
			break;
		}
		walk(b, f, l);
	}
	b->nwork = 0;
}

int baseline_invalidate_psi(struct baseline *b, uint64_t addr, unsigned am)
{
	unsigned aw = b->wp.addr_width;
	pthread_mutex_lock(&b->lock);
	if (am > IOVT_PSI_MAX_AM || (addr >> aw)) {
		b->st.errors[IOVT_ERR_BAD_INVALIDATION]++;
		pthread_mutex_unlock(&b->lock);
		return -EINVAL;
	}
	b->st.invalidations++;
	b->st.psi++;
	unsigned shift = IOVT_PAGE_SHIFT + am;
	uint64_t first = 0, last = (1ull << aw) - 1;
	if (shift < aw) {
		first = addr & ~((1ull << shift) - 1);
		last = first + (1ull << shift) - 1;
	}
	process(b, first, last);
	pthread_mutex_unlock(&b->lock);
	return 0;
}

int baseline_invalidate_dsi(struct baseline *b, bool global)
{
	pthread_mutex_lock(&b->lock);
	if (global) {
		b->st.global++;
	} else {
		b->st.invalidations++;
		b->st.dsi++;
	}
	process(b, 0, (1ull << b->wp.addr_width) - 1);
	pthread_mutex_unlock(&b->lock);
	return 0;
}

int baseline_fence(struct baseline *b)
{
	pthread_mutex_lock(&b->lock);
	int rc = b->first_err;
	b->first_err = 0;
	b->st.fences++;
	pthread_mutex_unlock(&b->lock);
	return rc;
}

int baseline_translate(struct baseline *b, uint64_t iova, struct iovt_extent *out)
{
	struct dmamap key = { .iova = iova, .size = 1 };
	int rc = -ENOENT;
	pthread_mutex_lock(&b->lock);
	const struct dmamap *m = g_tree_lookup(b->tree, &key);
	if (m) {
		*out = (struct iovt_extent){ m->iova, m->size, m->gpa, m->hva, m->perm, m->region };
		rc = 0;
	}
	pthread_mutex_unlock(&b->lock);
	return rc;
}

void baseline_stats_get(struct baseline *b, struct iovt_stats *out)
{
	pthread_mutex_lock(&b->lock);
	*out = b->st;
	pthread_mutex_unlock(&b->lock);
}

uint64_t baseline_tree_bytes(struct baseline *b)
{
	pthread_mutex_lock(&b->lock);
	uint64_t n = b->tree_bytes;
	pthread_mutex_unlock(&b->lock);
	return n;
}
