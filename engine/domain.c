/* SPDX-License-Identifier: MIT */
/* Domains, notifiers and translation. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/rcu.h"
#include "engine_internal.h"
#include "tree/shadow_tree.h"


static int match_did(struct cds_lfht_node *node, const void *key)
{
	return caa_container_of(node, struct iovt_domain, hnode)->did == *(const uint16_t *)key;
}

static unsigned long hash_did(uint16_t did)
{
	/* Fibonacci hashing spreads dense DIDs over the buckets. */
	return (unsigned long)(did * 0x9E3779B97F4A7C15ull);
}

/* The domain with that DID; caller in a read-side section, no reference. */
struct iovt_domain *domain_find_rcu(struct iovt_engine *e, uint16_t did)
{
	struct cds_lfht_iter it;
	cds_lfht_lookup(e->domains, hash_did(did), match_did, &did, &it);
	struct cds_lfht_node *node = cds_lfht_iter_get_node(&it);
	return node ? caa_container_of(node, struct iovt_domain, hnode) : NULL;
}

bool domain_tryget(struct iovt_domain *d)
{
	uint32_t r = atomic_load_explicit(&d->refs, memory_order_relaxed);
	do {
		if (!r)
			return false; /* the last holder let go: it is being freed */
	} while (!atomic_compare_exchange_weak_explicit(&d->refs, &r, r + 1, memory_order_acquire,
							memory_order_relaxed));
	return true;
}

static void domain_free_rcu(struct rcu_head *h)
{
	iovt_rcu_callback_enter();
	struct iovt_domain *d = caa_container_of(h, struct iovt_domain, rcu);
	range_set_free(&d->pending);
	range_set_free(&d->retry);
	range_set_free(&d->capped);
	pthread_mutex_destroy(&d->pending_lock);
	pthread_mutex_destroy(&d->sync_lock);
	free(d);
}

void domain_put(struct iovt_domain *d)
{
	/* Release: every use of d by this holder happens before the free. The
	 * free itself waits a grace period: lock-free finders (drainers, the
	 * producers' width check) may still be looking at it. */
	if (atomic_fetch_sub_explicit(&d->refs, 1, memory_order_acq_rel) == 1)
		iovt_call_rcu(&d->rcu, domain_free_rcu);
}

struct iovt_domain *domain_get_did(struct iovt_engine *e, uint16_t did)
{
	iovt_rcu_read_lock();
	struct iovt_domain *d = domain_find_rcu(e, did);
	if (d && !domain_tryget(d))
		d = NULL;
	iovt_rcu_read_unlock();
	return d;
}

struct iovt_domain *iovt_domain_lookup(struct iovt_engine *e, uint16_t did)
{
	return domain_get_did(e, did);
}

void iovt_domain_get(struct iovt_domain *d)
{
	atomic_fetch_add_explicit(&d->refs, 1, memory_order_relaxed);
}

void iovt_domain_put(struct iovt_domain *d)
{
	if (d)
		domain_put(d);
}

bool iovt_domain_alive(const struct iovt_domain *d)
{
	return !atomic_load_explicit(&d->dead, memory_order_acquire);
}

static bool width_ok(unsigned aw)
{
	return aw == 39 || aw == 48 || aw == 57;
}

uint64_t domain_top(const struct iovt_domain *d)
{
	return (1ull << d->addr_width) - 1;
}

int iovt_domain_create(struct iovt_engine *e, const struct iovt_domain_config *cfg,
		       struct iovt_domain **out)
{
	if (!cfg || !width_ok(cfg->addr_width) || (cfg->root_gpa & (IOVT_PAGE_SIZE - 1)))
		return -EINVAL;
	struct iovt_domain *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	atomic_init(&d->refs, 1); /* the creator's handle, consumed by destroy */
	d->engine = e;
	d->did = cfg->did;
	d->addr_width = cfg->addr_width;
	d->allow_2m = cfg->allow_2m;
	d->allow_1g = cfg->allow_1g;
	d->root_gpa = cfg->root_gpa;
	CDS_INIT_LIST_HEAD(&d->notifiers);
	cds_wfcq_node_init(&d->dirty);
	cds_lfht_node_init(&d->hnode);
	pthread_mutex_init(&d->sync_lock, NULL);
	pthread_mutex_init(&d->pending_lock, NULL);
	range_set_init(&d->pending, 0);
	range_set_init(&d->retry, 0);
	range_set_init(&d->capped, 0);

