/* SPDX-License-Identifier: MIT */
/* Composition: the engine object, guest RAM, threads and statistics. */
#include <errno.h>
#include <stddef.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rcu.h"
#include "domain/domain.h"
#include "glue.h"
#include "guest/guest_ram.h"
#include "tree/shadow_tree.h"

#define DEFAULT_WALK_BUDGET (1ull << 24)
#define DEFAULT_MAX_EXTENTS (1ull << 22)
#define DEFAULT_HOST_WIDTH 48u

static __thread bool thread_registered;
static _Atomic uint64_t last_engine_id;

/* A thread the host registered with liburcu itself (a DPDK host that uses
 * liburcu too) is left as it is: a second registration aborts in liburcu
 * (found by review), and iovt_thread_unregister then leaves the host's
 * registration alone (thread_registered stays false). */
void iovt_thread_register(void)
{
	if (!thread_registered && !iovt_rcu_thread_is_reader()) {
		urcu_memb_register_thread();
		thread_registered = true;
	}
}

bool iovt_internal_thread_registered(void)
{
	return thread_registered || iovt_rcu_thread_is_reader();
}

void iovt_thread_unregister(void)
{
	thread_queues_release(); /* before leaving RCU: queue destroy waits a grace period */
	if (thread_registered) {
		urcu_memb_unregister_thread();
		thread_registered = false;
	}
}

_Static_assert(IOVT_ERR_KIND_COUNT <= IOVT_ERR_KIND_SLOTS, "iovt_stats.errors[] has no slot left");
/* The caller allocates both: their size and where their reserved room
 * starts are the ABI (README "Versioning": a new field takes a reserved
 * slot; a change here is a soname change). */
_Static_assert(sizeof(struct iovt_config) == 96 && offsetof(struct iovt_config, reserved) == 32,
	       "struct iovt_config's layout is ABI");
_Static_assert(sizeof(struct iovt_stats) == 656 && offsetof(struct iovt_stats, errors) == 272 &&
		       offsetof(struct iovt_stats, reserved) == 560,
	       "struct iovt_stats's layout is ABI");

int iovt_engine_create(const struct iovt_config *cfg, struct iovt_engine **out)
{
	sync_lock_setup(); /* before any domain's sync_lock is used */
	struct iovt_engine *e = iovt_aligned_alloc(_Alignof(struct iovt_engine), sizeof(*e));
	if (!e)
		return -ENOMEM;
	memset(e, 0, sizeof(*e));
	if (cfg)
		e->cfg = *cfg;
	if (!e->cfg.walk_budget)
		e->cfg.walk_budget = DEFAULT_WALK_BUDGET;
	if (!e->cfg.max_extents_per_domain)
		e->cfg.max_extents_per_domain = DEFAULT_MAX_EXTENTS;
	if (!e->cfg.host_addr_width)
		e->cfg.host_addr_width = DEFAULT_HOST_WIDTH;
	/* Reserved fields are the room later versions grow into: a caller that
	 * left garbage there would get a meaning it never asked for. */
	bool reserved_set = false;
	for (size_t i = 0; i < sizeof(e->cfg.reserved) / sizeof(e->cfg.reserved[0]); i++)
		reserved_set |= e->cfg.reserved[i] != 0;
	if (reserved_set || e->cfg.host_addr_width < 32 || e->cfg.host_addr_width > 52) {
		/* VT-d's MGAW/HAW range as hosts report it; documented in iovt.h */
		free(e);
		return -EINVAL;
	}
	pthread_mutex_init(&e->control_lock, NULL);
	pthread_mutex_init(&e->queues_lock, NULL);
	pthread_mutex_init(&e->workers_lock, NULL);
	e->id = atomic_fetch_add(&last_engine_id, 1) + 1;
	CDS_INIT_LIST_HEAD(&e->domain_list);
	CDS_INIT_LIST_HEAD(&e->orphans);
	range_set_init(&e->todo, 0);
	cds_wfcq_init(&e->dirty_head, &e->dirty_tail);
	e->ram = guest_ram_create();
	e->domains = cds_lfht_new_flavor(64, 64, 0, CDS_LFHT_AUTO_RESIZE, &urcu_memb_flavor, NULL);
	if (!e->ram || !e->domains) {
		if (e->ram)
			guest_ram_destroy(e->ram);
		if (e->domains)
			cds_lfht_destroy(e->domains, NULL);
		free(e);
		return -ENOMEM;
	}
	engine_live_add(e);
	*out = e;
	return 0;
}

