/* SPDX-License-Identifier: MIT */
#include "gbench_support.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include <urcu/wfcqueue.h>

#include "common/rcu.h"
#include "engine_internal.h"
#include "guestsim.h"
#include "intake/ring.h"

#define K4 0x1000ull
#define G1 (1ull << 30)

struct gb_world {
	struct guestsim *gs;
	struct gs_domain *gd;
	struct iovt_engine *e;
	struct iovt_domain *d;
	struct iovt_notifier *n;
	enum gb_layout layout;
	uint64_t sink_calls;
};

static int count_event(void *arg, const struct iovt_event *ev)
{
	(void)ev;
	/* domains of one world may be synced from several threads */
	__atomic_fetch_add(&((struct gb_world *)arg)->sink_calls, 1, __ATOMIC_RELAXED);
	return 0;
}

uint64_t gb_leaf_iova(struct gb_world *w, uint64_t i)
{
	return GB_IOVA_BASE + i * (w->layout == GB_SPARSE_8K ? 2 * K4 : K4);
}

struct gb_world *gb_world_create(uint64_t n, enum gb_layout layout)
{
	struct gb_world *w = calloc(1, sizeof(*w));
	uint64_t *perm = NULL;
	if (!w)
		return NULL;
	w->layout = layout;
	/* one 1 GiB region; the last 64 MiB hold the page tables */
	w->gs = gs_create(1, G1, 64ull << 20);
	if (!w->gs)
		goto fail;
	uint64_t data_pages = gs_region_data_size(w->gs, 0) / K4;
	if (n > data_pages) {
		fprintf(stderr, "gbench: %llu leaves > %llu data pages\n", (unsigned long long)n,
			(unsigned long long)data_pages);
		goto fail;
	}
	w->gd = gs_domain_create(w->gs, 48, true, true);
	if (!w->gd)
		goto fail;
	if (layout == GB_SCATTER_GPA) {
		uint64_t s = 0x6be1c4ull;
		perm = malloc(n * sizeof(*perm));
		if (!perm)
			goto fail;
		for (uint64_t i = 0; i < n; i++)
			perm[i] = i;
		for (uint64_t i = n - 1; i > 0; i--) {
			uint64_t j = gs_rand_below(&s, i + 1), x = perm[i];
			perm[i] = perm[j];
			perm[j] = x;
		}
	}
	for (uint64_t i = 0; i < n; i++) {
		uint64_t gpa = (perm ? perm[i] : i) * K4;
		if (gs_map(w->gd, gb_leaf_iova(w, i), gpa, K4, IOVT_PERM_RW, GS_LEAF_4K)) {
			fprintf(stderr, "gbench: gs_map failed at leaf %llu\n", (unsigned long long)i);
			goto fail;
		}
	}
	free(perm);
	perm = NULL;
	if (iovt_engine_create(NULL, &w->e))
		goto fail;
	for (unsigned i = 0; i < gs_region_count(w->gs); i++) {
		const struct gs_region *r = gs_region(w->gs, i);
		if (iovt_guest_ram_add(w->e, r->gpa, r->size, r->hva, NULL))
			goto fail;
	}
	struct iovt_domain_config dc = { .did = 1, .root_gpa = gs_domain_root(w->gd),
					 .addr_width = 48, .allow_2m = true, .allow_1g = true };
	if (iovt_domain_create(w->e, &dc, &w->d))
		goto fail;
	struct iovt_sink sink;
	if (iovt_callback_sink_init(&sink, count_event, w, NULL))
		goto fail;
	if (iovt_notifier_attach(w->d, IOVT_NOTIFY_IOTLB_EVENTS, &sink, &w->n)) {
		fprintf(stderr, "gbench: notifier attach (replay) failed\n");
		goto fail;
	}
	return w;
fail:
	free(perm);
	gb_world_destroy(w);
	return NULL;
}

void gb_world_destroy(struct gb_world *w)
{
	if (!w)
		return;
	if (w->e)
		iovt_engine_destroy(w->e);
	gs_destroy(w->gs);
	free(w);
}

struct iovt_engine *gb_engine(struct gb_world *w) { return w->e; }
struct iovt_domain *gb_domain(struct gb_world *w) { return w->d; }
uint16_t gb_did(struct gb_world *w) { return w->d->did; }
uint64_t gb_sink_calls(struct gb_world *w) { return __atomic_load_n(&w->sink_calls, __ATOMIC_RELAXED); }

