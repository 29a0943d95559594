/* SPDX-License-Identifier: MIT */
/* The composition's private structures: engine, domains, notifiers. */
#ifndef IOVT_ENGINE_INTERNAL_H
#define IOVT_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include <urcu/list.h>
#include <urcu/rculfhash.h>
#include <urcu/wfcqueue.h>

#include "iovt.h"
#include "sync/sync.h"

/* Counters, updated with relaxed atomics so that a snapshot needs no lock. */
struct stat_counters {
	_Atomic uint64_t invalidations, psi, dsi, global, fences;
	_Atomic uint64_t ranges, ptes, map_calls, unmap_calls, raw_unmap_calls;
	_Atomic uint64_t pages_mapped, pages_unmapped;
	_Atomic uint64_t errors[IOVT_ERR_KIND_COUNT];
};

struct iovt_notifier {
	struct cds_list_head link;    /* domain->notifiers */
	struct iovt_domain *domain;
	unsigned flags;
	struct iovt_sink sink;
};

struct iovt_domain {
	struct cds_lfht_node hnode;   /* engine->domains, keyed by did */
	struct rcu_head rcu;
	struct cds_wfcq_node dirty;   /* engine->dirty queue while pending */
	_Atomic int queued;           /* on the dirty queue */
	struct iovt_engine *engine;
	struct cds_list_head link;    /* engine->domain_list (control lock) */

	uint16_t did;
	unsigned addr_width;
	bool allow_2m, allow_1g;
	uint64_t root_gpa;

	/* The record of what the MAP sink holds; NULL without a MAP notifier.
	 * Published with rcu_assign for iovt_translate. */
	struct shadow_tree *tree;
	struct iovt_notifier *map_notifier;
	struct cds_list_head notifiers; /* UNMAP-only ones */

	pthread_mutex_t pending_lock;   /* producers vs the fence */
	struct range_set pending;
	struct range_set retry;         /* failed spans, owned by the fence */

	struct stat_counters stats;
};

struct iovt_engine {
	pthread_mutex_t control_lock;   /* control calls and fences */
	struct iovt_config cfg;
	struct guest_ram *ram;
	struct cds_lfht *domains;
	struct cds_list_head domain_list;
	struct cds_wfcq_head dirty_head;
	struct cds_wfcq_tail dirty_tail;
	struct sync_scratch scratch;    /* control lock */
	struct stat_counters stats;     /* engine-wide (also for unknown domains) */
};

/* Shared between the composition's files (domain.c, invalidate.c, engine.c). */
uint64_t domain_top(const struct iovt_domain *d);            /* last IOVA of the width */
void domain_sync_target(struct iovt_domain *d, struct sync_target *t);
void domain_fold_stats(struct iovt_domain *d, const struct sync_stats *st);
void domain_mark_dirty(struct iovt_domain *d);               /* queue for the next fence */
void domain_unqueue(struct iovt_domain *d);                  /* control lock held */
void engine_free_domain(struct iovt_domain *d);              /* unlinked; no sink called */

#define STAT_ADD(d, field, v)                                                               \
	do {                                                                                \
		atomic_fetch_add_explicit(&(d)->stats.field, (v), memory_order_relaxed);     \
		atomic_fetch_add_explicit(&(d)->engine->stats.field, (v), memory_order_relaxed); \
	} while (0)

#endif