void iovt_engine_destroy(struct iovt_engine *e)
{
	struct iovt_domain *d, *tmp;

	if (!e)
		return;
	engine_live_remove(e); /* threads no longer release their queues here */
	iovt_workers_stop(e);
	iovt_internal_pollers_stop(e);
	engine_destroy_queues(e);
	cds_list_for_each_entry_safe(d, tmp, &e->domain_list, link) {
		domain_table_del(e, d);
		cds_list_del(&d->link);
		domain_teardown(d);
		domain_put(d); /* the creator's handle; references still held keep the memory */
	}
	dirty_put_all(e);
	engine_orphans_free(e);
	iovt_synchronize_rcu();
	/* Domains and trees go in call_rcu callbacks that touch nothing of the
	 * engine; wait for them so that a leak checker at exit sees none. */
	urcu_memb_barrier();
	cds_lfht_destroy(e->domains, NULL);
	domain_table_free(e);
	guest_ram_destroy(e->ram);
	sync_scratch_free(&e->scratch);
	range_set_free(&e->todo);
	pthread_mutex_destroy(&e->control_lock);
	pthread_mutex_destroy(&e->queues_lock);
	pthread_mutex_destroy(&e->workers_lock);
	free(e);
}

int iovt_guest_ram_add(struct iovt_engine *e, uint64_t gpa, uint64_t size, void *hva,
		       uint32_t *region_id)
{
	pthread_mutex_lock(&e->control_lock);
	int rc = guest_ram_add(e->ram, gpa, size, hva, region_id);
	pthread_mutex_unlock(&e->control_lock);
	if (rc)
		ENGINE_STAT_ADD(e, errors[IOVT_ERR_BAD_ARGUMENT], 1);
	return rc;
}

/*
 * Memory unplug, in three steps under the control lock:
 *  1. the region leaves the map: walks that start from now on see a hole;
 *  2. a grace period: no walk or translation can still be reading it (no
 *     thread waits for the control lock inside a read-side section);
 *  3. every domain, under its sync_lock (so no sync that walked the old
 *     map is still applying): each MAP sink unmaps every extent into the
 *     region, each UNMAP-only notifier is told to drop the whole domain.
 * A sink that refuses an UNMAP keeps its mapping: then the region is put
 * back and the call fails with -EBUSY — the host must not free the memory.
 * That includes the sinks of MAP notifiers already detached (or of
 * destroyed domains) that refused to drop mappings into it then (orphans,
 * domain.c).
 */
void (*engine_test_ram_purging)(void);

int iovt_guest_ram_remove(struct iovt_engine *e, uint64_t gpa)
{
	struct guest_ram_region reg;
	struct iovt_domain *d;
	int rc, err = 0;

	pthread_mutex_lock(&e->control_lock);
	rc = guest_ram_take(e->ram, gpa, &reg);
	if (rc) {
		pthread_mutex_unlock(&e->control_lock);
		if (rc == -ENOENT)
			ENGINE_STAT_ADD(e, errors[IOVT_ERR_BAD_ARGUMENT], 1);
		else /* -ENOMEM: the region array's copy (uncounted until a review) */
			ENGINE_STAT_ADD(e, errors[IOVT_ERR_NO_MEMORY], 1);
		return rc;
	}
	iovt_synchronize_rcu();
	if (__builtin_expect(engine_test_ram_purging != NULL, 0))
		engine_test_ram_purging();
	cds_list_for_each_entry(d, &e->domain_list, link) {
		rc = domain_ram_purge(d, reg.id, &e->scratch);
		if (rc && !err)
			err = rc;
	}
	/* And the sinks of notifiers gone, for what they refused to drop then. */
	rc = engine_orphans_purge(e, reg.id);
	if (rc && !err)
		err = rc;
	if (err) {
		while (guest_ram_restore(e->ram, &reg) == -ENOMEM)
			sched_yield(); /* the array of n regions: memory comes back */
		/* Domains purged before the refusal, and syncs that met the hole
		 * meanwhile, unmapped what the guest still maps there: every
		 * domain is synced again, as a DSI + wait, before we return. */
		cds_list_for_each_entry(d, &e->domain_list, link) {
			domain_lock_control(d);
			(void)domain_sync_all_locked(d, &e->scratch, &e->todo);
			sync_lock_release(&d->sync_lock);
		}
		err = -EBUSY;
	} else {
		/* A translate that ran between the grace period above and its
		 * domain's purge answered from the shadow or the IOTLB with an
		 * address in the region (found by review). A second grace
		 * period: a host that uses an answer only inside its own
		 * read-side section (liburcu memb, the engine's flavor) is done
		 * with it when this returns, and every translate after it sees
		 * the purge (lifecycle-ram-remove-reader). */
		iovt_synchronize_rcu();
	}
	pthread_mutex_unlock(&e->control_lock);
	return err;
}