int gb_world_add_domain(struct gb_world *w, uint16_t did)
{
	struct gs_domain *gd = gs_domain_create(w->gs, 48, true, true);
	struct iovt_domain *d;
	struct iovt_notifier *n;
	struct iovt_sink sink;
	if (!gd) {
		fprintf(stderr, "gbench: guest domain %u: no table memory\n", did);
		return -1;
	}
	struct iovt_domain_config dc = { .did = did, .root_gpa = gs_domain_root(gd),
					 .addr_width = 48, .allow_2m = true, .allow_1g = true };
	if (iovt_domain_create(w->e, &dc, &d) || iovt_callback_sink_init(&sink, count_event, w, NULL) ||
	    iovt_notifier_attach(d, IOVT_NOTIFY_IOTLB_EVENTS, &sink, &n)) {
		fprintf(stderr, "gbench: domain %u: create or attach failed\n", did);
		return -1;
	}
	return 0;
}

int gb_guest_map(struct gb_world *w, uint64_t iova, uint64_t gpa, uint64_t size)
{
	return gs_map(w->gd, iova, gpa, size, IOVT_PERM_RW, GS_LEAF_4K);
}

int gb_guest_unmap(struct gb_world *w, uint64_t iova, uint64_t size)
{
	return gs_unmap(w->gd, iova, size);
}

static const struct intake_item placeholder[32];

unsigned gb_ring_push(struct iovt_queue *q, unsigned n)
{
	return q->ring->ops->push(q->ring, placeholder, n > 32 ? 32 : n);
}

unsigned gb_ring_pop(struct iovt_queue *q, unsigned max)
{
	struct intake_item buf[32];
	return q->ring->ops->pop(q->ring, buf, max > 32 ? 32 : max);
}

struct gb_node {
	struct cds_wfcq_node node;
	struct intake_item it;
};

struct gb_node_queue {
	struct __cds_wfcq_head head;
	struct cds_wfcq_tail tail;
	_Alignas(64) _Atomic uint64_t pushed;
	_Alignas(64) _Atomic uint64_t popped;
};

struct gb_node_queue *gb_node_queue_create(void)
{
	struct gb_node_queue *q = calloc(1, sizeof(*q));
	if (q)
		__cds_wfcq_init(&q->head, &q->tail);
	return q;
}

unsigned gb_node_queue_push(struct gb_node_queue *q, unsigned n)
{
	uint64_t pushed = atomic_load_explicit(&q->pushed, memory_order_relaxed);
	uint64_t used = pushed - atomic_load_explicit(&q->popped, memory_order_acquire);
	if (n > 4096 - used)
		n = (unsigned)(4096 - used);
	for (unsigned i = 0; i < n; i++) {
		struct gb_node *nd = malloc(sizeof(*nd));
		if (!nd)
			abort();
		nd->it = placeholder[i & 31];
		cds_wfcq_node_init(&nd->node);
		cds_wfcq_enqueue(&q->head, &q->tail, &nd->node);
	}
	atomic_store_explicit(&q->pushed, pushed + n, memory_order_release);
	return n;
}

unsigned gb_node_queue_pop(struct gb_node_queue *q, unsigned max)
{
	struct intake_item buf[32];
	unsigned n = 0;
	if (max > 32)
		max = 32;
	while (n < max) {
		struct cds_wfcq_node *node = __cds_wfcq_dequeue_nonblocking(&q->head, &q->tail);
		if (!node || node == CDS_WFCQ_WOULDBLOCK)
			break;
		struct gb_node *nd = caa_container_of(node, struct gb_node, node);
		buf[n++] = nd->it;
		free(nd);
	}
	__asm__ __volatile__("" : : "r"(buf) : "memory"); /* the copies are the work: keep them */
	atomic_fetch_add_explicit(&q->popped, n, memory_order_release);
	return n;
}

struct shadow_tree *gb_domain_tree(struct iovt_domain *d)
{
	return iovt_rcu_dereference(d->tree);
}

void gb_rcu_read_lock(void) { iovt_rcu_read_lock(); }
void gb_rcu_read_unlock(void) { iovt_rcu_read_unlock(); }