	pthread_mutex_lock(&e->control_lock);
	iovt_rcu_read_lock();
	struct cds_lfht_node *got =
		cds_lfht_add_unique(e->domains, hash_did(d->did), match_did, &d->did, &d->hnode);
	iovt_rcu_read_unlock();
	if (got != &d->hnode) {
		pthread_mutex_unlock(&e->control_lock);
		range_set_free(&d->pending);
		range_set_free(&d->retry);
		range_set_free(&d->capped);
		pthread_mutex_destroy(&d->sync_lock);
		pthread_mutex_destroy(&d->pending_lock);
		free(d);
		return -EEXIST;
	}
	cds_list_add_tail(&d->link, &e->domain_list);
	pthread_mutex_unlock(&e->control_lock);
	*out = d;
	return 0;
}

/*
 * The guest rewrote the context entry: the new table is in force before this
 * returns, for every queue (a guest that waits on any queue must see it).
 * Synced here as a DSI would be, under the control lock.
 */
int iovt_domain_set_root(struct iovt_domain *d, uint64_t root_gpa)
{
	struct iovt_engine *e = d->engine;
	if (root_gpa & (IOVT_PAGE_SIZE - 1)) {
		STAT_ADD(d, errors[IOVT_ERR_BAD_ARGUMENT], 1);
		return -EINVAL;
	}
	pthread_mutex_lock(&e->control_lock);
	pthread_mutex_lock(&d->sync_lock);
	int rc = -ENODEV;
	if (!atomic_load_explicit(&d->dead, memory_order_relaxed)) {
		d->root_gpa = root_gpa;
		pthread_mutex_lock(&d->pending_lock);
		range_set_add_all(&d->pending);
		pthread_mutex_unlock(&d->pending_lock);
		rc = domain_sync_locked(d, &e->scratch, &e->todo, NULL);
	}
	pthread_mutex_unlock(&d->sync_lock);
	pthread_mutex_unlock(&e->control_lock);
	return rc;
}

static void free_notifier(struct iovt_notifier *n)
{
	if (n->sink.ops && n->sink.ops->destroy)
		n->sink.ops->destroy(n->sink.ctx);
	free(n);
}

/* Unpublishes the tree; readers still inside finish before call_rcu frees it. */
static void retire_tree(struct iovt_domain *d)
{
	struct shadow_tree *t = d->tree;
	iovt_rcu_assign(d->tree, NULL);
	shadow_tree_retire(t);
}

/*
 * Frees the notifiers and the tree without calling any sink (engine destroy:
 * no other call runs). The domain is unlinked; its memory goes with the
 * last reference.
 */
void domain_teardown(struct iovt_domain *d)
{
	struct iovt_notifier *n, *tmp;

	atomic_store_explicit(&d->dead, true, memory_order_release);
	cds_list_for_each_entry_safe(n, tmp, &d->notifiers, link)
		free_notifier(n);
	CDS_INIT_LIST_HEAD(&d->notifiers);
	if (d->map_notifier)
		free_notifier(d->map_notifier);
	d->map_notifier = NULL;
	if (d->tree)
		retire_tree(d);
}

/* Tells the MAP sink to drop everything, then retires the tree. Control and
 * sync locks: no grace-period wait here (shadow_tree_retire). */