static uint64_t ld(const _Atomic uint64_t *p)
{
	return atomic_load_explicit(p, memory_order_relaxed);
}

static void snapshot(const struct stat_counters *c, struct iovt_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->invalidations = ld(&c->invalidations) + ld(&c->carried_invalidations);
	out->psi = ld(&c->psi) + ld(&c->carried_psi);
	out->dsi = ld(&c->dsi) + ld(&c->carried_dsi);
	out->global = ld(&c->global);
	out->fences = ld(&c->fences);
	out->ranges_coalesced = ld(&c->ranges);
	out->ptes_walked = ld(&c->ptes);
	out->map_calls = ld(&c->map_calls);
	out->unmap_calls = ld(&c->unmap_calls);
	out->raw_unmap_calls = ld(&c->raw_unmap_calls);
	out->pages_mapped = ld(&c->pages_mapped);
	out->pages_unmapped = ld(&c->pages_unmapped);
	out->queue_items = ld(&c->queue_items);
	out->queue_full_waits = ld(&c->queue_full_waits);
	out->fences_inline = ld(&c->fences_inline);
	out->fences_drained = ld(&c->fences_drained);
	out->ih = ld(&c->ih) + ld(&c->carried_ih);
	out->stale_domain = ld(&c->stale_domain);
	out->retry_ranges = ld(&c->retry_ranges);
	out->retry_deferred = ld(&c->retry_deferred);
	out->ram_purged = ld(&c->ram_purged);
	out->iotlb_invalidated = ld(&c->iotlb_invalidated);
	out->translate_noent = ld(&c->translate_noent);
	out->translate_eacces = ld(&c->translate_eacces);
	out->translate_fault = ld(&c->translate_fault);
	out->pending_widened = ld(&c->pending_widened);
	for (int k = 0; k < IOVT_ERR_KIND_COUNT; k++)
		out->errors[k] = ld(&c->errors[k]);
}

/* Adds the domain's shadow size to *out (caller in a read-side section). */
static void add_shadow(struct iovt_domain *d, struct iovt_stats *out)
{
	struct shadow_tree *t = iovt_rcu_dereference(d->tree);
	if (t) {
		out->extents += shadow_tree_count(t);
		out->shadow_bytes += shadow_tree_memory_bytes(t);
		out->iotlb_bytes += shadow_tree_cache_bytes(t); /* translate's cache */
	}
	out->iotlb_hits += iotlb_counter(&d->iotlb, IOTLB_HITS);
	out->iotlb_misses += iotlb_counter(&d->iotlb, IOTLB_MISSES);
	out->iotlb_evictions += iotlb_counter(&d->iotlb, IOTLB_EVICTIONS);
	out->iotlb_sets_swept += iotlb_sets_swept(&d->iotlb);
	out->iotlb_entries += iotlb_count(&d->iotlb);
	out->iotlb_bytes += iotlb_memory_bytes(&d->iotlb);
}

/* The counters only a live domain holds (DOMAIN_*_COUNTERS). */
static void add_domain_counters(struct iovt_domain *d, struct iovt_stats *out)
{
	const struct stat_counters *c = &d->stats;
#define ADD(f, stats_field) out->stats_field += ld(&c->f);
	DOMAIN_INTAKE_COUNTERS(ADD)
	DOMAIN_SYNC_COUNTERS(ADD)
#undef ADD
}