static int retire_map_notifier(struct iovt_domain *d)
{
	struct sync_target t;
	struct sync_stats st = { 0 };
	int rc;

	domain_sync_target(d, &t);
	rc = sync_unmap_everything(&t, &st);
	domain_fold_stats(d, &st);
	retire_tree(d);
	free_notifier(d->map_notifier);
	d->map_notifier = NULL;
	range_set_clear(&d->retry);
	range_set_clear(&d->capped);
	return rc;
}

/*
 * Destroy waits for nothing but the two locks: the domain is marked dead and
 * emptied under sync_lock (a drainer that holds a reference and waits for
 * the lock then finds it dead), unlinked, and the creator's reference is
 * dropped; the memory goes after the last holder and a grace period.
 */
int iovt_domain_destroy(struct iovt_domain *d)
{
	struct iovt_engine *e = d->engine;
	struct iovt_notifier *n, *tmp;
	int rc = 0;

	pthread_mutex_lock(&e->control_lock);
	pthread_mutex_lock(&d->sync_lock);
	if (atomic_load_explicit(&d->dead, memory_order_relaxed)) {
		pthread_mutex_unlock(&d->sync_lock);
		pthread_mutex_unlock(&e->control_lock);
		return -ENODEV;
	}
	if (d->map_notifier)
		rc = retire_map_notifier(d);
	cds_list_for_each_entry_safe(n, tmp, &d->notifiers, link)
		free_notifier(n);
	CDS_INIT_LIST_HEAD(&d->notifiers);
	atomic_store_explicit(&d->dead, true, memory_order_release);
	pthread_mutex_lock(&d->pending_lock);
	range_set_clear(&d->pending);
	pthread_mutex_unlock(&d->pending_lock);
	pthread_mutex_unlock(&d->sync_lock);
	iovt_rcu_read_lock();
	cds_lfht_del(e->domains, &d->hnode);
	iovt_rcu_read_unlock();
	atomic_fetch_add_explicit(&e->domain_gen, 1, memory_order_release);
	cds_list_del(&d->link);
	pthread_mutex_unlock(&e->control_lock);
	domain_put(d); /* the creator's handle */
	return rc;
}

int iovt_notifier_attach(struct iovt_domain *d, unsigned flags, const struct iovt_sink *sink,
			 struct iovt_notifier **out)
{
	struct iovt_engine *e = d->engine;
	bool wants_map = flags & IOVT_NOTIFY_MAP;

	if (!sink || !sink->ops || !sink->ops->unmap || !flags ||
	    (flags & ~(IOVT_NOTIFY_IOTLB_EVENTS | IOVT_NOTIFY_DEVIOTLB_UNMAP)) ||
	    (wants_map && (!(flags & IOVT_NOTIFY_UNMAP) || !sink->ops->map)))
		return -EINVAL;
	struct iovt_notifier *n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	n->domain = d;
	n->flags = flags;
	n->sink = *sink;

	pthread_mutex_lock(&e->control_lock);
	pthread_mutex_lock(&d->sync_lock);
	if (atomic_load_explicit(&d->dead, memory_order_relaxed)) {
		pthread_mutex_unlock(&d->sync_lock);
		pthread_mutex_unlock(&e->control_lock);
		free(n);
		return -ENODEV;
	}
	if (!wants_map) {
		cds_list_add_tail(&n->link, &d->notifiers);
		pthread_mutex_unlock(&d->sync_lock);
		pthread_mutex_unlock(&e->control_lock);
		*out = n;
		return 0;
	}
	if (d->map_notifier) {
		pthread_mutex_unlock(&d->sync_lock);
		pthread_mutex_unlock(&e->control_lock);
		free(n);
		return -EBUSY;
	}
	struct shadow_tree *tree = shadow_tree_create(d->addr_width);
	if (!tree) {
		pthread_mutex_unlock(&d->sync_lock);
		pthread_mutex_unlock(&e->control_lock);
		free(n);
		return -ENOMEM;
	}
	d->map_notifier = n;
	iovt_rcu_assign(d->tree, tree);

	/* Replay: the new sink starts equal to the guest view. */
	struct sync_target t;
	struct sync_stats st = { 0 };
	struct range all = { 0, domain_top(d) };
	domain_sync_target(d, &t);
	int rc = sync_ranges(&t, &all, 1, &e->scratch, &st, &d->retry);
	domain_fold_stats(d, &st);
	if (!range_set_empty(&d->retry))
		domain_mark_dirty(d);
	pthread_mutex_unlock(&d->sync_lock);
	pthread_mutex_unlock(&e->control_lock);
	*out = n;
	return rc;
}

int iovt_notifier_detach(struct iovt_notifier *n)
{
	struct iovt_domain *d = n->domain;
	int rc = 0;

	pthread_mutex_lock(&d->engine->control_lock);
	pthread_mutex_lock(&d->sync_lock);
	if (n == d->map_notifier) {
		rc = retire_map_notifier(d);
	} else {
		cds_list_del(&n->link);
		free_notifier(n);
	}
	pthread_mutex_unlock(&d->sync_lock);
	pthread_mutex_unlock(&d->engine->control_lock);
	return rc;
}

int iovt_translate(struct iovt_domain *d, uint64_t iova, struct iovt_extent *out)
{
	int rc;

	iovt_rcu_read_lock();
	struct shadow_tree *t = iovt_rcu_dereference(d->tree);
	if (!t)
		rc = -ENODEV;
	else
		rc = shadow_tree_lookup(t, iova, out) ? 0 : -ENOENT;
	iovt_rcu_read_unlock();
	return rc;
}

static int push_region_extent(void *arg, const struct iovt_extent *x)
{
	struct sync_scratch *s = ((void **)arg)[0];
	uint32_t region = *(const uint32_t *)((void **)arg)[1];
	if (x->region != region)
		return 0;
	struct plan_unmap g = { x->iova, x->iova + x->size - 1, x->size >> IOVT_PAGE_SHIFT };
	return vec_push(&s->unmaps, g) ? -ENOMEM : 0;
}

/*
 * Guest RAM `region` is gone (iovt_guest_ram_remove, control lock, after
 * the grace period): unmaps every extent into it from the MAP sink and
 * tells UNMAP-only notifiers to drop the whole domain (they cache
 * translations we cannot enumerate). 0, or the sink's error when an UNMAP
 * was refused (that extent stays, recorded: record == sink).
 */
int domain_ram_purge(struct iovt_domain *d, uint32_t region, struct sync_scratch *s)
{
	int rc = 0;
	struct iovt_notifier *n;

	pthread_mutex_lock(&d->sync_lock);
	if (atomic_load_explicit(&d->dead, memory_order_relaxed))
		goto out;
	cds_list_for_each_entry(n, &d->notifiers, link) {
		uint64_t done = 0;
		int r = n->sink.ops->unmap(n->sink.ctx, 0, domain_top(d) + 1, &done);
		STAT_ADD(d, raw_unmap_calls, 1);
		if (r && !rc)
			rc = r;
	}
	if (!d->map_notifier)
		goto out;
	vec_clear(&s->unmaps);
	vec_clear(&s->maps);
	void *arg[2] = { s, &region };
	int r = shadow_tree_iterate(d->tree, 0, domain_top(d), push_region_extent, arg);
	if (r) {
		vec_clear(&s->unmaps);
		if (!rc)
			rc = r;
		goto out;
	}
	size_t purged = s->unmaps.n;
	struct sync_target t;
	struct sync_stats st = { 0 };
	struct range_set failed;
	range_set_init(&failed, 0);
	domain_sync_target(d, &t);
	r = apply_plan(&t, s, &st, &failed);
	domain_fold_stats(d, &st);
	STAT_ADD(d, ram_purged, purged);
	if (!r && !range_set_empty(&failed))
		r = -EBUSY;
	if (r && !rc)
		rc = r;
	range_set_free(&failed);
out:
	pthread_mutex_unlock(&d->sync_lock);
	return rc;
}