/*
 * The engine's own counters + every live domain's + every queue's. Exact
 * when quiescent; a domain or queue destroyed during the call may be
 * counted twice or not at all in that one snapshot.
 */
/*
 * The stats calls' read-side section. They may come from any thread
 * (iovt.h), and a grace period waits only for registered readers: on a
 * thread liburcu does not know (a VMM's monitoring thread), the section
 * protected nothing, and the IOTLB table the counts walk could be freed
 * under it by a growth (found by review: a use-after-free under ASan in
 * iotlb_count). Such a thread is registered for the call. Asked of
 * liburcu, not of iovt's own flag: a thread the host registered itself (or
 * a call_rcu thread) registered twice aborted in liburcu, and its
 * unregistration would have dropped the host's (found by the review of
 * that fix). Returns whether it registered.
 */
static bool stats_read_lock(void)
{
	bool temporary = !iovt_rcu_thread_is_reader();
	if (temporary)
		urcu_memb_register_thread();
	iovt_rcu_read_lock();
	return temporary;
}

static void stats_read_unlock(bool temporary)
{
	iovt_rcu_read_unlock();
	if (temporary)
		urcu_memb_unregister_thread();
}

void iovt_stats_get(struct iovt_engine *e, struct iovt_stats *out)
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *node;

	snapshot(&e->stats, out);
	out->fences += ld(&e->fence_seq); /* iovt_fence calls (engine_fence_all) */
	bool temporary = stats_read_lock();
	cds_lfht_for_each(e->domains, &it, node) {
		struct iovt_domain *d = domain_of_node(node);
		if (!atomic_load_explicit(&d->dead, memory_order_acquire))
			add_domain_counters(d, out);
		add_shadow(d, out);
	}
	struct queue_table *qt = iovt_rcu_dereference(e->queues);
	out->queues = qt ? qt->n : 0;
	for (unsigned i = 0; qt && i < qt->n; i++) {
		const struct queue_counters *c = &qt->q[i]->drain.ctr;
		uint64_t fi = ld(&c->fences_inline), fd = ld(&c->fences_drained);
		out->fences += fi + fd + ld(&c->fences_alone); /* iovt_fence's fence_alone */
		out->fences_inline += fi;
		out->fences_drained += fd;
		out->queue_items += ld(&c->queue_items);
	}
	out->domain_objects = domain_objects_now();
	out->node_pool_bytes = shadow_tree_pool_bytes();
	out->iotlb_pool_bytes = 0; /* entry lines live in their tables (engine/iotlb/iotlb_hit.h) */
	stats_read_unlock(temporary);
}

void iovt_domain_stats_get(struct iovt_domain *d, struct iovt_stats *out)
{
	snapshot(&d->stats, out);
	bool temporary = stats_read_lock();
	add_shadow(d, out);
	stats_read_unlock(temporary);
}

const char *iovt_err_kind_name(enum iovt_err_kind k)
{
	static const char *const names[IOVT_ERR_KIND_COUNT] = {
		[IOVT_ERR_UNKNOWN_DOMAIN] = "unknown_domain",
		[IOVT_ERR_BAD_INVALIDATION] = "bad_invalidation",
		[IOVT_ERR_PT_RESERVED] = "pt_reserved",
		[IOVT_ERR_PT_LARGE_PAGE] = "pt_large_page",
		[IOVT_ERR_PT_OUTSIDE_RAM] = "pt_outside_ram",
		[IOVT_ERR_PT_LOOP] = "pt_loop",
		[IOVT_ERR_WALK_BUDGET] = "walk_budget",
		[IOVT_ERR_LEAF_OUTSIDE_RAM] = "leaf_outside_ram",
		[IOVT_ERR_EXTENT_CAP] = "extent_cap",
		[IOVT_ERR_SINK_MAP] = "sink_map",
		[IOVT_ERR_SINK_UNMAP] = "sink_unmap",
		[IOVT_ERR_BAD_ARGUMENT] = "bad_argument",
		[IOVT_ERR_NO_MEMORY] = "no_memory",
	};
	return (unsigned)k < IOVT_ERR_KIND_COUNT ? names[k] : "?";
}
